"""Benchmarks: `python -m experiments.bench train [--model minilm_l6 --batch 32 --seq 128]`.

Prints train-step examples/s and MFU = model FLOPs per second / this machine's measured fp32
matmul peak (the best of several large jitted matmuls). Model FLOPs are counted analytically
(6 x matmul params per token + attention scores and mixing, forward 1x + backward 2x) and
checked against XLA's cost analysis of the compiled step. The step time is the median of
`--steps` individually timed steps (robust to other processes sharing the cores).

XLA flag: `--xla_cpu_prefer_vector_width=512` (appended to XLA_FLAGS before jax is imported)
lets XLA:CPU's own fused elementwise kernels (LayerNorm, softmax, GELU, dropout masks) use
AVX-512; it made the minilm_l6 step 6-8% faster here (interleaved A/B). Results stay
deterministic run to run. Matmuls run in YNNPACK either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Before jax is imported: XLA reads XLA_FLAGS once, when the CPU backend starts.
_FLAG = "--xla_cpu_prefer_vector_width=512"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tkd_jax.models import get_config  # noqa: E402
from tkd_jax.models.registry import create_model  # noqa: E402
from tkd_jax.train import optim, steps  # noqa: E402
from tkd_jax.train import state as state_lib  # noqa: E402
from tkd_jax.train.objectives import TaskObjective  # noqa: E402


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 matmul FLOP/s over a few sizes (the denominator of MFU)."""
    best = 0.0
    for size in (n // 2, n, 2 * n):
        a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), jnp.float32)
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
        t = time.perf_counter()
        for _ in range(repeats):
            out = f(a)
        out.block_until_ready()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - t))
    return best


def transformer_train_flops(cfg, batch: int, seq: int, num_labels: int) -> float:
    """Analytic FLOPs of one train step (forward + backward = 3x forward matmul FLOPs)."""
    d, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    per_token = layers * (4 * d * d + 2 * d * f)  # Q, K, V, O and the FFN (multiply-adds)
    per_token += layers * 2 * seq * d  # QK^T and probs @ V
    fwd = 2 * batch * seq * per_token + 2 * batch * (d * d + d * num_labels)  # + pooler, head
    return 3.0 * fwd


def bench_train(model_name: str, batch: int, seq: int, steps_n: int, precision: str) -> dict:
    num_labels = 2
    cfg = get_config(model_name)
    model = create_model(model_name, num_labels=num_labels,
                         dtype=state_lib.compute_dtype(precision))
    rng = np.random.default_rng(0)
    b = {
        "input_ids": rng.integers(1000, cfg.vocab_size, (batch, seq)).astype(np.int32),
        "attention_mask": np.ones((batch, seq), np.int32),
        "token_type_ids": np.zeros((batch, seq), np.int32),
        "label": rng.integers(0, num_labels, (batch,)).astype(np.int32),
        "weight": np.ones((batch,), np.float32),
        "index": np.arange(batch, dtype=np.int32),
    }
    params = model.init(jax.random.key(0), b["input_ids"][:1], b["attention_mask"][:1])["params"]
    tx, _ = optim.make_optimizer(learning_rate=1e-4, total_steps=1000, warmup_steps=100)
    state = state_lib.create_train_state(apply_fn=model.apply, params={"model": params}, tx=tx,
                                         precision=precision, rng=jax.random.PRNGKey(0))
    objective = TaskObjective("bench", regression=False, num_labels=num_labels)
    spec = steps.StepSpec(objective, fp16=precision == "fp16")
    fn = jax.jit(lambda s, bt, r: steps.train_step(s, bt, r, {}, spec=spec, model=model),
                 donate_argnums=0)
    key = jax.random.PRNGKey(1)
    compiled = fn.lower(state, b, key).compile()
    xla_flops = (compiled.cost_analysis() or {}).get("flops")
    for _ in range(2):  # warm-up
        state, m = fn(state, b, key)
    jax.block_until_ready(m)
    times = []
    for _ in range(steps_n):
        t = time.perf_counter()
        state, m = fn(state, b, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    dt = float(np.median(times))
    flops = transformer_train_flops(cfg, batch, seq, num_labels)
    peak = matmul_peak()
    return {
        "model": model_name, "batch": batch, "seq": seq, "precision": precision,
        "step_seconds": dt, "step_seconds_all": times, "examples_per_second": batch / dt,
        "model_flops_per_step": flops, "xla_flops_per_step": xla_flops,
        "achieved_flops_per_second": flops / dt, "matmul_peak_flops_per_second": peak,
        "mfu": flops / dt / peak, "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("train",))
    p.add_argument("--model", default="minilm_l6")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", default="fp32", choices=sorted(state_lib.PRECISIONS))
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    res = bench_train(args.model, args.batch, args.seq, args.steps, args.precision)
    print(f"{res['model']} train step, batch {res['batch']} x seq {res['seq']}, "
          f"{res['precision']}: {res['step_seconds'] * 1e3:.1f} ms/step, "
          f"{res['examples_per_second']:.1f} examples/s")
    print(f"model FLOPs/step {res['model_flops_per_step']:.3e} (XLA counts "
          f"{res['xla_flops_per_step'] or float('nan'):.3e}); achieved "
          f"{res['achieved_flops_per_second'] / 1e9:.1f} GFLOP/s; measured fp32 matmul peak "
          f"{res['matmul_peak_flops_per_second'] / 1e9:.1f} GFLOP/s; MFU {res['mfu']:.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
