"""Parameter layouts over a 2-D device mesh ("data", "model"), for models that outgrow a device.

A layout maps every array of the train state (params, the optax state that mirrors them, the
step, RNG and loss scale) to a `NamedSharding` by its path, with regex rules in the style of
big_vision's sharding rules; `jax.jit` with those in/out shardings then lets XLA's SPMD
partitioner insert the all-gathers and reduce-scatters. The math is unchanged, so every layout
computes the same step up to float32 reduction order.

  replicated  every array on every device; the batch split over all devices (pure data
              parallel, the default; `model_parallelism` must be 1)
  tensor      Megatron-style tensor parallelism inside groups of `model_parallelism` devices:
              Q/K/V and the FFN's first Dense split by output column (heads / hidden units),
              W^O and the FFN's second Dense by input row, embedding tables by feature; the
              batch split over the "data" axis only
  fsdp        fully sharded within each group (HSDP): every array split along its largest
              dimension that `model_parallelism` divides, gathered just in time for use
              (embedding tables explicitly, `gather_tables`); the batch split over all devices

Optimizer moments follow their parameters because the rules match path *suffixes*
(`.../mu/model/encoder/layer/0/attention/self/query/kernel` ends like the parameter). A leaf
whose dimension the model axis does not divide (e.g. the 30522-row vocabulary over 4 devices)
stays replicated — see `describe`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tkd_jax.errors import ConfigError

DATA, MODEL = "data", "model"
LAYOUTS = ("replicated", "tensor", "fsdp")

EMBEDDING_TABLE = r"_embeddings/embedding$"  # word / position / token-type tables

# (regex searched in the "/"-joined path, spec) — first match wins; no match = replicated.
# Kernels are [in, out] (flax Dense), embeddings [rows, features].
TENSOR_RULES: tuple[tuple[str, tuple], ...] = (
    (r"attention/self/(query|key|value)/kernel$", (None, MODEL)),  # heads split (eq 4)
    (r"attention/self/(query|key|value)/bias$", (MODEL,)),
    (r"attention/output/dense/kernel$", (MODEL, None)),  # W^O: rows follow the heads (eq 5)
    (r"intermediate/dense/kernel$", (None, MODEL)),  # FFN W_1 (eq 6) by hidden unit
    (r"intermediate/dense/bias$", (MODEL,)),
    (r"layer/\d+/output/dense/kernel$", (MODEL, None)),  # FFN W_2 by row
    (EMBEDDING_TABLE, (None, MODEL)),
)


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _fsdp_spec(shape: Sequence[int], size: int) -> tuple:
    """Shard the largest dimension `size` divides (ties: the first); scalars replicated."""
    best = None
    for i, d in enumerate(shape):
        if d % size == 0 and d >= size and (best is None or d > shape[best]):
            best = i
    spec = [None] * len(shape)
    if best is not None:
        spec[best] = MODEL
    return tuple(spec)


def _fits(spec: tuple, shape: Sequence[int], size: int) -> bool:
    return len(spec) == len(shape) and all(
        s is None or d % size == 0 for s, d in zip(spec, shape, strict=True))


def make_mesh(model_parallelism: int = 1, devices: Sequence | None = None) -> Mesh:
    """A ("data", "model") mesh over `devices` (default: every device of the job).

    Rows are consecutive runs of `jax.devices()` (process-major), so a model group never spans
    more hosts than it must and the data axis runs over processes in order.
    """
    devices = list(jax.devices() if devices is None else devices)
    m = model_parallelism
    if m < 1 or len(devices) % m:
        raise ConfigError(f"config.model_parallelism: expected a divisor of the "
                          f"{len(devices)} devices, got {m}")
    return Mesh(np.asarray(devices, dtype=object).reshape(len(devices) // m, m), (DATA, MODEL))


class Layout:
    """One parameter layout on one mesh: shardings for the state, the batch and scalars."""

    def __init__(self, name: str = "replicated", mesh: Mesh | None = None, *,
                 model_parallelism: int = 1, rules: Sequence[tuple[str, tuple]] = TENSOR_RULES):
        if name not in LAYOUTS:
            raise ConfigError(f"config.param_layout: expected one of {list(LAYOUTS)}, "
                              f"got {name!r}")
        self.mesh = make_mesh(model_parallelism) if mesh is None else mesh
        self.model_size = self.mesh.shape[MODEL]
        if name == "replicated" and self.model_size != 1:
            raise ConfigError(f"config.model_parallelism: {self.model_size} needs "
                              "config.param_layout tensor or fsdp (replicated keeps 1)")
        self.name = name
        self.rules = tuple((re.compile(p), spec) for p, spec in rules)
        self.replicated = NamedSharding(self.mesh, P())
        batch_axes = DATA if name == "tensor" else (DATA, MODEL)
        self.batch = NamedSharding(self.mesh, P(batch_axes))

    @property
    def batch_shards(self) -> int:
        """Number of ways a global batch is split (what the batch size must be divisible by)."""
        return self.mesh.shape[DATA] * (1 if self.name == "tensor" else self.model_size)

    def spec(self, path: str, shape: Sequence[int]) -> P:
        """The PartitionSpec of one array, given its "/"-joined path and global shape."""
        shape = tuple(shape)
        if self.name == "replicated" or not shape:
            return P()
        if self.name == "fsdp":
            return P(*_fsdp_spec(shape, self.model_size))
        for pattern, spec in self.rules:
            if pattern.search(path):
                return P(*spec) if _fits(spec, shape, self.model_size) else P()
        return P()

    def specs(self, tree):
        """A tree of PartitionSpecs for any pytree of arrays / ShapeDtypeStructs."""
        return jax.tree_util.tree_map_with_path(
            lambda p, x: self.spec(_path_str(p), np.shape(x)), tree)

    def shardings(self, tree):
        """A tree of NamedShardings (what `jax.jit` in/out_shardings and orbax restore take)."""
        return jax.tree.map(lambda s: NamedSharding(self.mesh, s), self.specs(tree),
                            is_leaf=lambda x: isinstance(x, P))

    def abstract(self, tree):
        """ShapeDtypeStructs carrying this layout's shardings: an orbax restore target (Python
        scalars stay as they are, as orbax restores them)."""
        def one(x, s):
            if not hasattr(x, "dtype"):
                return x
            return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
        return jax.tree.map(one, tree, self.shardings(tree))

    def gather_tables(self, params):
        """Under fsdp, `params` with every embedding table constrained to be whole on each
        device; unchanged in the other layouts. Call it inside the function a train step
        differentiates (StepSpec.gather_params), so that the constraint holds for the gradient
        too: XLA then all-gathers each table once before its lookups, and the lookup's
        gradient (a scatter-add) is summed over the batch shards and split again.
        On a split table XLA's SPMD partitioner instead re-lays the batch-sharded activation
        gradient out along the table's axis by replicating it ("involuntary full
        rematerialization", e.g. the word embeddings with 4-way model groups on a 2 x 4 mesh).
        """
        if self.name != "fsdp":
            return params
        table = re.compile(EMBEDDING_TABLE)
        return jax.tree_util.tree_map_with_path(
            lambda p, x: jax.lax.with_sharding_constraint(x, self.replicated)
            if table.search(_path_str(p)) else x, params)

    def init(self, fn, *args):
        """Run `fn(*args)` (e.g. model init + train state creation) under jit with this layout's
        out_shardings, so a state larger than one device is created already sharded."""
        out = jax.eval_shape(fn, *args)
        return jax.jit(fn, out_shardings=self.shardings(out))(*args)

    def put(self, tree):
        """Place host or device values with this layout (any process count: every process
        passes the same full values and keeps the shards its devices hold)."""
        def one(x, sharding):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
        return jax.tree.map(one, tree, self.shardings(tree))

    def put_batch(self, batch: dict[str, np.ndarray]):
        """A process-local NumPy batch (this process's rows, see multihost.process_rows) ->
        global arrays split along the batch axes."""
        return {k: jax.make_array_from_process_local_data(self.batch, v)
                for k, v in batch.items()}

    def describe(self, tree) -> list[tuple[str, tuple, tuple]]:
        """(path, shape, spec as a tuple of axis names / None) for every leaf."""
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return [(_path_str(p), tuple(np.shape(x)), tuple(self.spec(_path_str(p), np.shape(x))))
                for p, x in flat]

    def bytes_per_device(self, tree) -> int:
        """Bytes of `tree` each device holds under this layout (for "does it fit")."""
        total = 0
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            shape = tuple(np.shape(x))
            split = self.model_size if MODEL in self.spec(_path_str(path), shape) else 1
            total += int(np.prod(shape)) * np.dtype(x.dtype).itemsize // split
        return total
