"""The Transformer against an independent float64 NumPy implementation of the paper's eqs 1-8."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import erf

from tkd_jax.errors import ConfigError
from tkd_jax.models import Transformer, get_config, sinusoidal_positions
from tkd_jax.models.transformer import Attention, attention_probs

# --------------------------------------------------------------------------- NumPy reference


def np_pe(length, d):
    """Eqs 1-2 written out element by element."""
    pe = np.zeros((length, d))
    for pos in range(length):
        for i in range(d // 2):
            pe[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
            pe[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
    return pe


def np_layer_norm(x, p, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_dense(x, p):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


NP_ACT = {"relu": lambda x: np.maximum(x, 0), "gelu": lambda x: 0.5 * x * (1 + erf(x / 2**0.5))}


def np_head_attention(q, k, v, key_mask):
    """Eq 8 for one sequence and one head: softmax(q k^T / sqrt(d_k)) v, masked keys excluded."""
    s = q @ k.T / np.sqrt(q.shape[-1])
    s = np.where(key_mask[None, :], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    return p @ v, p


def np_multi_head(x, key_mask, p, heads):
    """Eqs 3-5 with an explicit loop over heads: Concat(head_1..head_h) W^O (before residual)."""
    dk = x.shape[-1] // heads
    q, k, v = (np_dense(x, p["self"][n]) for n in ("query", "key", "value"))
    outs, probs = [], []
    for i in range(heads):
        cols = slice(i * dk, (i + 1) * dk)  # W^Q_i, W^K_i, W^V_i are column blocks
        o, pr = np_head_attention(q[:, cols], k[:, cols], v[:, cols], key_mask)
        outs.append(o)
        probs.append(pr)
    return np_dense(np.concatenate(outs, -1), p["output"]["dense"]), np.stack(probs)


def np_transformer(params, cfg, ids, mask, tt):
    """Full forward for a batch, one sequence at a time. Returns (logits, states, probs)."""
    emb = params["embeddings"]
    all_logits, all_states, all_probs = [], [], []
    for b in range(ids.shape[0]):
        length = ids.shape[1]
        x = np.asarray(emb["word_embeddings"]["embedding"], np.float64)[ids[b]]
        if cfg.scale_embeddings:
            x = x * math.sqrt(cfg.hidden_size)  # Vaswani et al. section 3.4
        if cfg.position == "learned":
            x = x + np.asarray(emb["position_embeddings"]["embedding"])[:length]
        else:
            x = x + np_pe(length, cfg.hidden_size)
        x = x + np.asarray(emb["token_type_embeddings"]["embedding"])[tt[b]]
        x = np_layer_norm(x, emb["LayerNorm"], cfg.layer_norm_eps)
        states, probs = [x], []
        for i in range(cfg.num_layers):
            lp = params["encoder"]["layer"][str(i)]
            a, pr = np_multi_head(x, mask[b], lp["attention"], cfg.num_heads)
            x = np_layer_norm(x + a, lp["attention"]["output"]["LayerNorm"], cfg.layer_norm_eps)
            h = NP_ACT[cfg.activation](np_dense(x, lp["intermediate"]["dense"]))  # eq 6
            x = np_layer_norm(
                x + np_dense(h, lp["output"]["dense"]), lp["output"]["LayerNorm"],
                cfg.layer_norm_eps,
            )
            states.append(x)
            probs.append(pr)
        if cfg.pooling == "cls":
            pooled = x[0]
        else:
            pooled = x[mask[b].astype(bool)].mean(0)
        if cfg.use_pooler:
            pooled = np.tanh(np_dense(pooled, params["pooler"]["dense"]))
        all_logits.append(np_dense(pooled, params["classifier"]))
        all_states.append(states)
        all_probs.append(probs)
    return np.stack(all_logits), all_states, all_probs


# --------------------------------------------------------------------------- helpers


def _batch(rng, vocab, lengths, total):
    ids = rng.integers(1, vocab, size=(len(lengths), total)).astype(np.int32)
    mask = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        tt[b, n // 2 : n] = 1  # second segment
        ids[b, n:] = 0  # [PAD]
    return ids, mask, tt


def _init(cfg, ids, mask):
    return Transformer(cfg).init(jax.random.key(0), ids, mask)["params"]


def _shapes(cfg, ids):
    """The param tree as ShapeDtypeStructs (no real initialisation)."""
    return jax.eval_shape(Transformer(cfg).init, jax.random.key(0), ids, ids)["params"]


# --------------------------------------------------------------------------- tests


def test_sinusoidal_positions_equal_eqs_1_2():
    np.testing.assert_allclose(sinusoidal_positions(60, 24), np_pe(60, 24), atol=1e-6, rtol=0)
    pe = sinusoidal_positions(3, 8)
    assert pe.dtype == np.float32 and pe.shape == (3, 8)
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0, 1, 0, 1])  # sin 0, cos 0


def test_attention_probs_equal_eq_8_with_mask():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)  # [b, l, h, d_k]
    k = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    key_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    got = np.asarray(attention_probs(jnp.asarray(q), jnp.asarray(k), jnp.asarray(key_mask)))
    assert got.shape == (2, 3, 5, 5) and got.dtype == np.float32
    for b in range(2):
        for h in range(3):
            v = np.eye(5)  # p @ I = p
            _, want = np_head_attention(q[b, :, h], k[b, :, h], v, key_mask[b])
            np.testing.assert_allclose(got[b, h], want, atol=1e-6)
    assert np.all(got[0, :, :, 3:] == 0.0)  # exactly zero mass on padded keys


def test_fully_padded_row_is_finite():
    q = jnp.ones((1, 4, 2, 8))
    probs = attention_probs(q, q, jnp.zeros((1, 4), bool))
    np.testing.assert_allclose(np.asarray(probs), 0.25, atol=1e-7)  # uniform, not NaN


def test_multi_head_block_equals_per_head_concat_then_w_o():
    cfg = get_config("tiny", num_heads=4, hidden_size=32, dropout_rate=0.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 32)).astype(np.float32)
    key_mask = np.array([[1] * 6, [1] * 4 + [0] * 2], bool)
    module = Attention(cfg)
    params = module.init(jax.random.key(3), x, key_mask)["params"]
    out, probs = module.apply({"params": params}, x, key_mask)
    for b in range(2):
        a, want_probs = np_multi_head(x[b].astype(np.float64), key_mask[b], params, 4)
        want = np_layer_norm(x[b] + a, params["output"]["LayerNorm"], cfg.layer_norm_eps)
        np.testing.assert_allclose(np.asarray(out[b]), want, atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(probs[b]), want_probs, atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(activation="relu", position="sinusoidal", use_pooler=False,
             scale_embeddings=True),  # the paper's choices
        dict(activation="relu", position="sinusoidal", use_pooler=False),
        dict(activation="gelu", position="learned", use_pooler=True),  # BERT's
        dict(pooling="mean", use_pooler=False),
    ],
)
def test_full_forward_equals_numpy(overrides):
    cfg = get_config("tiny", vocab_size=50, num_labels=3, **overrides)
    ids, mask, tt = _batch(np.random.default_rng(2), 50, [7, 4], 7)
    params = _init(cfg, ids, mask)
    out = Transformer(cfg).apply(
        {"params": params}, ids, mask, tt, output_hidden_states=True, output_attentions=True
    )
    logits, states, probs = np_transformer(params, cfg, ids, mask, tt)
    assert out.logits.dtype == jnp.float32 and out.logits.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(out.logits), logits, atol=1e-5, rtol=1e-4)
    for b in range(2):
        for i in range(cfg.num_layers + 1):
            np.testing.assert_allclose(
                np.asarray(out.hidden_states[i][b]), states[b][i], atol=5e-5, rtol=1e-4
            )
        for i in range(cfg.num_layers):
            np.testing.assert_allclose(np.asarray(out.attentions[i][b]), probs[b][i], atol=1e-6)


def test_hidden_states_and_attention_maps():
    cfg = get_config("tiny", vocab_size=50)
    ids, mask, tt = _batch(np.random.default_rng(3), 50, [9, 5, 2], 9)
    params = _init(cfg, ids, mask)
    out = Transformer(cfg).apply(
        {"params": params}, ids, mask, tt, output_hidden_states=True, output_attentions=True
    )
    assert len(out.hidden_states) == cfg.num_layers + 1
    assert all(h.shape == (3, 9, cfg.hidden_size) for h in out.hidden_states)
    np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
    assert len(out.attentions) == cfg.num_layers
    for a in out.attentions:
        a = np.asarray(a)
        assert a.shape == (3, cfg.num_heads, 9, 9)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-6)
        for b, n in enumerate([9, 5, 2]):
            assert np.all(a[b, :, :, n:] == 0.0)
    plain = Transformer(cfg).apply({"params": params}, ids, mask, tt)
    assert plain.hidden_states is None and plain.attentions is None
    np.testing.assert_array_equal(plain.logits, out.logits)


def test_param_paths_mirror_hf_bert():
    cfg = get_config("tiny", vocab_size=50, num_labels=3)
    ids = np.ones((1, 4), np.int32)
    p = _shapes(cfg, ids)
    assert p["embeddings"]["word_embeddings"]["embedding"].shape == (50, 32)
    assert p["embeddings"]["position_embeddings"]["embedding"].shape == (512, 32)
    assert p["embeddings"]["token_type_embeddings"]["embedding"].shape == (2, 32)
    layer = p["encoder"]["layer"]["1"]
    for name in ("query", "key", "value"):
        assert layer["attention"]["self"][name]["kernel"].shape == (32, 32)
    assert layer["attention"]["output"]["dense"]["kernel"].shape == (32, 32)
    assert layer["intermediate"]["dense"]["kernel"].shape == (32, 64)
    assert layer["output"]["dense"]["kernel"].shape == (64, 32)
    assert set(layer["output"]["LayerNorm"]) == {"scale", "bias"}
    assert p["pooler"]["dense"]["kernel"].shape == (32, 32)
    assert p["classifier"]["kernel"].shape == (32, 3)
    bare = _shapes(get_config("tiny", num_labels=0, position="sinusoidal", use_pooler=False), ids)
    assert set(bare) == {"embeddings", "encoder"}
    assert "position_embeddings" not in bare["embeddings"]
    out = Transformer(get_config("tiny", num_labels=0)).apply(
        {"params": _init(get_config("tiny", num_labels=0), ids, ids)}, ids, ids
    )
    assert out.logits is None and out.pooled.shape == (1, 32)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(activation="tanh"), "activation"),
        (dict(position="rotary"), "position"),
        (dict(pooling="max"), "pooling"),
        (dict(num_heads=3), "hidden_size"),
        (dict(num_labels=-1), "num_labels"),
        (dict(hidden_sizes=3), "hidden_sizes"),
    ],
)
def test_bad_config_raises_config_error(overrides, field):
    with pytest.raises(ConfigError, match=field):
        get_config("tiny", **overrides)


def test_unknown_preset_and_too_long_input():
    with pytest.raises(ConfigError, match="tiny"):
        get_config("huge")
    cfg = get_config("tiny", max_len=8)
    ids = np.ones((1, 9), np.int32)
    with pytest.raises(ConfigError, match="max_len=8"):
        Transformer(cfg).init(jax.random.key(0), ids, ids)


def test_the_paper_preset_scales_word_embeddings_to_the_positions_size():
    """Unscaled, eqs 1-2's positions (RMS 0.71 a dimension) outweigh words initialised at std
    0.02 by 35 to 1; times sqrt(512) the two are of one size, as in Vaswani et al."""
    cfg = get_config("paper", num_labels=2)
    assert cfg.scale_embeddings and not get_config("minilm_l6", num_labels=2).scale_embeddings
    ids = np.arange(1, 129, dtype=np.int32)[None] * 7
    shapes = _shapes(cfg, ids)["embeddings"]["word_embeddings"]["embedding"]
    words = jax.random.normal(jax.random.key(0), shapes.shape) * cfg.initializer_range
    scaled = np.sqrt(np.mean(np.square(np.asarray(words[ids[0]]) * np.sqrt(cfg.hidden_size))))
    positions = np.sqrt(np.mean(np.square(sinusoidal_positions(128, cfg.hidden_size))))
    assert positions == pytest.approx(np.sqrt(0.5), rel=1e-6)
    assert 0.5 < scaled / positions < 0.8  # 0.45 / 0.71; unscaled it would be 0.028


def _fit_token_task(scale_embeddings: bool) -> float:
    """Train accuracy of a 1-layer paper-shaped model (sinusoidal positions, ReLU) after 150
    AdamW steps on a task only the tokens tell: class 1 iff token 5 occurs."""
    model = Transformer(get_config(
        "paper", num_labels=2, vocab_size=100, hidden_size=64, num_layers=1, num_heads=4,
        intermediate_size=256, dropout_rate=0.0, attention_dropout_rate=0.0,
        scale_embeddings=scale_embeddings))
    rng = np.random.default_rng(0)
    ids = rng.integers(10, 100, size=(512, 16)).astype(np.int32)
    labels = (rng.random(512) < 0.5).astype(np.int32)
    ids[labels == 1, rng.integers(1, 16, size=int(labels.sum()))] = 5
    ids[:, 0] = 1
    mask = np.ones_like(ids)
    params = model.init(jax.random.key(0), ids[:2], mask[:2])["params"]
    tx = optax.adamw(3e-4)

    @jax.jit
    def step(params, opt_state, batch, y):
        def loss(p):
            logits = model.apply({"params": p}, batch, jnp.ones_like(batch)).logits
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for k in range(150):
        rows = slice(k * 64 % 512, k * 64 % 512 + 64)
        params, opt_state = step(params, opt_state, ids[rows], labels[rows])
    logits = model.apply({"params": params}, ids, mask).logits
    return float(np.mean(np.asarray(logits).argmax(-1) == labels))


def test_scaled_embeddings_let_the_paper_model_learn_from_its_tokens():
    """Why the scale is there: unscaled, the sinusoids drown the word embeddings and the model
    stays at chance on a task only the tokens tell (as the 12-layer paper runs did on GLUE);
    scaled, it fits it."""
    assert _fit_token_task(scale_embeddings=True) >= 0.95
    assert _fit_token_task(scale_embeddings=False) <= 0.65
