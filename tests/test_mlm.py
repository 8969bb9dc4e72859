"""MLM pre-training: BERT masking statistics, determinism, NumPy-reference loss, learning."""

import functools

import jax
import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import logsumexp
from tokenizers import Tokenizer, models

from tkd_jax.errors import ConfigError, DataError
from tkd_jax.metrics import add_stats
from tkd_jax.models import TransformerForMaskedLM, get_config
from tkd_jax.train import mlm, optim, steps
from tkd_jax.train import state as state_lib
from tkd_jax.train.objectives import MLMObjective

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
VOCAB, LEN = 32, 16
SPEC = mlm.MLMSpec(vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIAL, first_regular_id=5)


def _random_ids(seed, n, length, vocab):
    """[CLS] text [SEP] [PAD]..., with some [UNK] inside the text."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (n, length)).astype(np.int32)
    ids[rng.random((n, length)) < 0.05] = UNK
    lengths = rng.integers(3, length + 1, n)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    return ids * mask, mask


_STATIC = ("vocab_size", "mask_id", "special_ids", "mask_prob", "replace_probs",
           "first_regular_id", "max_predictions")
_mask_jit = jax.jit(mlm.mask_tokens, static_argnames=_STATIC)


def _mask(rng, ids, mask, **kw):
    kw = {"vocab_size": 100, "mask_id": MASK, "special_ids": SPECIAL, **kw}
    return [np.asarray(x) for x in _mask_jit(rng, ids, mask, **kw)]


def test_bert_masking_rates_and_exclusions():
    ids, mask = _random_ids(0, 512, 64, 100)
    masked, targets, w = _mask(jax.random.PRNGKey(1), ids, mask)
    assert masked.dtype == np.int32 and targets.dtype == np.int32 and w.dtype == np.float32
    np.testing.assert_array_equal(targets, ids)
    eligible = (mask > 0) & (ids >= 5)
    chosen = w > 0
    assert set(np.unique(w)) == {0.0, 1.0}
    assert not chosen[~eligible].any()  # never [PAD], [CLS], [SEP], [UNK] or padding
    assert eligible.sum() > 12000
    assert abs(chosen[eligible].mean() - 0.15) < 0.01
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    to_mask = masked[chosen] == MASK
    to_random = (masked[chosen] != MASK) & (masked[chosen] != ids[chosen])
    unchanged = masked[chosen] == ids[chosen]
    assert abs(to_mask.mean() - 0.8) < 0.03
    assert abs(to_random.mean() - 0.1) < 0.025
    assert abs(unchanged.mean() - 0.1) < 0.025
    assert np.all((masked[chosen][to_random] >= 5) & (masked[chosen][to_random] < 100))


@pytest.mark.parametrize("first_regular_id, allowed", [
    (0, [1, 2, 4, 5, 6, 8, 9, 10, 11]),
    (5, [5, 6, 8, 9, 10, 11]),
])
def test_random_replacements_uniform_over_regular_ids(first_regular_id, allowed):
    ids = np.full((400, 50), 5, np.int32)
    masked, _, w = _mask(jax.random.PRNGKey(3), ids, np.ones_like(ids), vocab_size=12,
                         mask_id=7, special_ids=(0, 3), mask_prob=1.0,
                         replace_probs=(0.0, 1.0, 0.0), first_regular_id=first_regular_id)
    assert w.all()
    values, counts = np.unique(masked, return_counts=True)
    assert values.tolist() == allowed
    assert sps.chisquare(counts).pvalue > 1e-3


def test_masks_are_a_pure_function_of_rng_and_row_ids():
    ids, mask = _random_ids(1, 64, 24, 100)
    kw = {"vocab_size": 100, "mask_id": MASK, "special_ids": SPECIAL}
    a = _mask(jax.random.PRNGKey(5), ids, mask)
    b = [np.asarray(x) for x in mlm.mask_tokens(jax.random.PRNGKey(5), ids, mask, **kw)]
    c = _mask(jax.random.PRNGKey(6), ids, mask)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a[2] != c[2]).sum() > 50 and (a[0] != c[0]).sum() > 50
    # Keyed by row id: the same rows reversed and padded to 30 columns get the same masks.
    row_ids = np.arange(64) + 1000
    base = _mask(jax.random.PRNGKey(5), ids, mask, row_ids=row_ids)
    wide_ids = np.pad(ids[::-1], ((0, 0), (0, 6)))
    wide = _mask(jax.random.PRNGKey(5), wide_ids, np.pad(mask[::-1], ((0, 0), (0, 6))),
                 row_ids=row_ids[::-1])
    for x, y in zip(base, wide, strict=True):
        np.testing.assert_array_equal(x, y[::-1, :24])
        assert not y[:, 24:].any()


def test_row_weights_and_prediction_cap():
    ids, mask = _random_ids(2, 64, 40, 100)
    weights = np.ones(64, np.float32)
    weights[::3] = 0.0
    full = _mask(jax.random.PRNGKey(0), ids, mask, mask_prob=0.5)
    _, _, w = _mask(jax.random.PRNGKey(0), ids, mask, mask_prob=0.5, row_weights=weights)
    assert not w[weights == 0].any()
    np.testing.assert_array_equal(w[weights > 0], full[2][weights > 0])
    capped = _mask(jax.random.PRNGKey(0), ids, mask, mask_prob=0.5, max_predictions=3)
    per_row = full[2].sum(1)
    np.testing.assert_array_equal(capped[2].sum(1), np.minimum(per_row, 3))
    assert (per_row > 3).sum() > 20
    # the cap keeps the first 3 chosen positions of each row and leaves the rest untouched
    first3 = (np.cumsum(full[2], 1) <= 3) * full[2]
    np.testing.assert_array_equal(capped[2], first3)
    np.testing.assert_array_equal(capped[0], np.where(first3 > 0, full[0], ids))
    assert mlm.prediction_cap(SPEC, 128) == 36 and mlm.prediction_cap(SPEC, 4) == 4


def test_spec_checks_and_from_tokenizer():
    with pytest.raises(ConfigError, match="replace_probs"):
        mlm.MLMSpec(vocab_size=10, mask_id=4, replace_probs=(0.8, 0.1, 0.2))
    with pytest.raises(ConfigError, match="mask_prob"):
        mlm.MLMSpec(vocab_size=10, mask_id=4, mask_prob=0.0)
    with pytest.raises(ConfigError, match="mask_id"):
        mlm.MLMSpec(vocab_size=10, mask_id=10)
    with pytest.raises(ConfigError, match="first_regular_id"):
        mlm.MLMSpec(vocab_size=10, mask_id=9, first_regular_id=9)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    spec = mlm.MLMSpec.from_tokenizer(tok, mask_prob=0.2)
    assert (spec.vocab_size, spec.mask_id, spec.special_ids, spec.mask_prob) == (
        6, 4, (0, 1, 2, 3, 4), 0.2)
    with pytest.raises(DataError):
        mlm.finalize_mlm({"loss_sum": 0.0, "correct": 0, "count": 0})


# --------------------------------------------------------------------------- model steps


def _corpus_batch(seed, n=32, length=LEN):
    """A repetitive toy corpus: each sentence is one regular word repeated, [CLS] w w w [SEP]."""
    rng = np.random.default_rng(seed)
    word = rng.integers(5, VOCAB, n)
    lengths = rng.integers(6, length + 1, n)
    ids = np.repeat(word[:, None], length, axis=1)
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = (ids * mask).astype(np.int32)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
            "label": np.full(n, -1, np.int32), "weight": np.ones(n, np.float32),
            "index": np.arange(seed * n, (seed + 1) * n, dtype=np.int32)}


@functools.cache
def _compiled(spec=SPEC, precision="fp32"):
    """Model, initial-state factory and jitted step, shared by the tests (one compile each)."""
    cfg = get_config("tiny", vocab_size=VOCAB, dropout_rate=0.0, attention_dropout_rate=0.0,
                     dtype=state_lib.compute_dtype(precision))
    model = TransformerForMaskedLM(cfg)
    b = _corpus_batch(0)
    params = model.init(jax.random.key(0), b["input_ids"], b["attention_mask"])["params"]
    tx, _ = optim.make_optimizer(learning_rate=1e-2, total_steps=100, schedule="constant")

    def new_state(loss_scale=2.0**15):
        return state_lib.create_train_state(
            apply_fn=model.apply, params={"model": params}, tx=tx, precision=precision,
            rng=jax.random.PRNGKey(0), loss_scale=loss_scale)

    step_spec = steps.StepSpec(MLMObjective(spec), fp16=precision == "fp16")
    step = jax.jit(functools.partial(steps.train_step, frozen={}, spec=step_spec, model=model))
    ev = jax.jit(functools.partial(steps.eval_step, spec=step_spec, model=model))
    return model, new_state, step, ev


def _setup(spec=SPEC, precision="fp32", loss_scale=2.0**15):
    model, new_state, step, _ = _compiled(spec, precision)
    return model, new_state(loss_scale), step


def _np_reference(model, params, batch, masked, targets, w):
    out = model.apply({"params": params}, masked, batch["attention_mask"],
                      batch["token_type_ids"])
    logits = np.asarray(out.logits, np.float64)
    sel = np.asarray(w) > 0
    logp = logits - logsumexp(logits, axis=-1, keepdims=True)
    nll = -np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0][sel]
    hits = logits.argmax(-1)[sel] == np.asarray(targets)[sel]
    return nll.mean(), hits.mean(), sel.sum()


def test_train_step_loss_matches_numpy_cross_entropy():
    model, state, step = _setup()
    b = _corpus_batch(4)
    b["weight"][-5:] = 0.0
    _, m = step(state, b, jax.random.PRNGKey(9))
    masked, targets, w = mlm.mask_batch(b, mlm.mask_rng_for_step(jax.random.PRNGKey(9), 0),
                                        spec=SPEC)
    assert not np.asarray(w)[-5:].any()
    loss, acc, count = _np_reference(model, state.params["model"], b, masked, targets, w)
    assert count > 20 and int(m["masked_tokens"]) == count
    np.testing.assert_allclose(float(m["loss"]), loss, rtol=1e-5)
    np.testing.assert_allclose(float(m["mlm_accuracy"]), acc, rtol=1e-6)
    assert float(m["examples"]) == 27.0 and bool(m["finite"]) and float(m["grad_norm"]) > 0
    # the next step draws a different mask
    _, w1 = mlm.mask_batch(b, mlm.mask_rng_for_step(jax.random.PRNGKey(9), 1), spec=SPEC)[1:]
    assert (np.asarray(w1) != np.asarray(w)).any()


def test_eval_with_logits_at_every_position_matches_numpy():
    spec = mlm.MLMSpec(**{**SPEC.__dict__, "max_predictions": 0})  # no gather, no cap
    model, new_state, _, ev = _compiled(spec)
    params = new_state().params
    b = _corpus_batch(5)
    stats = jax.device_get(ev(params, b))
    masked, targets, w = mlm.mask_batch(b, mlm.eval_mask_rng(spec), spec=spec)
    loss, acc, count = _np_reference(model, params["model"], b, masked, targets, w)
    assert int(stats["count"]) == count > 20
    np.testing.assert_allclose(float(stats["loss_sum"]), loss * count, rtol=1e-5)
    assert int(stats["correct"]) == round(acc * count)


def test_mlm_training_reduces_loss_and_eval_adds_up():
    _, state, step = _setup()
    ev = _compiled(SPEC)[3]
    held = _corpus_batch(1000)
    before = mlm.finalize_mlm(add_stats(None, ev(state.params, held)))
    for i in range(100):
        state, m = step(state, _corpus_batch(i), jax.random.PRNGKey(0))
    after = mlm.finalize_mlm(add_stats(None, ev(state.params, held)))
    assert before["mlm_loss"] > 3.0  # ~log(32) at initialisation
    assert after["mlm_loss"] < 0.35 * before["mlm_loss"] and after["mlm_accuracy"] > 0.8
    np.testing.assert_allclose(after["perplexity"], np.exp(after["mlm_loss"]), rtol=1e-12)

    # Eval is deterministic, and split (and padded) batches add up to the whole batch.
    whole = jax.device_get(ev(state.params, held))
    again = jax.device_get(ev(state.params, held))
    assert all(np.array_equal(whole[k], again[k]) for k in ("loss_sum", "correct", "count"))
    total = None
    for rows in (slice(0, 20), slice(20, 32)):  # each padded back to 32 rows (no recompile)
        part = {k: np.concatenate([v[rows], np.zeros_like(v[rows.stop - rows.start:])])
                for k, v in held.items()}
        part["index"][rows.stop - rows.start:] = -1
        total = add_stats(total, ev(state.params, part))
    assert int(total["count"]) == int(whole["count"]) > 20
    assert int(total["correct"]) == int(whole["correct"])
    np.testing.assert_allclose(total["loss_sum"], float(whole["loss_sum"]), rtol=1e-5)


def test_psum_over_replicas_equals_the_whole_batch():
    """4 replicas (vmap with an axis name, as pmap) give the unsharded loss and update."""
    model, state, step = _setup()
    b = _corpus_batch(7)
    whole_state, whole = step(state, b, jax.random.PRNGKey(2))
    spec = steps.StepSpec(MLMObjective(SPEC), axis_name="dp")
    sharded = {k: v.reshape(4, -1, *v.shape[1:]) for k, v in b.items()}
    fn = jax.vmap(functools.partial(steps.train_step, frozen={}, spec=spec, model=model),
                  in_axes=(None, 0, None), axis_name="dp")
    rep_state, rep = jax.jit(fn)(state, sharded, jax.random.PRNGKey(2))
    for k in ("loss", "mlm_accuracy", "masked_tokens", "examples", "grad_norm"):
        np.testing.assert_allclose(np.asarray(rep[k]), float(whole[k]), rtol=2e-5, err_msg=k)
    jax.tree.map(lambda r, w: np.testing.assert_allclose(r[3], w, atol=1e-6),
                 rep_state.params, whole_state.params)


def test_fp16_overflow_step_is_skipped():
    _, state, step = _setup(SPEC, precision="fp16", loss_scale=3e38)
    new, m = step(state, _corpus_batch(0), jax.random.PRNGKey(0))
    assert not bool(m["finite"])
    assert float(new.dynamic_scale.scale) == pytest.approx(1.5e38)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(new.params),
                 jax.device_get(state.params))
