"""Multi-process jobs on 127.0.0.1: the harness itself, and bad setups failing fast.

Every multi-process case launches real `python` processes (tests/process_harness.py) that join one
`jax.distributed` job with gloo CPU collectives and 4 fake devices each.
"""

import re
import textwrap

import numpy as np
import pytest

from tests.process_harness import Result, describe, launch, tagged
from tkd_jax.train import multihost
from tkd_jax.train.multihost import MultiHostError

# A sharded computation across both processes: each feeds its 4 local rows of a global [8]
# array; a jitted sum (XLA inserts the cross-process all-reduce), a psum under shard_map, and
# an all-gather to every device must all see the whole array. Every local part of each
# collective is waited for (block_until_ready on the whole array): reading one shard, as
# multihost_utils.process_allgather does, can leave another device's part of the collective
# running at exit, and a part still connecting to a peer that has exited hangs the
# interpreter's teardown (about once in 60-90 runs under load; with the all-gather waited
# for: none in 179 runs).
COLLECTIVES = textwrap.dedent("""
    import json
    import numpy as np
    from tkd_jax.train import multihost
    assert multihost.initialize(multihost.resolve_spec(), timeout_seconds=60)
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = multihost.process_rows(8)
    local = np.arange(8, dtype=np.float32)[rows] ** 2
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
    total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)
    psum = jax.jit(jax.shard_map(lambda v: jax.lax.psum(jnp.sum(v), "data"), mesh=mesh,
                                 in_specs=P("data"), out_specs=P()))(x)
    everywhere = jax.jit(lambda v: v, out_shardings=NamedSharding(mesh, P()))(x)
    total, psum, everywhere = jax.block_until_ready((total, psum, everywhere))
    gathered = np.asarray(everywhere.addressable_data(0)).reshape(2, 4)
    print("RESULT " + json.dumps({
        "process": jax.process_index(), "count": jax.process_count(),
        "devices": jax.device_count(), "local": jax.local_device_count(),
        "sum": float(total), "psum": float(psum), "gathered": gathered.tolist(),
        "primary": multihost.is_primary()}))
""")

# The start of a training program: join, then the cheap cross-process checks; user errors
# become one line and exit 2 exactly as in the command-line entry points.
CHECKS = textwrap.dedent("""
    import os, sys
    from experiments import cli
    from tkd_jax.train import multihost

    def main(argv):
        multihost.initialize(multihost.resolve_spec(),
                             timeout_seconds=float(os.environ.get("TIMEOUT", "60")))
        batch = int(os.environ.get("BATCH", "16"))
        multihost.check_same_config({"batch_size": batch, "model": {"name": "tiny"}})
        multihost.check_batch_divisible(batch)
        print("CHECKED")
        return 0

    sys.exit(cli.run_main(main))
""")


def _line(r, tag):
    line = tagged(r, tag)
    assert line is not None, (f"process {r.process_id} exited {r.returncode} without a {tag} "
                              f"line; stdout:\n{r.stdout[-4000:]}\n{describe([r])}")
    return line


def _result(r):
    import json

    return json.loads(_line(r, "RESULT ")[len("RESULT "):])


def test_two_processes_form_one_job_with_cross_process_collectives():
    results = launch(COLLECTIVES, num_processes=2, devices=4, timeout=120)
    assert all(r.returncode == 0 for r in results), describe(results)
    expected = float(np.sum(np.arange(8.0) ** 2))  # 140
    for pid, r in enumerate(results):
        out = _result(r)
        assert (out["process"], out["count"], out["devices"], out["local"]) == (pid, 2, 8, 4)
        assert out["sum"] == out["psum"] == expected
        np.testing.assert_array_equal(out["gathered"], np.arange(8.0).reshape(2, 4) ** 2)
        assert out["primary"] == (pid == 0)


def test_a_hung_child_says_where_it_hung_before_it_is_killed():
    # No jax here: the harness itself. Process 1 exits at once; process 0 hangs in a named
    # function until the timeout, so its stderr must hold that function's frame.
    hang = textwrap.dedent("""
        import os, time
        def wait_for_a_peer_that_left():
            time.sleep(600)
        if os.environ["JAX_PROCESS_ID"] == "0":
            wait_for_a_peer_that_left()
    """)
    hung, done = launch(hang, timeout=5)
    assert (done.returncode, done.killed) == (0, False), describe([done])
    assert hung.killed and hung.returncode == -9, describe([hung])
    assert "in wait_for_a_peer_that_left" in hung.stderr, describe([hung])


