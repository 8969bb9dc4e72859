"""End-to-end fine-tune against the PyTorch peer: wall time, compile time and dev metrics.

    python -m experiments.bench_e2e --task mrpc --precisions fp32,bf16 --peer \
        --json results/bench/e2e.json

Each contender is a whole run in its own process, one after the other (runs cannot be
interleaved; ``--rounds N`` alternates N full passes over the contenders so that a slow
window hits them alike): ours is ``python -m experiments.glue --recipe teacher`` (3 epochs,
the teacher recipe's hyperparameters) at each precision with an *empty* persistent
compilation cache (cold), then, with ``--warm``, the same run again reading the cache the cold
run filled; the peer (``--peer``, needs the ``peer`` extra; ``--peer_precisions fp32,bf16``:
eager fp32 and/or ``torch.autocast`` bf16) is ``python -m experiments.bench_torch_finetune``
(Hugging Face BERT, same ids, same
hyperparameters, dynamic padding). Reported per run: process wall seconds (start-up, data,
compile, train, eval: everything a user waits for), the run's own compile seconds and number
of XLA compiles / cache hits (``final_metrics.json["compile"]``), train seconds, and the dev
metrics of the final epoch; then ratios peer wall / ours wall (> 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from tkd_jax.compress.measure import cpu_info
from tkd_jax.train import reporting


def _timed(argv: list[str], log: pathlib.Path) -> tuple[int, float]:
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", *argv], stdout=out,
                              stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def ours(task: str, precision: str, workdir: pathlib.Path, cache: pathlib.Path,
         extra: list[str]) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, never a resume
    argv = ["experiments.glue", "--task", task, "--recipe", "teacher", "--workdir",
            str(workdir), f"--config.precision={precision}",
            f"--config.compile_cache_dir={cache}", "--quiet", *extra]
    code, wall = _timed(argv, workdir.with_suffix(".log"))
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}); see {workdir}.log")
    final = json.loads((workdir / "final_metrics.json").read_text())
    return {"wall_seconds": wall, "train_seconds": final["train_seconds"],
            "compile": final["compile"], "metrics": final["metrics"], "steps": final["steps"]}


def peer(task: str, out: pathlib.Path, extra: list[str]) -> dict:
    argv = ["experiments.bench_torch_finetune", "--task", task, "--json", str(out), *extra]
    code, wall = _timed(argv, out.with_suffix(".log"))
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({code}); see {out.with_suffix('.log')}")
    res = json.loads(out.read_text())
    return {"wall_seconds": wall, "train_seconds": res["train_seconds"],
            "metrics": res["metrics"]}


def _command(argv: list[str]) -> str:
    """The command line, the scratch directory (which changes no result) left out so that a
    committed report names no machine path."""
    argv = list(argv)
    if "--workdir" in argv:
        del argv[argv.index("--workdir"):argv.index("--workdir") + 2]
    argv = [a for a in argv if not a.startswith("--workdir=")]
    return "python -m experiments.bench_e2e " + " ".join(argv)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mrpc")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--peer", action="store_true", help="also the PyTorch run (peer extra)")
    p.add_argument("--peer_precisions", default="fp32", help="fp32 (eager), bf16 (autocast)")
    p.add_argument("--warm", action="store_true", help="re-run ours with the filled cache")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workdir", default="", help="scratch directory (default: a temp dir)")
    p.add_argument("--extra", default="", help="more experiments.glue flags, space-separated")
    p.add_argument("--json")
    args = p.parse_args(argv)
    scratch = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bench_e2e_"))
    scratch.mkdir(parents=True, exist_ok=True)
    extra = args.extra.split()
    runs: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for precision in [x for x in args.precisions.split(",") if x]:
            cache = scratch / f"cache_{precision}_{r}"
            shutil.rmtree(cache, ignore_errors=True)
            for kind in ("cold", "warm") if args.warm else ("cold",):
                name = f"ours_{precision}_{kind}"
                res = ours(args.task, precision, scratch / f"{name}_{r}", cache, extra)
                runs.setdefault(name, []).append(res)
                print(f"round {r} {name}: {json.dumps(res)}", flush=True)
        for precision in [x for x in args.peer_precisions.split(",") if x and args.peer]:
            name = f"torch_{precision}"
            res = peer(args.task, scratch / f"{name}_{r}.json", ["--precision", precision])
            runs.setdefault(name, []).append(res)
            print(f"round {r} {name}: {json.dumps(res)}", flush=True)
    walls = {k: [x["wall_seconds"] for x in v] for k, v in runs.items()}
    ratios = {f"{t} / {k}": float(np.median(np.asarray(walls[t]) / np.asarray(v)))
              for t in walls if t.startswith("torch") for k, v in walls.items()
              if k.startswith("ours")}
    report = {"task": args.task, "rounds": args.rounds, "runs": runs,
              "median_wall_seconds": {k: float(np.median(v)) for k, v in walls.items()},
              "wall_ratio_median": ratios, "machine": cpu_info(),
              "xla_flags": os.environ.get("XLA_FLAGS", ""), "git_commit": reporting.git_commit(),
              "command": _command(sys.argv[1:])}
    print(json.dumps({k: report[k] for k in ("median_wall_seconds", "wall_ratio_median")},
                     indent=2))
    if args.json:
        reporting.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
