"""The GLUE task table: text fields, labels, splits and metrics of every task.

Names follow the Hugging Face ``nyu-mll/glue`` configs (``sst2``, ``stsb``, ...); the feature
names (``sentence``, ``premise``, ...) and the label order are the ones HF and TFDS use, so a
class id means the same thing whichever source the data came from.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from tkd_jax.errors import ConfigError

_STD_SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One GLUE task.

    Attributes:
      name: HF config name, lower case (``"sst2"``).
      glue_dir: folder of the task in a GLUE directory (``"SST-2"``).
      text_fields: one or two feature names; the first is ``text_a``, the second ``text_b``.
      label_names: class names in class-id order; ``None`` for the regression task (stsb).
      num_labels: number of classes (1 for regression).
      is_regression: True for stsb (float score in [0, 5]).
      splits: our split name -> file name inside ``glue_dir``.
      eval_splits: splits evaluated on (dev sets; empty for the prediction-only ``ax``).
      metrics: GLUE metric names reported for the task.
      main_metric: the metric used to pick checkpoints / summarise the task.
    """

    name: str
    glue_dir: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None
    num_labels: int
    is_regression: bool
    splits: MappingProxyType
    eval_splits: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def train_split(self) -> str | None:
        return "train" if "train" in self.splits else None

    @property
    def default_splits(self) -> tuple[str, ...]:
        """Splits loaded when none are asked for: train (if any) and the eval splits."""
        if not self.eval_splits:
            return tuple(self.splits)
        return ("train", *self.eval_splits)


def _task(name, glue_dir, text_fields, label_names, metrics, *, splits=None, eval_splits=None):
    return TaskSpec(
        name=name,
        glue_dir=glue_dir,
        text_fields=tuple(text_fields),
        label_names=None if label_names is None else tuple(label_names),
        num_labels=1 if label_names is None else len(label_names),
        is_regression=label_names is None,
        splits=MappingProxyType(dict(splits or _STD_SPLITS)),
        eval_splits=("dev",) if eval_splits is None else tuple(eval_splits),
        metrics=tuple(metrics),
        main_metric=metrics[0],
    )


_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_MNLI_SPLITS = {
    "train": "train.tsv",
    "dev_matched": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _task("cola", "CoLA", ["sentence"], ["unacceptable", "acceptable"], ["mcc"]),
        _task("sst2", "SST-2", ["sentence"], ["negative", "positive"], ["accuracy"]),
        _task(
            "mrpc",
            "MRPC",
            ["sentence1", "sentence2"],
            ["not_equivalent", "equivalent"],
            ["f1", "accuracy"],
        ),
        _task(
            "qqp",
            "QQP",
            ["question1", "question2"],
            ["not_duplicate", "duplicate"],
            ["f1", "accuracy"],
        ),
        _task("stsb", "STS-B", ["sentence1", "sentence2"], None, ["pearson", "spearman"]),
        _task(
            "mnli",
            "MNLI",
            ["premise", "hypothesis"],
            _NLI3,
            ["accuracy"],
            splits=_MNLI_SPLITS,
            eval_splits=("dev_matched", "dev_mismatched"),
        ),
        _task("qnli", "QNLI", ["question", "sentence"], _NLI2, ["accuracy"]),
        _task("rte", "RTE", ["sentence1", "sentence2"], _NLI2, ["accuracy"]),
        _task(
            "wnli",
            "WNLI",
            ["sentence1", "sentence2"],
            ["not_entailment", "entailment"],
            ["accuracy"],
        ),
        # The diagnostic set: prediction only (no labels are public), scored by the GLUE server
        # with R3 (MCC) using a classifier trained on MNLI.
        _task(
            "ax",
            "diagnostic",
            ["premise", "hypothesis"],
            _NLI3,
            ["mcc"],
            splits={"test": "diagnostic.tsv"},
            eval_splits=(),
        ),
    )
}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


# Extra spellings: GLUE folder names ("SST-2", "STS-B", "diagnostic") and "sts-b" style.
_ALIASES = {_normalize(t.glue_dir): t.name for t in TASKS.values()}
_ALIASES.update({_normalize(t.name): t.name for t in TASKS.values()})


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, case-insensitively (``"SST-2"``, ``"sst-2"``, ``"sst2"``).

    Raises:
      ConfigError: unknown name (the message lists the valid names).
    """
    key = _ALIASES.get(_normalize(str(name)))
    if key is None:
        raise ConfigError(f"unknown GLUE task {name!r}; expected one of: {', '.join(TASKS)}")
    return TASKS[key]
