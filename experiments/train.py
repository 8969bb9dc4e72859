"""`train_and_evaluate(config, workdir, ...)`: wires the config to the library and runs.

This is the only place that reads the config; everything below it takes explicit arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import jax
import numpy as np

from experiments import distill as distill_setup
from experiments import runs
from tkd_jax import data as data_lib
from tkd_jax import metrics as metrics_lib
from tkd_jax.data.neighbors import embedding_neighbors
from tkd_jax.errors import ConfigError
from tkd_jax.models import count_params
from tkd_jax.models.hf_import import load_hf_bert
from tkd_jax.models.teacher import resolve_teacher
from tkd_jax.train import checkpoint as ckpt_lib
from tkd_jax.train import loop as loop_lib
from tkd_jax.train import optim, parallel, reporting, steps
from tkd_jax.train import state as state_lib

# Keys of final_metrics.json["metrics"] (DESIGN section 5), those that apply to the task.
REPORTED = ("accuracy", "f1", "precision", "recall", "mcc", "pearson", "spearman",
            "glue_score", "f1_macro", "loss")


# ----------------------------------------------------------------------------------- data
def load_data(config, *, task: str, data_dir: str | None, teacher: str | None,
              workdir: pathlib.Path | None):
    """Task spec, preprocessed splits, tokenizer and encoded splits."""
    spec = data_lib.get_task(task)
    task_data = data_lib.load_task(spec.name, source=config.data_source, data_dir=data_dir)
    if "train" not in task_data.splits:
        raise ConfigError(f"task {spec.name}: no training split found in the data source")
    pcfg = data_lib.PreprocessConfig(**config.preprocess.to_dict(), seed=config.seed)
    splits, reports = {}, {}
    for name in ("train", *spec.eval_splits):
        if name not in task_data.splits:
            raise ConfigError(f"task {spec.name}: split {name!r} not found in the data source")
        split = task_data.splits[name]
        limit = config.max_train_examples if name == "train" else config.max_eval_examples
        if limit > 0:
            split = split.take(limit)
        if name == "train" and "replace" in pcfg.augment:
            pcfg = dataclasses.replace(pcfg, neighbors=replacement_table(
                split, teacher=teacher, k=pcfg.augment_neighbors))
        splits[name], reports[name] = data_lib.preprocess(split, pcfg, is_train=name == "train")
    tokenizer = make_tokenizer(config, splits["train"], teacher=teacher, workdir=workdir)
    encoded = {n: data_lib.encode_split(tokenizer, s, max_len=config.max_len)
               for n, s in splits.items()}
    return spec, task_data, splits, reports, tokenizer, encoded


def replacement_table(split, *, teacher, k: int):
    """Neighbours of the split's words in the pretrained teacher's word-embedding space."""
    path = resolve_teacher(teacher)
    vocab_ids = data_lib.load_wordpiece(path).get_vocab()
    vocab = sorted(vocab_ids, key=vocab_ids.get)  # token of id i at position i
    params = load_hf_bert(path, num_labels=0)[1]
    table = params["embeddings"]["word_embeddings"]["embedding"]
    words = {w for texts in (split.text_a, split.text_b or ()) for t in texts for w in t.split()}
    return embedding_neighbors(vocab, np.asarray(table), words, k=k)


def make_tokenizer(config, train_split, *, teacher, workdir):
    if config.tokenizer == "teacher":
        return data_lib.load_wordpiece(resolve_teacher(teacher))
    if config.tokenizer != "trained":
        raise ConfigError(f"config.tokenizer: expected 'teacher' or 'trained', "
                          f"got {config.tokenizer!r}")
    saved = workdir / "tokenizer.json" if workdir else None
    if saved is not None and saved.exists():  # resume: the vocabulary saved with the run
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(saved))
    texts = list(train_split.text_a) + list(train_split.text_b or [])
    tok = data_lib.train_wordpiece(texts, vocab_size=config.vocab_size)
    if saved is not None:
        tok.save(str(saved))
    return tok


def inspect(config, *, task, data_dir, teacher) -> str:
    spec, task_data, splits, reports, tokenizer, _ = load_data(
        config, task=task, data_dir=data_dir, teacher=teacher, workdir=None)
    report = data_lib.inspect_data(task_data, tokenizer, max_len=config.max_len,
                                   batch_size=config.batch_size,
                                   buckets=data_lib.bucket_lengths(config.max_len))
    report["preprocess"] = reports
    return data_lib.format_report(report)


# ----------------------------------------------------------------------------------- eval
def make_evaluator(spec, encoded, *, dp, eval_step, batch_size, buckets):
    """evaluate(params) -> {"main": float, "<split>": metrics dict} over every dev split."""

    def run_split(params, enc):
        total, preds, labels = None, [], []
        for batch in data_lib.eval_batches(enc, batch_size=batch_size, buckets=buckets):
            out = jax.device_get(eval_step(params, dp.put_eval_batch(batch)))
            keep = batch["weight"] > 0
            preds.append(np.asarray(out.pop("predictions"))[keep])
            labels.append(batch["label"][keep])
            total = out if total is None else jax.tree.map(np.add, total, out)
        preds, labels = np.concatenate(preds), np.concatenate(labels)
        if spec.is_regression:
            m = metrics_lib.compute_regression_metrics(preds, labels)
        else:
            m = metrics_lib.compute_classification_metrics(
                np.asarray(total["confusion"]), spec.num_labels)
            m["loss"] = float(total["loss_sum"]) / max(float(total["count"]), 1.0)
        m["glue_score"] = metrics_lib.glue_score(spec.name, m)
        return m

    def evaluate(state):
        params = dp.put_eval_params(state.params)
        out = {name: run_split(params, encoded[name]) for name in spec.eval_splits}
        out["main"] = float(out[spec.eval_splits[0]][spec.main_metric])
        return out

    return evaluate


def flatten_eval(result: dict) -> dict:
    flat = {"main": result["main"]}
    for split, m in result.items():
        if isinstance(m, dict):
            flat.update({f"{split}/{k}": v for k, v in m.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)})
    return flat


# ----------------------------------------------------------------------------------- main
_NOT_COMPUTATION = ("log_every_steps", "progress_bar", "async_checkpoints", "keep_checkpoints",
                    "checkpoint_every_steps")


def computation_config(config) -> dict:
    """Flat {dotted key: value} of everything that changes the computation."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif k not in _NOT_COMPUTATION:
                yield f"{prefix}{k}", v
    return dict(flat(config.to_dict()))


