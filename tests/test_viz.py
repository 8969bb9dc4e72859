"""Reading runs and results for plots: values come through unchanged, bad files are DataErrors."""

import json

import matplotlib
import numpy as np
import pytest

from tests.conftest import REPO
from tkd_jax import viz
from tkd_jax.errors import DataError

matplotlib.use("Agg")


def _write_run(wd, records, final=None):
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if final is not None:
        (wd / "final_metrics.json").write_text(json.dumps(final))
    return wd


RECORDS = [
    {"step": 2, "kind": "train", "loss": 0.5, "learning_rate": 1e-3},
    {"step": 1, "kind": "train", "loss": 0.7, "learning_rate": 5e-4},
    {"step": 2, "kind": "eval", "main": 0.6, "dev/accuracy": 0.6},
    {"step": 3, "kind": "train", "loss": None, "learning_rate": 1e-3},
]


def test_read_metrics_groups_by_kind_in_step_order(tmp_path):
    out = viz.read_metrics(_write_run(tmp_path / "a", RECORDS))
    assert [r["step"] for r in out["train"]] == [1, 2, 3]
    assert viz.curve(out["train"], "loss") == ([1, 2], [0.7, 0.5])  # None skipped
    assert viz.curve(out["eval"], "dev/accuracy") == ([2], [0.6])


def test_read_metrics_names_the_bad_line(tmp_path):
    wd = _write_run(tmp_path / "bad", RECORDS[:1])
    with (wd / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"metrics.jsonl line 2: expected a JSON object"):
        viz.read_metrics(wd)
    with pytest.raises(DataError, match="not found"):
        viz.read_metrics(tmp_path / "missing")


def test_training_curves_plot_the_recorded_values(tmp_path):
    a = _write_run(tmp_path / "a", RECORDS)
    b = _write_run(tmp_path / "b", [{"step": 1, "kind": "train", "loss": 0.9}])
    fig = viz.plot_training_curves({"A": a, "B": b}, train_keys=("loss",),
                                   eval_keys=("main",))
    loss_ax, main_ax = fig.axes
    lines = {ln.get_label(): ln for ln in loss_ax.get_lines()}
    np.testing.assert_array_equal(lines["A"].get_xdata(), [1, 2])
    np.testing.assert_array_equal(lines["A"].get_ydata(), [0.7, 0.5])
    np.testing.assert_array_equal(lines["B"].get_ydata(), [0.9])
    assert [ln.get_label() for ln in main_ax.get_lines()] == ["A"]  # B has no eval records


def test_results_rows_and_bars_carry_the_final_metrics(tmp_path):
    root = tmp_path / "results"
    for study, run, recipe, acc in (("s1", "tkd", "tkd", 0.8), ("s1", "base", "lstm", 0.7),
                                    ("seed1/s1", "tkd", "tkd", 0.75)):
        _write_run(root / study / run, [], {"task": "rte", "recipe": recipe, "seed": 0,
                                            "metrics": {"accuracy": acc}, "num_params": 10})
    rows = viz.load_results(root)
    assert [(r["study"], r["run"], r["accuracy"]) for r in rows] == [
        ("s1", "base", 0.7), ("s1", "tkd", 0.8), ("seed1/s1", "tkd", 0.75)]
    fig = viz.plot_results(rows, metric="accuracy")
    heights = [[p.get_width() for p in ax.patches] for ax in fig.axes]
    assert heights == [[0.7, 0.8], [0.75]]
    with pytest.raises(DataError, match="no results with metric 'pearson'"):
        viz.plot_results(rows, metric="pearson")


def test_the_committed_results_tree_loads():
    files = sorted((REPO / "results").rglob("final_metrics.json"))
    rows = viz.load_results(REPO / "results")
    assert len(rows) == len(files) > 0
    by_key = {(r["study"], r["run"]): r for r in rows}
    for path in files:
        rel = path.parent.relative_to(REPO / "results")
        expected = json.loads(path.read_text())["metrics"]
        row = by_key[(str(rel.parent), rel.name)]
        assert {k: row[k] for k in expected} == expected


def test_compare_reads_final_metrics(tmp_path):
    a = _write_run(tmp_path / "a", [], {"metrics": {"accuracy": 0.5, "f1": 0.25}})
    assert viz.compare({"A": a}, metrics=("accuracy", "f1", "mcc")) == [
        {"run": "A", "accuracy": 0.5, "f1": 0.25, "mcc": None}]


def test_reproduction_cells_load_and_plot_mean_sd_and_seeds(tmp_path):
    runs = tmp_path / "runs"
    for task, row, seed, acc in (("rte", "tkd", 0, 0.6), ("rte", "tkd", 1, 0.7),
                                 ("rte", "cnn", 0, 0.5), ("mrpc", "tkd", 0, 0.8)):
        _write_run(runs / task / row / f"seed{seed}", [],
                   {"task": task, "metrics": {"accuracy": acc}})
    rows = viz.load_reproduction(runs)
    assert [(r["task"], r["row"], r["seed"], r["accuracy"]) for r in rows] == [
        ("mrpc", "tkd", 0, 0.8), ("rte", "cnn", 0, 0.5), ("rte", "tkd", 0, 0.6),
        ("rte", "tkd", 1, 0.7)]
    fig = viz.plot_reproduction(rows, metric="accuracy")
    mrpc, rte = fig.axes
    assert [p.get_width() for p in rte.patches] == pytest.approx([0.5, 0.65])
    assert [p.get_width() for p in mrpc.patches] == [0.8]
    dots = sorted(float(x) for ln in rte.get_lines() if ln.get_marker() == "."
                  for x in ln.get_xdata())
    assert dots == [0.5, 0.6, 0.7]
    with pytest.raises(DataError, match="no reproduction cells with metric 'mcc'"):
        viz.plot_reproduction(rows, metric="mcc")
    with pytest.raises(DataError, match="not a directory"):
        viz.load_reproduction(tmp_path / "nothing")
