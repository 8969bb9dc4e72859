"""Magnitude pruning (masks, cubic schedule, masks through optax) and structured pruning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from tkd_jax.compress import magnitude, structured
from tkd_jax.errors import ConfigError
from tkd_jax.models.transformer import Transformer, get_config


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("tiny", num_labels=2, vocab_size=100, num_layers=2, num_heads=4,
                     hidden_size=32, intermediate_size=64)
    module = Transformer(cfg)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (4, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[2, 7:] = 0
    params = module.init(jax.random.PRNGKey(1), ids, mask, ids * 0)["params"]
    params = jax.tree.map(lambda x: np.asarray(x) * 5 if x.ndim == 2 else np.asarray(x), params)
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": ids * 0,
             "label": np.array([0, 1, 1, 0], np.int32), "weight": np.ones(4, np.float32)}
    return module, params, batch


def _prunable(params):
    return {k: v for k, v in traverse_util.flatten_dict(params).items()
            if magnitude.is_prunable(k)}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_one_shot_masks_prune_the_smallest(tiny, scope):
    _, params, _ = tiny
    masks = traverse_util.flatten_dict(magnitude.magnitude_masks(params, 0.5, scope=scope))
    flat = _prunable(params)
    assert set(masks) == set(flat)
    if scope == "layer":
        for k, w in flat.items():
            assert masks[k].sum() == w.size - int(np.floor(0.5 * w.size))
            assert np.abs(w[masks[k]]).min() >= np.abs(w[~masks[k]]).max()
    else:
        kept = np.concatenate([np.abs(flat[k])[masks[k]] for k in flat])
        gone = np.concatenate([np.abs(flat[k])[~masks[k]] for k in flat])
        total = sum(w.size for w in flat.values())
        assert gone.size == int(np.floor(0.5 * total)) and kept.min() >= gone.max()
    pruned = magnitude.apply_masks(params, magnitude.magnitude_masks(params, 0.5, scope=scope))
    assert abs(magnitude.sparsity_of(pruned)["prunable"] - 0.5) < 1e-3


def test_cubic_schedule_values():
    s = lambda t: float(magnitude.cubic_sparsity(t, final=0.8, begin=10, end=110, frequency=10))
    assert s(0) == 0.0 and s(9) == 0.0 and s(10) == 0.0
    assert s(60) == pytest.approx(0.8 * (1 - 0.5**3))  # halfway: s_f (1 - (1/2)^3)
    assert s(65) == s(60)  # constant between pruning steps
    assert s(110) == pytest.approx(0.8) and s(1000) == pytest.approx(0.8)
    assert float(magnitude.cubic_sparsity(35, final=0.5, begin=0, end=100, initial=0.1)) == \
        pytest.approx(0.5 + (0.1 - 0.5) * (1 - 0.35) ** 3)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(tiny, bad):
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        magnitude.magnitude_masks(tiny[1], bad)
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        magnitude.pruned_optimizer(optax.sgd(0.1), final_sparsity=bad, begin=0, end=1)


@pytest.mark.parametrize("scope", ["global", "output"])
def test_masks_stay_zero_through_optimizer_steps(tiny, scope):
    module, params, batch = tiny
    # per-output pruning is Wanda's: score |w| x a fixed per-input-feature factor
    scales = (None if scope == "global" else
              {k: np.linspace(0.5, 2.0, w.shape[0]) for k, w in _prunable(params).items()})
    tx = magnitude.pruned_optimizer(optax.adamw(1e-2), final_sparsity=0.6, begin=2, end=6,
                                    frequency=2, scope=scope, scales=scales)
    p = {"model": jax.tree.map(jnp.asarray, params)}
    state = tx.init(p)

    def loss(p):
        logits = module.apply({"params": p["model"]}, batch["input_ids"],
                              batch["attention_mask"], batch["token_type_ids"]).logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    @jax.jit
    def step(p, state):
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    def expected_zeros(fraction, flat):
        if scope == "output":  # floor(s * fan-in) in every column of every kernel
            return sum(int(np.floor(fraction * w.shape[0])) * w.shape[1] for w in flat.values())
        return int(np.floor(fraction * sum(w.size for w in flat.values())))

    zeros_seen = {}
    for t in range(1, 11):
        p, state = step(p, state)
        flat = _prunable(p["model"])
        target = float(magnitude.cubic_sparsity(t, final=0.6, begin=2, end=6, frequency=2))
        zeros = {k: np.asarray(w) == 0 for k, w in flat.items()}
        assert sum(z.sum() for z in zeros.values()) == expected_zeros(target, flat)
        if scope == "output":
            for z in zeros.values():
                assert np.all(z.sum(axis=0) == int(np.floor(target * z.shape[0])))
        for k, z in zeros_seen.items():  # a pruned weight never comes back
            assert np.all(zeros[k][z])
        zeros_seen = zeros
    assert sum(z.sum() for z in zeros_seen.values()) == expected_zeros(0.6, flat)


def test_output_scope_prunes_each_column_by_weight_times_scale(tiny):
    """Wanda's masks: in every kernel column, the floor(s * fan-in) smallest |w_ij| * c_i go."""
    _, params, _ = tiny
    flat = _prunable(params)
    rng = np.random.default_rng(3)
    scales = {k: rng.uniform(0.1, 3.0, w.shape[0]).astype(np.float32) for k, w in flat.items()}
    masks = traverse_util.flatten_dict(
        magnitude.magnitude_masks(params, 0.3, scope="output", scales=scales))
    for k, w in flat.items():
        score = np.abs(w) * scales[k][:, None]
        n_prune = int(np.floor(0.3 * w.shape[0]))
        for j in range(w.shape[1]):
            keep = masks[k][:, j]
            assert keep.sum() == w.shape[0] - n_prune
            assert score[keep, j].min() >= score[~keep, j].max()
    # the factors change which weights go: plain |w| per column selects other ones
    plain = traverse_util.flatten_dict(magnitude.magnitude_masks(params, 0.3, scope="output"))
    assert any(not np.array_equal(plain[k], masks[k]) for k in flat)


