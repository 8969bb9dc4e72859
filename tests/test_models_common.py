"""Properties every model must have: padding invariance, determinism, dropout, no retracing,
bf16 compute, closed-form parameter counts, and the registry / README entry points."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.experiment_utils import readme_snippet_output
from tkd_jax.errors import ConfigError
from tkd_jax.models import (
    BASELINES,
    PRESETS,
    CNNConfig,
    RNNConfig,
    TransformerConfig,
    count_params,
    create_model,
    model_config,
)

VOCAB = 50
SMALL_RNN = dict(embed_dim=16, hidden_size=12)
# name -> (registry name, overrides): every model family at test size.
MODELS = {
    "tiny_cls": ("tiny", {}),
    "tiny_mean": ("tiny", dict(pooling="mean", use_pooler=False)),
    "tiny_paper_style": ("tiny", dict(activation="relu", position="sinusoidal", use_pooler=False)),
    "rnn": ("rnn", SMALL_RNN),
    "lstm": ("lstm", SMALL_RNN),
    "bilstm": ("bilstm", dict(SMALL_RNN, num_layers=2)),
    "cnn": ("cnn", dict(embed_dim=16, num_filters=8)),
}


def _model(key, **extra):
    name, overrides = MODELS[key]
    return create_model(name, num_labels=3, vocab_size=VOCAB, **overrides, **extra)


def _seqs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, VOCAB, size=n).astype(np.int32) for n in lengths]
    types = [(np.arange(n) >= n // 2).astype(np.int32) for n in lengths]
    return ids, types


def _pad(seqs, total, value=0):
    return np.stack([np.pad(s, (0, total - len(s)), constant_values=value) for s in seqs])


def _init(model, length=8):
    ids = jnp.ones((2, length), jnp.int32)
    return jax.jit(model.init)(jax.random.key(0), ids, jnp.ones_like(ids))["params"]


@pytest.mark.parametrize("key", list(MODELS))
def test_padding_does_not_change_logits(key):
    model = _model(key)
    params = _init(model)
    apply = jax.jit(lambda p, i, m, t: model.apply({"params": p}, i, m, t))
    # Row 0 is unpadded at length 9; rows 1-2 (lengths 5 and 1) are padded either way; row 3
    # is all padding (a filler row of a fixed-size batch) and must stay finite. Two shapes
    # only, so each model compiles twice.
    ids, types = _seqs([9, 5, 1, 0])
    mask = [np.ones_like(s) for s in ids]
    short = apply(params, _pad(ids, 9), _pad(mask, 9), _pad(types, 9))
    # Padded token types are junk on purpose: the mask alone must hide them.
    long = apply(params, _pad(ids, 16), _pad(mask, 16), _pad(types, 16, value=1))
    real = slice(0, 3)  # an all-padding row has no content to be invariant about
    np.testing.assert_allclose(long.logits[real], short.logits[real], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(long.pooled[real], short.pooled[real], atol=1e-5, rtol=1e-5)
    assert np.all(np.isfinite(long.logits)) and np.all(np.isfinite(short.logits))


@pytest.mark.parametrize("key", ["tiny_cls", "rnn", "cnn"])  # one per model class
def test_deterministic_and_dropout(key):
    model = _model(key, dropout_rate=0.3)
    params = _init(model)
    ids, types = _seqs([8, 8], seed=1)
    ids, types, mask = np.stack(ids), np.stack(types), np.ones((2, 8), np.int32)
    evaluate = jax.jit(lambda: model.apply({"params": params}, ids, mask, types).logits)
    train = jax.jit(
        lambda k: model.apply(
            {"params": params}, ids, mask, types, deterministic=False, rngs={"dropout": k}
        ).logits
    )
    np.testing.assert_array_equal(evaluate(), evaluate())  # identical inputs, identical outputs
    k1, k2 = jax.random.key(1), jax.random.key(2)
    np.testing.assert_array_equal(train(k1), train(k1))
    assert not np.allclose(train(k1), train(k2), atol=1e-6)
    assert not np.allclose(train(k1), evaluate(), atol=1e-6)


@pytest.mark.parametrize("key", ["tiny_cls", "lstm"])
def test_jit_does_not_retrace_same_shapes(key):
    model = _model(key)
    params = _init(model)
    traces = []

    @jax.jit
    def forward(p, ids, mask):
        traces.append(ids.shape)  # runs only while tracing
        return model.apply({"params": p}, ids, mask).logits

    ids = np.ones((2, 8), np.int32)
    first = forward(params, ids, np.ones_like(ids))
    second = forward(params, ids + 1, np.ones_like(ids))  # new values, same shapes
    assert len(traces) == 1 and not np.allclose(first, second)
    forward(params, np.ones((2, 9), np.int32), np.ones((2, 9), np.int32))  # new shape
    assert len(traces) == 2


# bf16 keeps ~3 significant digits. Tolerance: every bf16 logit within 2% of the largest
# |fp32 logit| (measured: 0.3-0.6% for these models), and the same argmax.
BF16_RTOL_OF_SCALE = 2e-2


@pytest.mark.parametrize("key", ["tiny_mean", "lstm", "cnn"])
def test_bf16_compute_close_to_fp32(key):
    fp32 = _model(key)
    bf16 = _model(key, dtype=jnp.bfloat16)
    params = _init(bf16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))  # fp32 master params
    ids, types = _seqs([12, 7], seed=4)
    ids, types = _pad(ids, 12), _pad(types, 12)
    mask = (ids != 0).astype(np.int32)
    # Scale the classifier up so logits are O(1) and the tolerance is meaningful.
    params["classifier"]["kernel"] = params["classifier"]["kernel"] * 30.0
    want = jax.jit(fp32.apply)({"params": params}, ids, mask, types)
    got = jax.jit(bf16.apply)({"params": params}, ids, mask, types)
    assert got.logits.dtype == jnp.float32
    assert got.pooled.dtype == jnp.bfloat16
    scale = np.abs(np.asarray(want.logits)).max()
    assert scale > 0.3
    np.testing.assert_allclose(got.logits, want.logits, atol=BF16_RTOL_OF_SCALE * scale, rtol=0)
    assert not np.array_equal(got.logits, want.logits)  # bf16 really was used
    np.testing.assert_array_equal(np.argmax(got.logits, -1), np.argmax(want.logits, -1))


# --------------------------------------------------------------------------- parameter counts


def transformer_params(c: TransformerConfig) -> int:
    h, f = c.hidden_size, c.intermediate_size
    embeddings = c.vocab_size * h + c.type_vocab_size * h + 2 * h  # + LayerNorm
    if c.position == "learned":
        embeddings += c.max_len * h
    attention = 4 * (h * h + h) + 2 * h  # W^Q, W^K, W^V, W^O with biases; LayerNorm
    ffn = (h * f + f) + (f * h + h) + 2 * h  # eq 6; LayerNorm
    pooler = h * h + h if c.use_pooler else 0
    classifier = h * c.num_labels + c.num_labels
    return embeddings + c.num_layers * (attention + ffn) + pooler + classifier


def rnn_params(c: RNNConfig) -> int:
    dirs = 2 if c.bidirectional else 1
    gates = {"rnn": 1, "lstm": 4}[c.cell]
    total = (c.vocab_size + c.type_vocab_size) * c.embed_dim
    for layer in range(c.num_layers):
        d_in = c.embed_dim if layer == 0 else dirs * c.hidden_size
        total += dirs * gates * (d_in * c.hidden_size + c.hidden_size ** 2 + c.hidden_size)
    return total + dirs * c.hidden_size * c.num_labels + c.num_labels


def cnn_params(c: CNNConfig) -> int:
    convs = sum(k * c.embed_dim * c.num_filters + c.num_filters for k in c.kernel_sizes)
    features = len(c.kernel_sizes) * c.num_filters
    return (c.vocab_size + c.type_vocab_size) * c.embed_dim + convs + features * c.num_labels + (
        c.num_labels
    )


CLOSED_FORM = {TransformerConfig: transformer_params, RNNConfig: rnn_params, CNNConfig: cnn_params}


def _shape_count(model) -> int:
    """Parameters of ``model`` from shapes only (jax.eval_shape: no real initialisation)."""
    ids = jnp.ones((1, 4), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), ids, ids)["params"]
    return count_params(shapes)


def test_minilm_l6_encoder_with_pooler_is_22_713_216():
    assert _shape_count(create_model("minilm_l6", num_labels=0)) == 22_713_216


def test_paper_preset_count():
    model = create_model("paper", num_labels=2)
    assert _shape_count(model) == transformer_params(model.config) == 53_458_946


@pytest.mark.parametrize(
    "name, num_labels",
    [(n, k) for n in sorted(PRESETS) for k in (0, 1, 3)]
    + [(n, k) for n in sorted(BASELINES) for k in (1, 3)],  # baselines always classify
)
def test_every_model_count_matches_closed_form(name, num_labels):
    model = create_model(name, num_labels=num_labels)
    assert _shape_count(model) == CLOSED_FORM[type(model.config)](model.config)


def test_count_params_on_real_arrays():
    params = {"a": jnp.zeros((3, 4)), "b": {"c": jnp.zeros(5), "d": jnp.zeros(())}}
    assert count_params(params) == 12 + 5 + 1


# --------------------------------------------------------------------------- registry, README


def test_create_model_overrides_and_errors():
    cfg = model_config("BiLSTM", num_labels=1, vocab_size=77, dtype=jnp.bfloat16, hidden_size=5)
    assert (cfg.num_labels, cfg.vocab_size, cfg.dtype, cfg.hidden_size) == (1, 77, jnp.bfloat16, 5)
    assert cfg.bidirectional and BASELINES["bilstm"].hidden_size != 5  # preset untouched
    assert create_model("tiny", num_labels=2).config.vocab_size == 30522
    with pytest.raises(ConfigError, match="valid: .*bilstm.*cnn.*minilm_l6.*paper"):
        create_model("gpt", num_labels=2)
    with pytest.raises(ConfigError, match="kernel_sizes"):
        create_model("rnn", num_labels=2, kernel_sizes=(3,))


def test_readme_models_snippet_runs_as_written():
    out = readme_snippet_output("create_model(\"paper\"")
    assert out.split() == ["(2,", "2)", str(53_458_946)]
