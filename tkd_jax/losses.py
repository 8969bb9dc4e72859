"""Training and distillation losses: pure functions of arrays (paper eq 7 and eq 9).

Every loss casts its inputs to float32 and reduces the batch explicitly with per-example
weights: ``sum(w * loss) / max(sum(w), 1)``, so weight-0 (padding) rows never count and an
all-padding batch gives 0. ``weights=None`` means all ones. Teacher inputs always pass through
``jax.lax.stop_gradient``: no gradient ever reaches a teacher.

Soft-label losses at temperature T, with ``p = softmax(teacher / T)`` and
``log q = log_softmax(student / T)``:

* ``"ce"`` (paper eq 9): ``-sum_c p_c log q_c``;
* ``"kl"``: ``sum_c p_c (log p_c - log q_c)`` = CE - H(p); same gradient, but 0 at the optimum;
* ``t2_scaling=True`` multiplies either by T**2 (Hinton et al.) so the gradient w.r.t. the
  student logits, which otherwise shrinks like 1/T**2, stays comparable across temperatures.

Dispatch by name: :data:`SOFT_KINDS`, :data:`FEATURE_KINDS`, :data:`ATTENTION_KINDS`. The
train step combines them (``(1 - alpha) hard + alpha soft``, plus feature/attention terms) in
:class:`tkd_jax.train.objectives.TaskObjective`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from tkd_jax.errors import ConfigError

_EPS = 1e-12  # floor for norms and attention probabilities before log / division


# --------------------------------------------------------------------------- helpers


def _f32(x) -> jax.Array:
    return jnp.asarray(x).astype(jnp.float32)


def _weights(weights, batch: int) -> jax.Array:
    return jnp.ones((batch,), jnp.float32) if weights is None else _f32(weights)


def weighted_mean(per_example, weights=None) -> jax.Array:
    """``sum(w * l) / max(sum(w), 1)`` over the batch axis; ``per_example`` is ``[B]``.

    Rows with weight 0 contribute exactly 0, even if their loss is non-finite.
    """
    per_example = _f32(per_example)
    w = _weights(weights, per_example.shape[0])
    total = jnp.sum(jnp.where(w > 0, w * per_example, 0.0))
    return total / jnp.maximum(jnp.sum(w), 1.0)


def _choose(table: dict, kind: str, field: str):
    if kind not in table:
        raise ConfigError(f"{field}={kind!r}: expected one of {sorted(table)}")
    return table[kind]


def _check_temperature(temperature) -> None:
    if isinstance(temperature, numbers.Real) and not temperature > 0:
        raise ConfigError(f"distill.temperature={temperature}: expected a positive number")


def _scale(temperature, t2_scaling: bool):
    return jnp.float32(temperature) ** 2 if t2_scaling else jnp.float32(1.0)


# --------------------------------------------------------------------------- task losses


def cross_entropy(logits, labels, weights=None) -> jax.Array:
    """Eq 7: mean cross-entropy of ``logits [B, C]`` against int ``labels [B]``.

    A label outside ``[0, C)`` (e.g. -1 on a padding row) contributes 0.
    """
    logits = _f32(logits)
    onehot = jax.nn.one_hot(jnp.asarray(labels).astype(jnp.int32), logits.shape[-1])
    nll = -jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1)
    return weighted_mean(nll, weights)


def mse(preds, targets, weights=None) -> jax.Array:
    """Mean squared error; ``preds`` and ``targets`` are ``[B, ...]`` of the same shape
    (trailing axes averaged per example). Used for STS-B and for regression distillation."""
    preds, targets = _f32(preds), _f32(targets)
    if preds.shape != targets.shape:
        raise ValueError(f"mse: predictions {preds.shape} and targets {targets.shape} differ")
    sq = jnp.square(preds - targets).reshape(preds.shape[0], -1)
    return weighted_mean(jnp.mean(sq, axis=-1), weights)


# --------------------------------------------------------------------------- soft labels


def _soft_ce(target_logp, student_logp):
    return -jnp.sum(jnp.exp(target_logp) * student_logp, axis=-1)


def _soft_kl(target_logp, student_logp):
    p = jnp.exp(target_logp)
    # p = 0 rows (underflow or -inf teacher logits) contribute 0, not 0 * inf
    return jnp.sum(jnp.where(p > 0, p * (target_logp - student_logp), 0.0), axis=-1)


SOFT_KINDS = {"ce": _soft_ce, "kl": _soft_kl}


def _soft_from_logp(student_logits, target_logp, weights, temperature, kind, t2_scaling):
    """Batch-mean soft loss of the student against target log-probabilities ``[B, C]``."""
    per_row = _choose(SOFT_KINDS, kind, "distill.kind")
    _check_temperature(temperature)
    student_logp = jax.nn.log_softmax(_f32(student_logits) / temperature, axis=-1)
    per_example = per_row(jax.lax.stop_gradient(target_logp), student_logp)
    return _scale(temperature, t2_scaling) * weighted_mean(per_example, weights)


def distillation_loss(student_logits, teacher_logits, weights=None, *, temperature=1.0,
                      kind: str = "ce", t2_scaling: bool = False) -> jax.Array:
    """Eq 9 soft-label loss between ``[B, C]`` logits; ``kind`` "ce" or "kl" (module doc)."""
    _check_temperature(temperature)
    teacher = jax.lax.stop_gradient(_f32(teacher_logits))
    target_logp = jax.nn.log_softmax(teacher / temperature, axis=-1)
    return _soft_from_logp(student_logits, target_logp, weights, temperature, kind, t2_scaling)


# --------------------------------------------------------------------------- multi-teacher


def _teacher_log_weights(num_teachers: int, teacher_weights) -> jax.Array:
    if teacher_weights is None:
        teacher_weights = (1.0,) * num_teachers
    if len(teacher_weights) != num_teachers:
        raise ConfigError(f"distill.teacher_weights has {len(teacher_weights)} entries, "
                          f"expected one per teacher ({num_teachers})")
    if all(isinstance(v, numbers.Real) for v in teacher_weights) and (
            min(teacher_weights) < 0 or sum(teacher_weights) <= 0):
        raise ConfigError(f"distill.teacher_weights={tuple(teacher_weights)}: expected "
                          "non-negative weights with a positive sum")
    w = _f32(jnp.asarray(teacher_weights))
    return jnp.log(w / jnp.sum(w))  # a weight of 0 gives -inf: that teacher drops out


def _multi_teacher_logp(teacher_logits: Sequence, teacher_weights, temperature) -> jax.Array:
    """log of the weighted average of the teachers' softmax(logits / T): ``[B, C]``."""
    _check_temperature(temperature)
    stacked = jax.lax.stop_gradient(jnp.stack([_f32(t) for t in teacher_logits], axis=0))
    log_w = _teacher_log_weights(stacked.shape[0], teacher_weights)
    logp = jax.nn.log_softmax(stacked / temperature, axis=-1)  # [K, B, C]
    # log sum_k w_k p_k, computed in log space so one teacher gives back its log-probs exactly
    return jax.nn.logsumexp(logp + log_w[:, None, None], axis=0)


