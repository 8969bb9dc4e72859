"""The compression methods of the study, by name: a finished model in, a compressed one out.

Each method is ``fn(ctx) -> Product``: the (possibly smaller) config, its float params, the
runtime that runs it (``runtime.py``), how each tensor is stored (``storage.py``) and what
producing it cost. Methods that change weights recover by fine-tuning on the task's training
split with distillation from the uncompressed model (``finetune.py``) when
``ctx.finetune_epochs > 0``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tkd_jax import data as data_lib
from tkd_jax.compress import activation_norms, int8, magnitude, qat, structured
from tkd_jax.compress import finetune as finetune_lib
from tkd_jax.errors import ConfigError
from tkd_jax.models.transformer import Transformer, TransformerConfig

# The recovery's weight of the uncompressed model's soft labels (eq 9) unless asked otherwise:
# every committed study before --alpha existed used it, and their files' settings omit it.
DEFAULT_ALPHA = 0.5


@dataclasses.dataclass
class Context:
    """What every method may use. ``encoded_train`` is the run's training split;
    ``recovery_train``, when given, what recovery fine-tuning trains on instead (e.g. train
    plus augmented views of it); head importance always reads ``encoded_train``."""

    module: Transformer
    params: dict
    spec: Any  # tkd_jax.data TaskSpec
    encoded_train: Any
    recovery_train: Any = None
    finetune_epochs: int = 2
    learning_rate: float = 5e-5
    batch_size: int = 32
    sparsity: float = 0.5
    scope: str = "global"
    head_fraction: float = 0.5
    ffn_fraction: float = 0.5
    percentile: float = 100.0
    importance_examples: int = 512
    alpha: float = DEFAULT_ALPHA  # recovery: weight of the uncompressed model's soft labels
    feature_weight: float = 0.0  # recovery: + hidden-state MSE to the uncompressed model
    seed: int = 0
    log: Callable = print
    cache: dict = dataclasses.field(default_factory=dict)

    @property
    def recovery_data(self):
        return self.encoded_train if self.recovery_train is None else self.recovery_train


@dataclasses.dataclass
class Product:
    config: TransformerConfig
    params: dict
    runtime: str  # a runtime.RUNTIMES name
    encoding: Callable  # (path tuple, array) -> storage encoding
    info: dict


def f32_encoding(path, w):
    return "f32"


def bf16_encoding(path, w):
    return "bf16" if int8.channel_axis(path, w) is not None else "f32"


def int8_encoding(path, w):
    return "int8" if int8.channel_axis(path, w) is not None else "f32"


def bitmask_encoding(path, w):
    return "bitmask" if magnitude.is_prunable(path) else "f32"


def _finetune(ctx: Context, module, params, **kw):
    if ctx.finetune_epochs <= 0:
        return params, {"finetune_epochs": 0, "finetune_seconds": 0.0}
    out, stats = finetune_lib.finetune(
        module, params, ctx.recovery_data, num_labels=ctx.spec.num_labels,
        regression=ctx.spec.is_regression, teacher=(ctx.module, ctx.params),
        epochs=ctx.finetune_epochs, learning_rate=ctx.learning_rate,
        batch_size=ctx.batch_size, seed=ctx.seed, alpha=ctx.alpha,
        feature_weight=ctx.feature_weight, log=ctx.log, **kw)
    teacher = f"the uncompressed model (online soft labels, alpha {ctx.alpha:g}, T 1"
    teacher += f"; hidden-state MSE x {ctx.feature_weight})" if ctx.feature_weight else ")"
    return out, {"finetune_epochs": ctx.finetune_epochs, "finetune_steps": stats["steps"],
                 "finetune_seconds": stats["seconds"], "finetune_final_loss": stats["final_loss"],
                 "finetune_teacher": teacher, "finetune_examples": len(ctx.recovery_data),
                 "finetune_learning_rate": ctx.learning_rate}


def fp32(ctx):
    return Product(ctx.module.config, ctx.params, "fp32", f32_encoding, {})


def bf16(ctx):
    return Product(ctx.module.config, ctx.params, "bf16", bf16_encoding, {})


def int8_weight(ctx):
    return Product(ctx.module.config, ctx.params, "fp32", int8_encoding,
                   {"note": "int8 on disk, dequantized to fp32 at load",
                    "percentile": ctx.percentile})


def int8_weight_bf16(ctx):
    # The size of int8 weight-only with the speed of the bf16 runtime: on a CPU with bf16 dot
    # instructions but a slow int8 dot (XLA:CPU on AVX-512 VNNI without AMX gains 1.24x from
    # int8 and 1.8x from bf16 operands, results/bench) this is the small *and* fast form.
    return Product(ctx.module.config, ctx.params, "bf16", int8_encoding,
                   {"note": "int8 on disk, dequantized at load; Dense kernels run as bf16",
                    "percentile": ctx.percentile})


def int8_dynamic(ctx):
    return Product(ctx.module.config, ctx.params, "int8_dynamic", int8_encoding,
                   {"percentile": ctx.percentile})


def _magnitude(ctx, finetune: bool, scales: dict | None = None):
    info = {"sparsity_target": ctx.sparsity, "scope": ctx.scope}
    if finetune and ctx.finetune_epochs > 0:
        steps = math.ceil(len(ctx.recovery_data) / ctx.batch_size) * ctx.finetune_epochs
        sched = {"final_sparsity": ctx.sparsity, "begin": 0, "end": steps // 2,
                 "frequency": max(1, steps // 20), "scope": ctx.scope}
        params, ft = _finetune(ctx, ctx.module, ctx.params, prune={**sched, "scales": scales})
        info.update(ft, schedule={k: v for k, v in sched.items() if k != "final_sparsity"})
    else:
        masks = magnitude.magnitude_masks(ctx.params, ctx.sparsity, scope=ctx.scope,
                                          scales=scales)
        params = magnitude.apply_masks(ctx.params, masks)
    info["sparsity"] = magnitude.sparsity_of(params)
    return Product(ctx.module.config, params, "fp32", bitmask_encoding, info)


def magnitude_oneshot(ctx):
    return _magnitude(ctx, finetune=False)


def magnitude_finetuned(ctx):
    return _magnitude(ctx, finetune=True)


def _wanda(ctx, finetune: bool):
    """Magnitude pruning scored by |w| x the input feature's activation norm (Wanda)."""
    t = time.perf_counter()
    batches = _calibration_batches(ctx)
    norms = activation_norms.input_norms(ctx.module, ctx.params, batches)
    seconds = time.perf_counter() - t
    product = _magnitude(ctx, finetune, scales=norms)
    product.info.update(criterion="|w| x input-activation L2 norm (Wanda)",
                        calibration_examples=sum(len(b["input_ids"]) for b in batches),
                        calibration_seconds=seconds)
    return product


