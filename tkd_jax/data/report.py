"""The data report behind ``--inspect_data``: counts, labels, token lengths, padding."""

from __future__ import annotations

import numpy as np

from tkd_jax.data.batching import (
    DEFAULT_BUCKETS,
    TrainBatcher,
    eval_batches,
    padding_efficiency,
)
from tkd_jax.data.examples import Split, TaskData
from tkd_jax.data.overlap import format_overlap, train_overlap
from tkd_jax.data.tokenization import encode_split

PERCENTILES = (50, 90, 95, 99)


def _labels(split: Split, label_names) -> dict:
    if label_names is None:  # regression scores
        scores = split.label[np.isfinite(split.label)]
        if not scores.size:
            return {"unlabeled": len(split)}
        return {
            "mean": float(scores.mean()),
            "std": float(scores.std()),
            "min": float(scores.min()),
            "max": float(scores.max()),
            "unlabeled": int(len(split) - scores.size),
        }
    counts = np.bincount(split.label[split.label >= 0], minlength=len(label_names))
    out = {name: int(c) for name, c in zip(label_names, counts, strict=True)}
    unlabeled = int((split.label < 0).sum())
    if unlabeled:
        out["unlabeled"] = unlabeled
    return out


def inspect_data(
    task_data: TaskData,
    tokenizer,
    *,
    max_len: int,
    batch_size: int,
    buckets=DEFAULT_BUCKETS,
    seed: int = 0,
) -> dict:
    """Describe every loaded split.

    Returns a JSON-able dict: ``task``, ``source``, ``max_len``, ``batch_size``, ``buckets``,
    ``files``, and per split ``examples``, ``labels`` (count per class, or score stats),
    ``tokens`` (mean and percentiles of token counts after truncation, with [CLS]/[SEP]),
    ``truncated``, and ``padding``: the efficiency (real tokens / padded slots) of the batches
    training (train split, epoch 0) or eval would use, ``bucketed`` vs ``pad_to_max``
    (every batch padded to max_len), with the number of batches and distinct shapes; and for
    every other split, when train is loaded, its ``overlap`` with train
    (:func:`~tkd_jax.data.overlap.train_overlap`).
    """
    spec = task_data.task
    train = task_data.splits.get(spec.train_split)
    splits = {}
    for name, split in task_data.splits.items():
        enc = encode_split(tokenizer, split, max_len=max_len)
        if name == spec.train_split:
            batches = list(TrainBatcher(enc, batch_size=batch_size, seed=seed, buckets=buckets)
                           .epoch(0))
        else:
            batches = list(eval_batches(enc, batch_size=batch_size, buckets=buckets,
                                        sort_by_length=True))  # as the engine evaluates
        lengths = enc.lengths
        splits[name] = {
            "examples": len(split),
            "labels": _labels(split, spec.label_names),
            "tokens": {
                "mean": float(lengths.mean()),
                **{f"p{q}": float(np.percentile(lengths, q)) for q in PERCENTILES},
                "max": int(lengths.max()),
            },
            "truncated": enc.num_truncated,
            "padding": {
                "bucketed": padding_efficiency(batches),
                "pad_to_max": float(lengths.sum()) / (len(batches) * batch_size * max_len),
                "batches": len(batches),
                "shapes": len({b["input_ids"].shape[1] for b in batches}),
            },
        }
        if name != spec.train_split and train is not None:
            splits[name]["overlap"] = train_overlap(
                train, split, classification=spec.label_names is not None)
    return {
        "task": spec.name,
        "source": task_data.source,
        "max_len": max_len,
        "batch_size": batch_size,
        "buckets": list(buckets),
        "splits": splits,
        "files": dict(task_data.files),
    }


def _label_text(labels: dict) -> str:
    if "mean" in labels:
        return (
            f"score mean {labels['mean']:.2f} sd {labels['std']:.2f} "
            f"[{labels['min']:.2f}, {labels['max']:.2f}]"
        )
    total = sum(labels.values()) or 1
    return ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in labels.items())


def format_report(report: dict) -> str:
    """Render :func:`inspect_data`'s dict as a few lines of text.

    An optional ``report["preprocess"]`` (split -> :func:`preprocess` report) is shown too.
    """
    lines = [
        f"task {report['task']}  source {report['source']}",
        f"max_len {report['max_len']}  batch_size {report['batch_size']}  "
        f"{len(report['buckets'])} bucket lengths {report['buckets'][0]}..{report['buckets'][-1]}",
    ]
    for name, s in report["splits"].items():
        tok, pad = s["tokens"], s["padding"]
        pct = " ".join(f"p{q} {tok[f'p{q}']:.0f}" for q in PERCENTILES)
        lines += [
            f"[{name}] {s['examples']} examples; labels: {_label_text(s['labels'])}",
            f"  tokens: mean {tok['mean']:.1f}  {pct}  max {tok['max']}  "
            f"truncated {s['truncated']}",
            f"  padding efficiency: bucketed {pad['bucketed']:.3f} vs pad-to-max "
            f"{pad['pad_to_max']:.3f} ({pad['batches']} batches, {pad['shapes']} shapes)",
        ]
        if "overlap" in s:
            lines.append(format_overlap(s["overlap"]))
    for name, pre in report.get("preprocess", {}).items():  # preprocess()'s reports, if added
        steps = "; ".join(
            f"{step} " + ", ".join(f"{k} {v}" for k, v in counts.items())
            for step, counts in pre["steps"].items()
        )
        lines.append(
            f"preprocess [{name}]: {pre['examples_in']} -> {pre['examples_out']} examples"
            + (f"; {steps}" if steps else "")
        )
    lines.append("files read (sha256):")
    lines += [f"  {digest}  {path}" for path, digest in report["files"].items()]
    return "\n".join(lines)
