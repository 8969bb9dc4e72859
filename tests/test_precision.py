"""Mixed-precision matmuls against NumPy float64 products of bf16-rounded operands."""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from tkd_jax.models import get_config
from tkd_jax.models.precision import Dense, attention_context, attention_scores, mp_matmul
from tkd_jax.models.registry import create_model

BF16 = jnp.bfloat16


def r16(x):
    """Round to bf16 and back to float64 (what the bf16 operands hold)."""
    return np.asarray(jnp.asarray(x, jnp.float32).astype(BF16).astype(jnp.float32), np.float64)


def rand(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def close(got, want):
    # fp32 accumulation of exactly representable bf16 products: only summation rounding.
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("lead", [(6,), (2, 5), (3,)])
def test_matmul_forward_and_backward_use_bf16_operands(lead):
    x, w, g = rand((*lead, 8), 0), rand((8, 4), 1), rand((*lead, 4), 2)
    y, vjp = jax.vjp(lambda a, b: mp_matmul(a, b, dtype=BF16), x, w)
    dx, dw = vjp(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.float32
    close(y, r16(x) @ r16(w))
    close(dx, r16(g) @ r16(w).T)  # the cotangent is rounded to bf16, as torch.autocast does
    # An odd row count takes the fp32-kernel fallback, on the same bf16-rounded operands.
    close(dw, r16(x).reshape(-1, 8).T @ r16(g).reshape(-1, 4))
    assert not np.allclose(np.asarray(y), np.asarray(x) @ np.asarray(w), rtol=0, atol=1e-6)


@pytest.mark.parametrize("length", [6, 5])  # even: split contraction; odd: fp32 fallback
def test_attention_products_and_their_gradients(length):
    b, h, d = 2, 3, 4
    q, k, v = (rand((b, length, h, d), s) for s in (3, 4, 5))
    p = jax.nn.softmax(rand((b, h, length, length), 6), -1)
    gs, gc = rand((b, h, length, length), 7), rand((b, length, h, d), 8)
    s, vjp_s = jax.vjp(lambda a, c: attention_scores(a, c, dtype=BF16), q, k)
    c, vjp_c = jax.vjp(lambda a, c: attention_context(a, c, dtype=BF16), p, v)
    (dq, dk), (dp, dv) = vjp_s(gs), vjp_c(gc)
    rq, rk, rv, rp, rgs, rgc = map(r16, (q, k, v, p, gs, gc))
    close(s, np.einsum("bqhd,bkhd->bhqk", rq, rk))
    close(c, np.einsum("bhqk,bkhd->bqhd", rp, rv))
    close(dq, np.einsum("bhqk,bkhd->bqhd", rgs, rk))
    close(dp, np.einsum("bqhd,bkhd->bhqk", rgc, rv))
    # (an odd length contracts over queries on the fp32 kernels, with the same rounded operands)
    close(dk, np.einsum("bhqk,bqhd->bkhd", rgs, rq))
    close(dv, np.einsum("bhqk,bqhd->bkhd", rp, rgc))
    assert {a.dtype for a in (s, c, dq, dk, dp, dv)} == {jnp.dtype(jnp.float32)}


def test_fp32_path_is_exactly_the_plain_products():
    x, w = rand((2, 5, 8), 0), rand((8, 4), 1)
    q, k = rand((2, 5, 3, 4), 2), rand((2, 5, 3, 4), 3)
    p = jax.nn.softmax(rand((2, 3, 5, 5), 4), -1)
    f = jax.jit(lambda x, w: (mp_matmul(x, w), nn.Dense(4).apply({"params": {
        "kernel": w, "bias": jnp.zeros(4)}}, x)))
    ours, flax_dense = f(x, w)
    np.testing.assert_array_equal(ours, flax_dense)
    np.testing.assert_array_equal(attention_scores(q, k),
                                  jnp.einsum("bqhd,bkhd->bhqk", q, k))
    np.testing.assert_array_equal(attention_context(p, q), jnp.einsum("bhqk,bkhd->bqhd", p, q))


def test_dense_has_nn_dense_params_and_outputs():
    x = rand((3, 8), 0)
    ours = Dense(5, kernel_init=nn.initializers.normal(0.02))
    ref = nn.Dense(5, kernel_init=nn.initializers.normal(0.02))
    p_ours = ours.init(jax.random.key(1), x)
    p_ref = ref.init(jax.random.key(1), x)
    assert jax.tree.structure(p_ours) == jax.tree.structure(p_ref)
    jax.tree.map(np.testing.assert_array_equal, p_ours, p_ref)
    np.testing.assert_array_equal(ours.apply(p_ours, x), ref.apply(p_ref, x))


def _dot_dtypes(jaxpr, out):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(tuple(str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _dot_dtypes(sub, out)
    return out


def test_every_encoder_dot_of_a_bf16_train_gradient_is_bf16_by_bf16_to_f32():
    cfg = get_config("tiny")
    model = create_model("tiny", num_labels=2, dtype=BF16)
    ids = jnp.ones((2, 6), jnp.int32)
    params = model.init(jax.random.key(0), ids, ids)["params"]

    def loss(p):
        out = model.apply({"params": p}, ids, ids, deterministic=False,
                          rngs={"dropout": jax.random.key(1)})
        return out.logits.sum()

    dots = _dot_dtypes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr, [])
    # Per layer 6 Dense and 2 attention products, each a forward and two backward dots; the
    # pooler 3; only the classifier (deliberately fp32) has fp32 dots.
    low = [d for d in dots if d[0] == "bfloat16"]
    assert len(low) == cfg.num_layers * (6 * 3 + 2 * 3) + 3
    assert all(d == ("bfloat16", "bfloat16", "float32") for d in low)
    assert all(d == ("float32", "float32", "float32") for d in dots if d not in low)
    assert len(dots) - len(low) == 3  # the fp32 classifier: forward, dx, dW
