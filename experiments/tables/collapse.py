"""Trained runs that give every dev example the same answer.

A classifier that answers one class everywhere has learnt the class prior, not the task: its
accuracy is a constant baseline's (``majority`` or ``positive``), and a comparison it enters
measures that. A cell's mean hides how many of its seeds did this (a cell at 53 % may be five
weak classifiers or two constants and three better ones), so the report lists them per row.
Read from each run's committed ``predictions.json``; regression tasks are left out (a
constant score is not a class, and no STS-B run here comes near one).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.tables import rows as rows_lib
from tkd_jax.data.tasks import TASKS


@dataclasses.dataclass(frozen=True)
class Collapse:
    """Of ``runs`` runs of (task, row) with predictions, the seeds that answered one class,
    per class id: ``{class: (seed, ...)}``."""

    task: str
    row: str
    runs: int
    seeds_by_class: dict[int, tuple[int, ...]]

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.seeds_by_class.values())


def constant_runs(cells, tasks) -> list[Collapse]:
    """Per trained row of each classification task (the tables' row order), the runs whose
    dev predictions are all one class; rows where none are are left out."""
    out = []
    for task in tasks:
        if task in rows_lib.REGRESSION_TASKS:
            continue
        for r in rows_lib.ROWS:
            if r.recipe is None or not r.applies_to(task):
                continue  # trivial rows are constant by construction
            answered = [(run.seed, p[1]) for run in cells.get((task, r.name), [])
                        if (p := run.split_predictions()) is not None]
            by_class: dict[int, list[int]] = {}
            for seed, pred in answered:
                values = np.unique(pred)
                if values.size == 1:
                    by_class.setdefault(int(values[0]), []).append(seed)
            if by_class:
                out.append(Collapse(task, r.name, len(answered),
                                    {k: tuple(v) for k, v in sorted(by_class.items())}))
    return out


def _class_name(task: str, k: int) -> str:
    spec = TASKS.get(task)
    names = spec.label_names if spec is not None else None
    return f'"{names[k]}"' if names and 0 <= k < len(names) else f"class {k}"


def lines(collapses: list[Collapse]) -> list[str]:
    """One line per row: ``- rte tkd_paper: 1 of 2 runs (seed 5 "not_entailment")``."""
    out = []
    for c in collapses:
        which = "; ".join(
            f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} "
            f"{_class_name(c.task, k)}" for k, seeds in c.seeds_by_class.items())
        out.append(f"- {c.task} `{c.row}`: {c.count} of {c.runs} run{'s' * (c.runs != 1)} "
                   f"({which})")
    return out
