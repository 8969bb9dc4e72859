"""HF BERT import: a tiny random teacher written by the test in HF format, and MiniLM parity.

The tiny teacher uses PyTorch naming and layout (Linear.weight [out, in]); its expected
params are derived here by a separate rule (not the module's table), and its forward pass is
checked against a float64 NumPy BERT written below.
"""

import hashlib
import importlib.util
import json
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file
from scipy.special import erf

from tkd_jax.errors import CheckpointError, ConfigError
from tkd_jax.models.hf_import import load_hf_bert
from tkd_jax.models.teacher import (
    TEACHER_ENV,
    TEACHER_HUB_ID,
    TEACHER_PACKAGE,
    init_student_from_teacher,
    resolve_teacher,
    teacher_fingerprint,
)
from tkd_jax.models.transformer import Transformer

TINY = dict(vocab=50, hidden=32, heads=4, ffn=64, layers=2, max_pos=16, types=2)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(45)]


def make_tensors(*, vocab, hidden, heads, ffn, layers, max_pos, types, pooler=True, seed=0):
    """Random BERT tensors with torch names and [out, in] Linear weights."""
    rng = np.random.default_rng(seed)
    t = {}

    def add(name, *shape):
        t[name] = rng.normal(0.0, 0.2, size=shape).astype(np.float32)

    def linear(name, out, inp):
        add(f"{name}.weight", out, inp)
        add(f"{name}.bias", out)

    def layer_norm(name):
        t[f"{name}.weight"] = (1.0 + rng.normal(0.0, 0.1, hidden)).astype(np.float32)
        add(f"{name}.bias", hidden)

    add("embeddings.word_embeddings.weight", vocab, hidden)
    add("embeddings.position_embeddings.weight", max_pos, hidden)
    add("embeddings.token_type_embeddings.weight", types, hidden)
    layer_norm("embeddings.LayerNorm")
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            linear(f"{p}.attention.self.{name}", hidden, hidden)
        linear(f"{p}.attention.output.dense", hidden, hidden)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", ffn, hidden)
        linear(f"{p}.output.dense", hidden, ffn)
        layer_norm(f"{p}.output.LayerNorm")
    if pooler:
        linear("pooler.dense", hidden, hidden)
    return t


def hf_config(*, vocab, hidden, heads, ffn, layers, max_pos, types, **extra):
    cfg = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "max_position_embeddings": max_pos,
        "type_vocab_size": types,
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }
    cfg.update(extra)
    return cfg


def write_hf_dir(path, tensors, config, *, weights=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if weights:
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


@pytest.fixture
def tiny(tmp_path):
    """(dir, tensors) of a tiny random 2-layer BERT with a pooler."""
    tensors = make_tensors(**TINY)
    return write_hf_dir(tmp_path / "tiny", tensors, hf_config(**TINY)), tensors


def expected_from_torch(tensors):
    """Independent rule: our path -> HF name; kernels are transposed Linear weights."""
    out = {}
    for name, value in tensors.items():
        parts = name.removeprefix("bert.").split(".")
        last = parts[-1]
        if parts[-2] in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            out["/".join(parts[:-1] + ["embedding"])] = value
        elif parts[-2] == "LayerNorm":
            leaf = {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}[last]
            out["/".join(parts[:-1] + [leaf])] = value
        elif last == "weight":
            out["/".join(parts[:-1] + ["kernel"])] = value.T
        else:
            out["/".join(parts)] = value
    return out


def flat(params):
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}


