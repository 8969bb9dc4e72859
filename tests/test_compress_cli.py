"""`python -m experiments.compress`: bad inputs end with exit code 2 and one line."""

import pytest

from tests.experiment_utils import run_cli


@pytest.mark.parametrize("args, message", [
    (["--method", "fp32,int4"], "--method int4: expected a comma-separated list"),
    (["--sparsity", "1.0"], r"--sparsity: expected a fraction in [0, 1), got 1.0"),
    (["--sparsity", "-0.2"], r"--sparsity: expected a fraction in [0, 1), got -0.2"),
    (["--head_fraction", "1.0"], "cannot prune more heads than exist"),
    (["--percentile", "0"], "--percentile=0.0: expected in (0, 100]"),
    (["--seed", "-1"], "--seed=-1: expected a non-negative integer"),
    (["--feature_weight", "nan"], "--feature_weight=nan: expected a number >= 0"),
    (["--alpha", "1.5"], "--alpha=1.5: expected a weight in [0, 1]"),
    (["--augment_copies", "-1"], "--augment_copies=-1: expected an integer >= 0"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    r = run_cli(["--run", str(tmp_path), *args], module="experiments.compress", timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_run_dir_without_checkpoint_exits_2(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    r = run_cli(["--run", str(tmp_path)], module="experiments.compress", timeout=300)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no checkpoint" in lines[0], r.stderr