def multi_teacher_loss(student_logits, teacher_logits: Sequence, weights=None, *,
                       teacher_weights=None, temperature=1.0, kind: str = "ce",
                       t2_scaling: bool = False) -> jax.Array:
    """Soft loss (``kind`` "ce" or "kl") of the student against the weighted average of the
    teachers' ``softmax(logits / T)``; with one teacher it equals :func:`distillation_loss`."""
    target_logp = _multi_teacher_logp(teacher_logits, teacher_weights, temperature)
    return _soft_from_logp(student_logits, target_logp, weights, temperature, kind, t2_scaling)


# --------------------------------------------------------------------------- features


def _masked_example_mean(values, mask) -> tuple[jax.Array, jax.Array]:
    """Per-example mean of ``values`` over the positions where ``mask`` > 0, and a 0/1 example
    weight (1 iff the example has any valid position). Both ``[B]``."""
    axes = tuple(range(1, mask.ndim))
    valid = mask > 0
    total = jnp.sum(jnp.where(valid, values, 0.0), axis=axes)
    count = jnp.sum(valid.astype(jnp.float32), axis=axes)
    return total / jnp.maximum(count, 1.0), (count > 0).astype(jnp.float32)


def _feature_mse(s, t):
    return jnp.mean(jnp.square(s - t), axis=-1)


def _feature_cosine(s, t):
    norms = jnp.linalg.norm(s, axis=-1) * jnp.linalg.norm(t, axis=-1)
    return 1.0 - jnp.sum(s * t, axis=-1) / jnp.maximum(norms, _EPS)


FEATURE_KINDS = {"mse": _feature_mse, "cosine": _feature_cosine}


def feature_loss(student_hidden, teacher_hidden, mask, *, projection=None,
                 kind: str = "mse") -> jax.Array:
    """Hidden-state distillation over valid tokens.

    Args:
      student_hidden: ``[B, L, Ds]`` (any ``[B, ..., Ds]``). teacher_hidden: ``[B, L, Dt]``.
      mask: ``[B, L]`` 1 for real tokens (of real examples), 0 for padding.
      projection: ``None`` (needs Ds == Dt) or ``(kernel [Ds, Dt], bias [Dt])``, a learned
        linear map applied to the student (it receives gradients; the teacher does not).
      kind: "mse" (squared error averaged over the feature axis) or "cosine" (1 - cosine
        similarity per token).

    Each example's valid tokens are averaged, then examples are averaged over those with at
    least one valid token — the same example-weighted mean as every other loss here, so
    per-shard means recombine exactly under data parallelism.
    """
    per_token = _choose(FEATURE_KINDS, kind, "distill.feature_kind")
    s = _f32(student_hidden)
    t = jax.lax.stop_gradient(_f32(teacher_hidden))
    if projection is not None:
        kernel, bias = projection
        s = s @ _f32(kernel) + _f32(bias)
    if s.shape[-1] != t.shape[-1]:
        raise ConfigError(f"feature distillation: student width {s.shape[-1]} != teacher width "
                          f"{t.shape[-1]}; pass projection=(kernel [Ds, Dt], bias [Dt])")
    per_example, example_w = _masked_example_mean(per_token(s, t), _f32(mask))
    return weighted_mean(per_example, example_w)


