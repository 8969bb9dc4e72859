"""Pure, module-level train and eval steps (compiled once by the loop).

    train_step(state, batch, rng, teacher_params, *, spec, model, teachers) -> (state, metrics)
    eval_step(params, batch, *, spec, model) -> summed statistics

`spec` (a frozen, hashable StepSpec) and the Flax modules are bound with functools.partial
before jit, so they are compile-time constants. The same function runs under `jax.jit` over a
device mesh (axis_name=None: XLA inserts the collectives) and under `jax.pmap` (axis_name set:
gradients and statistics are psum'ed explicitly). Losses are normalised by the *global* number
of real examples in the batch, so both modes compute the same loss and gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from tkd_jax import losses, metrics


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    """What the teacher term adds to the loss (paper eq 9 and the feature/attention variants)."""

    alpha: float = 0.5  # weight of the soft term: (1 - alpha) * hard + alpha * soft
    temperature: float = 1.0
    kind: str = "ce"  # "ce" (eq 9) or "kl"
    t2_scaling: bool = False  # multiply the soft term by T**2 (Hinton et al.)
    online: bool = False  # run the teachers in the step, else batch["teacher_logits"]
    teacher_weights: tuple[float, ...] = (1.0,)  # multi-teacher soft-label weights
    feature_weight: float = 0.0  # weight of hidden-state distillation (online only)
    feature_layers: tuple[tuple[int, int], ...] = ()  # (student hidden index, teacher hidden index)
    feature_kind: str = "mse"
    attention_weight: float = 0.0  # weight of attention-map distillation (online only)
    attention_layers: tuple[tuple[int, int], ...] = ()  # (student layer, teacher layer)
    attention_kind: str = "mse"


@dataclasses.dataclass(frozen=True)
class StepSpec:
    regression: bool
    num_labels: int
    fp16: bool = False  # dynamic loss scaling, skip non-finite steps
    axis_name: str | None = None  # set under pmap
    distill: DistillSpec | None = None


def _psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _model_inputs(batch):
    return batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]


def teacher_forward(teachers: Sequence, teacher_params: Sequence, batch, *, hidden=False,
                    attentions=False):
    """Frozen teachers on the student's view of the batch. Returns a list of ModelOutput."""
    outs = []
    for module, params in zip(teachers, teacher_params, strict=True):
        out = module.apply({"params": params}, *_model_inputs(batch), deterministic=True,
                           output_hidden_states=hidden, output_attentions=attentions)
        outs.append(jax.tree.map(jax.lax.stop_gradient, out))
    return outs


def _loss(params, batch, rng, teacher_params, *, spec: StepSpec, model, teachers):
    """Global-mean loss contribution of this shard and its components (fp32)."""
    d = spec.distill
    feat = d is not None and d.feature_weight > 0
    attn = d is not None and d.attention_weight > 0
    out = model.apply({"params": params["model"]}, *_model_inputs(batch), deterministic=False,
                      rngs={"dropout": rng}, output_hidden_states=feat,
                      output_attentions=attn)
    w = batch["weight"].astype(jnp.float32)
    local_w = jnp.sum(w)
    global_w = jnp.maximum(_psum(local_w, spec.axis_name), 1.0)
    # losses.* return weighted means over this shard; rescale to a share of the global mean.
    share = jnp.maximum(local_w, 1.0) / global_w
    logits = out.logits.astype(jnp.float32)
    if spec.regression:
        hard = losses.mse(logits[:, 0], batch["label"], w)
    else:
        hard = losses.cross_entropy(logits, batch["label"], w)
    comps = {"hard": hard * share}
    if d is None:
        return hard * share, comps

    if d.online:
        t_outs = teacher_forward(teachers, teacher_params, batch, hidden=feat, attentions=attn)
        t_logits = jnp.stack([o.logits.astype(jnp.float32) for o in t_outs], axis=1)
    else:
        t_outs = None
        t_logits = batch["teacher_logits"].astype(jnp.float32)  # [B, K, C]
    t_logits = jax.lax.stop_gradient(t_logits)
    soft = _soft_loss(logits, t_logits, w, spec)
    loss = (1.0 - d.alpha) * hard + d.alpha * soft
    comps["soft"] = soft * share
    if feat:
        f = _feature_term(out, t_outs[0], params.get("projection"), batch, d)
        loss = loss + d.feature_weight * f
        comps["feature"] = f * share
    if attn:
        a = _attention_term(out, t_outs[0], batch, d)
        loss = loss + d.attention_weight * a
        comps["attention"] = a * share
    return loss * share, comps


