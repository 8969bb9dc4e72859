"""CPU inference latency of finished runs at batch 1 (default sequence 128).

    python -m experiments.latency runs/mrpc_tkd/teacher runs/mrpc_tkd/tkd_ft_init \
        [--seq 128] [--repeats 50] [--json results/latency/mrpc.json]

Loads each run's model (model.json) and best checkpoint, jit-compiles the forward pass and
reports the median and 90th percentile wall time of `repeats` calls after warm-up, with the
parameter count.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import jax
import numpy as np

from experiments import cli
from tkd_jax.models import count_params
from tkd_jax.train import runs


def measure(run_dir, *, seq: int, repeats: int) -> dict:
    module, params, desc = runs.load_run(run_dir)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (1, seq)).astype(np.int32)
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    fwd = jax.jit(lambda p, a, b, c: module.apply({"params": p}, a, b, c).logits)
    params = jax.device_put(params)
    for _ in range(3):
        fwd(params, ids, mask, types).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fwd(params, ids, mask, types).block_until_ready()
        times.append(time.perf_counter() - t)
    return {"run": str(run_dir), "model": desc.get("name"), "num_params": count_params(params),
            "batch": 1, "seq": seq, "repeats": repeats,
            "median_ms": 1e3 * float(np.median(times)),
            "p90_ms": 1e3 * float(np.percentile(times, 90)),
            "device": str(jax.devices()[0])}


def main(argv: list[str]) -> int:
    p = cli.make_parser(__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = [measure(r, seq=args.seq, repeats=args.repeats) for r in args.runs]
    for r in results:
        print(f"{r['run']}: {r['model']}, {r['num_params']:,} params, batch 1 x seq {r['seq']}: "
              f"median {r['median_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms")
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
