"""Configs are checked once, at the edge: every contradiction and range error exits 2 with one
line naming the key, before any data is read or anything is written to the workdir."""

import pytest

from experiments import cli, glue
from tkd_jax.config import RunConfig
from tkd_jax.errors import ConfigError
from tkd_jax.recipes import RECIPES, recipe_config

TINY = ["--config.model=tiny"]


@pytest.mark.parametrize("argv, expect", [
    # item 2: a config that contradicts its recipe names both
    (["--recipe", "teacher", "--config.model=tiny"], ("config.model=tiny", "--recipe teacher")),
    (["--recipe", "teacher", "--config", "paper"], ("config.model=paper", "--recipe teacher")),
    (["--recipe", "kd", "--config", "paper", "--teacher_run", "t"],
     ("config.model=paper", "--recipe kd", "--recipe tkd")),
    (["--recipe", "kd", *TINY, "--teacher_run", "t"], ("--recipe kd", "--recipe tkd")),
    (["--recipe", "tkd", "--config.model=lstm", "--teacher_run", "t"],
     ("config.model=lstm", "--recipe tkd", "--recipe kd")),
    (["--recipe", "transformer", *TINY, "--config.distill.enabled=true"],
     ("config.distill.enabled=true", "--recipe transformer")),
    (["--recipe", "tkd", *TINY, "--config.distill.enabled=false", "--teacher_run", "t"],
     ("config.distill.enabled=false", "--recipe tkd")),
    (["--recipe", "tkd", *TINY], ("config.distill.teacher_runs", "--teacher_run")),
    (["--recipe", "mlm", "--config.model=lstm"], ("config.model=lstm", "--recipe mlm")),
    (["--recipe", "rnn", "--config.model=cnn"], ("config.model=cnn", "--recipe rnn")),
    (["--recipe", "lstm", "--config.init_from_teacher_layers=0,2"],
     ("init_from_teacher_layers", "--recipe lstm")),
    # item 4: ranges and names
    ([*TINY, "--config.num_epochs=-1"], ("config.num_epochs=-1",)),
    ([*TINY, "--config.num_epochs=0"], ("config.num_epochs=0",)),
    ([*TINY, "--config.num_train_steps=0"], ("config.num_train_steps=0",)),
    ([*TINY, "--config.batch_size=0"], ("config.batch_size=0",)),
    ([*TINY, "--config.eval_batch_size=-4"], ("config.eval_batch_size=-4",)),
    ([*TINY, "--config.learning_rate=0"], ("config.learning_rate=0",)),
    ([*TINY, "--config.learning_rate=nan"], ("config.learning_rate=nan",)),
    ([*TINY, "--config.learning_rate=inf"], ("config.learning_rate=inf",)),
    ([*TINY, "--config.warmup_ratio=1.5"], ("config.warmup_ratio=1.5",)),
    ([*TINY, "--config.weight_decay=-0.1"], ("config.weight_decay=-0.1",)),
    ([*TINY, "--config.grad_accum_steps=0"], ("config.grad_accum_steps=0",)),
    ([*TINY, "--config.dropout_rate=1.0"], ("config.dropout_rate=1.0",)),
    (["--recipe", "tkd", *TINY, "--config.distill.temperature=0", "--teacher_run", "t"],
     ("config.distill.temperature=0",)),
    (["--recipe", "tkd", *TINY, "--config.distill.alpha=1.5", "--teacher_run", "t"],
     ("config.distill.alpha=1.5",)),
    (["--recipe", "tkd", *TINY, "--config.distill.alpha=-0.1", "--teacher_run", "t"],
     ("config.distill.alpha=-0.1",)),
    (["--recipe", "tkd", *TINY, "--config.distill.teacher_weights=-1", "--teacher_run", "t"],
     ("config.distill.teacher_weights",)),
    (["--recipe", "tkd", *TINY, "--config.distill.teacher_weights=1,2", "--teacher_run", "t"],
     ("config.distill.teacher_weights", "2 weights for 1")),
    (["--recipe", "tkd", *TINY, "--config.distill.feature_weight=-1", "--teacher_run", "t"],
     ("config.distill.feature_weight=-1",)),
    (["--recipe", "tkd", *TINY, "--config.distill.kind=js", "--teacher_run", "t"],
     ("config.distill.kind",)),
    (["--recipe", "tkd", *TINY, "--config.distill.feature_layers=1-2", "--teacher_run", "t"],
     ("config.distill.feature_layers",)),
    ([*TINY, "--config.max_len=600"], ("config.max_len=600", "512 positions")),
    (["--recipe", "teacher", "--config.max_len=1024"], ("config.max_len=1024", "positions")),
    ([*TINY, "--config.precision=fp8"], ("config.precision",)),
    ([*TINY, "--config.parallel=tpu"], ("config.parallel",)),
    ([*TINY, "--config.schedule=step"], ("config.schedule",)),
    ([*TINY, "--config.tokenizer=bpe"], ("config.tokenizer",)),
    ([*TINY, "--config.init_from_teacher_layers=a,b"], ("config.init_from_teacher_layers",)),
    ([*TINY, "--config.preprocess.augment=shuffle"], ("config.preprocess.augment",)),
    (["--recipe", "mlm", *TINY, "--config.mlm.mask_prob=0"], ("config.mlm.mask_prob",)),
    ([*TINY, "--config.num_devices=64"], ("config.num_devices",)),
    ([*TINY, "--config.param_layout=zigzag"], ("config.param_layout",)),
    ([*TINY, "--config.qat=int4"], ("config.qat",)),
    ([*TINY, "--config.bucket_ratio=1.0"], ("config.bucket_ratio=1.0", "> 1")),
    ([*TINY, "--config.bucket_ratio=-2"], ("config.bucket_ratio=-2",)),
    ([*TINY, "--config.prune.sparsity=1.0"], ("config.prune.sparsity=1.0",)),
    ([*TINY, "--config.prune.begin_ratio=0.6"], ("config.prune.end_ratio=0.5",)),
    ([*TINY, "--config.prune.scope=row"], ("config.prune.scope",)),
    (["--recipe", "lstm", "--config.qat=int8"], ("config.qat", "--recipe lstm")),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, expect):
    workdir = tmp_path / "w"
    code = cli.run_main(glue.main, ["--task", "rte", "--workdir", str(workdir), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in expect:
        assert part in lines[0], (part, lines[0])
    assert not workdir.exists()


def test_batch_size_must_divide_the_devices():
    config = recipe_config("transformer")
    config.task, config.batch_size = "rte", 12
    with pytest.raises(ConfigError, match="config.batch_size: 12 is not divisible by the 8"):
        RunConfig.from_config_dict(config, num_devices=8)
    config.batch_size = 16
    assert RunConfig.from_config_dict(config, num_devices=8).batch_size == 16


def test_lists_are_typed_once():
    config = recipe_config("tkd")
    config.task = "mrpc"
    config.distill.teacher_runs = ("a", "b")
    config.distill.teacher_weights = (1, 3)
    config.init_from_teacher_layers = (0, 2, 4)
    config.distill.feature_layers = ("0:0", "1:2")
    config.preprocess.augment = ("delete", "swap")
    cfg = RunConfig.from_config_dict(config, num_devices=1)
    assert cfg.distill.teacher_runs == ("a", "b") and cfg.distill.teacher_weights == (1.0, 3.0)
    assert cfg.init_from_teacher_layers == (0, 2, 4)
    assert cfg.distill.feature_layers == ((0, 0), (1, 2)) and not cfg.distill.online
    assert cfg.preprocess.augment == ("delete", "swap")
    assert cfg.task.name == "mrpc" and cfg.recipe is RECIPES["tkd"]


def test_compression_choices_match_the_compress_package():
    from tkd_jax import config as config_lib
    from tkd_jax.compress import magnitude, qat

    assert config_lib.QAT_KINDS == qat.QAT_KINDS
    assert config_lib.PRUNE_SCOPES == magnitude.SCOPES


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_default_config_is_valid(name):
    config = recipe_config(name)
    config.task = "rte"
    if RECIPES[name].distils:
        config.distill.teacher_runs = ("runs/rte/teacher",)
    cfg = RunConfig.from_config_dict(config, num_devices=1)
    assert cfg.recipe.name == name and cfg.model in cfg.recipe.allowed_models
