"""Masked-LM head: HF names, vocab-shaped fp32 logits, decoder tied to the word embedding."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from scipy.special import erf

from tkd_jax.models import Transformer, TransformerForMaskedLM, count_params, get_config


def _setup():
    cfg = get_config("tiny", vocab_size=40, num_labels=0, use_pooler=False)
    ids = np.array([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0]], np.int32)
    mask = (ids != 0).astype(np.int32)
    params = TransformerForMaskedLM(cfg).init(jax.random.key(0), ids, mask)["params"]
    # A non-zero decoder bias so the test sees that term.
    params["cls"]["predictions"]["bias"] = jnp.linspace(-1.0, 1.0, 40)
    return cfg, ids, mask, params


def test_mlm_shapes_and_hf_names():
    cfg, ids, mask, params = _setup()
    out = TransformerForMaskedLM(cfg).apply({"params": params}, ids, mask)
    assert out.logits.shape == (2, 5, 40) and out.logits.dtype == jnp.float32
    assert out.pooled is None and out.last_hidden_state.shape == (2, 5, 32)
    flat = traverse_util.flatten_dict(params["cls"], sep="/")
    assert sorted(flat) == [
        "predictions/bias",
        "predictions/transform/LayerNorm/bias",
        "predictions/transform/LayerNorm/scale",
        "predictions/transform/dense/bias",
        "predictions/transform/dense/kernel",
    ]
    # The head adds only transform + bias: no separate [hidden, vocab] decoder matrix.
    encoder = {k: v for k, v in params.items() if k != "cls"}
    assert count_params(params) - count_params(encoder) == 32 * 32 + 32 + 2 * 32 + 40


def test_decoder_is_the_word_embedding_matrix():
    cfg, ids, mask, params = _setup()
    out = TransformerForMaskedLM(cfg).apply({"params": params}, ids, mask)
    emb = np.asarray(params["embeddings"]["word_embeddings"]["embedding"], np.float64)
    t = params["cls"]["predictions"]["transform"]
    h = np.asarray(out.last_hidden_state, np.float64) @ np.asarray(t["dense"]["kernel"])
    h = h + np.asarray(t["dense"]["bias"])
    h = 0.5 * h * (1 + erf(h / 2**0.5))
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mu) / np.sqrt(var + cfg.layer_norm_eps) * np.asarray(t["LayerNorm"]["scale"])
    h = h + np.asarray(t["LayerNorm"]["bias"])
    want = h @ emb.T + np.linspace(-1.0, 1.0, 40)
    np.testing.assert_allclose(np.asarray(out.logits), want, atol=1e-5, rtol=1e-5)

    # Changing one embedding row moves exactly that vocabulary column of the decoder (the
    # input tokens 5..11 do not include 3, so the encoder output is unchanged).
    row = 3
    bumped = jax.tree.map(lambda x: x, params)  # a fresh nested dict, params stays intact
    bumped["embeddings"]["word_embeddings"]["embedding"] = (
        params["embeddings"]["word_embeddings"]["embedding"].at[row].add(1.0)
    )
    out2 = TransformerForMaskedLM(cfg).apply({"params": bumped}, ids, mask)
    diff = np.asarray(out2.logits - out.logits)
    np.testing.assert_allclose(np.delete(diff, row, axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(diff[..., row], h.sum(-1), atol=1e-4, rtol=1e-5)


def test_mlm_encoder_params_drop_into_a_transformer():
    cfg, ids, mask, params = _setup()
    mlm = TransformerForMaskedLM(cfg).apply({"params": params}, ids, mask)
    encoder = {k: v for k, v in params.items() if k != "cls"}
    plain = Transformer(cfg).apply({"params": encoder}, ids, mask)
    np.testing.assert_array_equal(plain.last_hidden_state, mlm.last_hidden_state)