@pytest.mark.parametrize("variant", ["plain", "bert_prefix_gamma_beta_extras"])
def test_round_trip_every_param(tmp_path, variant):
    tensors = make_tensors(**TINY)
    stored = dict(tensors)
    if variant != "plain":  # BertForPreTraining-style names, TF-style LayerNorm, ignored extras
        stored = {
            "bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            ): v
            for k, v in tensors.items()
        }
        stored["bert.embeddings.position_ids"] = np.arange(TINY["max_pos"])[None].astype(np.int64)
        stored["cls.predictions.bias"] = np.zeros(TINY["vocab"], np.float32)
    path = write_hf_dir(tmp_path / variant, stored, hf_config(**TINY))
    config, params, tok = load_hf_bert(path)

    assert (config.vocab_size, config.hidden_size, config.num_layers, config.num_heads) == (
        50, 32, 2, 4)
    assert (config.intermediate_size, config.max_len, config.type_vocab_size) == (64, 16, 2)
    assert (config.activation, config.position, config.pooling) == ("gelu", "learned", "cls")
    assert config.use_pooler and config.num_labels == 0 and config.layer_norm_eps == 1e-12
    assert (config.dropout_rate, config.attention_dropout_rate) == (0.1, 0.1)
    assert tok == path / "vocab.txt"
    got = flat(params)
    want = expected_from_torch(tensors)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
    # and the tree is exactly what the model builds
    shapes = jax.eval_shape(Transformer(config).init, jax.random.key(0),
                            jnp.zeros((1, 3), jnp.int32), jnp.ones((1, 3), jnp.int32))
    assert jax.tree.map(lambda x: x.shape, shapes["params"]) == jax.tree.map(
        lambda x: x.shape, params)


