"""The Transformer encoder of the paper (eqs 1-8) with BERT-compatible parameter names.

Reads top-down from small blocks to the whole model:
  sinusoidal_positions (eqs 1-2) -> Embeddings -> attention_probs (eq 8) -> SelfAttention
  (eqs 3-5: W^Q, W^K, W^V, heads, concat, W^O) -> FFN (eq 6) -> EncoderLayer (post-LN
  residual blocks) -> Encoder -> pooling / pooler / classifier -> Transformer.

Parameter paths mirror Hugging Face PyTorch BERT (``embeddings/word_embeddings``,
``encoder/layer/0/attention/self/query``, ...), so a checkpoint import is a rename plus
transposing Dense kernels (ours are ``[in, out]``, torch ``Linear.weight`` is ``[out, in]``).

Mixed precision: ``config.dtype`` is the compute dtype, ``config.param_dtype`` the storage
dtype (fp32). Under bf16/fp16 every Dense and attention matmul takes compute-dtype operands and
accumulates in fp32, forward and backward (``precision.py``); Dense outputs, softmax, LayerNorm
statistics, pooling sums and the classifier are fp32; logits are always returned as float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tkd_jax.errors import ConfigError
from tkd_jax.models.outputs import ModelOutput
from tkd_jax.models.precision import Dense, attention_context, attention_scores


def gelu_erf(x):
    """Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), written as Hugging Face BERT does.

    The same function as ``nn.gelu(approximate=False)`` (within 1e-6 absolute on [-12, 12]),
    whose erfc form XLA:CPU lowers to several exp/select passes; erf is one rational
    polynomial, about 3x cheaper per element in the minilm_l6 train step.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(1 / np.sqrt(2), x.dtype)))


ACTIVATIONS = {
    "relu": nn.relu,  # the paper's eq 6: max(0, x W1 + b1) W2 + b2
    "gelu": gelu_erf,  # exact erf GELU, as BERT
}
POSITIONS = ("sinusoidal", "learned")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Architecture of a :class:`Transformer` (hashable, so it can be a static jit argument)."""

    vocab_size: int = 30522  # WordPiece vocabulary of bert-base-uncased / MiniLM
    hidden_size: int  # d_model
    num_layers: int  # N encoder layers
    num_heads: int  # h; head size d_k = hidden_size / num_heads
    intermediate_size: int  # d_ff of the FFN (eq 6)
    activation: str = "gelu"  # "relu" (paper) | "gelu" (BERT, exact erf)
    position: str = "learned"  # "sinusoidal" (eqs 1-2, no params) | "learned" (BERT)
    max_len: int = 512  # rows of the learned position table
    type_vocab_size: int = 2  # token-type (segment) ids for sentence pairs; 0 = none
    dropout_rate: float = 0.1  # embeddings, sub-layer outputs, classifier input
    attention_dropout_rate: float = 0.1  # on the attention probabilities
    layer_norm_eps: float = 1e-12  # BERT's epsilon
    pooling: str = "cls"  # "cls" (first token) | "mean" (masked mean over real tokens)
    use_pooler: bool = True  # BERT pooler: dense + tanh on the pooled vector
    num_labels: int = 2  # classifier width; 1 = regression (STS-B); 0 = bare encoder
    dtype: Any = jnp.float32  # compute dtype (jnp.bfloat16 for mixed precision)
    param_dtype: Any = jnp.float32  # parameter storage dtype
    initializer_range: float = 0.02  # std of the normal init of kernels and embeddings
    # Multiply the word embeddings by sqrt(hidden_size) before adding the positions, as
    # Vaswani et al. (2017, section 3.4) do: eqs 1-2's sinusoids have per-dimension RMS 0.71,
    # a word embedding initialised at std 0.02 has 0.02, and unscaled the positions outweigh
    # the tokens 35 to 1 after the sum (a 12-layer paper model then learnt no task at all).
    # BERT's learned positions are initialised like the words, so BERT presets leave it off.
    scale_embeddings: bool = False
    # Per-layer sizes of a structurally pruned model; () = uniform num_heads / intermediate_size.
    # Head size stays hidden_size / num_heads, so layer i's Q/K/V width is heads_i * d_k.
    layer_num_heads: tuple[int, ...] = ()
    layer_intermediate_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        checks = {
            "activation": (self.activation in ACTIVATIONS, sorted(ACTIVATIONS)),
            "position": (self.position in POSITIONS, list(POSITIONS)),
            "pooling": (self.pooling in POOLINGS, sorted(POOLINGS)),
        }
        for field, (ok, valid) in checks.items():
            if not ok:
                raise ConfigError(
                    f"TransformerConfig.{field}: expected one of {valid}, "
                    f"got {getattr(self, field)!r}"
                )
        if self.num_heads <= 0 or self.hidden_size % self.num_heads:
            raise ConfigError(
                f"TransformerConfig.hidden_size={self.hidden_size} must be a positive multiple "
                f"of num_heads={self.num_heads}"
            )
        if self.position == "sinusoidal" and self.hidden_size % 2:
            raise ConfigError(
                f"TransformerConfig.hidden_size={self.hidden_size} must be even for sinusoidal "
                "positions (eqs 1-2 pair sin/cos dimensions)"
            )
        if self.num_labels < 0:
            raise ConfigError(f"TransformerConfig.num_labels must be >= 0, got {self.num_labels}")
        for field, most in (("layer_num_heads", self.num_heads),
                            ("layer_intermediate_sizes", None)):
            sizes = tuple(int(n) for n in getattr(self, field))  # JSON gives lists
            object.__setattr__(self, field, sizes)
            if sizes and (len(sizes) != self.num_layers
                          or any(n < 1 or (most and n > most) for n in sizes)):
                bound = f"in [1, {most}]" if most else ">= 1"
                raise ConfigError(
                    f"TransformerConfig.{field}={sizes}: expected () or {self.num_layers} "
                    f"sizes, each {bound}"
                )

    def heads_of(self, layer: int) -> int:
        """Attention heads of encoder layer ``layer``."""
        return self.layer_num_heads[layer] if self.layer_num_heads else self.num_heads

    def intermediate_of(self, layer: int) -> int:
        """FFN width d_ff of encoder layer ``layer``."""
        if self.layer_intermediate_sizes:
            return self.layer_intermediate_sizes[layer]
        return self.intermediate_size

    def replace(self, **overrides) -> TransformerConfig:
        return _replace(self, overrides)


def _replace(config, overrides: dict):
    """dataclasses.replace that names an unknown field in a ConfigError."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"{type(config).__name__}: unknown field(s) {unknown}; valid fields: {sorted(names)}"
        )
    return dataclasses.replace(config, **overrides)


