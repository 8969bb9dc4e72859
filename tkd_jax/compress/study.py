"""The compression study of one finished run: every method's model, evaluated and timed.

``compress_run(run_dir, methods=[...])`` writes each method's compressed model
(``methods.METHODS``) as safetensors under ``<run_dir>/compressed/``, or reuses the file an
earlier call wrote with identical settings; loads every model back from its file and
evaluates it on the dev split; then times all methods interleaved in this process (latency
at batch 1 x ``seq``, throughput at batch 32 x ``seq``, the fp32 model as baseline). It
returns one record per method, the rows of ``results.json`` (``report.write`` writes them
with the table, plots and manifest).
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from tkd_jax.compress import measure, run_io, runtime, storage
from tkd_jax.compress import methods as methods_lib
from tkd_jax.models.transformer import Transformer
from tkd_jax.train import reporting

DEFAULT_METHODS = ("fp32", "bf16", "int8_weight", "int8_weight_bf16", "int8_dynamic",
                   "magnitude_oneshot", "magnitude", "structured_oneshot", "structured",
                   "structured_int8_dynamic", "structured_bf16", "qat_int8")


def settings_of(method: str, *, percentile, sparsity, scope, head_fraction, ffn_fraction,
                finetune, learning_rate, seed=None, alpha=methods_lib.DEFAULT_ALPHA,
                feature_weight=0.0, augment_copies=0) -> dict:
    """The settings a method's file depends on (a file is reused only if they are equal).

    ``seed`` (recovery batches and dropout, head-importance batches) is named only when it
    is not the run's own (None), ``alpha`` only when it is not the default and
    ``feature_weight`` and ``augment_copies`` only when they are used, so files written before
    these options existed stay reusable.
    """
    s = {"method": method, "percentile": percentile}
    if method in methods_lib.UNSTRUCTURED:
        s.update(sparsity=sparsity, scope=scope)
    if method.startswith("structured"):
        s.update(head_fraction=head_fraction, ffn_fraction=ffn_fraction)
    if method in methods_lib.FINETUNED:
        s.update(finetune=finetune, learning_rate=learning_rate)
        if alpha != methods_lib.DEFAULT_ALPHA:
            s.update(alpha=alpha)
        if feature_weight:
            s.update(feature_weight=feature_weight)
        if augment_copies:
            s.update(augment_copies=augment_copies)
    if seed is not None and method in methods_lib.SEEDED:
        s.update(seed=seed)
    return s


def produce(ctx: methods_lib.Context, method: str, settings: dict, workdir: pathlib.Path,
            log: Callable = print) -> dict:
    """Write <workdir>/<method>.safetensors (or reuse it) and return its record."""
    path, record_path = workdir / f"{method}.safetensors", workdir / f"{method}.json"
    record = _written_with(workdir, method, settings)
    if record is not None:
        log(f"{method}: reusing {path}")
        return record
    log(f"{method}: producing")
    _reuse_structured(ctx, method, settings, workdir, log)
    t = time.perf_counter()
    product = methods_lib.METHODS[method](ctx)
    cost = time.perf_counter() - t
    if method in methods_lib.ON_STRUCTURED:  # its pruning and fine-tuning are structured's
        cost = 0.0
    file_bytes = storage.save(path, product.config, product.params, encoding=product.encoding,
                              meta={"method": method, "runtime": product.runtime},
                              percentile=ctx.percentile)
    record = {"method": method, "settings": settings, "runtime": product.runtime,
              "file_bytes": file_bytes, "cost_seconds": cost,
              "num_params": methods_lib.count_params(product.params), "info": product.info,
              "dense_f32_bytes": storage.dense_bytes(product.params)}
    if method in methods_lib.UNSTRUCTURED:
        nz = sum(int(np.count_nonzero(v)) for v in jax.tree.leaves(product.params))
        record["num_nonzero_params"] = nz
    reporting.write_json(record_path, record)
    return record


def _written_with(workdir: pathlib.Path, method: str, settings: dict) -> dict | None:
    """The record of ``method``'s file in ``workdir`` if both exist and it was written with
    ``settings``, else None."""
    path, record_path = workdir / f"{method}.safetensors", workdir / f"{method}.json"
    if not (path.exists() and record_path.exists()):
        return None
    record = json.loads(record_path.read_text())
    return record if record.get("settings") == settings else None


def _reuse_structured(ctx: methods_lib.Context, method: str, settings: dict,
                      workdir: pathlib.Path, log: Callable) -> None:
    """Give a method that re-encodes the recovered structured model (``ON_STRUCTURED``) that
    model from structured's file when it was written with the same settings, instead of
    pruning and fine-tuning again (minutes for a teacher). The file stores f32, so the model
    is the one structured evaluated, bit for bit."""
    key = methods_lib.RECOVERED_STRUCTURED
    if method not in methods_lib.ON_STRUCTURED or key in ctx.cache:
        return
    record = _written_with(workdir, "structured", {**settings, "method": "structured"})
    if record is None:
        return
    path = workdir / "structured.safetensors"
    cfg, params, _ = storage.load(path)
    ctx.cache[key] = methods_lib.Product(cfg, params, "fp32", methods_lib.f32_encoding,
                                         record["info"])
    log(f"{method}: the recovered structured model from {path}")


def compress_run(run_dir, *, methods: Sequence[str] = DEFAULT_METHODS, finetune: int = 2,
                 sparsity: float = 0.5, scope: str = "global", head_fraction: float = 0.5,
                 ffn_fraction: float = 0.5, percentile: float = 100.0,
                 learning_rate: float = 0.0, repeats: int = 40, repeats_b32: int = 10,
                 data_dir: str | None = None, seq: int = 128, seed: int | None = None,
                 alpha: float = methods_lib.DEFAULT_ALPHA, feature_weight: float = 0.0,
                 augment_copies: int = 0, log: Callable = print) -> list[dict]:
    """One record per method (see the module docstring); ``learning_rate`` 0 = the run's.

    ``seed``: the seed of recovery fine-tuning and head importance, None = the run's own. A
    different seed measures how much a method's result owes to its seed; its files go to
    ``<run>/compressed/seed<N>/`` so the run-seed files stay.

    ``finetune`` is the recovery fine-tuning epochs of the methods in ``methods.FINETUNED``;
    ``alpha`` the weight of the uncompressed model's soft labels in it (paper eq 9; 1 - alpha
    on the task labels); ``feature_weight`` > 0 adds hidden-state distillation from the
    uncompressed model to it; ``augment_copies`` > 0 recovers on train plus that many
    word-replacement views of each row (``run_io.load_run_data``), seeded by the recovery seed;
    ``repeats`` / ``repeats_b32`` the timed rounds at batch 1 / 32; ``seq`` the timed
    sequence length.
    """
    names = [m for m in methods.split(",") if m] if isinstance(methods, str) else list(methods)
    names = methods_lib.check_methods(names)
    run_dir = pathlib.Path(run_dir)
    module, params, _ = run_io.load_run(run_dir)
    recovers = finetune > 0 and any(m in methods_lib.FINETUNED for m in names)
    spec, encoded, run_config = run_io.load_run_data(  # views only for a method that recovers
        run_dir, data_dir=data_dir, augment_copies=augment_copies if recovers else 0,
        word_embeddings=params["embeddings"]["word_embeddings"]["embedding"], augment_seed=seed)
    own_seed = int(run_config.seed)
    seed = None if seed == own_seed else seed  # None: the run's own seed and file directory
    workdir = run_dir / "compressed" / (f"seed{seed}" if seed is not None else "")
    workdir.mkdir(parents=True, exist_ok=True)
    # The context (and the fine-tuned models it caches) lives only while the files are made.
    ctx = methods_lib.Context(
        module=module, params=params, spec=spec, encoded_train=encoded["train"],
        recovery_train=encoded.get("train_augmented"),
        finetune_epochs=finetune, learning_rate=learning_rate or float(run_config.learning_rate),
        batch_size=int(run_config.batch_size), sparsity=sparsity, scope=scope,
        head_fraction=head_fraction, ffn_fraction=ffn_fraction, percentile=percentile,
        seed=own_seed if seed is None else seed, alpha=alpha, feature_weight=feature_weight,
        log=log)
    knobs = dict(percentile=percentile, sparsity=sparsity, scope=scope,
                 head_fraction=head_fraction, ffn_fraction=ffn_fraction, finetune=finetune,
                 learning_rate=learning_rate, seed=seed, alpha=alpha,
                 feature_weight=feature_weight, augment_copies=augment_copies)
    records = [produce(ctx, m, settings_of(m, **knobs), workdir, log) for m in names]
    del ctx
    models = evaluate_files(records, workdir, spec, encoded[spec.eval_splits[0]], log=log)
    if "fp32" not in models:  # the speed-up baseline, timed even when not asked for
        models["fp32"] = runtime.make_runtime("fp32", module, params)
    timing = {}
    for key, batch, reps in (("latency_b1", 1, repeats), ("latency_b32", 32, repeats_b32)):
        log(f"timing batch {batch} x {seq}, {reps} interleaved rounds")
        timing[key] = measure.time_interleaved(models, batch=batch, seq=seq, repeats=reps,
                                               baseline="fp32")
    base = next((r for r in records if r["method"] == "fp32"), None)
    base_bytes = base["file_bytes"] if base else storage.dense_bytes(params)
    base_kernel = (base["kernel_bytes"] if base else 0) or sum(
        np.asarray(v).nbytes for k, v in _flat(params).items() if k.endswith("/kernel"))
    for rec in records:
        rec["latency_b1"] = timing["latency_b1"][rec["method"]]
        rec["latency_b32"] = timing["latency_b32"][rec["method"]]
        rec["size_ratio"] = base_bytes / rec["file_bytes"]
        rec["kernel_ratio"] = base_kernel / max(rec["kernel_bytes"], 1)
        if "num_nonzero_params" in rec:
            rec["stored_nonzero_note"] = (f"values + bitmask; dense fp32 "
                                          f"{rec['dense_f32_bytes'] / 2**20:.1f} MiB")
    return records


def evaluate_files(records: list[dict], workdir: pathlib.Path, spec, dev,
                   log: Callable = print) -> dict:
    """Add "dev" metrics (of ``dev``, the run's evaluation split: dev, or its held-out slice
    of train, named in "eval_split") and "kernel_bytes" to each record, from its saved file
    alone.

    Returns {method: (jitted apply, runtime params)} for timing.
    """
    models = {}
    for rec in records:
        path = workdir / f"{rec['method']}.safetensors"
        cfg, loaded, _ = storage.load(path)
        apply, rparams = runtime.make_runtime(rec["runtime"], Transformer(cfg), loaded)
        apply = jax.jit(apply)
        rec["dev"] = run_io.evaluate(apply, rparams, spec, dev)
        rec["eval_split"] = spec.eval_splits[0]
        stored = storage.stored_bytes(path)
        rec["kernel_bytes"] = sum(v for k, v in stored.items() if k.endswith("/kernel"))
        models[rec["method"]] = (apply, rparams)
        score = rec["dev"][spec.main_metric]
        log(f"{rec['method']}: {spec.eval_splits[0]} {spec.main_metric} {score:.4f}, "
            f"file {rec['file_bytes']:,} B")
    return models


def _flat(params):
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}