def config_fingerprint(config) -> str:
    """Hash of everything that changes the computation (not logging/checkpoint cadence)."""
    return hashlib.sha256(json.dumps(computation_config(config), sort_keys=True)
                          .encode()).hexdigest()[:16]


def check_resumable(meta: dict, config, workdir) -> None:
    """A checkpoint resumes only under the config that wrote it. Keys added to the config since
    (absent from the checkpoint) do not block a resume; any changed value does."""
    saved, now = meta.get("config"), computation_config(config)
    if saved is None:  # written before configs were stored: compare fingerprints
        if meta.get("config_fingerprint") == config_fingerprint(config):
            return
        changed = ["(fingerprint)"]
    else:
        changed = [k for k in saved if k in now and saved[k] != now[k]]
    if changed:
        raise ConfigError(f"{workdir}: holds checkpoints of a different config "
                          f"({', '.join(changed[:3])} changed); use a new --workdir or the "
                          "original command")


def make_parallel(config) -> parallel.DataParallel:
    parallel.maybe_initialize_distributed()
    if config.precision not in state_lib.PRECISIONS:
        raise ConfigError(f"config.precision: expected one of {sorted(state_lib.PRECISIONS)}, "
                          f"got {config.precision!r}")
    dp = parallel.DataParallel(config.parallel, config.num_devices)
    dp.check_batch_size(config.batch_size)
    dp.check_batch_size(config.eval_batch_size, "config.eval_batch_size")
    if config.batch_size % jax.process_count():
        raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by the "
                          f"{jax.process_count()} processes")
    return dp