# ----------------------------------------------------------------------------- embeddings


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Eqs 1-2: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).

    Returns a float32 NumPy array ``[length, dim]`` (a constant, not a parameter).
    """
    pos = np.arange(length, dtype=np.float64)[:, None]
    two_i = np.arange(0, dim, 2, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, two_i / dim)  # [length, dim / 2]
    table = np.empty((length, dim), np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle)
    return table.astype(np.float32)


def _dense(config: TransformerConfig, features: int, name: str) -> Dense:
    # precision.Dense: under bf16, bf16 operands and fp32 accumulation in forward and backward.
    return Dense(
        features,
        kernel_init=nn.initializers.normal(config.initializer_range),
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        name=name,
    )


def _layer_norm(config: TransformerConfig, name: str | None = "LayerNorm") -> nn.LayerNorm:
    # flax computes the statistics in fp32 even for bf16 inputs.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        name=name,
    )


class Embeddings(nn.Module):
    """Token (e_i = W_e x_i) + position + token-type embeddings, then LayerNorm and dropout.

    ``__call__(input_ids [b, l] int32, token_type_ids [b, l] int32 | None) -> [b, l, hidden]``
    in the compute dtype. ``attend(x [..., hidden]) -> [..., vocab]`` multiplies by the
    transposed word-embedding matrix (the tied MLM decoder).
    """

    config: TransformerConfig

    def setup(self):
        cfg = self.config
        embed = functools.partial(
            nn.Embed,
            features=cfg.hidden_size,
            embedding_init=nn.initializers.normal(cfg.initializer_range),
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
        )
        self.word_embeddings = embed(cfg.vocab_size)
        if cfg.position == "learned":
            self.position_embeddings = embed(cfg.max_len)
        if cfg.type_vocab_size > 0:
            self.token_type_embeddings = embed(cfg.type_vocab_size)
        self.LayerNorm = _layer_norm(cfg, name=None)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def __call__(self, input_ids, token_type_ids=None, *, deterministic: bool = True):
        cfg = self.config
        length = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # [b, l, hidden]
        if cfg.scale_embeddings:
            x = x * jnp.asarray(math.sqrt(cfg.hidden_size), x.dtype)
        if cfg.position == "learned":
            if length > cfg.max_len:
                raise ConfigError(
                    f"input length {length} exceeds TransformerConfig.max_len={cfg.max_len}"
                )
            x = x + self.position_embeddings(jnp.arange(length))[None]
        else:
            x = x + jnp.asarray(sinusoidal_positions(length, cfg.hidden_size), cfg.dtype)[None]
        if cfg.type_vocab_size > 0:
            if token_type_ids is None:
                token_type_ids = jnp.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.LayerNorm(x)
        return self.dropout(x, deterministic=deterministic)

    def attend(self, x):
        return self.word_embeddings.attend(x)


# ----------------------------------------------------------------------------- attention


def attention_probs(q, k, key_mask, dtype=jnp.float32):
    """Eq 8's softmax(Q K^T / sqrt(d_k)) with a key-padding mask, per head.

    Args:
      q, k: ``[batch, len, heads, head_dim]`` in the compute dtype.
      key_mask: ``[batch, len]`` bool, True for real tokens.
      dtype: the matmul operand dtype (float32, or bfloat16/float16 for mixed precision;
        the product accumulates in float32 either way).
    Returns:
      ``[batch, heads, len_q, len_k]`` float32 probabilities; padded keys get exactly zero
      mass. A row whose keys are all padding becomes uniform instead of NaN because the
      fill value is the finite float32 minimum, not -inf.
    """
    scores = attention_scores(q, k, dtype=dtype)
    scores = scores / np.sqrt(q.shape[-1]).astype(np.float32)
    scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(scores, axis=-1)


class SelfAttention(nn.Module):
    """Eqs 3-4 and 8: head_i = Attention(X W^Q_i, X W^K_i, X W^V_i), heads concatenated.

    The h per-head projections are one Dense each for Q, K, V (``query``/``key``/``value``,
    kernels ``[hidden, hidden]``) whose outputs are reshaped to ``[b, l, heads, head_dim]``;
    head i uses columns ``i*d_k:(i+1)*d_k``. Returns the concatenated heads ``[b, l, hidden]``
    (before W^O) and the float32 probabilities ``[b, heads, l, l]``.
    """

    config: TransformerConfig
    layer: int = 0  # index in the stack (per-layer head counts of a pruned model)

    @nn.compact
    def __call__(self, x, key_mask, *, deterministic: bool = True):
        cfg = self.config
        b, length, _ = x.shape
        heads = cfg.heads_of(self.layer)
        split = (b, length, heads, cfg.hidden_size // cfg.num_heads)
        width = heads * split[-1]
        q = _dense(cfg, width, "query")(x).reshape(split)  # [b, l, h, d_k]
        k = _dense(cfg, width, "key")(x).reshape(split)
        v = _dense(cfg, width, "value")(x).reshape(split)
        probs = attention_probs(q, k, key_mask, cfg.dtype)  # [b, h, l, l] fp32
        dropped = nn.Dropout(cfg.attention_dropout_rate)(probs, deterministic=deterministic)
        context = attention_context(dropped, v, dtype=cfg.dtype)
        return context.reshape(b, length, width), probs  # concat(head_1..head_h)


class AddNorm(nn.Module):
    """Post-LN sub-layer end: LayerNorm(residual + Dropout(x W + b)).

    Holds ``dense`` (W^O after attention, W_2 after the FFN) and ``LayerNorm``.
    """

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, residual, *, deterministic: bool = True):
        cfg = self.config
        x = _dense(cfg, cfg.hidden_size, "dense")(x)
        x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        return _layer_norm(cfg)(x + residual)


class Attention(nn.Module):
    """Eq 5 inside a residual block: LayerNorm(x + Dropout(Concat(heads) W^O))."""

    config: TransformerConfig
    layer: int = 0

    @nn.compact
    def __call__(self, x, key_mask, *, deterministic: bool = True):
        context, probs = SelfAttention(self.config, self.layer, name="self")(
            x, key_mask, deterministic=deterministic
        )
        out = AddNorm(self.config, name="output")(context, x, deterministic=deterministic)
        return out, probs


class Intermediate(nn.Module):
    """First half of eq 6: act(x W_1 + b_1), ``[b, l, hidden] -> [b, l, intermediate]``."""

    config: TransformerConfig
    layer: int = 0

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        width = cfg.intermediate_of(self.layer)
        return ACTIVATIONS[cfg.activation](_dense(cfg, width, "dense")(x))


class EncoderLayer(nn.Module):
    """One post-LN encoder layer: attention block then FFN block (eq 6), both residual."""

    config: TransformerConfig
    layer: int = 0

    @nn.compact
    def __call__(self, x, key_mask, *, deterministic: bool = True):
        x, probs = Attention(self.config, self.layer, name="attention")(
            x, key_mask, deterministic=deterministic
        )
        h = Intermediate(self.config, self.layer, name="intermediate")(x)
        x = AddNorm(self.config, name="output")(h, x, deterministic=deterministic)
        return x, probs


class LayerStack(nn.Module):
    """The N layers, named ``"0"``, ``"1"``, ... so paths read ``encoder/layer/{i}/...``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, key_mask, *, deterministic: bool = True):
        states, probs = [x], []
        for i in range(self.config.num_layers):
            x, p = EncoderLayer(self.config, i, name=str(i))(x, key_mask,
                                                              deterministic=deterministic)
            states.append(x)
            probs.append(p)
        return tuple(states), tuple(probs)


