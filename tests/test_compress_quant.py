"""int8 / bf16 / w8a8 quantization and compressed save/load (tiny model, CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tkd_jax.compress import int8, methods, runtime, storage
from tkd_jax.errors import ConfigError
from tkd_jax.models.transformer import Transformer, get_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # qwix on flax 0.12


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("tiny", num_labels=3, vocab_size=100)
    module = Transformer(cfg)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (4, 16)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    types = np.zeros_like(ids)
    params = module.init(jax.random.PRNGKey(0), ids, mask, types)["params"]
    # Wider than the default init so logits move measurably with the weights.
    params = jax.tree.map(lambda x: np.asarray(x) * 5 if x.ndim == 2 else np.asarray(x), params)
    return module, params, (ids, mask, types)


def test_channel_scales_match_numpy_reference():
    w = np.random.default_rng(1).normal(size=(48, 20)).astype(np.float32)
    np.testing.assert_allclose(int8.channel_scales(w, 1), np.abs(w).max(axis=0) / 127,
                               rtol=1e-7)
    np.testing.assert_allclose(int8.channel_scales(w, 0), np.abs(w).max(axis=1) / 127,
                               rtol=1e-7)
    p99 = np.array([np.percentile(np.abs(w[:, j]), 99) for j in range(20)]) / 127
    np.testing.assert_allclose(int8.channel_scales(w, 1, percentile=99), p99, rtol=1e-6)
    with pytest.raises(ConfigError, match="percentile"):
        int8.channel_scales(w, 1, percentile=0)


def test_round_trip_within_half_an_int8_step():
    w = np.random.default_rng(2).normal(size=(64, 32)).astype(np.float32)
    t = int8.quantize(w, 1)
    assert t.values.dtype == np.int8 and t.scale.shape == (32,)
    assert np.abs(t.values).max() == 127  # absmax maps to the edge of the range
    err = np.abs(t.dequantize() - w)
    assert np.all(err <= t.scale[None, :] / 2 + 1e-7)
    # Percentile clipping: values beyond the clip range saturate at +-127 steps.
    tp = int8.quantize(w, 1, percentile=90)
    assert np.all(np.abs(tp.dequantize()) <= 127 * tp.scale[None, :] + 1e-6)
    # Re-quantizing dequantized values recovers the same int8 values (w8a8 reuses them).
    again = int8.quantize(t.dequantize(), 1)
    np.testing.assert_array_equal(again.values, t.values)


@pytest.mark.parametrize("name, tol", [("bf16", 0.05), ("int8_dynamic", 0.1)])
def test_runtimes_close_to_fp32(tiny, name, tol):
    module, params, inputs = tiny
    f32_apply, f32_params = runtime.make_runtime("fp32", module, params)
    ref = np.asarray(f32_apply(f32_params, *inputs))
    apply, p = runtime.make_runtime(name, module, params)
    got = np.asarray(jax.jit(apply)(p, *inputs))
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= tol * scale
    assert not np.array_equal(got, ref)  # it really ran quantized


def test_int8_dynamic_lowers_to_int8_dots(tiny):
    module, params, inputs = tiny
    apply, p = runtime.make_runtime("int8_dynamic", module, params)
    hlo = jax.jit(apply).lower(p, *inputs).as_text()
    assert "xi8>" in hlo or "s8[" in hlo


def test_unknown_runtime_is_a_config_error(tiny):
    module, params, _ = tiny
    with pytest.raises(ConfigError, match="runtime 'int4'"):
        runtime.make_runtime("int4", module, params)


@pytest.mark.parametrize("kind", ["f32", "bf16", "int8", "bitmask"])
def test_save_load_same_logits(tiny, tmp_path, kind):
    module, params, inputs = tiny
    cfg = module.config

    def encoding(path, w):
        if kind in ("bf16", "int8"):
            return kind if int8.channel_axis(path, w) is not None else "f32"
        if kind == "bitmask":
            return "bitmask" if path[-1] == "kernel" else "f32"
        return "f32"

    if kind == "bitmask":  # a sparse model: half of every kernel zero
        params = jax.tree_util.tree_map_with_path(
            lambda p, x: np.where(np.arange(x.size).reshape(x.shape) % 2, x, 0)
            if p[-1].key == "kernel" else x, params)
    size = storage.save(tmp_path / "m.safetensors", cfg, params, encoding=encoding,
                        meta={"method": kind})
    assert size == (tmp_path / "m.safetensors").stat().st_size
    cfg2, loaded, meta = storage.load(tmp_path / "m.safetensors")
    assert cfg2 == cfg and meta == {"method": kind}
    expected = params
    if kind == "int8":
        expected = int8.dequantize_tree(int8.quantize_tree(params))
    elif kind == "bf16":
        expected = jax.tree_util.tree_map_with_path(
            lambda p, x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32)
            if int8.channel_axis(tuple(k.key for k in p), x) is not None else x, params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 loaded, expected)
    out = Transformer(cfg2).apply({"params": loaded}, *inputs).logits
    ref = Transformer(cfg).apply({"params": expected}, *inputs).logits
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


def test_int8_file_is_about_four_times_smaller(tmp_path):
    cfg = get_config("tiny", num_labels=2, vocab_size=2000, hidden_size=128,
                     intermediate_size=512, num_heads=4)
    ids = np.ones((1, 8), np.int32)
    params = Transformer(cfg).init(jax.random.PRNGKey(0), ids, ids, ids * 0)["params"]
    f32 = storage.save(tmp_path / "a", cfg, params, encoding=lambda p, w: "f32")
    q = storage.save(tmp_path / "b", cfg, params, encoding=lambda p, w: "int8"
                     if int8.channel_axis(p, w) is not None else "f32")
    assert f32 / q > 3.5


def test_load_rejects_a_foreign_file(tmp_path):
    import safetensors.numpy

    from tkd_jax.errors import CheckpointError

    safetensors.numpy.save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "x"))
    with pytest.raises(CheckpointError, match="not a tkd_jax compressed model"):
        storage.load(tmp_path / "x")
    with pytest.raises(CheckpointError, match="cannot read"):
        storage.load(tmp_path / "missing")


def test_qat_module_trains_through_int8_and_matches_ptq(tiny):
    import optax

    from tkd_jax.compress import qat
    from tkd_jax.train import objectives, steps

    module, params, (ids, mask, types) = tiny
    qm = qat.qat_module(module, "int8")
    init = qm.init(jax.random.PRNGKey(0), ids, mask, types)["params"]
    assert jax.tree.structure(init) == jax.tree.structure(params)  # plain float params
    ref = np.asarray(module.apply({"params": params}, ids, mask, types).logits)
    qat_logits = np.asarray(qm.apply({"params": params}, ids, mask, types).logits)
    apply, qp = runtime.make_runtime("int8_dynamic", module, params)
    ptq_logits = np.asarray(apply(qp, ids, mask, types))
    assert not np.array_equal(qat_logits, ref)
    # QAT's forward is the deployed int8 computation, much closer to it than to fp32.
    assert np.abs(qat_logits - ptq_logits).max() < 0.2 * np.abs(qat_logits - ref).max()
    # One distillation step of the QAT student from the fp32 teacher lowers the loss.
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
             "label": np.array([0, 1, 2, 0], np.int32), "weight": np.ones(4, np.float32)}
    spec = steps.StepSpec(objective=objectives.TaskObjective(
        task="test", regression=False, num_labels=3,
        distill=objectives.DistillSpec(alpha=0.5, teachers=(module,))))
    from tkd_jax.train.state import create_train_state

    state = create_train_state(apply_fn=None, params={"model": jax.tree.map(jnp.asarray, params)},
                               tx=optax.sgd(0.05), precision="fp32",
                               rng=jax.random.PRNGKey(0))
    frozen = {"teachers": (params,)}
    step = jax.jit(lambda s, b: steps.train_step(s, b, jax.random.PRNGKey(1), frozen,
                                                 spec=spec, model=qm))
    losses_seen = []
    for _ in range(3):
        state, m = step(state, batch)
        losses_seen.append(float(m["loss"]))
    assert losses_seen[-1] < losses_seen[0]
    with pytest.raises(ConfigError, match="config.qat='int4'"):
        qat.qat_module(module, "int4")


def test_int8_weight_bf16_stores_int8_and_runs_the_bf16_runtime(tiny, tmp_path):
    # The file is int8_weight's; what runs is the bf16 runtime on its dequantized weights.
    module, params, inputs = tiny
    ctx = methods.Context(module=module, params=params, spec=None, encoded_train=None)
    small, fast = methods.int8_weight(ctx), methods.int8_weight_bf16(ctx)
    assert (small.runtime, fast.runtime) == ("fp32", "bf16")
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    storage.save(a, module.config, params, encoding=small.encoding)
    storage.save(b, module.config, params, encoding=fast.encoding)
    assert storage.stored_bytes(a) == storage.stored_bytes(b)
    _, loaded, _ = storage.load(b)
    apply, p = runtime.make_runtime(fast.runtime, module, loaded)
    got = np.asarray(jax.jit(apply)(p, *inputs))
    ref_apply, ref_p = runtime.make_runtime("bf16", module,
                                            int8.dequantize_tree(int8.quantize_tree(params)))
    np.testing.assert_array_equal(got, np.asarray(jax.jit(ref_apply)(ref_p, *inputs)))


def test_structured_bf16_re_encodes_the_recovered_structured_model(tiny):
    # It must not prune or fine-tune again: it takes structured's cached product as it is.
    module, params, _ = tiny
    ctx = methods.Context(module=module, params=params, spec=None, encoded_train=None)
    done = methods.Product(module.config, params, "fp32", methods.f32_encoding, {"kept": 1})
    ctx.cache[methods.RECOVERED_STRUCTURED] = done
    for name, rt in (("structured_bf16", "bf16"), ("structured_int8_dynamic", "int8_dynamic")):
        p = methods.METHODS[name](ctx)
        assert name in methods.ON_STRUCTURED and name in methods.FINETUNED
        assert (p.config, p.params, p.runtime, p.info) == (module.config, params, rt, {"kept": 1})


def test_methods_on_structured_reuse_its_file_only_with_equal_settings(tiny, tmp_path):
    from tkd_jax.compress import study

    module, params, _ = tiny
    knobs = dict(percentile=100.0, sparsity=0.5, scope="global", head_fraction=0.5,
                 ffn_fraction=0.5, finetune=3, learning_rate=0.0)
    ctx = methods.Context(module=module, params=params, spec=None, encoded_train=None)
    ctx.cache[methods.RECOVERED_STRUCTURED] = methods.Product(module.config, params, "fp32",
                                                      methods.f32_encoding, {"kept": 1})
    study.produce(ctx, "structured", study.settings_of("structured", **knobs), tmp_path,
                  log=lambda *_: None)
    # A fresh context (no data: pruning again would fail) takes structured's model from the file.
    fresh = methods.Context(module=module, params=params, spec=None, encoded_train=None)
    rec = study.produce(fresh, "structured_bf16", study.settings_of("structured_bf16", **knobs),
                        tmp_path, log=lambda *_: None)
    assert rec["runtime"] == "bf16" and rec["info"] == {"kept": 1} and rec["cost_seconds"] == 0
    taken = fresh.cache[methods.RECOVERED_STRUCTURED].params
    jax.tree.map(np.testing.assert_array_equal, taken, params)
    # Other settings (a different recovery length) are another model: not taken from the file.
    other = methods.Context(module=module, params=params, spec=None, encoded_train=None)
    study._reuse_structured(other, "structured_bf16",
                            study.settings_of("structured_bf16", **{**knobs, "finetune": 1}),
                            tmp_path, log=lambda *_: None)
    assert other.cache == {}
