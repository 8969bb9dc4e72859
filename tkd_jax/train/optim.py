"""The optax chain: global-norm clipping -> AdamW (masked weight decay) -> schedule; MultiSteps.

Everything here takes explicit arguments; the experiment entry point reads the config.
"""

from __future__ import annotations

import optax
from flax import traverse_util

from tkd_jax.errors import ConfigError

# Parameter leaf names that never get weight decay: biases and LayerNorm scale/bias (BERT/AdamW
# practice). Embedding tables and Dense/Conv kernels are decayed.
_NO_DECAY_LEAVES = ("bias", "scale")


def decay_mask(params):
    """Pytree of bools, True where weight decay applies (kernels and embeddings)."""
    flat = traverse_util.flatten_dict(params)
    mask = {
        path: not (path[-1] in _NO_DECAY_LEAVES or "LayerNorm" in path or "layer_norm" in path)
        for path in flat
    }
    return traverse_util.unflatten_dict(mask)


def _linear(peak, warmup, total):
    decay = max(total - warmup, 1)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.linear_schedule(peak, 0.0, decay)],
        [warmup],
    )


def _cosine(peak, warmup, total):
    return optax.warmup_cosine_decay_schedule(0.0, peak, max(warmup, 1), max(total, warmup + 1))


def _constant(peak, warmup, total):
    del total
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak)], [warmup]
    )


SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant": _constant}


def make_schedule(kind: str, *, peak: float, warmup_steps: int, total_steps: int):
    """Learning rate at each optimizer update: linear warmup from 0, then `kind` decay to 0."""
    if kind not in SCHEDULES:
        raise ConfigError(f"config.schedule: expected one of {sorted(SCHEDULES)}, got {kind!r}")
    if peak <= 0:
        raise ConfigError(f"config.learning_rate: expected > 0, got {peak}")
    return SCHEDULES[kind](peak, warmup_steps, total_steps)


def make_optimizer(
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "linear",
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    grad_clip_norm: float = 1.0,
    grad_accum_steps: int = 1,
    prune=None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW chain. `total_steps`/`warmup_steps` count optimizer updates (after accumulation).

    Returns (tx, schedule). With grad_accum_steps > 1 the chain is wrapped in optax.MultiSteps:
    gradients of `grad_accum_steps` consecutive micro-batches are averaged before one update.
    """
    if grad_accum_steps < 1:
        raise ConfigError(f"config.grad_accum_steps: expected >= 1, got {grad_accum_steps}")
    if not 0 <= warmup_steps:
        raise ConfigError(f"config.warmup: expected >= 0 steps, got {warmup_steps}")
    lr = make_schedule(schedule, peak=learning_rate, warmup_steps=warmup_steps,
                       total_steps=total_steps)
    parts = []
    if grad_clip_norm and grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(grad_clip_norm))
    parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                             mask=decay_mask))
    tx = optax.chain(*parts)
    if prune is not None and prune.sparsity > 0:  # masks applied after AdamW, per update
        from tkd_jax.compress.magnitude import pruned_optimizer

        tx = pruned_optimizer(tx, final_sparsity=prune.sparsity, scope=prune.scope,
                              begin=int(prune.begin_ratio * total_steps),
                              end=int(prune.end_ratio * total_steps), frequency=prune.frequency)
    if grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=grad_accum_steps)
    return tx, lr
