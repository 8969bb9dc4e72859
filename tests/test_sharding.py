"""Parameter layouts on 8 fake CPU devices: sharded == replicated, checkpoints move between them.

One subprocess (XLA_FLAGS must be set before jax is imported) trains a tiny Transformer for a
few AdamW steps (dropout on: threefry is partitionable, so masks do not depend on the layout)
in three layouts on the same batches — replicated (8-way data parallel), tensor (4-way model x
2-way data) and fsdp (params split 4-way, batch 8-way; and again split 2-way, "fsdp_2") — then
writes the tensor-sharded state with orbax and restores it into every layout. The test
functions read its report and its stderr (XLA's compile warnings).
"""

import json
import textwrap

import numpy as np
import pytest

from tests.experiment_utils import run_python

SCRIPT = textwrap.dedent("""
    import functools, json, sys, tempfile
    import jax, jax.numpy as jnp, numpy as np, optax
    from tkd_jax.models.registry import create_model
    from tkd_jax.train import optim, sharding
    from tkd_jax.train.checkpoint import Checkpointer
    from tkd_jax.train.state import create_train_state
    assert jax.device_count() == 8, jax.devices()

    L, B = 8, 16
    model = create_model("tiny", num_labels=2, vocab_size=1000, max_len=L, num_layers=1)
    tx, _ = optim.make_optimizer(learning_rate=1e-3, total_steps=10)
    rng = np.random.default_rng(0)
    batches = [dict(
        input_ids=rng.integers(0, 1000, (B, L)).astype(np.int32),
        attention_mask=(np.arange(L)[None] < rng.integers(4, L + 1, (B, 1))).astype(np.int32),
        token_type_ids=np.zeros((B, L), np.int32),
        label=rng.integers(0, 2, B).astype(np.int32)) for _ in range(3)]

    def init(key):
        ids = jnp.zeros((1, L), jnp.int32)
        params = model.init(key, ids, jnp.ones_like(ids))["params"]
        return create_train_state(apply_fn=model.apply, params={"model": params}, tx=tx,
                                  precision="fp32", rng=key)

    def step(state, batch, lay):
        key = jax.random.fold_in(state.rng, state.step)
        def loss_fn(p):
            p = lay.gather_tables(p)  # as the engine's step does (StepSpec.gather_params)
            out = model.apply({"params": p["model"]}, batch["input_ids"],
                              batch["attention_mask"], batch["token_type_ids"],
                              deterministic=False, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(
                out.logits, batch["label"]).mean()
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    report, states, layouts = {}, {}, {}
    for name, m in (("replicated", 1), ("tensor", 4), ("fsdp", 4), ("fsdp_2", 2)):
        lay = layouts[name] = sharding.Layout(name.split("_")[0], model_parallelism=m)
        state = lay.init(init, jax.random.PRNGKey(0))
        start = jax.device_get(state.params)
        shardings = lay.shardings(state)
        train = jax.jit(functools.partial(step, lay=lay), in_shardings=(shardings, lay.batch),
                        out_shardings=(shardings, lay.replicated), donate_argnums=0)
        losses = []
        for b in batches:
            state, loss = train(state, lay.put_batch(b))
            losses.append(float(loss))
        states[name] = state
        q = state.params["model"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]
        report[name] = {
            "losses": losses,
            "specs": {p: s for p, _, s in lay.describe(state)},
            "query_shard": list(q["kernel"].addressable_shards[0].data.shape),
            "mesh": dict(lay.mesh.shape),
            "bytes_per_device": lay.bytes_per_device(state.params),
            "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(
                jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(start))),
        }
        np.savez(sys.argv[1] + f"/{name}.npz", **{
            p: np.asarray(x) for p, x in zip(
                [d[0] for d in lay.describe(state.params)], jax.tree.leaves(state.params))})

    # A checkpoint written from the tensor layout restores into every layout, bit for bit.
    ckpt = Checkpointer(sys.argv[1] + "/ckpt", keep=1, async_save=False)
    ckpt.save(3, states["tensor"], {"note": "tensor"})
    ckpt.wait()
    saved = jax.device_get(states["tensor"])
    for name, lay in layouts.items():
        restored, meta = ckpt.restore(lay.abstract(states[name]))
        same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), b)),
                            jax.device_get(restored), saved)
        report[name]["restored_equal"] = all(jax.tree.leaves(same))
        report[name]["restored_specs_match"] = all(
            a.sharding.spec == s.spec for a, s in zip(
                jax.tree.leaves(restored), jax.tree.leaves(lay.shardings(restored))))
        report[name]["restored_meta"] = meta
    ckpt.close()
    print("REPORT " + json.dumps(report))
""")
FLAGS = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=900 "
                      "--xla_cpu_collective_timeout_seconds=900"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding")
    proc = run_python(SCRIPT.replace("sys.argv[1]", repr(str(out))), env=FLAGS, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    report["stderr"] = proc.stderr  # XLA's compile warnings
    return report, out


def test_sharded_layouts_give_the_replicated_losses_and_parameters(run):
    report, out = run
    ref_loss = np.array(report["replicated"]["losses"])
    ref = np.load(out / "replicated.npz")
    for name in ("tensor", "fsdp", "fsdp_2"):
        np.testing.assert_allclose(report[name]["losses"], ref_loss, atol=1e-5, rtol=0)
        params = np.load(out / f"{name}.npz")
        assert sorted(params) == sorted(ref)
        for path in ref:
            np.testing.assert_allclose(params[path], ref[path], atol=1e-5, rtol=0,
                                       err_msg=f"{name}: {path}")
    # The steps did move the parameters (AdamW: about lr = 1e-3 per step), far beyond 1e-5.
    for name in ("replicated", "tensor", "fsdp", "fsdp_2"):
        assert report[name]["moved"] > 1e-3, name


def test_layouts_split_what_the_rules_say(run):
    report, _ = run
    assert report["replicated"]["mesh"] == {"data": 8, "model": 1}
    assert report["tensor"]["mesh"] == report["fsdp"]["mesh"] == {"data": 2, "model": 4}
    specs = report["tensor"]["specs"]
    layer = "params/model/encoder/layer/0"
    assert specs[f"{layer}/attention/self/query/kernel"] == [None, "model"]
    assert specs[f"{layer}/attention/output/dense/kernel"] == ["model", None]
    assert specs[f"{layer}/intermediate/dense/kernel"] == [None, "model"]
    assert specs[f"{layer}/output/dense/kernel"] == ["model", None]
    assert specs[f"{layer}/attention/output/LayerNorm/scale"] == []
    # Adam's moments follow their parameters; scalars (step, count) stay replicated.
    mu = [p for p in specs if p.endswith("mu/model/encoder/layer/0/attention/self/query/kernel")]
    assert len(mu) == 1 and specs[mu[0]] == [None, "model"]
    assert specs["step"] == []
    assert report["tensor"]["query_shard"] == [32, 8]  # 4-way split of a [32, 32] kernel
    assert report["replicated"]["query_shard"] == [32, 32]
    fsdp = report["fsdp"]["specs"]
    assert fsdp["params/model/embeddings/word_embeddings/embedding"] == \
        ["model", None]  # [1000, 32]: the largest dim 4 divides
    full = report["replicated"]["bytes_per_device"]
    for name in ("tensor", "fsdp"):
        assert report[name]["bytes_per_device"] < full / 2, name


def test_fsdp_steps_gather_the_embedding_tables_instead_of_replicating_activations(run):
    report, _ = run
    assert report["fsdp_2"]["mesh"] == {"data": 4, "model": 2}
    # Stored split by features (the [2, 32] token types) or rows ([1000, 32] words) ...
    for name in ("fsdp", "fsdp_2"):
        specs = report[name]["specs"]
        assert specs["params/model/embeddings/token_type_embeddings/embedding"] == \
            [None, "model"]
        assert specs["params/model/embeddings/word_embeddings/embedding"] == ["model", None]
    # ... and whole inside the step (Layout.gather_tables): without it XLA replicates the
    # batch-sharded gradient of the token-type lookup on both meshes, and says so.
    assert "Involuntary full rematerialization" not in report["stderr"]


def test_a_sharded_checkpoint_restores_into_every_layout(run):
    report, _ = run
    for name in ("replicated", "tensor", "fsdp", "fsdp_2"):
        assert report[name]["restored_equal"], name
        assert report[name]["restored_specs_match"], name
        assert report[name]["restored_meta"] == {"note": "tensor"}


def test_bad_layout_settings_are_config_errors():
    from tkd_jax.errors import ConfigError
    from tkd_jax.train import sharding

    with pytest.raises(ConfigError, match=r"^config.param_layout: expected one of"):
        sharding.Layout("zero3")
    with pytest.raises(ConfigError, match=r"^config.model_parallelism: expected a divisor"):
        sharding.make_mesh(3, devices=[object()] * 4)


# The engine with each layout (one process, 8 devices, three runs in one interpreter): the same
# losses and dev metrics, and a hook sees the state really laid out as asked.
ENGINE = textwrap.dedent("""
    import json, sys
    import jax
    import tkd_jax
    glue_dir, out = sys.argv[1:3]
    report = {}
    for layout, m in (("replicated", 1), ("tensor", 4), ("fsdp", 4)):
        c = tkd_jax.recipe_config("transformer")
        c.update(dict(task="rte", data_dir=glue_dir, model="tiny", max_len=32, batch_size=16,
                      eval_batch_size=16, max_train_examples=64, max_eval_examples=40,
                      num_train_steps=4, log_every_steps=1, dropout_rate=0.0,
                      attention_dropout_rate=0.0, progress_bar=False, quiet=True,
                      compile_cache_dir="", learning_rate=1e-3))
        c.param_layout, c.model_parallelism = layout, m
        seen = {}

        def hook(kind, step, state):
            q = state.params["model"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]
            mu = state.opt_state[1][0].mu["model"]["encoder"]["layer"]["0"]["attention"]
            seen["kernel"] = list(q["kernel"].addressable_shards[0].data.shape)
            seen["mu"] = list(mu["self"]["query"]["kernel"].addressable_shards[0].data.shape)

        final = tkd_jax.train_and_evaluate(c, f"{out}/{layout}", hooks=(hook,))
        losses = [json.loads(x)["loss"] for x in open(f"{out}/{layout}/metrics.jsonl")
                  if json.loads(x)["kind"] == "train"]
        report[layout] = {"losses": losses, "metrics": final["metrics"], **seen}
    print("REPORT " + json.dumps(report))
""")


def test_the_engine_trains_the_same_in_every_layout(glue_dir, tmp_path):
    proc = run_python(ENGINE.replace("sys.argv[1:3]", repr([str(glue_dir), str(tmp_path)])),
                      env=FLAGS, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    ref = report["replicated"]
    assert len(ref["losses"]) == 4
    assert ref["kernel"] == ref["mu"] == [32, 32]
    assert report["tensor"]["kernel"] == report["tensor"]["mu"] == [32, 8]
    assert report["fsdp"]["kernel"] == report["fsdp"]["mu"] == [8, 32]
    # The engine's step gathers fsdp's embedding tables too (see the test above).
    assert "Involuntary full rematerialization" not in proc.stderr
    for name in ("tensor", "fsdp"):
        np.testing.assert_allclose(report[name]["losses"], ref["losses"], atol=1e-5, rtol=0)
        for key, value in ref["metrics"].items():
            assert abs(report[name]["metrics"][key] - value) <= 1e-5, (name, key)
