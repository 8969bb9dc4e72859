"""Mixed-precision matmuls: low-precision operands, float32 accumulation, forward AND backward.

Under ``compute_dtype=bfloat16`` (or float16) every matmul of the Transformer goes through
:func:`mp_einsum`: both operands are cast to the compute dtype, the dot accumulates and returns
float32 (``preferred_element_type=float32``), and a custom VJP makes the two backward dots
(cotangent x other operand) see compute-dtype operands too, with the cotangent cast down the way
``torch.autocast`` does. JAX's own transpose rule of a ``dot_general`` would return bf16 outputs
(its ``preferred_element_type`` is the operand dtype), which XLA:CPU runs on a slow path; with
fp32 operands the backward would miss the AMX/AVX512-BF16 kernels altogether. Cotangents of the
inputs come back in the inputs' own dtype (float32 for float32 activations and parameters).

Under ``compute_dtype=float32`` the functions are exactly ``jnp.einsum`` / ``lax.dot_general``
(same HLO as before, so the fp32 path is numerically unchanged).

Hand-written because neither flax's ``nn.Dense(dtype=bf16)`` (bf16 outputs) nor qwix (integer
quantization) gives bf16 x bf16 -> f32 dots with a matching backward.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

F32 = jnp.float32


def _is_full(dtype) -> bool:
    return jnp.dtype(dtype) == jnp.dtype(F32)


def _dot(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=F32)


def _tn(spec, a, b, axis: int):
    """``einsum(spec, a, b)`` whose contracted index sits at ``axis`` of both operands, not last.

    XLA:CPU's fast low-precision kernels (YNNPACK) take only dots contracting an operand's last
    (or, for the rhs, first free) dimension; others fall back to a generic kernel that is slower
    than fp32 and, for batched dots, rejects bf16 x bf16 -> f32 outright. Splitting the
    contracted axis in two makes XLA materialise the transposed operand and use the fast kernel
    (measured: dW of a 4096x384x1536 Dense 45 ms -> 18 ms; fp32 35 ms). An odd axis runs in fp32.
    """
    n = a.shape[axis]
    if n % 2:
        return jnp.einsum(spec, a.astype(F32), b.astype(F32))
    split = lambda x: x.reshape(*x.shape[:axis], 2, n // 2, *x.shape[axis + 1:])
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    letter = sa[axis]
    sa2, sb2 = (s[:axis] + "Z" + s[axis:] for s in (sa, sb))
    assert sb[axis] == letter and "Z" not in spec
    return _dot(f"{sa2},{sb2}->{out}", split(a), split(b))


# Dense: x [..., i] @ w [i, o]. Residuals are the compute-dtype operands (half of fp32 copies,
# and exactly what the backward dots consume); zero-size arrays carry the primal dtypes.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x, w, dtype):
    return _dot("ni,io->no", x.astype(dtype), w.astype(dtype))


def _matmul_fwd(x, w, dtype):
    x_c, w_c = x.astype(dtype), w.astype(dtype)
    return _dot("ni,io->no", x_c, w_c), (x_c, w_c, jnp.zeros((0,), x.dtype),
                                          jnp.zeros((0,), w.dtype))


def _matmul_bwd(dtype, res, g):
    x_c, w_c, x_tag, w_tag = res
    g_c = g.astype(dtype)  # the cotangent cast down, as torch.autocast's backward does
    dx = _dot("no,io->ni", g_c, w_c)
    dw = _tn("ni,no->io", x_c, g_c, 0)
    return dx.astype(x_tag.dtype), dw.astype(w_tag.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


# Head-major batched products of attention: a [B, H, M, K] x b [B, H, N, K] -> [B, H, M, N]
# ("nt", the scores Q K^T) and a [B, H, M, K] x b [B, H, K, N] -> [B, H, M, N] ("nn", P V).
_NT, _NN = "bhmk,bhnk->bhmn", "bhmk,bhkn->bhmn"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _bmm(kind, a, b, dtype):
    return _dot(_NT if kind == "nt" else _NN, a.astype(dtype), b.astype(dtype))


def _bmm_fwd(kind, a, b, dtype):
    a_c, b_c = a.astype(dtype), b.astype(dtype)
    out = _dot(_NT if kind == "nt" else _NN, a_c, b_c)
    return out, (a_c, b_c, jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))


def _bmm_bwd(kind, dtype, res, g):
    a_c, b_c, a_tag, b_tag = res
    g_c = g.astype(dtype)
    if kind == "nt":  # out = a b^T: da = g b, db = g^T a
        da = _dot("bhmn,bhnk->bhmk", g_c, b_c)
        db = _tn("bhmn,bhmk->bhnk", g_c, a_c, 2)
    else:  # out = a b: da = g b^T, db = a^T g
        da = _dot("bhmn,bhkn->bhmk", g_c, b_c)
        db = _tn("bhmk,bhmn->bhkn", a_c, g_c, 2)
    return da.astype(a_tag.dtype), db.astype(b_tag.dtype)


_bmm.defvjp(_bmm_fwd, _bmm_bwd)


def mp_matmul(x, kernel, *, dtype=F32):
    """``x [..., in] @ kernel [in, out] -> [..., out]``: ``dtype`` operands, float32 result.

    float32 ``dtype`` is exactly flax ``nn.Dense``'s ``lax.dot_general`` contraction (same HLO,
    so the fp32 path is numerically unchanged).
    """
    if _is_full(dtype):
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    y = _matmul(x.reshape(-1, x.shape[-1]), kernel, jnp.dtype(dtype))
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


def attention_scores(q, k, *, dtype=F32):
    """Q K^T per head: ``q, k [b, l, h, d] -> [b, h, l_q, l_k]`` float32 (unscaled).

    Under low precision the heads are moved first ([b, h, l, d], fused with the cast) so every
    forward and backward dot is a plain batched matmul that the fast kernels take.
    """
    if _is_full(dtype):
        return jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=F32)
    heads_first = lambda x: jnp.swapaxes(x.astype(dtype), 1, 2)
    return _bmm("nt", heads_first(q), heads_first(k), jnp.dtype(dtype))


def attention_context(probs, v, *, dtype=F32):
    """Probabilities times values: ``probs [b, h, l_q, l_k], v [b, l_k, h, d] -> [b, l_q, h, d]``.

    float32 under low precision, else the promoted dtype of the inputs.
    """
    if _is_full(dtype):
        return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    out = _bmm("nn", probs, jnp.swapaxes(v.astype(dtype), 1, 2), jnp.dtype(dtype))
    return jnp.swapaxes(out, 1, 2)


class Dense(nn.Module):
    """Drop-in for ``nn.Dense`` (same ``kernel`` / ``bias`` names, shapes and initialisation)
    whose matmul is :func:`mp_matmul` in ``dtype``.

    ``[..., in] -> [..., features]``; the result is float32 under bf16/fp16 compute (the dot
    accumulates in float32 and the bias is added in float32), the input dtype under float32.
    """

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    dtype: jnp.dtype = F32
    param_dtype: jnp.dtype = F32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        y = mp_matmul(x, kernel, dtype=self.dtype)
        return y + bias.astype(y.dtype)
