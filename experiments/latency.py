"""CPU inference latency of finished runs at batch 1 (default sequence 128), interleaved.

    python -m experiments.latency results/runs/mrpc/teacher/seed0 results/runs/mrpc/tkd/seed0 \
        [--seq 128] [--repeats 50] [--json results/tables/latency.json]

Loads each run's model (model.json) and final checkpoint and times the jitted fp32 forward pass
of all of them in one process, interleaved round by round (``tkd_jax.compress.measure``), so a
drift of a shared machine hits every run alike. Per run: the median and 90th percentile of
``repeats`` rounds after warm-up, the parameter count, and the speed-up over the first run
given. The JSON also records the command, the git commit and the CPU.
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments import cli
from tkd_jax.compress import measure, runtime
from tkd_jax.errors import ConfigError
from tkd_jax.models import count_params
from tkd_jax.train import reporting, runs


def measure_runs(run_dirs: list[str], *, seq: int, repeats: int) -> list[dict]:
    models, info = {}, {}
    for run in run_dirs:
        module, params, desc = runs.load_run(run)
        models[run] = runtime.make_runtime("fp32", module, params)
        info[run] = {"run": run, "model": desc.get("name"), "num_params": count_params(params)}
    timing = measure.time_interleaved(models, batch=1, seq=seq, repeats=repeats,
                                      baseline=run_dirs[0])
    return [{**info[r], "batch": 1, "seq": seq, "repeats": repeats,
             "median_ms": timing[r]["median_ms"], "p90_ms": timing[r]["p90_ms"],
             "speedup_vs_first": timing[r]["speedup"]} for r in run_dirs]


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.seq < 1 or args.repeats < 1:
        raise ConfigError("--seq and --repeats: expected positive integers")
    if len(set(args.runs)) != len(args.runs):
        raise ConfigError("runs: each run directory once")
    commit = reporting.git_commit()
    results = measure_runs(args.runs, seq=args.seq, repeats=args.repeats)
    for r in results:
        print(f"{r['run']}: {r['model']}, {r['num_params']:,} params, batch 1 x seq {r['seq']}: "
              f"median {r['median_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
              f"{r['speedup_vs_first']:.2f}x the first")
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(
            {"command": "python -m experiments.latency " + " ".join(argv), "git_commit": commit,
             "machine": measure.cpu_info(), "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
