"""Export our Transformer's parameters as a Hugging Face BERT checkpoint directory.

The inverse of :mod:`tkd_jax.models.hf_import`: the same key table read the other way
(Dense kernels ``[in, out]`` transposed back to torch ``Linear.weight`` ``[out, in]``), so
``load_hf_bert(save_hf_bert(dir, config, params, vocab_file))`` returns the same tree (the
classifier, which BERT checkpoints do not hold, is left out). Used to hand a trained student to
transformers users and to write small random teachers for tests and engine checks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from tkd_jax.models.hf_import import CONFIG, SAFETENSORS, key_table
from tkd_jax.models.transformer import TransformerConfig


def hf_config_dict(config: TransformerConfig) -> dict[str, Any]:
    """config.json of a ``BertModel`` with this architecture."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.activation,
        "max_position_embeddings": config.max_len,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": config.dropout_rate,
        "attention_probs_dropout_prob": config.attention_dropout_rate,
        "initializer_range": config.initializer_range,
        "position_embedding_type": "absolute",
    }


def save_hf_bert(path: str | Path, config: TransformerConfig, params, vocab_file) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``vocab.txt`` into directory ``path``."""
    if config.position != "learned":
        raise ValueError("save_hf_bert: BERT checkpoints have learned positions only")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(k): np.asarray(v, np.float32)
            for k, v in traverse_util.flatten_dict(params).items()}
    tensors = {}
    for hf_name, (ours, fn) in key_table(config.num_layers, use_pooler=config.use_pooler).items():
        tensors[hf_name] = np.ascontiguousarray(fn(flat[ours]))  # both transforms self-inverse
    (path / CONFIG).write_text(json.dumps(hf_config_dict(config), indent=2) + "\n")
    save_file(tensors, str(path / SAFETENSORS), metadata={"format": "pt"})
    shutil.copy(vocab_file, path / "vocab.txt")
    return path
