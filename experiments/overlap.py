"""Each row's dev accuracy on the examples whose answer contradicts train, and on the rest.

    python -m experiments.overlap --task wnli [--runs_dir results/runs] [--data_dir DIR]

A dev example "contradicts train" when its first text is a training example's and none of the
training examples with that text has its label (``tkd_jax.data.overlap.contradicts_train``;
WNLI dev: 54 of 71, by GLUE's design). A model that carries a text's training answer over to
dev gets those wrong, so the split tells memorisation from the rest of a low dev score. Reads
the runs' committed ``predictions.json`` (the reported dev split) and the task's data; trains
nothing.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli
from experiments.tables import analysis
from experiments.tables import rows as rows_lib
from tkd_jax import data as data_lib
from tkd_jax.data.overlap import contradicts_train
from tkd_jax.errors import ConfigError


def split_accuracy(runs, contradicts: dict[int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Per run: (accuracy on the contradicting examples, accuracy on the others)."""
    hit, rest = [], []
    for run in runs:
        index, pred, label = run.split_predictions()
        mask = np.array([contradicts[int(i)] for i in index], dtype=bool)
        right = pred == label
        hit.append(right[mask].mean() if mask.any() else np.nan)
        rest.append(right[~mask].mean() if (~mask).any() else np.nan)
    return np.array(hit), np.array(rest)


def table(task: str, runs_dir, *, data_dir=None) -> str:
    spec = data_lib.get_task(task)
    if spec.is_regression:
        raise ConfigError(f"--task {spec.name}: a regression task; no answer to contradict")
    loaded = data_lib.load_task(spec, data_dir=data_dir,
                                splits=[spec.train_split, spec.eval_splits[0]])
    dev = loaded.splits[spec.eval_splits[0]]
    mask = contradicts_train(loaded.splits[spec.train_split], dev)
    contradicts = dict(zip(dev.idx.tolist(), mask.tolist(), strict=True))
    cells = {row: [r for r in runs if r.split_predictions() is not None
                   and r.final.get("split") == spec.eval_splits[0]]
             for (_, row), runs in analysis.collect(runs_dir, spec.name).items()}
    cells = {row: runs for row, runs in cells.items() if runs}
    if not cells:
        raise ConfigError(f"--runs_dir {runs_dir}: no {spec.name} run with dev predictions")
    n = int(mask.sum())
    head = f"{spec.name} {spec.eval_splits[0]}: {n} of {len(dev)} examples contradict train"
    if n == 0:
        return head
    lines = [head, "", f"| row | runs | accuracy on the {n} (mean ± sd) | "
             f"on the other {len(dev) - n} | overall |", "|---|---|---|---|---|"]
    order = {r.name: i for i, r in enumerate(rows_lib.ROWS)}  # the tables' row order
    for row in sorted(cells, key=lambda r: (order.get(r, len(order)), r)):
        runs = cells[row]
        hit, rest = split_accuracy(runs, contradicts)
        overall = [r.metric("accuracy") for r in runs]
        sd = f" ± {100 * np.std(hit, ddof=1):.1f}" if len(runs) > 1 else ""
        lines.append(f"| {row} | {len(runs)} | {100 * np.mean(hit):.1f}{sd} | "
                     f"{100 * np.mean(rest):.1f} | {100 * np.mean(overall):.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--runs_dir", default="results/runs")
    p.add_argument("--data_dir", default=None, help="GLUE directory (else $GLUE_DIR, else hub)")
    args = p.parse_args(argv)
    print(table(args.task, args.runs_dir, data_dir=args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