def run_loop(config, workdir: pathlib.Path, *, dp, model, params, train_step, evaluate,
             main_metric, batcher, batch_transform=None, teacher_params=(), hooks=(),
             manifest: dict):
    """Optimizer, state, resume, manifest and the train loop shared by every recipe.

    Returns (FitResult, last eval result, timing {"train_seconds", "train_examples"}).
    """
    steps_per_epoch = batcher.steps_per_epoch
    total_steps = (config.num_train_steps if config.num_train_steps > 0
                   else config.num_epochs * steps_per_epoch)
    updates = max(total_steps // config.grad_accum_steps, 1)
    tx, lr_schedule = optim.make_optimizer(
        learning_rate=config.learning_rate, total_steps=updates,
        warmup_steps=int(config.warmup_ratio * updates), schedule=config.schedule,
        weight_decay=config.weight_decay, b1=config.adam_b1, b2=config.adam_b2,
        eps=config.adam_eps, grad_clip_norm=config.grad_clip_norm,
        grad_accum_steps=config.grad_accum_steps)
    state = state_lib.create_train_state(
        apply_fn=model.apply, params=params, tx=tx, precision=config.precision,
        rng=jax.random.fold_in(jax.random.PRNGKey(config.seed), 1),
        loss_scale=config.loss_scale,
        loss_scale_growth_interval=config.loss_scale_growth_interval)

    fingerprint = config_fingerprint(config)
    checkpointer = ckpt_lib.Checkpointer(
        workdir / "checkpoints", keep=config.keep_checkpoints, best_metric=main_metric,
        async_save=config.async_checkpoints)
    start_step, last_eval, prior = 0, None, {}
    restored = checkpointer.restore(state)
    if restored is not None:
        state, meta = restored
        check_resumable(meta, config, workdir)
        start_step = int(meta["step"])
        last_eval, prior = meta.get("last_eval"), meta.get("timing", {})
    writer = reporting.MetricWriter(workdir, enabled=jax.process_index() == 0)
    writer.truncate_after(start_step)
    if jax.process_index() == 0:
        extra = {**manifest.get("extra", {}), "steps_per_epoch": steps_per_epoch,
                 "total_steps": total_steps, "config_fingerprint": fingerprint,
                 "resumed_from_step": start_step}
        reporting.write_json(workdir / "manifest.json", reporting.manifest(
            config=config.to_dict(), task=manifest["task"], recipe=manifest["recipe"],
            seed=config.seed, data_files=manifest["data_files"], extra=extra))
    base_rng = dp.put_replicated(np.asarray(state.rng))  # dropout key; saved in the state
    state = dp.put_replicated(state)
    teacher_params = dp.put_replicated(teacher_params) if teacher_params else ()

    def batches_for_epoch(epoch, index):
        it = batcher.epoch(epoch, start_step=index)
        return it if batch_transform is None else map(batch_transform, it)

    last_eval_ref = {"v": last_eval}

    def make_meta(step, seconds, examples):
        epoch, index = divmod(step, steps_per_epoch)
        timing = {"train_seconds": prior.get("train_seconds", 0.0) + seconds,
                  "train_examples": prior.get("train_examples", 0.0) + examples}
        return {"step": step, "epoch": epoch, "step_in_epoch": index,
                "config_fingerprint": fingerprint, "config": computation_config(config),
                "last_eval": last_eval_ref["v"],
                "timing": timing}

    def evaluate_and_remember(s):
        res = evaluate(s)
        last_eval_ref["v"] = res
        return flatten_eval(res) | {"main": res["main"]}

    result = loop_lib.fit(
        state=state, dp=dp, train_step=train_step, batches_for_epoch=batches_for_epoch,
        rng=base_rng, teacher_params=teacher_params,
        schedule=loop_lib.Schedule(total_steps, steps_per_epoch, config.eval_every_steps,
                                   config.checkpoint_every_steps, config.log_every_steps),
        start_step=start_step, evaluate=evaluate_and_remember, main_metric=main_metric,
        checkpointer=checkpointer, writer=writer, make_meta=make_meta,
        fp16=config.precision == "fp16", progress=config.progress_bar, hooks=hooks,
        last_eval=last_eval,
        learning_rate=lambda s: lr_schedule(s // config.grad_accum_steps))
    checkpointer.close()
    writer.close()
    if result.interrupted:
        print(f"SIGTERM: checkpoint saved at step {result.step}; re-run the same command to "
              "resume", flush=True)
    final = last_eval_ref["v"] or (None if result.interrupted else evaluate(result.state))
    timing = {"train_seconds": prior.get("train_seconds", 0.0) + result.train_seconds,
              "train_examples": prior.get("train_examples", 0.0) + result.train_examples}
    return result, final, timing


def train_and_evaluate(config, workdir, *, task: str, recipe: str, data_dir: str | None = None,
                       teacher: str | None = None, hooks=()) -> dict[str, Any]:
    """Train `recipe` on `task`; write the DESIGN contract files into workdir; return final."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dp = make_parallel(config)

    spec, task_data, splits, reports, tokenizer, encoded = load_data(
        config, task=task, data_dir=data_dir, teacher=teacher, workdir=workdir)
    buckets = data_lib.bucket_lengths(config.max_len)
    batcher = data_lib.TrainBatcher(
        encoded["train"], batch_size=config.batch_size, seed=config.seed, buckets=buckets,
        process_index=jax.process_index(), process_count=jax.process_count())

    init_rng, head_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    dtype = state_lib.compute_dtype(config.precision)
    model, model_params, model_desc = runs.build_model(
        config, num_labels=spec.num_labels, vocab_size=tokenizer.get_vocab_size(),
        teacher=teacher, dtype=dtype, rng=init_rng, head_rng=head_rng)
    runs.save_model_desc(workdir, model_desc)
    tokenizer.save(str(workdir / "tokenizer.json"))

    dspec, teachers, teacher_params, soft_cache, projection = None, (), (), None, None
    if config.distill.enabled:
        dspec, teachers, teacher_params, soft_cache, projection = distill_setup.setup(
            config, model=model, model_params=model_params, encoded_train=encoded["train"],
            task_files=task_data.files, dp=dp, buckets=buckets, rng=init_rng)
    params = {"model": model_params}
    if projection:
        params["projection"] = projection

    step_spec = steps.StepSpec(
        regression=spec.is_regression, num_labels=spec.num_labels,
        fp16=config.precision == "fp16",
        axis_name=parallel.PMAP_AXIS if config.parallel == "pmap" else None, distill=dspec)
    eval_spec = steps.StepSpec(regression=spec.is_regression, num_labels=spec.num_labels)
    eval_step = dp.compile_eval(steps.eval_step, spec=eval_spec, model=model)
    evaluate = make_evaluator(spec, encoded, dp=dp, eval_step=eval_step,
                              batch_size=config.eval_batch_size, buckets=buckets)
    transform = None
    if soft_cache is not None:
        transform = lambda b: distill_setup.attach_soft_labels(b, soft_cache)
    result, final, timing = run_loop(
        config, workdir, dp=dp, model=model, params=params,
        train_step=dp.compile_train(steps.train_step, spec=step_spec, model=model,
                                    teachers=teachers),
        evaluate=evaluate, main_metric=spec.main_metric, batcher=batcher,
        batch_transform=transform, teacher_params=teacher_params, hooks=hooks,
        manifest=dict(task=spec.name, recipe=recipe, data_files=task_data.files, extra={
            "preprocess": reports, "num_params": count_params(model_params),
            "model": model_desc}))
    if result.interrupted:
        return {}
    train_seconds, train_examples = timing["train_seconds"], timing["train_examples"]
    main_split = spec.eval_splits[0]
    main_metrics = dict(final[main_split])
    out = {
        "task": spec.name, "recipe": recipe, "seed": config.seed, "split": main_split,
        "metrics": {k: v for k, v in main_metrics.items()
                    if k in REPORTED and v is not None},
        "confusion_matrix": main_metrics.get("confusion_matrix"),
        "num_params": count_params(model_params),
        "train_seconds": train_seconds,
        "train_examples_per_second": train_examples / max(train_seconds, 1e-9),
        "steps": result.step,
    }
    for other in spec.eval_splits[1:]:
        out.setdefault("other_splits", {})[other] = {
            k: v for k, v in final[other].items() if k in REPORTED}
    if jax.process_index() == 0:
        reporting.write_json(workdir / "final_metrics.json", out)
    return out
