"""experiments.bench_xla_flags: the summary's ratios and its user errors (the children, which
time real runs, are exercised by the committed benchmark, not here)."""

import json

import pytest

from experiments import bench_xla_flags as bx
from experiments import cli


def _pass(default_fp32, fp32, int8, error_in=None):
    row = {"fp32": {"median_ms": fp32, "p90_ms": fp32, "max_abs_logit_diff": 0.0},
           "int8_dynamic": {"median_ms": int8, "p90_ms": int8, "max_abs_logit_diff": 0.01}}
    out = {name: row for name in bx.FLAG_SETS}
    out["default"] = {**row, "fp32": {**row["fp32"], "median_ms": default_fp32}}
    if error_in:
        out[error_in] = {"error": "boom"}
    return out


def test_summary_ratios_same_process_and_against_default_fp32():
    passes = [_pass(10.0, 20.0, 5.0), _pass(12.0, 24.0, 4.0, error_in="onednn")]
    s = bx.summarize(passes, ["fp32", "int8_dynamic"])
    # "onednn" failed in pass 2: only pass 1 counts for it
    assert s["onednn"]["int8_dynamic"]["speedup_same_process"] == [4.0, 4.0, 4.0]
    assert s["onednn"]["int8_dynamic"]["speedup_vs_default_fp32"] == [2.0, 2.0, 2.0]
    x = s["xnn_fusion_all"]["int8_dynamic"]
    assert x["speedup_same_process"] == [5.0, 4.0, 6.0]  # median of 20/5 and 24/4
    assert x["speedup_vs_default_fp32"] == [2.5, 2.0, 3.0]  # 10/5 and 12/4
    assert x["median_ms"] == 4.5 and x["max_abs_logit_diff"] == 0.01
    assert s["default"]["fp32"]["speedup_same_process"][0] == 1.0
    table = bx.table(s, ["fp32", "int8_dynamic"])
    assert "| xnn_fusion_all | 22.00 | 4.50 | 5.00 / 2.50 |" in table


def test_summary_of_a_flag_set_that_always_failed():
    passes = [_pass(10.0, 20.0, 5.0, error_in="ynn_fusion_dot")]
    s = bx.summarize(passes, ["fp32", "int8_dynamic"])
    assert s["ynn_fusion_dot"] == {"error": "boom"}
    assert "| ynn_fusion_dot | failed: boom |" in bx.table(s, ["fp32", "int8_dynamic"])


@pytest.mark.parametrize("args, needle", [
    (["--methods", "fp32,int4"], "--methods int4"),
    (["--passes", "x"], "--passes"),
    (["--passes", "0"], "--passes and --repeats: expected positive integers"),
])
def test_user_errors_exit_2_before_any_child(tmp_path, capsys, args, needle):
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "mrpc"}))
    assert cli.run_main(bx.main, ["--run", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_a_run_without_manifest_exits_2(tmp_path, capsys):
    assert cli.run_main(bx.main, ["--run", str(tmp_path / "nope")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_summary_when_the_default_flags_failed_in_a_pass():
    passes = [_pass(10.0, 20.0, 5.0, error_in="default")]
    s = bx.summarize(passes, ["fp32", "int8_dynamic"])
    assert s["default"] == {"error": "boom"}
    assert s["onednn"]["int8_dynamic"]["speedup_vs_default_fp32"] is None
    assert "| onednn | 20.00 | 5.00 | 4.00 / — |" in bx.table(s, ["fp32", "int8_dynamic"])
