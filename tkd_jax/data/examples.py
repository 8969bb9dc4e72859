"""Containers for loaded (untokenized) GLUE examples."""

from __future__ import annotations

import dataclasses

import numpy as np

from tkd_jax.data.tasks import TaskSpec
from tkd_jax.errors import DataError


@dataclasses.dataclass
class Split:
    """One split of a task, column-wise.

    Attributes:
      text_a: first text of each example (exactly as in the source: no stripping).
      text_b: second text for pair tasks, else None.
      label: [N] int32 class ids (-1 where unlabeled) or float32 scores for stsb (nan where
        unlabeled).
      idx: [N] int32 example ids as the source numbers them (the data-row number in a GLUE
        TSV; HF / TFDS ``idx``).
      name: split name (``"train"``, ``"dev"``, ``"dev_matched"``, ...).
    """

    text_a: list[str]
    text_b: list[str] | None
    label: np.ndarray
    idx: np.ndarray
    name: str = ""

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError(f"text_b has {len(self.text_b)} rows, text_a {n}")
        if len(self.label) != n or len(self.idx) != n:
            raise ValueError(f"label/idx lengths {len(self.label)}/{len(self.idx)} != {n}")

    def __len__(self) -> int:
        return len(self.text_a)

    @property
    def is_labeled(self) -> bool:
        """True if every example has a label (no -1 / nan)."""
        if self.label.dtype.kind == "f":
            return bool(np.all(np.isfinite(self.label)))
        return bool(np.all(self.label >= 0))

    def select(self, rows) -> Split:
        """A new split holding ``rows`` (an index array or list), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Split(
            text_a=[self.text_a[i] for i in rows],
            text_b=None if self.text_b is None else [self.text_b[i] for i in rows],
            label=self.label[rows],
            idx=self.idx[rows],
            name=self.name,
        )

    def take(self, n: int) -> Split:
        """The first ``n`` examples (all if ``n`` >= len)."""
        return self.select(np.arange(min(n, len(self))))

    def texts(self, i: int) -> tuple[str, ...]:
        """The text field(s) of example ``i``."""
        if self.text_b is None:
            return (self.text_a[i],)
        return (self.text_a[i], self.text_b[i])


@dataclasses.dataclass
class TaskData:
    """A task's loaded splits plus provenance.

    Attributes:
      task: the TaskSpec.
      splits: split name -> Split.
      files: every file (or hub dataset) read -> sha256 hex (hub: dataset fingerprint).
      source: where the data came from, e.g. ``"local:/data/glue"``, ``"hub:nyu-mll/glue"``.
    """

    task: TaskSpec
    splits: dict[str, Split]
    files: dict[str, str]
    source: str = ""


def split_from_columns(
    spec: TaskSpec, split: str, texts: list[list[str]], label, idx, where: str
) -> Split:
    """Checks columns read from the hub / TFDS and builds a Split sorted by ``idx``.

    Args:
      texts: one list of str per text field.
      label: [N] class ids (-1 unlabeled) or scores (-1 unlabeled -> nan).
      idx: [N] example ids; the output is sorted by them.
      where: names the source in error messages.
    """
    for field, column in zip(spec.text_fields, texts, strict=True):
        bad = next((i for i, t in enumerate(column) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(f"{where} row {bad}: field {field!r} is {column[bad]!r}; expected text")
    idx = np.asarray(idx, dtype=np.int64)
    if spec.is_regression:
        label = np.asarray(label, dtype=np.float32)
        label = np.where(label < 0, np.float32(np.nan), label)  # -1 marks "no score"
    else:
        label = np.asarray(label, dtype=np.int64)
        bad = np.flatnonzero((label < -1) | (label >= spec.num_labels))
        if bad.size:
            raise DataError(
                f"{where} row {bad[0]}: label {label[bad[0]]} out of range; "
                f"expected -1..{spec.num_labels - 1}"
            )
        label = label.astype(np.int32)
    # TFDS stores examples in a shuffled order; idx restores the order of the GLUE files.
    order = np.argsort(idx, kind="stable")
    ordered = [[column[i] for i in order] for column in texts]
    return Split(
        text_a=ordered[0],
        text_b=ordered[1] if len(ordered) > 1 else None,
        label=label[order],
        idx=idx[order].astype(np.int32),
        name=split,
    )
