"""The PyTorch peer of an MRPC teacher fine-tune: Hugging Face BERT on the same encoded data.

    python -m experiments.bench_torch_finetune --task mrpc --json results/bench/e2e_torch.json

Needs the optional ``peer`` extra (``pip install -e ".[peer]"``: torch and transformers; the
package itself never imports torch). Same model files (the installed all-MiniLM-L6-v2 or
``--teacher``), same preprocessing and WordPiece ids as ``python -m experiments.glue --recipe
teacher`` (the ids come from tkd_jax's own pipeline, so both frameworks see identical tokens),
same hyperparameters as the ``teacher`` recipe (``tkd_jax.recipes``): AdamW lr 5e-5, weight
decay 0.01 off biases and LayerNorm, betas (0.9, 0.999), eps 1e-8, global-norm clipping 1.0,
batch 32,
3 epochs, 10 % linear warmup then linear decay, dropout 0.1. Batches are shuffled per epoch
and padded to their longest example (dynamic padding, as ``DataCollatorWithPadding``).
``torch.set_num_threads(--threads)`` (2 by default). Prints and writes wall and CPU seconds
(total, train, eval) and the dev metrics after each epoch; the last epoch's are the result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import resource
import sys
import time

import numpy as np

from tkd_jax import data as data_lib
from tkd_jax.models import teacher as teacher_lib
from tkd_jax.recipes import recipe_config


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def encoded_splits(task: str, data_dir, teacher_dir, config, limit: int = 0):
    spec = data_lib.get_task(task)
    task_data = data_lib.load_task(spec.name, source=config.data_source, data_dir=data_dir)
    pre = {**config.preprocess.to_dict(), "augment": ()}  # the teacher recipe augments nothing
    pcfg = data_lib.PreprocessConfig(**pre, seed=config.seed)
    tok = data_lib.load_wordpiece(teacher_dir)
    out = {}
    for name in ("train", *spec.eval_splits):
        split = task_data.splits[name]
        if limit > 0:
            split = split.take(limit)
        split, _ = data_lib.preprocess(split, pcfg, is_train=name == "train")
        out[name] = data_lib.encode_split(tok, split, max_len=config.max_len)
    return spec, out


def padded(torch, enc, rows):
    """Dynamic padding: ``rows`` of ``enc`` padded to their longest example."""
    length = int(enc.lengths[rows].max())
    ids = np.full((len(rows), length), enc.pad_id, np.int64)
    types = np.zeros((len(rows), length), np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for r, i in enumerate(rows):
        n = len(enc.input_ids[i])
        ids[r, :n], types[r, :n], mask[r, :n] = enc.input_ids[i], enc.token_type_ids[i], 1
    t = torch.from_numpy
    return t(ids), t(types), t(mask), t(np.asarray(enc.label[rows]).astype(np.int64))


def binary_metrics(pred, gold) -> dict:
    tp = int(((pred == 1) & (gold == 1)).sum())
    fp = int(((pred == 1) & (gold == 0)).sum())
    fn = int(((pred == 0) & (gold == 1)).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"accuracy": float((pred == gold).mean()), "f1": f1, "precision": precision,
            "recall": recall}


def run(args) -> dict:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = recipe_config("teacher")
    t_start, c_start = time.perf_counter(), cpu_seconds()
    teacher_dir = teacher_lib.resolve_teacher(args.teacher)
    spec, enc = encoded_splits(args.task, args.data_dir, teacher_dir, config,
                               args.max_train_examples)
    if spec.num_labels != 2:
        raise SystemExit("bench_torch_finetune reports binary metrics; use a two-class task")
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(teacher_dir), num_labels=2)
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=config.learning_rate, betas=(config.adam_b1, config.adam_b2),
                            eps=config.adam_eps)
    n, bs = len(enc["train"]), config.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * args.epochs
    sched = transformers.get_linear_schedule_with_warmup(
        opt, int(config.warmup_ratio * total), total)
    autocast = (lambda: torch.autocast("cpu", torch.bfloat16)) if args.precision == "bf16" \
        else (lambda: torch.autocast("cpu", enabled=False))
    rng = np.random.default_rng(args.seed)
    train_s = eval_s = 0.0
    epochs = []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            ids, types, mask, label = padded(torch, enc["train"], order[s * bs:(s + 1) * bs])
            with autocast():
                loss = model(input_ids=ids, token_type_ids=types, attention_mask=mask,
                             labels=label).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        train_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        model.eval()
        dev = enc[spec.eval_splits[0]]
        preds = []
        with torch.inference_mode(), autocast():
            for start in range(0, len(dev), config.eval_batch_size):
                rows = np.arange(start, min(start + config.eval_batch_size, len(dev)))
                ids, types, mask, _ = padded(torch, dev, rows)
                logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
                preds.append(logits.float().argmax(-1).numpy())
        eval_s += time.perf_counter() - t0
        m = binary_metrics(np.concatenate(preds), np.asarray(dev.label))
        epochs.append({"epoch": epoch + 1, **m})
        print(f"epoch {epoch + 1}: dev {m}", flush=True)
    return {
        "task": spec.name, "framework": f"torch {torch.__version__} + transformers "
        f"{transformers.__version__}", "precision": args.precision, "threads": args.threads,
        "seed": args.seed, "epochs": args.epochs, "steps": total, "batch_size": bs,
        "learning_rate": config.learning_rate, "metrics": epochs[-1], "per_epoch": epochs,
        "wall_seconds": time.perf_counter() - t_start, "cpu_seconds": cpu_seconds() - c_start,
        "train_seconds": train_s, "eval_seconds": eval_s, "cpu": platform.processor()
        or platform.machine(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mrpc")
    p.add_argument("--data_dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--teacher", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--max_train_examples", type=int, default=0, help="> 0: a smoke run")
    p.add_argument("--json")
    args = p.parse_args(argv)
    res = run(args)
    print(json.dumps({k: res[k] for k in ("metrics", "wall_seconds", "train_seconds",
                                           "cpu_seconds")}))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
