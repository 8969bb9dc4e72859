"""Train state: step, params, optimizer state, fp16 loss scale and the base RNG, as one pytree.

Teacher parameters never live here (they are passed to the step separately), so they are never
written into the student's checkpoints.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import dynamic_scale as dynamic_scale_lib
from flax.training import train_state

PRECISIONS = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}


class TrainState(train_state.TrainState):
    """flax TrainState + `dynamic_scale` (fp16 only, else None) + `rng` (raw uint32[2] key data).

    `params` is a dict: {"model": <model params>} plus, for feature distillation between layers of
    different widths, {"projection": {...}} (learned student->teacher width maps).
    """

    dynamic_scale: dynamic_scale_lib.DynamicScale | None = None
    rng: jax.Array = struct.field(default_factory=lambda: jnp.zeros((2,), jnp.uint32))


def compute_dtype(precision: str):
    return PRECISIONS[precision]


def create_train_state(
    *, apply_fn, params: dict[str, Any], tx: optax.GradientTransformation, precision: str,
    rng: jax.Array, loss_scale: float = 2.0**15, loss_scale_growth_interval: int = 2000,
) -> TrainState:
    """Build the initial state. `rng` is a raw uint32 key (jax.random.PRNGKey)."""
    dyn = None
    if precision == "fp16":
        dyn = dynamic_scale_lib.DynamicScale(
            scale=jnp.asarray(loss_scale, jnp.float32),
            growth_interval=loss_scale_growth_interval,
            fin_steps=jnp.asarray(0, jnp.int32),
        )
    return TrainState.create(apply_fn=apply_fn, params=params, tx=tx, dynamic_scale=dyn, rng=rng)
