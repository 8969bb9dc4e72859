"""GLUE from the Hugging Face hub: ``datasets.load_dataset("nyu-mll/glue", task)``.

The hub names the dev sets ``validation`` / ``validation_matched`` / ...; here they are
``dev`` / ``dev_matched`` like the GLUE files (TFDS uses the hub's names too). Unlabeled rows
carry label -1; for the regression task (stsb, scores in [0, 5]) that becomes nan, as in the
local reader.
"""

from __future__ import annotations

from tkd_jax.data.examples import TaskData, split_from_columns
from tkd_jax.data.tasks import TaskSpec
from tkd_jax.errors import DataError

HUB_ID = "nyu-mll/glue"


def source_split_name(split: str) -> str:
    """Our split name -> the HF / TFDS one (``dev_matched`` -> ``validation_matched``)."""
    return "validation" + split[3:] if split.startswith("dev") else split


def first_line(err: Exception) -> str:
    """``"Type: first line of the message"`` (library errors can span many lines)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def load_hub(spec: TaskSpec, splits) -> TaskData:
    """Load ``splits`` of ``spec`` with ``datasets.load_dataset("nyu-mll/glue", spec.name)``.

    ``files`` maps ``hf://datasets/nyu-mll/glue/<task>/<split>`` to the dataset fingerprint.
    """
    import datasets

    try:
        dsets = datasets.load_dataset(HUB_ID, spec.name)
    except Exception as e:  # offline, hub down, unknown revision: all mean "use local data"
        raise DataError(
            f"could not load {HUB_ID!r} config {spec.name!r} from the Hugging Face hub "
            f"({first_line(e)}); set GLUE_DIR or pass --data_dir to a local GLUE directory"
        ) from None
    out, files = {}, {}
    for split in splits:
        name = source_split_name(split)
        where = f"hub {HUB_ID}/{spec.name} split {name!r}"
        if name not in dsets:
            raise DataError(f"{where}: not found; the hub dataset has {', '.join(dsets)}")
        dset = dsets[name]
        table = dset.with_format("arrow")[:]  # honours any indices mapping
        needed = (*spec.text_fields, "label", "idx")
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise DataError(f"{where}: missing columns {', '.join(missing)}")
        texts = [table.column(f).to_pylist() for f in spec.text_fields]
        label = table.column("label").to_numpy(zero_copy_only=False)
        idx = table.column("idx").to_numpy(zero_copy_only=False)
        out[split] = split_from_columns(spec, split, texts, label, idx, where)
        files[f"hf://datasets/{HUB_ID}/{spec.name}/{name}"] = dset._fingerprint
    return TaskData(task=spec, splits=out, files=files, source=f"hub:{HUB_ID}")
