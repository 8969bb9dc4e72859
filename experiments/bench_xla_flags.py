"""Do XLA:CPU's backend options change the compressed runtimes' speed-ups at batch 1 x 128?

    python -m experiments.bench_xla_flags --run results/runs/mrpc/teacher/seed0 \
        --passes 2 --repeats 25 --json results/bench/xla_flags.json

XLA reads ``XLA_FLAGS`` once, when jax starts, so every flag set runs in a fresh Python
process, which loads the run's final checkpoint, builds the ``--methods`` runtimes of
``tkd_jax.compress.runtime`` and times them interleaved in that process
(``compress.measure.time_interleaved``). The flag sets take turns, ``--passes`` times over, so
a drift of a shared machine hits all of them alike. Two speed-ups are reported per method: over
fp32 in the same process (the compression study's ratio) and over fp32 under the default flags
(across processes, so less exact) -- a flag that slows fp32 down must not read as a gain of the
others. The largest |logit - fp32 logit| per process shows that a flag did not change the
numerics beyond rounding.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

from experiments import cli
from tkd_jax.errors import ConfigError

# XLA:CPU's ways of handing dots and fusions to the vendor libraries it links (jaxlib 0.10):
# oneDNN (Intel), XNNPACK and YNNPACK (Google). The default uses its own emitters + Eigen.
FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_fusion_dot": "--xla_cpu_experimental_onednn_fusion_type=dot",
    "onednn_fusion_all": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "xnn_fusion_all": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "xnn_graph_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynn_fusion_dot": "--xla_cpu_experimental_ynn_fusion_type=dot",
}

CHILD = """
import json, sys
import jax, numpy as np
from tkd_jax.compress import measure, run_io, runtime
run, methods, repeats = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
module, params, _ = run_io.load_run(run)
models = {m: runtime.make_runtime(m, module, params) for m in methods}
inputs = measure.example_inputs(1, 128)
ref = np.asarray(jax.jit(models["fp32"][0])(models["fp32"][1], *inputs))
diff = {m: float(np.abs(np.asarray(jax.jit(a)(p, *inputs)) - ref).max())
        for m, (a, p) in models.items()}
res = measure.time_interleaved(models, batch=1, seq=128, repeats=repeats, baseline="fp32")
print(json.dumps({m: {"median_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                      "max_abs_logit_diff": diff[m]} for m, r in res.items()}))
"""


def run_child(run: str, methods: list[str], repeats: int, flags: str) -> dict:
    env = dict(os.environ, XLA_FLAGS=flags)
    out = subprocess.run([sys.executable, "-c", CHILD, run, ",".join(methods), str(repeats)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(passes: list[dict], methods: list[str]) -> dict:
    """Per flag set and method: median ms and the two speed-ups, median (min..max) over passes."""
    summary = {}
    for name in FLAG_SETS:
        rows = [p[name] for p in passes if "error" not in p[name]]
        if not rows:
            summary[name] = {"error": passes[0][name]["error"]}
            continue
        summary[name] = {}
        for m in methods:
            same = [r["fp32"]["median_ms"] / r[m]["median_ms"] for r in rows]
            vs_default = [p["default"]["fp32"]["median_ms"] / p[name][m]["median_ms"]
                          for p in passes if "error" not in p[name] and "error" not in p["default"]]
            summary[name][m] = {
                "median_ms": float(np.median([r[m]["median_ms"] for r in rows])),
                "speedup_same_process": [float(np.median(same)), min(same), max(same)],
                "speedup_vs_default_fp32": ([float(np.median(vs_default)), min(vs_default),
                                             max(vs_default)] if vs_default else None),
                "max_abs_logit_diff": max(r[m]["max_abs_logit_diff"] for r in rows)}
    return summary


def table(summary: dict, methods: list[str]) -> str:
    head = ["flags"] + [f"{m} ms" for m in methods] + [
        f"{m} × (same process / vs default fp32)" for m in methods if m != "fp32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} |")
            continue
        cells = [name] + [f"{row[m]['median_ms']:.2f}" for m in methods]
        cells += [f"{row[m]['speedup_same_process'][0]:.2f} / " + (
                  f"{row[m]['speedup_vs_default_fp32'][0]:.2f}"
                  if row[m]["speedup_vs_default_fp32"] else "—") for m in methods if m != "fp32"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished run directory (final checkpoint)")
    p.add_argument("--methods", default="fp32,bf16,int8_dynamic")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=25)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.passes < 1 or args.repeats < 1:
        raise ConfigError("--passes and --repeats: expected positive integers")
    methods = args.methods.split(",")
    if methods[0] != "fp32":
        methods = ["fp32"] + [m for m in methods if m != "fp32"]
    from tkd_jax.compress import run_io, runtime  # user errors before any child starts
    from tkd_jax.train import reporting

    run_io.run_manifest(args.run)
    unknown = [m for m in methods if m not in runtime.RUNTIMES]
    if unknown:
        raise ConfigError(f"--methods {','.join(unknown)}: expected runtimes among "
                          f"{', '.join(sorted(runtime.RUNTIMES))}")
    commit = reporting.git_commit()
    passes = []
    for i in range(args.passes):
        passes.append({name: run_child(args.run, methods, args.repeats, flags)
                       for name, flags in FLAG_SETS.items()})
        print(f"pass {i + 1}/{args.passes} done", flush=True)
    summary = summarize(passes, methods)
    print(table(summary, methods))
    if args.json:
        from tkd_jax.compress.measure import cpu_info

        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(
            {"command": "python -m experiments.bench_xla_flags " + " ".join(argv),
             "git_commit": commit, "run": args.run, "methods": methods,
             "repeats": args.repeats, "flag_sets": FLAG_SETS,
             "machine": cpu_info(), "summary": summary, "passes": passes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
