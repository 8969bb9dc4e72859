"""Models of a run: build from the config, describe in model.json, reload from a finished run.

A finished `teacher` run is what students distil from (`--teacher_run DIR`): its model.json says
how to rebuild the module and its best checkpoint holds the parameters.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from tkd_jax.errors import CheckpointError, ConfigError
from tkd_jax.models import Transformer, TransformerConfig, create_model
from tkd_jax.models.hf_import import load_hf_bert
from tkd_jax.models.teacher import init_student_from_teacher, resolve_teacher
from tkd_jax.train.checkpoint import Checkpointer

MODEL_FILE = "model.json"


def _dtype_name(x) -> str:
    return jnp.dtype(x).name


def transformer_config_to_dict(cfg: TransformerConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["dtype"], d["param_dtype"] = _dtype_name(cfg.dtype), _dtype_name(cfg.param_dtype)
    return d


def transformer_config_from_dict(d: dict[str, Any], **overrides) -> TransformerConfig:
    d = dict(d)
    d["dtype"], d["param_dtype"] = jnp.dtype(d["dtype"]), jnp.dtype(d["param_dtype"])
    return TransformerConfig(**{**d, **overrides})


def _dummy_inputs():
    ids = jnp.zeros((1, 8), jnp.int32)
    return ids, jnp.ones_like(ids), jnp.zeros_like(ids)


def build_model(config, *, num_labels: int, vocab_size: int, teacher, dtype, rng, head_rng):
    """(module, params, description) for config.model; "pretrained" imports the teacher."""
    overrides = {"dropout_rate": config.dropout_rate} if config.dropout_rate >= 0 else {}
    if config.attention_dropout_rate >= 0:
        overrides["attention_dropout_rate"] = config.attention_dropout_rate
    if config.model == "pretrained":
        cfg, params, _ = load_hf_bert(resolve_teacher(teacher), num_labels=num_labels,
                                      dtype=dtype, rng=head_rng)
        cfg = cfg.replace(**overrides)
        desc = {"name": "pretrained", "transformer_config": transformer_config_to_dict(
            cfg.replace(dtype=jnp.float32))}
        return Transformer(cfg), params, desc
    module = create_model(config.model, num_labels=num_labels, vocab_size=vocab_size,
                          dtype=dtype, **overrides)
    params = module.init(rng, *_dummy_inputs())["params"]
    if config.init_teacher_head and (not config.init_from_teacher_layers
                                     or config.init_teacher_source != "run"):
        raise ConfigError("config.init_teacher_head=true needs init_from_teacher_layers "
                          "(e.g. '0,2,4') and init_teacher_source=run (a fine-tuned head)")
    if config.init_from_teacher_layers:
        try:
            layers = tuple(int(x) for x in config.init_from_teacher_layers.split(","))
        except ValueError:
            raise ConfigError(f"config.init_from_teacher_layers="
                              f"{config.init_from_teacher_layers!r}: expected e.g. '0,2,4'"
                              ) from None
        params = init_student_from_teacher(params, _init_teacher_params(config, teacher),
                                           layers=layers, include_head=config.init_teacher_head)
    if config.init_from:
        params = init_from_run(params, config.init_from)
    desc = {"name": config.model, "num_labels": num_labels, "vocab_size": vocab_size,
            "overrides": overrides}
    return module, params, desc


def _init_teacher_params(config, teacher):
    """Teacher params to copy layers from: the pretrained checkpoint or a fine-tuned run."""
    source = config.init_teacher_source
    if source == "pretrained":
        return load_hf_bert(resolve_teacher(teacher), num_labels=0)[1]
    if source == "run":
        run_dirs = [r for r in config.distill.teacher_runs.split(",") if r]
        if not run_dirs:
            raise ConfigError("config.init_teacher_source=run: pass --teacher_run DIR")
        return load_run_params(run_dirs[0])
    raise ConfigError(f"config.init_teacher_source: expected pretrained or run, got {source!r}")


def save_model_desc(workdir: pathlib.Path, desc: dict) -> None:
    tmp = workdir / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    tmp.replace(workdir / MODEL_FILE)


def module_from_desc(desc: dict, *, dtype=jnp.float32):
    if "transformer_config" in desc:
        return Transformer(transformer_config_from_dict(desc["transformer_config"], dtype=dtype))
    return create_model(desc["name"], num_labels=desc["num_labels"],
                        vocab_size=desc["vocab_size"], dtype=dtype, **desc["overrides"])


def best_step(ckpt_dir: pathlib.Path) -> int:
    """Step of the checkpoint with the best recorded dev score (latest when none recorded)."""
    ckpt = Checkpointer(ckpt_dir)
    steps = sorted(ckpt.all_steps())
    if not steps:
        raise CheckpointError(f"{ckpt_dir}: no finished checkpoint")
    scored = []
    for s in steps:
        last_eval = ckpt.restore_meta(s).get("last_eval") or {}
        if last_eval.get("main") is not None:
            scored.append((last_eval["main"], s))
    ckpt.close()
    return max(scored)[1] if scored else steps[-1]


def load_run_params(run_dir, *, step: int | None = None) -> dict:
    """params["model"] of a finished run's best (or given) checkpoint, as NumPy arrays."""
    ckpt_dir = pathlib.Path(run_dir).absolute() / "checkpoints"  # orbax wants absolute paths
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints/ directory (not a finished run?)")
    step = best_step(ckpt_dir) if step is None else step
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(ckpt_dir / str(step) / "state")
    except Exception as e:  # orbax raises many types for unreadable checkpoints
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{ckpt_dir / str(step)}: unreadable checkpoint "
                              f"({type(e).__name__}: {first[:200]})") from None
    return jax.tree.map(np.asarray, restored["params"]["model"])


def load_run(run_dir, *, dtype=jnp.float32):
    """(module, params, desc) of a finished run (e.g. a fine-tuned teacher)."""
    run_dir = pathlib.Path(run_dir)
    try:
        desc = json.loads((run_dir / MODEL_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / MODEL_FILE}: cannot read model description "
                              f"({type(e).__name__}); expected the workdir of a finished run"
                              ) from None
    return module_from_desc(desc, dtype=dtype), load_run_params(run_dir), desc


def init_from_run(params: dict, run_dir) -> dict:
    """Copy every parameter of an earlier run whose path and shape match (e.g. MLM encoder)."""
    from flax import traverse_util

    src = traverse_util.flatten_dict(load_run_params(run_dir))
    dst = traverse_util.flatten_dict(params)
    copied = 0
    for k, v in dst.items():
        if k in src and src[k].shape == v.shape:
            dst[k] = jnp.asarray(src[k], v.dtype)
            copied += 1
    if copied == 0:
        raise ConfigError(f"config.init_from={run_dir}: no parameter matches this model")
    return traverse_util.unflatten_dict(dst)