def test_a_tagged_line_is_found_after_a_piece_of_gloos_output():
    # A child's stdout as gloo's threads can leave it (seen in runs of the collectives test
    # above): their messages split and interleaved, the child's line after a piece of one.
    stdout = ("[Gloo] Rank [Gloo] Rank 0 is connected to 1 peer ranks. Expected number of "
              "connected peer ranks is : 1\n0 is connected to 1 peer ranks. Expected number of "
              'connected peer ranks is : 1\n[Gloo] Rank RESULT {"sum": 140.0}\n'
              "0 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1\n")
    r = Result(0, 0, stdout, "", 1.0, False)
    assert _result(r) == {"sum": 140.0}
    assert tagged(r, "SHARD") is None
    with pytest.raises(AssertionError, match="exited 0 without a SHARD line"):
        _line(r, "SHARD")


def _one_error_line(r) -> str:
    assert r.returncode == 2 and not r.killed, describe([r])
    assert "Traceback" not in r.stderr, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_mismatched_configs_fail_on_every_process_naming_the_key():
    results = launch(CHECKS, per_process_env=[{"BATCH": "16"}, {"BATCH": "32"}], timeout=90)
    for r in results:
        line = _one_error_line(r)
        assert "config differs between processes" in line and "batch_size=" in line, line
        assert re.search(r"batch_size=(16|32) on process \d vs (16|32) on process \d", line)
        assert r.seconds < 60


def test_batch_not_divisible_by_process_count():
    results = launch(CHECKS, env={"BATCH": "9"}, timeout=90)
    for r in results:
        line = _one_error_line(r)
        assert "config.batch_size: 9 is not divisible by the 2 processes" in line, line


@pytest.mark.parametrize("process_id, expected", [
    (1, "coordinator 127.0.0.1:{port} did not answer within 4 s"),
    (0, "not all 2 processes joined coordinator 127.0.0.1:{port} within 4 s"),
])
def test_a_job_that_never_forms_ends_in_bounded_time(process_id, expected):
    # Only one of the two processes is started: process 1 finds no coordinator; process 0 is
    # the coordinator but its peer never registers.
    from tests.process_harness import free_port

    port = free_port()
    env = {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(process_id), "TIMEOUT": "4"}
    (r,) = launch(CHECKS, num_processes=1, per_process_env=[env], port=port, timeout=60)
    line = _one_error_line(r)
    assert expected.format(port=port) in line, line
    assert f"process {process_id} of 2" in line
    assert r.seconds < 30  # 4 s of waiting plus interpreter and jax start-up


# ---------------------------------------------------------------------- in-process units


def test_resolve_spec_from_arguments_and_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    assert multihost.resolve_spec(environ=env) == multihost.ProcessSpec("10.0.0.1:1234", 4, 3)
    # Arguments beat the environment.
    spec = multihost.resolve_spec("h:99", 2, 0, environ=env)
    assert spec == multihost.ProcessSpec("h:99", 2, 0)
    assert multihost.resolve_spec(environ={}) is None
    auto = multihost.resolve_spec(environ={"TKD_DISTRIBUTED": "1"})
    assert auto == multihost.ProcessSpec(None, None, None)


@pytest.mark.parametrize("env, field", [
    ({"JAX_COORDINATOR_ADDRESS": "nohostport", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "0"}, "coordinator_address"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"}, "num_processes"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "process_id"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
      "JAX_PROCESS_ID": "2"}, "process_id"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two",
      "JAX_PROCESS_ID": "0"}, "num_processes"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "coordinator_address"),
])
def test_resolve_spec_rejects_bad_descriptions_naming_the_field(env, field):
    with pytest.raises(MultiHostError, match=f"^{field}") as info:
        multihost.resolve_spec(environ=env)
    assert "\n" not in str(info.value)


def test_process_rows_are_disjoint_equal_blocks_covering_the_batch():
    rows = [np.arange(12)[multihost.process_rows(12, p, 3)] for p in range(3)]
    np.testing.assert_array_equal(np.concatenate(rows), np.arange(12))
    assert [len(r) for r in rows] == [4, 4, 4]
    with pytest.raises(MultiHostError, match="not divisible by 3"):
        multihost.process_rows(10, 0, 3)


def test_config_differences_name_changed_added_and_removed_keys():
    a = multihost.flatten_config({"lr": 1e-3, "model": {"name": "tiny", "layers": 2}})
    b = multihost.flatten_config({"lr": 1e-3, "model": {"name": "tiny", "heads": 2}})
    assert a == {"lr": "0.001", "model.layers": "2", "model.name": '"tiny"'}
    assert multihost.config_differences(a, b) == ["model.heads", "model.layers"]
    assert multihost.config_differences(a, dict(a)) == []


