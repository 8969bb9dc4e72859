"""Data parallelism: `jax.jit` over a 1-D device mesh (default) or `jax.pmap`.

jit: params/optimizer state replicated (NamedSharding with P()), the batch sharded along the mesh's
"data" axis; XLA inserts the gradient all-reduce. pmap: the same step function with
`axis_name="batch"` (gradients psum'ed in the step), state replicated with a leading device axis.
Multi-host: each process feeds its own shard of the global batch.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tkd_jax.errors import ConfigError

PMAP_AXIS = "batch"


def maybe_initialize_distributed() -> None:
    """Join a multi-process job when the environment describes one (before any device use)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TKD_DISTRIBUTED") == "1":
        jax.distributed.initialize()


class DataParallel:
    """Places state and batches and compiles steps for one of the two modes."""

    def __init__(self, mode: str = "jit", num_devices: int = 0):
        if mode not in ("jit", "pmap"):
            raise ConfigError(f"config.parallel: expected 'jit' or 'pmap', got {mode!r}")
        devices = jax.devices()
        if num_devices:
            if num_devices > len(devices):
                raise ConfigError(f"config.num_devices: {num_devices} requested, "
                                  f"{len(devices)} available")
            devices = devices[:num_devices]
        self.mode = mode
        self.devices = devices
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P("data"))
        self.local_devices = [d for d in devices if d.process_index == jax.process_index()]

    @property
    def axis_name(self) -> str | None:
        """The named axis steps psum over: set under pmap, None under jit (XLA inserts the
        collectives from the shardings)."""
        return PMAP_AXIS if self.mode == "pmap" else None

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def check_batch_size(self, global_batch: int, name: str = "config.batch_size") -> None:
        if global_batch % self.num_devices:
            raise ConfigError(f"{name}: {global_batch} is not divisible by the "
                              f"{self.num_devices} devices")

    # -- placement ---------------------------------------------------------------------------
    def put_replicated(self, tree):
        if self.mode == "pmap":
            # One copy per local device along a new leading axis (what pmap maps over).
            n = len(self.local_devices)
            stacked = lambda x: np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x)))
            return jax.device_put(jax.tree.map(stacked, tree), self.sharded)
        return jax.device_put(tree, self.replicated)

    def put_batch(self, batch: dict[str, np.ndarray]):
        """A process-local NumPy batch -> device arrays sharded along the batch axis."""
        if self.mode == "pmap":
            n = len(self.local_devices)
            return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:]) for k, v in batch.items()}
        return {k: jax.make_array_from_process_local_data(self.sharded, v)
                for k, v in batch.items()}

    def unreplicate(self, tree):
        """A single (unreplicated) copy, e.g. for checkpointing and eval."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0], tree)
        return tree

    def first(self, metrics):
        """Metrics of a step as host values (pmap: already psum'ed, take replica 0)."""
        metrics = jax.device_get(metrics)
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0], metrics)
        return metrics

    # -- compilation -------------------------------------------------------------------------
    def compile_train(self, step_fn, **static):
        """`step_fn(state, batch, rng, frozen, **static)` compiled for this mode (frozen: the
        pytree of untrained inputs, e.g. teacher parameters, replicated)."""
        if self.mode == "pmap":
            fn = functools.partial(step_fn, **static)
            return jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=(0,))
        fn = functools.partial(step_fn, **static)
        return jax.jit(
            fn,
            in_shardings=(self.replicated, self.sharded, self.replicated, self.replicated),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=(0,),
        )

    def compile_eval(self, step_fn, **static):
        """`step_fn(params, batch, **static)`; always jit over the mesh (also in pmap mode)."""
        fn = functools.partial(step_fn, **static)
        return jax.jit(fn, in_shardings=(self.replicated, self.sharded),
                       out_shardings=self.replicated)

    def put_eval_params(self, params):
        return jax.device_put(self.unreplicate(params), self.replicated)

    def put_eval_batch(self, batch):
        return {k: jax.make_array_from_process_local_data(self.sharded, v)
                for k, v in batch.items()}
