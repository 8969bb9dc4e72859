"""Where the time goes: the Transformer's kernels alone, XLA:CPU against PyTorch, interleaved.

    python -m experiments.bench_ops --rounds 5 --json results/bench/ops.json

At the shapes of minilm_l6 inference at batch b x 128 (``--batch``, default 64; hidden 384,
12 heads of 32, FFN 1536), in fp32 and bf16 (bf16 operands, fp32 accumulation, as
``tkd_jax.models.precision``):

  dense      x [b*128, 384] @ W [384, 1536] (the FFN-in matmul; the other Dense layers are
             alike); in bf16 also the XLA dot alone on operands cast beforehand, in fp32 also
             the compression study's int8 dynamic (w8a8) Dense, through qwix
  scores     Q K^T per head: [b, 12, 128, 32] x [b, 12, 128, 32] -> [b, 12, 128, 128]
  context    P V per head:   [b, 12, 128, 128] x [b, 12, 128, 32] -> [b, 12, 128, 32]
  attention  softmax(Q K^T / sqrt(d) + mask) V: ours (``tkd_jax.models.transformer``'s
             ``attention_probs`` + ``attention_context``), ``jax.nn.dot_product_attention``
             (XLA implementation), and, when torch is installed, ``torch.bmm`` products and
             ``torch.nn.functional.scaled_dot_product_attention`` (its fused CPU kernel).

Each contender is a jitted function (torch: eager, ``torch.set_num_threads(--threads)``) timed
as the median of ``--steps`` calls; rounds interleave the contenders. Reported per contender:
median ms over rounds, min-max, and GFLOP/s of the matmul work.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

# experiments.bench adds its XLA flags on import, before any XLA backend starts
from experiments.bench import time_calls
from tkd_jax.compress.measure import cpu_info
from tkd_jax.models import transformer
from tkd_jax.train import reporting

L, H, D, HIDDEN, FFN = 128, 12, 32, 384, 1536


def flops(b: int) -> dict:
    return {"dense": 2 * b * L * HIDDEN * FFN, "scores": 2 * b * H * L * L * D,
            "context": 2 * b * H * L * L * D, "attention": 4 * b * H * L * L * D}


def int8_dense(x, w):
    """The Dense layer as the compression study's ``int8_dynamic`` runtime runs it: qwix PTQ,
    weights int8 per output channel, activations int8 per token at run time."""
    import flax.linen as nn

    from tkd_jax.compress.runtime import quantize_int8_dynamic
    from tkd_jax.models.precision import Dense

    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Dense(FFN, name="dense")(x)

    qmodule, qparams = quantize_int8_dynamic(
        Layer(), {"dense": {"kernel": w, "bias": jnp.zeros((FFN,))}}, x, module_path=".*")
    return lambda x: qmodule.apply({"params": qparams}, x)


def jax_contenders(dtype, b: int) -> dict:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b * L, HIDDEN)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((HIDDEN, FFN)) * 0.05, jnp.float32)
    q, k, v = (jnp.asarray(rng.standard_normal((b, L, H, D)), jnp.float32) for _ in range(3))
    p = jax.nn.softmax(jnp.asarray(rng.standard_normal((b, H, L, L)), jnp.float32), -1)
    mask = jnp.ones((b, L), bool)

    def run(f, *args):
        f = jax.jit(f)
        return lambda: jax.block_until_ready(f(*args))

    from tkd_jax.models import precision as mp

    def ours(q, k, v, mask):
        probs = transformer.attention_probs(q, k, mask, dtype)
        return mp.attention_context(probs, v, dtype=dtype)

    def library(q, k, v, mask):  # [b, l, h, d] in and out, like ours
        return jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype),
                                            mask=mask[:, None, None, :], implementation="xla")

    contenders = {
        "dense": run(lambda x, w: mp.mp_matmul(x, w, dtype=dtype), x, w),
        "scores": run(lambda q, k: mp.attention_scores(q, k, dtype=dtype), q, k),
        "context": run(lambda p, v: mp.attention_context(p, v, dtype=dtype), p, v),
        "attention": run(ours, q, k, v, mask),
        "attention (jax.nn.dot_product_attention)": run(library, q, k, v, mask),
    }
    if dtype != jnp.float32:
        # The XLA kernel alone, without our casts: torch's bf16 contender also gets its operands
        # already in bf16 (and returns bf16, half the bytes of our f32 result).
        xc, wc = x.astype(dtype), w.astype(dtype)
        contenders["dense (operands pre-cast)"] = run(
            lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.float32), xc, wc)
    else:
        contenders["dense (int8 dynamic, qwix)"] = run(int8_dense(x, w), x)
    return contenders


def torch_contenders(dtype_name: str, threads: int, b: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    dt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(b * L, HIDDEN, generator=g), torch.randn(HIDDEN, FFN, generator=g)
    q, k, v = (torch.randn(b, H, L, D, generator=g).to(dt) for _ in range(3))
    p = torch.softmax(torch.randn(b, H, L, L, generator=g), -1).to(dt)
    x, w = x.to(dt), w.to(dt)
    f = torch.nn.functional.scaled_dot_product_attention

    def wrap(fn):
        def call():
            with torch.inference_mode():
                fn()
        return call

    def eager_attention():
        s = torch.softmax((q @ k.transpose(-1, -2)).float() / D ** 0.5, -1).to(dt)
        return s @ v

    return {"dense": wrap(lambda: x @ w), "scores": wrap(lambda: q @ k.transpose(-1, -2)),
            "context": wrap(lambda: p @ v), "attention": wrap(eager_attention),
            "attention (scaled_dot_product_attention)": wrap(lambda: f(q, k, v))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="sequences of 128 tokens")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.steps < 1:
        ap.error("--batch, --rounds and --steps must be >= 1")  # one line, exit 2
    contenders = {}
    for name, dtype in (("fp32", jnp.float32), ("bf16", jnp.bfloat16)):
        contenders.update({f"jax {name} {k}": f
                           for k, f in jax_contenders(dtype, args.batch).items()})
        contenders.update({f"torch {name} {k}": f
                           for k, f in torch_contenders(name, args.threads, args.batch).items()})
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            times[name].append(time_calls(fn, args.steps, warmup=1)[0] * 1e3)
    rows, work = {}, flops(args.batch)
    for name, ts in times.items():
        op = name.split(" ", 2)[2].split(" (")[0]
        med = float(np.median(ts))
        rows[name] = {"ms": med, "min": float(min(ts)), "max": float(max(ts)),
                      "gflops": work[op] / med / 1e6}
        print(f"{name:<52} {med:9.2f} ms [{min(ts):.2f}-{max(ts):.2f}] "
              f"{rows[name]['gflops']:7.0f} GFLOP/s")
    if args.json:
        reporting.write_json(args.json, {
            "rows": rows, "batch": args.batch, "rounds": args.rounds, "steps": args.steps,
            "machine": cpu_info(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "git_commit": reporting.git_commit(),
            "command": "python -m experiments.bench_ops " + " ".join(sys.argv[1:])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
