"""How a (possibly compressed) Transformer runs: fp32, bf16 Dense matmuls, or int8 w8a8.

``make_runtime(name, module, params) -> (apply, runtime_params)`` where
``apply(runtime_params, input_ids [b, l] int32, attention_mask [b, l], token_type_ids [b, l])
-> logits [b, num_labels] float32`` is a pure function to jit.

- ``fp32``: the module as it is.
- ``bf16``: the model's own mixed precision (``TransformerConfig.dtype=bfloat16``): every
  Dense and attention matmul takes bf16 operands and accumulates in f32 (f32 output);
  LayerNorm, softmax and the classifier stay f32. (Flax's ``Dense(dtype=bfloat16)`` would
  return a bf16 *output* that XLA:CPU converts back and runs slower than fp32; qwix has no
  "bf16 operands, f32 result" rule.)
- ``int8_dynamic``: qwix PTQ on the Dense layers only (Q/K/V, attention output, FFN, pooler;
  not the classifier and not the attention-score einsums, which qwix would quantize by
  default): weights int8 per output channel, activations int8 per token at run time,
  ``int8 x int8 -> int32`` dots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import qwix

from tkd_jax.errors import ConfigError
from tkd_jax.models.transformer import Transformer

# Module paths of the Dense layers qwix quantizes (the classifier is excluded: 2 outputs).
DENSE_PATH = r".*/(query|key|value|dense)$"


def _fp32(module, params):
    def apply(p, ids, mask, types):
        return module.apply({"params": p}, ids, mask, types).logits

    return apply, jax.tree.map(jnp.asarray, params)


def _bf16(module, params):
    # The model's own mixed precision (``TransformerConfig.dtype``, models/precision.py), the
    # path training uses: every Dense and attention matmul as 2-D/batched ``bf16 x bf16 -> f32``
    # dots laid out for XLA:CPU's fast kernels. (A Dense interceptor doing ``x.astype(bf16) @
    # w`` on the 3-D activations measured slower than fp32 at batch 1 x 128: 0.86x.)
    bmodule = Transformer(dataclasses.replace(module.config, dtype=jnp.bfloat16))

    def apply(p, ids, mask, types):
        return bmodule.apply({"params": p}, ids, mask, types).logits

    # Dense kernels are stored bf16 (half the bytes to read); everything else stays f32.
    def cast(path, x):
        name = getattr(path[-1], "key", "")
        keep = name != "kernel" or any(getattr(k, "key", "") == "classifier" for k in path)
        return jnp.asarray(x, jnp.float32 if keep else jnp.bfloat16)

    return apply, jax.tree_util.tree_map_with_path(cast, params)


def int8_dynamic_rules(module_path: str = DENSE_PATH) -> list[qwix.QuantizationRule]:
    return [qwix.QuantizationRule(module_path=module_path, weight_qtype=jnp.int8,
                                  act_qtype=jnp.int8)]


def quantize_int8_dynamic(module, params, *example_args, module_path: str = DENSE_PATH):
    """(qwix-quantized module, its int8 params) of ``module``: w8a8 on the layers whose path
    matches ``module_path``; ``example_args`` (any small shapes) give the params' structure."""
    qmodule = qwix.quantize_model(module, qwix.PtqProvider(int8_dynamic_rules(module_path)))
    abstract = jax.eval_shape(
        lambda: qmodule.init(jax.random.PRNGKey(0), *example_args))["params"]
    return qmodule, qwix.quantize_params(jax.tree.map(jnp.asarray, params), abstract)


def _int8_dynamic(module, params):
    ids = jnp.zeros((1, 8), jnp.int32)
    qmodule, qparams = quantize_int8_dynamic(module, params, ids, jnp.ones_like(ids), ids)

    def apply(p, ids, mask, types):
        return qmodule.apply({"params": p}, ids, mask, types).logits

    return apply, qparams


RUNTIMES: dict[str, Callable] = {"fp32": _fp32, "bf16": _bf16, "int8_dynamic": _int8_dynamic}


def make_runtime(name: str, module, params):
    """(apply, runtime_params) for runtime ``name`` (see the module docstring)."""
    if name not in RUNTIMES:
        raise ConfigError(f"runtime {name!r}: expected one of {sorted(RUNTIMES)}")
    return RUNTIMES[name](module, jax.tree.map(np.asarray, params))
