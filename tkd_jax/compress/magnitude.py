"""Unstructured magnitude pruning: masks, the cubic schedule, and masks in the optax chain.

Prunable weights are the encoder's Dense kernels (Q, K, V, attention output, FFN in and out);
embeddings, biases, LayerNorm, pooler and classifier are kept dense, as in Zhu & Gupta
(2017) and Sanh et al. (2020) for BERT.

- ``magnitude_masks(params, sparsity, scope, scales)``: one-shot masks (True = kept) zeroing
  the ``sparsity`` fraction of smallest scores, over all prunable weights together
  (``global``), within each tensor (``layer``) or within each output neuron's column of a
  kernel (``output``, Wanda's comparison group). The score is |w|, or with ``scales`` (one
  factor per input feature of a kernel) |w| x that factor: Wanda's |W_ij| ||X_j|| (Sun et al.
  2024) when the factors are input-activation norms (``activation_norms.py``).
- ``cubic_sparsity(step, ...)``: Zhu & Gupta's s_t = s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^3.
- ``pruned_optimizer(tx, ...)``: an optax GradientTransformation that runs ``tx`` and then
  re-computes masks on schedule and zeroes the masked weights, so pruned weights stay exactly
  zero through every update. Hand-written: optax has no magnitude pruning, and ``jaxpruner``
  has no PyPI release and breaks on current jax.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from tkd_jax.errors import ConfigError

SCOPES = ("global", "layer", "output")


def check_sparsity(sparsity: float, field: str = "sparsity") -> float:
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"{field}: expected a fraction in [0, 1), got {sparsity}")
    return float(sparsity)


def is_prunable(path: tuple[str, ...]) -> bool:
    """Encoder Dense kernels: ``encoder/layer/{i}/.../kernel``."""
    return path[0] == "encoder" and path[-1] == "kernel"


def _keep_top(absw: jax.Array | np.ndarray, n_prune, xp):
    """Mask of ``absw`` with its ``n_prune`` smallest entries False (ties go by position)."""
    flat = absw.reshape(-1)
    order = xp.argsort(flat, stable=True)  # ascending; rank r = position in this order
    rank = xp.zeros(flat.shape, xp.int32)
    rank = (rank.at[order].set(xp.arange(flat.size, dtype=xp.int32)) if xp is jnp
            else _np_set(rank, order))
    return (rank >= n_prune).reshape(absw.shape)


def _np_set(rank, order):
    rank[order] = np.arange(order.size, dtype=np.int32)
    return rank


def _masks(flat_params: dict, sparsity, scope: str, xp, scales: dict | None = None) -> dict:
    keys = [k for k in flat_params if is_prunable(k)]
    scores = {k: _score(flat_params[k], (scales or {}).get(k), xp) for k in keys}
    if scope == "layer":
        return {k: _keep_top(scores[k], _count(sparsity, scores[k].size, xp), xp) for k in keys}
    if scope == "output":
        return {k: _keep_top_columns(scores[k], _count(sparsity, scores[k].shape[0], xp), xp)
                for k in keys}
    if scope != "global":
        raise ConfigError(f"pruning scope {scope!r}: expected one of {list(SCOPES)}")
    allw = xp.concatenate([scores[k].reshape(-1) for k in keys])
    keep = _keep_top(allw, _count(sparsity, allw.size, xp), xp)
    out, start = {}, 0
    for k in keys:
        n = flat_params[k].size
        out[k] = keep[start:start + n].reshape(flat_params[k].shape)
        start += n
    return out


def _score(w, scale, xp):
    """|w|, times ``scale`` (one factor per input feature, the kernel's rows) when given."""
    return xp.abs(w) if scale is None else xp.abs(w) * scale.reshape(-1, 1)


def _keep_top_columns(score, n_prune, xp):
    """Mask of a ``[in, out]`` score with the ``n_prune`` smallest of each column False."""
    rank = xp.argsort(xp.argsort(score, axis=0, stable=True), axis=0, stable=True)
    return rank >= n_prune


def _count(sparsity, size: int, xp):
    return (xp.floor(sparsity * size) if xp is jnp else np.floor(sparsity * size)).astype(
        xp.int32)


def magnitude_masks(params, sparsity: float, *, scope: str = "global",
                    scales: dict | None = None) -> dict:
    """Nested bool masks (True = kept) for the prunable kernels of ``params`` (NumPy).

    ``scales``: {flattened kernel path: [in] factors} multiplying |w| row-wise (see the module
    docstring); kernels without an entry are scored by |w| alone.
    """
    check_sparsity(sparsity)
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
    scales = {k: np.asarray(v) for k, v in (scales or {}).items()}
    return traverse_util.unflatten_dict(_masks(flat, sparsity, scope, np, scales))


def apply_masks(params, masks):
    """params with masked entries set to zero (parameters without a mask untouched)."""
    flat_m = traverse_util.flatten_dict(masks)
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({
        k: (v * flat_m[k].astype(v.dtype) if k in flat_m else v) for k, v in flat.items()})


def sparsity_of(params) -> dict:
    """{"prunable": fraction of zeros in the prunable kernels, "all": over every parameter}."""
    flat = traverse_util.flatten_dict(params)
    zeros = sum(int(np.sum(np.asarray(v) == 0)) for k, v in flat.items() if is_prunable(k))
    size = sum(np.asarray(v).size for k, v in flat.items() if is_prunable(k))
    total = sum(np.asarray(v).size for v in flat.values())
    all_zeros = sum(int(np.sum(np.asarray(v) == 0)) for v in flat.values())
    return {"prunable": zeros / max(size, 1), "all": all_zeros / max(total, 1)}


def cubic_sparsity(step, *, final: float, begin: int, end: int, initial: float = 0.0,
                   frequency: int = 1):
    """Zhu & Gupta (2017) eq 1: the target sparsity at ``step`` (0 before ``begin``).

    The step is rounded down to a multiple of ``frequency`` after ``begin``, so the target
    changes only on pruning steps; it is ``final`` from ``end`` on.
    """
    check_sparsity(final, "final sparsity")
    if end < begin or frequency < 1:
        raise ConfigError(f"pruning schedule: expected begin <= end and frequency >= 1, got "
                          f"begin={begin}, end={end}, frequency={frequency}")
    step = jnp.asarray(step)
    t = begin + jnp.floor((step - begin) / frequency) * frequency
    frac = jnp.clip((t - begin) / max(end - begin, 1), 0.0, 1.0)
    s = final + (initial - final) * (1.0 - frac) ** 3
    return jnp.where(step < begin, 0.0, s)


class PruneState(NamedTuple):
    inner: optax.OptState
    count: jax.Array  # updates applied so far (int32)
    masks: dict  # like params; True = kept (all True for non-prunable leaves)


def pruned_optimizer(tx: optax.GradientTransformation, *, final_sparsity: float, begin: int,
                     end: int, frequency: int = 100, scope: str = "global",
                     initial_sparsity: float = 0.0,
                     scales: dict | None = None) -> optax.GradientTransformation:
    """``tx`` followed by magnitude pruning on the cubic schedule.

    After ``tx``'s update, on every ``frequency``-th step from ``begin`` the masks are
    re-computed from |params + updates| with the current masks applied, at the scheduled
    sparsity (pruned weights score zero, so they stay pruned: the schedule only rises, as in
    Zhu & Gupta's implementation, which scores the masked weights); the returned updates take
    every masked weight to exactly zero (``p + (0 - p) == 0`` in IEEE arithmetic).
    ``scales`` (see :func:`magnitude_masks`) stay fixed through training: they are measured
    once, on the model before pruning.
    Parameters are the train state's ``{"model": ..., ...}`` tree or a bare model tree.
    """
    check_sparsity(final_sparsity, "final sparsity")
    if scope not in SCOPES:
        raise ConfigError(f"pruning scope {scope!r}: expected one of {list(SCOPES)}")

    fixed_scales = {k: jnp.asarray(v) for k, v in (scales or {}).items()}

    def model_tree(tree):
        return tree["model"] if isinstance(tree, dict) and "model" in tree else tree

    def init(params):
        masks = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
        return PruneState(tx.init(params), jnp.zeros((), jnp.int32), masks)

    def compute_masks(new_params, masks, step):
        s = cubic_sparsity(step, final=final_sparsity, begin=begin, end=end,
                           initial=initial_sparsity, frequency=frequency)
        flat_masks = traverse_util.flatten_dict(model_tree(masks))
        # Scored with the old masks applied: tx moves a pruned weight off zero (its gradient
        # and moments), and unmasked it could outscore a small kept weight and grow back.
        flat = {k: (jnp.where(flat_masks[k], v, 0.0) if is_prunable(k) else v)
                for k, v in traverse_util.flatten_dict(model_tree(new_params)).items()}
        fresh = _masks(flat, s, scope, jnp, fixed_scales)
        flat_masks.update(fresh)
        model_masks = traverse_util.unflatten_dict(flat_masks)
        if isinstance(masks, dict) and "model" in masks:
            return {**masks, "model": model_masks}
        return model_masks

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("pruned_optimizer needs params in update()")
        updates, inner = tx.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        step = state.count + 1
        due = (step >= begin) & ((step - begin) % frequency == 0)
        masks = jax.lax.cond(due, lambda: compute_masks(new_params, state.masks, step),
                             lambda: state.masks)
        updates = jax.tree.map(lambda n, p, m: jnp.where(m, n, 0.0).astype(p.dtype) - p,
                               new_params, params, masks)
        return updates, PruneState(inner, step, masks)

    return optax.GradientTransformation(init, update)
