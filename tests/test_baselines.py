"""RNN / LSTM / BiLSTM / CNN baselines against float64 NumPy recurrences and convolutions."""

import jax
import numpy as np
import pytest

from tkd_jax.errors import ConfigError
from tkd_jax.models import CNNClassifier, CNNConfig, RNNClassifier, RNNConfig

VOCAB = 30
LENGTHS = [6, 3, 1]


def _batch(total=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(len(LENGTHS), total)).astype(np.int32)
    mask = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        tt[b, n // 2 : n] = 1
        ids[b, n:] = 0
    return ids, mask, tt


def _f64(x):
    return np.asarray(x, np.float64)


def _np_embed(p, ids, tt):
    return _f64(p["embed"]["word"]["embedding"])[ids] + _f64(p["embed"]["token_type"]["embedding"])[
        tt
    ]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_elman(cell, xs):
    """h_t = tanh(x_t W_i + b + h_{t-1} W_h), h_0 = 0. Returns [len, hidden]."""
    h = np.zeros(cell["h"]["kernel"].shape[0])
    out = []
    for x in xs:
        h = np.tanh(x @ _f64(cell["i"]["kernel"]) + _f64(cell["i"]["bias"]) + h @ _f64(
            cell["h"]["kernel"]))
        out.append(h)
    return np.stack(out)


def np_lstm(cell, xs):
    """Standard LSTM (gates i, f, g, o; one bias per gate on the recurrent projection)."""
    hidden = cell["hi"]["kernel"].shape[0]
    h, c = np.zeros(hidden), np.zeros(hidden)
    out = []
    for x in xs:
        z = {
            g: x @ _f64(cell[f"i{g}"]["kernel"]) + h @ _f64(cell[f"h{g}"]["kernel"])
            + _f64(cell[f"h{g}"]["bias"])
            for g in "ifgo"
        }
        c = _sigmoid(z["f"]) * c + _sigmoid(z["i"]) * np.tanh(z["g"])
        h = _sigmoid(z["o"]) * np.tanh(c)
        out.append(h)
    return np.stack(out)


def _classifier(p, pooled):
    return pooled @ _f64(p["classifier"]["kernel"]) + _f64(p["classifier"]["bias"])


def _rnn_cfg(**kw):
    return RNNConfig(vocab_size=VOCAB, embed_dim=8, hidden_size=6, num_labels=3, **kw)


@pytest.mark.parametrize("cell, np_cell", [("rnn", np_elman), ("lstm", np_lstm)])
def test_unidirectional_matches_numpy(cell, np_cell):
    cfg = _rnn_cfg(cell=cell, num_layers=2)
    ids, mask, tt = _batch()
    model = RNNClassifier(cfg)
    p = model.init(jax.random.key(0), ids, mask)["params"]
    out = model.apply({"params": p}, ids, mask, tt, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.attentions is None
    for b, n in enumerate(LENGTHS):
        h = _np_embed(p, ids[b, :n], tt[b, :n])
        for layer in range(2):
            h = np_cell(p[f"rnn_{layer}"]["cell"], h)
        np.testing.assert_allclose(out.last_hidden_state[b, :n], h, atol=1e-5)
        assert np.all(np.asarray(out.last_hidden_state[b, n:]) == 0)
        np.testing.assert_allclose(out.pooled[b], h[-1], atol=1e-5)  # state at last real token
        np.testing.assert_allclose(out.logits[b], _classifier(p, h[-1]), atol=1e-5)


def test_bilstm_backward_reverses_only_the_real_tokens():
    cfg = _rnn_cfg(cell="lstm", bidirectional=True)
    ids, mask, tt = _batch()
    model = RNNClassifier(cfg)
    p = model.init(jax.random.key(1), ids, mask)["params"]
    out = model.apply({"params": p}, ids, mask, tt)
    assert out.pooled.shape == (3, 12)
    for b, n in enumerate(LENGTHS):
        x = _np_embed(p, ids[b, :n], tt[b, :n])
        fwd = np_lstm(p["rnn_0"]["forward_rnn"]["cell"], x)
        bwd = np_lstm(p["rnn_0"]["backward_rnn"]["cell"], x[::-1])[::-1]  # back in order
        np.testing.assert_allclose(out.last_hidden_state[b, :n], np.concatenate([fwd, bwd], -1),
                                   atol=1e-5)
        pooled = np.concatenate([fwd[-1], bwd[0]])  # each direction's final state
        np.testing.assert_allclose(out.pooled[b], pooled, atol=1e-5)
        np.testing.assert_allclose(out.logits[b], _classifier(p, pooled), atol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_rnn_pooling_choices(pooling):
    cfg = _rnn_cfg(cell="rnn", pooling=pooling)
    ids, mask, tt = _batch()
    model = RNNClassifier(cfg)
    p = model.init(jax.random.key(2), ids, mask)["params"]
    out = model.apply({"params": p}, ids, mask, tt)
    reduce = {"max": np.max, "mean": np.mean}[pooling]
    for b, n in enumerate(LENGTHS):
        h = np_elman(p["rnn_0"]["cell"], _np_embed(p, ids[b, :n], tt[b, :n]))
        np.testing.assert_allclose(out.pooled[b], reduce(h, axis=0), atol=1e-5)


def np_kim_cnn(p, x, kernel_sizes):
    """Windows starting at each real token, zero vectors past the end, ReLU, max over time."""
    n = x.shape[0]
    feats = []
    for k in kernel_sizes:
        w, bias = _f64(p[f"conv_{k}"]["kernel"]), _f64(p[f"conv_{k}"]["bias"])  # [k, in, out]
        padded = np.concatenate([x, np.zeros((k - 1, x.shape[1]))])
        maps = np.stack([np.einsum("ki,kio->o", padded[t : t + k], w) + bias for t in range(n)])
        feats.append(np.maximum(maps, 0).max(0))
    return np.concatenate(feats)


def test_cnn_matches_numpy():
    cfg = CNNConfig(vocab_size=VOCAB, embed_dim=8, kernel_sizes=(2, 3), num_filters=5,
                    num_labels=3)
    ids, mask, tt = _batch()
    model = CNNClassifier(cfg)
    p = model.init(jax.random.key(3), ids, mask)["params"]
    out = model.apply({"params": p}, ids, mask, tt)
    assert out.pooled.shape == (3, 10) and out.last_hidden_state.shape == (3, 6, 10)
    for b, n in enumerate(LENGTHS):
        pooled = np_kim_cnn(p, _np_embed(p, ids[b, :n], tt[b, :n]), (2, 3))
        np.testing.assert_allclose(out.pooled[b], pooled, atol=1e-5)
        np.testing.assert_allclose(out.logits[b], _classifier(p, pooled), atol=1e-5)


def test_token_types_change_the_output():
    ids, mask, tt = _batch()
    cnn = CNNConfig(vocab_size=VOCAB, embed_dim=8, num_filters=4)
    for model in (RNNClassifier(_rnn_cfg()), CNNClassifier(cnn)):
        p = model.init(jax.random.key(0), ids, mask)["params"]
        with_types = model.apply({"params": p}, ids, mask, tt).logits
        without = model.apply({"params": p}, ids, mask).logits
        assert not np.allclose(with_types[0], without[0])


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: RNNConfig(cell="gru"), "cell"),
        (lambda: RNNConfig(pooling="attention"), "pooling"),
        (lambda: RNNConfig(hidden_size=0), "hidden_size"),
        (lambda: CNNConfig(kernel_sizes=()), "kernel_sizes"),
        (lambda: CNNConfig(num_filters=0), "num_filters"),
        (lambda: CNNConfig().replace(filters=3), "filters"),
    ],
)
def test_bad_baseline_config(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


def test_kernel_sizes_list_is_made_hashable():
    cfg = CNNConfig(kernel_sizes=[3, 4])
    assert cfg.kernel_sizes == (3, 4) and hash(cfg) == hash(CNNConfig(kernel_sizes=(3, 4)))
