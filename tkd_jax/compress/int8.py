"""Symmetric per-channel int8 quantization of a parameter tree (the size option).

A float tensor ``w`` becomes ``q = clip(round(w / s), -127, 127)`` (int8) and a float32 scale
``s`` per output channel: per column of a Dense kernel ``[in, out]`` (scale ``[out]``) and per
row of an embedding table ``[vocab, hidden]`` (scale ``[vocab]``, one vector per token).
``s = r / 127`` where ``r`` is the channel's absmax, or its ``percentile``-th percentile of
``|w|`` (values beyond it are clipped).

Written here rather than taken from qwix: qwix quantizes only what flows through
dot_general/einsum (not ``nn.Embed`` lookups), has no percentile calibration, and its
``QArray`` is a compute type, not a storage format. Dequantized weights are exactly on the
int8 grid, so qwix's absmax re-quantization for w8a8 (``runtime.py``) recovers the same int8
values.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import traverse_util

from tkd_jax.errors import ConfigError

QMAX = 127  # symmetric: -127..127, so negation is exact and 0 is representable


@dataclasses.dataclass(frozen=True)
class Int8Tensor:
    """``values`` int8 (the tensor's shape) and ``scale`` float32 over ``axis``'s channels."""

    values: np.ndarray
    scale: np.ndarray  # [channels] float32
    axis: int  # the channel axis of ``values`` (kept; the others are reduced)

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        shape = [1] * self.values.ndim
        shape[self.axis] = -1
        return (self.values.astype(np.float32) * self.scale.reshape(shape)).astype(dtype)


def channel_scales(w: np.ndarray, axis: int, *, percentile: float = 100.0) -> np.ndarray:
    """float32 ``[w.shape[axis]]`` scales: per-channel absmax (or percentile of |w|) / 127.

    An all-zero channel gets scale 1 (any scale reproduces zeros exactly).
    """
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"int8 percentile: expected in (0, 100], got {percentile}")
    a = np.abs(np.moveaxis(np.asarray(w, np.float32), axis, 0)).reshape(w.shape[axis], -1)
    r = a.max(axis=1) if percentile == 100.0 else np.percentile(a, percentile, axis=1)
    return np.where(r > 0, r / QMAX, 1.0).astype(np.float32)


def quantize(w: np.ndarray, axis: int, *, percentile: float = 100.0) -> Int8Tensor:
    """Per-channel symmetric int8 of ``w`` with channels along ``axis``."""
    w = np.asarray(w, np.float32)
    scale = channel_scales(w, axis, percentile=percentile)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return Int8Tensor(q, scale, axis % w.ndim)


def channel_axis(path: tuple[str, ...], value: np.ndarray) -> int | None:
    """The channel axis of a parameter quantized by :func:`quantize_tree`, or None (kept float).

    Dense kernels ``[in, out]`` -> axis 1 (per output channel); embedding tables
    ``[rows, hidden]`` -> axis 0 (per row). Biases, LayerNorm and the classifier stay float:
    they are a few KiB and the classifier decides the logits directly.
    """
    if value.ndim != 2 or "classifier" in path:
        return None
    if path[-1] == "kernel":
        return 1
    if path[-1] == "embedding":
        return 0
    return None


def quantize_tree(params, *, percentile: float = 100.0, embeddings: bool = True) -> dict:
    """Flat ``{path: Int8Tensor | np.ndarray}`` of a nested params tree (float leaves kept)."""
    out = {}
    for path, v in traverse_util.flatten_dict(params).items():
        v = np.asarray(v)
        axis = channel_axis(path, v)
        if axis is not None and (embeddings or path[-1] != "embedding"):
            out[path] = quantize(v, axis, percentile=percentile)
        else:
            out[path] = v
    return out


def dequantize_tree(flat: dict, dtype=np.float32) -> dict:
    """Nested float params of a :func:`quantize_tree` result."""
    return traverse_util.unflatten_dict({
        k: v.dequantize(dtype) if isinstance(v, Int8Tensor) else v for k, v in flat.items()})