# Orbax writes a checkpoint from every process together (each its own shards) and any process
# layout reads it back: 2 processes x 4 devices (fsdp) -> 1 process x 8 (replicated, fsdp) and
# back to 2 processes.
CHECKPOINT = textwrap.dedent("""
    import sys
    import numpy as np
    from tkd_jax.train import multihost
    multihost.initialize(multihost.resolve_spec(), timeout_seconds=60)
    import jax, jax.numpy as jnp
    from jax.sharding import PartitionSpec as P
    from tkd_jax.train import sharding
    from tkd_jax.train.checkpoint import Checkpointer
    mode, layout, directory = sys.argv[1:4]
    lay = sharding.Layout(layout, model_parallelism=1 if layout == "replicated" else 4)

    def make():
        w = jax.random.normal(jax.random.PRNGKey(0), (8, 16))
        return {"w": w, "b": jnp.arange(16.0), "step": jnp.asarray(3, jnp.int32)}

    ckpt = Checkpointer(directory, keep=1, async_save=False)
    if mode == "save":
        tree = lay.init(make)
        print("SHARD", tree["w"].addressable_shards[0].data.shape)
        ckpt.save(3, tree, {"written_by": jax.process_count()})
    else:
        tree, meta = ckpt.restore(lay.abstract(jax.eval_shape(make)))
        # Gathered to every device and waited for on all of them (see COLLECTIVES).
        everywhere = jax.block_until_ready(
            {k: jax.jit(lambda v: v, out_shardings=v.sharding.update(spec=P()))(v)
             for k, v in tree.items()})
        full = {k: np.asarray(v.addressable_data(0)) for k, v in everywhere.items()}
        ref = jax.device_get(make())
        same = all(np.array_equal(full[k], ref[k]) for k in ref)
        print("RESTORED", same, tuple(tree["w"].sharding.spec), meta["written_by"])
    ckpt.close()
""")


def test_checkpoints_move_between_process_layouts(tmp_path):
    two = launch(CHECKPOINT, args=["save", "fsdp", tmp_path / "a"], timeout=120)
    assert all(r.returncode == 0 for r in two), describe(two)
    assert all(_line(r, "SHARD") == "SHARD (8, 4)" for r in two)  # w split 4-way
    (one,) = launch(CHECKPOINT, num_processes=1, devices=8,
                    args=["restore", "replicated", tmp_path / "a"], timeout=120)
    assert one.returncode == 0, describe([one])
    assert _line(one, "RESTORED") == "RESTORED True () 2"
    (one,) = launch(CHECKPOINT, num_processes=1, devices=8,
                    args=["save", "fsdp", tmp_path / "b"], timeout=120)
    assert one.returncode == 0, describe([one])
    two = launch(CHECKPOINT, args=["restore", "fsdp", tmp_path / "b"], timeout=120)
    assert all(r.returncode == 0 for r in two), describe(two)
    assert all(_line(r, "RESTORED") == "RESTORED True (None, 'model') 1" for r in two)


# The same mistakes through the command line (`python -m experiments.glue`): the checks run
# before any data is read, so each case ends within seconds of the processes starting.
CLI = textwrap.dedent("""
    import os, runpy, sys
    sys.argv = ["glue", *sys.argv[1:], *os.environ.get("EXTRA_ARGS", "").split()]
    runpy.run_module("experiments.glue", run_name="__main__", alter_sys=True)
""")


def _cli_args(tmp_path, glue_dir):
    return ["--task", "rte", "--recipe", "transformer", "--config.model=tiny",
            "--data_dir", glue_dir, "--workdir", tmp_path / "run", "--config.batch_size=16",
            "--config.eval_batch_size=16", "--config.compile_cache_dir="]


@pytest.mark.parametrize("case", ["mismatch", "indivisible", "no_coordinator"])
def test_bad_multihost_setups_through_the_cli(case, tmp_path, glue_dir):
    args = _cli_args(tmp_path, glue_dir)
    if case == "mismatch":
        results = launch(CLI, args=args, timeout=120, per_process_env=[
            {}, {"EXTRA_ARGS": "--config.learning_rate=0.01"}])
        expected = [r"config differs between processes: learning_rate="]
    elif case == "indivisible":
        results = launch(CLI, args=[*args, "--config.batch_size=9"], timeout=120)
        expected = [r"config.batch_size: 9 is not divisible by the 8 devices"]
    else:
        results = launch(CLI, args=args, num_processes=1, timeout=60, per_process_env=[
            {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", "TKD_DISTRIBUTED_TIMEOUT": "4"}])
        expected = [r"coordinator 127\.0\.0\.1:\d+ did not answer within 4 s"]
    for r in results:
        line = _one_error_line(r)
        assert any(re.search(e, line) for e in expected), line
        assert r.seconds < 60, r.seconds
    assert not (tmp_path / "run" / "manifest.json").exists()
