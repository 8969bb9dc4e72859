"""A notebook or script trains any recipe through the library alone (no `experiments`)."""

import json
import textwrap

from tests.experiment_utils import readme_snippet_output, run_python

SCRIPT = textwrap.dedent("""
    import json, sys
    import tkd_jax

    config = tkd_jax.recipe_config("transformer")
    config.task, config.data_dir = "rte", sys.argv[2]
    config.model, config.max_len, config.batch_size, config.eval_batch_size = "tiny", 64, 16, 16
    config.max_train_examples, config.max_eval_examples, config.num_train_steps = 32, 24, 4
    config.quiet = True
    final = tkd_jax.train_and_evaluate(config, sys.argv[1])
    loaded = sorted(m for m in sys.modules if m == "experiments" or m.startswith("experiments."))
    print(json.dumps({"final": final, "experiments_modules": loaded}))
""")


def test_train_through_the_library_api_alone(glue_dir, tmp_path):
    wd = tmp_path / "run"
    proc = run_python(SCRIPT.replace("sys.argv[1]", repr(str(wd)))
                      .replace("sys.argv[2]", repr(str(glue_dir))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["experiments_modules"] == []
    assert proc.stdout.strip().count("\n") == 0  # quiet: nothing but the script's own line
    final = out["final"]
    assert final["recipe"] == "transformer" and final["steps"] == 4
    assert json.loads((wd / "final_metrics.json").read_text())["metrics"] == final["metrics"]
    # the prediction file holds one row per dev example, keyed by the GLUE idx
    preds = json.loads((wd / "predictions.json").read_text())["dev"]
    assert sorted(preds["index"]) == list(range(24))
    assert len(preds["prediction"]) == len(preds["label"]) == 24
    correct = sum(p == y for p, y in zip(preds["prediction"], preds["label"], strict=True))
    assert correct / 24 == final["metrics"]["accuracy"]
    manifest = json.loads((wd / "manifest.json").read_text())
    assert manifest["recipe"] == "transformer" and "argv" not in manifest
    assert "checkpoint_sha256" in manifest["teacher"]  # the teacher's WordPiece was used


def test_readme_compression_snippet_runs_as_written():
    """The README's compression example: every printed value is checked, so the prose about
    it (50 % sparsity, halved heads / FFN, the file ratio, exactness) cannot drift."""
    out = readme_snippet_output("tkd_jax.compress")
    first, second = out.splitlines()
    # the tiny preset: 2 layers of 2 heads and 64 FFN neurons
    assert first == "0.5 (1, 1) (32, 32) 3.52"
    structured_diff, int8_diff = map(float, second.split())
    assert structured_diff < 1e-6  # removing == masking, up to float error
    assert 0.0 < int8_diff < 1e-2  # quantized, so not equal, but close
