"""Data parallelism on 8 fake CPU devices: 1-device jit == 8-device jit == 8-device pmap.

Runs in a subprocess because XLA_FLAGS must be set before jax is imported. Dropout is off
(replicas would otherwise draw different masks by design), so the three runs compute the same
function and must agree to float32 reduction-order noise.
"""

import json
import textwrap

import numpy as np

from tests.experiment_utils import SMALL, final_metrics, records, run_python

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import tkd_jax
    from experiments import cli
    workdir, data_dir, mode, ndev = sys.argv[1:5]
    assert jax.device_count() == 8, jax.devices()
    _, overrides = cli.split_overrides(sys.argv[5:])
    config = tkd_jax.recipe_config("transformer")
    config.task, config.data_dir = "rte", data_dir
    cli.apply_overrides(config, overrides)
    config.parallel, config.num_devices = mode, int(ndev)
    tkd_jax.train_and_evaluate(config, workdir)
""")
# Generous collective timeouts: 8 fake devices share 2 cores, so on a loaded machine a replica
# can reach an all-reduce long after the others (the default aborts the process).
FLAGS = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=900 "
                      "--xla_cpu_collective_timeout_seconds=900"}


def test_jit_1_and_8_devices_and_pmap_agree(glue_dir, tmp_path):
    common = [*SMALL, "--config.num_train_steps=20", "--config.log_every_steps=1",
              "--config.dropout_rate=0", "--config.attention_dropout_rate=0",
              "--config.eval_every_steps=10"]
    runs = {}
    for mode, ndev in (("jit", 1), ("jit", 8), ("pmap", 8)):
        wd = tmp_path / f"{mode}{ndev}"
        argv = [str(wd), str(glue_dir), mode, str(ndev), *common]
        proc = run_python(SCRIPT.replace("sys.argv[1:5]", repr(argv[:4]))
                          .replace("sys.argv[5:]", repr(argv[4:])), env=FLAGS)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[(mode, ndev)] = wd
    losses = {k: np.array([r["loss"] for r in records(wd)]) for k, wd in runs.items()}
    ref = losses[("jit", 1)]
    assert len(ref) == 20 and ref[-1] < ref[0]
    for k, v in losses.items():
        np.testing.assert_allclose(v, ref, atol=1e-5, rtol=0, err_msg=str(k))
    finals = {k: final_metrics(wd) for k, wd in runs.items()}
    for k, f in finals.items():
        assert f["confusion_matrix"] == finals[("jit", 1)]["confusion_matrix"], k
        for name, value in f["metrics"].items():
            assert abs(value - finals[("jit", 1)]["metrics"][name]) <= 1e-5, (k, name)
    manifest = json.loads((runs[("pmap", 8)] / "manifest.json").read_text())
    assert len(manifest["devices"]["devices"]) == 8
