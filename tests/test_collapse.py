"""The report's list of trained runs that answer one class on every dev example."""

import json

import numpy as np

from experiments.tables import analysis, collapse, reproduction

LABELS = np.array([0, 1] * 10)  # RTE ids: 0 "entailment", 1 "not_entailment"


def _run(root, task, row, seed, pred, labels=LABELS, predictions=True):
    d = root / task / row / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "final_metrics.json").write_text(json.dumps(
        {"split": "dev", "metrics": {"accuracy": float(np.mean(pred == labels))}}))
    if predictions:
        (d / "predictions.json").write_text(json.dumps({"dev": {
            "index": list(range(len(labels))), "prediction": pred.tolist(),
            "label": labels.tolist()}}))


def test_constant_runs_per_row_with_their_answers(tmp_path):
    mixed = LABELS.copy()
    mixed[:3] = 1 - mixed[:3]
    _run(tmp_path, "rte", "tkd", 0, np.zeros(20, int))
    _run(tmp_path, "rte", "tkd", 1, mixed)
    _run(tmp_path, "rte", "tkd", 2, np.ones(20, int))
    _run(tmp_path, "rte", "tkd", 3, np.zeros(20, int))
    _run(tmp_path, "rte", "tkd", 4, np.zeros(20, int), predictions=False)  # not counted
    _run(tmp_path, "rte", "cnn", 0, mixed)  # learnt something: not listed
    _run(tmp_path, "rte", "majority", 0, np.zeros(20, int))  # constant by construction
    _run(tmp_path, "wnli", "tnlp", 7, np.zeros(20, int))  # WNLI's ids: 0 "not_entailment"
    _run(tmp_path, "stsb", "tkd", 0, np.full(20, 2.5), labels=np.linspace(0, 5, 20))
    cells = analysis.collect(tmp_path)
    found = collapse.constant_runs(cells, ["stsb", "rte", "wnli"])
    assert [(c.task, c.row, c.runs, c.seeds_by_class) for c in found] == [
        ("rte", "tkd", 4, {0: (0, 3), 1: (2,)}), ("wnli", "tnlp", 1, {0: (7,)})]
    assert collapse.lines(found) == [
        '- rte `tkd`: 3 of 4 runs (seeds 0, 3 "entailment"; seed 2 "not_entailment")',
        '- wnli `tnlp`: 1 of 1 run (seed 7 "not_entailment")']
    md = reproduction.render(cells, ["rte", "wnli"], [], seeds=5, provenance={
        "runs": 9, "code": {}, "dirty": 0, "mismatches": [], "train_hours": 0.0})
    section = md.split("## Runs that answer one class on every dev example\n\n")[1]
    assert section.split("\n\n")[1].splitlines() == collapse.lines(found)
    assert collapse.constant_runs(cells, ["stsb"]) == []
