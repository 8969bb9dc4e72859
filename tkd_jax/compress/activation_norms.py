"""Input-activation norms of the encoder's Dense layers: the ||X_j|| of Wanda's score.

``input_norms(module, params, batches)`` runs the unpruned model on calibration batches and
returns, for every prunable kernel (``magnitude.is_prunable``), the L2 norm over all real
tokens of each of its input features: ``{kernel path: [in] float32}``. With these as
``scales``, ``magnitude.magnitude_masks`` scores a weight by |W_ij| ||X_j|| (Sun et al. 2024,
"A Simple and Effective Pruning Approach for Large Language Models").

The inputs are read with ``flax.linen.intercept_methods`` around the model's own Dense layers,
so the model code carries no hooks. Unlike Wanda's reference code, which prunes layer by layer
and feeds the pruned layer's outputs to the next, every norm here comes from the unpruned
model in one pass: the recovery fine-tuning that follows re-fits the layers anyway, and one
pass keeps the scores fixed while the schedule prunes gradually.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from tkd_jax.compress import magnitude
from tkd_jax.models.precision import Dense


def _sums_of_squares(module, params, batch) -> dict:
    """{kernel path: [in] sum over real tokens of x_j^2} for one batch (traced once)."""
    real = batch["attention_mask"].astype(jnp.float32)  # [b, l]
    sums = {}

    def record(next_fun, args, kwargs, context):
        path = (*context.module.path, "kernel")
        if (context.method_name == "__call__" and isinstance(context.module, Dense)
                and magnitude.is_prunable(path)):
            x = args[0].astype(jnp.float32)  # [b, l, in]
            sums[path] = jnp.einsum("bli,bl->i", x * x, real)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        module.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                     batch["token_type_ids"], deterministic=True)
    return sums


def input_norms(module, params, batches) -> dict:
    """{flattened kernel path: [in] float32 L2 norm of that input feature over real tokens}."""
    step = jax.jit(lambda p, b: _sums_of_squares(module, p, b))
    total = None
    for batch in batches:
        sums = step(params, {k: batch[k] for k in
                             ("input_ids", "attention_mask", "token_type_ids")})
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        total = sums if total is None else {k: total[k] + sums[k] for k in total}
    if total is None:
        raise ValueError("input_norms: no calibration batches")
    return {k: np.sqrt(v).astype(np.float32) for k, v in total.items()}
