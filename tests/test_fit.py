"""The report's table of training and dev losses per trained row."""

import json
import statistics

import numpy as np
import pytest
from scipy import stats

from experiments.tables import analysis, fit, reproduction

LABELS = np.array([0] * 13 + [1] * 7)  # 65 % class 0


def _run(root, task, row, seed, train, dev=None, metrics=True):
    # a regression task's evaluation logs its loss as dev/mse, as the engine's does
    key = "dev/mse" if task == "stsb" else "dev/loss"
    d = root / task / row / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "final_metrics.json").write_text(json.dumps({"split": "dev", "metrics": {}}))
    (d / "predictions.json").write_text(json.dumps({"dev": {
        "index": list(range(20)), "prediction": [0] * 20, "label": LABELS.tolist()}}))
    if not metrics:
        return
    records = [{"kind": "train", "step": 50 * (i + 1), "loss": x + 1.0, "loss_hard": x}
               for i, x in enumerate(train)]
    if dev is not None:  # an evaluation after the first log and one at the end
        records.insert(1, {"kind": "eval", "step": 50, key: 9.0, "dev/accuracy": 0.5})
        records.append({"kind": "eval", "step": 50 * len(train), key: dev,
                        "dev/accuracy": 0.5})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_first_and_last_training_loss_and_last_dev_loss_averaged_over_runs(tmp_path):
    _run(tmp_path, "rte", "tkd", 0, [0.70, 0.60, 0.40], dev=0.80)
    _run(tmp_path, "rte", "tkd", 1, [0.72, 0.50, 0.20], dev=0.90)
    _run(tmp_path, "rte", "tkd", 2, [0.1], metrics=False)  # no metrics.jsonl: not counted
    _run(tmp_path, "rte", "cnn", 0, [0.69, 0.69])  # no evaluation logged
    _run(tmp_path, "rte", "majority", 0, [0.5])  # trivial rows do not train: left out
    _run(tmp_path, "stsb", "tkd", 0, [7.0, 1.0], dev=2.5)
    cells = analysis.collect(tmp_path)
    found = fit.row_fits(cells, ["stsb", "rte"])
    assert [(f.task, f.row, f.runs) for f in found] == [
        ("stsb", "tkd", 1), ("rte", "tkd", 2), ("rte", "cnn", 1)]
    stsb, tkd, cnn = found
    assert (tkd.first, tkd.last, tkd.dev) == pytest.approx((0.71, 0.30, 0.85))
    assert (cnn.first, cnn.last, cnn.dev) == pytest.approx((0.69, 0.69, None))
    assert (stsb.first, stsb.last, stsb.dev) == (7.0, 1.0, 2.5)
    # the best constant answer's dev cross-entropy is the dev labels' entropy (nats)
    assert fit.constant_loss(cells, "rte") == pytest.approx(stats.entropy([13, 7]))
    # on a regression task, answering the dev labels' mean: their (population) variance
    assert fit.constant_loss(cells, "stsb") == pytest.approx(statistics.pvariance(LABELS.tolist()))
    assert fit.lines(found, cells)[2:] == [
        "| stsb | `tkd` | 1 | 7.000 | 1.000 | 2.500 | 0.227 |",
        "| rte | `tkd` | 2 | 0.710 | 0.300 | 0.850 | 0.647 |",
        "| rte | `cnn` | 1 | 0.690 | 0.690 | — | 0.647 |"]
    md = reproduction.render(cells, ["stsb", "rte"], [], seeds=5, provenance={
        "runs": 6, "code": {}, "dirty": 0, "mismatches": [], "train_hours": 0.0})
    section = md.split("## Did each row fit its training set\n\n")[1]
    assert section.split("\n\n")[1].splitlines() == fit.lines(found, cells)