def np_bert(t, ids, mask, types, heads):
    """Float64 NumPy BERT encoder (HF BertModel semantics): hidden states and pooler output."""
    t = {k: v.astype(np.float64) for k, v in t.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * t[f"{p}.weight"] + t[f"{p}.bias"]

    def lin(x, p):
        return x @ t[f"{p}.weight"].T + t[f"{p}.bias"]

    b, n = ids.shape
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][np.arange(n)][None]
         + t["embeddings.token_type_embeddings.weight"][types])
    x = ln(x, "embeddings.LayerNorm")
    states = [x]
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    i = 0
    while f"encoder.layer.{i}.output.dense.weight" in t:
        p = f"encoder.layer.{i}"

        def split(y):
            return y.reshape(b, n, heads, -1).transpose(0, 2, 1, 3)  # [b, heads, n, d]

        q, k, v = (split(lin(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = (s / s.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, n, -1)
        x = ln(x + lin(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = ln(x + lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        states.append(x)
        i += 1
    pooled = np.tanh(lin(x[:, 0], "pooler.dense"))
    return states, pooled


def test_forward_matches_numpy_bert(tiny):
    path, tensors = tiny
    config, params, _ = load_hf_bert(path)
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 50, size=(3, 7)).astype(np.int32)
    ids[:, 0] = 2
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], np.int32)
    types = np.array([[0] * 4 + [1] * 3, [0, 0, 1, 1, 0, 0, 0], [0] * 7], np.int32)
    out = Transformer(config).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask),
                                    jnp.asarray(types), output_hidden_states=True)
    states, pooled = np_bert(tensors, ids, mask, types, heads=TINY["heads"])
    assert len(out.hidden_states) == len(states) == 3
    valid = mask.astype(bool)
    for ours, ref in zip(out.hidden_states, states, strict=True):
        np.testing.assert_allclose(np.asarray(ours)[valid], ref[valid], atol=2e-5)
    np.testing.assert_allclose(np.asarray(out.pooled), pooled, atol=2e-5)
    assert out.logits is None


def test_missing_tensor_is_an_error(tmp_path):
    tensors = make_tensors(**TINY)
    del tensors["encoder.layer.1.intermediate.dense.bias"]
    path = write_hf_dir(tmp_path / "m", tensors, hf_config(**TINY))
    with pytest.raises(CheckpointError, match=r"missing.*encoder\.layer\.1\.intermediate\.dense"):
        load_hf_bert(path)


@pytest.mark.parametrize("extra", ["encoder.layer.2.output.dense.bias", "classifier.bias",
                                   "embeddings.extra.weight"])
def test_unused_tensor_is_an_error(tmp_path, extra):
    tensors = make_tensors(**TINY)
    tensors[extra] = np.zeros(TINY["hidden"], np.float32)
    path = write_hf_dir(tmp_path / "x", tensors, hf_config(**TINY))
    with pytest.raises(CheckpointError, match=rf"unused.*{extra}"):
        load_hf_bert(path)


def test_shape_mismatch_is_an_error(tmp_path):
    tensors = make_tensors(**TINY)
    path = write_hf_dir(tmp_path / "s", tensors, hf_config(**{**TINY, "vocab": 60}))
    with pytest.raises(CheckpointError, match=r"word_embeddings.*\[50, 32\].*\[60, 32\]"):
        load_hf_bert(path)


def test_pytorch_bin_only_is_refused_with_conversion_hint(tmp_path):
    path = write_hf_dir(tmp_path / "pt", {}, hf_config(**TINY), weights=False)
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle we would ever load")
    with pytest.raises(CheckpointError, match="pytorch_model.bin") as err:
        load_hf_bert(path)
    assert "safe_serialization=True" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_names_the_file(tiny, damage):
    path, _ = tiny
    file = path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(b"not safetensors at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_hf_bert(path)


@pytest.mark.parametrize("change,match", [({"hidden_act": "gelu_new"}, "hidden_act"),
                                          ({"position_embedding_type": "relative_key"},
                                           "position_embedding_type"),
                                          ({"model_type": "roberta"}, "model_type")])
def test_unsupported_config_is_an_error(tmp_path, change, match):
    path = write_hf_dir(tmp_path / "c", make_tensors(**TINY), hf_config(**TINY, **change))
    with pytest.raises(CheckpointError, match=f"config.json: {match}"):
        load_hf_bert(path)


def test_no_pooler_and_fresh_classifier(tmp_path):
    tensors = make_tensors(**TINY, pooler=False)
    path = write_hf_dir(tmp_path / "np", tensors, hf_config(**TINY))
    with pytest.raises(ConfigError, match="rng"):
        load_hf_bert(path, num_labels=3)
    key = jax.random.key(7)
    config, params, _ = load_hf_bert(path, num_labels=3, rng=key, dtype=jnp.bfloat16)
    assert not config.use_pooler and "pooler" not in params
    assert config.num_labels == 3 and config.dtype == jnp.bfloat16
    # documented init: kernel ~ Normal(0, initializer_range), bias zeros; params stay fp32
    want = np.asarray(jax.random.normal(key, (32, 3), jnp.float32)) * 0.02
    np.testing.assert_allclose(np.asarray(params["classifier"]["kernel"]), want, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(params["classifier"]["bias"]), np.zeros(3))
    assert params["embeddings"]["word_embeddings"]["embedding"].dtype == jnp.float32


def test_sharded_checkpoint_loads_the_same(tiny, tmp_path):
    path, tensors = tiny
    _, single, _ = load_hf_bert(path)
    shard = write_hf_dir(tmp_path / "sharded", {}, hf_config(**TINY), weights=False)
    names = sorted(tensors)
    parts = {"model-00001-of-00002.safetensors": names[::2],
             "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in parts.items():
        save_file({k: tensors[k] for k in keys}, str(shard / file))
    index = {"weight_map": {k: f for f, keys in parts.items() for k in keys}}
    (shard / "model.safetensors.index.json").write_text(json.dumps(index))
    _, sharded, _ = load_hf_bert(shard)
    jax.tree.map(np.testing.assert_array_equal, single, sharded)


def test_teacher_fingerprint(tiny, tmp_path):
    path, _ = tiny

    def sha(f):
        return hashlib.sha256(f.read_bytes()).hexdigest()

    text = (f"model.safetensors {sha(path / 'model.safetensors')}\n"
            f"config.json {sha(path / 'config.json')}\n")
    fp = teacher_fingerprint(path)
    assert fp == hashlib.sha256(text.encode()).hexdigest()
    moved = shutil.copytree(path, tmp_path / "moved")
    assert teacher_fingerprint(moved) == fp
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))
    assert teacher_fingerprint(moved) != fp


def test_resolve_teacher_flag_env_and_package(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    monkeypatch.setenv(TEACHER_ENV, str(tmp_path))
    assert resolve_teacher(str(path)) == path  # the flag wins over the env
    assert resolve_teacher() == tmp_path
    with pytest.raises(CheckpointError, match="--teacher=.*nowhere: not a directory"):
        resolve_teacher(str(tmp_path / "nowhere"))
    monkeypatch.setenv(TEACHER_ENV, str(tmp_path / "gone"))
    with pytest.raises(CheckpointError, match=f"{TEACHER_ENV}=.*gone"):
        resolve_teacher()
    monkeypatch.delenv(TEACHER_ENV)
    fake = type(sys)("fake_teacher_package")
    fake.get_model_path = lambda: path
    monkeypatch.setitem(sys.modules, TEACHER_PACKAGE, fake)
    assert resolve_teacher() == path


def test_resolve_teacher_hub_branch(tiny, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    path, _ = tiny
    monkeypatch.delenv(TEACHER_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, TEACHER_PACKAGE, None)  # import now raises ImportError
    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_teacher() == path
    assert calls[0][0] == TEACHER_HUB_ID and "model.safetensors" in calls[0][1]["allow_patterns"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=f"--teacher DIR or set {TEACHER_ENV}"):
        resolve_teacher()
    assert len(calls) == 1  # offline: the hub is not contacted

    def unreachable(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(CheckpointError, match="LocalEntryNotFoundError.*--teacher DIR"):
        resolve_teacher()


def test_init_student_from_teacher_copies_chosen_layers(tmp_path):
    dims = {**TINY, "layers": 6}
    tpath = write_hf_dir(tmp_path / "t6", make_tensors(**dims), hf_config(**dims))
    tconfig, teacher, _ = load_hf_bert(tpath)
    sconfig = tconfig.replace(num_layers=3, num_labels=2)
    ids = jnp.zeros((1, 4), jnp.int32)
    student = Transformer(sconfig).init(jax.random.key(3), ids, jnp.ones_like(ids))["params"]
    before = jax.tree.map(np.array, student)
    new = init_student_from_teacher(student, teacher, layers=(0, 2, 4))

    jax.tree.map(np.testing.assert_array_equal, student, before)  # inputs untouched
    for j, i in enumerate((0, 2, 4)):
        jax.tree.map(np.testing.assert_array_equal, new["encoder"]["layer"][str(j)],
                     teacher["encoder"]["layer"][str(i)])
    jax.tree.map(np.testing.assert_array_equal, new["embeddings"], teacher["embeddings"])
    for head in ("pooler", "classifier"):  # not copied
        jax.tree.map(np.testing.assert_array_equal, new[head], before[head])
    pooler = new["pooler"]["dense"]["kernel"]
    assert not np.array_equal(pooler, teacher["pooler"]["dense"]["kernel"])

    partial = init_student_from_teacher(student, teacher, layers=(5,), include_embeddings=False)
    jax.tree.map(np.testing.assert_array_equal, partial["encoder"]["layer"]["0"],
                 teacher["encoder"]["layer"]["5"])
    jax.tree.map(np.testing.assert_array_equal, partial["encoder"]["layer"]["1"],
                 before["encoder"]["layer"]["1"])
    jax.tree.map(np.testing.assert_array_equal, partial["embeddings"], before["embeddings"])

    with pytest.raises(ConfigError, match="teacher has layers 0..5"):
        init_student_from_teacher(student, teacher, layers=(0, 6))
    with pytest.raises(ConfigError, match="4 layers asked, student has 3"):
        init_student_from_teacher(student, teacher, layers=(0, 1, 2, 3))
    narrow = tconfig.replace(num_layers=3, hidden_size=16, intermediate_size=64)
    narrow_params = Transformer(narrow).init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]
    mismatch = r"teacher encoder/layer/0/.*\[32\] but student.*\[16\]: widths must match"
    with pytest.raises(ConfigError, match=mismatch):
        init_student_from_teacher(narrow_params, teacher, include_embeddings=False)



def test_init_student_from_teacher_head(tmp_path):
    """include_head copies a fine-tuned teacher's pooler and classifier; a headless teacher
    (a pretrained checkpoint) is a ConfigError naming the missing subtree."""
    dims = {**TINY, "layers": 6}
    tpath = write_hf_dir(tmp_path / "t6", make_tensors(**dims), hf_config(**dims))
    tconfig, teacher, _ = load_hf_bert(tpath, num_labels=2, rng=jax.random.key(1))
    ids = jnp.zeros((1, 4), jnp.int32)
    student = Transformer(tconfig.replace(num_layers=3)).init(
        jax.random.key(3), ids, jnp.ones_like(ids))["params"]
    # the copy is observable: the fresh student head differs from the teacher's
    assert not np.array_equal(student["classifier"]["kernel"], teacher["classifier"]["kernel"])
    new = init_student_from_teacher(student, teacher, layers=(1, 3, 5), include_head=True)
    for head in ("pooler", "classifier"):
        jax.tree.map(np.testing.assert_array_equal, new[head], teacher[head])
    jax.tree.map(np.testing.assert_array_equal, new["encoder"]["layer"]["2"],
                 teacher["encoder"]["layer"]["5"])
    headless = load_hf_bert(tpath, num_labels=0)[1]
    with pytest.raises(ConfigError, match="teacher params have no classifier"):
        init_student_from_teacher(student, headless, include_head=True)

# ----- parity with the PyTorch reference outputs of all-MiniLM-L6-v2 -----

needs_minilm = pytest.mark.skipif(importlib.util.find_spec(TEACHER_PACKAGE) is None,
                                  reason=f"{TEACHER_PACKAGE} not installed")


@pytest.fixture(scope="module")
def minilm():
    return load_hf_bert(importlib.import_module(TEACHER_PACKAGE).get_model_path())


@needs_minilm
def test_minilm_parity(minilm, minilm_fixture_path):
    ref = np.load(minilm_fixture_path)
    config, params, _ = minilm
    assert config.num_layers == 6 and config.hidden_size == 384 and config.use_pooler
    n_params = sum(x.size for x in jax.tree.leaves(params))
    assert n_params == 22_713_216
    mask = ref["attention_mask"]
    out = Transformer(config).apply({"params": params}, jnp.asarray(ref["input_ids"]),
                                    jnp.asarray(mask), jnp.asarray(ref["token_type_ids"]),
                                    output_hidden_states=True)
    valid = mask.astype(bool)
    errors = [float(np.abs(np.asarray(ours)[valid] - want[valid]).max())
              for ours, want in zip(out.hidden_states, ref["hidden_states"], strict=True)]
    last = np.asarray(out.last_hidden_state, np.float64)
    summed = (last * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    embedding = summed / np.maximum(np.linalg.norm(summed, axis=-1, keepdims=True), 1e-12)
    emb_err = float(np.abs(embedding - ref["sentence_embedding"]).max())
    pool_err = float(np.abs(np.asarray(out.pooled) - ref["pooler_output"]).max())
    shown = ", ".join(f"{e:.2e}" for e in errors)
    print(f"\nMiniLM parity max abs error: hidden states [{shown}], "
          f"sentence embedding {emb_err:.2e}, pooler {pool_err:.2e}")
    assert len(errors) == 7 and max(errors) < 1e-4
    assert emb_err < 1e-5
    assert pool_err < 1e-4


@needs_minilm
def test_minilm_tokenizer_gives_reference_ids(minilm, minilm_fixture_path):
    from tokenizers import Tokenizer

    ref = np.load(minilm_fixture_path)
    _, _, tokenizer_path = minilm
    assert tokenizer_path.name == "tokenizer.json"
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    ids = [e.ids for e in tok.encode_batch([str(s) for s in ref["sentences"]])]
    np.testing.assert_array_equal([len(x) for x in ids], ref["token_lengths"])
    np.testing.assert_array_equal(np.concatenate(ids), ref["token_ids_flat"])
