"""The reproduction plans: every entry is a valid command, and the results table is right."""

import json

import pytest

from experiments import cli, glue, reproduce
from tkd_jax.config import RunConfig


@pytest.mark.parametrize("plan", sorted(reproduce.PLANS))
def test_every_plan_entry_builds_its_config(plan):
    names = [name for name, *_ in reproduce.PLANS[plan]]
    assert len(names) == len(set(names))
    for name, task, recipe, extra in reproduce.PLANS[plan]:
        cmd = reproduce._command(task, recipe, "W", extra, "runs/" + plan, seed=0)
        rest, overrides = cli.split_overrides(cmd[3:])
        _, config = glue.parse(cmd[3:])  # raises on a bad key/value
        RunConfig.from_config_dict(config, num_devices=1)  # and on a contradiction
        for key, value in dict(overrides).items():  # the last occurrence of a key wins
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == cli._coerce(key, node, value), (name, key)
        assert "--teacher_run" not in rest or rest[rest.index("--teacher_run") + 1].startswith(
            "runs/" + plan + "/"), name


def test_write_table(tmp_path):
    out = tmp_path / "mrpc_tkd"
    for name, f1 in (("b", 0.5), ("a", 0.8754)):
        (out / name).mkdir(parents=True)
        metrics = {"task": "mrpc", "recipe": "tkd", "metrics": {"f1": f1, "accuracy": 0.75},
                   "num_params": 1234567, "train_seconds": 12.4,
                   "train_examples_per_second": 55.55}
        (out / name / "final_metrics.json").write_text(json.dumps(metrics))
        (out / name / "command.txt").write_text(f"python -m experiments.glue --x {name}\n")
    reproduce.write_table("mrpc_tkd", out)
    text = (out / "README.md").read_text()
    assert reproduce.DESCRIPTIONS["mrpc_tkd"] in text
    rows = [line for line in text.splitlines() if line.startswith("| a |") or
            line.startswith("| b |")]
    assert rows == ["| a | mrpc | tkd | 0.7500 | 0.8754 |  |  |  |  | 1,234,567 | 12 | 55.5 |",
                    "| b | mrpc | tkd | 0.7500 | 0.5000 |  |  |  |  | 1,234,567 | 12 | 55.5 |"]
    assert "- a: `python -m experiments.glue --x a`" in text
    assert "Produced by `python -m experiments.reproduce --plan mrpc_tkd` on CPU" in text
    reproduce.write_table("mrpc_tkd", out, "python -m experiments.reproduce --plan mrpc_tkd "
                          "--seed=1")
    assert "Produced by `python -m experiments.reproduce --plan mrpc_tkd --seed=1` on CPU" in (
        out / "README.md").read_text()
