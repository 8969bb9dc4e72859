"""experiments.verify: re-running a cell from its manifest reproduces it exactly."""

import json
import os
import sys
import time

import pytest

from experiments import verify
from experiments.tables import trivial
from tests.experiment_utils import run_cli


def test_differences_skips_timing_and_names_each_key():
    recorded = {"metrics": {"accuracy": 0.5, "f1": 0.4}, "train_seconds": 3.0, "steps": 4,
                "confusion_matrix": [[1, 2], [3, 4]]}
    same = {**recorded, "train_seconds": 9.0, "train_examples_per_second": 1.0,
            "compile": {"seconds": 2.0, "compiles": 3, "cache_hits": 0}}
    assert verify.differences(recorded, same) == []
    other = {"metrics": {"accuracy": 0.5, "f1": 0.41}, "steps": 4,
             "confusion_matrix": [[1, 2], [4, 3]], "extra": 1}
    assert verify.differences(recorded, other) == [
        "confusion_matrix[1]: 2 of 2 entries differ (first at 0: 3 vs 4)",
        "extra: only in the re-run",
        "metrics.f1: 0.4 recorded, 0.41 re-run"]
    preds = {"dev": {"prediction": [0, 1, 1, 0]}}
    assert verify.differences(preds, {"dev": {"prediction": [0, 1, 0, 0]}}) == [
        "dev.prediction: 1 of 4 entries differ (first at 2: 1 vs 0)"]


def test_largest_drift_is_the_largest_relative_difference_between_numbers():
    recorded = {"metrics": {"loss": 0.5, "f1": 0.8, "accuracy": 0.7}, "train_seconds": 3.0,
                "confusion_matrix": [[1, 2], [3, 4]], "task": "mrpc"}
    rerun = {"metrics": {"loss": 0.50001, "f1": 0.8, "accuracy": 0.7}, "train_seconds": 30.0,
             "confusion_matrix": [[1, 2], [3, 4]], "task": "mrpc"}
    rel, where = verify.largest_drift(recorded, rerun)
    assert where == "metrics.loss" and rel == pytest.approx(0.00001 / 0.50001)
    rerun["confusion_matrix"][1][0] = 4  # a count that moved outweighs the loss's drift
    assert verify.largest_drift(recorded, rerun) == (0.25, "confusion_matrix[1][0]")
    assert verify.largest_drift(recorded, {**recorded, "train_seconds": 1.0}) is None


def _train(step, loss, speed=40.0):
    return {"kind": "train", "step": step, "loss": loss, "examples_per_second": speed}


def _eval(step, f1):
    return {"kind": "eval", "step": step, "dev/f1": f1, "main": f1}


def test_first_divergence_names_the_first_differing_record():
    # the loop's order: at an eval step the train record first, then the evaluation
    recorded = [_train(50, 0.7), _train(100, 0.6), _train(115, 0.5), _eval(115, 0.8)]
    rerun = [_train(50, 0.7, speed=9.0), _train(100, 0.6), _train(115, 0.5), _eval(115, 0.8)]
    assert verify.first_divergence(recorded, rerun, finished=True) is None  # speed is timing
    assert verify.first_divergence(recorded, rerun[:1]) is None  # still running, so far equal
    assert verify.first_divergence(recorded, [_train(50, 0.7000001)]) == (
        "step 50, train record: loss: 0.7 recorded, 0.7000001 re-run (at most 1.4e-07 relative, "
        "loss)")
    assert verify.first_divergence(recorded, [*rerun[:3], _eval(115, 0.79)]) == (
        "step 115, eval record: dev/f1: 0.8 recorded, 0.79 re-run (at most 1.3e-02 relative, "
        "main)")
    assert verify.first_divergence(recorded, [_train(60, 0.7)]) == (
        "step 60: train record only in the re-run")
    assert verify.first_divergence(recorded, rerun[:3], finished=True) == (
        "step 115: eval record only in the recorded run")
    assert verify.first_divergence(recorded, rerun[:3]) is None  # not finished: may come


def test_first_divergence_skips_the_one_train_record_after_a_resume():
    """A run stopped by SIGTERM at step 73 logged steps 51-73 there; resumed, its step-100
    record averages steps 74-100 only, unlike a fresh re-run's 51-100. Later ones compare."""
    recorded = [_train(50, 0.7), _train(73, 0.65), _train(100, 0.61), _train(150, 0.5)]
    fresh = [_train(50, 0.7), _train(100, 0.6), _train(150, 0.5)]
    assert verify.first_divergence(recorded, fresh, finished=True) is None
    assert verify.first_divergence(recorded, [*fresh[:2], _train(150, 0.49)]) == (
        "step 150, train record: loss: 0.5 recorded, 0.49 re-run (at most 2.0e-02 relative, "
        "loss)")
    assert verify.first_divergence(recorded[:3], fresh, finished=True) == (
        "step 150: train record only in the re-run")
    assert verify.first_divergence([*recorded, _eval(150, 0.8)], fresh, finished=True) == (
        "step 150: eval record only in the recorded run")
    assert verify.first_divergence(recorded, fresh[:2], finished=True) == (
        "step 150: train record only in the recorded run")


def test_read_records_of_a_run_still_writing_and_a_broken_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(_train(50, 0.7)) + "\n" + '{"kind": "tr')
    assert verify.read_records(path, writing=True) == [_train(50, 0.7)]
    with pytest.raises(verify.CheckpointError, match="metrics.jsonl: line 2 is not a JSON"):
        verify.read_records(path)  # a finished run's file must be whole
    assert verify.read_records(tmp_path / "none.jsonl") == []


