"""Models: the paper's Transformer (BERT-compatible names), RNN/LSTM/CNN baselines, MLM head.

    from tkd_jax.models import create_model, count_params
    model = create_model("paper", num_labels=2)
"""

from tkd_jax.models.baselines import (
    BASELINES,
    CNNClassifier,
    CNNConfig,
    RNNClassifier,
    RNNConfig,
)
from tkd_jax.models.mlm import MaskedLMHead, TransformerForMaskedLM
from tkd_jax.models.outputs import ModelOutput
from tkd_jax.models.registry import MODEL_CONFIGS, count_params, create_model, model_config
from tkd_jax.models.transformer import (
    PRESETS,
    Transformer,
    TransformerConfig,
    get_config,
    sinusoidal_positions,
)

__all__ = [
    "BASELINES",
    "CNNClassifier",
    "CNNConfig",
    "MODEL_CONFIGS",
    "MaskedLMHead",
    "ModelOutput",
    "PRESETS",
    "RNNClassifier",
    "RNNConfig",
    "Transformer",
    "TransformerConfig",
    "TransformerForMaskedLM",
    "count_params",
    "create_model",
    "get_config",
    "model_config",
    "sinusoidal_positions",
]
