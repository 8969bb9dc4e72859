"""Local GLUE directory reader: the real files, their quirks, and bad input."""

import csv
import hashlib

import numpy as np
import pytest

from tkd_jax.data import get_task, load_task
from tkd_jax.errors import ConfigError, DataError

# Official GLUE / HF counts, as listed in the data folder's SOURCES.md.
COUNTS = [
    ("cola", "train", 8551),
    ("cola", "dev", 1043),
    ("cola", "test", 1063),
    ("sst2", "train", 67349),
    ("sst2", "dev", 872),
    ("sst2", "test", 1821),
    ("mrpc", "train", 3668),
    ("mrpc", "dev", 408),
    ("mrpc", "test", 1725),
    ("stsb", "train", 5749),
    ("stsb", "dev", 1500),
    ("stsb", "test", 1379),
    ("rte", "train", 2490),
    ("rte", "dev", 277),
    ("rte", "test", 3000),
    ("wnli", "train", 635),
    ("wnli", "dev", 71),
    ("wnli", "test", 146),
    ("qnli", "dev", 5463),
    ("ax", "test", 1104),
]

# Class counts from SOURCES.md (label id order of the task table).
CLASS_COUNTS = {
    ("cola", "train"): [2528, 6023],
    ("cola", "dev"): [322, 721],
    ("sst2", "train"): [29780, 37569],
    ("sst2", "dev"): [428, 444],
    ("mrpc", "train"): [1194, 2474],
    ("mrpc", "dev"): [129, 279],
    ("rte", "train"): [1249, 1241],
    ("rte", "dev"): [146, 131],
    ("wnli", "train"): [323, 312],
    ("wnli", "dev"): [40, 31],
    ("qnli", "dev"): [2702, 2761],
}

SHA256 = {  # from SOURCES.md
    "CoLA/dev.tsv": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
    "MRPC/train.tsv": "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
}

# The HF / TFDS GLUE builder's columns (text columns, label column) for an independent reader.
HF_COLUMNS = {
    "sst2": (["sentence"], "label"),
    "mrpc": (["#1 String", "#2 String"], "Quality"),
    "stsb": (["sentence1", "sentence2"], "score"),
    "qnli": (["question", "sentence"], "label"),
    "rte": (["sentence1", "sentence2"], "label"),
    "wnli": (["sentence1", "sentence2"], "label"),
    "ax": (["sentence1", "sentence2"], "label"),
    "cola": (["sentence"], "label"),
}


def reference_read(path, task, split):
    """What HF's glue builder does: csv with QUOTE_NONE, CoLA train/dev positional."""
    spec = get_task(task)
    text_cols, label_col = HF_COLUMNS[task]
    with open(path, encoding="utf-8-sig", newline="") as f:
        if task == "cola" and split != "test":
            rows = [{"sentence": r[3], "label": r[1]} for r in csv.reader(f, delimiter="\t",
                                                                           quoting=csv.QUOTE_NONE)]
        else:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [[r[c] for r in rows] for c in text_cols]
    if label_col not in rows[0]:
        labels = [np.nan if spec.is_regression else -1] * len(rows)
    elif spec.is_regression:
        labels = [float(r[label_col]) for r in rows]
    else:
        names = spec.label_names
        labels = [names.index(r[label_col]) if r[label_col] in names else int(r[label_col])
                  for r in rows]
    return texts, np.asarray(labels, np.float32 if spec.is_regression else np.int64)


