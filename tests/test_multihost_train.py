"""Multi-host training through the command line: 2 processes x 4 devices == 1 process x 8.

Each run is `python -m experiments.glue` in every process of a `jax.distributed` job on
127.0.0.1 (tests/process_harness.py), on a slice of real RTE with a tiny random HF teacher.
Dropout is off: the step's Philox dropout keys do not lower under SPMD partitioning (see
steps.dropout_key), and with it off both layouts compute the same function, so they must agree
to float32 reduction-order noise. The 40 dev examples make the last eval batch of 16 partly
padding, so process 1's block of it is all padding.
"""

import json
import pathlib

import numpy as np
import pytest

from tests.experiment_utils import TIMING_KEYS
from tests.process_harness import describe, launch

CLI = "import runpy, sys; sys.argv[0] = 'glue'; runpy.run_module('experiments.glue', " \
      "run_name='__main__', alter_sys=True)"
COMMON = ["--task", "rte", "--config.max_len=32", "--config.batch_size=16",
          "--config.eval_batch_size=16", "--config.max_train_examples=64",
          "--config.max_eval_examples=40", "--config.num_train_steps=6",
          "--config.log_every_steps=1", "--config.eval_every_steps=3",
          "--config.dropout_rate=0", "--config.attention_dropout_rate=0",
          "--config.progress_bar=false", "--config.compile_cache_dir=",
          "--config.learning_rate=1e-3"]
LAYOUTS = {"one": (1, 8), "two": (2, 4)}  # name -> (processes, devices per process)


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


def _run(layout, workdir, args, **kw):
    processes, devices = LAYOUTS[layout]
    results = launch(CLI, num_processes=processes, devices=devices,
                     args=[*args, "--workdir", workdir], timeout=300, **kw)
    return results


def _args(recipe, glue_dir, teacher, teacher_run=None):
    # Online soft labels: the teacher runs inside the distributed step. (The cached variant
    # computes the same logits but every process would write the one cache file.)
    extra = (["--teacher_run", str(teacher_run), "--config.distill.soft_labels=online"]
             if teacher_run else [])
    model = [] if recipe == "teacher" else ["--config.model=tiny"]
    return [*COMMON, "--recipe", recipe, "--data_dir", str(glue_dir), "--teacher",
            str(teacher), *model, *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, glue_dir, tiny_teacher):
    """{layout: {"teacher": workdir, "tkd": workdir}}, each layout's tkd distilling from its own
    teacher run."""
    root = tmp_path_factory.mktemp("multihost_runs")
    out = {}
    for layout in LAYOUTS:
        out[layout] = {}
        for recipe in ("teacher", "tkd"):
            wd = root / layout / recipe
            res = _run(layout, wd, _args(recipe, glue_dir, tiny_teacher,
                                         out[layout].get("teacher")))
            assert all(r.returncode == 0 for r in res), describe(res)
            out[layout][recipe] = wd
    return out


def _records(wd: pathlib.Path, kind: str) -> list[dict]:
    recs = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == kind]


def _final(wd):
    out = json.loads((wd / "final_metrics.json").read_text())
    for k in TIMING_KEYS:
        out.pop(k, None)
    return out


def _params(wd):
    """The final checkpoint's params, restored onto this (1-device) process. An explicit target
    is needed: orbax refuses to restore an 8-device checkpoint into another topology without one
    (which is also why runs.load_run_params cannot read these runs here)."""
    import jax
    import orbax.checkpoint as ocp

    from tkd_jax.train.runs import final_step

    path = (wd / "checkpoints" / str(final_step(wd)) / "state").absolute()
    local = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        meta = ckptr.metadata(path).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                              meta)
        return ckptr.restore(path, target)["params"]


def _assert_same_run(a: pathlib.Path, b: pathlib.Path):
    for kind, key in (("train", "loss"), ("eval", "main")):
        ra, rb = _records(a, kind), _records(b, kind)
        assert [r["step"] for r in ra] == [r["step"] for r in rb], kind
        np.testing.assert_allclose([r[key] for r in ra], [r[key] for r in rb], atol=1e-5,
                                   rtol=0, err_msg=kind)
    fa, fb = _final(a), _final(b)
    assert fa["confusion_matrix"] == fb["confusion_matrix"]
    for name, value in fa["metrics"].items():
        assert abs(value - fb["metrics"][name]) <= 1e-5, name
    pa = json.loads((a / "predictions.json").read_text())
    pb = json.loads((b / "predictions.json").read_text())
    assert pa == pb  # identical dev predictions, example by example
    import jax

    for x, y in zip(jax.tree.leaves(_params(a)), jax.tree.leaves(_params(b)), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe", ["teacher", "tkd"])
def test_two_processes_match_one_process_with_eight_devices(runs, recipe):
    one, two = runs["one"][recipe], runs["two"][recipe]
    _assert_same_run(one, two)
    losses = [r["loss"] for r in _records(two, "train")]
    assert len(losses) == 6 and len(set(losses)) > 1
    devices = json.loads((two / "manifest.json").read_text())["devices"]
    assert devices["process_count"] == 2 and len(devices["devices"]) == 8
    # Only process 0 wrote the run files: one record per step, no interleaved duplicates.
    steps = [r["step"] for r in _records(two, "train")]
    assert steps == sorted(set(steps))


def test_a_job_killed_after_a_checkpoint_resumes_exactly(runs, glue_dir, tiny_teacher,
                                                         tmp_path):
    wd = tmp_path / "teacher"
    args = [*_args("teacher", glue_dir, tiny_teacher), "--config.checkpoint_every_steps=2"]
    ckpts = wd / "checkpoints"

    def first_checkpoint_written():
        return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())

    killed = _run("two", wd, args, kill_when=first_checkpoint_written)
    assert all(r.killed for r in killed), describe(killed)
    assert not (wd / "final_metrics.json").exists()
    resumed = _run("two", wd, args)
    assert all(r.returncode == 0 for r in resumed), describe(resumed)
    assert "resuming from step" in resumed[0].stdout + resumed[0].stderr
    _assert_same_run(runs["two"]["teacher"], wd)
