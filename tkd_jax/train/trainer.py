"""``train_and_evaluate(config, workdir)``: one run of any recipe, from data to outputs.

The shape of the google/flax examples (a thin ``main`` -> one ``train_and_evaluate``) with
big_vision's distillation split (teachers outside the train state, one distance function):

    config = tkd_jax.recipe_config("tkd")           # ml_collections ConfigDict
    config.task = "mrpc"; config.distill.teacher_runs = ("runs/mrpc/teacher",)
    final = tkd_jax.train_and_evaluate(config, "runs/mrpc/tkd")

The config is checked once, first (``RunConfig.from_config_dict``: every range, name and
recipe contradiction is a one-line ConfigError before any data is read or anything written);
the recipe decides the model family and the objective; the pretrained teacher checkpoint and
the teacher runs are each located and read once. The workdir receives the DESIGN contract
files: manifest.json, metrics.jsonl, TensorBoard events, model.json, tokenizer.json, orbax
checkpoints/, and at the end final_metrics.json and predictions.json. Re-running the same
config in the same workdir resumes exactly.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import numpy as np

from tkd_jax import data as data_lib
from tkd_jax import hardware
from tkd_jax.config import RunConfig, computation_config, config_fingerprint
from tkd_jax.data.pipeline import load_data, load_mlm_data, train_buckets
from tkd_jax.distill import teachers as teachers_lib
from tkd_jax.errors import ConfigError
from tkd_jax.models import count_params
from tkd_jax.models.teacher import PretrainedCheckpoint
from tkd_jax.train import checkpoint as ckpt_lib
from tkd_jax.train import compile_stats, multihost, optim, parallel, reporting, runs, steps
from tkd_jax.train import loop as loop_lib
from tkd_jax.train import mlm as mlm_lib
from tkd_jax.train import state as state_lib
from tkd_jax.train.console import Console
from tkd_jax.train.evaluate import flatten_eval, make_evaluator
from tkd_jax.train.objectives import MLMObjective, TaskObjective

# Keys of final_metrics.json["metrics"] (DESIGN section 5), those that apply to the task.
REPORTED = ("accuracy", "f1", "precision", "recall", "mcc", "pearson", "spearman",
            "glue_score", "f1_macro", "loss", "mlm_loss", "mlm_accuracy", "perplexity")


def enable_compile_cache(directory: str) -> None:
    """Persistent XLA compilation cache in ``directory`` ("" = off): a repeated run (or a
    resume) loads its compiled steps instead of compiling them again."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        # Every compile, not only those over jax's default 1 s: a run's small eval and
        # soft-label steps add up to seconds of its start-up (measured in results/bench).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def make_parallel(cfg: RunConfig) -> parallel.DataParallel:
    dp = parallel.DataParallel(cfg.parallel, cfg.num_devices, param_layout=cfg.param_layout,
                               model_parallelism=cfg.model_parallelism)
    for key in ("batch_size", "eval_batch_size"):
        multihost.check_batch_divisible(getattr(cfg, key), f"config.{key}")
        dp.check_batch_size(getattr(cfg, key), f"config.{key}")
    return dp


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


