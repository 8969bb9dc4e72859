"""tkd_jax.host_memory: glibc keeps freed memory for reuse, and results stay bitwise the same."""

import json
import sys

import pytest

from tests.experiment_utils import run_python

CHILD = """
import hashlib, json, numpy as np
import tkd_jax  # applies (or, with TKD_KEEP_FREED_MEMORY=0, skips) the glibc settings
import jax, jax.numpy as jnp
from tkd_jax.host_memory import keep_freed_memory
from tkd_jax.models.registry import create_model

model = create_model("tiny", num_labels=2, dtype=jnp.bfloat16)
ids = np.random.default_rng(0).integers(1000, 8000, (64, 64)).astype(np.int32)
mask = np.ones_like(ids)
params = model.init(jax.random.key(0), ids[:1], mask[:1])["params"]
def loss(p):
    return jnp.mean(model.apply({"params": p}, ids, mask).logits ** 2)
value, grads = jax.jit(jax.value_and_grad(loss))(params)
big = jax.jit(lambda a, b: a @ b)(jnp.ones((2048, 384)), jnp.ones((384, 1536)) / 7)  # 12 MB out
digest = hashlib.sha256(np.asarray(value).tobytes() + np.asarray(big).tobytes() + b"".join(
    np.asarray(g).tobytes() for g in jax.tree.leaves(grads))).hexdigest()
print(json.dumps({"kept": keep_freed_memory(), "digest": digest}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_kept_freed_memory_changes_no_result():
    runs = {}
    for setting in ("1", "0"):
        proc = run_python(CHILD, env={"TKD_KEEP_FREED_MEMORY": setting})
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["1"]["kept"] is True and runs["0"]["kept"] is False
    assert runs["1"]["digest"] == runs["0"]["digest"]
