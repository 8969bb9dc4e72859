"""Compressed models on disk: one safetensors file that ``tkd_jax`` loads back and runs.

``save(path, config, params, *, encoding, meta)`` writes ``params`` (a nested tree of float
arrays) with every tensor stored in one of these encodings:

- ``f32``: as is;
- ``bf16``: rounded to bfloat16 (2 bytes / value);
- ``int8``: ``NAME.q`` int8 values + ``NAME.scale`` float32 per channel (``int8.py``);
- ``bitmask``: a sparse tensor as ``NAME.values`` (its nonzeros, float32, row-major order)
  + ``NAME.bitmask`` (``np.packbits`` of ``w != 0``, 1 bit / element).

The header's metadata holds the ``TransformerConfig`` (a pruned model's per-layer sizes
included), each tensor's encoding and the caller's ``meta``. ``load(path)`` returns
``(TransformerConfig, float32 params, meta)``. Size on disk is the file size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.flax
from flax import traverse_util

from tkd_jax.compress import int8
from tkd_jax.errors import CheckpointError, ConfigError
from tkd_jax.models.transformer import TransformerConfig

FORMAT = "tkd_jax.compress/1"
ENCODINGS = ("f32", "bf16", "int8", "bitmask")


def config_to_dict(cfg: TransformerConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["dtype"], d["param_dtype"] = jnp.dtype(cfg.dtype).name, jnp.dtype(cfg.param_dtype).name
    return d


def config_from_dict(d: dict) -> TransformerConfig:
    d = dict(d)
    d["dtype"], d["param_dtype"] = jnp.dtype(d["dtype"]), jnp.dtype(d["param_dtype"])
    return TransformerConfig(**d)


def _encode(name: str, w: np.ndarray, kind: str, percentile: float) -> dict[str, np.ndarray]:
    if kind == "f32":
        return {name: np.asarray(w, np.float32)}
    if kind == "bf16":
        return {name: jnp.asarray(w, jnp.bfloat16)}
    if kind == "int8":
        axis = int8.channel_axis(tuple(name.split("/")), w)
        t = int8.quantize(w, 0 if axis is None else axis, percentile=percentile)
        return {f"{name}.q": t.values, f"{name}.scale": t.scale}
    if kind == "bitmask":
        nz = w != 0
        return {f"{name}.values": np.asarray(w[nz], np.float32),
                f"{name}.bitmask": np.packbits(nz.reshape(-1))}
    raise ConfigError(f"storage encoding {kind!r}: expected one of {list(ENCODINGS)}")


def save(path, config: TransformerConfig, params, *, encoding, meta: dict | None = None,
         percentile: float = 100.0) -> int:
    """Write params with ``encoding(path_tuple, array) -> kind`` per tensor; return bytes."""
    flat = traverse_util.flatten_dict(params)
    tensors, kinds, shapes = {}, {}, {}
    for key, w in flat.items():
        name = "/".join(key)
        w = np.asarray(w, np.float32)
        kinds[name] = encoding(key, w)
        shapes[name] = list(w.shape)
        tensors.update(_encode(name, w, kinds[name], percentile))
    stored = {}
    for name in kinds:
        parts = [v for k, v in tensors.items() if k == name or k.startswith(name + ".")]
        stored[name] = int(sum(np.asarray(v).nbytes for v in parts))
    header = {"format": FORMAT, "transformer_config": json.dumps(config_to_dict(config)),
              "encodings": json.dumps(kinds), "shapes": json.dumps(shapes),
              "stored_bytes": json.dumps(stored),
              "meta": json.dumps(meta or {})}
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    safetensors.flax.save_file({k: jnp.asarray(v) for k, v in tensors.items()}, str(tmp),
                               metadata=header)
    os.replace(tmp, path)
    return path.stat().st_size


def _decode(name, kind, shape, get) -> np.ndarray:
    if kind in ("f32", "bf16"):
        return np.asarray(get(name), np.float32)
    if kind == "int8":
        q = np.asarray(get(f"{name}.q"))
        axis = int8.channel_axis(tuple(name.split("/")), q)
        return int8.Int8Tensor(q, np.asarray(get(f"{name}.scale")),
                               0 if axis is None else axis).dequantize()
    mask = np.unpackbits(np.asarray(get(f"{name}.bitmask")))[: int(np.prod(shape))]
    out = np.zeros(int(np.prod(shape)), np.float32)
    out[mask.astype(bool)] = np.asarray(get(f"{name}.values"))
    return out.reshape(shape)


def load(path) -> tuple[TransformerConfig, dict, dict]:
    """(TransformerConfig, nested float32 params, meta) of a file written by :func:`save`."""
    path = pathlib.Path(path)
    try:
        with safetensors.safe_open(str(path), framework="flax") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a tkd_jax compressed model "
                                      f"(format {header.get('format')!r}, expected {FORMAT})")
            kinds, shapes = json.loads(header["encodings"]), json.loads(header["shapes"])
            flat = {tuple(n.split("/")): _decode(n, k, shapes[n], f.get_tensor)
                    for n, k in kinds.items()}
    except (OSError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot read compressed model ({e})") from None
    cfg = config_from_dict(json.loads(header["transformer_config"]))
    return cfg, traverse_util.unflatten_dict(flat), json.loads(header["meta"])


def stored_bytes(path) -> dict[str, int]:
    """{tensor name: bytes of its stored arrays} of a file written by :func:`save`."""
    with safetensors.safe_open(str(path), framework="flax") as f:
        return json.loads((f.metadata() or {})["stored_bytes"])


def dense_bytes(params, bytes_per_value: int = 4) -> int:
    """Bytes of the parameter values stored densely (no header)."""
    return sum(np.asarray(v).size * bytes_per_value
               for v in traverse_util.flatten_dict(params).values())
