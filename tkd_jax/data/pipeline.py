"""From a typed run config to encoded splits: source, preprocessing, tokenizer, encoding.

    data = load_data(cfg, pretrained, workdir)      # TaskSplits
    data.encoded["train"], data.encoded["dev"], data.tokenizer, data.files, data.reports

The tokenizer is the pretrained teacher's WordPiece (``tokenizer=teacher``) or one trained on
the training text (``tokenizer=trained``, saved with the run so a resume reads it back). The
masked-LM recipe reads sentences instead (:func:`load_mlm_data`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import numpy as np

from tkd_jax.data.batching import run_bucket_lengths
from tkd_jax.data.examples import Split
from tkd_jax.data.holdout import load_run_splits
from tkd_jax.data.neighbors import split_neighbors
from tkd_jax.data.preprocess import preprocess
from tkd_jax.data.report import format_report, inspect_data
from tkd_jax.data.sources import load_task
from tkd_jax.data.tokenization import encode_split, train_wordpiece
from tkd_jax.errors import DataError


@dataclasses.dataclass
class TaskSplits:
    files: dict[str, str]  # data file -> sha256 (manifest)
    splits: dict[str, Split]  # preprocessed train + eval splits
    reports: dict[str, Any]  # what preprocessing changed, per split
    tokenizer: Any  # tokenizers.Tokenizer
    encoded: dict[str, Any]  # split name -> EncodedSplit
    task_data: Any = None  # the raw TaskData (inspection)


def load_data(cfg, pretrained, workdir: pathlib.Path | None) -> TaskSplits:
    """Task data of ``cfg.task``: preprocessed, tokenized and encoded train and eval splits."""
    spec = cfg.task
    task_data, raw = load_run_splits(spec, source=cfg.data_source, data_dir=cfg.data_dir,
                                     max_train_examples=cfg.max_train_examples,
                                     max_eval_examples=cfg.max_eval_examples,
                                     holdout_examples=cfg.holdout_examples)
    pcfg = cfg.preprocess
    splits, reports = {}, {}
    for name, split in raw.items():
        if name == "train" and "replace" in pcfg.augment:
            pcfg = dataclasses.replace(pcfg, neighbors=replacement_table(
                split, pretrained, k=pcfg.augment_neighbors))
        splits[name], reports[name] = preprocess(split, pcfg, is_train=name == "train")
    tokenizer = make_tokenizer(cfg, splits["train"], pretrained, workdir)
    encoded = {n: encode_split(tokenizer, s, max_len=cfg.max_len) for n, s in splits.items()}
    return TaskSplits(files=dict(task_data.files), splits=splits, reports=reports,
                      tokenizer=tokenizer, encoded=encoded, task_data=task_data)


def replacement_table(split, pretrained, *, k: int):
    """Neighbours of the split's words in the pretrained teacher's word-embedding space."""
    table = pretrained.encoder[1]["embeddings"]["word_embeddings"]["embedding"]
    return split_neighbors(split, pretrained.tokenizer, table, k=k)


def make_tokenizer(cfg, train_split, pretrained, workdir):
    if cfg.tokenizer == "teacher":
        return pretrained.tokenizer
    saved = workdir / "tokenizer.json" if workdir else None
    if saved is not None and saved.exists():  # resume: the vocabulary saved with the run
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(saved))
    texts = list(train_split.text_a) + list(train_split.text_b or [])
    tok = train_wordpiece(texts, vocab_size=cfg.vocab_size)
    if saved is not None and jax.process_index() == 0:
        tok.save(str(saved))
    return tok


def train_buckets(cfg, encoded_train) -> tuple[int, ...]:
    """The run's bucket lengths (``config.bucket_ratio``; 0 = balanced over the training
    lengths for the passes the run makes: num_train_steps, when set, overrides num_epochs)."""
    epochs = (cfg.num_train_steps * cfg.batch_size / max(len(encoded_train), 1)
              if cfg.num_train_steps > 0 else float(cfg.num_epochs))
    return run_bucket_lengths(encoded_train.lengths, cfg.max_len, ratio=cfg.bucket_ratio,
                              batch_size=cfg.batch_size, epochs=epochs)


def inspect(cfg, pretrained) -> str:
    """The data report of ``python -m experiments.glue --inspect_data`` (no training)."""
    data = load_data(cfg, pretrained, None)
    report = inspect_data(data.task_data, data.tokenizer, max_len=cfg.max_len,
                          batch_size=cfg.batch_size,
                          buckets=train_buckets(cfg, data.encoded["train"]))
    report["preprocess"] = data.reports
    return format_report(report)


# ----------------------------------------------------------------------------- masked LM
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


def load_mlm_data(cfg, pretrained, workdir: pathlib.Path | None) -> TaskSplits:
    """Sentences for masked-LM pre-training: the task's training texts (or
    ``cfg.mlm.text_file``, one passage per line) and its first dev split's texts."""
    spec = cfg.task
    task_data = load_task(spec.name, source=cfg.data_source, data_dir=cfg.data_dir)
    files = dict(task_data.files)
    if cfg.mlm.text_file:
        train_texts = _read_text_file(cfg.mlm.text_file)
        files[cfg.mlm.text_file] = "text file"
    else:
        train_texts = _sentences(task_data.splits["train"])
    dev_texts = _sentences(task_data.splits[spec.eval_splits[0]])
    if cfg.max_train_examples > 0:
        train_texts = train_texts[: cfg.max_train_examples]
    if cfg.max_eval_examples > 0:
        dev_texts = dev_texts[: cfg.max_eval_examples]
    splits = {"train": _as_split(train_texts, "train"), "dev": _as_split(dev_texts, "dev")}
    tokenizer = make_tokenizer(cfg, splits["train"], pretrained, workdir)
    encoded = {n: encode_split(tokenizer, s, max_len=cfg.max_len) for n, s in splits.items()}
    reports = {"num_train_texts": len(train_texts), "num_dev_texts": len(dev_texts)}
    return TaskSplits(files=files, splits=splits, reports=reports, tokenizer=tokenizer,
                      encoded=encoded, task_data=task_data)