def test_run_watched_kills_the_re_run_at_its_first_differing_record(tmp_path):
    """The re-run logs a record that differs, then would train for ten minutes more."""
    records = tmp_path / "metrics.jsonl"
    writes = (f"import json, time; open({str(records)!r}, 'w').write("
              f"json.dumps({_train(50, 0.71)!r}) + '\\n'); time.sleep(600)")
    start = time.monotonic()
    code, found = verify.run_watched([sys.executable, "-c", writes], [_train(50, 0.7)],
                                     records, poll=0.2)
    assert time.monotonic() - start < 60
    assert code is None and found == ("step 50, train record: loss: 0.7 recorded, 0.71 re-run "
                                        "(at most 1.4e-02 relative, loss)")
    same = (f"import json; open({str(records)!r}, 'w').write("
            f"json.dumps({_train(50, 0.7)!r}) + '\\n')")
    assert verify.run_watched([sys.executable, "-c", same], [_train(50, 0.7)], records,
                              poll=0.2) == (0, None)


def test_rerun_argv_replaces_the_workdir():
    argv = ["--task", "rte", "--workdir", "results/runs/rte/tkd/seed0", "--seed", "0"]
    assert verify.rerun_argv({"argv": argv}, "/s") == [
        "--task", "rte", "--workdir", "/s", "--seed", "0"]
    legacy = {"command": ["glue.py", "--task", "rte", "--workdir", "w"]}  # older manifests
    assert verify.rerun_argv(legacy, "/s") == ["--task", "rte", "--workdir", "/s"]
    with pytest.raises(verify.CheckpointError, match="no \"argv\""):
        verify.rerun_argv({}, "/s")


def test_trivial_cell_verifies_and_a_changed_prediction_is_caught(glue_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    run = tmp_path / "mrpc" / "positive" / "seed0"
    final = trivial.write_run("mrpc", "positive", run)
    assert final["metrics"]["f1"] == pytest.approx(2 * 279 / (2 * 279 + 129))  # 279 of 408
    code, lines = verify.verify(run, tmp_path / "scratch1")
    assert code == 0 and lines[-1].startswith("identical")
    # float drift only (another CPU type): the report says every prediction is identical
    metrics_file = run / "final_metrics.json"
    drifted = json.loads(metrics_file.read_text())
    drifted["metrics"]["f1"] *= 1 + 3e-6
    metrics_file.write_text(json.dumps(drifted))
    code, lines = verify.verify(run, tmp_path / "scratch_drift")
    assert code == 1
    assert lines[-1] == ("every prediction is identical; the final metrics differ by at most "
                         "3.0e-06 relative (metrics.f1)")
    metrics_file.write_text(json.dumps(final))
    preds = json.loads((run / "predictions.json").read_text())
    final_preds = json.loads(json.dumps(preds))
    preds["dev"]["prediction"][5] = 0
    (run / "predictions.json").write_text(json.dumps(preds))
    code, lines = verify.verify(run, tmp_path / "scratch2")
    assert code == 1
    assert "predictions.json: dev.prediction: 1 of 408 entries differ (first at 5: 0 vs 1)" in (
        lines)
    # the logged records are compared too (a trivial baseline's re-run writes none)
    (run / "predictions.json").write_text(json.dumps(final_preds))
    (run / "metrics.jsonl").write_text(json.dumps(_train(50, 0.7)) + "\n")
    code, lines = verify.verify(run, tmp_path / "scratch3")
    assert code == 1
    assert lines[-1] == "metrics.jsonl: step 50: train record only in the recorded run"


def test_machine_notes_only_when_the_recorded_cpu_or_core_count_differs(monkeypatch):
    from tkd_jax import hardware

    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    monkeypatch.setattr(hardware, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    monkeypatch.setattr(hardware, "isa_flags", lambda: ["amx_bf16", "avx2", "avx512f"])
    here = {"backend": "cpu", "cpu": "Intel(R) Xeon(R) Processor",
            "cpu_flags": ["amx_bf16", "avx2", "avx512f"], "cpu_cores": 2}
    assert verify.machine_notes({"devices": here}) == []
    assert verify.machine_notes({"devices": {**here, "backend": "tpu", "cpu_cores": 8}}) == []
    [note] = verify.machine_notes({"devices": {**here, "cpu_cores": 1}})
    assert note.startswith("note: recorded on 1 CPU cores, re-run on 2:")
    [note] = verify.machine_notes({"devices": {**here, "cpu": "AMD EPYC",
                                               "cpu_flags": ["avx2", "fma"]}})
    assert note.startswith("note: recorded on AMD EPYC (avx2 fma), re-run on Intel(R) Xeon(R) "
                           "Processor (amx_bf16 avx2 avx512f):")
    [note] = verify.machine_notes({"devices": {"backend": "cpu"}})  # older manifests
    assert note.startswith("note: the manifest does not record its CPU")


def test_manifests_record_the_host_cpu():
    from tkd_jax import hardware
    from tkd_jax.train import reporting

    devices = reporting.device_info()
    assert devices["cpu_cores"] == hardware.cpu_cores() >= 1
    assert devices["cpu"] == hardware.cpu_model() != ""
    assert devices["cpu_generation"] == hardware.cpu_generation()
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo (not Linux)")
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split()
    assert devices["cpu_flags"] == sorted(
        f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))


def test_missing_manifest_is_a_user_error(tmp_path):
    proc = run_cli([tmp_path], module="experiments.verify", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'manifest.json'}: cannot read the run's manifest "
        "(FileNotFoundError)"]
