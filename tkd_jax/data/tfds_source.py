"""GLUE from a prepared TFDS ``glue/<task>`` dataset, read without TensorFlow.

TFDS names the dev sets ``validation`` / ``validation_matched`` / ...; they become ``dev`` /
``dev_matched`` here. TFDS writes examples in a shuffled order; sorting by ``idx`` gives back
the order of the GLUE files, so this source and the local reader yield the same examples in
the same order.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

from tkd_jax.data.examples import TaskData, split_from_columns
from tkd_jax.data.hub import first_line, source_split_name
from tkd_jax.data.tasks import TaskSpec
from tkd_jax.errors import DataError


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tfds(spec: TaskSpec, splits, data_dir=None) -> TaskData:
    """Load ``splits`` of TFDS ``glue/<task>`` prepared (array_record) under ``data_dir``.

    Reads through ``tfds.data_source`` (random access, no TensorFlow needed). ``data_dir``
    defaults to ``TFDS_DATA_DIR``, else ``~/tensorflow_datasets``.
    """
    import tensorflow_datasets as tfds

    root = pathlib.Path(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    ).expanduser()
    name = f"glue/{spec.name}"
    prepared = sorted((root / "glue" / spec.name).glob("*/dataset_info.json"))
    if not prepared:
        raise DataError(
            f"{root / 'glue' / spec.name}: no prepared TFDS dataset {name}; expected "
            f"<version>/dataset_info.json there (prepare with tfds.builder({name!r}, "
            "data_dir=..., file_format='array_record').download_and_prepare())"
        )
    try:
        sources = tfds.data_source(name, data_dir=str(root), download=False)
    except Exception as e:  # wrong file format, unreadable metadata, ...
        raise DataError(
            f"{prepared[-1].parent}: cannot open TFDS {name} as a data source ({first_line(e)}); "
            "expected it prepared with file_format='array_record'"
        ) from None
    out, files = {}, {}
    for split in splits:
        sname = source_split_name(split)
        where = f"TFDS {name} split {sname!r} in {root}"
        if sname not in sources:
            raise DataError(f"{where}: not found; prepared splits are {', '.join(sources)}")
        src = sources[sname]
        records = src.__getitems__(list(range(len(src))))
        texts = [[r[f].decode("utf-8") for r in records] for f in spec.text_fields]
        label = [r["label"] for r in records]
        idx = [r["idx"] for r in records]
        out[split] = split_from_columns(spec, split, texts, label, idx, where)
        info = src.dataset_info
        for path in info.splits[sname].filepaths:
            files[str(path)] = _sha256(path)
    return TaskData(task=spec, splits=out, files=files, source=f"tfds:{root}")
