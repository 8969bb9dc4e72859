"""Bucket lengths: padding against compiled shapes, per GLUE task.

    python -m experiments.bench_buckets --tasks cola,sst2,mrpc,stsb,rte,wnli \
        --ratios 1.12,1.25,1.5,2 --json results/bench/buckets.json

For each task (teacher WordPiece, max_len 128, the teacher recipe's preprocessing) and each
bucket ratio (``tkd_jax.data.bucket_lengths(128, ratio=r)``): how many distinct lengths a run
meets (train epochs 0..``--epochs``-1 at batch 32, plus the dev set at eval batch 128; each is
one compiled train or eval program; the dev set in file order, as the engine batches it
today, and shortest first) and the padding efficiency (real tokens / padded slots) of
those batches. A train-step compile of minilm_l6 costs ~10-25 s on 2 cores, while a padded
token costs ~1/4000 s of train compute, so a shape is worth ~60k padded training tokens.
"""

from __future__ import annotations

import argparse
import os
import sys

from tkd_jax import data as data_lib
from tkd_jax.models import teacher as teacher_lib
from tkd_jax.recipes import recipe_config


def task_stats(task, *, data_dir, ratios, epochs, batch_size=32, eval_batch_size=128,
               max_len=128) -> dict:
    config = recipe_config("teacher")
    spec = data_lib.get_task(task)
    task_data = data_lib.load_task(spec.name, source="auto", data_dir=data_dir)
    pre = {**config.preprocess.to_dict(), "augment": ()}  # the teacher recipe augments nothing
    pcfg = data_lib.PreprocessConfig(**pre, seed=0)
    tok = data_lib.load_wordpiece(teacher_lib.resolve_teacher(None))
    enc = {}
    for name in ("train", *spec.eval_splits):
        if name in task_data.splits:
            split, _ = data_lib.preprocess(task_data.splits[name], pcfg, is_train=name == "train")
            enc[name] = data_lib.encode_split(tok, split, max_len=max_len)
    out = {"task": spec.name, "examples": {k: len(v) for k, v in enc.items()}, "ratios": {}}
    for r in ratios:
        buckets = data_lib.bucket_lengths(max_len, ratio=r)
        row = {"buckets": list(buckets)}
        if "train" in enc:
            batcher = data_lib.TrainBatcher(enc["train"], batch_size=batch_size, seed=0,
                                            buckets=buckets)
            batches = [b for e in range(epochs) for b in batcher.epoch(e)]
            row["train_shapes"] = len({b["input_ids"].shape[1] for b in batches})
            row["train_padding_efficiency"] = data_lib.padding_efficiency(batches)
            row["train_padded_tokens"] = sum(b["input_ids"].size for b in batches)
        for name in spec.eval_splits:
            if name in enc:
                batches = list(data_lib.eval_batches(enc[name], batch_size=eval_batch_size,
                                                     buckets=buckets))
                row[f"{name}_shapes"] = len({b["input_ids"].shape[1] for b in batches})
                row[f"{name}_padding_efficiency"] = data_lib.padding_efficiency(batches)
                # Shortest first (eval_batches(sort_by_length=True)): the same metrics.
                batches = list(data_lib.eval_batches(enc[name], batch_size=eval_batch_size,
                                                     buckets=buckets, sort_by_length=True))
                row[f"{name}_sorted_shapes"] = len({b["input_ids"].shape[1] for b in batches})
                row[f"{name}_sorted_padding_efficiency"] = data_lib.padding_efficiency(batches)
        out["ratios"][str(r)] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="cola,sst2,mrpc,stsb,rte,wnli")
    p.add_argument("--ratios", default="1.12,1.25,1.5,2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data_dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--json")
    args = p.parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    results = []
    print("task  ratio  buckets  train shapes / pad eff  dev shapes / pad eff  "
          "dev sorted shapes / pad eff")
    for task in args.tasks.split(","):
        res = task_stats(task, data_dir=args.data_dir, ratios=ratios, epochs=args.epochs)
        results.append(res)
        for r, row in res["ratios"].items():
            dev = next(k[:-7] for k in row if k.endswith("_shapes") and k != "train_shapes")
            print(f"{res['task']:5s} {r:5s} {len(row['buckets']):4d}  "
                  f"{row.get('train_shapes', 0):4d} / {row.get('train_padding_efficiency', 0):.3f}"
                  f"  {row.get(f'{dev}_shapes', 0):4d} / "
                  f"{row.get(f'{dev}_padding_efficiency', 0):.3f}  "
                  f"{row.get(f'{dev}_sorted_shapes', 0):4d} / "
                  f"{row.get(f'{dev}_sorted_padding_efficiency', 0):.3f}", flush=True)
    if args.json:
        from tkd_jax.train.reporting import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
