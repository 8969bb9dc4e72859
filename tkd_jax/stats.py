"""Statistics for the reproduction tables: summaries over seeds, paired tests, Holm correction.

Pure NumPy/SciPy on the host, float64 throughout. Two kinds of pairing are used (issue 12):

* over seeds -- run ``s`` of row A and run ``s`` of row B share the teacher seed ``s``, so the
  per-seed differences are paired: :func:`paired_t_test` (Student's t on the differences,
  ``scipy.stats.ttest_rel``) with the mean difference's t interval and Cohen's d_z with an
  exact interval from the noncentral t distribution;
* over dev examples -- both rows answered the same dev examples, so resampling examples with
  replacement and recomputing both rows' metric on the same resample gives a paired bootstrap
  (:func:`paired_bootstrap`; Efron & Tibshirani 1993, Koehn 2004 for NLP) of the difference of
  the seed-averaged metric, with a percentile interval and a two-sided p-value.

Undefined quantities are NaN, never a made-up number: the sd and interval of one value; the
t statistic, p-value and d_z when every paired difference is the same (scipy's convention).
:func:`holm` counts a NaN p-value as 1 (nothing is claimed from it).

The batched metrics (:func:`batched_metric`) are the GLUE definitions of ``tkd_jax.metrics``
(binary F1/precision for class 1, macro F1 for more classes, Gorodkin's multi-class MCC,
Pearson, Spearman with average ranks), vectorised over a leading resample axis because a
bootstrap evaluates them thousands of times; ``tkd_jax.metrics`` works one confusion matrix at
a time on device outputs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
_CHUNK = 1000  # bootstrap resamples evaluated at once


@dataclasses.dataclass(frozen=True)
class Summary:
    """A cell over its seeds: n, mean, sample sd (ddof 1) and the t-based interval."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


def summarize(values, confidence: float = CONFIDENCE,
              bounds: tuple[float, float] | None = None) -> Summary:
    """mean +- t_{n-1} * sd / sqrt(n); sd and interval are NaN for fewer than two values.

    ``bounds``: the range the quantity can take (F1 in [0, 1]); the interval is clipped to it.
    A few noisy seeds can push a t interval past the range (an F1 interval reaching -0.27);
    clipping keeps every value the interval contains possible and loses no coverage.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("summarize: no values")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(int(x.size), mean, sd, low, high)


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Paired t-test of A - B over seeds (or one-sample against a constant B).

    mean_diff with its t interval [ci_low, ci_high] is the effect in the metric's units;
    d_z = mean_diff / sd_diff is the standardised effect with its noncentral-t interval.
    """

    n: int
    mean_diff: float
    sd_diff: float
    t: float
    df: int
    p: float
    ci_low: float
    ci_high: float
    dz: float
    dz_low: float
    dz_high: float


def _noncentrality_interval(t_obs: float, df: int, confidence: float) -> tuple[float, float]:
    """Noncentrality parameters whose t distributions put t_obs at the upper / lower tail.

    lo solves nct.cdf(t_obs; df, lo) = 1 - a/2, hi solves nct.cdf(t_obs; df, hi) = a/2 (cdf
    falls as the noncentrality grows, so both roots are unique).
    """
    a = 1 - confidence

    def cdf(nc):
        # scipy's nct.cdf returns NaN far in its tails, where the value is ~1 (nc << t_obs)
        # or ~0 (nc >> t_obs)
        v = float(stats.nct.cdf(t_obs, df, nc))
        return v if not math.isnan(v) else float(nc < t_obs)

    def root(target):
        f = lambda nc: cdf(nc) - target
        # grow the bracket in doubling steps: far tails of scipy's nct can return NaN
        step, lo = 1.0, t_obs - 1.0
        while f(lo) < 0:
            lo, step = lo - step, 2 * step
        step, hi = 1.0, t_obs + 1.0
        while f(hi) > 0:
            hi, step = hi + step, 2 * step
        return float(optimize.brentq(f, lo, hi, xtol=1e-12))

    return root(1 - a / 2), root(a / 2)


