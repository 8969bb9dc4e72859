"""Every notebook in colab/ executes top to bottom (nbclient) with tiny parameters on real GLUE.

The tiny values are a code cell inserted right after the cell tagged "parameters" (papermill's
convention), so the notebook's own cells run unchanged; any cell that raises fails the test. The
kernel imports this checkout first (PYTHONPATH), so the notebook's install cell finds it.
"""

import json
import os
import time

import numpy as np
import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))
# A committed cell whose re-run is identical on any machine: a trained cell's last digits
# depend on the CPU type that made it (hardware.py); test_reproduce re-runs a trained tiny cell
# made on this machine exactly.
RERUN_CELL = "results/runs/wnli/majority/seed0"
TINY_RUN = {"TASK": "rte", "NUM_TRAIN_STEPS": 2, "MAX_TRAIN_EXAMPLES": 32,
            "MAX_EVAL_EXAMPLES": 32, "MAX_LEN": 32, "BATCH_SIZE": 8,
            "STUDENT_MODEL": "tiny", "INIT_FROM_TEACHER_LAYERS": (),
            "EXTRA": {"eval_batch_size": 16, "progress_bar": False, "compile_cache_dir": ""}}
# Quantization (bf16, int8 on disk, int8 w8a8) and both kinds of pruning, without fine-tuning.
COMPRESS_METHODS = ["fp32", "bf16", "int8_weight", "int8_dynamic", "magnitude_oneshot",
                    "structured_oneshot"]


def _parameters(name: str, glue_dir, teacher, workdir) -> dict:
    if name == "01_distill_quickstart":
        return {**TINY_RUN, "GLUE_DIR": str(glue_dir), "TEACHER": str(teacher),
                "WORKDIR": str(workdir)}
    if name == "02_reproduce":
        # re-runs a committed reproduction cell (the WNLI majority baseline) bit for bit
        return {"RESULTS_DIR": str(REPO / "results"), "METRIC": "accuracy",
                "RERUN": RERUN_CELL, "GLUE_DIR": str(glue_dir)}
    if name == "03_compress":  # fine-tunes the tiny teacher for 2 steps, then compresses it
        run = {k: v for k, v in TINY_RUN.items()
               if k not in ("STUDENT_MODEL", "INIT_FROM_TEACHER_LAYERS")}
        return {**run, "GLUE_DIR": str(glue_dir), "TEACHER": str(teacher),
                "WORKDIR": str(workdir), "RUN": "", "METHODS": COMPRESS_METHODS,
                "FINETUNE_EPOCHS": 0, "TIMING_SEQ": 16, "REPEATS": 2}
    raise AssertionError(f"colab/{name}.ipynb has no tiny parameters in tests/test_notebooks.py")


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A 2-layer, 16-wide random BERT with the real uncased vocabulary, as an HF directory."""
    import jax

    from tkd_jax.models import Transformer, get_config
    from tkd_jax.models.hf_export import save_hf_bert
    from tkd_jax.models.teacher import resolve_teacher

    config = get_config("tiny", num_labels=0, vocab_size=30522, hidden_size=16, num_heads=2,
                        intermediate_size=32, num_layers=2, max_len=128)
    ids = np.zeros((1, 8), np.int32)
    params = Transformer(config).init(jax.random.PRNGKey(0), ids, np.ones_like(ids))["params"]
    return save_hf_bert(tmp_path_factory.mktemp("teacher") / "hf", config, params,
                        resolve_teacher(None) / "vocab.txt")


def test_notebooks_are_stored_without_outputs():
    assert {p.stem for p in NOTEBOOKS} >= {"01_distill_quickstart", "02_reproduce",
                                           "03_compress"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        source = "\n".join(c.source for c in nb.cells)
        assert "experiments." not in source.replace("experiments.reproduce", "") \
            .replace("experiments.verify", ""), f"{path.name}: calls experiments.* internals"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_top_to_bottom(path, glue_dir, tiny_teacher, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    params = _parameters(path.stem, glue_dir, tiny_teacher, tmp_path / "runs")
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(injected))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    start = time.monotonic()
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.monotonic() - start
    print(f"{path.name}: executed in {seconds:.1f} s")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: drew no figure"
    if path.stem == "01_distill_quickstart":
        for run in ("teacher", "tkd", "t_nlp"):
            final = json.loads((tmp_path / "runs" / run / "final_metrics.json").read_text())
            assert final["task"] == "rte" and 0 <= final["metrics"]["accuracy"] <= 1
        assert json.loads((tmp_path / "runs" / "tkd" / "final_metrics.json").read_text())[
            "recipe"] == "tkd"
    if path.stem == "03_compress":
        _check_compression(tmp_path / "runs")
    if path.stem == "02_reproduce":
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs)
        assert "reproduction cells" in text
        expected = ("identical (final metrics and logged records without timing keys, and every "
                    "prediction)")
        assert expected in text, text[-3000:]


def _check_compression(workdir):
    """Every method evaluated from its own file, sized and timed; the files are smaller."""
    out = workdir / "compression"
    records = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert list(records) == COMPRESS_METHODS
    for method, r in records.items():
        assert 0 <= r["dev"]["accuracy"] <= 1, method
        assert r["file_bytes"] == (workdir / "teacher" / "compressed" /
                                   f"{method}.safetensors").stat().st_size > 0
        assert r["latency_b1"]["seq"] == 16 and r["latency_b1"]["median_ms"] > 0, method
        assert r["latency_b32"]["repeats"] == 1, method
    fp32 = records["fp32"]
    assert records["int8_weight"]["file_bytes"] < 0.5 * fp32["file_bytes"]
    assert records["bf16"]["kernel_bytes"] < fp32["kernel_bytes"]
    assert 0 < records["magnitude_oneshot"]["num_nonzero_params"] < fp32["num_params"]
    assert records["structured_oneshot"]["num_params"] < fp32["num_params"]
    assert {p.name for p in out.iterdir()} >= {"table.md", "manifest.json",
                                              "accuracy_vs_latency.png", "accuracy_vs_size.png"}


def test_notebook_setup_cells_are_identical():
    """Each notebook installs and detects the accelerator the same way (one code to review)."""
    setups = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        setups.append(next(c.source for c in nb.cells if c.source.startswith("# Setup:")))
    assert len(set(setups)) == 1
    assert "jax.default_backend()" in setups[0] and "REPO_URL" in setups[0]
