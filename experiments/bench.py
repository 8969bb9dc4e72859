"""Benchmarks against the PyTorch peer: `python -m experiments.bench [train|infer|latency|all]`.

    python -m experiments.bench all --rounds 5 --json results/bench/peer.json

Contenders, all in one process and interleaved round by round (round r times every contender
once, then round r + 1), so a noisy shared machine slows them alike:

  train    one optimizer step at batch 32 x 128 with dropout on: AdamW, clipping 1.0 (ours:
           ``steps.train_step``; torch: forward, backward, ``clip_grad_norm_``, ``AdamW.step``)
  infer    a batch of 64 x 128 through the classifier, eval mode (throughput)
  latency  a batch of 1 x 128 (latency)

for our ``--model`` (default ``minilm_l6``) in fp32 and bf16 and, when torch and transformers are
importable (the optional ``peer`` extra), the same architecture as Hugging Face
``BertForSequenceClassification`` built from the installed all-MiniLM-L6-v2 files (or
``--teacher``), ``torch.set_num_threads(--threads)``: eager fp32, ``torch.autocast("cpu",
bfloat16)``, and ``torch.compile`` (inference only). Each measurement is the median of
``--steps`` timed calls; the report gives per contender the median over rounds and the spread
(min-max) of wall time and of process CPU time (all threads; less sensitive to other processes),
and ratios ``peer time / our time`` (> 1: ours is faster) as the median of per-round ratios with
their min-max.

XLA flag: ``--xla_cpu_prefer_vector_width=512`` (appended to XLA_FLAGS before jax is imported)
lets XLA:CPU's own fused elementwise kernels use AVX-512; 6-8 % faster here (interleaved A/B).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# Before jax is imported: XLA reads XLA_FLAGS once, when the CPU backend starts.
_FLAG = "--xla_cpu_prefer_vector_width=512"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import bench_peer  # noqa: E402
from tkd_jax.compress.measure import cpu_info  # noqa: E402
from tkd_jax.models import get_config  # noqa: E402
from tkd_jax.models.registry import create_model  # noqa: E402
from tkd_jax.train import optim, steps  # noqa: E402
from tkd_jax.train import state as state_lib  # noqa: E402
from tkd_jax.train.objectives import TaskObjective  # noqa: E402

SHAPES = {"train": (32, 128), "infer": (64, 128), "latency": (1, 128)}


def fake_batch(batch: int, seq: int, vocab: int, num_labels: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(1000, vocab, (batch, seq)).astype(np.int32),
        "attention_mask": np.ones((batch, seq), np.int32),
        "token_type_ids": np.zeros((batch, seq), np.int32),
        "label": rng.integers(0, num_labels, (batch,)).astype(np.int32),
        "weight": np.ones((batch,), np.float32),
        "index": np.arange(batch, dtype=np.int32),
    }


def ours_train(model_name: str, batch: int, seq: int, precision: str, **overrides):
    """A callable that runs one jitted train step (blocking), and its compile seconds.

    ``overrides``: model config fields (e.g. the dropout rates, for ``--ablate_dropout``)."""
    model = create_model(model_name, num_labels=2, dtype=state_lib.compute_dtype(precision),
                         **overrides)
    b = fake_batch(batch, seq, get_config(model_name).vocab_size)
    params = model.init(jax.random.key(0), b["input_ids"][:1], b["attention_mask"][:1])["params"]
    tx, _ = optim.make_optimizer(learning_rate=1e-4, total_steps=1000, warmup_steps=100)
    box = [state_lib.create_train_state(apply_fn=model.apply, params={"model": params}, tx=tx,
                                        precision=precision, rng=jax.random.PRNGKey(0))]
    spec = steps.StepSpec(TaskObjective("bench", regression=False, num_labels=2),
                          fp16=precision == "fp16")
    fn = jax.jit(lambda s, bt, r: steps.train_step(s, bt, r, {}, spec=spec, model=model),
                 donate_argnums=0)
    key = jax.random.PRNGKey(1)
    t = time.perf_counter()
    compiled = fn.lower(box[0], b, key).compile()
    compile_s = time.perf_counter() - t

    def step():
        box[0], m = compiled(box[0], b, key)
        jax.block_until_ready(m)

    return step, compile_s


def ours_forward(model_name: str, batch: int, seq: int, precision: str):
    model = create_model(model_name, num_labels=2, dtype=state_lib.compute_dtype(precision))
    b = fake_batch(batch, seq, get_config(model_name).vocab_size)
    params = model.init(jax.random.key(0), b["input_ids"][:1], b["attention_mask"][:1])["params"]
    fn = jax.jit(lambda p, i, m, t: model.apply({"params": p}, i, m, t).logits)
    args = (params, b["input_ids"], b["attention_mask"], b["token_type_ids"])
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t
    return (lambda: compiled(*args).block_until_ready()), compile_s


def time_calls(fn, steps_n: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall and median process-CPU seconds of ``steps_n`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(steps_n):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def summarize(samples: dict[str, list[tuple[float, float]]], ours: list[str]) -> dict:
    """Per contender: median / min / max over rounds of wall and CPU seconds; ratios of each
    non-ours contender to each of ours (peer seconds / our seconds, per round)."""
    out = {"contenders": {}, "ratios": {}}
    for name, s in samples.items():
        w, c = np.array([x[0] for x in s]), np.array([x[1] for x in s])
        out["contenders"][name] = {
            "wall_median": float(np.median(w)), "wall_min": float(w.min()),
            "wall_max": float(w.max()), "cpu_median": float(np.median(c)),
            "cpu_min": float(c.min()), "cpu_max": float(c.max()),
            "wall_rounds": w.tolist(), "cpu_rounds": c.tolist()}
    for a in ours:
        for b in samples:
            if b == a:
                continue
            r = np.array([pb[0] / pa[0] for pa, pb in zip(samples[a], samples[b], strict=True)])
            rc = np.array([pb[1] / pa[1] for pa, pb in zip(samples[a], samples[b], strict=True)])
            out["ratios"][f"{b} / {a}"] = {
                "wall_median": float(np.median(r)), "wall_min": float(r.min()),
                "wall_max": float(r.max()), "cpu_median": float(np.median(rc)),
                "cpu_min": float(rc.min()), "cpu_max": float(rc.max())}
    return out


def build(what: str, args, peer) -> tuple[dict, dict]:
    """Contender callables and compile seconds for one benchmark kind."""
    batch, seq = SHAPES[what]
    fns, compiles = {}, {}
    for precision in args.precisions:
        maker = ours_train if what == "train" else ours_forward
        fns[f"ours {precision}"], compiles[f"ours {precision}"] = maker(
            args.model, batch, seq, precision)
        if what == "train" and args.ablate_dropout:  # what any cheaper dropout could win at most
            name = f"ours {precision} (no dropout)"
            fns[name], compiles[name] = ours_train(args.model, batch, seq, precision,
                                                   dropout_rate=0.0, attention_dropout_rate=0.0)
    if peer is not None:
        fns.update(peer.contenders(what, batch, seq))
    return fns, compiles


def run(what: str, args, peer) -> dict:
    fns, compiles = build(what, args, peer)
    samples = {name: [] for name in fns}
    steps_n = args.steps if what != "latency" else args.steps * 10
    for _ in range(args.rounds):
        for name, fn in fns.items():
            samples[name].append(time_calls(fn, steps_n))
    res = summarize(samples, [n for n in fns if n.startswith("ours")])
    res.update(what=what, batch=SHAPES[what][0], seq=SHAPES[what][1], steps=steps_n,
               rounds=args.rounds, compile_seconds=compiles)
    return res


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {**cpu_info(), "xla_flags": os.environ.get("XLA_FLAGS"), "commit": commit}


def format_result(res: dict) -> str:
    b, s = res["batch"], res["seq"]
    lines = [f"{res['what']} (batch {b} x {s}), median of {res['steps']} calls per round, "
             f"{res['rounds']} rounds: wall ms median [min-max] | CPU ms median"]
    for name, c in res["contenders"].items():
        lines.append(f"  {name:22s} {1e3 * c['wall_median']:9.1f} [{1e3 * c['wall_min']:.1f}-"
                     f"{1e3 * c['wall_max']:.1f}] | {1e3 * c['cpu_median']:9.1f}  "
                     f"({b / c['wall_median']:.1f} ex/s)")
    lines.append("  ratios (other / ours; > 1 = ours faster): wall median [min-max] | CPU")
    for name, r in res["ratios"].items():
        lines.append(f"  {name:36s} {r['wall_median']:.2f}x [{r['wall_min']:.2f}-"
                     f"{r['wall_max']:.2f}] | {r['cpu_median']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=(*SHAPES, "all"))
    p.add_argument("--model", default="minilm_l6")
    p.add_argument("--precisions", default="fp32,bf16", type=lambda s: s.split(","))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed calls per round (x10 latency)")
    p.add_argument("--peer", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--teacher", default=None, help="HF BERT dir of the peer model")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--no_compile", action="store_true", help="skip torch.compile contenders")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--ablate_dropout", action="store_true",
                   help="train: also time our step with every dropout rate 0")
    args = p.parse_args(argv)
    peer = None if args.peer == "off" else bench_peer.load(
        args.teacher, threads=args.threads, compile=not args.no_compile,
        required=args.peer == "on")
    info = machine()
    print(f"{info['cpu']}, {info['cpu_count']} CPUs, flags {' '.join(info['flags'])}; jax "
          f"{info['jax']}; XLA_FLAGS {info['xla_flags']}; peer "
          f"{peer.version if peer else 'not installed / off'}")
    results = {"machine": info, "peer": peer.version if peer else None, "benchmarks": []}
    for what in (SHAPES if args.what == "all" else (args.what,)):
        res = run(what, args, peer)
        results["benchmarks"].append(res)
        print(format_result(res), flush=True)
    if args.json:
        from tkd_jax.train.reporting import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
