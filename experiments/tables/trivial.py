"""Trivial baselines, computed from the dev labels: they bound what "learned" means.

* ``majority``: the most frequent class of the task's first dev split, answered for every
  example (ties go to the lower class id). Picked on dev on purpose: no constant answer scores
  higher, so it is the bar a model must clear (MRPC 0.684 accuracy, WNLI 0.563, RTE 0.527).
* ``positive``: class 1 for every example (binary tasks): the F1 a model gets for free
  (MRPC 0.812).

A trivial run directory has the files of a trained run that the tables read --
``final_metrics.json``, ``predictions.json``, ``manifest.json`` (with the rule, the data
files' sha256 and the git commit) -- and no checkpoints. STS-B has no trivial row: a constant
score has no correlation.
"""

from __future__ import annotations

import pathlib

import numpy as np

from tkd_jax import data as data_lib
from tkd_jax import metrics as metrics_lib
from tkd_jax.errors import ConfigError
from tkd_jax.train import reporting

RULES = {"majority": "the most frequent class of the first dev split",
         "positive": "class 1 for every example"}
REPORTED = ("accuracy", "f1", "f1_macro", "precision", "recall", "mcc", "glue_score")


def constant_class(rule: str, labels: np.ndarray, num_labels: int) -> int:
    if rule == "majority":
        return int(np.bincount(labels, minlength=num_labels).argmax())
    if rule == "positive":
        return 1
    raise ConfigError(f"trivial baseline {rule!r}: expected one of {', '.join(RULES)}")


def compute(task: str, rule: str, *, data_dir=None) -> tuple[dict, dict, dict]:
    """(final_metrics, predictions, provenance) of the constant answer on every dev split."""
    spec = data_lib.get_task(task)
    if spec.is_regression:
        raise ConfigError(f"trivial baseline {rule}: task {spec.name} is a regression task")
    loaded = data_lib.load_task(spec, data_dir=data_dir, splits=spec.eval_splits)
    first = loaded.splits[spec.eval_splits[0]]
    answer = constant_class(rule, first.label.astype(np.int64), spec.num_labels)
    predictions, scores = {}, {}
    for name in spec.eval_splits:
        split = loaded.splits[name]
        labels = split.label.astype(np.int64)
        preds = np.full_like(labels, answer)
        cm = np.zeros((spec.num_labels, spec.num_labels), np.int64)
        np.add.at(cm, (labels, preds), 1)
        m = metrics_lib.compute_classification_metrics(cm, spec.num_labels)
        m["glue_score"] = metrics_lib.glue_score(spec.name, m)
        scores[name] = m
        predictions[name] = {"index": split.idx.tolist(), "prediction": preds.tolist(),
                             "label": labels.tolist()}
    main = scores[spec.eval_splits[0]]
    final = {"task": spec.name, "recipe": rule, "seed": 0, "split": spec.eval_splits[0],
             "metrics": {k: main[k] for k in REPORTED},
             "confusion_matrix": main["confusion_matrix"], "num_params": 0,
             "train_seconds": 0.0, "train_examples_per_second": 0.0, "steps": 0}
    for name in spec.eval_splits[1:]:
        final.setdefault("other_splits", {})[name] = {k: scores[name][k] for k in REPORTED}
    provenance = {"class": answer, "class_name": spec.label_names[answer],
                  "data_files_sha256": reporting.portable_data_files(loaded.files)}
    return final, predictions, provenance


def write_run(task: str, rule: str, workdir, *, data_dir=None) -> dict:
    """Compute the baseline and write its run directory; returns final_metrics."""
    workdir = pathlib.Path(workdir)
    final, predictions, provenance = compute(task, rule, data_dir=data_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = {"task": final["task"], "recipe": rule, "seed": 0, "argv": [],
                "computed_by": "experiments.tables.trivial", "rule": RULES[rule],
                "git_commit": reporting.git_commit(), **provenance}
    reporting.write_json(workdir / "manifest.json", manifest)
    reporting.write_json(workdir / "predictions.json", predictions)
    reporting.write_json(workdir / "final_metrics.json", final)  # last: marks the cell done
    return final
