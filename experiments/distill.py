"""Distillation set-up for the `tkd` / `kd` recipes: teachers, soft-label cache, layer maps.

Knowledge extraction, two ways (config.distill.soft_labels):
  cached  teacher logits computed once over the training set, saved as
          <first teacher run>/soft_labels/<key>.npy with key = sha256(data files, encoded
          training inputs, teacher parameters) and looked up per batch by example index;
  online  the frozen teachers run inside the compiled train step on the very batch the
          student sees (needed for feature/attention distillation and augmented inputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from experiments import runs
from tkd_jax import data as data_lib
from tkd_jax import losses
from tkd_jax.errors import ConfigError
from tkd_jax.train import steps


def _pairs(text: str, field: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(tuple(int(v) for v in p.split(":")) for p in text.split(",") if p)
    except ValueError:
        raise ConfigError(f"config.distill.{field}={text!r}: expected 's:t,s:t' pairs") from None


def params_sha256(params) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def encoded_sha256(encoded) -> str:
    h = hashlib.sha256()
    for ids, types in zip(encoded.input_ids, encoded.token_type_ids, strict=True):
        h.update(np.asarray(ids, np.int32).tobytes() + b"|" + np.asarray(types, np.int32).tobytes())
    return h.hexdigest()


def teacher_logits(module, params, encoded, *, dp, batch_size, buckets) -> np.ndarray:
    """Logits [N, C] of a frozen model over every example of `encoded`, in order."""
    fn = dp.compile_eval(lambda p, b: steps.predict_logits(p, b, model=module))
    params = dp.put_eval_params(params)
    out = []
    for batch in data_lib.eval_batches(encoded, batch_size=batch_size, buckets=buckets):
        logits = np.asarray(jax.device_get(fn(params, dp.put_eval_batch(batch))))
        out.append(logits[batch["weight"] > 0])
    return np.concatenate(out).astype(np.float32)


def soft_label_cache(teachers, teacher_params, run_dirs, encoded, task_files, *, dp, buckets,
                     batch_size=128) -> np.ndarray:
    """[N, K, C] logits of K teachers over the training set, computed once and cached."""
    key = hashlib.sha256(json.dumps({
        "data": task_files, "inputs": encoded_sha256(encoded),
        "teachers": [params_sha256(p) for p in teacher_params],
    }, sort_keys=True).encode()).hexdigest()[:24]
    path = pathlib.Path(run_dirs[0]) / "soft_labels" / f"{key}.npy"
    if path.exists():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(encoded):
            return cached
    stacked = np.stack([teacher_logits(m, p, encoded, dp=dp, batch_size=batch_size,
                                       buckets=buckets)
                        for m, p in zip(teachers, teacher_params, strict=True)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, stacked)
    os.replace(tmp, path)
    return stacked


def attach_soft_labels(batch: dict, cache: np.ndarray) -> dict:
    """batch["teacher_logits"] [B, K, C] looked up by example index (zeros for padding rows)."""
    idx = batch["index"]
    t = cache[np.maximum(idx, 0)]
    t[idx < 0] = 0.0
    return {**batch, "teacher_logits": t}


def setup(config, *, model, model_params, encoded_train, task_files, dp, buckets, rng):
    """-> (DistillSpec, teacher modules, teacher params, soft-label cache | None, projections)."""
    d = config.distill
    run_dirs = [r for r in d.teacher_runs.split(",") if r]
    if not run_dirs:
        raise ConfigError("config.distill.teacher_runs: empty; pass --teacher_run DIR (the "
                          "workdir of a finished `--recipe teacher` run on this task)")
    dtype = model.config.dtype if hasattr(model.config, "dtype") else jnp.float32
    loaded = [runs.load_run(r, dtype=dtype) for r in run_dirs]
    teachers = tuple(m for m, _, _ in loaded)
    teacher_params = tuple(p for _, p, _ in loaded)
    labels = {desc.get("num_labels", getattr(m.config, "num_labels", None))
              for m, _, desc in loaded}
    if len(labels) != 1 or model.config.num_labels not in labels:
        raise ConfigError(f"config.distill.teacher_runs: teachers have {sorted(labels)} labels, "
                          f"the student {model.config.num_labels}")
    weights = tuple(float(w) for w in d.teacher_weights.split(",") if w) or (1.0,) * len(loaded)
    if len(weights) != len(loaded):
        raise ConfigError(f"config.distill.teacher_weights: {len(weights)} weights for "
                          f"{len(loaded)} teachers")
    feature, attention = d.feature_weight > 0, d.attention_weight > 0
    if d.soft_labels not in ("cached", "online"):
        raise ConfigError(f"config.distill.soft_labels: expected cached or online, "
                          f"got {d.soft_labels!r}")
    online = d.soft_labels == "online" or feature or attention
    feature_layers = attention_layers = ()
    projection = {}
    if feature or attention:
        if not isinstance(model.config, type(teachers[0].config)):
            raise ConfigError("config.distill.feature_weight/attention_weight: need a "
                              "Transformer student (use soft labels only for baselines)")
        s_layers, t_layers = model.config.num_layers, teachers[0].config.num_layers
        feature_layers = _pairs(d.feature_layers, "feature_layers") or losses.layer_pairs(
            s_layers, t_layers, target="hidden")
        attention_layers = _pairs(d.attention_layers, "attention_layers") or losses.layer_pairs(
            s_layers, t_layers, target="attention")
        ds, dt = model.config.hidden_size, teachers[0].config.hidden_size
        if feature and ds != dt:
            init = nn.initializers.lecun_normal()
            for i, (s, t) in enumerate(feature_layers):
                projection[f"{s}_{t}"] = {
                    "kernel": init(jax.random.fold_in(rng, i), (ds, dt), jnp.float32),
                    "bias": jnp.zeros((dt,), jnp.float32)}
    spec = steps.DistillSpec(
        alpha=d.alpha, temperature=d.temperature, kind=d.kind, t2_scaling=d.t2_scaling,
        online=online, teacher_weights=weights, feature_weight=d.feature_weight,
        feature_layers=feature_layers, feature_kind=d.feature_kind,
        attention_weight=d.attention_weight, attention_layers=attention_layers,
        attention_kind=d.attention_kind)
    cache = None
    if not online:
        cache = soft_label_cache(teachers, teacher_params, run_dirs, encoded_train, task_files,
                                 dp=dp, buckets=buckets)
        teachers, teacher_params = (), ()
    return spec, teachers, teacher_params, cache, projection
