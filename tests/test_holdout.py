"""`config.holdout_examples`: a fixed held-out slice of train evaluated in place of dev."""

import json
import shutil

import numpy as np
import pytest

import tkd_jax
from tkd_jax import data as data_lib
from tkd_jax.compress import run_io
from tkd_jax.config import RunConfig
from tkd_jax.data import examples, holdout, load_task
from tkd_jax.errors import CheckpointError, ConfigError


def _split(n: int) -> examples.Split:
    return examples.Split(text_a=[f"s{i}" for i in range(n)], text_b=None,
                          label=np.arange(n) % 2, idx=np.arange(100, 100 + n), name="train")


def test_split_off_is_fixed_disjoint_complete_and_nested():
    train, held = holdout.split_off(_split(50), 10)
    again_train, again_held = holdout.split_off(_split(50), 10)
    assert list(held.idx) == list(again_held.idx) and list(train.idx) == list(again_train.idx)
    assert len(held) == 10 and len(train) == 40
    assert sorted([*train.idx, *held.idx]) == list(range(100, 150))
    assert list(held.idx) == sorted(held.idx) and list(train.idx) == sorted(train.idx)
    assert held.text_a == [f"s{i - 100}" for i in held.idx]  # rows stay whole
    # a larger slice contains the smaller one (one permutation, its first N)
    assert set(held.idx) < set(holdout.split_off(_split(50), 20)[1].idx)


@pytest.mark.parametrize("n", [0, 50, 60])
def test_split_off_rejects_sizes_that_leave_nothing(n):
    with pytest.raises(ConfigError, match=rf"config.holdout_examples={n}: expected between 1 "
                                          r"and 49 \(the training split has 50 examples\)"):
        holdout.split_off(_split(50), n)


def test_config_checks_and_redirects_the_evaluation_split():
    c = tkd_jax.recipe_config("teacher")
    c.task = "mrpc"
    assert RunConfig.from_config_dict(c).task.eval_splits == ("dev",)
    c.holdout_examples = 300
    run = RunConfig.from_config_dict(c)
    assert run.task.eval_splits == ("holdout",) and run.holdout_examples == 300
    c.holdout_examples = -1
    with pytest.raises(ConfigError, match=r"config.holdout_examples=-1: expected >= 0"):
        RunConfig.from_config_dict(c)
    m = tkd_jax.recipe_config("mlm")
    m.task, m.holdout_examples = "mrpc", 10
    with pytest.raises(ConfigError, match="has no labels to hold out"):
        RunConfig.from_config_dict(m)


@pytest.fixture(scope="module")
def holdout_run(glue_dir, tmp_path_factory):
    """(directory, final metrics) of a tiny RTE run with a 20-example holdout and no dev.tsv."""
    tmp_path = tmp_path_factory.mktemp("holdout")
    data = tmp_path / "glue" / "RTE"
    data.mkdir(parents=True)
    shutil.copy(glue_dir / "RTE" / "train.tsv", data / "train.tsv")  # no dev.tsv at all
    config = tkd_jax.recipe_config("transformer")
    config.task, config.data_dir, config.model = "rte", str(tmp_path / "glue"), "tiny"
    config.max_len, config.batch_size, config.eval_batch_size = 64, 16, 16
    config.max_train_examples, config.holdout_examples = 32, 20
    config.num_train_steps, config.quiet = 2, True
    return tmp_path, tkd_jax.train_and_evaluate(config, tmp_path / "run")