def test_activation_norms_are_the_l2_norms_of_each_dense_input_over_real_tokens(tiny):
    from tkd_jax.compress import activation_norms

    module, params, batch = tiny
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    norms = activation_norms.input_norms(module, params, [inputs, inputs])
    assert set(norms) == set(_prunable(params))
    out = module.apply({"params": params}, *inputs.values(), output_hidden_states=True)
    real = batch["attention_mask"].astype(bool)
    for i in range(module.config.num_layers):  # Q, K and V read the layer's input state
        x = np.asarray(out.hidden_states[i], np.float64)[real]  # [real tokens, hidden]
        ref = np.sqrt(2 * np.sum(x * x, axis=0))  # the batch twice
        for name in ("query", "key", "value"):
            key = ("encoder", "layer", str(i), "attention", "self", name, "kernel")
            np.testing.assert_allclose(norms[key], ref, rtol=1e-5)
    for k, v in norms.items():  # FFN out reads the intermediate width
        assert v.shape == (_prunable(params)[k].shape[0],) and np.all(v > 0)
    padded = dict(inputs, input_ids=np.where(real, batch["input_ids"], 7))
    again = activation_norms.input_norms(module, params, [padded, padded])
    for k in norms:  # padding tokens do not count
        np.testing.assert_array_equal(again[k], norms[k])


def test_structured_prune_equals_masked(tiny):
    module, params, batch = tiny
    cfg = module.config
    keep_heads = [np.array([0, 3]), np.array([1])]
    keep_neurons = [np.arange(0, 64, 2), np.array([5, 9, 40])]
    small_cfg, small = structured.prune(cfg, params, keep_heads, keep_neurons)
    assert small_cfg.layer_num_heads == (2, 1) and small_cfg.layer_intermediate_sizes == (32, 3)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    got = Transformer(small_cfg).apply({"params": small}, *inputs).logits
    hm, fm = structured.masks_from_keep(cfg, keep_heads, keep_neurons)
    ref = structured.masked_apply(module, params, hm, fm, *inputs).logits
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)
    full = module.apply({"params": params}, *inputs).logits
    assert np.abs(np.asarray(full) - np.asarray(ref)).max() > 1e-3  # masking changed it
    n = lambda t: sum(np.asarray(x).size for x in jax.tree.leaves(t))
    assert n(small) < n(params)


def test_head_importance_matches_finite_differences(tiny):
    module, params, batch = tiny
    scores = structured.head_importance(module, params, [batch])
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(scores, axis=1), 1.0, rtol=1e-6)
    # Raw |dL/dm| of head (1, 2) by central differences of the summed loss.
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(eps):
        hm = [np.ones(4, np.float32), np.array([1, 1, 1 + eps, 1], np.float32)]
        logits = structured.masked_apply(module, params, hm, None, *inputs).logits
        return float(optax.softmax_cross_entropy_with_integer_labels(
            logits, batch["label"]).sum())

    fd = abs(loss(1e-2) - loss(-1e-2)) / 2e-2
    # Undo the layer normalisation with the unnormalised gradients of layer 1.
    grads = []
    for h in range(4):
        def lh(eps, h=h):
            hm = [np.ones(4, np.float32), np.eye(4, dtype=np.float32)[h] * eps + 1]
            logits = structured.masked_apply(module, params, hm, None, *inputs).logits
            return float(optax.softmax_cross_entropy_with_integer_labels(
                logits, batch["label"]).sum())
        grads.append(abs(lh(1e-2) - lh(-1e-2)) / 2e-2)
    grads = np.array(grads)
    np.testing.assert_allclose(grads[2], fd, rtol=1e-6)
    np.testing.assert_allclose(scores[1], grads / np.linalg.norm(grads), rtol=2e-2, atol=2e-3)


