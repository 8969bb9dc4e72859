"""Structured pruning: attention heads and FFN neurons, scored and physically removed.

- ``masked_apply(module, params, head_masks, ffn_masks, ...)``: the unpruned model with head
  ``h`` of layer ``i`` scaled by ``head_masks[i][h]`` (its slice of the concatenated heads,
  before W^O) and FFN neuron ``j`` by ``ffn_masks[i][j]`` (after the activation). Method
  interceptors do the scaling, so the Transformer needs no mask inputs.
- ``head_importance``: Michel et al. (2019): I_h = sum over examples |dL/d m_h| at m = 1,
  then each layer's scores divided by their L2 norm.
- ``ffn_importance``: ||W_1[:, j]||_2 * ||W_2[j, :]||_2, the L2 norms of the neuron's input
  column and output row.
- ``prune(config, params, keep_heads, keep_neurons)``: a smaller ``TransformerConfig`` (per-
  layer ``layer_num_heads`` / ``layer_intermediate_sizes``) and its params with the other
  heads' Q/K/V columns and W^O rows, and the other neurons' W_1 columns and W_2 rows, removed.
  The result equals ``masked_apply`` with 0/1 masks up to float error.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tkd_jax import losses
from tkd_jax.errors import ConfigError
from tkd_jax.models import transformer as tfm


def _interceptor(head_masks, ffn_masks):
    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name != "__call__":
            return out
        if isinstance(mod, tfm.SelfAttention) and head_masks is not None:
            context_, probs = out
            b, length, width = context_.shape
            heads = mod.config.heads_of(mod.layer)
            m = head_masks[mod.layer].astype(context_.dtype)
            scaled = context_.reshape(b, length, heads, width // heads) * m[None, None, :, None]
            return scaled.reshape(b, length, width), probs
        if isinstance(mod, tfm.Intermediate) and ffn_masks is not None:
            return out * ffn_masks[mod.layer].astype(out.dtype)
        return out

    return intercept


def masked_apply(module, params, head_masks=None, ffn_masks=None, *args, **kwargs):
    """``module.apply`` with per-layer head masks ``[heads_i]`` / FFN masks ``[d_ff_i]``."""
    with nn.intercept_methods(_interceptor(head_masks, ffn_masks)):
        return module.apply({"params": params}, *args, **kwargs)


def _ones(cfg: tfm.TransformerConfig):
    heads = [jnp.ones(cfg.heads_of(i), jnp.float32) for i in range(cfg.num_layers)]
    ffn = [jnp.ones(cfg.intermediate_of(i), jnp.float32) for i in range(cfg.num_layers)]
    return heads, ffn


def head_importance(module, params, batches, *, regression: bool = False) -> np.ndarray:
    """``[layers, heads]`` float64 Michel et al. scores (per-layer L2-normalised).

    ``batches`` yields dicts with ``input_ids``, ``attention_mask``, ``token_type_ids``,
    ``label`` and ``weight`` (training batches: nothing is selected on dev).
    """
    cfg = module.config
    if cfg.layer_num_heads:
        raise ConfigError("head_importance: the model is already pruned (layer_num_heads set)")

    @jax.jit
    def grads(masks, batch):
        def loss(m):
            out = masked_apply(module, params, m, None, batch["input_ids"],
                               batch["attention_mask"], batch["token_type_ids"])
            w = batch["weight"].astype(jnp.float32)
            if regression:
                return losses.mse(out.logits[:, 0], batch["label"], w) * jnp.sum(w)
            return losses.cross_entropy(out.logits, batch["label"], w) * jnp.sum(w)

        return jax.grad(loss)(masks)

    ones = _ones(cfg)[0]
    total = np.zeros((cfg.num_layers, cfg.num_heads))
    for batch in batches:
        g = grads(ones, batch)
        total += np.abs(np.stack([np.asarray(x) for x in g]))
    norm = np.linalg.norm(total, axis=1, keepdims=True)
    return total / np.where(norm > 0, norm, 1.0)


def ffn_importance(params, num_layers: int) -> np.ndarray:
    """``[layers, d_ff]`` float64: ||W_1[:, j]|| * ||W_2[j, :]|| per neuron j."""
    out = []
    for i in range(num_layers):
        layer = params["encoder"]["layer"][str(i)]
        w1 = np.asarray(layer["intermediate"]["dense"]["kernel"], np.float64)  # [hidden, d_ff]
        w2 = np.asarray(layer["output"]["dense"]["kernel"], np.float64)  # [d_ff, hidden]
        out.append(np.linalg.norm(w1, axis=0) * np.linalg.norm(w2, axis=1))
    return np.stack(out)


def keep_top(scores: np.ndarray, fraction: float, what: str) -> list[np.ndarray]:
    """Per layer, the sorted indices of the ``round((1 - fraction) * n)`` highest scores.

    ``fraction`` is the share removed in every layer; at least one unit per layer stays.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"{what} fraction to prune: expected in [0, 1), got {fraction}")
    n = scores.shape[1]
    keep = int(round((1.0 - fraction) * n))
    if keep < 1:
        raise ConfigError(f"pruning {fraction:.0%} of {n} {what} leaves none in a layer")
    return [np.sort(np.argsort(-s, kind="stable")[:keep]) for s in scores]


