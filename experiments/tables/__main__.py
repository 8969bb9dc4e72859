"""`python -m experiments.tables`: tables, CSVs, plots and REPRODUCTION.md from the runs.

    python -m experiments.tables [--runs_dir results/runs] [--out results]
        [--tasks cola,sst2,...] [--seeds 5] [--resamples 2000]
"""

from __future__ import annotations

import json
import sys

from experiments import cli, reproduce
from experiments.tables import analysis, provenance, reproduction, write
from experiments.tables import rows as rows_lib
from tkd_jax.errors import ConfigError


def _wall_seconds(run_dir) -> float:
    path = run_dir / reproduce.DRIVER_FILE
    return float(json.loads(path.read_text())["wall_seconds"]) if path.exists() else 0.0


def build(runs_dir, out_dir, tasks, *, seeds: int, n_resamples: int, root) -> list:
    cells = analysis.collect(runs_dir)
    comps = analysis.comparisons(cells, tasks, n_resamples=n_resamples, seeds=seeds)
    written = write.write_tables(out_dir, cells, tasks, comps)
    runs = [r for rs in cells.values() for r in rs]
    checks = {
        "runs": len(runs),
        "code": provenance.code_versions(cells, root),
        "off_plan": provenance.off_plan(cells),
        "teacher": provenance.teacher_problems(cells),
        "dirty": sum(str((r.manifest or {}).get("git_commit", "")).endswith("+dirty")
                     for r in runs),
        "mismatches": analysis.prediction_mismatches(cells),
        "no_predictions": [str(r.path) for r in runs if r.split_predictions() is None],
        "train_hours": sum(float(r.final.get("train_seconds", 0.0)) for r in runs) / 3600,
        "wall_hours": sum(_wall_seconds(r.path) for r in runs) / 3600,
    }
    latency_file = out_dir / "tables" / "latency.json"
    latency = json.loads(latency_file.read_text()) if latency_file.exists() else None
    path = out_dir / "REPRODUCTION.md"
    path.write_text(reproduction.render(cells, tasks, comps, seeds=seeds, provenance=checks,
                                        latency=latency))
    return [*written, path]


def main(argv: list[str]) -> int:
    import pathlib

    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--runs_dir", default="results/runs")
    p.add_argument("--out", default="results")
    p.add_argument("--tasks", default=",".join(rows_lib.DEFAULT_TASKS))
    p.add_argument("--seeds", type=int, default=rows_lib.DEFAULT_SEEDS)
    p.add_argument("--resamples", type=int, default=analysis.N_RESAMPLES)
    args = p.parse_args(argv)
    from tkd_jax.data import get_task

    tasks = [get_task(t.strip().lower()).name  # ConfigError on an unknown task
             for t in args.tasks.split(",") if t.strip()]
    for flag, value in (("--seeds", args.seeds), ("--resamples", args.resamples)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: expected at least 1")
    if not pathlib.Path(args.runs_dir).is_dir():
        raise ConfigError(f"--runs_dir {args.runs_dir}: not a directory")
    for path in build(pathlib.Path(args.runs_dir), pathlib.Path(args.out), tasks,
                      seeds=args.seeds, n_resamples=args.resamples, root=reproduce.repo_root()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
