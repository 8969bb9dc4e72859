"""Teachers of the distilling recipes (`tkd`, `kd`): loaded once, frozen, never checkpointed.

A teacher is a finished `teacher` run (``--teacher_run DIR``): its module (model.json) and its
*final* checkpoint's parameters, read once per run, plus the provenance the student's manifest
records (run dir, the run's config fingerprint, the checkpoint step, the sha256 of the weights).

Knowledge extraction, two ways (config.distill.soft_labels):
  cached  teacher logits computed once over the training set, saved as
          <first teacher run>/soft_labels/<key>.npy with key = sha256(data files, encoded
          training inputs, teacher parameters) and looked up per batch by example index;
  online  the frozen teachers run inside the compiled train step on the very batch the
          student sees (needed for feature/attention distillation and augmented inputs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from tkd_jax import data as data_lib
from tkd_jax import losses
from tkd_jax.errors import ConfigError
from tkd_jax.train import runs, steps
from tkd_jax.train.objectives import DistillSpec


@dataclasses.dataclass(frozen=True)
class TeacherRun:
    """A finished `teacher` run, loaded once: module, final-checkpoint params, provenance."""

    run_dir: str
    module: Any
    params: Any
    desc: dict
    step: int
    config_fingerprint: str | None
    params_sha256: str

    @property
    def provenance(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "config_fingerprint": self.config_fingerprint,
                "step": self.step, "params_sha256": self.params_sha256}


def load_teacher_run(run_dir: str, *, dtype) -> TeacherRun:
    step = runs.final_step(run_dir)
    module, params, desc = runs.load_run(run_dir, dtype=dtype, step=step)
    try:
        fingerprint = json.loads((pathlib.Path(run_dir) / "manifest.json").read_text()).get(
            "config_fingerprint")
    except (OSError, ValueError):
        fingerprint = None
    return TeacherRun(run_dir=str(run_dir), module=module, params=params, desc=desc, step=step,
                      config_fingerprint=fingerprint, params_sha256=params_sha256(params))


def check_not_trained_on_holdout(run_dir: str, *, task: str, holdout_examples: int) -> None:
    """Refuse a teacher run that trained on the student's held-out slice of train.

    A held-out evaluation is there to choose settings without dev, and a teacher that learned
    the held-out examples would pass their answers on through its soft labels or copied
    layers. The slice is the first N of one fixed permutation of train (data/holdout.py), so a
    teacher of the same task that held out at least as many examples never saw it. Reads only
    the teacher's manifest.json, before anything is loaded.
    """
    if holdout_examples <= 0:
        return
    path = pathlib.Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        teacher_task = manifest["task"]
        teacher_holdout = int(manifest["config"].get("holdout_examples", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: unreadable, so it cannot be told whether the teacher "
                          f"trained on the {holdout_examples} held-out examples "
                          "(expected a finished run's manifest)") from None
    if teacher_task == task and teacher_holdout < holdout_examples:
        raise ConfigError(f"config.holdout_examples={holdout_examples}: teacher run {run_dir} "
                          f"trained on them (it held out {teacher_holdout}); expected a "
                          f"teacher trained with holdout_examples >= {holdout_examples}")


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
    out, rows = [], []
    # shortest first (less padding), scattered back to example order by each row's index
    for batch in data_lib.eval_batches(encoded, batch_size=batch_size, buckets=buckets,
                                       sort_by_length=True):
        logits = np.asarray(jax.device_get(fn(params, dp.put_eval_batch(batch))))
        keep = batch["weight"] > 0
        out.append(logits[keep])
        rows.append(batch["index"][keep])
    logits = np.concatenate(out).astype(np.float32)
    result = np.empty_like(logits)
    result[np.concatenate(rows)] = logits
    return result


def soft_label_cache(teachers: list[TeacherRun], encoded, task_files, *, dp, buckets,
                     batch_size=128) -> np.ndarray:
    """[N, K, C] logits of K teachers over the training set, computed once and cached."""
    key = hashlib.sha256(json.dumps({
        "data": task_files, "inputs": encoded_sha256(encoded),
        "teachers": [t.params_sha256 for t in teachers],
    }, sort_keys=True).encode()).hexdigest()[:24]
    path = pathlib.Path(teachers[0].run_dir) / "soft_labels" / f"{key}.npy"
    if path.exists():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(encoded):
            return cached
    stacked = np.stack([teacher_logits(t.module, t.params, encoded, dp=dp,
                                       batch_size=batch_size, buckets=buckets)
                        for t in teachers], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Every process holds the whole cache; each writes its own temp file and renames it over
    # the same (identical) result, so concurrent writers never share a half-written file.
    tmp = path.with_name(f"{path.name}.tmp{jax.process_index()}.npy")
    np.save(tmp, stacked)
    os.replace(tmp, path)
    return stacked


def attach_soft_labels(batch: dict, cache: np.ndarray) -> dict:
    """batch["teacher_logits"] [B, K, C] looked up by example index (zeros for padding rows)."""
    idx = batch["index"]
    t = cache[np.maximum(idx, 0)]
    t[idx < 0] = 0.0
    return {**batch, "teacher_logits": t}


def setup(d, teachers: list[TeacherRun], *, model, encoded_train, task_files, dp, buckets,
          rng):
    """-> (DistillSpec, frozen inputs, soft-label cache | None, projections) for the typed
    DistillConfig ``d`` and the loaded teacher runs."""
    labels = {t.desc.get("num_labels", getattr(t.module.config, "num_labels", None))
              for t in teachers}
    if len(labels) != 1 or model.config.num_labels not in labels:
        raise ConfigError(f"config.distill.teacher_runs: teachers have {sorted(labels)} labels, "
                          f"the student {model.config.num_labels}")
    feature, attention = d.feature_weight > 0, d.attention_weight > 0
    feature_layers = attention_layers = ()
    projection = {}
    if feature or attention:
        t_config = teachers[0].module.config
        if not isinstance(model.config, type(t_config)):
            raise ConfigError("config.distill.feature_weight/attention_weight: need a "
                              "Transformer student (use soft labels only for baselines)")
        s_layers, t_layers = model.config.num_layers, t_config.num_layers
        feature_layers = d.feature_layers or losses.layer_pairs(s_layers, t_layers,
                                                                target="hidden")
        attention_layers = d.attention_layers or losses.layer_pairs(s_layers, t_layers,
                                                                    target="attention")
        ds, dt = model.config.hidden_size, t_config.hidden_size
        if feature and ds != dt:
            init = nn.initializers.lecun_normal()
            for i, (s, t) in enumerate(feature_layers):
                projection[f"{s}_{t}"] = {
                    "kernel": init(jax.random.fold_in(rng, i), (ds, dt), jnp.float32),
                    "bias": jnp.zeros((dt,), jnp.float32)}
    spec = DistillSpec(
        alpha=d.alpha, temperature=d.temperature, kind=d.kind, t2_scaling=d.t2_scaling,
        teachers=tuple(t.module for t in teachers) if d.online else (),
        teacher_weights=d.teacher_weights, feature_weight=d.feature_weight,
        feature_layers=feature_layers, feature_kind=d.feature_kind,
        attention_weight=d.attention_weight, attention_layers=attention_layers,
        attention_kind=d.attention_kind)
    if d.online:
        return spec, {"teachers": tuple(t.params for t in teachers)}, None, projection
    cache = soft_label_cache(teachers, encoded_train, task_files, dp=dp, buckets=buckets)
    return spec, {}, cache, projection
