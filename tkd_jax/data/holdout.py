"""A held-out slice of the training set, evaluated in place of dev (``config.holdout_examples``).

Settings that are chosen rather than fixed beforehand (a recovery schedule, a sparsity scope, a
learning rate) must be chosen without looking at dev. A run with ``holdout_examples=N`` trains
on the training split minus N examples and evaluates on those N instead of on dev, under the
split name ``holdout`` (metrics ``holdout/...``, ``final_metrics.json`` ``"split": "holdout"``);
dev is not read at all. The N examples are drawn by a fixed permutation (seed
:data:`HOLDOUT_SEED`, independent of the run's seed), so a teacher, its students and every
compression of them hold out the same examples when they use the same N.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tkd_jax.data.examples import Split, TaskData
from tkd_jax.data.sources import load_task
from tkd_jax.data.tasks import TaskSpec
from tkd_jax.errors import ConfigError

HOLDOUT_SPLIT = "holdout"
HOLDOUT_SEED = 0


def with_holdout(spec: TaskSpec, holdout_examples: int) -> TaskSpec:
    """``spec`` evaluating on the held-out slice (unchanged when ``holdout_examples`` is 0)."""
    if holdout_examples <= 0:
        return spec
    return dataclasses.replace(spec, eval_splits=(HOLDOUT_SPLIT,))


def split_off(train: Split, n: int) -> tuple[Split, Split]:
    """(train without the held-out examples, the held-out examples), both in file order."""
    if not 0 < n < len(train):
        raise ConfigError(f"config.holdout_examples={n}: expected between 1 and "
                          f"{len(train) - 1} (the training split has {len(train)} examples)")
    held = np.zeros(len(train), bool)
    held[np.random.default_rng(HOLDOUT_SEED).permutation(len(train))[:n]] = True
    return train.select(np.flatnonzero(~held)), train.select(np.flatnonzero(held))


def load_run_splits(spec: TaskSpec, *, source: str, data_dir, max_train_examples: int,
                    max_eval_examples: int,
                    holdout_examples: int) -> tuple[TaskData, dict[str, Split]]:
    """(the task's data, the raw splits a run uses: ``train`` plus ``spec``'s evaluation
    splits), for the engine and for anything that re-reads a run's data (compression).

    With a holdout only the training file is read. The held-out slice is taken from the whole
    training split first, then the ``max_*_examples`` limits apply (first N of what is left),
    as without a holdout.
    """
    task_data = load_task(spec.name, source=source, data_dir=data_dir,
                          splits=("train",) if holdout_examples > 0 else None)
    if "train" not in task_data.splits:
        raise ConfigError(f"task {spec.name}: no training split found in the data source")
    train = task_data.splits["train"]
    out = {}
    if holdout_examples > 0:
        train, out[HOLDOUT_SPLIT] = split_off(train, holdout_examples)
    for name in spec.eval_splits:
        if name not in out:
            if name not in task_data.splits:
                raise ConfigError(f"task {spec.name}: split {name!r} not found in the data "
                                  "source")
            out[name] = task_data.splits[name]
    splits = {"train": train, **out}
    for name, split in splits.items():
        limit = max_train_examples if name == "train" else max_eval_examples
        if limit > 0:
            splits[name] = split.take(limit)
    return task_data, splits
