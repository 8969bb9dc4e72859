"""Evaluation metrics in two halves: summed statistics on device, finalisation on host.

Device side (``jnp``, jit/pmap friendly): :func:`classification_stats` and
:func:`regression_stats` return *sums* over one batch, so any split of the eval set into
batches (padded with weight-0 rows) adds up to the same totals. Weights are 0/1: a row counts
iff its weight is > 0.

Host side (NumPy, float64): :func:`add_stats` accumulates the per-batch sums;
:func:`compute_classification_metrics` turns a confusion matrix into accuracy (paper eq 10),
precision, recall, F1 (eq 11) and MCC; :func:`compute_regression_metrics` gives Pearson and
Spearman from the raw predictions; :func:`glue_score` picks each task's official GLUE number and
:func:`glue_metrics` does all of it from accumulated statistics.

Conventions for degenerate inputs (never NaN; the first four follow scikit-learn's
``zero_division=0``):

* precision = 0 when a class is never predicted (tp + fp = 0);
* recall = 0 when a class never occurs (tp + fn = 0);
* F1 = 2tp / (2tp + fp + fn), and 0 when that denominator is 0;
* MCC = 0 when its denominator is 0 (one class only in the labels or in the predictions),
  as ``sklearn.metrics.matthews_corrcoef``;
* accuracy = 0 and loss = 0 for an empty evaluation set;
* Pearson and Spearman = 0 when either side is constant or there are fewer than two
  examples (scipy would return NaN).

Multi-class precision/recall/F1 are macro averages over *all* ``num_labels`` classes
(scikit-learn with ``labels=range(num_labels), average="macro"``); binary ones are for the
positive class, label 1. Multi-class MCC is Gorodkin's R_K statistic, which is what
scikit-learn computes and reduces to the usual binary formula for two classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tkd_jax.errors import NonFiniteError

# Keys of the per-batch statistics that add up across batches (everything else, e.g. the raw
# "predictions" the eval step attaches, is per-example data the caller concatenates).
SUM_KEYS = (
    "confusion", "loss_sum", "count", "correct",
    "sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy", "sq_err_sum",
)


# --------------------------------------------------------------------------- device side


def classification_stats(logits, labels, weights) -> dict[str, jax.Array]:
    """Summed statistics of one classification batch.

    Args:
      logits: ``[B, C]`` float, any dtype (computed in float32).
      labels: ``[B]`` int class ids; rows with weight 0 may hold any value (e.g. -1).
      weights: ``[B]`` 0/1; a row counts iff its weight is > 0.

    Returns:
      ``confusion``: ``[C, C]`` int32 exact counts, rows = true class, columns = predicted
      (argmax) class; ``loss_sum``: float32 sum of the counted rows' cross-entropy;
      ``count``: int32 number of counted rows.
    """
    logits = jnp.asarray(logits, jnp.float32)
    num_classes = logits.shape[-1]
    labels = jnp.asarray(labels).astype(jnp.int32)
    keep = jnp.asarray(weights) > 0
    true_1h = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)  # [B, C]; 0s if out of range
    pred_1h = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=jnp.int32)
    true_1h = true_1h * keep[:, None].astype(jnp.int32)
    confusion = jnp.sum(true_1h[:, :, None] * pred_1h[:, None, :], axis=0)  # [C, C]
    # one-hot CE gives 0 (not NaN) for out-of-range padding labels; where() keeps a non-finite
    # padding row out of the sum.
    nll = -jnp.sum(true_1h.astype(jnp.float32) * jax.nn.log_softmax(logits), axis=-1)
    loss_sum = jnp.sum(jnp.where(keep, nll, 0.0))
    return {"confusion": confusion, "loss_sum": loss_sum,
            "count": jnp.sum(keep.astype(jnp.int32))}


def regression_stats(preds, labels, weights) -> dict[str, jax.Array]:
    """Summed moments of one regression batch (float32 sums, ``count`` int32).

    Args:
      preds: ``[B]`` predicted scores (``x``). labels: ``[B]`` gold scores (``y``).
      weights: ``[B]`` 0/1; a row counts iff its weight is > 0.

    Returns ``count``, ``sum_x``, ``sum_y``, ``sum_xx``, ``sum_yy``, ``sum_xy`` and
    ``sq_err_sum`` (sum of (x - y)^2). The float32 moment sums carry ~1e-7 relative error per
    batch, too coarse for Pearson when the predictions' spread is tiny compared with their mean,
    so the host computes the correlations from the gathered raw predictions
    (:func:`compute_regression_metrics`).
    """
    x = jnp.asarray(preds, jnp.float32)
    y = jnp.asarray(labels, jnp.float32)
    keep = jnp.asarray(weights) > 0
    x = jnp.where(keep, x, 0.0)  # padding rows may hold anything, even NaN
    y = jnp.where(keep, y, 0.0)
    return {
        "count": jnp.sum(keep.astype(jnp.int32)),
        "sum_x": jnp.sum(x),
        "sum_y": jnp.sum(y),
        "sum_xx": jnp.sum(x * x),
        "sum_yy": jnp.sum(y * y),
        "sum_xy": jnp.sum(x * y),
        "sq_err_sum": jnp.sum(jnp.square(x - y)),
    }


# --------------------------------------------------------------------------- host side


def add_stats(total: Mapping | None, stats: Mapping) -> dict[str, np.ndarray]:
    """Host accumulation of per-batch statistics: integers in int64, floats in float64.

    Only :data:`SUM_KEYS` present in ``stats`` are summed; other keys are ignored (the caller
    concatenates per-example arrays such as ``predictions`` itself). ``total=None`` starts.
    """
    out = {} if total is None else dict(total)
    for key in SUM_KEYS:
        if key not in stats:
            continue
        value = np.asarray(jax.device_get(stats[key]))
        value = value.astype(np.int64 if np.issubdtype(value.dtype, np.integer) else np.float64)
        out[key] = value if key not in out else out[key] + value
    return out


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den != 0 else 0.0


def compute_classification_metrics(confusion, num_labels: int | None = None) -> dict:
    """Accuracy, precision, recall, F1, MCC, per-class scores from a confusion matrix.

    Args:
      confusion: ``[C, C]`` counts, rows = true class, columns = predicted class.
      num_labels: C (checked against the matrix when given).

    Returns a dict with floats ``accuracy``, ``precision``, ``recall``, ``f1`` (binary: the
    positive class 1; multi-class: macro), ``f1_macro``, ``mcc``; ``per_class``: a list of
    ``{"precision", "recall", "f1", "support"}`` per class; ``confusion_matrix``: nested list of
    ints; for binary tasks also ``counts``: ``{"tp", "tn", "fp", "fn"}``.
    """
    cm = np.asarray(jax.device_get(confusion)).astype(np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [C, C], got shape {cm.shape}")
    if num_labels is not None and cm.shape[0] != num_labels:
        raise ValueError(f"confusion matrix is {cm.shape[0]}x{cm.shape[0]}, "
                         f"expected num_labels={num_labels}")
    num_classes = cm.shape[0]
    total = cm.sum()
    tp = np.diag(cm)
    true_count = cm.sum(axis=1)  # support of each true class
    pred_count = cm.sum(axis=0)
    per_class = []
    for k in range(num_classes):
        fp, fn = pred_count[k] - tp[k], true_count[k] - tp[k]
        per_class.append({
            "precision": _safe_div(tp[k], tp[k] + fp),
            "recall": _safe_div(tp[k], tp[k] + fn),
            "f1": _safe_div(2 * tp[k], 2 * tp[k] + fp + fn),
            "support": int(true_count[k]),
        })
    # Gorodkin's R_K: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)); float64 keeps the integer
    # products exact for any realistic eval set (s^2 < 2^53).
    cov_tp = tp.sum() * total - true_count @ pred_count
    cov_pp = total**2 - pred_count @ pred_count
    cov_tt = total**2 - true_count @ true_count
    den = np.sqrt(cov_pp * cov_tt)
    mcc = float(cov_tp / den) if den > 0 else 0.0
    macro = {key: float(np.mean([c[key] for c in per_class])) for key in ("precision", "recall",
                                                                          "f1")}
    headline = per_class[1] if num_classes == 2 else macro
    out = {
        "accuracy": _safe_div(tp.sum(), total),
        "precision": headline["precision"],
        "recall": headline["recall"],
        "f1": headline["f1"],
        "f1_macro": macro["f1"],
        "mcc": float(np.clip(mcc, -1.0, 1.0)),
        "per_class": per_class,
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }
    if num_classes == 2:
        out["counts"] = {"tp": int(cm[1, 1]), "tn": int(cm[0, 0]),
                         "fp": int(cm[0, 1]), "fn": int(cm[1, 0])}
    return out


def _host_vector(values, name: str) -> np.ndarray:
    x = np.asarray(jax.device_get(values), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise NonFiniteError(f"{name}: non-finite values; cannot compute correlations")
    return x


def _pearson64(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    return float(np.clip(np.dot(xc, yc) / den, -1.0, 1.0)) if den > 0 else 0.0


def average_ranks(values) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``rankdata(method="average")``)."""
    x = np.asarray(values).reshape(-1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    # a tie group of size n spanning ranks end-n+1 .. end gets rank end - (n-1)/2
    ends = np.cumsum(counts).astype(np.float64)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def pearson(preds, labels) -> float:
    """Pearson correlation in float64 from raw arrays; 0 if constant or fewer than 2 values."""
    x, y = _host_vector(preds, "predictions"), _host_vector(labels, "labels")
    if x.shape != y.shape:
        raise ValueError(f"predictions {x.shape} and labels {y.shape} differ in length")
    return _pearson64(x, y)


def spearman(preds, labels) -> float:
    """Spearman rank correlation (average ranks for ties), 0 if either side is constant."""
    x, y = _host_vector(preds, "predictions"), _host_vector(labels, "labels")
    if x.shape != y.shape:
        raise ValueError(f"predictions {x.shape} and labels {y.shape} differ in length")
    return _pearson64(average_ranks(x), average_ranks(y))


def compute_regression_metrics(preds, labels) -> dict[str, float]:
    """Pearson, Spearman and MSE from raw predictions and gold scores (float64)."""
    x, y = _host_vector(preds, "predictions"), _host_vector(labels, "labels")
    if x.shape != y.shape:
        raise ValueError(f"predictions {x.shape} and labels {y.shape} differ in length")
    return {"pearson": pearson(x, y), "spearman": spearman(x, y),
            "mse": float(np.mean((x - y) ** 2)) if x.size else 0.0}


def _mean_of(*keys):
    return lambda m: float(np.mean([m[k] for k in keys]))


# Official GLUE number per task; every task not listed here is scored by accuracy.
GLUE_SCORE = {
    "cola": _mean_of("mcc"),
    "stsb": _mean_of("pearson", "spearman"),
    "mrpc": _mean_of("f1", "accuracy"),
    "qqp": _mean_of("f1", "accuracy"),
}


def _task_key(task_name: str) -> str:
    # "STS-B", "sts_b", "stsb" -> "stsb"; "mnli_mismatched" -> "mnlimismatched" (accuracy)
    return "".join(ch for ch in task_name.lower() if ch.isalnum())


def glue_score(task_name: str, metrics: Mapping) -> float:
    """The task's GLUE score: CoLA MCC; STS-B mean(Pearson, Spearman); MRPC/QQP mean(F1, acc);
    every other task accuracy. Fractions (not x100)."""
    return GLUE_SCORE.get(_task_key(task_name), _mean_of("accuracy"))(metrics)


def glue_metrics(task_name: str, stats: Mapping, predictions=None, labels=None) -> dict:
    """All metrics of one evaluation plus ``glue_score``, from accumulated statistics.

    ``stats`` are the summed statistics (see :func:`add_stats`): a ``confusion`` matrix for
    classification (with ``loss_sum`` / ``count``: the mean cross-entropy ``loss``). For
    regression pass the gathered raw ``predictions`` and ``labels`` (weight-0 rows removed):
    Pearson, Spearman and MSE are computed from them in float64.
    """
    if "confusion" in stats:
        out = compute_classification_metrics(stats["confusion"])
        if "loss_sum" in stats:
            out["loss"] = _safe_div(np.asarray(stats["loss_sum"]), np.asarray(stats["count"]))
    elif predictions is not None and labels is not None:
        out = compute_regression_metrics(predictions, labels)
    else:
        raise ValueError("glue_metrics: regression needs the gathered predictions and labels")
    out["glue_score"] = glue_score(task_name, out)
    return out
