"""The compression study's output directory, table and plots (synthetic records, no model)."""

import json

import pytest

from tkd_jax.compress import report, study

matplotlib = pytest.importorskip("matplotlib")


def _record(method: str, accuracy: float, file_bytes: int, median_ms: float) -> dict:
    timing = {"median_ms": median_ms, "p90_ms": 1.5 * median_ms, "speedup": 10.0 / median_ms,
              "examples_per_second": 1e3 / median_ms, "batch": 1, "seq": 16, "repeats": 2}
    return {"method": method, "settings": {"method": method, "percentile": 100.0},
            "dev": {"accuracy": accuracy, "f1": accuracy}, "file_bytes": file_bytes,
            "size_ratio": 4e6 / file_bytes, "kernel_ratio": 1.0, "num_params": 1000,
            "latency_b1": timing, "latency_b32": {**timing, "batch": 32}, "cost_seconds": 0.0}


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(
        {"task": "MRPC", "recipe": "teacher", "git_commit": "abc"}))
    (run / "model.json").write_text(json.dumps({"name": "minilm_l6"}))
    return run


def test_write_makes_every_file_and_leaves_pyplot_alone(run_dir, tmp_path):
    records = [_record("fp32", 0.75, 4_000_000, 10.0), _record("int8_dynamic", 0.7, 10**6, 4.0)]
    backend = matplotlib.get_backend()
    out = report.write(records, run_dir, tmp_path / "out", settings={"repeats": 2},
                       command="compress it", git_commit="def")
    assert matplotlib.get_backend() == backend  # a notebook's inline backend keeps working
    assert {p.name for p in out.iterdir()} == {"results.json", "table.md", "manifest.json",
                                              "accuracy_vs_latency.png", "accuracy_vs_size.png"}
    assert json.loads((out / "results.json").read_text()) == records
    table = (out / "table.md").read_text()
    assert table.startswith("# mrpc teacher run `teacher` (minilm_l6)\n")
    assert "| dev f1 |" in table and "b1×16 median" in table and "b32×16 median" in table
    assert "| int8_dynamic | 70.00 | -5.00 | 70.00 |" in table
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "compress it" and manifest["git_commit"] == "def"
    assert manifest["run"]["task"] == "mrpc" and manifest["run"]["model"] == {"name": "minilm_l6"}
    assert manifest["settings"] == {"repeats": 2}
    assert table.splitlines()[-1].startswith(f"Timed on {manifest['machine']['cpu']} (")
    assert manifest["plots"] == ["accuracy_vs_latency.png", "accuracy_vs_size.png"]


def test_the_table_names_the_cpu_and_why_bf16_or_int8_is_slow_on_it():
    rows = [_record("fp32", 0.75, 4_000_000, 10.0), _record("bf16", 0.75, 2_000_000, 13.0),
            _record("int8_dynamic", 0.74, 10**6, 11.5)]
    for r, runtime in zip(rows, ("fp32", "bf16", "int8_dynamic"), strict=True):
        r["runtime"] = runtime
    epyc = {"cpu": "AMD EPYC", "flags": ["avx2", "fma"]}
    table = report.markdown_table(rows, metric="f1", title="t", machine=epyc)
    note = table.rstrip("\n").splitlines()[-1]
    assert note.startswith("Timed on AMD EPYC (avx2 fma). It has no bf16 dot instructions "
                           "(avx512_bf16, amx_bf16)")
    assert "no int8 dot instructions (avx512_vnni, avx_vnni, amx_int8)" in note
    xeon = {"cpu": "Intel Xeon", "flags": ["amx_bf16", "amx_int8", "avx512_bf16",
                                           "avx512_vnni"]}
    assert report.markdown_table(rows, metric="f1", title="t", machine=xeon).endswith(
        "\n\nTimed on Intel Xeon (amx_bf16 amx_int8 avx512_bf16 avx512_vnni).\n")
    # only the runtimes in the table are explained; no flags recorded: no verdict
    assert "int8" not in report.machine_note(rows[:2], epyc).split(").", 1)[1]
    assert report.machine_note(rows, {"cpu": "Graviton", "flags": []}) == "Timed on Graviton ()."
    assert "Timed on" not in report.markdown_table(rows, metric="f1", title="t")


def test_heading_and_figure(run_dir):
    import matplotlib.pyplot as plt

    title, metric = report.heading(run_dir)
    assert (title, metric) == ("mrpc teacher run `teacher` (minilm_l6)", "f1")
    fig = report.figure([_record("fp32", 0.75, 4_000_000, 10.0)], metric=metric, title=title)
    assert [ax.get_xlabel() for ax in fig.axes] == ["latency, batch 1 x 16 (median ms)",
                                                    "size on disk (MiB)"]
    plt.close(fig)


def test_settings_of_names_only_what_a_method_depends_on():
    knobs = dict(percentile=99.0, sparsity=0.3, scope="layer", head_fraction=0.25,
                 ffn_fraction=0.5, finetune=1, learning_rate=0.0)
    assert study.settings_of("int8_dynamic", **knobs) == {"method": "int8_dynamic",
                                                          "percentile": 99.0}
    assert study.settings_of("magnitude_oneshot", **knobs) == {
        "method": "magnitude_oneshot", "percentile": 99.0, "sparsity": 0.3, "scope": "layer"}
    assert study.settings_of("structured", **knobs) == {
        "method": "structured", "percentile": 99.0, "head_fraction": 0.25, "ffn_fraction": 0.5,
        "finetune": 1, "learning_rate": 0.0}
    # another seed is named only where it matters: recovery and head importance
    assert study.settings_of("structured_oneshot", **knobs, seed=3)["seed"] == 3
    assert study.settings_of("qat_int8", **knobs, seed=3)["seed"] == 3
    assert "seed" not in study.settings_of("magnitude_oneshot", **knobs, seed=3)
    # Wanda's scores read the seed's calibration rows of train, even without recovery
    assert study.settings_of("wanda_oneshot", **knobs, seed=3) == {
        "method": "wanda_oneshot", "percentile": 99.0, "sparsity": 0.3, "scope": "layer",
        "seed": 3}
    assert study.settings_of("wanda", **knobs)["finetune"] == 1
    # hidden-state distillation in recovery: named for the fine-tuned methods, when used
    assert study.settings_of("magnitude", **knobs, feature_weight=2.0)["feature_weight"] == 2.0
    assert "feature_weight" not in study.settings_of("magnitude", **knobs, feature_weight=0.0)
    assert "feature_weight" not in study.settings_of("int8_dynamic", **knobs, feature_weight=2.0)
    assert "seed" not in study.settings_of("magnitude", **knobs, seed=None)
    # the recovery's soft-label weight: named when it is not the default 0.5
    assert study.settings_of("structured", **knobs, alpha=1.0)["alpha"] == 1.0
    assert "alpha" not in study.settings_of("magnitude", **knobs, alpha=0.5)
    assert "alpha" not in study.settings_of("magnitude_oneshot", **knobs, alpha=1.0)
    assert study.settings_of("magnitude", **knobs, augment_copies=2)["augment_copies"] == 2
    assert "augment_copies" not in study.settings_of("magnitude", **knobs, augment_copies=0)
    assert "augment_copies" not in study.settings_of("bf16", **knobs, augment_copies=2)
