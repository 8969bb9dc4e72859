"""GLUE data: task table, three sources, preprocessing, WordPiece tokenization, batches.

Typical use::

    from tkd_jax import data
    task_data = data.load_task("mrpc", data_dir=glue_dir)         # or $GLUE_DIR, or the hub
    tok = data.load_wordpiece(teacher_dir)                          # teacher's vocab.txt
    enc = data.encode_split(tok, task_data.splits["train"], max_len=128)
    batcher = data.TrainBatcher(enc, batch_size=64, seed=0, buckets=data.DEFAULT_BUCKETS)
    for batch in batcher.epoch(epoch, start_step=step): ...
"""

from tkd_jax.data.batching import (
    DEFAULT_BUCKETS,
    TrainBatcher,
    bucket_lengths,
    eval_batches,
    make_batch,
    padding_efficiency,
    run_bucket_lengths,
)
from tkd_jax.data.examples import Split, TaskData
from tkd_jax.data.holdout import HOLDOUT_SPLIT, load_run_splits, with_holdout
from tkd_jax.data.hub import HUB_ID, load_hub
from tkd_jax.data.local import load_local, read_tsv
from tkd_jax.data.overlap import train_overlap
from tkd_jax.data.preprocess import (
    ABBREVIATIONS,
    CONTRACTIONS,
    PreprocessConfig,
    expand_contractions,
    preprocess,
    remove_punctuation,
)
from tkd_jax.data.report import format_report, inspect_data
from tkd_jax.data.sources import SOURCES, load_task
from tkd_jax.data.tasks import TASKS, TaskSpec, get_task
from tkd_jax.data.tfds_source import load_tfds
from tkd_jax.data.tokenization import (
    SPECIAL_TOKENS,
    EncodedSplit,
    encode_split,
    load_wordpiece,
    train_wordpiece,
)

__all__ = [
    "ABBREVIATIONS",
    "CONTRACTIONS",
    "DEFAULT_BUCKETS",
    "HOLDOUT_SPLIT",
    "HUB_ID",
    "SOURCES",
    "SPECIAL_TOKENS",
    "TASKS",
    "EncodedSplit",
    "PreprocessConfig",
    "Split",
    "TaskData",
    "TaskSpec",
    "TrainBatcher",
    "bucket_lengths",
    "encode_split",
    "eval_batches",
    "expand_contractions",
    "format_report",
    "get_task",
    "inspect_data",
    "load_hub",
    "load_local",
    "load_run_splits",
    "load_task",
    "load_tfds",
    "load_wordpiece",
    "make_batch",
    "padding_efficiency",
    "preprocess",
    "read_tsv",
    "remove_punctuation",
    "run_bucket_lengths",
    "train_overlap",
    "train_wordpiece",
    "with_holdout",
]
