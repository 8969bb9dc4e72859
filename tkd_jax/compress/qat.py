"""Quantization-aware training: a Transformer whose Dense layers train through int8 (qwix).

``qat_module(module, "int8")`` returns the module wrapped by qwix's quantized-training
provider with the same rules as the ``int8_dynamic`` runtime (Dense layers only, weights per
output channel, activations per token, ``int8 x int8 -> int32`` forward, straight-through
gradients). Parameters keep their float names and shapes, so the wrapped module drops into
any train step (the task loss or distillation from an fp32 teacher: the teacher is a separate
module) and its checkpoints are ordinary float params; deploy them with
``runtime.make_runtime("int8_dynamic", float_module, params)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import qwix

from tkd_jax.compress.runtime import DENSE_PATH
from tkd_jax.errors import ConfigError

QAT_KINDS = ("none", "int8")


def qat_rules(kind: str) -> list[qwix.QtRule]:
    if kind == "int8":
        return [qwix.QtRule(module_path=DENSE_PATH, weight_qtype=jnp.int8, act_qtype=jnp.int8)]
    raise ConfigError(f"config.qat={kind!r}: expected one of {list(QAT_KINDS)}")


def qat_module(module, kind: str = "int8"):
    """``module`` itself for ``kind == "none"``, else its qwix quantized-training wrapper."""
    if kind == "none":
        return module
    return qwix.quantize_model(module, qwix.QtProvider(qat_rules(kind)))
