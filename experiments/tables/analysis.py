"""Read the runs under results/runs, summarise each cell over seeds and test the comparisons.

A run is read from ``<runs_dir>/<task>/<row>/seed<S>/``: ``final_metrics.json`` (the number the
tables show: the final-epoch dev metric), ``predictions.json`` (per dev example, for the
paired bootstrap) and ``manifest.json`` (provenance). Comparisons pair row A's seed S with row
B's seed S (the same teacher seed) for the t-test, and the same dev examples (joined on their
index) for the bootstrap. Holm's correction runs over every comparison of one test kind and
one metric kind (all tasks together: the family the report's verdicts are drawn from). Each
comparison is also tested over the planned seeds only (``plan.py``), in a family of its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re

import numpy as np

from experiments.tables import plan
from experiments.tables import rows as rows_lib
from tkd_jax import stats

ALPHA = 0.05
# 10,000 resamples: the smallest bootstrap p (2 / 10,001) survives Holm over ~100 tests.
N_RESAMPLES = 10000
BOOTSTRAP_SEED = 0


@dataclasses.dataclass
class Run:
    task: str
    row: str
    seed: int
    path: pathlib.Path
    final: dict
    manifest: dict | None
    predictions: dict | None

    def metric(self, key: str) -> float | None:
        v = self.final.get("metrics", {}).get(key)
        return None if v is None else float(v)

    def split_predictions(self):
        """(index, prediction, label) arrays of the reported dev split, or None."""
        if not self.predictions or self.final.get("split") not in self.predictions:
            return None
        p = self.predictions[self.final["split"]]
        return (np.asarray(p["index"], np.int64), np.asarray(p["prediction"]),
                np.asarray(p["label"]))


def _load(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(runs_dir, task: str = "*") -> dict[tuple[str, str], list[Run]]:
    """(task, row) -> finished runs sorted by seed (of every task, or of ``task`` only)."""
    cells: dict[tuple[str, str], list[Run]] = {}
    for f in sorted(pathlib.Path(runs_dir).glob(f"{task}/*/seed*/final_metrics.json")):
        seed_dir = f.parent
        m = re.fullmatch(r"seed(\d+)", seed_dir.name)
        final = _load(f)
        if m is None or final is None:
            continue
        task, row = seed_dir.parent.parent.name, seed_dir.parent.name
        cells.setdefault((task, row), []).append(Run(
            task, row, int(m.group(1)), seed_dir, final, _load(seed_dir / "manifest.json"),
            _load(seed_dir / "predictions.json")))
    for runs in cells.values():
        runs.sort(key=lambda r: r.seed)
    return cells


# The range each dev metric can take; a cell's interval is clipped to it.
METRIC_RANGE = {"accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "f1_macro": (0.0, 1.0),
                "precision": (0.0, 1.0), "recall": (0.0, 1.0), "mcc": (-1.0, 1.0),
                "pearson": (-1.0, 1.0), "spearman": (-1.0, 1.0), "glue_score": (-1.0, 1.0)}


def summarize(runs: list[Run], key: str) -> stats.Summary | None:
    values = [v for r in runs if (v := r.metric(key)) is not None]
    return stats.summarize(values, bounds=METRIC_RANGE.get(key)) if values else None


@dataclasses.dataclass
class Comparison:
    task: str
    a: str
    b: str
    claim: str
    metric: str
    ttest: stats.PairedTest | None
    bootstrap: stats.Bootstrap | None
    note: str = ""
    seeds: tuple[int, ...] = ()  # row a's seeds that the tests paired
    p_t_holm: float = math.nan
    p_boot_holm: float = math.nan
    # The same comparison over the planned seeds only (plan.py), Holm-adjusted in its own
    # family; None when the report was built without a plan.
    planned: Comparison | None = None

    def verdict(self) -> str:
        """holds / reversed / not supported: A - B significant (Holm) in both tests."""
        if self.ttest is None or self.bootstrap is None:
            return "not supported"
        signs = {np.sign(self.ttest.mean_diff), np.sign(self.bootstrap.diff)}
        significant = self.p_t_holm < ALPHA and self.p_boot_holm < ALPHA
        if significant and signs == {1.0}:
            return "holds"
        if significant and signs == {-1.0}:
            return "reversed"
        return "not supported"

    def beyond_plan(self) -> bool:
        """Whether the tests paired seeds that the plan did not ask for."""
        return self.planned is not None and self.planned.seeds != self.seeds

    def turns_on_extra_seeds(self) -> bool:
        """Whether the verdict over every seed differs from the one over the planned seeds."""
        return self.planned is not None and self.planned.verdict() != self.verdict()


def _aligned(runs_a: list[Run], runs_b: list[Run]):
    """Labels [N] and predictions [Sa, N], [Sb, N] on the dev examples every run answered."""
    parts = [r.split_predictions() for r in runs_a + runs_b]
    if any(p is None for p in parts):
        return None, "predictions.json missing"
    common = parts[0][0]
    for index, _, _ in parts[1:]:
        common = np.intersect1d(common, index)
    if common.size < 2:
        return None, "fewer than 2 common dev examples"
    rows, labels = [], None
    for index, pred, label in parts:
        pos = {int(i): k for k, i in enumerate(index)}
        take = np.array([pos[int(i)] for i in common])
        if labels is None:
            labels = label[take]
        elif not np.array_equal(labels, label[take]):
            return None, "dev labels differ between runs"
        rows.append(pred[take])
    na = len(runs_a)
    return (labels, np.stack(rows[:na]), np.stack(rows[na:])), ""


def _paired_runs(task: str, a: str, b: str, cells, allowed: set[int] | None):
    """Rows a's and b's runs that a comparison uses: those at seeds both rows have (all of
    a's against a constant baseline), within ``allowed`` when given."""
    runs_a, runs_b = cells.get((task, a), []), cells.get((task, b), [])
    if allowed is not None:
        runs_a = [r for r in runs_a if r.seed in allowed]
        runs_b = [r for r in runs_b if r.seed in allowed]
    seeded_b = rows_lib.ROW_BY_NAME[b].seeded if b in rows_lib.ROW_BY_NAME else True
    if seeded_b:
        common = {r.seed for r in runs_a} & {r.seed for r in runs_b}
        runs_a = [r for r in runs_a if r.seed in common]
        runs_b = [r for r in runs_b if r.seed in common]
    return runs_a, runs_b


def compare(task: str, a: str, b: str, claim: str, metric: str, cells,
            *, n_resamples: int = N_RESAMPLES, allowed: set[int] | None = None) -> Comparison:
    """Row a against row b on one metric, over the seeds both have (within ``allowed``)."""
    missing = [x for x in (a, b) if not cells.get((task, x))]
    if missing:
        return Comparison(task, a, b, claim, metric, None, None,
                          f"no runs of {' and '.join(missing)}")
    runs_a, runs_b = _paired_runs(task, a, b, cells, allowed)
    seeds = tuple(r.seed for r in runs_a)
    if len(runs_a) < 2:
        return Comparison(task, a, b, claim, metric, None, None,
                          f"{len(runs_a)} paired seed(s); a test needs 2", seeds=seeds)
    va = [r.metric(metric) for r in runs_a]
    vb = [r.metric(metric) for r in runs_b]
    if None in va or None in vb:
        return Comparison(task, a, b, claim, metric, None, None, f"{metric} not reported",
                          seeds=seeds)
    ttest = stats.paired_t_test(va, vb)
    aligned, note = _aligned(runs_a, runs_b)
    boot = None
    if aligned is not None:
        labels, pa, pb = aligned
        num_labels = 1 if task in rows_lib.REGRESSION_TASKS else (
            3 if task in rows_lib.THREE_CLASS_TASKS else 2)
        boot = stats.paired_bootstrap(rows_lib.bootstrap_expr(task, metric), labels, pa, pb,
                                      n_resamples=n_resamples, seed=BOOTSTRAP_SEED,
                                      num_labels=max(num_labels, 2))
    return Comparison(task, a, b, claim, metric, ttest, boot, note, seeds=seeds)


def _same_answers(cells, task: str, a: str, b: str) -> bool:
    """Whether rows a and b answered every dev example of the task alike (first run of each)."""
    runs_a, runs_b = cells.get((task, a)), cells.get((task, b))
    if not runs_a or not runs_b:
        return False
    pa, pb = runs_a[0].split_predictions(), runs_b[0].split_predictions()
    return (pa is not None and pb is not None and np.array_equal(pa[0], pb[0])
            and np.array_equal(pa[1], pb[1]))


def folded_trivials(cells, tasks) -> list[tuple[str, str, str]]:
    """(task, row, twin): a constant baseline that answers exactly as an earlier one compared
    with the same row (always-class-1 where class 1 is the majority class). Testing it again
    would count one hypothesis twice in the Holm family, so it is tested once, as the twin."""
    out = []
    for task in tasks:
        seen: dict[str, list[str]] = {}
        for a, b, _ in rows_lib.COMPARISONS:
            if rows_lib.ROW_BY_NAME[b].seeded or not rows_lib.ROW_BY_NAME[b].applies_to(task):
                continue
            twin = next((x for x in seen.get(a, []) if _same_answers(cells, task, x, b)), None)
            if twin is None:
                seen.setdefault(a, []).append(b)
            else:
                out.append((task, b, twin))
    return out


def comparisons(cells, tasks, *, n_resamples: int = N_RESAMPLES,
                seeds: int | None = None) -> list[Comparison]:
    """Every comparison of rows.COMPARISONS on every task, on the claim metric and (when it
    differs) the GLUE metric, with Holm-adjusted p-values; a constant baseline that answers as
    another one does is left out (``folded_trivials``).

    With ``seeds`` (the plan's seed count), each comparison also carries ``planned``: the
    comparison again over the planned seeds (``plan.pair_seeds``), its Holm correction over
    the planned comparisons. Where both use the same runs the tests are not run twice.
    """
    out = []
    folded = {(task, row) for task, row, _ in folded_trivials(cells, tasks)}
    for task in tasks:
        keys = dict.fromkeys((rows_lib.claim_metric(task), rows_lib.glue_metric(task)))
        for a, b, claim in rows_lib.COMPARISONS:
            if not all(rows_lib.ROW_BY_NAME[x].applies_to(task) for x in (a, b)):
                continue
            if (task, b) in folded:
                continue
            for key in keys:
                out.append(compare(task, a, b, claim, key, cells, n_resamples=n_resamples))
    _adjust(out)
    if seeds is not None:
        for c in out:
            allowed = plan.pair_seeds(cells, c.task, c.a, c.b, seeds)
            runs_a, _ = _paired_runs(c.task, c.a, c.b, cells, allowed)
            same = tuple(r.seed for r in runs_a) == c.seeds  # b pairs the same seeds
            c.planned = dataclasses.replace(c) if same else compare(
                c.task, c.a, c.b, c.claim, c.metric, cells, n_resamples=n_resamples,
                allowed=allowed)
        _adjust([c.planned for c in out])
    return out


def _adjust(comps: list[Comparison]) -> None:
    """Holm over every comparison of one test kind and one metric kind (claim or GLUE)."""
    for kind in ("claim", "glue"):
        family = [c for c in comps if (c.metric == rows_lib.claim_metric(c.task)) == (
            kind == "claim")]
        for attr, get in (("p_t_holm", lambda c: c.ttest.p if c.ttest else math.nan),
                          ("p_boot_holm", lambda c: c.bootstrap.p if c.bootstrap
                           else math.nan)):
            tested = [c for c in family if not math.isnan(get(c))]
            for c, p in zip(tested, stats.holm([get(c) for c in tested]), strict=True):
                setattr(c, attr, float(p))


def prediction_mismatches(cells) -> list[str]:
    """Runs whose predictions.json does not give back their final_metrics (GLUE metric)."""
    bad = []
    for (task, _), runs in cells.items():
        key = rows_lib.glue_metric(task)
        for r in runs:
            p, v = r.split_predictions(), r.metric(key)
            if p is None or v is None:
                continue
            _, pred, label = p
            expr = rows_lib.bootstrap_expr(task, key)
            k = 3 if task in rows_lib.THREE_CLASS_TASKS else 2
            got = float(stats.batched_metric(expr, pred, label, k))
            if abs(got - v) > 1e-6:
                bad.append(f"{r.path}: {key} {v:.6f} in final_metrics, {got:.6f} from "
                           "predictions.json")
    return bad
