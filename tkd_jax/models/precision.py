"""Mixed-precision matmuls: low-precision operands, float32 accumulation, forward AND backward.

Under ``compute_dtype=bfloat16`` (or float16) every matmul of the Transformer goes through
:func:`mp_matmul`, :func:`attention_scores` or :func:`attention_context`: both operands are cast
to the compute dtype, the dot accumulates and returns float32 (``preferred_element_type``), and
a custom VJP makes the two backward dots (cotangent x other operand) see compute-dtype operands
too, with the cotangent cast down as ``torch.autocast`` does. JAX's own transpose rule of a
``dot_general`` would return bf16 outputs (its ``preferred_element_type`` is the operand
dtype), which XLA:CPU runs on a slow path; fp32 backward operands would miss the AMX /
AVX512-BF16 kernels altogether. Gradients leave in the inputs' own dtype (float32 for float32
activations and parameters); residuals are kept in the compute dtype.

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


# Attention products, head-major inside: q, k, v arrive as [b, l, h, d] and are moved to
# [b, h, l, d] together with the cast, so every forward and backward dot is a plain batched
# matmul; their cotangents are moved back in fp32 (the casts stay inside the VJP, so the
# gradients that leave it are not rounded to bf16).
def _heads(x, dtype):
    return jnp.swapaxes(x.astype(dtype), 1, 2)  # [b, l, h, d] -> [b, h, l, d]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scores(q, k, dtype):
    return _dot("bhqd,bhkd->bhqk", _heads(q, dtype), _heads(k, dtype))


def _scores_fwd(q, k, dtype):
    qh, kh = _heads(q, dtype), _heads(k, dtype)
    return _dot("bhqd,bhkd->bhqk", qh, kh), (qh, kh, jnp.zeros((0,), q.dtype),
                                              jnp.zeros((0,), k.dtype))


def _scores_bwd(dtype, res, g):
    qh, kh, q_tag, k_tag = res
    g_c = g.astype(dtype)
    dq = _dot("bhqk,bhkd->bhqd", g_c, kh)
    dk = _tn("bhqk,bhqd->bhkd", g_c, qh, 2)
    return (jnp.swapaxes(dq, 1, 2).astype(q_tag.dtype),
            jnp.swapaxes(dk, 1, 2).astype(k_tag.dtype))


_scores.defvjp(_scores_fwd, _scores_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _context(p, v, dtype):
    return jnp.swapaxes(_dot("bhqk,bhkd->bhqd", p.astype(dtype), _heads(v, dtype)), 1, 2)


def _context_fwd(p, v, dtype):
    p_c, vh = p.astype(dtype), _heads(v, dtype)
    out = jnp.swapaxes(_dot("bhqk,bhkd->bhqd", p_c, vh), 1, 2)
    return out, (p_c, vh, jnp.zeros((0,), p.dtype), jnp.zeros((0,), v.dtype))


def _context_bwd(dtype, res, g):
    p_c, vh, p_tag, v_tag = res
    gh = _heads(g, dtype)  # [b, q, h, d] -> [b, h, q, d]
    dp = _dot("bhqd,bhkd->bhqk", gh, vh)
    dv = _tn("bhqk,bhqd->bhkd", p_c, gh, 2)
    return dp.astype(p_tag.dtype), jnp.swapaxes(dv, 1, 2).astype(v_tag.dtype)


_context.defvjp(_context_fwd, _context_bwd)


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
    return _scores(q, k, jnp.dtype(dtype))


def attention_context(probs, v, *, dtype=F32):
    """Probabilities times values: ``probs [b, h, l_q, l_k], v [b, l_k, h, d] -> [b, l_q, h, d]``.

    float32 under low precision, else the promoted dtype of the inputs.
    """
    if _is_full(dtype):
        return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    return _context(probs, v, jnp.dtype(dtype))


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
