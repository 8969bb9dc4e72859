"""experiments.latency: runs timed interleaved in one process, with provenance in the JSON."""

import json

import jax
import numpy as np

from experiments import cli, latency
from tkd_jax.models import create_model


def test_latency_of_two_runs_interleaved(tmp_path, monkeypatch):
    sizes = {"big": 2, "small": 1}

    def load_run(run):  # a tiny model per "run": no checkpoint needed to exercise the timing
        name = run.rsplit("/", 1)[-1]
        module = create_model("tiny", num_labels=2, num_layers=sizes[name])
        ids = np.ones((1, 8), np.int32)
        params = module.init(jax.random.key(0), ids, ids)["params"]
        return module, params, {"name": f"tiny-{name}"}

    monkeypatch.setattr(latency.runs, "load_run", load_run)
    out = tmp_path / "lat.json"
    code = cli.run_main(latency.main, [f"{tmp_path}/big", f"{tmp_path}/small", "--seq", "16",
                                       "--repeats", "3", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["command"].startswith("python -m experiments.latency ")
    assert "git_commit" in data and data["machine"]["backend"] == "cpu"
    big, small = data["runs"]
    assert big["model"] == "tiny-big" and big["speedup_vs_first"] == 1.0
    assert big["num_params"] > small["num_params"]
    assert small["seq"] == 16 and small["repeats"] == 3
    assert 0 < small["median_ms"] <= small["p90_ms"]


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.run_main(latency.main, [str(tmp_path), "--repeats", "0"]) == 2
    assert cli.run_main(latency.main, [str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --seq and --repeats: expected positive integers",
                   "error: runs: each run directory once"]
