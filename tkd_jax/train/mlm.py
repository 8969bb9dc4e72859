"""Masked-language-model pre-training (paper section IV, step 1): BERT masking and statistics.

    mask_tokens(rng, input_ids, attention_mask, *, vocab_size, mask_id, special_ids, ...)
        -> (masked_ids, targets, target_weights)
    predict(model, params, batch, masked_ids, ...) -> logits, targets, weights at the masks
    mlm_token_stats(logits, targets, weights) -> {"loss_sum", "correct", "count"}
    finalize_mlm(summed stats) -> {"mlm_loss", "mlm_accuracy", "perplexity"}

The objective built from these (loss and eval statistics) is
:class:`tkd_jax.train.objectives.MLMObjective`; the update step is the one of every recipe.

Masking follows BERT: each real, non-special token is chosen with probability ``mask_prob``;
a chosen token becomes [MASK] (80%), a uniformly random regular token (10%) or stays (10%),
and the model predicts the original token at every chosen position.

Every random draw is keyed by (rng, row id, position): with ``row_ids = batch["index"]`` a
row's mask does not depend on which batch, padding length, device or parallel mode (jit or
pmap) it lands in. Training masks use a fresh key per step (so they change every step and are
reproducible); evaluation uses a fixed key (``MLMSpec.eval_seed``), so eval statistics of
split batches add up exactly.

The train state's params are ``{"model": <TransformerForMaskedLM params>}``. By default the
vocabulary projection runs only at the (at most ``max_predictions``) chosen positions of each
row rather than at all ``L``: with a 30k vocabulary that projection dominates the cost.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp

from tkd_jax.data.tokenization import SPECIAL_TOKENS
from tkd_jax.errors import ConfigError, DataError
from tkd_jax.models.mlm import MaskedLMHead, TransformerForMaskedLM
from tkd_jax.models.transformer import Embeddings

_MASK_STREAM = 0x4D4C4D  # folds the run key into a masking stream distinct from dropout's
_CAP_SIGMAS = 4.0  # auto cap: mean + 4 standard deviations of the per-row chosen count


@dataclasses.dataclass(frozen=True)
class MLMSpec:
    """Static (hashable) description of the MLM objective, bound into the jitted steps.

    vocab_size: ids in ``[first_regular_id, vocab_size)`` minus ``special_ids`` and ``mask_id``
      are the candidates for random replacement. ``special_ids`` are never chosen for
      prediction either ([PAD], [CLS], [SEP], [MASK]; [UNK] if listed).
    max_predictions: per-row cap on chosen tokens. None = automatic,
      ``ceil(p L + 4 sqrt(L p (1 - p)))`` (exceeded by ~3e-5 of rows; the extra tokens are left
      unchosen), and the vocabulary projection runs on the capped positions only; 0 = no cap,
      logits at every position.
    """

    vocab_size: int
    mask_id: int
    special_ids: tuple[int, ...] = ()
    mask_prob: float = 0.15
    replace_probs: tuple[float, float, float] = (0.8, 0.1, 0.1)  # [MASK], random, unchanged
    first_regular_id: int = 0
    max_predictions: int | None = None
    eval_seed: int = 0

    def __post_init__(self):
        _check_masking(self.vocab_size, self.mask_id, self.special_ids, self.mask_prob,
                       self.replace_probs, self.first_regular_id)
        if self.max_predictions is not None and self.max_predictions < 0:
            raise ConfigError(f"mlm max_predictions={self.max_predictions}: expected >= 0 "
                              "(0 = no cap) or None (automatic)")

    @classmethod
    def from_tokenizer(cls, tokenizer, **kw) -> MLMSpec:
        """Spec for a HF ``tokenizers.Tokenizer``: its vocab size, [MASK] id and special ids."""
        mask_id = tokenizer.token_to_id("[MASK]")
        if mask_id is None:
            raise ConfigError("tokenizer has no [MASK] token; MLM needs one in the vocabulary")
        ids = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
        special = tuple(sorted({i for i in ids if i is not None}))
        return cls(vocab_size=tokenizer.get_vocab_size(), mask_id=mask_id,
                   special_ids=special, **kw)


def _check_masking(vocab_size, mask_id, special_ids, mask_prob, replace_probs, first_regular_id):
    """Static argument checks (Python numbers only; traced values are not checked)."""
    if not 0 <= mask_id < vocab_size:
        raise ConfigError(f"mlm mask_id={mask_id}: expected an id in [0, {vocab_size})")
    if isinstance(mask_prob, numbers.Real) and not 0 < mask_prob <= 1:
        raise ConfigError(f"mlm mask_prob={mask_prob}: expected a probability in (0, 1]")
    probs = tuple(replace_probs)
    if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError(f"mlm replace_probs={probs}: expected 3 non-negative probabilities "
                          "([MASK], random, unchanged) summing to 1")
    if _num_random(vocab_size, mask_id, special_ids, first_regular_id) < 1:
        raise ConfigError(f"mlm first_regular_id={first_regular_id}: no regular token id is "
                          f"left in [{first_regular_id}, {vocab_size}) for random replacement")


def _excluded(mask_id, special_ids, first_regular_id) -> tuple[int, ...]:
    """Sorted non-regular ids inside the random-replacement range."""
    return tuple(sorted({int(i) for i in (*special_ids, mask_id) if i >= first_regular_id}))


def _num_random(vocab_size, mask_id, special_ids, first_regular_id) -> int:
    excluded = [i for i in _excluded(mask_id, special_ids, first_regular_id) if i < vocab_size]
    return vocab_size - first_regular_id - len(excluded)


@functools.partial(jax.jit, static_argnums=(2, 3))  # one compile, not one per eager primitive
def _token_draws(rng, row_ids, length: int, num_random: int):
    """Per-token ``(u_choose, u_kind)`` float32 ``[B, L]`` in [0, 1) and an int32 ``[B, L]`` in
    ``[0, num_random)``, each a function of (rng, row id, position) only.

    One 96-bit draw per token: two 24-bit uniforms and ``bits % num_random`` (its bias,
    < num_random / 2**32, is negligible for any vocabulary).
    """

    def token(row_key, pos):
        bits = jax.random.bits(jax.random.fold_in(row_key, pos), (3,), jnp.uint32)
        u = (bits[:2] >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
        return u[0], u[1], (bits[2] % jnp.uint32(num_random)).astype(jnp.int32)

    def row(row_id):
        row_key = jax.random.fold_in(rng, row_id)
        return jax.vmap(token, in_axes=(None, 0))(row_key, jnp.arange(length))

    return jax.vmap(row)(jnp.asarray(row_ids).astype(jnp.uint32))


def _skip_excluded(draw, first_regular_id: int, excluded: tuple[int, ...]):
    """Map ``draw`` in ``[0, n)`` onto the n regular ids: shift past each excluded id in turn."""
    ids = draw + first_regular_id
    for e in excluded:  # ascending: each shift can only move an id past later excluded ids
        ids = ids + (ids >= e).astype(ids.dtype)
    return ids


def mask_tokens(rng, input_ids, attention_mask, *, vocab_size: int, mask_id: int,
                special_ids=(), mask_prob: float = 0.15,
                replace_probs=(0.8, 0.1, 0.1), first_regular_id: int = 0,
                row_weights=None, row_ids=None, max_predictions: int | None = None):
    """BERT's MLM corruption of a batch (pure, jit-friendly; a function of ``rng`` only).

    Args:
      rng: a PRNG key (raw ``uint32[2]`` or typed).
      input_ids: int ``[B, L]``; attention_mask: ``[B, L]``, 1 on real tokens.
      special_ids: ids never chosen and never drawn as random replacements (``mask_id`` is
        always treated as one); padding is never chosen either.
      first_regular_id: random replacements are drawn uniformly from
        ``[first_regular_id, vocab_size)`` minus the special ids.
      row_weights: optional ``[B]``; rows with weight 0 (batch padding) get no targets.
      row_ids: optional int ``[B]`` keys of the rows (e.g. ``batch["index"]``) so a row's mask
        does not depend on the batch it is in; default ``arange(B)``.
      max_predictions: optional static per-row cap; chosen tokens beyond the first
        ``max_predictions`` of a row (in position order) are left unchosen and unchanged.

    Returns:
      masked_ids int32 ``[B, L]``, targets int32 ``[B, L]`` (the original ids) and
      target_weights float32 ``[B, L]`` (1.0 at chosen positions, else 0).
    """
    _check_masking(vocab_size, mask_id, special_ids, mask_prob, replace_probs, first_regular_id)
    ids = jnp.asarray(input_ids).astype(jnp.int32)
    batch, length = ids.shape
    if row_ids is None:
        row_ids = jnp.arange(batch)
    num_random = _num_random(vocab_size, mask_id, special_ids, first_regular_id)
    u_choose, u_kind, draw = _token_draws(rng, row_ids, length, num_random)

    eligible = jnp.asarray(attention_mask) > 0
    for s in {int(i) for i in (*special_ids, mask_id)}:
        eligible = eligible & (ids != s)
    if row_weights is not None:
        eligible = eligible & (jnp.asarray(row_weights) > 0)[:, None]
    chosen = eligible & (u_choose < mask_prob)
    if max_predictions is not None:
        chosen = chosen & (jnp.cumsum(chosen.astype(jnp.int32), axis=1) <= max_predictions)

    p_mask, p_random, _ = replace_probs
    random_ids = _skip_excluded(draw, first_regular_id,
                                _excluded(mask_id, special_ids, first_regular_id))
    replaced = jnp.where(u_kind < p_mask, mask_id,
                         jnp.where(u_kind < p_mask + p_random, random_ids, ids))
    masked_ids = jnp.where(chosen, replaced, ids).astype(jnp.int32)
    return masked_ids, ids, chosen.astype(jnp.float32)


def mask_rng_for_step(rng, step):
    """The training masking key of ``step``: ``fold_in(fold_in(rng, stream), step)``.

    Dropout uses ``fold_in(rng, step)`` (as in steps.train_step), a different derivation.
    """
    return jax.random.fold_in(jax.random.fold_in(rng, _MASK_STREAM), step)


def eval_mask_rng(spec: MLMSpec):
    """The fixed masking key of evaluation."""
    return jax.random.PRNGKey(spec.eval_seed)


def prediction_cap(spec: MLMSpec, length: int) -> int | None:
    """Static per-row cap on chosen tokens for sequences of ``length`` (None = no cap)."""
    if spec.max_predictions == 0:
        return None
    if spec.max_predictions is not None:
        return min(spec.max_predictions, length)
    p = spec.mask_prob
    return min(length, math.ceil(p * length + _CAP_SIGMAS * math.sqrt(length * p * (1 - p))))


def _row_ids(batch, axis_name):
    """``batch["index"]`` if present, else global row numbers (shard offset under pmap)."""
    if "index" in batch:
        return batch["index"]
    n = batch["input_ids"].shape[0]
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n
    return jnp.arange(n) + offset


def mask_batch(batch, rng, *, spec: MLMSpec, axis_name=None):
    """:func:`mask_tokens` on a batch dict with the spec's settings and cap."""
    return mask_tokens(
        rng, batch["input_ids"], batch["attention_mask"], vocab_size=spec.vocab_size,
        mask_id=spec.mask_id, special_ids=spec.special_ids, mask_prob=spec.mask_prob,
        replace_probs=spec.replace_probs, first_regular_id=spec.first_regular_id,
        row_weights=batch["weight"], row_ids=_row_ids(batch, axis_name),
        max_predictions=prediction_cap(spec, batch["input_ids"].shape[1]),
    )


