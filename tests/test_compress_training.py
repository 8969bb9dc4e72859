"""Compression as training options of the engine: QAT (int8, qwix) and magnitude pruning on the
cubic schedule, composed with each other through `train_and_evaluate`."""

import json

import numpy as np
from flax import traverse_util

import tkd_jax
from tkd_jax.compress.magnitude import is_prunable
from tkd_jax.train.runs import load_run_params


def test_qat_and_scheduled_pruning_through_the_engine(glue_dir, tmp_path):
    config = tkd_jax.recipe_config("transformer")
    config.task, config.data_dir, config.model = "rte", str(glue_dir), "tiny"
    config.max_len, config.batch_size, config.eval_batch_size = 64, 16, 16
    config.max_train_examples, config.max_eval_examples = 32, 16
    config.num_train_steps, config.quiet = 6, True
    config.qat = "int8"
    config.prune.sparsity, config.prune.end_ratio, config.prune.frequency = 0.5, 0.5, 1
    final = tkd_jax.train_and_evaluate(config, tmp_path / "run")
    assert final["steps"] == 6 and np.isfinite(final["metrics"]["loss"])
    flat = traverse_util.flatten_dict(load_run_params(tmp_path / "run"))
    kernels = [np.asarray(v) for k, v in flat.items() if is_prunable(k)]
    zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
    assert abs(zeros - 0.5) < 0.01  # the schedule reached its final sparsity by step 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["qat"] == "int8"
    assert manifest["config"]["prune"]["sparsity"] == 0.5
