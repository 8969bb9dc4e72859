"""A finished training run as compression input: its model, parameters and GLUE data.

``load_run`` and ``model_description`` are the only places that call the training engine's
run loader (``tkd_jax.train.runs``). Data is re-read with the run's own preprocessing settings
(manifest.json) and its saved tokenizer (tokenizer.json), so dev examples are encoded
exactly as the run saw them; training-time augmentation is not repeated for recovery
fine-tuning. ``load_run_data(augment_copies=N)`` adds a recovery set of its own instead: train
plus N replacement-augmented views of each row (TinyBERT-style), for distilling the
uncompressed model's outputs on more inputs than the task's few thousand rows.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import ml_collections
import numpy as np

from tkd_jax import data as data_lib
from tkd_jax import metrics as metrics_lib
from tkd_jax.data.neighbors import split_neighbors
from tkd_jax.errors import CheckpointError
from tkd_jax.models.transformer import Transformer


def load_run(run_dir):
    """(Transformer module, params, model description) of a finished run (fp32)."""
    from tkd_jax.train import runs  # the engine's run loader

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "checkpoints").is_dir() or not any((run_dir / "checkpoints").iterdir()):
        raise CheckpointError(f"{run_dir}: no checkpoint (expected the workdir of a finished "
                              "run with checkpoints/)")
    module, params, desc = runs.load_run(run_dir)
    if not isinstance(module, Transformer):
        raise CheckpointError(f"{run_dir}: model {desc.get('name')!r} is not a Transformer; "
                              "compression supports Transformer runs (teacher, transformer, tkd)")
    return module, params, desc


def model_description(run_dir) -> dict:
    """The run's model.json (preset name, overrides, ...), without loading its checkpoint."""
    from tkd_jax.train import runs  # the engine's run loader

    return runs.read_model_desc(run_dir)


def run_manifest(run_dir) -> dict:
    path = pathlib.Path(run_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read run manifest ({type(e).__name__})") from None


def load_run_data(run_dir, *, data_dir: str | None = None, augment_copies: int = 0,
                  word_embeddings=None, augment_seed: int | None = None):
    """(task spec, encoded splits {"train", dev... or "holdout"}, run config) as the run
    encoded them (a run with ``holdout_examples`` evaluates on its held-out slice of train).

    ``augment_copies`` > 0 adds "train_augmented": train followed by that many views of each
    row with words replaced by their neighbours in ``word_embeddings`` (the run's own
    [vocab, hidden] table, rows in tokenizer-id order; ``data.neighbors``), at the run's
    ``preprocess.augment_replace_prob`` and ``augment_neighbors``, seeded by ``augment_seed``
    (None: the run's seed).
    A view keeps its row's label, so only a recovery that weighs the uncompressed model's soft
    labels alone (alpha 1) is supervised correctly on the views that change meaning.
    """
    from tokenizers import Tokenizer

    run_dir = pathlib.Path(run_dir)
    manifest = run_manifest(run_dir)
    config = ml_collections.ConfigDict(manifest["config"])
    holdout = int(config.get("holdout_examples", 0))
    spec = data_lib.with_holdout(data_lib.get_task(manifest["task"]), holdout)
    pre = {**config.preprocess.to_dict(), "augment": "none"}
    pcfg = data_lib.PreprocessConfig(**pre, seed=int(config.seed))
    tokenizer_path = run_dir / "tokenizer.json"
    if not tokenizer_path.is_file():  # e.g. checkpoints/ copied without the rest of the workdir
        raise CheckpointError(f"{tokenizer_path}: missing (every run writes it when it starts; "
                              "copy it with the run's checkpoints/)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as e:  # tokenizers raises a plain Exception for unreadable files
        raise CheckpointError(f"{tokenizer_path}: cannot read the run's tokenizer "
                              f"({type(e).__name__})") from None
    encoded = {}
    _, raw = data_lib.load_run_splits(spec, source=config.get("data_source", "auto"),
                                      data_dir=data_dir,
                                      max_train_examples=int(config.max_train_examples),
                                      max_eval_examples=int(config.max_eval_examples),
                                      holdout_examples=holdout)
    for name, split in raw.items():
        split, _ = data_lib.preprocess(split, pcfg, is_train=name == "train")
        encoded[name] = data_lib.encode_split(tokenizer, split, max_len=int(config.max_len))
    if augment_copies > 0:
        neighbors = split_neighbors(raw["train"], tokenizer, word_embeddings,
                                    k=pcfg.augment_neighbors)
        acfg = dataclasses.replace(pcfg, augment=("replace",), augment_copies=augment_copies,
                                   neighbors=neighbors,
                                   seed=pcfg.seed if augment_seed is None else augment_seed)
        split, _ = data_lib.preprocess(raw["train"], acfg, is_train=True)
        encoded["train_augmented"] = data_lib.encode_split(tokenizer, split,
                                                           max_len=int(config.max_len))
    return spec, encoded, config


def evaluate(apply, params, spec, encoded_split, *, batch_size: int = 128,
             max_len: int = 128) -> dict:
    """Dev metrics of ``apply(params, ids, mask, types) -> logits`` (already jitted or not).

    Every batch is padded to ``max_len`` (one compiled shape per model; padding is masked, so
    the metrics equal those of length-bucketed batches).
    """
    preds, labels = [], []
    for batch in data_lib.eval_batches(encoded_split, batch_size=batch_size,
                                       buckets=(max_len,)):
        logits = np.asarray(jax.device_get(apply(params, batch["input_ids"],
                                                 batch["attention_mask"],
                                                 batch["token_type_ids"])))
        keep = batch["weight"] > 0
        preds.append(logits[keep])
        labels.append(batch["label"][keep])
    logits, labels = np.concatenate(preds), np.concatenate(labels)
    if spec.is_regression:
        m = metrics_lib.compute_regression_metrics(logits[:, 0], labels)
    else:
        k = spec.num_labels
        confusion = np.zeros((k, k), np.int64)
        np.add.at(confusion, (labels.astype(int), logits.argmax(-1)), 1)
        m = metrics_lib.compute_classification_metrics(confusion, k)
    m["glue_score"] = metrics_lib.glue_score(spec.name, m)
    return m