def mlm_token_stats(logits, targets, weights):
    """Summed statistics of predicted tokens.

    Args:
      logits: ``[..., V]`` float (computed in float32); targets: int ``[...]``;
      weights: ``[...]``, a token counts iff its weight is > 0.

    Returns:
      ``loss_sum`` float32 (cross-entropy summed over counted tokens), ``correct`` int32
      (top-1 hits), ``count`` int32 (counted tokens).
    """
    logits = jnp.asarray(logits, jnp.float32)
    targets = jnp.asarray(targets).astype(jnp.int32)
    keep = jnp.asarray(weights) > 0
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    hit = (jnp.argmax(logits, axis=-1) == targets) & keep
    return {"loss_sum": jnp.sum(jnp.where(keep, nll, 0.0)),
            "correct": jnp.sum(hit.astype(jnp.int32)),
            "count": jnp.sum(keep.astype(jnp.int32))}


def _head_logits(config, params, hidden):
    """The model's tied MLM head on gathered hidden states ``[B, K, H] -> [B, K, V]``."""
    embeddings = Embeddings(config).bind({"params": params["embeddings"]})
    return MaskedLMHead(config).apply({"params": params["cls"]}, hidden, embeddings)


def predict(model, params, batch, masked_ids, targets, weights, *, spec, dropout_rng):
    """Logits, targets and weights at the predicted positions (all, or the capped gather)."""
    train = dropout_rng is not None
    out = model.apply({"params": params}, masked_ids, batch["attention_mask"],
                      batch["token_type_ids"], deterministic=not train,
                      rngs={"dropout": dropout_rng} if train else None)
    cap = prediction_cap(spec, masked_ids.shape[1])
    if cap is None or not isinstance(model, TransformerForMaskedLM):
        return out.logits, targets, weights
    # Chosen positions first (stable sort keeps position order); the full-vocab logits of
    # out.logits are then unused and XLA drops them.
    pos = jnp.argsort((weights <= 0).astype(jnp.int32), axis=1, stable=True)[:, :cap]
    hidden = jnp.take_along_axis(out.last_hidden_state, pos[..., None], axis=1)
    take = lambda x: jnp.take_along_axis(x, pos, axis=1)
    return _head_logits(model.config, params, hidden), take(targets), take(weights)


def finalize_mlm(stats) -> dict[str, float]:
    """``{"mlm_loss", "mlm_accuracy", "perplexity"}`` from summed stats (per masked token)."""
    count = int(stats["count"])
    if count <= 0:
        raise DataError("MLM evaluation masked no tokens; the eval split is empty or too short")
    loss = float(stats["loss_sum"]) / count
    return {"mlm_loss": loss, "mlm_accuracy": int(stats["correct"]) / count,
            "perplexity": math.exp(min(loss, 700.0))}