def test_engine_evaluates_on_the_holdout_without_reading_dev(holdout_run):
    tmp_path, final = holdout_run
    assert final["split"] == "holdout" and final["steps"] == 2

    full = load_task("rte", data_dir=tmp_path / "glue", splits="train").splits["train"]
    rest, held = holdout.split_off(full, 20)
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert list(predictions) == ["holdout"]
    assert predictions["holdout"]["index"] == [int(i) for i in held.idx]
    assert predictions["holdout"]["label"] == [int(v) for v in held.label]
    # the compression study reads the run's data back the same way
    spec, encoded, _ = run_io.load_run_data(tmp_path / "run", data_dir=tmp_path / "glue")
    assert spec.eval_splits == ("holdout",) and set(encoded) == {"train", "holdout"}
    assert len(encoded["holdout"]) == 20 and len(encoded["train"]) == 32
    assert not set(rest.idx[:32]) & set(held.idx)

    from tkd_jax.compress import report, study

    records = study.compress_run(tmp_path / "run", methods=["fp32"], repeats=1, repeats_b32=1,
                                 seq=16, data_dir=str(tmp_path / "glue"), log=lambda *_: None)
    assert records[0]["eval_split"] == "holdout"
    assert records[0]["dev"]["accuracy"] == pytest.approx(final["metrics"]["accuracy"], abs=1e-4)
    table = report.markdown_table(records, metric="accuracy", title="t")
    assert "| method | holdout accuracy |" in table


