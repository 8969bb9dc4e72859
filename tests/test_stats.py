"""tkd_jax.stats against scipy / scikit-learn / NumPy references and known cases."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from tkd_jax import stats


def test_summarize_matches_scipy_t_interval():
    x = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    s = stats.summarize(x)
    lo, hi = sps.t.interval(0.95, df=4, loc=x.mean(), scale=sps.sem(x))
    assert (s.n, s.mean, s.sd) == (5, pytest.approx(x.mean()), pytest.approx(np.std(x, ddof=1)))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_summarize_clips_the_interval_to_the_metrics_range():
    x = np.array([0.0, 0.0, 0.0, 0.6])  # WNLI-like F1: three seeds predict no positive
    lo, hi = sps.t.interval(0.95, df=3, loc=x.mean(), scale=sps.sem(x))
    assert lo < 0
    s = stats.summarize(x, bounds=(0.0, 1.0))
    assert (s.ci_low, s.ci_high) == (0.0, pytest.approx(hi, abs=1e-12))
    assert s.mean == pytest.approx(0.15) and s.sd == pytest.approx(np.std(x, ddof=1))
    inside = stats.summarize([0.81, 0.84, 0.79], bounds=(0.0, 1.0))
    assert (inside.ci_low, inside.ci_high) == pytest.approx(
        sps.t.interval(0.95, df=2, loc=np.mean([0.81, 0.84, 0.79]),
                       scale=sps.sem([0.81, 0.84, 0.79])), abs=1e-12)


def test_summarize_single_value_has_no_spread():
    s = stats.summarize([0.684])
    assert s.n == 1 and s.mean == 0.684
    assert math.isnan(s.sd) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_paired_t_test_matches_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    a = rng.normal(0.85, 0.02, size=6)
    b = a - rng.normal(0.01, 0.01, size=6)
    r = stats.paired_t_test(a, b)
    ref = sps.ttest_rel(a, b)
    assert r.t == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    d = a - b
    assert r.dz == pytest.approx(d.mean() / d.std(ddof=1))


def test_dz_interval_inverts_the_noncentral_t():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 8), rng.normal(0.3, 1.0, 8)
    r = stats.paired_t_test(a, b)
    root_n = math.sqrt(r.n)
    # defining property: t_obs sits at the 97.5% / 2.5% point of the bounding distributions
    assert sps.nct.cdf(r.t, r.df, r.dz_low * root_n) == pytest.approx(0.975, abs=1e-9)
    assert sps.nct.cdf(r.t, r.df, r.dz_high * root_n) == pytest.approx(0.025, abs=1e-9)
    assert r.dz_low < r.dz < r.dz_high


def test_dz_interval_for_a_huge_effect_with_few_seeds():
    # t = 55 on 4 degrees of freedom: scipy's nct is NaN far in its tails; the roots are not
    r = stats.paired_t_test([0.90, 0.91, 0.92, 0.93, 0.945], [0.70, 0.705, 0.72, 0.725, 0.74])
    assert r.t > 40
    assert sps.nct.cdf(r.t, 4, r.dz_low * math.sqrt(5)) == pytest.approx(0.975, abs=1e-8)
    assert sps.nct.cdf(r.t, 4, r.dz_high * math.sqrt(5)) == pytest.approx(0.025, abs=1e-8)


def test_dz_interval_approaches_the_normal_approximation_for_large_n():
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 1.0, 4000)
    r = stats.paired_t_test(d, np.zeros_like(d))
    half = 1.959964 * math.sqrt(1 / r.n + r.dz**2 / (2 * r.n))  # Hedges & Olkin
    assert r.dz_low == pytest.approx(r.dz - half, abs=2e-3)
    assert r.dz_high == pytest.approx(r.dz + half, abs=2e-3)


def test_one_sample_against_a_constant_baseline_matches_scipy():
    a = np.array([0.70, 0.72, 0.69, 0.74, 0.71])
    r = stats.paired_t_test(a, [0.684])
    ref = sps.ttest_1samp(a, 0.684)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10) and r.n == 5


def test_constant_differences_have_no_t():
    r = stats.paired_t_test([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert r.mean_diff == pytest.approx(0.1) and r.sd_diff == 0.0
    assert math.isnan(r.t) and math.isnan(r.p)
    with pytest.raises(ValueError, match="3 values against 2"):
        stats.paired_t_test([1, 2, 3], [1, 2])


def test_holm_known_case_and_nan():
    # sorted p: .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.2, float("nan")]), [0.4, 1.0])
    np.testing.assert_allclose(stats.holm([0.6, 0.7]), [1.0, 1.0])


@pytest.mark.parametrize("num_labels", [2, 3])
def test_batched_classification_metrics_match_sklearn(num_labels):
    rng = np.random.default_rng(num_labels)
    labels = rng.integers(0, num_labels, size=(5, 60))
    preds = np.where(rng.random((5, 60)) < 0.7, labels, rng.integers(0, num_labels, (5, 60)))
    avg = "binary" if num_labels == 2 else "macro"
    for r in range(5):
        y, p = labels[r], preds[r]
        assert stats.batched_metric("accuracy", preds, labels, num_labels)[r] == pytest.approx(
            skm.accuracy_score(y, p))
        assert stats.batched_metric("f1", preds, labels, num_labels)[r] == pytest.approx(
            skm.f1_score(y, p, average=avg, labels=range(num_labels), zero_division=0))
        assert stats.batched_metric("mcc", preds, labels, num_labels)[r] == pytest.approx(
            skm.matthews_corrcoef(y, p))


def test_batched_metric_degenerate_and_composite():
    labels = np.array([1, 1, 0, 1])
    always_pos = np.ones(4, int)
    assert stats.batched_metric("f1", always_pos, labels) == pytest.approx(6 / 7)
    assert stats.batched_metric("mcc", always_pos, labels) == 0.0  # sklearn's convention
    assert stats.batched_metric("f1+accuracy", always_pos, labels) == pytest.approx(
        (6 / 7 + 0.75) / 2)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        stats.batched_metric("auc", always_pos, labels)


def test_batched_correlations_match_scipy():
    rng = np.random.default_rng(7)
    y = rng.uniform(0, 5, size=(3, 40)).round(1)  # ties, as STS-B has
    x = y + rng.normal(0, 1, size=y.shape)
    for r in range(3):
        assert stats.batched_metric("pearson", x, y)[r] == pytest.approx(
            sps.pearsonr(x[r], y[r]).statistic)
        assert stats.batched_metric("spearman", x, y)[r] == pytest.approx(
            sps.spearmanr(x[r], y[r]).statistic)


@pytest.mark.parametrize("chunk", [1000, 128])  # 128: the resamples come in 3 blocks
def test_paired_bootstrap_matches_a_loop_with_sklearn(chunk, monkeypatch):
    monkeypatch.setattr(stats, "_CHUNK", chunk)
    rng = np.random.default_rng(11)
    n = 50
    labels = rng.integers(0, 2, n)
    a = np.where(rng.random((3, n)) < 0.8, labels, 1 - labels)
    b = np.where(rng.random((3, n)) < 0.7, labels, 1 - labels)
    res = stats.paired_bootstrap("f1", labels, a, b, n_resamples=300, seed=5)
    idx = np.random.default_rng(5).integers(0, n, size=(300, n))
    diffs = np.array([
        np.mean([skm.f1_score(labels[i], row[i], zero_division=0) for row in a]) -
        np.mean([skm.f1_score(labels[i], row[i], zero_division=0) for row in b])
        for i in idx])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert (res.ci_low, res.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    tail = min((diffs <= 0).sum() + 1, (diffs >= 0).sum() + 1) / 301
    assert res.p == pytest.approx(min(1.0, 2 * tail))
    full = np.mean([skm.f1_score(labels, r) for r in a]) - np.mean(
        [skm.f1_score(labels, r) for r in b])
    assert res.diff == pytest.approx(full) and res.n_examples == n


def test_paired_bootstrap_known_cases():
    labels = np.array([0, 1] * 20)
    same = stats.paired_bootstrap("accuracy", labels, labels[None], labels[None],
                                  n_resamples=200)
    assert (same.diff, same.ci_low, same.ci_high, same.p) == (0.0, 0.0, 0.0, 1.0)
    wrong = 1 - labels
    clear = stats.paired_bootstrap("accuracy", labels, labels, wrong, n_resamples=200)
    assert (clear.diff, clear.ci_low, clear.ci_high) == (1.0, 1.0, 1.0)
    assert clear.p == pytest.approx(2 / 201)  # the smallest p 200 resamples can give
    again = stats.paired_bootstrap("accuracy", labels, labels, wrong, n_resamples=200)
    assert again == clear  # seeded
