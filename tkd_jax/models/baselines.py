"""The paper's non-Transformer baselines: Elman RNN, (Bi)LSTM and a Kim (2014) CNN.

Same calling convention and :class:`ModelOutput` as the Transformer:
``model.apply({"params": p}, input_ids [b, l], attention_mask [b, l], token_type_ids=None, *,
deterministic=True, output_hidden_states=False, output_attentions=False)``.

Sentence pairs arrive as one sequence ``[CLS] a [SEP] b [SEP]``; a token-type embedding
(``type_vocab_size`` rows, added to the word embedding) lets the model tell the halves apart.

Padding never changes the result: recurrences run with ``seq_lengths`` so padded steps are
skipped (the backward direction of a BiLSTM reverses only the valid prefix), padded outputs
are zeroed, and the CNN only pools over windows that start at a real token, whose positions
past the end see zero vectors (as Kim's zero padding).

Pooled features (what the classifier reads, and the target of feature distillation):
- recurrent models, ``pooling="last"`` (default): the hidden state at the last real token;
  for the BiLSTM the concatenation of the forward state at the last real token and the
  backward state at the first token (each direction's final state). ``"max"`` / ``"mean"``
  pool the top layer's outputs over real tokens instead.
- CNN: max-over-time of ReLU feature maps per kernel width, concatenated
  (``len(kernel_sizes) * num_filters`` features).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tkd_jax.errors import ConfigError
from tkd_jax.models.outputs import ModelOutput
from tkd_jax.models.transformer import _replace

CELLS = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell}  # Elman (tanh) | LSTM


def last_pool(seq, mask, bidirectional: bool):
    """Each direction's final state: ``[b, l, d] -> [b, d]`` (see module docstring)."""
    last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)  # [b] index of the last real token
    forward = jnp.take_along_axis(seq, last[:, None, None], axis=1)[:, 0]
    if not bidirectional:
        return forward
    half = seq.shape[-1] // 2
    return jnp.concatenate([forward[:, :half], seq[:, 0, half:]], axis=-1)


def max_pool(seq, mask, bidirectional: bool):
    """Max over real tokens: ``[b, l, d] -> [b, d]``."""
    del bidirectional
    return jnp.max(jnp.where(mask[..., None], seq, jnp.finfo(seq.dtype).min), axis=1)


def mean_pool(seq, mask, bidirectional: bool):
    """Mean over real tokens (fp32 sums): ``[b, l, d] -> [b, d]``."""
    del bidirectional
    m = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(seq.astype(jnp.float32) * m, axis=1)
    return (total / jnp.maximum(jnp.sum(m, axis=1), 1.0)).astype(seq.dtype)


POOLINGS = {"last": last_pool, "max": max_pool, "mean": mean_pool}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNConfig:
    """A stacked Elman RNN or LSTM classifier (optionally bidirectional)."""

    cell: str = "lstm"  # "rnn" (Elman, tanh) | "lstm"
    vocab_size: int = 30522  # same WordPiece vocabulary as the Transformer students
    embed_dim: int = 300  # the classic word-vector size
    hidden_size: int = 256  # per direction
    num_layers: int = 1  # stacked recurrent layers
    bidirectional: bool = False  # concat forward and backward outputs
    pooling: str = "last"  # "last" | "max" | "mean" (see module docstring)
    type_vocab_size: int = 2  # token-type ids for sentence pairs; 0 = ignore them
    dropout_rate: float = 0.2  # on embeddings, between layers and on the pooled features
    num_labels: int = 2  # 1 = regression (STS-B)
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _check_choice(self, "cell", CELLS)
        _check_choice(self, "pooling", POOLINGS)
        _check_positive(self, "embed_dim", "hidden_size", "num_layers", "num_labels")

    def replace(self, **overrides) -> RNNConfig:
        return _replace(self, overrides)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNConfig:
    """Kim (2014) CNN for sentence classification (CNN-rand: embeddings learned from scratch)."""

    vocab_size: int = 30522
    embed_dim: int = 300
    kernel_sizes: tuple[int, ...] = (3, 4, 5)  # window widths in tokens
    num_filters: int = 100  # feature maps per width
    type_vocab_size: int = 2  # token-type ids for sentence pairs; 0 = ignore them
    dropout_rate: float = 0.5  # on the pooled features, as Kim
    num_labels: int = 2  # 1 = regression (STS-B)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        object.__setattr__(self, "kernel_sizes", tuple(self.kernel_sizes))  # lists -> hashable
        _check_positive(self, "embed_dim", "num_filters", "num_labels")
        if not self.kernel_sizes or min(self.kernel_sizes) < 1:
            raise ConfigError(
                f"CNNConfig.kernel_sizes: expected positive widths, got {self.kernel_sizes}"
            )

    def replace(self, **overrides) -> CNNConfig:
        return _replace(self, overrides)


def _check_choice(config, field: str, valid):
    if getattr(config, field) not in valid:
        raise ConfigError(
            f"{type(config).__name__}.{field}: expected one of {sorted(valid)}, "
            f"got {getattr(config, field)!r}"
        )


def _check_positive(config, *fields: str):
    for field in fields:
        if getattr(config, field) < 1:
            raise ConfigError(
                f"{type(config).__name__}.{field}: expected a positive integer, "
                f"got {getattr(config, field)!r}"
            )


