"""The one update step of every recipe, and the eval step (pure, module-level, compiled once).

    train_step(state, batch, rng, frozen, *, spec, model) -> (state, metrics)
    eval_step(params, batch, *, spec, model) -> summed statistics

``spec`` (a frozen StepSpec holding the recipe's objective, see
:mod:`tkd_jax.train.objectives`) and the Flax module are bound with functools.partial before
jit, so they are compile-time constants; ``frozen`` is the one pytree of untrained inputs
(teacher parameters). The same function runs under ``jax.jit`` over a device mesh
(``axis_name=None``: XLA inserts the collectives) and under ``jax.pmap`` (``axis_name`` from
:class:`tkd_jax.train.parallel.DataParallel`: gradients and statistics psum'ed here). Dropout
keys (Philox, below), the fp16 loss scale with skipped non-finite updates, the psum and the
step metrics exist here once, for every objective.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tkd_jax.train.objectives import model_inputs, psum


@dataclasses.dataclass(frozen=True)
class StepSpec:
    objective: Any  # a tkd_jax.train.objectives objective
    fp16: bool = False  # dynamic loss scaling, skip non-finite steps
    axis_name: str | None = None  # set under pmap (DataParallel.axis_name)
    philox: bool = True  # Philox dropout keys (one device only, see dropout_key)
    # params -> params inside the differentiated loss, so that it shapes the gradient too:
    # the layout's Layout.gather_tables (fsdp: embedding tables whole; others: identity)
    gather_params: Callable[[Any], Any] | None = None


# XLA:CPU lowers threefry2x32 as a rolled 5-iteration loop over the whole mask, which made the
# dropout bits of a minilm_l6 step (batch 32 x 128) cost ~450 ms; Philox-4x32 (Random123, 64-bit
# key) takes ~55 ms for the same masks on every backend.
DROPOUT_PRNG = "philox4x32"


def dropout_key(rng):
    """The key handed to the model's dropout: Philox-4x32 seeded with 64 bits drawn from ``rng``.

    ``rng`` is any JAX key (raw ``uint32[2]`` or typed). The result is a deterministic function of
    ``rng``. On a jax without Philox the ``rng`` itself is returned. Only for single-device
    steps: with jax 0.10 a Philox key inside a step jitted over several devices fails to lower
    ("Unable to convert MHLO to StableHLO"), so multi-device runs keep threefry
    (``StepSpec.philox=False``).
    """
    seed = jax.random.bits(rng, (2,), jnp.uint32)
    try:
        return jax.random.wrap_key_data(seed, impl=DROPOUT_PRNG)
    except ValueError:  # "unrecognized PRNG implementation" (jax before Philox)
        return rng


def train_step(state, batch, rng, frozen, *, spec: StepSpec, model):
    """One optimizer (micro-)step of ``spec.objective``. ``rng`` is the run's base key; dropout
    uses dropout_key(fold_in(rng, step)) (and the replica index under pmap)."""
    axis = spec.axis_name
    step_rng = jax.random.fold_in(rng, state.step)
    if axis is not None:  # distinct dropout masks per replica
        step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis))
    dropout_rng = dropout_key(step_rng) if spec.philox else step_rng

    def loss_fn(params):
        if spec.gather_params is not None:
            params = spec.gather_params(params)
        return spec.objective.loss(params, batch, frozen, model=model, dropout_rng=dropout_rng,
                                   rng=rng, step=state.step, axis_name=axis)

    if spec.fp16:
        grad_fn = state.dynamic_scale.value_and_grad(loss_fn, has_aux=True)
        dyn, finite, (loss, aux), grads = grad_fn(state.params)
        # DynamicScale pmean's only when given an axis; our loss is already a global share, so
        # the replica gradients must be summed instead.
        grads = psum(grads, axis)
        if axis is not None:
            finite = jax.lax.pmin(finite.astype(jnp.int32), axis).astype(bool)
    else:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = psum(grads, axis)
        dyn, finite = None, jnp.array(True)
    new_state = state.apply_gradients(grads=grads)
    if spec.fp16:
        # Skip the update (params and optimizer state) when the scaled gradients overflowed.
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = new_state.replace(
            params=keep(new_state.params, state.params),
            opt_state=keep(new_state.opt_state, state.opt_state),
            dynamic_scale=dyn,
        )
    metrics_out = {
        "loss": psum(loss, axis),
        "grad_norm": optax.tree.norm(grads),
        "finite": finite,
        "examples": psum(jnp.sum(batch["weight"]), axis),
    }
    for k, v in aux.items():
        metrics_out[k] = psum(v, axis)
    if spec.fp16:
        metrics_out["loss_scale"] = dyn.scale
    return new_state, metrics_out


def eval_step(params, batch, *, spec: StepSpec, model):
    """Summed statistics of one eval batch (``spec.objective.eval_stats``)."""
    return spec.objective.eval_stats(params, batch, model=model)


def predict_logits(params, batch, *, model):
    """Logits of a frozen model (teacher soft labels, prediction files)."""
    out = model.apply({"params": params}, *model_inputs(batch), deterministic=True)
    return out.logits.astype(jnp.float32)
