"""Objectives: what a recipe minimises, and what its evaluation sums.

An objective is a frozen dataclass (a compile-time constant of the step) with three methods:

    loss(params, batch, frozen, *, model, dropout_rng, rng, step, axis_name)
        -> (loss share of the global mean, {metric name: share to be psum'ed})
    eval_stats(params, batch, *, model) -> summed statistics (+ per-row "predictions")
    finalize(total, predictions, labels) -> metrics dict

``frozen`` is the one pytree of inputs that are not trained (``{"teachers": (params, ...)}``
for online distillation, else empty); cached targets travel in the batch
(``batch["teacher_logits"]``). Losses are normalised by the *global* weight of the batch
(``psum`` over ``axis_name`` under pmap), so 1-device jit, n-device jit and pmap give the
same loss and gradient. :mod:`tkd_jax.train.steps` turns any objective into the update step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from tkd_jax import losses
from tkd_jax import metrics as metrics_lib
from tkd_jax.train import mlm as mlm_lib


def psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def model_inputs(batch):
    return batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    """What the teacher term adds to the loss (paper eq 9 and the feature/attention variants).

    ``teachers`` are the frozen teacher modules (their params come in ``frozen["teachers"]``);
    empty when the soft labels are cached in ``batch["teacher_logits"]`` [B, K, C].
    """

    alpha: float = 0.5  # weight of the soft term: (1 - alpha) * hard + alpha * soft
    temperature: float = 1.0
    kind: str = "ce"  # "ce" (eq 9) or "kl"
    t2_scaling: bool = False  # multiply the soft term by T**2 (Hinton et al.)
    teachers: tuple = ()  # frozen Flax modules run in the step (online); () = cached labels
    teacher_weights: tuple[float, ...] = (1.0,)  # multi-teacher soft-label weights
    feature_weight: float = 0.0  # weight of hidden-state distillation (online only)
    feature_layers: tuple[tuple[int, int], ...] = ()  # (student hidden index, teacher index)
    feature_kind: str = "mse"
    attention_weight: float = 0.0  # weight of attention-map distillation (online only)
    attention_layers: tuple[tuple[int, int], ...] = ()  # (student layer, teacher layer)
    attention_kind: str = "mse"

    @property
    def online(self) -> bool:
        return bool(self.teachers)


def teacher_forward(teachers: Sequence, teacher_params: Sequence, batch, *, hidden=False,
                    attentions=False):
    """Frozen teachers on the student's view of the batch. Returns a list of ModelOutput."""
    outs = []
    for module, params in zip(teachers, teacher_params, strict=True):
        out = module.apply({"params": params}, *model_inputs(batch), deterministic=True,
                           output_hidden_states=hidden, output_attentions=attentions)
        outs.append(jax.tree.map(jax.lax.stop_gradient, out))
    return outs


# ----------------------------------------------------------------------------- task labels
@dataclasses.dataclass(frozen=True)
class TaskObjective:
    """Task labels (CE, or MSE for regression), plus distillation when ``distill`` is set."""

    task: str
    regression: bool
    num_labels: int
    distill: DistillSpec | None = None

    def loss(self, params, batch, frozen, *, model, dropout_rng, rng, step, axis_name):
        del rng, step  # dropout_rng already depends on them
        d = self.distill
        feat = d is not None and d.feature_weight > 0
        attn = d is not None and d.attention_weight > 0
        out = model.apply({"params": params["model"]}, *model_inputs(batch),
                          deterministic=False, rngs={"dropout": dropout_rng},
                          output_hidden_states=feat, output_attentions=attn)
        w = batch["weight"].astype(jnp.float32)
        local_w = jnp.sum(w)
        global_w = jnp.maximum(psum(local_w, axis_name), 1.0)
        # losses.* return weighted means over this shard; rescale to a share of the global mean.
        share = jnp.maximum(local_w, 1.0) / global_w
        logits = out.logits.astype(jnp.float32)
        if self.regression:
            hard = losses.mse(logits[:, 0], batch["label"], w)
        else:
            hard = losses.cross_entropy(logits, batch["label"], w)
        comps = {"loss_hard": hard * share}
        if d is None:
            return hard * share, comps

        if d.online:
            t_outs = teacher_forward(d.teachers, frozen["teachers"], batch, hidden=feat,
                                     attentions=attn)
            t_logits = jnp.stack([o.logits.astype(jnp.float32) for o in t_outs], axis=1)
        else:
            t_outs = None
            t_logits = batch["teacher_logits"].astype(jnp.float32)  # [B, K, C]
        t_logits = jax.lax.stop_gradient(t_logits)
        if self.regression:  # STS-B: MSE to the teachers' (weighted) score
            weights = jnp.asarray(d.teacher_weights, jnp.float32)
            target = jnp.einsum("bk,k->b", t_logits[..., 0], weights / jnp.sum(weights))
            soft = losses.mse(logits[:, 0], target, w)
        elif t_logits.shape[1] == 1:
            soft = losses.distillation_loss(logits, t_logits[:, 0], w, temperature=d.temperature,
                                            kind=d.kind, t2_scaling=d.t2_scaling)
        else:
            soft = losses.multi_teacher_loss(
                logits, [t_logits[:, k] for k in range(t_logits.shape[1])], w,
                teacher_weights=d.teacher_weights, kind=d.kind, temperature=d.temperature,
                t2_scaling=d.t2_scaling)
        loss = (1.0 - d.alpha) * hard + d.alpha * soft
        comps["loss_soft"] = soft * share
        if feat:
            f = _feature_term(out, t_outs[0], params.get("projection"), batch, d)
            loss = loss + d.feature_weight * f
            comps["loss_feature"] = f * share
        if attn:
            a = _attention_term(out, t_outs[0], batch, d)
            loss = loss + d.attention_weight * a
            comps["loss_attention"] = a * share
        return loss * share, comps

    def eval_stats(self, params, batch, *, model):
        """Summed statistics of one eval batch (weight-0 rows excluded), so batches add up.

        Classification: confusion matrix, loss sum, count. Regression: the moment sums. Both
        with the per-row ``predictions`` (class id / score) for the prediction file (and
        Spearman's rank correlation).
        """
        out = model.apply({"params": params["model"]}, *model_inputs(batch), deterministic=True)
        logits = out.logits.astype(jnp.float32)
        w = batch["weight"].astype(jnp.float32)
        if self.regression:
            stats = metrics_lib.regression_stats(logits[:, 0], batch["label"], w)
            stats["predictions"] = logits[:, 0]
            return stats
        stats = metrics_lib.classification_stats(logits, batch["label"], w)
        stats["predictions"] = jnp.argmax(logits, axis=-1)
        return stats

    def finalize(self, total, predictions, labels) -> dict[str, Any]:
        return metrics_lib.glue_metrics(self.task, total, predictions, labels)


