"""Evaluation over every dev split from summed statistics (independent of eval batching).

``make_evaluator(...)(state) -> {"main": float, "<split>": metrics}``: each eval batch's
statistics (``objective.eval_stats``) are summed on the host with ``metrics.add_stats``
(integers in int64, floats in float64) and finished by ``objective.finalize``; the per-row
predictions of the real (weight > 0) rows are kept for the prediction file.
"""

from __future__ import annotations

import jax
import numpy as np

from tkd_jax import data as data_lib
from tkd_jax import metrics as metrics_lib


def make_evaluator(objective, encoded: dict, *, splits, example_ids: dict, main_metric: str, dp,
                   eval_step, batch_size: int, buckets):
    """evaluate(state) -> {"main": float, "<split>": metrics}; evaluate.predictions holds the
    last evaluation's {"<split>": {"index", "prediction", "label"}}, where index is the
    example's id in the split (``example_ids[split]``, the GLUE ``idx``)."""
    predictions: dict[str, dict] = {}

    def run_split(params, name):
        total, preds, labels, index = None, [], [], []
        # shortest first: each batch pads to its own longest row (dev splits in file order
        # waste 50-80 % of their slots, results/bench/); statistics are sums, and the
        # predictions are put back in split order below
        for batch in data_lib.eval_batches(encoded[name], batch_size=batch_size,
                                           buckets=buckets, sort_by_length=True):
            out = jax.device_get(eval_step(params, dp.put_eval_batch(batch)))
            keep = batch["weight"] > 0
            if "predictions" in out:
                preds.append(np.asarray(out.pop("predictions"))[keep])
                labels.append(batch["label"][keep])
                index.append(batch["index"][keep])
            total = metrics_lib.add_stats(total, out)
        if preds:
            index = np.concatenate(index)
            order = np.argsort(index, kind="stable")
            preds, labels = np.concatenate(preds)[order], np.concatenate(labels)[order]
            idx = np.asarray(example_ids[name])[index[order]]
            predictions[name] = {"index": idx, "prediction": preds, "label": labels}
        else:
            preds = labels = None
        return objective.finalize(total, preds, labels)

    def evaluate(state):
        params = dp.put_eval_params(state.params)
        out = {name: run_split(params, name) for name in splits}
        out["main"] = float(out[splits[0]][main_metric])
        return out

    evaluate.predictions = predictions
    return evaluate


def flatten_eval(result: dict) -> dict:
    """{"main", "<split>/<metric>"} scalars of an evaluation (metrics.jsonl, TensorBoard)."""
    flat = {"main": result["main"]}
    for split, m in result.items():
        if isinstance(m, dict):
            flat.update({f"{split}/{k}": v for k, v in m.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)})
    return flat
