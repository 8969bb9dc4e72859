"""The hub and TFDS sources give the same examples, in the same order, as the local files.

The hub is unreachable here: ``datasets.load_dataset`` is replaced by a stand-in that loads
parquet files in the hub's layout (columns = HF feature names, ClassLabel labels, ``idx``),
written by the test from the GLUE TSVs with the HF builder's own logic (csv, QUOTE_NONE).
For TFDS, the real ``glue`` builder of tensorflow_datasets prepares ``glue/<task>`` as
array_record from the local GLUE files (only its download step is redirected to them).
"""

import csv
import importlib.resources
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tkd_jax.data import HUB_ID, get_task, load_task
from tkd_jax.errors import DataError

HF_TSV_COLUMNS = {  # feature -> TSV column, as in the HF / TFDS glue builder
    "rte": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
    "stsb": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"},
    "cola": {"sentence": 3, "label": 1},
}
HUB_SPLITS = {
    "rte": ("train", "dev", "test"),
    "stsb": ("train", "dev", "test"),
    "cola": ("train", "dev"),
}


def hf_rows(path, task, split):
    """HF's glue builder: csv reader with QUOTE_NONE; CoLA train/dev by position."""
    with open(path, encoding="utf-8", newline="") as f:
        if task == "cola" and split != "test":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(reader)


def hub_table(glue_dir, task, split):
    spec = get_task(task)
    rows = hf_rows(glue_dir / spec.glue_dir / spec.splits[split], task, split)
    cols = HF_TSV_COLUMNS[task]
    table = {f: [r[cols[f]] for r in rows] for f in spec.text_fields}
    if split == "test":
        label = [-1.0 if spec.is_regression else -1] * len(rows)
    elif spec.is_regression:
        label = [float(r[cols["label"]]) for r in rows]
    else:
        names = spec.label_names
        label = [names.index(r[cols["label"]]) if r[cols["label"]] in names
                 else int(r[cols["label"]]) for r in rows]
    table["label"] = label
    table["idx"] = list(range(len(rows)))
    return table


def hub_features(task):
    spec = get_task(task)
    feats = {f: datasets.Value("string") for f in spec.text_fields}
    feats["label"] = (datasets.Value("float32") if spec.is_regression
                      else datasets.ClassLabel(names=list(spec.label_names)))
    feats["idx"] = datasets.Value("int32")
    return datasets.Features(feats)


@pytest.fixture(scope="module")
def hub_parquet(glue_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    files = {}
    for task, splits in HUB_SPLITS.items():
        files[task] = {}
        for split in splits:
            table = pa.table(hub_table(glue_dir, task, split))
            if (task, split) == ("rte", "train"):  # stored out of order: idx must fix it
                table = table.take(np.random.default_rng(0).permutation(table.num_rows))
            hub_split = split.replace("dev", "validation")
            path = root / f"{task}-{hub_split}.parquet"
            pq.write_table(table, path)
            files[task][hub_split] = str(path)
    return root, files


@pytest.fixture
def hub_stand_in(hub_parquet, monkeypatch):
    root, files = hub_parquet
    real_load_dataset = datasets.load_dataset
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        dsets = real_load_dataset("parquet", data_files=files[name], cache_dir=str(root / "cache"))
        return dsets.cast(hub_features(name))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    return calls


def assert_same_examples(a, b):
    assert set(a.splits) == set(b.splits)
    for name in a.splits:
        x, y = a.splits[name], b.splits[name]
        assert x.text_a == y.text_a and x.text_b == y.text_b
        assert x.label.dtype == y.label.dtype
        np.testing.assert_array_equal(x.label, y.label)  # nan == nan here
        np.testing.assert_array_equal(x.idx, y.idx)


@pytest.mark.parametrize("task", sorted(HUB_SPLITS))
def test_hub_equals_local(glue_dir, hub_stand_in, task):
    splits = HUB_SPLITS[task]
    hub = load_task(task, splits=splits)  # auto: no data_dir, no GLUE_DIR -> hub
    assert hub_stand_in == [(HUB_ID, task)]
    assert hub.source == f"hub:{HUB_ID}"
    assert set(hub.files) == {
        f"hf://datasets/{HUB_ID}/{task}/{s.replace('dev', 'validation')}" for s in splits
    }
    assert all(hub.files.values())
    assert_same_examples(hub, load_task(task, source="local", data_dir=glue_dir, splits=splits))


def test_hub_missing_split(hub_stand_in):
    with pytest.raises(DataError, match="split 'test': not found"):
        load_task("cola", source="hub", splits=["test"])


def test_hub_offline_says_how_to_point_at_data(monkeypatch):
    calls = []

    def offline(path, name=None, **kwargs):
        calls.append((path, name))
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(DataError) as err:
        load_task("SST-2")
    msg = str(err.value)
    assert calls == [("nyu-mll/glue", "sst2")]
    assert "GLUE_DIR" in msg and "--data_dir" in msg and "ConnectionError" in msg
    assert "\n" not in msg


# -------------------------------------------------------------------------------- TFDS

TFDS_TASKS = ("rte", "cola", "stsb")


@pytest.fixture(scope="module")
def tfds_dir(glue_dir, tmp_path_factory):
    """glue/{rte,cola,stsb} prepared by TFDS's own glue builder from the local files."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.text import glue as tfds_glue  # registers the builder

    root = tmp_path_factory.mktemp("tfds")
    with pytest.MonkeyPatch.context() as mp:
        # tfds looks up `importlib_resources` (a backport not installed here) only to
        # locate builder code; the stdlib module provides the same API.
        mp.setitem(sys.modules, "importlib_resources", importlib.resources)
        # The builder downloads GLUE's zips; hand it the extracted local copy instead.
        mp.setattr(
            tfds.download.DownloadManager, "download_and_extract", lambda self, url: glue_dir
        )
        for task in TFDS_TASKS:
            builder = tfds.builder(f"glue/{task}", data_dir=root, file_format="array_record")
            assert isinstance(builder, tfds_glue.Glue)
            builder.download_and_prepare()
    return root


@pytest.mark.parametrize("task", TFDS_TASKS)
def test_tfds_equals_local(glue_dir, tfds_dir, task):
    import tensorflow_datasets as tfds

    splits = ("train", "dev", "test")
    got = load_task(task, source="tfds", data_dir=tfds_dir, splits=splits)
    assert got.source == f"tfds:{tfds_dir}"
    assert_same_examples(got, load_task(task, data_dir=glue_dir, splits=splits))
    assert len(got.files) == 3 and all(len(h) == 64 for h in got.files.values())
    assert all(".array_record" in path for path in got.files)
    # TFDS stores examples shuffled: the idx sort is what restores the file order.
    stored = tfds.data_source(f"glue/{task}", data_dir=tfds_dir, split="train")
    first = [stored[i]["idx"] for i in range(20)]
    assert first != sorted(first)


def test_tfds_not_prepared(tfds_dir):
    with pytest.raises(DataError) as err:
        load_task("mrpc", source="tfds", data_dir=tfds_dir)
    msg = str(err.value)
    assert "glue/mrpc" in msg and "array_record" in msg and "\n" not in msg