def _feature_term(out, t_out, projections, batch, d: DistillSpec):
    mask = batch["attention_mask"] * (batch["weight"][:, None] > 0)
    total = 0.0
    for s, t in d.feature_layers:
        proj = None
        if projections is not None and f"{s}_{t}" in projections:
            p = projections[f"{s}_{t}"]
            proj = (p["kernel"], p["bias"])
        total = total + losses.feature_loss(out.hidden_states[s], t_out.hidden_states[t], mask,
                                            projection=proj, kind=d.feature_kind)
    return total / max(len(d.feature_layers), 1)


def _attention_term(out, t_out, batch, d: DistillSpec):
    mask = batch["attention_mask"] * (batch["weight"][:, None] > 0)
    total = 0.0
    for s, t in d.attention_layers:
        total = total + losses.attention_loss(out.attentions[s], t_out.attentions[t], mask,
                                              kind=d.attention_kind)
    return total / max(len(d.attention_layers), 1)


# ----------------------------------------------------------------------------- masked LM
@dataclasses.dataclass(frozen=True)
class MLMObjective:
    """BERT masked-LM pre-training (paper section IV, step 1): masking in tkd_jax.train.mlm.

    The loss is the cross-entropy over masked tokens divided by the *global* number of masked
    tokens; masks are keyed by (run key, step, row id, position), so they do not depend on the
    batch a row lands in, its padding, the device or the parallel mode.
    """

    spec: mlm_lib.MLMSpec

    def loss(self, params, batch, frozen, *, model, dropout_rng, rng, step, axis_name):
        del frozen
        masked_ids, targets, weights = mlm_lib.mask_batch(
            batch, mlm_lib.mask_rng_for_step(rng, step), spec=self.spec, axis_name=axis_name)
        local_count = jnp.sum(weights)
        global_count = jnp.maximum(psum(local_count, axis_name), 1.0)
        logits, t, w = mlm_lib.predict(model, params["model"], batch, masked_ids, targets,
                                       weights, spec=self.spec, dropout_rng=dropout_rng)
        stats = mlm_lib.mlm_token_stats(logits, t, w)
        return stats["loss_sum"] / global_count, {
            "mlm_accuracy": stats["correct"] / global_count, "masked_tokens": local_count}

    def eval_stats(self, params, batch, *, model):
        """Summed MLM statistics under the fixed eval mask: {"loss_sum", "correct", "count"}."""
        masked_ids, targets, weights = mlm_lib.mask_batch(
            batch, mlm_lib.eval_mask_rng(self.spec), spec=self.spec)
        logits, t, w = mlm_lib.predict(model, params["model"], batch, masked_ids, targets,
                                       weights, spec=self.spec, dropout_rng=None)
        return mlm_lib.mlm_token_stats(logits, t, w)

    def finalize(self, total, predictions, labels) -> dict[str, Any]:
        del predictions, labels
        return mlm_lib.finalize_mlm(total)