def wanda_oneshot(ctx):
    return _wanda(ctx, finetune=False)


def wanda_finetuned(ctx):
    return _wanda(ctx, finetune=True)


def _calibration_batches(ctx: Context) -> list[dict]:
    """The first ``ctx.importance_examples`` rows of train in ``ctx.seed``'s batch order, in
    batches of ``ctx.batch_size`` padded to 128 (one compiled shape)."""
    batches = []
    n = min(ctx.importance_examples, len(ctx.encoded_train))
    batcher = data_lib.TrainBatcher(ctx.encoded_train, batch_size=ctx.batch_size,
                                    seed=ctx.seed, buckets=(128,))
    for batch in batcher.epoch(0):
        if len(batches) * ctx.batch_size >= n:
            break
        batches.append({k: v for k, v in batch.items() if k != "index"})
    return batches


def _structured(ctx: Context, finetune: bool) -> Product:
    key = RECOVERED_STRUCTURED if finetune else ("structured", False)
    if key in ctx.cache:
        return ctx.cache[key]
    cfg = ctx.module.config
    t = time.perf_counter()
    batches = _calibration_batches(ctx)
    n = min(ctx.importance_examples, len(ctx.encoded_train))
    heads = structured.head_importance(ctx.module, ctx.params, batches,
                                       regression=ctx.spec.is_regression)
    keep_heads = structured.keep_top(heads, ctx.head_fraction, "heads")
    keep_ffn = structured.keep_top(structured.ffn_importance(ctx.params, cfg.num_layers),
                                   ctx.ffn_fraction, "FFN neurons")
    small_cfg, small = structured.prune(cfg, ctx.params, keep_heads, keep_ffn)
    info = {"importance_seconds": time.perf_counter() - t, "importance_examples": n,
            "layer_num_heads": list(small_cfg.layer_num_heads),
            "layer_intermediate_sizes": list(small_cfg.layer_intermediate_sizes),
            "kept_heads": [k.tolist() for k in keep_heads]}
    if finetune:
        small, ft = _finetune(ctx, Transformer(small_cfg), small)
        info.update(ft)
    ctx.cache[key] = Product(small_cfg, small, "fp32", f32_encoding, info)
    return ctx.cache[key]


