"""How far each trained row brought down its training loss, beside its dev loss.

A cell at chance on dev is either a model that learnt nothing (training loss flat at a
constant answer's, as the paper preset's unscaled embeddings did) or one that fit its
training set and did not generalise; the dev metric alone cannot tell them apart. Read from
each run's committed ``metrics.jsonl``: the hard-label training loss (cross-entropy, or MSE
on STS-B; dropout on) of the first and the last logged window, each a mean over the steps
since the log before it, and the dev loss of the last evaluation, averaged over the row's
runs (cross-entropy, or MSE on STS-B: the training loss's own kind). Beside them, the dev
loss of the best constant answer, from the committed dev labels: answering the labels' class
frequencies costs their entropy; on STS-B answering their mean costs their variance. A dev
loss above it means the model's confident answers cost more than they gain.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from experiments.tables import rows as rows_lib
from tkd_jax import viz
from tkd_jax.data.tasks import TASKS
from tkd_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Fit:
    """Means over the ``runs`` runs of (task, row) that logged a training loss."""

    task: str
    row: str
    runs: int
    first: float
    last: float
    dev: float | None  # over the runs that logged one; None when none did


def _losses(workdir, dev_key: str) -> tuple[float, float, float | None] | None:
    """(first, last) logged training loss and the last ``dev_key`` of one run's
    metrics.jsonl; None when it is missing or unreadable."""
    try:
        records = viz.read_metrics(workdir)
    except DataError:
        return None
    train = viz.curve(records.get("train", []), "loss_hard")[1]
    dev = viz.curve(records.get("eval", []), dev_key)[1]
    if not train:
        return None
    return train[0], train[-1], dev[-1] if dev else None


def row_fits(cells, tasks) -> list[Fit]:
    """Per trained row of each task (the tables' row order) with at least one logged run."""
    out = []
    for task in tasks:
        # the evaluation logs a regression task's loss as its MSE metric
        dev_key = "dev/mse" if TASKS[task].is_regression else "dev/loss"
        for r in rows_lib.ROWS:
            if r.recipe is None or not r.applies_to(task):
                continue  # trivial rows do not train
            found = [x for run in cells.get((task, r.name), [])
                     if (x := _losses(run.path, dev_key)) is not None]
            if not found:
                continue
            devs = [d for _, _, d in found if d is not None]
            out.append(Fit(task, r.name, len(found),
                           statistics.fmean(first for first, _, _ in found),
                           statistics.fmean(last for _, last, _ in found),
                           statistics.fmean(devs) if devs else None))
    return out


def constant_loss(cells, task: str) -> float | None:
    """The dev loss of the best constant answer, from the dev labels of the first run of
    ``task`` with predictions: their entropy in nats (cross-entropy), or on a regression task
    their variance (the MSE of answering their mean); None without predictions."""
    spec = TASKS.get(task)
    runs = (run for (t, _), rows in cells.items() if t == task for run in rows)
    labels = next((p[2] for run in runs if (p := run.split_predictions()) is not None), None)
    if spec is None or labels is None:
        return None
    if spec.is_regression:
        return float(np.var(labels.astype(np.float64)))
    freq = np.bincount(labels.astype(np.int64)) / labels.size
    freq = freq[freq > 0]
    return float(-np.sum(freq * np.log(freq)))


def lines(fits: list[Fit], cells) -> list[str]:
    """A Markdown table, one line per (task, row)."""
    out = ["| task | row | runs | train loss, first log | train loss, last log | "
           "dev loss | dev loss of the best constant |", "|---" * 7 + "|"]
    constant = {t: constant_loss(cells, t) for t in dict.fromkeys(f.task for f in fits)}
    for f in fits:
        dev, c = ("—" if x is None else f"{x:.3f}" for x in (f.dev, constant[f.task]))
        out.append(f"| {f.task} | `{f.row}` | {f.runs} | {f.first:.3f} | {f.last:.3f} | "
                   f"{dev} | {c} |")
    return out
