"""tkd_jax.metrics against scikit-learn / scipy, degenerate cases, and batch accumulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from tkd_jax import metrics
from tkd_jax.errors import NonFiniteError

SEEDS = (0, 1, 2, 3)
_class_stats = jax.jit(metrics.classification_stats)
_reg_stats = jax.jit(metrics.regression_stats)


def _classification_case(seed, num_classes, n=57):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    # logits correlated with the labels so every metric is away from its trivial value
    logits = rng.normal(size=(n, num_classes)) + 1.2 * np.eye(num_classes)[labels]
    return logits.astype(np.float32), labels


def _metrics_from_arrays(logits, labels):
    stats = _class_stats(logits, labels, np.ones(len(labels), np.float32))
    return metrics.compute_classification_metrics(stats["confusion"], logits.shape[1]), stats


def _sklearn_reference(y_true, y_pred, num_classes):
    labels = list(range(num_classes))
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    average = "binary" if num_classes == 2 else "macro"
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, labels=labels, average=average,
                                         zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, labels=labels, average=average,
                                   zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0),
        "f1_macro": skm.f1_score(y_true, y_pred, labels=labels, average="macro",
                                 zero_division=0),
        "mcc": skm.matthews_corrcoef(y_true, y_pred),
        "per_class": (prec, rec, f1, support),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels),
    }


def _assert_matches_sklearn(got, y_true, y_pred, num_classes):
    ref = _sklearn_reference(y_true, y_pred, num_classes)
    for key in ("accuracy", "precision", "recall", "f1", "f1_macro", "mcc"):
        assert math.isfinite(got[key]), key
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    prec, rec, f1, support = ref["per_class"]
    np.testing.assert_allclose([c["precision"] for c in got["per_class"]], prec, atol=1e-12)
    np.testing.assert_allclose([c["recall"] for c in got["per_class"]], rec, atol=1e-12)
    np.testing.assert_allclose([c["f1"] for c in got["per_class"]], f1, atol=1e-12)
    assert [c["support"] for c in got["per_class"]] == support.tolist()
    assert got["confusion_matrix"] == ref["confusion_matrix"].tolist()


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_classification_matches_sklearn(seed, num_classes):
    logits, labels = _classification_case(seed, num_classes)
    got, stats = _metrics_from_arrays(logits, labels)
    preds = logits.argmax(-1)
    _assert_matches_sklearn(got, labels, preds, num_classes)
    # loss_sum is the summed cross-entropy (eq 7)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(stats["loss_sum"]) == pytest.approx(-logp[np.arange(len(labels)), labels].sum(),
                                                     rel=1e-5)
    assert int(stats["count"]) == len(labels)
    if num_classes == 2:
        tn, fp, fn, tp = skm.confusion_matrix(labels, preds, labels=[0, 1]).ravel()
        assert got["counts"] == {"tp": tp, "tn": tn, "fp": fp, "fn": fn}
        assert got["accuracy"] == pytest.approx((tp + tn) / (tp + tn + fp + fn))  # eq 10
    else:
        assert "counts" not in got


DEGENERATE = {
    "one_class_all_correct": ([0] * 6, [0] * 6),
    "one_class_true_mixed_pred": ([1] * 6, [1, 0, 1, 1, 0, 1]),
    "constant_prediction": ([0, 1, 1, 0, 1, 0], [1] * 6),
    "no_positive_predictions": ([0, 1, 1, 0, 1, 0], [0] * 6),
    "no_positives_anywhere": ([0, 0, 0], [0, 0, 0]),
    "all_wrong": ([0, 1, 0, 1], [1, 0, 1, 0]),
}


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's, on purpose
@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_binary_cases_match_sklearn(case):
    y_true, y_pred = (np.asarray(a) for a in DEGENERATE[case])
    logits = np.eye(2, dtype=np.float32)[y_pred]
    got, _ = _metrics_from_arrays(logits, y_true)
    _assert_matches_sklearn(got, y_true, y_pred, 2)


def test_degenerate_three_class_absent_class():
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 0])  # class 2 never occurs nor is predicted
    got, _ = _metrics_from_arrays(np.eye(3, dtype=np.float32)[y_pred], y_true)
    _assert_matches_sklearn(got, y_true, y_pred, 3)
    assert got["per_class"][2] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@pytest.mark.parametrize("num_classes", [2, 3])
def test_empty_confusion_gives_zeros_not_nan(num_classes):
    got = metrics.compute_classification_metrics(np.zeros((num_classes, num_classes), np.int32))
    for key in ("accuracy", "precision", "recall", "f1", "f1_macro", "mcc"):
        assert got[key] == 0.0, key


def test_confusion_shape_is_checked():
    with pytest.raises(ValueError, match="num_labels=3"):
        metrics.compute_classification_metrics(np.zeros((2, 2)), num_labels=3)


def _regression_case(seed, n=80, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, n)
    preds = labels + rng.normal(scale=1.0, size=n)
    if ties:  # STS-B gold scores come in steps of 0.2; coarse predictions tie too
        labels, preds = np.round(labels * 5) / 5, np.round(preds)
    return preds.astype(np.float32), labels.astype(np.float32)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_regression_matches_scipy(seed, ties):
    preds, labels = _regression_case(seed, ties=ties)
    got = metrics.compute_regression_metrics(preds, labels)
    x, y = preds.astype(np.float64), labels.astype(np.float64)
    assert got["pearson"] == pytest.approx(sps.pearsonr(x, y)[0], abs=1e-12)
    assert got["spearman"] == pytest.approx(sps.spearmanr(x, y)[0], abs=1e-12)
    assert got["mse"] == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)
    assert metrics.spearman(preds, labels) == got["spearman"]
    assert metrics.pearson(preds, labels) == got["pearson"]
    np.testing.assert_array_equal(metrics.average_ranks(x), sps.rankdata(x))


@pytest.mark.parametrize(
    "preds, labels",
    [([2.0] * 5, [0.0, 1.0, 2.0, 3.0, 4.0]),  # constant predictions
     ([0.0, 1.0, 2.0], [3.0, 3.0, 3.0]),  # constant labels
     ([1.5], [2.0]),  # a single example
     ([], [])],  # empty
)
def test_regression_degenerate_is_zero(preds, labels):
    preds, labels = np.asarray(preds, np.float32), np.asarray(labels, np.float32)
    got = metrics.compute_regression_metrics(preds, labels)
    assert got["pearson"] == 0.0 and got["spearman"] == 0.0
    assert metrics.glue_score("stsb", got) == 0.0


def test_regression_rejects_non_finite_predictions():
    with pytest.raises(NonFiniteError, match="predictions"):
        metrics.compute_regression_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def _pad_batches(sizes, arrays, pad_to, rng):
    """Split arrays into batches of the given sizes, each padded to pad_to with garbage rows."""
    start = 0
    for size in sizes:
        batch = []
        for a in arrays:
            part = a[start:start + size]
            garbage = rng.normal(size=(pad_to - size,) + a.shape[1:]) * 1e3
            if a.dtype.kind == "i":
                garbage = np.full(pad_to - size, -1)  # an out-of-range label
            elif garbage.size:
                garbage.flat[0] = np.nan  # even a NaN in a padding row must not count
            batch.append(np.concatenate([part, garbage.astype(a.dtype)]))
        weights = np.concatenate([np.ones(size), np.zeros(pad_to - size)]).astype(np.float32)
        yield batch, weights
        start += size


@pytest.mark.parametrize("num_classes", [2, 3])
def test_uneven_batches_with_padding_add_up_exactly(num_classes):
    logits, labels = _classification_case(5, num_classes, n=50)
    one_shot, one_stats = _metrics_from_arrays(logits, labels)
    rng = np.random.default_rng(0)
    total = None
    for (b_logits, b_labels), w in _pad_batches([7, 1, 16, 13, 0, 13], [logits, labels], 16,
                                                rng):
        total = metrics.add_stats(total, _class_stats(b_logits, b_labels, w))
    assert total["count"] == 50 and total["confusion"].dtype == np.int64
    np.testing.assert_array_equal(total["confusion"], np.asarray(one_stats["confusion"]))
    assert total["loss_sum"] == pytest.approx(float(one_stats["loss_sum"]), rel=1e-6)
    accumulated = metrics.glue_metrics("mnli", total)
    assert {k: accumulated[k] for k in one_shot} == one_shot
    assert accumulated["loss"] == pytest.approx(float(one_stats["loss_sum"]) / 50, rel=1e-6)


def test_regression_batches_with_padding_add_up():
    preds, labels = _regression_case(7, n=45, ties=True)
    one_shot = metrics.compute_regression_metrics(preds, labels)
    one_stats = _reg_stats(preds, labels, np.ones_like(preds))
    total, kept_p, kept_y = None, [], []
    for (b_p, b_y), w in _pad_batches([5, 20, 3, 17], [preds, labels], 20,
                                      np.random.default_rng(1)):
        total = metrics.add_stats(total, _reg_stats(b_p, b_y, w))
        kept_p.append(b_p[w > 0])
        kept_y.append(b_y[w > 0])
    assert total["count"] == 45
    for key in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy", "sq_err_sum"):
        assert total[key] == pytest.approx(float(one_stats[key]), rel=1e-5), key
    got = metrics.glue_metrics("STS-B", total, np.concatenate(kept_p), np.concatenate(kept_y))
    assert {k: got[k] for k in one_shot} == one_shot  # identical gathered arrays, exact
    assert got["glue_score"] == (one_shot["pearson"] + one_shot["spearman"]) / 2
    with pytest.raises(ValueError, match="predictions"):
        metrics.glue_metrics("stsb", total)  # Spearman needs the gathered predictions


@pytest.mark.parametrize(
    "task, expected",
    [("cola", "mcc"), ("CoLA", "mcc"), ("stsb", "pearson_spearman"), ("STS-B", "pearson_spearman"),
     ("mrpc", "f1_acc"), ("QQP", "f1_acc"), ("sst2", "accuracy"), ("SST-2", "accuracy"),
     ("mnli", "accuracy"), ("mnli_mismatched", "accuracy"), ("rte", "accuracy"),
     ("qnli", "accuracy"), ("wnli", "accuracy")],
)
def test_glue_score_per_task(task, expected):
    m = {"accuracy": 0.8, "f1": 0.6, "mcc": 0.3, "pearson": 0.7, "spearman": 0.5}
    want = {"mcc": 0.3, "pearson_spearman": 0.6, "f1_acc": 0.7, "accuracy": 0.8}[expected]
    assert metrics.glue_score(task, m) == pytest.approx(want, abs=1e-15)


def test_glue_metrics_classification_end_to_end():
    logits, labels = _classification_case(11, 2)
    stats = metrics.add_stats(None, _class_stats(logits, labels, np.ones(len(labels))))
    for task, key in (("cola", "mcc"), ("rte", "accuracy")):
        got = metrics.glue_metrics(task, stats)
        assert got["glue_score"] == got[key]
    got = metrics.glue_metrics("mrpc", stats)
    assert got["glue_score"] == pytest.approx((got["f1"] + got["accuracy"]) / 2)
    assert got["f1"] == pytest.approx(skm.f1_score(labels, logits.argmax(-1)))


def test_stats_dtypes_and_weight_zero_row():
    logits = jnp.zeros((4, 3), jnp.bfloat16)
    stats = _class_stats(logits, jnp.array([0, 1, 2, 0]), jnp.array([1, 1, 0, 1]))
    assert stats["confusion"].dtype == jnp.int32 and stats["confusion"].shape == (3, 3)
    assert stats["loss_sum"].dtype == jnp.float32
    # all-zero logits predict class 0; the weight-0 row (label 2) is not counted
    np.testing.assert_array_equal(stats["confusion"], [[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert float(stats["loss_sum"]) == pytest.approx(3 * np.log(3), rel=1e-6)
