"""Pure train/eval steps: precision modes, fp16 loss scaling, teacher term, summed eval stats."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tkd_jax.models import create_model
from tkd_jax.train import optim, steps
from tkd_jax.train import state as state_lib
from tkd_jax.train.objectives import DistillSpec, TaskObjective

VOCAB, LEN, BATCH = 64, 12, 16


def _batch(seed=0, n=BATCH):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (n, LEN)).astype(np.int32)
    lengths = rng.integers(3, LEN + 1, n)
    mask = (np.arange(LEN)[None] < lengths[:, None]).astype(np.int32)
    # a learnable rule: label = whether token 7 appears
    ids[: n // 2, 1] = 7
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            "label": (ids == 7).any(1).astype(np.int32), "weight": np.ones(n, np.float32),
            "index": np.arange(n, dtype=np.int32)}


def _spec(distill=None, fp16=False):
    return steps.StepSpec(TaskObjective("rte", False, 2, distill=distill), fp16=fp16)


def _setup(precision="fp32", loss_scale=2.0**15, lr=3e-3, distill=None):
    model = create_model("tiny", num_labels=2, vocab_size=VOCAB, dropout_rate=0.0,
                         attention_dropout_rate=0.0, dtype=state_lib.compute_dtype(precision))
    b = _batch()
    params = model.init(jax.random.key(0), b["input_ids"], b["attention_mask"])["params"]
    tx, _ = optim.make_optimizer(learning_rate=lr, total_steps=100, schedule="constant")
    state = state_lib.create_train_state(apply_fn=model.apply, params={"model": params}, tx=tx,
                                         precision=precision, rng=jax.random.PRNGKey(0),
                                         loss_scale=loss_scale)
    step = jax.jit(functools.partial(steps.train_step, frozen={},
                                     spec=_spec(distill, fp16=precision == "fp16"),
                                     model=model))
    return model, state, step


def _run(precision, n_steps=30):
    _, state, step = _setup(precision)
    out = []
    for i in range(n_steps):
        state, m = step(state, _batch(i), jax.random.PRNGKey(0))
        out.append(float(m["loss"]))
    return np.array(out), state


def test_params_and_optimizer_state_stay_fp32_under_bf16():
    losses_bf16, state = _run("bf16", 2)
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert np.all(np.isfinite(losses_bf16))


def test_bf16_training_tracks_fp32():
    l32, _ = _run("fp32")
    l16, _ = _run("bf16")
    assert l32[-1] < 0.5 * l32[0]  # it learns the rule
    np.testing.assert_allclose(l16, l32, atol=0.08)  # bf16 has ~3 significant digits


def test_fp16_loss_scale_backs_off_and_skips_overflow_step():
    # A loss scale of 1e38 makes the scaled fp32 gradients overflow to inf.
    _, state, step = _setup("fp16", loss_scale=3e38)
    before = jax.tree.map(np.asarray, state.params)
    new, m = step(state, _batch(), jax.random.PRNGKey(0))
    assert not bool(m["finite"])
    assert float(new.dynamic_scale.scale) == pytest.approx(1.5e38)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, new.params), before)
    # With a sane scale the next steps apply and the loss goes down.
    _, state, step = _setup("fp16", loss_scale=2.0**10)
    first = None
    for i in range(20):
        state, m = step(state, _batch(i), jax.random.PRNGKey(0))
        assert bool(m["finite"])
        first = float(m["loss"]) if first is None else first
    assert float(m["loss"]) < first


def test_train_step_does_not_retrace():
    traces = []
    model = create_model("tiny", num_labels=2, vocab_size=VOCAB)
    b = _batch()
    params = model.init(jax.random.key(0), b["input_ids"], b["attention_mask"])["params"]
    tx, _ = optim.make_optimizer(learning_rate=1e-3, total_steps=10)
    state = state_lib.create_train_state(apply_fn=model.apply, params={"model": params}, tx=tx,
                                         precision="fp32", rng=jax.random.PRNGKey(0))
    spec = _spec()

    def counted(*a, **k):
        traces.append(1)
        return steps.train_step(*a, **k)

    fn = jax.jit(functools.partial(counted, spec=spec, model=model), donate_argnums=0)
    for i in range(3):
        state, _ = fn(state, _batch(i), jax.random.PRNGKey(0), {})
    assert len(traces) == 1


def test_cached_and_online_teacher_give_the_same_loss():
    """Soft labels looked up from a cache equal the teacher run inside the step."""
    teacher = create_model("tiny", num_labels=2, vocab_size=VOCAB)
    b = _batch(3)
    t_params = teacher.init(jax.random.key(7), b["input_ids"], b["attention_mask"])["params"]
    t_logits = steps.predict_logits(t_params, b, model=teacher)
    cached_b = {**b, "teacher_logits": np.asarray(t_logits)[:, None]}
    d_cached = DistillSpec()
    d_online = DistillSpec(teachers=(teacher,))
    _, s1, step_c = _setup(distill=d_cached)
    model, s2, _ = _setup(distill=d_online)
    step_o = jax.jit(functools.partial(steps.train_step, spec=_spec(d_online), model=model))
    _, m1 = step_c(s1, cached_b, jax.random.PRNGKey(0))
    _, m2 = step_o(s2, b, jax.random.PRNGKey(0), {"teachers": (t_params,)})
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    # and the loss is the paper's (1 - a) CE + a KD (eq 9) on the student's logits, here in
    # NumPy: CE to the labels and CE to softmax(teacher) at T = 1
    out = model.apply({"params": s1.params["model"]}, b["input_ids"], b["attention_mask"],
                      b["token_type_ids"])
    logp = np.asarray(jax.nn.log_softmax(out.logits.astype(jnp.float32)), np.float64)
    p_t = np.asarray(jax.nn.softmax(t_logits), np.float64)
    hard = -logp[np.arange(len(logp)), b["label"]].mean()
    soft = -(p_t * logp).sum(-1).mean()
    np.testing.assert_allclose(float(m1["loss"]), 0.5 * hard + 0.5 * soft, rtol=1e-5)


def test_eval_step_sums_add_up_across_batch_splits():
    model, state, _ = _setup()
    ev = jax.jit(functools.partial(steps.eval_step, spec=_spec(), model=model))
    whole = _batch(5, 16)
    full = jax.device_get(ev(state.params, whole))
    parts = [{k: v[:10] for k, v in whole.items()}, {k: v[10:] for k, v in whole.items()}]
    pad = {k: np.concatenate([v, np.zeros_like(v[:4])]) for k, v in parts[1].items()}
    s = [jax.device_get(ev(state.params, p)) for p in (parts[0], pad)]
    np.testing.assert_array_equal(full["confusion"], s[0]["confusion"] + s[1]["confusion"])
    assert int(np.sum(full["confusion"])) == 16