@pytest.mark.parametrize("task, split, count", COUNTS)
def test_counts_and_examples_match_reference(glue_dir, task, split, count):
    data = load_task(task, data_dir=glue_dir, splits=[split])
    got = data.splits[split]
    spec = get_task(task)
    assert len(got) == count
    np.testing.assert_array_equal(got.idx, np.arange(count))
    path = glue_dir / spec.glue_dir / spec.splits[split]
    texts, labels = reference_read(path, task, split)
    assert got.text_a == texts[0]
    assert got.text_b == (texts[1] if len(texts) > 1 else None)
    np.testing.assert_array_equal(got.label, labels)
    assert got.label.dtype == (np.float32 if spec.is_regression else np.int32)
    assert data.files == {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
    if (task, split) in CLASS_COUNTS:
        assert np.bincount(got.label).tolist() == CLASS_COUNTS[task, split]
    if split.startswith("test"):
        assert not got.is_labeled


def test_file_quirks(glue_dir):
    mrpc = load_task("mrpc", data_dir=glue_dir).splits["train"]
    # The BOM before "Quality" is not part of the header; quotes are literal text.
    assert mrpc.text_a[0].startswith('Amrozi accused his brother , whom he called " the witness "')
    cola = load_task("cola", data_dir=glue_dir, splits=["dev"])
    last_line = (glue_dir / "CoLA" / "dev.tsv").read_text().split("\n")[-1]  # no final newline
    assert cola.splits["dev"].text_a[-1] == last_line.split("\t")[3]
    sst2 = load_task("sst2", data_dir=glue_dir, splits=["dev"]).splits["dev"]
    assert sst2.text_a[0] == "it 's a charming and often affecting journey . "  # kept as is
    stsb = load_task("stsb", data_dir=glue_dir)
    np.testing.assert_array_equal(stsb.splits["train"].label[:2], np.float32([5.0, 3.8]))
    assert abs(float(stsb.splits["train"].label.mean()) - 2.70) < 0.005
    assert abs(float(stsb.splits["dev"].label.mean()) - 2.36) < 0.005
    assert np.isnan(load_task("stsb", data_dir=glue_dir, splits="test").splits["test"].label).all()
    for rel, digest in SHA256.items():
        assert load_task(rel.split("/")[0], data_dir=glue_dir).files[str(glue_dir / rel)] == digest


def test_missing_mnli_and_qqp_dev_named(glue_dir):
    # This GLUE copy has no MNLI / QQP dev files: the error names what is missing.
    with pytest.raises(DataError, match="MNLI"):
        load_task("mnli", data_dir=glue_dir, splits=["dev_matched"])
    with pytest.raises(DataError, match="QNLI.*train.tsv: file not found"):
        load_task("qnli", data_dir=glue_dir)


# ------------------------------------------------------------------------------ bad input


def write(root, rel, content):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def load_error(root, task, split, match):
    with pytest.raises(DataError) as err:
        load_task(task, data_dir=root, splits=[split])
    msg = str(err.value)
    assert "\n" not in msg
    for part in match:
        assert part in msg, msg
    return msg


def test_missing_dir_and_file(tmp_path):
    load_error(tmp_path / "nowhere", "rte", "dev", ["nowhere", "not a directory"])
    load_error(tmp_path, "rte", "dev", [str(tmp_path / "RTE"), "task folder not found"])
    write(tmp_path, "RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    load_error(tmp_path, "rte", "dev", [str(tmp_path / "RTE" / "dev.tsv"), "file not found"])


@pytest.mark.parametrize(
    "task, content, match",
    [
        ("sst2", "sentence\tlabl\nnice\t1\n", ["line 1", "columns sentence, label", "missing"]),
        ("sst2", "sentence\tlabel\nnice\t1\nbad\t0\tx\n", ["line 3", "2 tab-separated", "got 3"]),
        ("sst2", "sentence\tlabel\nnice\t1\n\n", ["line 3", "got 1"]),
        ("sst2", "sentence\tlabel\nnice\tpos\n", ["line 2", "unknown label 'pos'", "0, 1"]),
        ("sst2", "sentence\tlabel\nnice\t\n", ["line 2", "unknown label ''"]),
        ("sst2", "", ["line 1", "file is empty"]),
        ("sst2", "sentence\tlabel\n", ["line 2", "no data rows"]),
        ("sst2", b"sentence\tlabel\nnice\t1\nna\xefve\t0\n", ["line 3", "0xef", "UTF-8"]),
        ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
         ["line 2", "unknown label 'maybe'", "entailment, not_entailment"]),
        ("cola", "gj04\t1\t\tfine.\ngj04\t0\t*\n", ["line 2", "4 tab-separated", "got 3"]),
        ("stsb", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.2\n1\ta\tb\tabc\n",
         ["line 3", "numeric score", "'abc'"]),
        ("stsb", "index\tsentence1\tsentence2\tscore\n0\ta\tb\tnan\n", ["line 2", "'nan'"]),
    ],
)
def test_malformed_file(tmp_path, task, content, match):
    spec = get_task(task)
    path = write(tmp_path, f"{spec.glue_dir}/train.tsv", content)
    msg = load_error(tmp_path, task, "train", match)
    assert str(path) in msg


def test_literal_quotes_crlf_and_bom(tmp_path):
    write(tmp_path, "SST-2/train.tsv", '\ufeffsentence\tlabel\r\nhe said " hi\t1\r\n" ok\t0')
    split = load_task("sst2", data_dir=tmp_path, splits="train").splits["train"]
    # csv quoting would join these two rows; GLUE's quotes are plain characters.
    assert split.text_a == ['he said " hi', '" ok']
    assert split.label.tolist() == [1, 0]


def test_load_task_argument_errors(glue_dir, monkeypatch):
    with pytest.raises(ConfigError, match="unknown data source 'ftp'"):
        load_task("rte", source="ftp", data_dir=glue_dir)
    with pytest.raises(ConfigError, match="no split 'validation'"):
        load_task("rte", data_dir=glue_dir, splits=["validation"])
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(ConfigError, match="GLUE_DIR"):
        load_task("rte", source="local")


def test_auto_prefers_data_dir_then_env(glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "empty"))
    assert load_task("wnli", data_dir=glue_dir).source == f"local:{glue_dir}"
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    data = load_task("wnli")
    assert data.source == f"local:{glue_dir}" and len(data.splits["train"]) == 635