def test_ffn_importance_and_keep_top(tiny):
    _, params, _ = tiny
    imp = structured.ffn_importance(params, 2)
    w1 = np.asarray(params["encoder"]["layer"]["1"]["intermediate"]["dense"]["kernel"])
    w2 = np.asarray(params["encoder"]["layer"]["1"]["output"]["dense"]["kernel"])
    np.testing.assert_allclose(imp[1, 7], np.linalg.norm(w1[:, 7]) * np.linalg.norm(w2[7]),
                               rtol=1e-6)
    keep = structured.keep_top(imp, 0.5, "FFN neurons")
    assert [len(k) for k in keep] == [32, 32]
    assert imp[0, keep[0]].min() >= np.delete(imp[0], keep[0]).max()
    with pytest.raises(ConfigError, match="leaves none"):
        structured.keep_top(np.ones((2, 4)), 0.9, "heads")


def test_pruning_more_heads_than_exist_is_rejected(tiny):
    module, params, _ = tiny
    with pytest.raises(ConfigError, match="cannot prune more heads than exist"):
        structured.prune(module.config, params, [np.array([], int), np.array([0])],
                         [np.arange(64), np.arange(64)])
    with pytest.raises(ConfigError, match="layer_num_heads"):
        module.config.replace(layer_num_heads=(5, 1))


def _encoded_train(rng, n=32):
    """n tokenized 12-token examples with random labels: a training split for finetune()."""
    from tkd_jax.data.tokenization import EncodedSplit

    ids = [np.concatenate([[2], rng.integers(5, 100, 10), [3]]).astype(np.int32)
           for _ in range(n)]
    return EncodedSplit(input_ids=ids, token_type_ids=[np.zeros(12, np.int32)] * n,
                        label=rng.integers(0, 2, n).astype(np.int32),
                        lengths=np.full(n, 12, np.int32),
                        filler_ids=np.array([2, 3], np.int32),
                        filler_type_ids=np.zeros(2, np.int32))


def test_finetune_with_schedule_and_teacher_reaches_the_target(tiny):
    from tkd_jax.compress import finetune

    module, params, _ = tiny
    rng = np.random.default_rng(3)
    enc = _encoded_train(rng)
    sched = {"final_sparsity": 0.5, "begin": 0, "end": 4, "frequency": 2, "scope": "layer"}
    out, stats = finetune.finetune(module, params, enc, num_labels=2, teacher=(module, params),
                                   epochs=2, batch_size=8, prune=sched, log=lambda s: None)
    assert stats["steps"] == 8 and np.isfinite(stats["final_loss"])
    assert jax.tree.structure(out) == jax.tree.structure(params)
    for k, w in _prunable(out).items():  # per-layer scope: every kernel exactly half zero
        assert int(np.sum(w == 0)) == int(np.floor(0.5 * w.size)), k


def test_finetune_feature_weight_pulls_hidden_states_to_the_teacher(tiny):
    """Recovery with hidden-state distillation ends closer to the teacher's hidden states than
    the same recovery (same seed, batches, steps) with soft labels only."""
    from tkd_jax.compress import finetune

    module, params, batch = tiny
    rng = np.random.default_rng(5)
    teacher = jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(x.dtype)
                           if x.ndim == 2 else x, params)
    enc = _encoded_train(rng)

    def gap(p):  # mean squared hidden-state difference to the teacher on the fixture batch
        args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        hs = module.apply({"params": p}, *args, output_hidden_states=True).hidden_states
        ht = module.apply({"params": teacher}, *args, output_hidden_states=True).hidden_states
        return float(np.mean([np.mean((np.asarray(a) - np.asarray(b)) ** 2)
                              for a, b in zip(hs, ht, strict=True)]))

    kw = dict(num_labels=2, teacher=(module, teacher), epochs=2, batch_size=8,
              learning_rate=3e-3, warmup_ratio=0.0, log=lambda s: None)
    soft, _ = finetune.finetune(module, params, enc, **kw)
    feat, stats = finetune.finetune(module, params, enc, feature_weight=10.0, **kw)
    assert np.isfinite(stats["final_loss"])
    assert gap(feat) < 0.8 * gap(soft) < gap(params)


def test_recovery_alpha_one_learns_from_the_soft_labels_only(tiny):
    """``Context.alpha`` reaches the recovery: at alpha 1 the task labels carry no weight, so
    a 50 % magnitude recovery on shuffled labels is bit for bit the one on the real labels;
    at the default 0.5 the labels move the weights."""
    import dataclasses
    import types

    from tkd_jax.compress import methods

    module, params, _ = tiny
    enc = _encoded_train(np.random.default_rng(7))
    flipped = dataclasses.replace(enc, label=1 - enc.label)
    spec = types.SimpleNamespace(num_labels=2, is_regression=False)

    def recovered(split, alpha):
        ctx = methods.Context(module=module, params=params, spec=spec, encoded_train=split,
                              finetune_epochs=1, learning_rate=1e-3, batch_size=8,
                              alpha=alpha, log=lambda s: None)
        product = methods.METHODS["magnitude"](ctx)
        assert f"alpha {alpha:g}" in product.info["finetune_teacher"]
        return traverse_util.flatten_dict(product.params)

    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in a)

    assert same(recovered(enc, 1.0), recovered(flipped, 1.0))
    assert not same(recovered(enc, 0.5), recovered(flipped, 0.5))