def structured_oneshot(ctx):
    return _structured(ctx, finetune=False)


def structured_finetuned(ctx):
    return _structured(ctx, finetune=True)


def structured_int8_dynamic(ctx):
    p = _structured(ctx, finetune=True)
    return Product(p.config, p.params, "int8_dynamic", int8_encoding, dict(p.info))


def structured_bf16(ctx):
    p = _structured(ctx, finetune=True)
    return Product(p.config, p.params, "bf16", bf16_encoding, dict(p.info))


def qat_int8(ctx):
    if ctx.finetune_epochs <= 0:
        raise ConfigError("method qat_int8 trains: needs --finetune EPOCHS > 0")
    module = ctx.module
    params, info = _finetune(ctx, module, ctx.params, train_module=qat.qat_module(module, "int8"))
    return Product(module.config, params, "int8_dynamic", int8_encoding, info)


METHODS: dict[str, Callable[[Context], Product]] = {
    "fp32": fp32,
    "bf16": bf16,
    "int8_weight": int8_weight,
    "int8_weight_bf16": int8_weight_bf16,
    "int8_dynamic": int8_dynamic,
    "magnitude_oneshot": magnitude_oneshot,
    "magnitude": magnitude_finetuned,
    "wanda_oneshot": wanda_oneshot,
    "wanda": wanda_finetuned,
    "structured_oneshot": structured_oneshot,
    "structured": structured_finetuned,
    "structured_int8_dynamic": structured_int8_dynamic,
    "structured_bf16": structured_bf16,
    "qat_int8": qat_int8,
}
FINETUNED = ("magnitude", "wanda", "structured", "structured_int8_dynamic", "structured_bf16",
             "qat_int8")
# Unstructured pruning: these take --sparsity and --scope and are stored as values + bitmask.
UNSTRUCTURED = ("magnitude_oneshot", "magnitude", "wanda_oneshot", "wanda")
# Methods whose result depends on the seed's batches of train (calibration or recovery).
SEEDED = FINETUNED + ("wanda_oneshot", "structured_oneshot")
# Methods that only re-encode the recovered structured model: their production cost is
# structured's, counted there. RECOVERED_STRUCTURED is that model's key in ``Context.cache``.
ON_STRUCTURED = ("structured_int8_dynamic", "structured_bf16")
RECOVERED_STRUCTURED = ("structured", True)


def check_methods(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ConfigError(f"--method {','.join(unknown) or '(none)'}: expected a comma-separated "
                          f"list of {list(METHODS)}")
    return names


def count_params(params) -> int:
    import jax

    return int(sum(np.asarray(x).size for x in jax.tree.leaves(params)))
