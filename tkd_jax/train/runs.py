"""Models of a run: build from the config, describe in model.json, reload from a finished run.

A finished `teacher` run is what students distil from (`--teacher_run DIR`): its model.json says
how to rebuild the module and its final checkpoint holds the parameters.
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
from tkd_jax.models import Transformer, TransformerConfig, create_model, get_config
from tkd_jax.models.hf_import import add_classifier
from tkd_jax.models.mlm import TransformerForMaskedLM
from tkd_jax.models.teacher import init_student_from_teacher
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


def model_overrides(cfg) -> dict[str, float]:
    """Dropout overrides of the config (< 0 keeps the preset's own), for every model family."""
    out = {"dropout_rate": cfg.dropout_rate} if cfg.dropout_rate >= 0 else {}
    if cfg.attention_dropout_rate >= 0:
        out["attention_dropout_rate"] = cfg.attention_dropout_rate
    return out


def build_model(cfg, *, num_labels: int, vocab_size: int, pretrained, teacher_runs, dtype,
                rng, head_rng):
    """(module, params, description) for ``cfg.model`` (a typed RunConfig).

    ``pretrained`` is the run's PretrainedCheckpoint ("pretrained" imports its encoder and adds
    a task head; students may copy its layers); ``teacher_runs`` the loaded teacher runs
    (``init_teacher_source=run`` copies the first one's layers).
    """
    overrides = model_overrides(cfg)
    if cfg.model == "pretrained":
        enc_cfg, enc_params = pretrained.encoder
        mcfg, params = add_classifier(enc_cfg, enc_params, num_labels=num_labels, rng=head_rng,
                                      dtype=dtype)
        mcfg = mcfg.replace(**overrides)
        desc = {"name": "pretrained", "transformer_config": transformer_config_to_dict(
            mcfg.replace(dtype=jnp.float32))}
        return Transformer(mcfg), params, desc
    module = create_model(cfg.model, num_labels=num_labels, vocab_size=vocab_size,
                          dtype=dtype, **overrides)
    params = module.init(rng, *_dummy_inputs())["params"]
    if cfg.init_from_teacher_layers:
        source = (teacher_runs[0].params if cfg.init_teacher_source == "run"
                  else pretrained.encoder[1])
        params = init_student_from_teacher(params, source, layers=cfg.init_from_teacher_layers,
                                           include_head=cfg.init_teacher_head)
    if cfg.init_from:
        params = init_from_run(params, cfg.init_from)
    desc = {"name": cfg.model, "num_labels": num_labels, "vocab_size": vocab_size,
            "overrides": overrides}
    return module, params, desc


def build_mlm_model(cfg, *, vocab_size: int, dtype, rng):
    """(TransformerForMaskedLM, params, description) of the mlm recipe's student."""
    mcfg = get_config(cfg.model, vocab_size=vocab_size, num_labels=0, dtype=dtype,
                      **model_overrides(cfg))
    model = TransformerForMaskedLM(mcfg)
    params = model.init(rng, *_dummy_inputs()[:2])["params"]
    desc = {"name": "mlm", "transformer_config": transformer_config_to_dict(
        mcfg.replace(dtype=jnp.float32))}
    return model, params, desc


def save_model_desc(workdir: pathlib.Path, desc: dict) -> None:
    tmp = workdir / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
    tmp.replace(workdir / MODEL_FILE)


def module_from_desc(desc: dict, *, dtype=jnp.float32):
    if "transformer_config" in desc:
        return Transformer(transformer_config_from_dict(desc["transformer_config"], dtype=dtype))
    return create_model(desc["name"], num_labels=desc["num_labels"],
                        vocab_size=desc["vocab_size"], dtype=dtype, **desc["overrides"])


def final_step(run_dir) -> int:
    """Step of a run's final (latest) checkpoint: what students learn from (DESIGN 5)."""
    ckpt_dir = pathlib.Path(run_dir).absolute() / "checkpoints"  # orbax wants absolute paths
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints/ directory (not a finished run?)")
    ckpt = Checkpointer(ckpt_dir)
    step = ckpt.latest_step()
    ckpt.close()
    if step is None:
        raise CheckpointError(f"{ckpt_dir}: no finished checkpoint")
    return step


def load_run_params(run_dir, *, step: int | None = None) -> dict:
    """params["model"] of a finished run's final (or given) checkpoint, as NumPy arrays."""
    ckpt_dir = pathlib.Path(run_dir).absolute() / "checkpoints"
    step = final_step(run_dir) if step is None else step
    path = ckpt_dir / str(step) / "state"
    try:
        with ocp.StandardCheckpointer() as ckptr:
            # An explicit single-device target: the run may have been written by another device
            # or process count, which orbax refuses to restore into without one.
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            # the item's own tree metadata: the checkpointer's metadata() would look for a
            # step-level metadata file inside the item and log a warning on every load
            meta = ocp.StandardCheckpointHandler().metadata(path).tree
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local), meta)
            restored = ckptr.restore(path, target)
    except Exception as e:  # orbax raises many types for unreadable checkpoints
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{ckpt_dir / str(step)}: unreadable checkpoint "
                              f"({type(e).__name__}: {first[:200]})") from None
    return jax.tree.map(np.asarray, restored["params"]["model"])


def read_model_desc(run_dir) -> dict:
    run_dir = pathlib.Path(run_dir)
    try:
        return json.loads((run_dir / MODEL_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / MODEL_FILE}: cannot read model description "
                              f"({type(e).__name__}); expected the workdir of a finished run"
                              ) from None


def load_run(run_dir, *, dtype=jnp.float32, step: int | None = None):
    """(module, params, desc) of a finished run (e.g. a fine-tuned teacher), final checkpoint."""
    desc = read_model_desc(run_dir)
    return module_from_desc(desc, dtype=dtype), load_run_params(run_dir, step=step), desc


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
