"""experiments.bench without the PyTorch peer: a tiny model, one round, real timings."""

import json

import numpy as np

from experiments import bench


def test_summarize_ratios_are_per_round_peer_over_ours():
    samples = {"ours a": [(1.0, 2.0), (2.0, 2.0), (4.0, 2.0)],
               "peer b": [(3.0, 1.0), (4.0, 6.0), (4.0, 4.0)]}
    res = bench.summarize(samples, ["ours a"])
    r = res["ratios"]["peer b / ours a"]
    assert (r["wall_median"], r["wall_min"], r["wall_max"]) == (2.0, 1.0, 3.0)
    assert (r["cpu_median"], r["cpu_min"], r["cpu_max"]) == (2.0, 0.5, 3.0)
    c = res["contenders"]["ours a"]
    assert (c["wall_median"], c["wall_min"], c["wall_max"]) == (2.0, 1.0, 4.0)
    assert list(res["ratios"]) == ["peer b / ours a"]


def test_bench_cli_runs_tiny_model_without_peer(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.SHAPES, "train", (2, 8))
    monkeypatch.setitem(bench.SHAPES, "latency", (1, 8))
    out = tmp_path / "b.json"
    assert bench.main(["all", "--model", "tiny", "--rounds", "2", "--steps", "1",
                       "--peer", "off", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["peer"] is None and [b["what"] for b in res["benchmarks"]] == list(bench.SHAPES)
    for b in res["benchmarks"]:
        assert set(b["contenders"]) == {"ours fp32", "ours bf16"}
        assert set(b["ratios"]) == {"ours bf16 / ours fp32", "ours fp32 / ours bf16"}
        c = b["contenders"]["ours fp32"]
        assert len(c["wall_rounds"]) == 2 and all(t > 0 for t in c["wall_rounds"])
        r = b["ratios"]["ours bf16 / ours fp32"]["wall_median"]
        want = np.median(np.divide(b["contenders"]["ours bf16"]["wall_rounds"],
                                   c["wall_rounds"]))
        np.testing.assert_allclose(r, want)
    assert "ours bf16 / ours fp32" in capsys.readouterr().out


def test_ablate_dropout_adds_a_train_contender_without_dropout(tmp_path, monkeypatch):
    monkeypatch.setitem(bench.SHAPES, "train", (2, 8))
    seen = []
    real = bench.create_model

    def spy(name, **kw):  # the ablation's model has every dropout rate 0, the other its preset's
        seen.append({k: v for k, v in kw.items() if "dropout" in k})
        return real(name, **kw)

    monkeypatch.setattr(bench, "create_model", spy)
    out = tmp_path / "b.json"
    assert bench.main(["train", "--model", "tiny", "--precisions", "fp32", "--rounds", "1",
                       "--steps", "1", "--peer", "off", "--ablate_dropout",
                       "--json", str(out)]) == 0
    (b,) = json.loads(out.read_text())["benchmarks"]
    assert set(b["contenders"]) == {"ours fp32", "ours fp32 (no dropout)"}
    assert seen == [{}, {"dropout_rate": 0.0, "attention_dropout_rate": 0.0}]