def run_loop(cfg: RunConfig, workdir: pathlib.Path, *, dp, model, params, step_spec, evaluate,
             main_metric, batcher, batch_transform=None, frozen=(), hooks=(), manifest: dict,
             console: Console):
    """Optimizer, state, resume, manifest and the train loop shared by every recipe.

    Returns (FitResult, last eval result, timing {"train_seconds", "train_examples"}).
    """
    steps_per_epoch = batcher.steps_per_epoch
    total_steps = (cfg.num_train_steps if cfg.num_train_steps > 0
                   else cfg.num_epochs * steps_per_epoch)
    o = cfg.optim
    updates = max(total_steps // o.grad_accum_steps, 1)
    tx, lr_schedule = optim.make_optimizer(
        learning_rate=o.learning_rate, total_steps=updates,
        warmup_steps=int(o.warmup_ratio * updates), schedule=o.schedule,
        weight_decay=o.weight_decay, b1=o.adam_b1, b2=o.adam_b2, eps=o.adam_eps,
        grad_clip_norm=o.grad_clip_norm, grad_accum_steps=o.grad_accum_steps, prune=cfg.prune)
    state = state_lib.create_train_state(
        apply_fn=model.apply, params=params, tx=tx, precision=cfg.precision,
        rng=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1), loss_scale=cfg.loss_scale,
        loss_scale_growth_interval=cfg.loss_scale_growth_interval)

    fingerprint = config_fingerprint(cfg.raw)
    checkpointer = ckpt_lib.Checkpointer(
        workdir / "checkpoints", keep=cfg.keep_checkpoints, best_metric=main_metric,
        async_save=cfg.async_checkpoints)
    start_step, last_eval, prior = 0, None, {}
    # Restore straight into the layout's global shardings: every process reads its shards (a
    # single-device target may name another host's device), and a sharded state never needs a
    # full copy on one device.
    restored = checkpointer.restore(dp.layout.abstract(state))
    if restored is not None:
        state, meta = restored
        check_resumable(meta, cfg.raw, workdir)
        start_step = int(meta["step"])
        last_eval, prior = meta.get("last_eval"), meta.get("timing", {})
        console.print(f"resuming from step {start_step} of {total_steps}")
    writer = reporting.MetricWriter(workdir, enabled=jax.process_index() == 0)
    writer.truncate_after(start_step)
    if jax.process_index() == 0:
        extra = {**manifest.get("extra", {}), "steps_per_epoch": steps_per_epoch,
                 "total_steps": total_steps, "config_fingerprint": fingerprint,
                 "resumed_from_step": start_step}
        reporting.write_json(workdir / "manifest.json", reporting.manifest(
            config=cfg.raw.to_dict(), task=cfg.task.name, recipe=cfg.recipe.name,
            seed=cfg.seed, data_files=manifest["data_files"], extra=extra))
    base_rng = dp.put_replicated(np.asarray(state.rng))  # dropout key; saved in the state
    state = dp.put_state(state)
    frozen = dp.put_frozen(frozen) if frozen else frozen
    train_step = dp.compile_train(steps.train_step, spec=step_spec, model=model)

    def batches_for_epoch(epoch, index):
        it = batcher.epoch(epoch, start_step=index)
        return it if batch_transform is None else map(batch_transform, it)

    last_eval_ref = {"v": last_eval}

    def make_meta(step, seconds, examples):
        epoch, index = divmod(step, steps_per_epoch)
        timing = {"train_seconds": prior.get("train_seconds", 0.0) + seconds,
                  "train_examples": prior.get("train_examples", 0.0) + examples}
        return {"step": step, "epoch": epoch, "step_in_epoch": index,
                "config_fingerprint": fingerprint, "config": computation_config(cfg.raw),
                "last_eval": last_eval_ref["v"], "timing": timing}

    def evaluate_and_remember(s):
        res = evaluate(s)
        last_eval_ref["v"] = res
        return flatten_eval(res)

    result = loop_lib.fit(
        state=state, dp=dp, train_step=train_step, batches_for_epoch=batches_for_epoch,
        rng=base_rng, frozen=frozen,
        schedule=loop_lib.Schedule(total_steps, steps_per_epoch, cfg.eval_every_steps,
                                   cfg.checkpoint_every_steps, cfg.log_every_steps),
        start_step=start_step, evaluate=evaluate_and_remember, main_metric=main_metric,
        checkpointer=checkpointer, writer=writer, make_meta=make_meta, console=console,
        fp16=cfg.fp16, hooks=hooks, last_eval=last_eval,
        learning_rate=lambda s: lr_schedule(s // o.grad_accum_steps))
    checkpointer.close()
    writer.close()
    if result.interrupted:
        print(f"SIGTERM: checkpoint saved at step {result.step}; re-run the same command to "
              "resume", flush=True)
    final = last_eval_ref["v"]
    if final is None and not result.interrupted:
        final = evaluate(result.state)
    timing = {"train_seconds": prior.get("train_seconds", 0.0) + result.train_seconds,
              "train_examples": prior.get("train_examples", 0.0) + result.train_examples}
    return result, final, timing


# ----------------------------------------------------------------------------- objectives
def _objective(cfg: RunConfig, *, model, teachers, data, dp, buckets, rng):
    """-> (objective, frozen inputs, batch transform | None, extra trainable params)."""
    spec = cfg.task
    if cfg.recipe.objective == "mlm":
        tok = data.tokenizer
        first = (min(cfg.mlm.first_regular_id, tok.get_vocab_size() - 1)
                 if cfg.tokenizer == "teacher" else 5)
        mspec = mlm_lib.MLMSpec.from_tokenizer(tok, mask_prob=cfg.mlm.mask_prob,
                                               first_regular_id=first)
        return MLMObjective(mspec), {}, None, {}
    if cfg.recipe.objective == "labels":
        return TaskObjective(spec.name, spec.is_regression, spec.num_labels), {}, None, {}
    dspec, frozen, cache, projection = teachers_lib.setup(
        cfg.distill, teachers, model=model, encoded_train=data.encoded["train"],
        task_files=data.files, dp=dp, buckets=buckets, rng=rng)
    transform = None
    if cache is not None:
        transform = lambda b: teachers_lib.attach_soft_labels(b, cache)
    objective = TaskObjective(spec.name, spec.is_regression, spec.num_labels, distill=dspec)
    extra = {"projection": projection} if projection else {}
    return objective, frozen, transform, extra


def _teacher_provenance(pretrained: PretrainedCheckpoint, teachers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pretrained.used:
        out["checkpoint_sha256"] = pretrained.fingerprint
    if teachers:
        out.update(teachers[0].provenance)
        out["runs"] = [t.provenance for t in teachers]
    return out


def _start_rows(cfg, *, model_desc, num_params, teachers, pretrained, dp, data, workdir):
    teacher = ", ".join(t.run_dir for t in teachers) if teachers else (
        str(pretrained.path) if cfg.model == "pretrained" else "none")
    sizes = ", ".join(f"{n} {len(e)}" for n, e in data.encoded.items())
    return [("task", cfg.task.name), ("recipe", f"{cfg.recipe.name} ({cfg.recipe.description})"),
            ("model", f"{model_desc['name']}, {num_params:,} parameters"),
            ("teacher", teacher), ("devices", f"{dp.num_devices} x {jax.devices()[0].platform} "
                                              f"({cfg.parallel})"),
            ("precision", _precision_row(cfg.precision, jax.devices()[0].platform)),
            ("examples", sizes), ("workdir", str(workdir))]


def _precision_row(precision: str, platform: str) -> str:
    """The precision, with a warning where it is known to cost time instead of saving it."""
    if precision == "bf16" and platform == "cpu" and hardware.has_bf16_matmul() is False:
        return "bf16 (this CPU has no bf16 matrix instructions: expect it slower than fp32)"
    return precision


# ----------------------------------------------------------------------------- the run
def train_and_evaluate(config, workdir, *, hooks=(), argv: list[str] | None = None
                       ) -> dict[str, Any]:
    """Train ``config.recipe`` on ``config.task``; write the contract files; return the final
    metrics (``{}`` when interrupted by SIGTERM, after saving a checkpoint).

    ``config`` is an ml_collections ConfigDict (``tkd_jax.recipe_config(name)`` plus edits) or
    an already checked RunConfig. ``argv`` (the command line, when there is one) is recorded
    in the manifest.
    """
    parallel.maybe_initialize_distributed()  # before anything touches a device
    cfg = config if isinstance(config, RunConfig) else RunConfig.from_config_dict(config)
    multihost.check_same_config(computation_config(cfg.raw))  # every process, the same run
    enable_compile_cache(cfg.compile_cache_dir)
    compiled_before = compile_stats.snapshot()
    console = Console(quiet=cfg.quiet or jax.process_index() != 0,
                      progress_bar=cfg.progress_bar)
    dp = make_parallel(cfg)
    workdir = pathlib.Path(workdir)
    pretrained = cfg.pretrained
    dtype = state_lib.compute_dtype(cfg.precision)
    needs_runs = cfg.recipe.distils or (cfg.init_from_teacher_layers
                                        and cfg.init_teacher_source == "run")
    run_dirs = cfg.distill.teacher_runs if needs_runs else ()
    for r in run_dirs:
        teachers_lib.check_not_trained_on_holdout(r, task=cfg.task.name,
                                                  holdout_examples=cfg.holdout_examples)
    teachers = [teachers_lib.load_teacher_run(r, dtype=dtype) for r in run_dirs]
    workdir.mkdir(parents=True, exist_ok=True)

    is_mlm = cfg.recipe.objective == "mlm"
    data = (load_mlm_data if is_mlm else load_data)(cfg, pretrained, workdir)
    spec = cfg.task
    buckets = train_buckets(cfg, data.encoded["train"])
    batcher = data_lib.TrainBatcher(
        data.encoded["train"], batch_size=cfg.batch_size, seed=cfg.seed, buckets=buckets,
        process_index=jax.process_index(), process_count=jax.process_count())

    init_rng, head_rng = jax.random.split(jax.random.PRNGKey(cfg.seed))
    vocab = data.tokenizer.get_vocab_size()
    if is_mlm:
        model, model_params, model_desc = runs.build_mlm_model(
            cfg, vocab_size=vocab, dtype=dtype, rng=jax.random.PRNGKey(cfg.seed))
    else:
        model, model_params, model_desc = runs.build_model(
            cfg, num_labels=spec.num_labels, vocab_size=vocab, pretrained=pretrained,
            teacher_runs=teachers, dtype=dtype, rng=init_rng, head_rng=head_rng)
    if multihost.is_primary():  # one writer per run file, also on a shared filesystem
        runs.save_model_desc(workdir, model_desc)
        data.tokenizer.save(str(workdir / "tokenizer.json"))

    objective, frozen, transform, extra_params = _objective(
        cfg, model=model, teachers=teachers, data=data, dp=dp, buckets=buckets, rng=init_rng)
    params = {"model": model_params, **extra_params}
    if cfg.qat != "none":  # same params; the Dense layers train (and evaluate) through int8
        from tkd_jax.compress.qat import qat_module

        model = qat_module(model, cfg.qat)
    eval_splits = ("dev",) if is_mlm else spec.eval_splits
    main_metric = "mlm_accuracy" if is_mlm else spec.main_metric
    eval_step = dp.compile_eval(steps.eval_step, spec=steps.StepSpec(objective), model=model)
    evaluate = make_evaluator(
        objective, data.encoded, splits=eval_splits, main_metric=main_metric, dp=dp,
        eval_step=eval_step, batch_size=cfg.eval_batch_size, buckets=buckets,
        example_ids={n: data.splits[n].idx for n in eval_splits})
    num_params = count_params(model_params)
    console.start(_start_rows(cfg, model_desc=model_desc, num_params=num_params,
                              teachers=teachers, pretrained=pretrained, dp=dp, data=data,
                              workdir=workdir))
    extra = {"preprocess": data.reports, "num_params": num_params, "model": model_desc,
             "teacher": _teacher_provenance(pretrained, teachers)}
    if argv is not None:
        extra["argv"] = list(argv)
    result, final, timing = run_loop(
        cfg, workdir, dp=dp, model=model, params=params,
        step_spec=steps.StepSpec(objective, fp16=cfg.fp16, axis_name=dp.axis_name,
                                 philox=dp.num_devices == 1,
                                 gather_params=dp.layout.gather_tables),
        evaluate=evaluate, main_metric=main_metric, batcher=batcher,
        batch_transform=transform, frozen=frozen, hooks=hooks, console=console,
        manifest=dict(data_files=data.files, extra=extra))
    if result.interrupted:
        return {}
    if not evaluate.predictions and not is_mlm:
        evaluate(result.state)  # resumed after the last eval: recompute the predictions
    out = _final_metrics(cfg, final, eval_splits, num_params, timing, result.step)
    # this invocation's compile work (a resumed run reports only its last process's)
    out["compile"] = compile_stats.since(compiled_before)
    if jax.process_index() == 0:
        if evaluate.predictions:  # first: a finished run is one whose final_metrics.json exists
            reporting.write_json(workdir / "predictions.json", evaluate.predictions)
        reporting.write_json(workdir / "final_metrics.json", out)
    shown = {k: round(v, 4) for k, v in out["metrics"].items() if isinstance(v, float)}
    console.print(f"done: {eval_splits[0]} {shown}")
    console.print(f"outputs: {workdir}/final_metrics.json, metrics.jsonl, checkpoints/")
    return out


def _final_metrics(cfg, final, eval_splits, num_params, timing, steps_done) -> dict:
    train_seconds, train_examples = timing["train_seconds"], timing["train_examples"]
    main = dict(final[eval_splits[0]])
    out = {
        "task": cfg.task.name, "recipe": cfg.recipe.name, "seed": cfg.seed,
        "split": eval_splits[0],
        "metrics": {k: v for k, v in main.items() if k in REPORTED and v is not None},
        "num_params": num_params,
        "train_seconds": train_seconds,
        "train_examples_per_second": train_examples / max(train_seconds, 1e-9),
        "steps": steps_done,
    }
    if main.get("confusion_matrix") is not None:
        out["confusion_matrix"] = main["confusion_matrix"]
    for other in eval_splits[1:]:
        out.setdefault("other_splits", {})[other] = {
            k: v for k, v in final[other].items() if k in REPORTED}
    return out


def inspect(config) -> str:
    """The data report of a config (``--inspect_data``): counts, lengths, padding."""
    from tkd_jax.data.pipeline import inspect as inspect_data

    cfg = config if isinstance(config, RunConfig) else RunConfig.from_config_dict(config)
    return inspect_data(cfg, cfg.pretrained)

