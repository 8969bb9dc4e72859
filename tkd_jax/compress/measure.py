"""CPU latency / throughput of several forward passes, measured interleaved in one process.

``time_interleaved({name: (apply, params)}, batch=1, seq=128, repeats=30)`` jit-compiles each
``apply(params, ids, mask, types) -> logits``, warms it up, then runs ``repeats`` rounds in
which every model is called once (in a rotated order), so slow drifts of a shared machine hit
all models alike. Returns per model the median and 90th percentile wall time (ms), the
examples per second at the median, and the ratio of the fp32 baseline's median to its own
(its speed-up), when a model named ``baseline`` is given.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from tkd_jax import hardware


def example_inputs(batch: int, seq: int, seed: int = 0):
    """Random in-vocabulary token ids ``[batch, seq]`` int32, all real tokens, segment 0."""
    ids = np.random.default_rng(seed).integers(1000, 20000, (batch, seq)).astype(np.int32)
    return ids, np.ones_like(ids), np.zeros_like(ids)


def time_interleaved(models: dict, *, batch: int, seq: int, repeats: int,
                     baseline: str | None = None, warmup: int = 3) -> dict:
    inputs = example_inputs(batch, seq)
    fns = {}
    for name, (apply, params) in models.items():
        f = jax.jit(apply)
        params = jax.device_put(params)
        for _ in range(warmup):
            jax.block_until_ready(f(params, *inputs))
        fns[name] = (f, params)
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            f, p = fns[n]
            t = time.perf_counter()
            jax.block_until_ready(f(p, *inputs))
            times[n].append(time.perf_counter() - t)
    out = {}
    for n, ts in times.items():
        med = float(np.median(ts))
        out[n] = {"median_ms": 1e3 * med, "p90_ms": 1e3 * float(np.percentile(ts, 90)),
                  "examples_per_second": batch / med, "batch": batch, "seq": seq,
                  "repeats": repeats}
    if baseline in out:
        for n in out:
            out[n]["speedup"] = out[baseline]["median_ms"] / out[n]["median_ms"]
    return out


def cpu_info() -> dict:
    """CPU model and the ISA flags that matter for XLA:CPU matmuls, beside jax's version."""
    return {"cpu": hardware.cpu_model(), "flags": hardware.isa_flags(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "backend": jax.default_backend()}
