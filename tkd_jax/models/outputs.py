"""The one output structure every model in :mod:`tkd_jax.models` returns."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class ModelOutput:
    """What a forward pass returns (a pytree, so it passes through ``jax.jit``).

    Attributes:
      logits: ``[batch, num_labels]`` float32 (always cast to fp32, even under bf16 compute);
        ``None`` for a bare encoder (``num_labels == 0``). The masked-LM model puts its
        ``[batch, len, vocab]`` float32 vocabulary logits here.
      pooled: ``[batch, features]`` the features the classifier reads (before classifier
        dropout), in the compute dtype — the target of feature distillation.
      last_hidden_state: ``[batch, len, hidden]`` final sequence output in the compute dtype,
        or ``None``. Baselines give their per-token outputs here (zeros at padded positions).
      hidden_states: tuple of ``num_layers + 1`` arrays ``[batch, len, hidden]`` (the
        embedding output first), or ``None`` unless ``output_hidden_states=True``.
      attentions: tuple of ``num_layers`` float32 arrays ``[batch, heads, len, len]`` of
        softmax probabilities (before attention dropout), or ``None`` unless
        ``output_attentions=True``.
    """

    logits: jax.Array | None
    pooled: jax.Array | None = None
    last_hidden_state: jax.Array | None = None
    hidden_states: tuple[jax.Array, ...] | None = None
    attentions: tuple[jax.Array, ...] | None = None