def test_run_data_without_its_tokenizer_is_refused_by_name(holdout_run, tmp_path):
    tmp, _ = holdout_run
    copy = tmp_path / "run"
    shutil.copytree(tmp / "run", copy, ignore=shutil.ignore_patterns("tokenizer.json"))
    with pytest.raises(CheckpointError, match=r"run/tokenizer.json: missing \(every run writes"):
        run_io.load_run_data(copy, data_dir=tmp / "glue")
    (copy / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tokenizer.json: cannot read the run's tokenizer"):
        run_io.load_run_data(copy, data_dir=tmp / "glue")


def test_recovery_trains_on_augmented_views_of_the_runs_train_split(holdout_run):
    """``augment_copies``: train, then that many word-replacement views of each train row
    (never of the held-out slice), the same for the same seed; the recovery trains on them."""
    from tkd_jax.compress import study

    tmp_path, _ = holdout_run
    run, glue = tmp_path / "run", tmp_path / "glue"
    _, params, _ = run_io.load_run(run)
    emb = params["embeddings"]["word_embeddings"]["embedding"]

    def augmented(seed):
        _, enc, _ = run_io.load_run_data(run, data_dir=glue, augment_copies=2,
                                         word_embeddings=emb, augment_seed=seed)
        return enc

    def ids(split):
        return [row.tolist() for row in split.input_ids]

    enc = augmented(3)
    train, views = ids(enc["train"]), ids(enc["train_augmented"])
    assert set(enc) == {"train", "holdout", "train_augmented"} and len(views) == 3 * 32
    assert views[:32] == train  # the rows themselves first
    assert np.array_equal(enc["train_augmented"].label, np.tile(enc["train"].label, 3))
    changed = sum(views[32 + i] != train[i % 32] for i in range(64))
    assert 32 < changed <= 64  # at p 0.3 per word nearly every RTE pair has a word replaced
    assert ids(augmented(3)["train_augmented"]) == views
    assert ids(augmented(4)["train_augmented"]) != views

    rec, = study.compress_run(run, methods=["magnitude"], finetune=1, augment_copies=1,
                              alpha=1.0, repeats=1, repeats_b32=1, seq=16, data_dir=str(glue),
                              log=lambda *_: None)
    assert rec["settings"]["augment_copies"] == 1 and rec["settings"]["alpha"] == 1.0
    assert rec["info"]["finetune_examples"] == 64 and rec["info"]["finetune_steps"] == 4
    assert rec["info"]["sparsity"]["prunable"] == pytest.approx(0.5, abs=0.01)


def test_wanda_prunes_each_output_neuron_by_weight_times_input_norm(holdout_run):
    """``wanda_oneshot``: per-output masks of |w| x the unpruned model's input-activation norms
    on the seed's calibration rows of train; ``wanda`` recovers with those scores fixed."""
    from flax import traverse_util

    from tkd_jax.compress import activation_norms, magnitude, storage, study

    tmp_path, _ = holdout_run
    run, glue = tmp_path / "run", tmp_path / "glue"
    records = study.compress_run(run, methods=["wanda_oneshot", "wanda"], finetune=1,
                                 scope="output", sparsity=0.25, seed=5, repeats=1,
                                 repeats_b32=1, seq=16, data_dir=str(glue), log=lambda *_: None)
    oneshot, recovered = records
    assert oneshot["settings"] == {"method": "wanda_oneshot", "percentile": 100.0,
                                   "sparsity": 0.25, "scope": "output", "seed": 5}
    assert oneshot["info"]["calibration_examples"] == 32  # all of the tiny run's train
    assert recovered["info"]["finetune_steps"] == 2
    module, params, _ = run_io.load_run(run)
    _, encoded, _ = run_io.load_run_data(run, data_dir=glue)
    batches = [{k: v for k, v in b.items() if k != "index"} for b in
               data_lib.TrainBatcher(encoded["train"], batch_size=16, seed=5,
                                     buckets=(128,)).epoch(0)]
    norms = activation_norms.input_norms(module, params, batches)
    want = magnitude.apply_masks(params, magnitude.magnitude_masks(
        params, 0.25, scope="output", scales=norms))
    _, got, _ = storage.load(run / "compressed" / "seed5" / "wanda_oneshot.safetensors")
    flat_want, flat_got = traverse_util.flatten_dict(want), traverse_util.flatten_dict(got)
    for k, w in flat_want.items():
        np.testing.assert_array_equal(np.asarray(flat_got[k]) == 0, np.asarray(w) == 0)
    _, rec_params, _ = storage.load(run / "compressed" / "seed5" / "wanda.safetensors")
    for k, w in traverse_util.flatten_dict(rec_params).items():
        if magnitude.is_prunable(k):  # 25 % of every column's fan-in, after recovery too
            assert np.all((np.asarray(w) == 0).sum(0) == int(0.25 * w.shape[0]))

def _teacher_manifest(tmp_path, name, *, task="rte", holdout_examples=None):
    run = tmp_path / name
    run.mkdir()
    config = {} if holdout_examples is None else {"holdout_examples": holdout_examples}
    (run / "manifest.json").write_text(json.dumps({"task": task, "config": config}))
    return str(run)


def test_a_teacher_that_trained_on_the_held_out_slice_is_refused(tmp_path):
    from tkd_jax.distill.teachers import check_not_trained_on_holdout as check

    full = _teacher_manifest(tmp_path, "full")  # a manifest from before holdouts: held out 0
    with pytest.raises(ConfigError, match=r"config.holdout_examples=20: teacher run .*full "
                                          r"trained on them \(it held out 0\)"):
        check(full, task="rte", holdout_examples=20)
    fewer = _teacher_manifest(tmp_path, "fewer", holdout_examples=10)
    with pytest.raises(ConfigError, match=r"\(it held out 10\); expected a teacher trained "
                                          r"with holdout_examples >= 20"):
        check(fewer, task="rte", holdout_examples=20)
    # nested slices: a teacher that held out as many or more never saw the student's slice
    check(_teacher_manifest(tmp_path, "same", holdout_examples=20), task="rte",
          holdout_examples=20)
    check(_teacher_manifest(tmp_path, "more", holdout_examples=30), task="rte",
          holdout_examples=20)
    check(full, task="rte", holdout_examples=0)  # evaluating on dev: nothing to protect
    check(_teacher_manifest(tmp_path, "sst2", task="sst2"), task="rte", holdout_examples=20)
    with pytest.raises(ConfigError, match=r"missing.manifest.json: unreadable, so it cannot "
                                          r"be told whether the teacher trained on the 20"):
        check(str(tmp_path / "missing"), task="rte", holdout_examples=20)


def test_the_engine_checks_the_teacher_before_loading_it(tmp_path):
    # the teacher dir holds only a manifest: a load would fail with another error
    config = tkd_jax.recipe_config("tkd")
    config.task, config.model, config.quiet = "rte", "tiny", True
    config.holdout_examples = 20
    config.distill.teacher_runs = (_teacher_manifest(tmp_path, "teacher"),)
    with pytest.raises(ConfigError, match=r"teacher run .*teacher trained on them"):
        tkd_jax.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written
