"""Cold vs warm compile of the train step with JAX's persistent compilation cache.

    python -m experiments.bench_compile --precisions fp32,bf16 --json results/bench/compile.json

Each measurement is a fresh Python process (so nothing is cached in memory) that builds the
``--model`` train step at batch 32 x 128 and times ``jit(...).lower(...).compile()``. "cold"
runs against an empty cache directory, "warm" runs the same program again against the directory
the cold run filled (``JAX_COMPILATION_CACHE_DIR`` with ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS
=0``, which is how the engine's ``compile_cache_dir`` is meant to be wired), and "off" has no
cache at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
from experiments.bench import ours_train
t = time.perf_counter()
step, compile_s = ours_train(sys.argv[1], 32, 128, sys.argv[2])
print(json.dumps({"compile_seconds": compile_s, "build_seconds": time.perf_counter() - t}))
"""


def measure(model: str, precision: str, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    out = subprocess.run([sys.executable, "-c", CHILD, model, precision], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm_l6")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = []
    for precision in args.precisions.split(","):
        with tempfile.TemporaryDirectory() as cache:
            row = {"model": args.model, "precision": precision,
                   "off": measure(args.model, precision, None),
                   "cold": measure(args.model, precision, cache),
                   "warm": measure(args.model, precision, cache)}
        results.append(row)
        print(f"{args.model} {precision} train step compile: no cache "
              f"{row['off']['compile_seconds']:.1f} s, cold cache "
              f"{row['cold']['compile_seconds']:.1f} s, warm cache "
              f"{row['warm']['compile_seconds']:.1f} s", flush=True)
    if args.json:
        from tkd_jax.train.reporting import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