def _attention_mse(s, t, pair_valid):
    return jnp.where(pair_valid, jnp.square(s - t), 0.0)  # [B, H, L, L]


def _attention_kl(s, t, pair_valid):
    # each query row is a distribution over keys: KL(teacher row || student row)
    log_s = jnp.log(jnp.maximum(s, _EPS))
    log_t = jnp.log(jnp.maximum(t, _EPS))
    return jnp.where(pair_valid & (t > 0), t * (log_t - log_s), 0.0)


ATTENTION_KINDS = {"mse": _attention_mse, "kl": _attention_kl}


def attention_loss(student_attn, teacher_attn, mask, *, kind: str = "mse") -> jax.Array:
    """Attention-map distillation between softmax attention probabilities.

    Args:
      student_attn: ``[B, H, L, L]`` (query, key). teacher_attn: ``[B, H', L, L]``.
      mask: ``[B, L]`` 1 for real tokens, 0 for padding (and for every token of a padding row).
      kind: "mse": squared error averaged over heads and valid (query, key) pairs; "kl": the
        KL divergence of each valid query row (teacher || student) summed over valid keys,
        averaged over heads and valid queries.

    When H != H' both maps are first averaged over their heads (one map per example), since
    heads carry no correspondence across models of different widths. Examples are weighted
    as in :func:`feature_loss`.
    """
    per_pair = _choose(ATTENTION_KINDS, kind, "distill.attention_kind")
    s = _f32(student_attn)
    t = jax.lax.stop_gradient(_f32(teacher_attn))
    if s.shape[1] != t.shape[1]:
        s, t = jnp.mean(s, axis=1, keepdims=True), jnp.mean(t, axis=1, keepdims=True)
    valid = _f32(mask) > 0  # [B, L]
    pair_valid = valid[:, None, :, None] & valid[:, None, None, :]  # [B, 1, L, L]
    values = per_pair(s, t, pair_valid)
    if kind == "kl":  # a row's KL is a sum over keys; average it over queries
        values = jnp.sum(values, axis=-1)  # [B, H, L]
        row_valid = jnp.broadcast_to(valid[:, None, :], values.shape)
        per_example, example_w = _masked_example_mean(values, row_valid)
    else:
        pair_valid = jnp.broadcast_to(pair_valid, values.shape)
        per_example, example_w = _masked_example_mean(values, pair_valid)
    return weighted_mean(per_example, example_w)


# --------------------------------------------------------------------------- layer mapping


def layer_mapping(num_student_layers: int, num_teacher_layers: int) -> tuple[int, ...]:
    """Uniform student -> teacher map over *hidden-state* indices (0 = embedding output).

    Returns a tuple ``m`` of length ``num_student_layers + 1``: student hidden state ``i`` is
    matched with teacher hidden state ``m[i]``. The embeddings map to the embeddings
    (``m[0] = 0``) and student layer ``i >= 1`` to teacher layer ``ceil(i * T / S)``, so the
    last layers always meet. E.g. 4 of 6 -> ``(0, 2, 3, 5, 6)``; 3 of 6 -> ``(0, 2, 4, 6)``.
    """
    for name, value in (("student", num_student_layers), ("teacher", num_teacher_layers)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"layer mapping: number of {name} layers must be an integer "
                              f">= 1, got {value!r}")
    s, t = num_student_layers, num_teacher_layers
    return (0,) + tuple(-(-i * t // s) for i in range(1, s + 1))


def _hidden_pairs(mapping):
    return tuple(enumerate(mapping))


def _attention_pairs(mapping):
    # attentions are indexed by layer (0-based, no embedding entry)
    return tuple((i - 1, m - 1) for i, m in enumerate(mapping) if i > 0)


_PAIR_TARGETS = {"hidden": _hidden_pairs, "attention": _attention_pairs}


def layer_pairs(num_student_layers: int, num_teacher_layers: int, *,
                target: str = "hidden") -> tuple[tuple[int, int], ...]:
    """:func:`layer_mapping` as ``(student index, teacher index)`` pairs.

    ``target="hidden"``: indices into ``hidden_states`` (incl. ``(0, 0)`` for embeddings), e.g.
    4 of 6 -> ``((0, 0), (1, 2), (2, 3), (3, 5), (4, 6))``. ``target="attention"``: indices into
    ``attentions`` (layers, 0-based), e.g. 4 of 6 -> ``((0, 1), (1, 2), (2, 4), (3, 5))``.
    """
    pairs = _choose(_PAIR_TARGETS, target, "layer_pairs target")
    return pairs(layer_mapping(num_student_layers, num_teacher_layers))
