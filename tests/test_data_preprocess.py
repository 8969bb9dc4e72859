"""The paper's preprocessing steps: each switchable, each reporting its counts."""

import collections
import types

import numpy as np
import pytest

from tkd_jax.data import (
    PreprocessConfig,
    Split,
    expand_contractions,
    load_task,
    preprocess,
    remove_punctuation,
)
from tkd_jax.data.neighbors import embedding_neighbors, split_neighbors
from tkd_jax.errors import ConfigError


def make(texts_a, labels, texts_b=None, name="train"):
    n = len(texts_a)
    label = np.asarray(labels, np.float32 if isinstance(labels[0], float) else np.int32)
    return Split(list(texts_a), None if texts_b is None else list(texts_b), label,
                 np.arange(n, dtype=np.int32), name=name)


TOY = make(["Hello, World!", "hello world", "  ", "It's fine", "Hello, World!", "ok"],
           [1, 1, 0, 1, 1, -1])


def test_all_off_by_default_is_identity():
    out, report = preprocess(TOY, PreprocessConfig(), is_train=True)
    assert out.text_a == TOY.text_a and report["steps"] == {}
    assert report["examples_in"] == report["examples_out"] == 6


def test_each_step_counts():
    steps = {
        "lowercase": (PreprocessConfig(lowercase=True), {"changed": 3}),
        "strip_punctuation": (PreprocessConfig(strip_punctuation=True), {"changed": 3}),
        # the blank row and the unlabeled row
        "drop_missing": (PreprocessConfig(drop_missing=True), {"removed": 2}),
        "dedup": (PreprocessConfig(dedup=True), {"removed": 1}),
        "expand_contractions": (PreprocessConfig(expand_contractions=True), {"changed": 0}),
    }
    for name, (config, counts) in steps.items():
        out, report = preprocess(TOY, config, is_train=True)
        assert report["steps"] == {name: counts}, name
        assert report["examples_out"] == len(out) == 6 - counts.get("removed", 0)
    config = PreprocessConfig(lowercase=True, strip_punctuation=True)
    out, _ = preprocess(TOY, config, is_train=True)
    assert out.text_a == ["hello world", "hello world", "  ", "it s fine", "hello world", "ok"]
    out, _ = preprocess(TOY, PreprocessConfig(drop_missing=True, dedup=True), is_train=True)
    assert out.text_a == ["Hello, World!", "hello world", "It's fine"]
    np.testing.assert_array_equal(out.idx, [0, 1, 3])
    np.testing.assert_array_equal(out.label, [1, 1, 1])


def test_eval_splits_keep_every_row():
    config = PreprocessConfig(drop_missing=True, dedup=True, augment="delete")
    out, report = preprocess(TOY, config, is_train=False)
    assert out.text_a == TOY.text_a
    assert report["steps"] == {
        "drop_missing": {"removed": 0, "missing_kept": 2},
        "dedup": {"skipped": True},
        "augment": {"skipped": True},
    }


def test_pairs_and_regression_missing():
    split = make(["a", "b", "c"], [1.0, float("nan"), 2.5], texts_b=["x", "y", ""])
    out, report = preprocess(split, PreprocessConfig(drop_missing=True), is_train=True)
    assert report["steps"]["drop_missing"] == {"removed": 2}
    assert out.text_a == ["a"] and out.text_b == ["x"]
    out, report = preprocess(split, PreprocessConfig(lowercase=True), is_train=True)
    assert report["steps"]["lowercase"] == {"changed": 0}
    split = make(["A", "b"], [1, 0], texts_b=["x", "Y"])
    assert preprocess(split, PreprocessConfig(lowercase=True), is_train=True)[1]["steps"] == {
        "lowercase": {"changed": 2}
    }


@pytest.mark.parametrize(
    "text, expanded",
    [
        ("I can't go", "I can not go"),
        ("Won't you?", "Will not you?"),
        ("it does n't work , ca n't", "it does not work , can not"),
        ("you 're right , they 've gone", "you are right , they have gone"),
        ("I'm sure he'd say we'll", "I am sure he would say we will"),
        ("Don\u2019t", "Do not"),
        ("Let's see, e.g. this", "Let us see, for example this"),
        ("the U.S. team", "the United States team"),
        ("it 's his dog's bone", "it 's his dog's bone"),  # "'s" is ambiguous: kept
        ("an 'mad' 'dinner'", "an 'mad' 'dinner'"),
    ],
)
def test_contraction_table(text, expanded):
    assert expand_contractions(text) == expanded


def test_punctuation_removal():
    assert remove_punctuation("well-known, \u201cquoted\u201d \u2014 $5!") == "well known quoted 5"
    assert remove_punctuation("no punctuation  here") == "no punctuation  here"


