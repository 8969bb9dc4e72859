"""Masked-language-model head and model, for the pre-training stage of the paper's pipeline.

Parameter names follow Hugging Face ``BertForMaskedLM``: ``cls/predictions/transform/dense``,
``cls/predictions/transform/LayerNorm`` and ``cls/predictions/bias``; the decoder matrix is
the word embedding itself (tied, via ``Embeddings.attend``), so it adds no parameters. The
encoder parameters (``embeddings``, ``encoder``) have exactly the paths of a
:class:`~tkd_jax.models.transformer.Transformer`, so MLM-pre-trained weights drop into a
classifier unchanged (its ``pooler``/``classifier`` start fresh).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from tkd_jax.models.outputs import ModelOutput
from tkd_jax.models.transformer import (
    ACTIVATIONS,
    Embeddings,
    Encoder,
    TransformerConfig,
    _dense,
    _layer_norm,
)


class _Transform(nn.Module):
    """LayerNorm(act(x W + b)), ``[b, l, hidden] -> [b, l, hidden]``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        x = ACTIVATIONS[cfg.activation](_dense(cfg, cfg.hidden_size, "dense")(x))
        return _layer_norm(cfg)(x)


class _Predictions(nn.Module):
    """transform, then the tied decoder ``x E^T`` plus a per-token bias (fp32 output)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, embeddings: Embeddings):
        cfg = self.config
        x = _Transform(cfg, name="transform")(x)
        bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,), cfg.param_dtype)
        return embeddings.attend(x).astype(jnp.float32) + bias.astype(jnp.float32)


class MaskedLMHead(nn.Module):
    """``[b, l, hidden]`` hidden states -> ``[b, l, vocab]`` float32 logits.

    Use it as ``MaskedLMHead(config, name="cls")(hidden, embeddings_module)``; the decoder
    weight is ``embeddings/word_embeddings/embedding`` of that module.
    """

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, embeddings: Embeddings):
        return _Predictions(self.config, name="predictions")(x, embeddings)


class TransformerForMaskedLM(nn.Module):
    """Embeddings + encoder + :class:`MaskedLMHead` (no pooler, no classifier).

    Same calling convention as :class:`~tkd_jax.models.transformer.Transformer`; returns a
    ``ModelOutput`` whose ``logits`` are ``[b, l, vocab]`` float32 and ``pooled`` is None.
    ``config.num_labels``, ``use_pooler`` and ``pooling`` are ignored.
    """

    config: TransformerConfig

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask,
        token_type_ids=None,
        *,
        deterministic: bool = True,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        cfg = self.config
        mask = attention_mask.astype(bool)
        embeddings = Embeddings(cfg, name="embeddings")
        x = embeddings(input_ids, token_type_ids, deterministic=deterministic)
        states, probs = Encoder(cfg, name="encoder")(x, mask, deterministic=deterministic)
        logits = MaskedLMHead(cfg, name="cls")(states[-1], embeddings)
        return ModelOutput(
            logits=logits,
            pooled=None,
            last_hidden_state=states[-1],
            hidden_states=states if output_hidden_states else None,
            attentions=probs if output_attentions else None,
        )
