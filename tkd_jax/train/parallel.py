"""Data parallelism: `jax.jit` over a ("data", "model") device mesh (default) or `jax.pmap`.

jit: params/optimizer state replicated (NamedSharding with P()), the batch sharded along the mesh's
"data" axis; XLA inserts the gradient all-reduce. With `param_layout` tensor or fsdp the state
(and frozen teacher parameters) are instead sharded by `tkd_jax.train.sharding`'s path rules over
`model_parallelism` devices. pmap: the same step function with `axis_name="batch"` (gradients
psum'ed in the step), state replicated with a leading device axis.
Multi-host (`tkd_jax.train.multihost`): each process feeds its own block of every global train
batch and of every global eval batch; the compiled steps sum over all devices.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tkd_jax.errors import ConfigError
from tkd_jax.train import multihost, sharding

PMAP_AXIS = "batch"


def maybe_initialize_distributed() -> None:
    """Join a multi-process job when the environment describes one (before any device use):
    JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID, or TKD_DISTRIBUTED=1 (cluster
    auto-detection, e.g. a TPU pod slice). A job that has not formed within
    TKD_DISTRIBUTED_TIMEOUT seconds (default 300) ends the process with one line, exit 2."""
    timeout = os.environ.get("TKD_DISTRIBUTED_TIMEOUT", "300")
    try:
        timeout_seconds = float(timeout)
    except ValueError:
        raise ConfigError(f"TKD_DISTRIBUTED_TIMEOUT: expected seconds, got {timeout!r}") from None
    multihost.initialize(multihost.resolve_spec(), timeout_seconds=timeout_seconds)


class DataParallel:
    """Places state and batches and compiles steps for one of the two modes."""

    def __init__(self, mode: str = "jit", num_devices: int = 0, *,
                 param_layout: str = "replicated", model_parallelism: int = 1):
        if mode not in ("jit", "pmap"):
            raise ConfigError(f"config.parallel: expected 'jit' or 'pmap', got {mode!r}")
        if mode == "pmap" and param_layout != "replicated":
            raise ConfigError(f"config.param_layout={param_layout}: needs config.parallel=jit")
        devices = jax.devices()
        if num_devices:
            if num_devices > len(devices):
                raise ConfigError(f"config.num_devices: {num_devices} requested, "
                                  f"{len(devices)} available")
            devices = devices[:num_devices]
        self.mode = mode
        self.devices = devices
        self.layout = sharding.Layout(param_layout, sharding.make_mesh(model_parallelism, devices))
        self.mesh = self.layout.mesh
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = self.layout.batch  # over every device, or the data axis (tensor layout)
        self.state_shardings = self.frozen_shardings = self.replicated
        self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
        if len(self.local_devices) % model_parallelism:
            # Each process feeds a block of rows of every batch, so a model group (which sees
            # the same rows) must not span processes.
            raise ConfigError(f"config.model_parallelism: {model_parallelism} must divide the "
                              f"{len(self.local_devices)} devices of each process")

    @property
    def axis_name(self) -> str | None:
        """The named axis steps psum over: set under pmap, None under jit (XLA inserts the
        collectives from the shardings)."""
        return PMAP_AXIS if self.mode == "pmap" else None

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def check_batch_size(self, global_batch: int, name: str = "config.batch_size") -> None:
        if global_batch % self.layout.batch_shards:
            raise ConfigError(f"{name}: {global_batch} is not divisible by the "
                              f"{self.layout.batch_shards} batch shards ({self.num_devices} "
                              f"devices, param_layout {self.layout.name})")

    # -- placement ---------------------------------------------------------------------------
    def put_replicated(self, tree):
        if self.mode == "pmap":
            # One copy per local device along a new leading axis (what pmap maps over).
            n = len(self.local_devices)
            stacked = lambda x: np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x)))
            return jax.device_put(jax.tree.map(stacked, tree), self.sharded)
        return jax.device_put(tree, self.replicated)

    def put_state(self, state):
        """The train state placed by the parameter layout (replicated by default); compile_train
        then uses these shardings."""
        if self.mode == "pmap" or self.layout.name == "replicated":
            return self.put_replicated(state)
        self.state_shardings = self.layout.shardings(state)
        return jax.device_put(state, self.state_shardings)

    def put_frozen(self, frozen):
        """Untrained step inputs (teacher parameters), laid out like the student's."""
        if self.mode == "pmap" or self.layout.name == "replicated":
            return self.put_replicated(frozen)
        self.frozen_shardings = self.layout.shardings(frozen)
        return jax.device_put(frozen, self.frozen_shardings)

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
        pytree of untrained inputs, e.g. teacher parameters). Call put_state/put_frozen first:
        the state and frozen inputs keep the shardings those gave them."""
        if self.mode == "pmap":
            fn = functools.partial(step_fn, **static)
            return jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=(0,))
        fn = functools.partial(step_fn, **static)
        return jax.jit(
            fn,
            in_shardings=(self.state_shardings, self.sharded, self.replicated,
                          self.frozen_shardings),
            out_shardings=(self.state_shardings, self.replicated),
            donate_argnums=(0,),
        )

    def compile_eval(self, step_fn, **static):
        """`step_fn(params, batch, **static)`; always jit over the mesh (also in pmap mode)."""
        fn = functools.partial(step_fn, **static)
        if self.layout.name != "replicated":  # params arrive laid out by put_eval_params
            return jax.jit(fn, out_shardings=self.replicated)
        return jax.jit(fn, in_shardings=(self.replicated, self.sharded),
                       out_shardings=self.replicated)

    def put_eval_params(self, params):
        params = self.unreplicate(params)
        if self.layout.name != "replicated":
            return jax.device_put(params, self.layout.shardings(params))
        return jax.device_put(params, self.replicated)

    def put_eval_batch(self, batch):
        """A *global* eval batch (the same on every process) -> device arrays: each process
        feeds only its block of rows (multihost.process_rows); outputs are replicated."""
        return {k: jax.make_array_from_process_local_data(
                    self.sharded, v[multihost.process_rows(len(v))])
                for k, v in batch.items()}
