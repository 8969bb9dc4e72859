"""tkd_jax.losses against independent NumPy references, plus the distillation properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tkd_jax import losses
from tkd_jax.errors import ConfigError

B, C = 12, 3


# --------------------------------------------------------------------------- NumPy references


def np_log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_wmean(per_example, w):
    return float((w * per_example).sum() / max(w.sum(), 1.0))


def np_soft(student, teacher, w, temperature, kind, t2):
    logq = np_log_softmax(student / temperature)
    logp = np_log_softmax(teacher / temperature)
    p = np.exp(logp)
    per = -(p * logq).sum(-1) if kind == "ce" else (p * (logp - logq)).sum(-1)
    return np_wmean(per, w) * (temperature**2 if t2 else 1.0)


def _case(seed, batch=B, classes=C):
    rng = np.random.default_rng(seed)
    student = rng.normal(scale=2.0, size=(batch, classes)).astype(np.float32)
    teacher = rng.normal(scale=2.0, size=(batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    weights = (rng.random(batch) > 0.25).astype(np.float32)
    return student, teacher, labels, weights


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_and_mse_match_numpy(seed):
    s, _, y, w = _case(seed)
    per = -np_log_softmax(s)[np.arange(B), y]
    assert float(losses.cross_entropy(s, y, w)) == pytest.approx(np_wmean(per, w), rel=1e-6)
    assert float(losses.cross_entropy(s, y)) == pytest.approx(per.mean(), rel=1e-6)
    x, t = s[:, 0], s[:, 1]
    assert float(losses.mse(x, t, w)) == pytest.approx(np_wmean((x - t) ** 2, w), rel=1e-6)
    with pytest.raises(ValueError, match="differ"):
        losses.mse(s[:, :1], t)


@pytest.mark.parametrize("t2", [False, True])
@pytest.mark.parametrize("kind", ["ce", "kl"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_losses_match_numpy(temperature, kind, t2):
    s, t, _, w = _case(3)
    got = losses.distillation_loss(s, t, w, temperature=temperature, kind=kind, t2_scaling=t2)
    assert float(got) == pytest.approx(np_soft(s, t, w, temperature, kind, t2), rel=1e-5)


def test_kl_is_ce_minus_teacher_entropy():
    s, t, _, w = _case(4)
    logp = np_log_softmax(t / 2.0)
    entropy = np_wmean(-(np.exp(logp) * logp).sum(-1), w)
    ce = float(losses.distillation_loss(s, t, w, temperature=2.0, kind="ce"))
    assert float(losses.distillation_loss(s, t, w, temperature=2.0, kind="kl")) == pytest.approx(
        ce - entropy, abs=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("t2", [False, True])
def test_kl_is_zero_when_student_equals_teacher(temperature, t2):
    _, t, _, w = _case(5)
    kl = losses.distillation_loss(t, t, w, temperature=temperature, kind="kl", t2_scaling=t2)
    assert abs(float(kl)) <= 1e-6
    multi = losses.multi_teacher_loss(t, [t, t], w, teacher_weights=(0.3, 0.7), kind="kl",
                                      temperature=temperature)
    assert abs(float(multi)) <= 1e-6


def test_multi_teacher_matches_numpy():
    s, t1, _, w = _case(8)
    t2 = np.random.default_rng(9).normal(size=(B, C)).astype(np.float32)
    tw, temperature = (1.0, 3.0), 2.0
    probs = (tw[0] * np.exp(np_log_softmax(t1 / temperature))
             + tw[1] * np.exp(np_log_softmax(t2 / temperature))) / sum(tw)
    ref = np_wmean(-(probs * np_log_softmax(s / temperature)).sum(-1), w)
    loss = losses.multi_teacher_loss(s, [t1, t2], w, teacher_weights=tw, temperature=temperature)
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    # one teacher (or a zero-weight second teacher) is plain distillation
    single = losses.distillation_loss(s, t1, w, temperature=temperature)
    assert float(losses.multi_teacher_loss(s, [t1], w, temperature=temperature)) == float(single)
    dropped = losses.multi_teacher_loss(s, [t1, t2], w, teacher_weights=(1.0, 0.0),
                                        temperature=temperature)
    assert float(dropped) == pytest.approx(float(single), rel=1e-6)


def np_feature(s, t, mask, kind, projection=None):
    if projection is not None:
        s = s @ projection[0] + projection[1]
    per_example, ex_w = [], []
    for b in range(s.shape[0]):
        vals = []
        for i in range(s.shape[1]):
            if mask[b, i]:
                u, v = s[b, i].astype(np.float64), t[b, i].astype(np.float64)
                if kind == "mse":
                    vals.append(np.mean((u - v) ** 2))
                else:
                    vals.append(1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
        per_example.append(np.mean(vals) if vals else 0.0)
        ex_w.append(1.0 if vals else 0.0)
    return np_wmean(np.array(per_example), np.array(ex_w))


def _feature_case(seed, ds=6, dt=6, length=5):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(4, length, ds)).astype(np.float32)
    t = rng.normal(size=(4, length, dt)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    return s, t, mask[:, :length]


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_feature_loss_matches_numpy(kind):
    s, t, mask = _feature_case(11)
    got = losses.feature_loss(s, t, mask, kind=kind)
    assert float(got) == pytest.approx(np_feature(s, t, mask, kind), rel=1e-5)
    # different widths through a projection (kernel [Ds, Dt], bias [Dt])
    s4, t8, _ = _feature_case(12, ds=4, dt=8)
    rng = np.random.default_rng(13)
    proj = (rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32))
    got = losses.feature_loss(s4, t8, mask, projection=proj, kind=kind)
    assert float(got) == pytest.approx(np_feature(s4, t8, mask, kind, proj), rel=1e-5)
    with pytest.raises(ConfigError, match="projection"):
        losses.feature_loss(s4, t8, mask, kind=kind)


def test_cosine_of_identical_features_is_zero():
    s, _, mask = _feature_case(14)
    assert abs(float(losses.feature_loss(s, s, mask, kind="cosine"))) <= 1e-6
    # and it ignores scale, unlike MSE
    assert abs(float(losses.feature_loss(3.0 * s, s, mask, kind="cosine"))) <= 1e-6
    assert float(losses.feature_loss(3.0 * s, s, mask, kind="mse")) > 0.1


def np_attention(s, t, mask, kind):
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(1, keepdims=True), t.mean(1, keepdims=True)
    s, t = s.astype(np.float64), t.astype(np.float64)
    per_example, ex_w = [], []
    for b in range(s.shape[0]):
        idx = np.flatnonzero(mask[b])
        if idx.size == 0:
            per_example.append(0.0)
            ex_w.append(0.0)
            continue
        sb, tb = s[b][:, idx][:, :, idx], t[b][:, idx][:, :, idx]  # [H, q, k] valid only
        if kind == "mse":
            per_example.append(np.mean((sb - tb) ** 2))
        else:
            per_example.append(np.mean((tb * (np.log(tb) - np.log(sb))).sum(-1)))
        ex_w.append(1.0)
    return np_wmean(np.array(per_example), np.array(ex_w))


def _attention_case(seed, heads_s, heads_t, mask):
    rng = np.random.default_rng(seed)
    length = mask.shape[1]
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)  # padded keys get ~0 probability

    def attn(h):
        return np.asarray(jax.nn.softmax(rng.normal(size=(mask.shape[0], h, length, length))
                                         + bias, axis=-1), np.float32)

    return attn(heads_s), attn(heads_t)


ATT_MASK = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])


@pytest.mark.parametrize("kind", ["mse", "kl"])
@pytest.mark.parametrize("heads", [(2, 2), (2, 4)])
def test_attention_loss_matches_numpy(kind, heads):
    s, t = _attention_case(15, *heads, ATT_MASK)
    got = losses.attention_loss(s, t, ATT_MASK, kind=kind)
    assert float(got) == pytest.approx(np_attention(s, t, ATT_MASK, kind), rel=1e-5)
    assert abs(float(losses.attention_loss(t, t, ATT_MASK, kind=kind))) <= 1e-7


# --------------------------------------------------------------------------- properties


def test_no_gradient_reaches_the_teacher():
    s, t, y, w = _case(16)
    fs, ft, mask = _feature_case(17)
    a_s, a_t = _attention_case(18, 2, 2, ATT_MASK)
    wrt_teacher = {
        "ce": lambda t_: losses.distillation_loss(s, t_, w, temperature=2.0),
        "kl_t2": lambda t_: losses.distillation_loss(s, t_, w, temperature=4.0, kind="kl",
                                                     t2_scaling=True),
        "multi": lambda t_: losses.multi_teacher_loss(s, [t_, 2.0 * t_], w, kind="kl"),
    }
    for name, fn in wrt_teacher.items():
        grad = np.asarray(jax.grad(fn)(jnp.asarray(t)))
        assert np.all(grad == 0.0), name
    grad = jax.grad(lambda t_: losses.feature_loss(fs, t_, mask, kind="cosine"))(jnp.asarray(ft))
    assert np.all(np.asarray(grad) == 0.0)
    grad = jax.grad(lambda t_: losses.attention_loss(a_s, t_, ATT_MASK, kind="kl"))(
        jnp.asarray(a_t))
    assert np.all(np.asarray(grad) == 0.0)
    # ... while the student does get one
    assert np.any(np.asarray(jax.grad(losses.distillation_loss)(jnp.asarray(s), t)) != 0.0)


def _soft_grad_norm(s, t, temperature, t2):
    grad = jax.grad(lambda x: losses.distillation_loss(x, t, temperature=temperature,
                                                       t2_scaling=t2))(jnp.asarray(s))
    return float(jnp.linalg.norm(grad))


def test_t2_scaling_keeps_gradient_scale_across_temperatures():
    s, t, _, _ = _case(19)
    temps = (1.0, 2.0, 4.0, 8.0)
    scaled = [_soft_grad_norm(s, t, temp, True) for temp in temps]
    plain = [_soft_grad_norm(s, t, temp, False) for temp in temps]
    assert max(scaled) / min(scaled) <= 2.0
    assert 0.8 <= scaled[3] / scaled[2] <= 1.25
    # without T**2 the gradient shrinks like 1/T**2 at large T
    assert 0.2 <= plain[3] / plain[2] <= 0.3
    assert plain[3] < plain[0] / 20


def test_weight_zero_rows_do_not_affect_losses():
    s, t, y, _ = _case(20)
    rng = np.random.default_rng(21)
    pad_s = np.concatenate([s, rng.normal(scale=1e3, size=(5, C))]).astype(np.float32)
    pad_t = np.concatenate([t, rng.normal(scale=1e3, size=(5, C))]).astype(np.float32)
    pad_s[-1, 0] = np.nan  # a non-finite padding row must not leak into the mean either
    pad_y = np.concatenate([y, np.full(5, -1)])  # out-of-range padding label
    w = np.concatenate([np.ones(B), np.zeros(5)]).astype(np.float32)
    pairs = {
        "ce": (losses.cross_entropy(s, y), losses.cross_entropy(pad_s, pad_y, w)),
        "mse": (losses.mse(s, t), losses.mse(pad_s, pad_t, w)),
        "kl": (losses.distillation_loss(s, t, temperature=2.0, kind="kl"),
               losses.distillation_loss(pad_s, pad_t, w, temperature=2.0, kind="kl")),
        "multi": (losses.multi_teacher_loss(s, [t, s]),
                  losses.multi_teacher_loss(pad_s, [pad_t, pad_s], w)),
    }
    for name, (plain, padded) in pairs.items():
        assert float(padded) == pytest.approx(float(plain), rel=1e-6), name
    assert float(losses.cross_entropy(s, y, np.zeros(B))) == 0.0  # all padding: 0, not NaN


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_masked_positions_do_not_affect_feature_loss(kind):
    s, t, mask = _feature_case(22)
    rng = np.random.default_rng(23)
    noisy_s, noisy_t = s.copy(), t.copy()
    noisy_s[mask == 0] = rng.normal(scale=100.0, size=noisy_s[mask == 0].shape)
    noisy_t[mask == 0] = rng.normal(scale=100.0, size=noisy_t[mask == 0].shape)
    assert float(losses.feature_loss(noisy_s, noisy_t, mask, kind=kind)) == float(
        losses.feature_loss(s, t, mask, kind=kind))


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_masked_positions_do_not_affect_attention_loss(kind):
    s, t = _attention_case(24, 2, 2, ATT_MASK)
    rng = np.random.default_rng(25)
    pad = ATT_MASK[:, None, :, None] * ATT_MASK[:, None, None, :] == 0
    pad = np.broadcast_to(pad, s.shape)
    noisy_s, noisy_t = s.copy(), t.copy()
    noisy_s[pad] = rng.random(pad.sum())
    noisy_t[pad] = rng.random(pad.sum())
    assert float(losses.attention_loss(noisy_s, noisy_t, ATT_MASK, kind=kind)) == float(
        losses.attention_loss(s, t, ATT_MASK, kind=kind))


def test_losses_jit_and_accept_bf16():
    s, t, y, w = _case(26)
    eager = losses.distillation_loss(s, t, w, temperature=2.0, kind="kl")
    jitted = jax.jit(lambda a, b: losses.distillation_loss(a, b, w, temperature=2.0, kind="kl"))
    assert float(jitted(s, t)) == pytest.approx(float(eager), rel=1e-6)
    low = losses.cross_entropy(jnp.asarray(s, jnp.bfloat16), y, w)
    assert low.dtype == jnp.float32
    ref = np_wmean(-np_log_softmax(np.asarray(jnp.asarray(s, jnp.bfloat16), np.float32))[
        np.arange(B), y], w)
    assert float(low) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize(
    "student, teacher, expected",
    [(4, 6, (0, 2, 3, 5, 6)), (3, 6, (0, 2, 4, 6)), (6, 6, (0, 1, 2, 3, 4, 5, 6)),
     (2, 12, (0, 6, 12)), (1, 6, (0, 6)), (4, 12, (0, 3, 6, 9, 12))],
)
def test_layer_mapping(student, teacher, expected):
    assert losses.layer_mapping(student, teacher) == expected
    hidden = losses.layer_pairs(student, teacher)
    assert hidden == tuple(enumerate(expected))
    attention = losses.layer_pairs(student, teacher, target="attention")
    assert attention == tuple((i - 1, m - 1) for i, m in enumerate(expected) if i > 0)


def test_bad_configuration_raises_one_line_config_errors():
    s, t, y, w = _case(27)
    bad = [
        lambda: losses.distillation_loss(s, t, w, kind="js"),
        lambda: losses.distillation_loss(s, t, w, temperature=0.0),
        lambda: losses.multi_teacher_loss(s, [t, t], w, teacher_weights=(1.0,)),
        lambda: losses.multi_teacher_loss(s, [t, t], w, teacher_weights=(1.0, -1.0)),
        lambda: losses.feature_loss(s[:, None], t[:, None], np.ones((B, 1)), kind="l1"),
        lambda: losses.attention_loss(s, t, w, kind="js"),
        lambda: losses.layer_mapping(0, 6),
        lambda: losses.layer_pairs(2, 6, target="keys"),
    ]
    for fn in bad:
        with pytest.raises(ConfigError) as err:
            fn()
        assert "\n" not in str(err.value)
