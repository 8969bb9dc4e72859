"""One entry point for the three GLUE sources: a local GLUE directory, the HF hub, TFDS.

Resolution for ``source="auto"`` (DESIGN.md section 5): the ``data_dir`` argument
(``--data_dir``), else the ``GLUE_DIR`` environment variable, else the Hugging Face hub.
"""

from __future__ import annotations

import os

from tkd_jax.data.examples import TaskData
from tkd_jax.data.hub import load_hub
from tkd_jax.data.local import load_local
from tkd_jax.data.tasks import TaskSpec, get_task
from tkd_jax.data.tfds_source import load_tfds
from tkd_jax.errors import ConfigError

GLUE_DIR_ENV = "GLUE_DIR"


def _local(spec, splits, data_dir):
    data_dir = data_dir or os.environ.get(GLUE_DIR_ENV)
    if not data_dir:
        raise ConfigError(
            f"source 'local' needs a GLUE directory: pass --data_dir or set {GLUE_DIR_ENV}"
        )
    return load_local(spec, data_dir, splits)


def _hub(spec, splits, data_dir):
    if data_dir:
        raise ConfigError(f"source 'hub' takes no data_dir (got {data_dir!r}); use source 'local'")
    return load_hub(spec, splits)


def _auto(spec, splits, data_dir):
    if data_dir or os.environ.get(GLUE_DIR_ENV):
        return _local(spec, splits, data_dir)
    return load_hub(spec, splits)


SOURCES = {"auto": _auto, "local": _local, "hub": _hub, "tfds": load_tfds}


def load_task(
    task: str | TaskSpec, *, source: str = "auto", data_dir=None, splits=None
) -> TaskData:
    """Load a GLUE task.

    Args:
      task: task name (any spelling ``get_task`` accepts) or a TaskSpec.
      source: ``"auto"`` (data_dir, else $GLUE_DIR, else hub), ``"local"``, ``"hub"`` or
        ``"tfds"`` (``data_dir`` is then the TFDS data dir).
      data_dir: GLUE directory (local) or TFDS data dir.
      splits: split names (a str or a sequence); default ``task.default_splits`` (train and
        the eval splits; test splits only when asked for).

    Returns:
      TaskData with one Split per requested split, in the files' order.

    Raises:
      ConfigError: unknown task, source or split.
      DataError: missing or malformed data, or the hub unreachable.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if source not in SOURCES:
        raise ConfigError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")
    if splits is None:
        splits = spec.default_splits
    elif isinstance(splits, str):
        splits = (splits,)
    for split in splits:
        if split not in spec.splits:
            raise ConfigError(
                f"task {spec.name} has no split {split!r}; expected one of {', '.join(spec.splits)}"
            )
    return SOURCES[source](spec, tuple(splits), data_dir)
