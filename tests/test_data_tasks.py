"""The GLUE task table and name lookup."""

import dataclasses

import pytest

from tkd_jax.data import TASKS, get_task
from tkd_jax.errors import ConfigError

GLUE_METRICS = {"accuracy", "f1", "mcc", "pearson", "spearman"}


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("sst2", "sst2"),
        ("SST-2", "sst2"),
        ("sst-2", "sst2"),
        (" Sst2 ", "sst2"),
        ("STS-B", "stsb"),
        ("sts_b", "stsb"),
        ("CoLA", "cola"),
        ("MNLI", "mnli"),
        ("QQP", "qqp"),
        ("diagnostic", "ax"),
        ("AX", "ax"),
    ],
)
def test_get_task_spellings(spelling, name):
    assert get_task(spelling).name == name


def test_unknown_task_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        get_task("sst3")
    msg = str(err.value)
    assert "'sst3'" in msg and "\n" not in msg
    for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"):
        assert name in msg


def test_table_covers_glue_and_is_consistent():
    glue = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"}
    assert set(TASKS) == glue
    for spec in TASKS.values():
        assert spec.main_metric in spec.metrics
        assert set(spec.metrics) <= GLUE_METRICS
        assert set(spec.eval_splits) <= set(spec.splits)
        assert len(spec.text_fields) in (1, 2)
        if spec.is_regression:
            assert spec.label_names is None and spec.num_labels == 1
        else:
            assert spec.num_labels == len(spec.label_names) >= 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["sst2"].name = "x"


def test_task_details_match_glue():
    stsb, mnli, ax = get_task("stsb"), get_task("mnli"), get_task("ax")
    assert stsb.is_regression and set(stsb.metrics) == {"pearson", "spearman"}
    assert get_task("cola").metrics == ("mcc",)
    assert set(get_task("mrpc").metrics) == {"f1", "accuracy"}
    assert set(get_task("qqp").metrics) == {"f1", "accuracy"}
    assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
    assert mnli.splits["dev_matched"] == "dev_matched.tsv"
    assert mnli.label_names == ("entailment", "neutral", "contradiction")
    assert ax.eval_splits == () and set(ax.splits) == {"test"} and ax.glue_dir == "diagnostic"
    # HF / TFDS class order: a class id means the same whatever the source.
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("sst2").text_fields == ("sentence",)
    assert get_task("qnli").text_fields == ("question", "sentence")
    assert get_task("sst2").glue_dir == "SST-2" and get_task("stsb").glue_dir == "STS-B"
    assert get_task("rte").default_splits == ("train", "dev")
    assert ax.default_splits == ("test",)
