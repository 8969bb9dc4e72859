"""Build any model by name, and count parameters.

One dict maps every model name to its config (Transformer presets and baselines), a second
maps each config type to its module class.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tkd_jax.errors import ConfigError
from tkd_jax.models.baselines import BASELINES, CNNClassifier, CNNConfig, RNNClassifier, RNNConfig
from tkd_jax.models.transformer import PRESETS, Transformer, TransformerConfig, _replace

MODEL_CONFIGS = {**PRESETS, **BASELINES}  # name -> default config
MODULES = {TransformerConfig: Transformer, RNNConfig: RNNClassifier, CNNConfig: CNNClassifier}


def model_config(
    name: str,
    *,
    num_labels: int,
    vocab_size: int | None = None,
    dtype: Any = jnp.float32,
    **overrides,
) -> TransformerConfig | RNNConfig | CNNConfig:
    """The config ``create_model`` would use (unknown name or field -> ConfigError)."""
    key = name.lower()
    if key not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model {name!r}; valid: {sorted(MODEL_CONFIGS)}")
    fields = dict(overrides, num_labels=num_labels, dtype=dtype)
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return _replace(MODEL_CONFIGS[key], fields)


def create_model(
    name: str,
    *,
    num_labels: int,
    vocab_size: int | None = None,
    dtype: Any = jnp.float32,
    **overrides,
) -> nn.Module:
    """A Flax module by name: a Transformer preset (``paper``, ``minilm_l6``, ``student_small``,
    ``tiny``) or a baseline (``rnn``, ``lstm``, ``bilstm``, ``cnn``).

    ``vocab_size`` (None keeps the preset's 30522), ``dtype`` (compute) and ``**overrides``
    (any config field) replace the preset's values. Parameters are always stored in fp32.
    """
    config = model_config(
        name, num_labels=num_labels, vocab_size=vocab_size, dtype=dtype, **overrides
    )
    return MODULES[type(config)](config)


def count_params(params) -> int:
    """Number of scalars in a param pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
