"""Reader for a local GLUE directory (the layout GLUE's ``download_glue_data.py`` writes).

The files are read exactly: rows are split on ``"\\t"`` only (quote characters are literal
text, as in GLUE, so no ``csv`` quoting), a UTF-8 byte-order mark before the header is
dropped (MRPC), a missing final newline is fine (CoLA dev, diagnostic), texts are kept
byte-for-byte (SST-2 sentences keep their trailing space, as in HF ``glue``). Anything else
unexpected raises :class:`DataError` naming the file, the line and what was expected; no row
is ever skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib

import numpy as np

from tkd_jax.data.examples import Split, TaskData
from tkd_jax.data.tasks import TaskSpec
from tkd_jax.errors import ConfigError, DataError

_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_BINARY = ("0", "1")


@dataclasses.dataclass(frozen=True)
class TsvLayout:
    """Where a task's fields live in its TSV files.

    Attributes:
      text_columns: header names of text_a (and text_b).
      label_column: header name of the label / score.
      label_values: the TSV string of each class id, in id order; None for a float score.
      headerless: splits whose files have no header line; they use ``implicit_header``.
      implicit_header: column names of the headerless files.
    """

    text_columns: tuple[str, ...]
    label_column: str
    label_values: tuple[str, ...] | None
    headerless: tuple[str, ...] = ()
    implicit_header: tuple[str, ...] = ()


LAYOUTS: dict[str, TsvLayout] = {
    # CoLA train/dev: source, label, original author's mark, sentence; no header line.
    "cola": TsvLayout(
        ("sentence",),
        "label",
        _BINARY,
        headerless=("train", "dev"),
        implicit_header=("source", "label", "original_label", "sentence"),
    ),
    "sst2": TsvLayout(("sentence",), "label", _BINARY),
    "mrpc": TsvLayout(("#1 String", "#2 String"), "Quality", _BINARY),
    "qqp": TsvLayout(("question1", "question2"), "is_duplicate", _BINARY),
    "stsb": TsvLayout(("sentence1", "sentence2"), "score", None),
    "mnli": TsvLayout(("sentence1", "sentence2"), "gold_label", _NLI3),
    "qnli": TsvLayout(("question", "sentence"), "label", _NLI2),
    "rte": TsvLayout(("sentence1", "sentence2"), "label", _NLI2),
    "wnli": TsvLayout(("sentence1", "sentence2"), "label", _BINARY),
    "ax": TsvLayout(("sentence1", "sentence2"), "label", _NLI3),
}


def _decode(raw: bytes, path: pathlib.Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path} line {line}: byte {raw[e.start]:#04x} at byte column {col} is not valid "
            "UTF-8; expected a UTF-8 text file"
        ) from None


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the final newline (absent in some GLUE files)
        lines.pop()
    # A file saved with Windows line ends: "\r\n" is a line end, not part of the last field.
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _parse_label(value: str, layout: TsvLayout, path, line_no: int, to_id: dict):
    if layout.label_values is None:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise DataError(
                f"{path} line {line_no}: expected a numeric score in column "
                f"{layout.label_column!r}, got {value!r}"
            )
        return score
    if value not in to_id:
        raise DataError(
            f"{path} line {line_no}: unknown label {value!r} in column {layout.label_column!r}; "
            f"expected one of {', '.join(layout.label_values)}"
        )
    return to_id[value]


def read_tsv(path: pathlib.Path, spec: TaskSpec, split: str) -> tuple[Split, str]:
    """Read one GLUE TSV file.

    Args:
      path: the file.
      spec: its task.
      split: split name; ``test*`` splits may lack the label column (labels -1 / nan).

    Returns:
      (Split, sha256 hex of the file's bytes).
    """
    layout = LAYOUTS[spec.name]
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if not raw.strip():
        raise DataError(
            f"{path} line 1: file is empty; expected GLUE {spec.glue_dir} rows "
            f"with columns {', '.join(layout.text_columns)}"
        )
    lines = _lines(_decode(raw, path))
    lines[0] = lines[0].removeprefix("\ufeff")  # MRPC's header starts with a byte-order mark

    if split in layout.headerless:
        header, first_line, rows = list(layout.implicit_header), 1, lines
    else:
        header, first_line, rows = lines[0].split("\t"), 2, lines[1:]
        labeled = not split.startswith("test")
        required = layout.text_columns + ((layout.label_column,) if labeled else ())
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(
                f"{path} line 1: expected a header with columns {', '.join(required)} "
                f"(missing {', '.join(missing)}), got {lines[0]!r}"
            )
    if not rows:
        raise DataError(f"{path} line {first_line}: no data rows; expected at least one example")

    text_cols = [header.index(c) for c in layout.text_columns]
    label_col = header.index(layout.label_column) if layout.label_column in header else None
    to_id = {v: i for i, v in enumerate(layout.label_values or ())}
    ncols = len(header)
    columns = [[] for _ in text_cols]
    labels = []
    for offset, line in enumerate(rows):
        fields = line.split("\t")
        line_no = first_line + offset
        if len(fields) != ncols:
            raise DataError(
                f"{path} line {line_no}: expected {ncols} tab-separated columns "
                f"({', '.join(header)}), got {len(fields)}"
            )
        for out, col in zip(columns, text_cols, strict=True):
            out.append(fields[col])
        if label_col is not None:
            labels.append(_parse_label(fields[label_col], layout, path, line_no, to_id))

    n = len(rows)
    dtype, missing_label = (np.float32, np.nan) if spec.is_regression else (np.int32, -1)
    label = np.full(n, missing_label, dtype) if label_col is None else np.array(labels, dtype)
    out = Split(
        text_a=columns[0],
        text_b=columns[1] if len(columns) > 1 else None,
        label=label,
        idx=np.arange(n, dtype=np.int32),
        name=split,
    )
    return out, sha


def load_local(spec: TaskSpec, data_dir, splits) -> TaskData:
    """Load ``splits`` of ``spec`` from the GLUE directory ``data_dir``."""
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"GLUE data_dir {root} is not a directory; expected a folder holding "
            f"{spec.glue_dir}/{next(iter(spec.splits.values()))} (GLUE's download layout)"
        )
    task_dir = root / spec.glue_dir
    if not task_dir.is_dir():
        raise DataError(
            f"{task_dir}: task folder not found; expected {spec.glue_dir}/ inside the GLUE "
            f"directory {root} (GLUE's download layout)"
        )
    out, files = {}, {}
    for split in splits:
        if split not in spec.splits:
            raise ConfigError(
                f"task {spec.name} has no split {split!r}; expected one of {', '.join(spec.splits)}"
            )
        path = task_dir / spec.splits[split]
        if not path.is_file():
            raise DataError(f"{path}: file not found; expected split {split!r} of task {spec.name}")
        out[split], files[str(path)] = read_tsv(path, spec, split)
    return TaskData(task=spec, splits=out, files=files, source=f"local:{root}")