def _soft_loss(logits, t_logits, w, spec: StepSpec):
    d = spec.distill
    if spec.regression:
        weights = jnp.asarray(d.teacher_weights, jnp.float32)
        target = jnp.einsum("bk,k->b", t_logits[..., 0], weights / jnp.sum(weights))
        return losses.mse(logits[:, 0], target, w)
    if t_logits.shape[1] == 1:
        return losses.distillation_loss(logits, t_logits[:, 0], w, temperature=d.temperature,
                                        kind=d.kind, t2_scaling=d.t2_scaling)
    return losses.multi_teacher_loss(logits, [t_logits[:, k] for k in range(t_logits.shape[1])],
                                     w, teacher_weights=d.teacher_weights, kind=d.kind,
                                     temperature=d.temperature, t2_scaling=d.t2_scaling)


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


# XLA:CPU lowers threefry2x32 as a rolled 5-iteration loop over the whole mask, which made the
# dropout bits of a minilm_l6 step (batch 32 x 128) cost ~450 ms; Philox-4x32 (Random123, 64-bit
# key) takes ~55 ms for the same masks on every backend.
DROPOUT_PRNG = "philox4x32"


def dropout_key(rng):
    """The key handed to the model's dropout: Philox-4x32 seeded with 64 bits drawn from ``rng``.

    ``rng`` is any JAX key (raw ``uint32[2]`` or typed). The result is a deterministic function of
    ``rng``. On a jax without Philox the ``rng`` itself is returned.
    """
    seed = jax.random.bits(rng, (2,), jnp.uint32)
    try:
        return jax.random.wrap_key_data(seed, impl=DROPOUT_PRNG)
    except ValueError:  # "unrecognized PRNG implementation" (jax before Philox)
        return rng


def train_step(state, batch, rng, teacher_params=(), *, spec: StepSpec, model, teachers=()):
    """One optimizer (micro-)step. `rng` is the run's base key; dropout uses
    dropout_key(fold_in(rng, step))."""
    step_rng = jax.random.fold_in(rng, state.step)
    if spec.axis_name is not None:  # distinct dropout masks per replica
        step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(spec.axis_name))
    step_rng = dropout_key(step_rng)

    def loss_fn(params):
        return _loss(params, batch, step_rng, teacher_params, spec=spec, model=model,
                     teachers=teachers)

    if spec.fp16:
        grad_fn = state.dynamic_scale.value_and_grad(loss_fn, has_aux=True)
        dyn, finite, (loss, comps), grads = grad_fn(state.params)
        # DynamicScale pmean's only when given an axis; our loss is already a global share, so
        # the replica gradients must be summed instead.
        grads = _psum(grads, spec.axis_name)
        if spec.axis_name is not None:
            finite = jax.lax.pmin(finite.astype(jnp.int32), spec.axis_name).astype(bool)
    else:
        (loss, comps), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = _psum(grads, spec.axis_name)
        dyn, finite = None, jnp.array(True)
    new_state = state.apply_gradients(grads=grads)
    if spec.fp16:
        # Skip the update (params and optimizer state) when the scaled gradients overflowed.
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = new_state.replace(
            params=keep(new_state.params, state.params),
            opt_state=keep(new_state.opt_state, state.opt_state),
            dynamic_scale=dyn,
        )
    metrics_out = {
        "loss": _psum(loss, spec.axis_name),
        "grad_norm": optax.tree.norm(grads),
        "finite": finite,
        "examples": _psum(jnp.sum(batch["weight"]), spec.axis_name),
    }
    for k, v in comps.items():
        metrics_out[f"loss_{k}"] = _psum(v, spec.axis_name)
    if spec.fp16:
        metrics_out["loss_scale"] = dyn.scale
    return new_state, metrics_out


def eval_step(params, batch, *, spec: StepSpec, model):
    """Summed statistics of one eval batch (weight-0 rows excluded), so batches add up exactly.

    Classification: confusion matrix, loss sum, count. Regression: the moment sums plus the raw
    predictions (the host keeps them for Spearman's rank correlation).
    """
    out = model.apply({"params": params["model"]}, *_model_inputs(batch), deterministic=True)
    logits = out.logits.astype(jnp.float32)
    w = batch["weight"].astype(jnp.float32)
    if spec.regression:
        stats = metrics.regression_stats(logits[:, 0], batch["label"], w)
        stats["predictions"] = logits[:, 0]
        return stats
    stats = metrics.classification_stats(logits, batch["label"], w)
    stats["predictions"] = jnp.argmax(logits, axis=-1)
    return stats


def predict_logits(params, batch, *, model):
    """Logits of a frozen model (teacher soft labels, prediction files)."""
    out = model.apply({"params": params}, *_model_inputs(batch), deterministic=True)
    return out.logits.astype(jnp.float32)