def check_counts(cfg: tfm.TransformerConfig, keep_heads, keep_neurons) -> None:
    for i in range(cfg.num_layers):
        h, f = len(keep_heads[i]), len(keep_neurons[i])
        if not 1 <= h <= cfg.heads_of(i):
            raise ConfigError(f"layer {i}: keeping {h} heads; expected 1..{cfg.heads_of(i)} "
                              "(cannot prune more heads than exist)")
        if not 1 <= f <= cfg.intermediate_of(i):
            raise ConfigError(f"layer {i}: keeping {f} FFN neurons; expected "
                              f"1..{cfg.intermediate_of(i)}")


def prune(cfg: tfm.TransformerConfig, params, keep_heads, keep_neurons):
    """(smaller TransformerConfig, its params as NumPy) keeping the listed heads / neurons."""
    if cfg.layer_num_heads or cfg.layer_intermediate_sizes:
        raise ConfigError("prune: the model is already pruned; prune the original run")
    check_counts(cfg, keep_heads, keep_neurons)
    params = jax.tree.map(np.asarray, params)
    d_k = cfg.hidden_size // cfg.num_heads
    layers = dict(params["encoder"]["layer"])
    for i in range(cfg.num_layers):
        layer = jax.tree.map(lambda x: x, layers[str(i)])  # a copy of the nested dicts
        cols = (np.asarray(keep_heads[i])[:, None] * d_k + np.arange(d_k)).reshape(-1)
        att = layer["attention"]
        for name in ("query", "key", "value"):
            att["self"][name] = {"kernel": att["self"][name]["kernel"][:, cols],
                                 "bias": att["self"][name]["bias"][cols]}
        att["output"]["dense"] = {**att["output"]["dense"],
                                  "kernel": att["output"]["dense"]["kernel"][cols]}
        j = np.asarray(keep_neurons[i])
        layer["intermediate"]["dense"] = {"kernel": layer["intermediate"]["dense"]["kernel"][:, j],
                                          "bias": layer["intermediate"]["dense"]["bias"][j]}
        layer["output"]["dense"] = {**layer["output"]["dense"],
                                    "kernel": layer["output"]["dense"]["kernel"][j]}
        layers[str(i)] = layer
    new_params = {**params, "encoder": {**params["encoder"], "layer": layers}}
    new_cfg = cfg.replace(layer_num_heads=tuple(len(h) for h in keep_heads),
                          layer_intermediate_sizes=tuple(len(j) for j in keep_neurons))
    return new_cfg, new_params


def masks_from_keep(cfg: tfm.TransformerConfig, keep_heads, keep_neurons):
    """0/1 float masks equivalent to keeping the listed heads / neurons."""
    heads = [np.isin(np.arange(cfg.heads_of(i)), keep_heads[i]).astype(np.float32)
             for i in range(cfg.num_layers)]
    ffn = [np.isin(np.arange(cfg.intermediate_of(i)), keep_neurons[i]).astype(np.float32)
           for i in range(cfg.num_layers)]
    return heads, ffn