def paired_t_test(a, b, confidence: float = CONFIDENCE) -> PairedTest:
    """Two-sided paired t-test of ``a - b``.

    Args:
      a: [n] float, row A's metric per seed.
      b: [n] float, row B's metric for the same seeds; or [1] for a deterministic row (a
        trivial baseline), which makes it a one-sample test of ``a`` against ``b[0]``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if b.size == 1 and a.size > 1:
        b = np.full_like(a, b[0])
    if a.shape != b.shape:
        raise ValueError(f"paired_t_test: {a.size} values against {b.size}")
    d = a - b
    n, mean = d.size, float(d.mean())
    nan = math.nan
    if n < 2:
        return PairedTest(n, mean, nan, nan, 0, nan, nan, nan, nan, nan, nan)
    sd = float(d.std(ddof=1))
    df = n - 1
    if sd == 0.0:  # every difference equal: t undefined (scipy returns NaN too)
        return PairedTest(n, mean, 0.0, nan, df, nan, mean, mean, nan, nan, nan)
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    nc_lo, nc_hi = _noncentrality_interval(t, df, confidence)
    return PairedTest(n, mean, sd, t, df, p, mean - half, mean + half, mean / sd,
                      nc_lo / math.sqrt(n), nc_hi / math.sqrt(n))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order.

    adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) over the ascending order; NaN
    counts as 1.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    p = np.where(np.isnan(p), 1.0, p)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


# ------------------------------------------------------------------ batched metrics


def _confusion(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """[R, N] int preds and labels -> [R, C, C] counts (rows = true class)."""
    r = preds.shape[0]
    flat = (np.arange(r)[:, None] * num_labels + labels) * num_labels + preds
    counts = np.bincount(flat.reshape(-1), minlength=r * num_labels * num_labels)
    return counts.reshape(r, num_labels, num_labels).astype(np.float64)


def _div(num, den):
    return np.where(den != 0, num / np.where(den != 0, den, 1.0), 0.0)


def _f1(cm: np.ndarray) -> np.ndarray:
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fp, fn = cm.sum(axis=1) - tp, cm.sum(axis=2) - tp
    per_class = _div(2 * tp, 2 * tp + fp + fn)
    return per_class[:, 1] if cm.shape[1] == 2 else per_class.mean(axis=1)


def _mcc(cm: np.ndarray) -> np.ndarray:
    total = cm.sum(axis=(1, 2))
    correct = np.trace(cm, axis1=1, axis2=2)
    t, p = cm.sum(axis=2), cm.sum(axis=1)
    cov_tp = correct * total - (t * p).sum(axis=1)
    den = np.sqrt((total**2 - (p * p).sum(axis=1)) * (total**2 - (t * t).sum(axis=1)))
    return np.clip(_div(cov_tp, den), -1.0, 1.0)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    return np.clip(_div((xc * yc).sum(axis=1), den), -1.0, 1.0)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


CLASSIFICATION = ("accuracy", "f1", "mcc")
REGRESSION = ("pearson", "spearman")


def batched_metric(name: str, preds, labels, num_labels: int = 2) -> np.ndarray:
    """One GLUE metric per row.

    Args:
      name: accuracy, f1, mcc (class ids), pearson, spearman (floats), or a "+"-joined mean of
        several (``"f1+accuracy"`` is MRPC's GLUE score).
      preds, labels: [R, N] (or [N]); class ids in [0, num_labels) or float scores.

    Returns:
      [R] float64 (a 0-d array for [N] inputs).
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    single = preds.ndim == 1
    preds, labels = np.atleast_2d(preds), np.atleast_2d(labels)
    if preds.shape != labels.shape:
        raise ValueError(f"batched_metric: predictions {preds.shape} vs labels {labels.shape}")
    parts = name.split("+")
    values = []
    for part in parts:
        if part in CLASSIFICATION:
            cm = _confusion(preds.astype(np.int64), labels.astype(np.int64), num_labels)
            if part == "accuracy":
                values.append(np.trace(cm, axis1=1, axis2=2) / preds.shape[1])
            else:
                values.append(_f1(cm) if part == "f1" else _mcc(cm))
        elif part in REGRESSION:
            x, y = preds.astype(np.float64), labels.astype(np.float64)
            values.append(_pearson(x, y) if part == "pearson" else _spearman(x, y))
        else:
            raise ValueError(f"batched_metric: unknown metric {part!r}")
    out = np.mean(values, axis=0)
    return out[0] if single else out


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """Paired bootstrap of (seed-mean metric of A) - (seed-mean metric of B) over examples."""

    n_examples: int
    n_resamples: int
    diff: float  # on the full dev set
    ci_low: float
    ci_high: float
    p: float


def paired_bootstrap(metric: str, labels, preds_a, preds_b, *, n_resamples: int = 2000,
                     seed: int = 0, confidence: float = CONFIDENCE,
                     num_labels: int = 2) -> Bootstrap:
    """Resample dev examples with replacement; both rows are scored on the same resample.

    Args:
      metric: a :func:`batched_metric` name.
      labels: [N] gold labels (class ids or scores), aligned with the prediction columns.
      preds_a: [Sa, N] row A's predictions, one row per seed ([N] for one run).
      preds_b: [Sb, N] row B's predictions.
      n_resamples: B; indices are drawn as ``default_rng(seed).integers(0, N, (B, N))``
        (in blocks of rows, which gives the same stream).

    The interval is the percentile interval of the B differences; the two-sided p-value is
    2 * min((#{d* <= 0} + 1) / (B + 1), (#{d* >= 0} + 1) / (B + 1)), capped at 1 (the
    add-one form never reports p = 0 from a finite number of resamples).
    """
    labels = np.asarray(labels).reshape(-1)
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    n = labels.size
    if a.shape[1] != n or b.shape[1] != n:
        raise ValueError(f"paired_bootstrap: {n} labels, predictions {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)

    def seed_mean(p, idx):
        return np.mean([batched_metric(metric, row[idx], labels[idx], num_labels) for row in p],
                       axis=0)

    chunks = []  # resamples in blocks, so memory stays ~[CHUNK, N] on MNLI-sized dev sets
    for start in range(0, n_resamples, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        chunks.append(seed_mean(a, idx) - seed_mean(b, idx))
    d = np.concatenate(chunks)
    full = lambda p: float(np.mean([batched_metric(metric, row, labels, num_labels)
                                    for row in p]))
    q = (1 - confidence) / 2
    lo, hi = np.quantile(d, [q, 1 - q])
    tail = min(np.sum(d <= 0) + 1, np.sum(d >= 0) + 1) / (n_resamples + 1)
    return Bootstrap(n, n_resamples, full(a) - full(b), float(lo), float(hi),
                     float(min(1.0, 2 * tail)))