class Encoder(nn.Module):
    """``[b, l, hidden]`` embeddings -> (all hidden states incl. the input, all attention maps)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, key_mask, *, deterministic: bool = True):
        return LayerStack(self.config, name="layer")(x, key_mask, deterministic=deterministic)


# ----------------------------------------------------------------------------- heads


def cls_pool(seq, mask):
    """The first ([CLS]) token: ``[b, l, d] -> [b, d]``."""
    del mask
    return seq[:, 0]


def mean_pool(seq, mask):
    """Mean over real tokens only (sum in fp32): ``[b, l, d], [b, l] bool -> [b, d]``."""
    m = mask.astype(jnp.float32)[..., None]
    total = jnp.sum(seq.astype(jnp.float32) * m, axis=1)
    return (total / jnp.maximum(jnp.sum(m, axis=1), 1.0)).astype(seq.dtype)


POOLINGS = {"cls": cls_pool, "mean": mean_pool}


class Pooler(nn.Module):
    """BERT pooler: tanh(x W + b) on the pooled vector, ``[b, hidden] -> [b, hidden]``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x):
        return jnp.tanh(_dense(self.config, self.config.hidden_size, "dense")(x))


class Transformer(nn.Module):
    """Encoder + pooling (+ BERT pooler) + classification/regression head.

    ``__call__(input_ids [b, l] int32, attention_mask [b, l] int/bool (1 = real token),
    token_type_ids [b, l] int32 | None, *, deterministic=True, output_hidden_states=False,
    output_attentions=False) -> ModelOutput``; dropout needs ``rngs={"dropout": key}`` when
    ``deterministic=False``. With ``num_labels == 0`` there is no classifier and
    ``logits`` is None.
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
        x = Embeddings(cfg, name="embeddings")(
            input_ids, token_type_ids, deterministic=deterministic
        )
        states, probs = Encoder(cfg, name="encoder")(x, mask, deterministic=deterministic)
        pooled = POOLINGS[cfg.pooling](states[-1], mask)
        if cfg.use_pooler:
            pooled = Pooler(cfg, name="pooler")(pooled)
        logits = None
        if cfg.num_labels > 0:
            h = nn.Dropout(cfg.dropout_rate)(pooled, deterministic=deterministic)
            # The classifier is tiny, so it runs in fp32 for exact logits under bf16 compute.
            logits = nn.Dense(
                cfg.num_labels,
                kernel_init=nn.initializers.normal(cfg.initializer_range),
                dtype=jnp.float32,
                param_dtype=cfg.param_dtype,
                name="classifier",
            )(h.astype(jnp.float32))
        return ModelOutput(
            logits=logits,
            pooled=pooled,
            last_hidden_state=states[-1],
            hidden_states=states if output_hidden_states else None,
            attentions=probs if output_attentions else None,
        )


# ----------------------------------------------------------------------------- presets

PRESETS: dict[str, TransformerConfig] = {
    # The paper's student: 12 layers, 8 heads, d_model 512, d_ff 2048, ReLU, eqs 1-2 positions.
    "paper": TransformerConfig(
        hidden_size=512, num_layers=12, num_heads=8, intermediate_size=2048,
        activation="relu", position="sinusoidal", pooling="cls", use_pooler=False,
        scale_embeddings=True,
    ),
    # all-MiniLM-L6-v2 / BERT-compatible teacher architecture (22,713,216 encoder+pooler params).
    "minilm_l6": TransformerConfig(
        hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
        activation="gelu", position="learned", max_len=512, type_vocab_size=2,
        pooling="cls", use_pooler=True, layer_norm_eps=1e-12,
    ),
    # A 3-layer student with the teacher's widths, so it can start from teacher layers 0, 2, 4.
    "minilm_l3": TransformerConfig(
        hidden_size=384, num_layers=3, num_heads=12, intermediate_size=1536,
        activation="gelu", position="learned", max_len=512, type_vocab_size=2,
        pooling="cls", use_pooler=True, layer_norm_eps=1e-12,
    ),
    # A small BERT-style student.
    "student_small": TransformerConfig(
        hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
        activation="gelu", position="learned", pooling="cls", use_pooler=True,
    ),
    # For tests and smoke runs.
    "tiny": TransformerConfig(
        hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
        activation="gelu", position="learned", pooling="cls", use_pooler=True,
    ),
}


def get_config(name: str, **overrides) -> TransformerConfig:
    """A preset by name with fields overridden, e.g. ``get_config("tiny", num_labels=3)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown Transformer preset {name!r}; valid: {sorted(PRESETS)}")
    return _replace(PRESETS[name], overrides)