class TokenEmbed(nn.Module):
    """Word (+ token-type) embedding, ``[b, l] int32 -> [b, l, embed_dim]`` compute dtype."""

    config: RNNConfig | CNNConfig

    @nn.compact
    def __call__(self, input_ids, token_type_ids=None):
        cfg = self.config
        embed = functools.partial(
            nn.Embed,
            features=cfg.embed_dim,
            embedding_init=nn.initializers.normal(0.1),
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
        )
        x = embed(cfg.vocab_size, name="word")(input_ids)
        if cfg.type_vocab_size > 0:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            x = x + embed(cfg.type_vocab_size, name="token_type")(token_type_ids)
        return x


def _classify(config, pooled, deterministic: bool):
    """Dropout then an fp32 Dense head: ``[b, d] -> [b, num_labels]`` float32."""
    h = nn.Dropout(config.dropout_rate)(pooled, deterministic=deterministic)
    return nn.Dense(config.num_labels, dtype=jnp.float32, param_dtype=config.param_dtype,
                    name="classifier")(h.astype(jnp.float32))


def _recurrent_layer(config: RNNConfig, name: str) -> nn.Module:
    """``[b, l, in] -> [b, l, hidden * (2 if bidirectional else 1)]``, given seq_lengths."""

    def rnn(**kw):
        # parent=None: the cell (and, when bidirectional, each direction's RNN) is adopted
        # by its wrapper, so params nest as rnn_{i}/[forward_rnn|backward_rnn/]cell/...
        cell = CELLS[config.cell](
            config.hidden_size, dtype=config.dtype, param_dtype=config.param_dtype, parent=None
        )
        return nn.RNN(cell, **kw)

    if not config.bidirectional:
        return rnn(name=name)
    # keep_order + seq_lengths: the backward pass reverses only each valid prefix.
    return nn.Bidirectional(
        rnn(parent=None), rnn(reverse=True, keep_order=True, parent=None), name=name
    )


class RNNClassifier(nn.Module):
    """Embedding -> ``num_layers`` recurrent layers -> pooling -> classifier.

    ``last_hidden_state`` is the top layer's outputs ``[b, l, hidden * (2 if bi else 1)]``
    (zeros at padded positions); ``hidden_states`` (when asked) is the embedding output plus
    every layer's outputs; ``attentions`` is always None.
    """

    config: RNNConfig

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
        del output_attentions  # no attention maps in a recurrent model
        cfg = self.config
        mask = attention_mask.astype(bool)
        lengths = jnp.sum(mask, axis=1).astype(jnp.int32)  # padding is always at the end
        x = TokenEmbed(cfg, name="embed")(input_ids, token_type_ids)
        states = [x]
        for i in range(cfg.num_layers):
            x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
            x = _recurrent_layer(cfg, f"rnn_{i}")(x, seq_lengths=lengths)
            x = jnp.where(mask[..., None], x, 0).astype(cfg.dtype)  # [b, l, hidden (x2)]
            states.append(x)
        pooled = POOLINGS[cfg.pooling](x, mask, cfg.bidirectional)
        return ModelOutput(
            logits=_classify(cfg, pooled, deterministic),
            pooled=pooled,
            last_hidden_state=x,
            hidden_states=tuple(states) if output_hidden_states else None,
        )



class CNNClassifier(nn.Module):
    """Kim (2014): embedding -> Conv1D per width -> ReLU -> max-over-time -> classifier.

    Window t of width k covers tokens t..t+k-1; only windows starting at a real token are
    pooled, and embeddings at padded positions are zeroed, so the tail of a window past the
    sentence end sees zero vectors regardless of how much padding follows. ReLU outputs are
    >= 0, so masking to 0 before the max is exact. ``last_hidden_state`` is the concatenated
    per-position feature maps ``[b, l, len(kernel_sizes) * num_filters]``; ``hidden_states``
    and ``attentions`` are None.
    """

    config: CNNConfig

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
        del output_hidden_states, output_attentions  # a CNN has neither
        cfg = self.config
        mask = attention_mask.astype(bool)[..., None]  # [b, l, 1]
        x = jnp.where(mask, TokenEmbed(cfg, name="embed")(input_ids, token_type_ids), 0)
        maps = []
        for k in cfg.kernel_sizes:
            conv = nn.Conv(cfg.num_filters, (k,), padding=((0, k - 1),), dtype=cfg.dtype,
                           param_dtype=cfg.param_dtype, name=f"conv_{k}")
            maps.append(jnp.where(mask, nn.relu(conv(x)), 0))  # [b, l, num_filters]
        features = jnp.concatenate(maps, axis=-1)
        pooled = jnp.max(features, axis=1)  # max-over-time
        return ModelOutput(
            logits=_classify(cfg, pooled, deterministic),
            pooled=pooled,
            last_hidden_state=features,
        )


BASELINES: dict[str, RNNConfig | CNNConfig] = {
    "rnn": RNNConfig(cell="rnn"),
    "lstm": RNNConfig(cell="lstm"),
    "bilstm": RNNConfig(cell="lstm", bidirectional=True),
    "cnn": CNNConfig(),
}
