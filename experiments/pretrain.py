"""The `mlm` recipe: masked-language-model pre-training of a Transformer student.

The encoder (embeddings + layers) it produces has the same parameter paths as the classifier,
so a later run starts from it with `--config.init_from=<this workdir>`.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from experiments import runs
from experiments.train import make_parallel, make_tokenizer, run_loop
from tkd_jax import data as data_lib
from tkd_jax.data.examples import Split
from tkd_jax.errors import DataError
from tkd_jax.models import count_params, get_config
from tkd_jax.models.mlm import TransformerForMaskedLM
from tkd_jax.train import mlm as mlm_lib
from tkd_jax.train import parallel
from tkd_jax.train import state as state_lib
from tkd_jax.train.reporting import write_json


def _sentences(split: Split) -> list[str]:
    return [t for t in list(split.text_a) + list(split.text_b or []) if t.strip()]


def _as_split(texts: list[str], name: str) -> Split:
    n = len(texts)
    return Split(text_a=texts, text_b=None, label=np.zeros(n, np.int32),
                 idx=np.arange(n, dtype=np.int32), name=name)


def _read_text_file(path: str) -> list[str]:
    try:
        lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"config.mlm.text_file={path}: cannot read ({type(e).__name__})") from None
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise DataError(f"config.mlm.text_file={path}: no non-empty line")
    return texts


def pretrain_mlm(config, workdir, *, task: str, data_dir=None, teacher=None, hooks=()):
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dp = make_parallel(config)
    spec = data_lib.get_task(task)
    task_data = data_lib.load_task(spec.name, source=config.data_source, data_dir=data_dir)
    files = dict(task_data.files)
    if config.mlm.text_file:
        train_texts = _read_text_file(config.mlm.text_file)
        files[config.mlm.text_file] = "text file"
    else:
        train_texts = _sentences(task_data.splits["train"])
    dev_texts = _sentences(task_data.splits[spec.eval_splits[0]])
    if config.max_train_examples > 0:
        train_texts = train_texts[: config.max_train_examples]
    if config.max_eval_examples > 0:
        dev_texts = dev_texts[: config.max_eval_examples]
    train, dev = _as_split(train_texts, "train"), _as_split(dev_texts, "dev")
    tokenizer = make_tokenizer(config, train, teacher=teacher, workdir=workdir)
    tokenizer.save(str(workdir / "tokenizer.json"))
    enc_train = data_lib.encode_split(tokenizer, train, max_len=config.max_len)
    enc_dev = data_lib.encode_split(tokenizer, dev, max_len=config.max_len)
    buckets = data_lib.bucket_lengths(config.max_len)
    batcher = data_lib.TrainBatcher(
        enc_train, batch_size=config.batch_size, seed=config.seed, buckets=buckets,
        process_index=jax.process_index(), process_count=jax.process_count())

    overrides = {"dropout_rate": config.dropout_rate} if config.dropout_rate >= 0 else {}
    mcfg = get_config(config.model, vocab_size=tokenizer.get_vocab_size(), num_labels=0,
                      dtype=state_lib.compute_dtype(config.precision), **overrides)
    model = TransformerForMaskedLM(mcfg)
    ids = np.zeros((1, 8), np.int32)
    params = model.init(jax.random.PRNGKey(config.seed), ids, np.ones_like(ids))["params"]
    desc = {"name": "mlm", "transformer_config": runs.transformer_config_to_dict(
        mcfg.replace(dtype=np.float32))}
    runs.save_model_desc(workdir, desc)
    mspec = mlm_lib.MLMSpec.from_tokenizer(
        tokenizer, mask_prob=config.mlm.mask_prob,
        first_regular_id=min(config.mlm.first_regular_id, tokenizer.get_vocab_size() - 1)
        if config.tokenizer == "teacher" else 5,
        fp16=config.precision == "fp16",
        axis_name=parallel.PMAP_AXIS if config.parallel == "pmap" else None)
    eval_spec = mlm_lib.MLMSpec(**{**mspec.__dict__, "axis_name": None, "fp16": False})
    eval_step = dp.compile_eval(mlm_lib.mlm_eval_step, spec=eval_spec, model=model)

    def evaluate(state):
        p = dp.put_eval_params(state.params)
        total = None
        for b in data_lib.eval_batches(enc_dev, batch_size=config.eval_batch_size,
                                       buckets=buckets):
            total = mlm_lib.add_mlm_stats(total, eval_step(p, dp.put_eval_batch(b)))
        m = mlm_lib.finalize_mlm(total)
        return {"dev": m, "main": m["mlm_accuracy"]}

    result, final, timing = run_loop(
        config, workdir, dp=dp, model=model, params={"model": params},
        train_step=dp.compile_train(mlm_lib.mlm_train_step, spec=mspec, model=model),
        evaluate=evaluate, main_metric="mlm_accuracy", batcher=batcher, hooks=hooks,
        manifest=dict(task=spec.name, recipe="mlm", data_files=files, extra={
            "num_params": count_params(params), "model": desc,
            "num_train_texts": len(train_texts), "num_dev_texts": len(dev_texts)}))
    if result.interrupted:
        return {}
    out = {"task": spec.name, "recipe": "mlm", "seed": config.seed, "split": "dev",
           "metrics": final["dev"], "num_params": count_params(params),
           "train_seconds": timing["train_seconds"],
           "train_examples_per_second":
               timing["train_examples"] / max(timing["train_seconds"], 1e-9),
           "steps": result.step}
    if jax.process_index() == 0:
        write_json(workdir / "final_metrics.json", out)
    return out
