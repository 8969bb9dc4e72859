"""The optax chain: decay mask, schedules, clipping, gradient accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tkd_jax.errors import ConfigError
from tkd_jax.models import create_model
from tkd_jax.train import optim


def _tiny_params():
    model = create_model("tiny", num_labels=2, vocab_size=50)
    ids = jnp.ones((1, 4), jnp.int32)
    return model.init(jax.random.key(0), ids, jnp.ones_like(ids))["params"]


def test_decay_mask_excludes_biases_and_layernorm():
    mask = optim.decay_mask(_tiny_params())
    flat = _flatten(mask)
    assert flat["encoder/layer/0/attention/self/query/kernel"] is True
    assert flat["embeddings/word_embeddings/embedding"] is True
    assert flat["encoder/layer/0/attention/self/query/bias"] is False
    assert flat["encoder/layer/0/output/LayerNorm/scale"] is False
    assert flat["embeddings/LayerNorm/bias"] is False
    assert flat["classifier/bias"] is False


def _flatten(tree):
    from flax import traverse_util

    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedule_warms_up_linearly_then_decays(kind):
    lr = optim.make_schedule(kind, peak=1e-3, warmup_steps=10, total_steps=100)
    np.testing.assert_allclose([float(lr(s)) for s in (0, 5, 10)], [0.0, 5e-4, 1e-3], rtol=1e-6)
    if kind == "constant":
        assert float(lr(99)) == pytest.approx(1e-3)
    else:
        assert float(lr(100)) == pytest.approx(0.0, abs=1e-9)
        assert 0 < float(lr(55)) < 1e-3
    if kind == "linear":
        assert float(lr(55)) == pytest.approx(5e-4, rel=1e-5)


def test_bad_schedule_and_accumulation_are_config_errors():
    with pytest.raises(ConfigError, match="config.schedule"):
        optim.make_schedule("step", peak=1e-3, warmup_steps=0, total_steps=10)
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        optim.make_optimizer(learning_rate=1e-3, total_steps=10, grad_accum_steps=0)


def test_weight_decay_is_decoupled_and_masked():
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
    tx, _ = optim.make_optimizer(learning_rate=0.1, total_steps=10, schedule="constant",
                                 weight_decay=0.5, grad_clip_norm=0)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    # step 0 of warmup 0: lr = 0.1 (constant), zero gradient -> only decay: -lr * wd * p
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates["dense"]["bias"], np.zeros(2))


def test_clipping_bounds_global_norm():
    params = {"w": jnp.zeros((3,))}
    clip = optax.clip_by_global_norm(1.0)
    g = {"w": jnp.array([30.0, 40.0, 0.0])}
    out, _ = clip.update(g, clip.init(params))
    np.testing.assert_allclose(out["w"], [0.6, 0.8, 0.0], rtol=1e-6)


def test_gradient_accumulation_equals_large_batch():
    """Two accumulated micro-batch gradients give the same update as their mean."""
    params = {"w": jnp.array([1.0, -2.0])}
    g1, g2 = {"w": jnp.array([0.2, 0.4])}, {"w": jnp.array([0.6, -0.2])}
    kw = dict(learning_rate=0.1, total_steps=4, schedule="constant", grad_clip_norm=0)
    acc, _ = optim.make_optimizer(grad_accum_steps=2, **kw)
    one, _ = optim.make_optimizer(**kw)
    s = acc.init(params)
    u1, s = acc.update(g1, s, params)
    np.testing.assert_array_equal(u1["w"], np.zeros(2))  # no update mid-accumulation
    u2, s = acc.update(g2, s, params)
    ref, _ = one.update({"w": (g1["w"] + g2["w"]) / 2}, one.init(params), params)
    np.testing.assert_allclose(u2["w"], ref["w"], rtol=1e-6)