def test_augmentation_is_seeded_and_label_preserving():
    base = make(["the cat sat on the mat", "a quick brown fox", "word"], [0, 1, 1],
                texts_b=["one two three", "four five", "six"])
    config = PreprocessConfig(augment="delete,swap", augment_copies=2, augment_prob=0.3, seed=11)
    out, report = preprocess(base, config, is_train=True)
    assert report["steps"] == {"augment": {"added": 6}} and len(out) == 9
    assert out.text_a[:3] == base.text_a  # originals first, unchanged
    np.testing.assert_array_equal(out.label, np.tile(base.label, 3))
    np.testing.assert_array_equal(out.idx, np.tile(base.idx, 3))
    again, _ = preprocess(base, config, is_train=True)
    assert again.text_a == out.text_a and again.text_b == out.text_b
    other, _ = preprocess(base, PreprocessConfig(augment="delete,swap", augment_copies=2,
                                                 augment_prob=0.3, seed=12), is_train=True)
    assert other.text_a != out.text_a
    for k in range(3, 9):
        src = base.text_a[k % 3].split()
        words = out.text_a[k].split()
        assert 1 <= len(words) <= len(src)
        assert collections.Counter(words) <= collections.Counter(src)
    swapped, _ = preprocess(base, PreprocessConfig(augment="swap", seed=1), is_train=True)
    for k in range(3):
        assert sorted(swapped.text_a[3 + k].split()) == sorted(base.text_a[k].split())
    assert swapped.text_a[3:] != base.text_a



def test_replace_augmentation_uses_the_neighbour_table():
    base = make(["Good movie , GOOD cast", "bad plot"], [1, 0])
    table = {"good": ("great", "fine"), "movie": ("film",)}
    config = PreprocessConfig(augment="replace", augment_copies=3, augment_replace_prob=1.0,
                              neighbors=table, seed=0)
    out, report = preprocess(base, config, is_train=True)
    assert report["steps"] == {"augment": {"added": 6}}
    for k in (2, 4, 6):  # copies of row 0: every word with neighbours replaced, case kept
        first, second, comma, upper, cast = out.text_a[k].split()
        assert first in ("Great", "Fine") and second == "film" and comma == ","
        assert upper in ("GREAT", "FINE") and cast == "cast"
    assert out.text_a[3] == out.text_a[5] == out.text_a[7] == "bad plot"  # no neighbours
    again, _ = preprocess(base, config, is_train=True)
    assert again.text_a == out.text_a
    never, _ = preprocess(base, PreprocessConfig(augment="replace", augment_replace_prob=0.0,
                                                 neighbors=table), is_train=True)
    assert never.text_a[2:] == base.text_a
    with pytest.raises(ConfigError, match="neighbour table"):
        preprocess(base, PreprocessConfig(augment="replace"), is_train=True)


def test_embedding_neighbors_against_brute_force():
    rng = np.random.default_rng(0)
    vocab = ["[PAD]", "[CLS]", "the", "cat", "dog", "##s", "car", "x1", "run", "ran"]
    emb = rng.normal(size=(len(vocab), 6)).astype(np.float32)
    emb[4] = emb[3] * 2.0 + 0.01  # "dog" ~ "cat"; "ran" ~ "run"
    emb[9] = emb[8] - 0.02
    table = embedding_neighbors(vocab, emb, ["Cat", "run", "the", "##s", "zebra", "x1"], k=2,
                                 min_similarity=-1.0)
    assert set(table) == {"cat", "run", "the"}  # not a word token / not in vocab: skipped
    assert table["cat"][0] == "dog" and table["run"][0] == "ran"
    words = [i for i, t in enumerate(vocab) if t.isalpha() and not t.startswith("##")]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for w, got in table.items():
        i = vocab.index(w)
        sims = sorted(((float(unit[i] @ unit[j]), vocab[j]) for j in words if j != i),
                      reverse=True)
        assert got == tuple(t for _, t in sims[:2])
    strict = embedding_neighbors(vocab, emb, ["cat"], k=5, min_similarity=0.99)
    assert strict == {"cat": ("dog",)}
    # a split's words, the vocabulary in the tokenizer's id order (ids shuffled here)
    order = rng.permutation(len(vocab))
    tokenizer = types.SimpleNamespace(get_vocab=lambda: {vocab[i]: int(r)
                                                         for r, i in enumerate(order)})
    split = make(["the Cat ran"], [1], ["dog run"])
    assert split_neighbors(split, tokenizer, emb[order], k=2) == embedding_neighbors(
        vocab, emb, ["the", "Cat", "ran", "dog", "run"], k=2)

def test_config_validation():
    assert PreprocessConfig(augment="none").augment == ()
    assert PreprocessConfig(augment="delete+swap").augment == ("delete", "swap")
    with pytest.raises(ConfigError, match="augment"):
        PreprocessConfig(augment="shuffle")
    with pytest.raises(ConfigError):
        PreprocessConfig(augment_prob=1.5)
    with pytest.raises(ConfigError, match="augment_replace_prob"):
        PreprocessConfig(augment_replace_prob=-0.1)


def test_real_sst2_counts(glue_dir):
    data = load_task("sst2", data_dir=glue_dir)
    train = data.splits["train"]
    config = PreprocessConfig(drop_missing=True, dedup=True, lowercase=True)
    out, report = preprocess(train, config, is_train=True)
    pairs = collections.Counter(zip(train.text_a, train.label.tolist(), strict=True))
    duplicates = sum(c - 1 for c in pairs.values())
    assert report["steps"] == {
        "lowercase": {"changed": sum(t != t.lower() for t in train.text_a)},
        "drop_missing": {"removed": 0},
        "dedup": {"removed": duplicates},
    }
    assert len(out) == len(train) - duplicates == len(pairs)
    dev, report = preprocess(data.splits["dev"], config, is_train=False)
    assert len(dev) == 872 and report["steps"]["dedup"] == {"skipped": True}
