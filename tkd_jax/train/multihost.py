"""Multi-process jobs on JAX's multi-controller runtime (`jax.distributed`), failing fast.

One process per host (a TPU VM worker, a GPU host, or a local process with fake CPU devices in
the tests) runs the same program; together they form one job whose `jax.devices()` spans every
host. This module joins the job and checks, before any training work, the setup mistakes that
otherwise surface as a hang or a C++ abort:

- a coordinator that never answers / processes that never all join -> one line, exit 2, after
  `timeout_seconds` (jax's own client aborts the process with SIGABRT and a stack dump on
  this timeout instead of raising, so a watchdog thread exits first);
- processes started with different configs -> one line naming the first differing keys;
- a global batch that the process count does not divide -> one line naming the config key.

Where a process finds its place in the job (first match wins):
  1. explicit arguments (e.g. the `--coordinator_address/--num_processes/--process_id` flags);
  2. the environment: `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES`,
     `JAX_PROCESS_ID`;
  3. `TKD_DISTRIBUTED=1` alone: jax's cluster auto-detection (Cloud TPU pod slices, Slurm,
     Open MPI), where every worker runs the same command with no per-host arguments.
Otherwise the program is a single process and nothing is initialised.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

import jax

from tkd_jax.errors import ConfigError

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_AUTO = "TKD_DISTRIBUTED"
_KV_PREFIX = "tkd_jax/config"
_check_counter = itertools.count()


class MultiHostError(ConfigError):
    """A multi-process job that cannot form or whose processes disagree (CLI: exit 2)."""


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """This process's place in a job. `coordinator_address` None = cluster auto-detection."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None

    @property
    def where(self) -> str:
        if self.coordinator_address is None:
            return "auto-detected cluster"
        return f"process {self.process_id} of {self.num_processes}"


def _int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MultiHostError(f"{name}: expected an integer, got {value!r}") from None


def resolve_spec(coordinator_address: str | None = None, num_processes: int | None = None,
                 process_id: int | None = None,
                 environ: Mapping[str, str] | None = None) -> ProcessSpec | None:
    """The job this process belongs to (arguments, then environment), None if single-process.

    Raises MultiHostError for an incomplete or inconsistent description, naming the field.
    """
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    n = num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else env.get(ENV_PROCESS_ID)
    if address is None:
        if n is not None or pid is not None:
            raise MultiHostError(f"coordinator_address (or ${ENV_ADDRESS}): required with a "
                                 "process count or id, expected host:port of process 0")
        return ProcessSpec(None, None, None) if env.get(ENV_AUTO) == "1" else None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MultiHostError(f"coordinator_address: expected host:port, got {address!r}")
    if n is None or pid is None:
        missing = "num_processes" if n is None else "process_id"
        raise MultiHostError(f"{missing} (or ${ENV_NUM_PROCESSES if n is None else ENV_PROCESS_ID})"
                             f": required with coordinator_address {address}")
    n, pid = _int(n, "num_processes"), _int(pid, "process_id")
    if n < 1:
        raise MultiHostError(f"num_processes: expected >= 1, got {n}")
    if not 0 <= pid < n:
        raise MultiHostError(f"process_id: expected 0 <= id < num_processes={n}, got {pid}")
    return ProcessSpec(address, n, pid)


def _answers(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _timeout_message(spec: ProcessSpec, timeout_seconds: float) -> str:
    if spec.coordinator_address is None:
        return (f"jax.distributed: the auto-detected cluster did not form within "
                f"{timeout_seconds:g} s (initialization_timeout); check that every worker runs "
                "the same command")
    if spec.process_id != 0 and not _answers(spec.coordinator_address):
        return (f"jax.distributed ({spec.where}): coordinator {spec.coordinator_address} did not "
                f"answer within {timeout_seconds:g} s; start process 0 there or fix "
                "coordinator_address")
    return (f"jax.distributed ({spec.where}): not all {spec.num_processes} processes joined "
            f"coordinator {spec.coordinator_address} within {timeout_seconds:g} s; start every "
            "process with the same coordinator_address and num_processes")


def _exit_now(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    os._exit(2)  # the main thread is blocked inside jax's C++ client; nothing else can unwind it


def initialize(spec: ProcessSpec | None, *, timeout_seconds: float = 300.0,
               heartbeat_timeout_seconds: int = 100, shutdown_timeout_seconds: int = 60) -> bool:
    """Join the job described by `spec` (see `resolve_spec`); returns True if one was joined.

    Must run before anything touches a device. If the job has not formed `timeout_seconds`
    after the call, the process prints one line (naming an unreachable coordinator, or
    processes that never joined) and exits with code 2. `shutdown_timeout_seconds` bounds how
    long a process that ends early (e.g. on a config error) waits for its peers at exit.
    """
    if spec is None or jax.distributed.is_initialized():
        return spec is not None
    if timeout_seconds <= 0:
        raise MultiHostError(f"timeout_seconds: expected > 0, got {timeout_seconds}")
    watchdog = threading.Timer(timeout_seconds,
                               lambda: _exit_now(_timeout_message(spec, timeout_seconds)))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator_address, num_processes=spec.num_processes,
            process_id=spec.process_id,
            # jax's own deadline comes later, so the watchdog's clean exit always wins.
            initialization_timeout=int(timeout_seconds) + 30,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            shutdown_timeout_seconds=shutdown_timeout_seconds,
        )
    finally:
        watchdog.cancel()
    return True


def flatten_config(config: Mapping[str, Any] | Any) -> dict[str, str]:
    """A config (ConfigDict, dict or dataclass) as {"a.b.c": json-text} with sorted keys."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    elif dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    out: dict[str, str] = {}

    def walk(node, prefix):
        if isinstance(node, Mapping):
            for k in sorted(node, key=str):
                walk(node[k], f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)

    walk(config, "")
    return out


def config_differences(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    """Keys whose values differ between two flattened configs (missing counts as different)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_same_config(config, *, timeout_seconds: float = 60.0) -> None:
    """Raise MultiHostError on every process if the processes' configs are not identical.

    Each process publishes its flattened config in the coordinator's key-value store and reads
    every peer's (the store has per-read deadlines, unlike a device collective, which would
    wait forever for a process that never arrives). All processes reach the same verdict, so
    they fail together and the job's exit barrier does not wait. A no-op in a single process.
    """
    if jax.process_count() == 1:
        return
    from orbax.checkpoint import multihost as ocp_multihost  # public handle on jax's client

    client = ocp_multihost.get_jax_distributed_client()
    mine = flatten_config(config)
    key = f"{_KV_PREFIX}/{next(_check_counter)}"
    client.key_value_set(f"{key}/{jax.process_index()}", json.dumps(mine))
    for pid in range(jax.process_count()):
        try:
            theirs = json.loads(client.blocking_key_value_get(f"{key}/{pid}",
                                                              int(timeout_seconds * 1000)))
        except Exception as e:  # jaxlib raises its own runtime error type on a deadline
            raise MultiHostError(
                f"config check: process {pid} did not publish its config within "
                f"{timeout_seconds:g} s ({type(e).__name__}); is it running the same "
                "program?") from None
        diff = config_differences(theirs, mine)
        if diff:
            shown = ", ".join(f"{k}={theirs.get(k, '<unset>')} on process {pid} vs "
                              f"{mine.get(k, '<unset>')} on process {jax.process_index()}"
                              for k in diff[:3])
            more = f" (+{len(diff) - 3} more)" if len(diff) > 3 else ""
            raise MultiHostError(f"config differs between processes: {shown}{more}; start "
                                 "every process with the same command and config")


def check_batch_divisible(global_batch: int, name: str = "config.batch_size") -> int:
    """The per-process share of a global batch; MultiHostError unless processes divide it.

    Each process also splits its share over its local devices, so that count must divide too.
    """
    n, local = jax.process_count(), jax.local_device_count()
    if global_batch % n:
        raise MultiHostError(f"{name}: {global_batch} is not divisible by the {n} processes "
                             "(each process feeds an equal share of every global batch)")
    share = global_batch // n
    if share % local:
        raise MultiHostError(f"{name}: the per-process share {share} of {global_batch} is not "
                             f"divisible by the {local} local devices")
    return share


def process_rows(global_batch: int, process_id: int | None = None,
                 num_processes: int | None = None) -> slice:
    """Rows of a global batch this process feeds: the `process_id`-th of equal blocks.

    Blocks are disjoint and cover the batch; with every process drawing the same global
    permutation (a pure function of seed and epoch), the job sees exactly the single-process
    batches. Matches the row order of `jax.make_array_from_process_local_data` on a mesh whose
    data axis runs over processes in order (`jax.devices()` order).
    """
    pid = jax.process_index() if process_id is None else process_id
    n = jax.process_count() if num_processes is None else num_processes
    if global_batch % n:
        raise MultiHostError(f"batch of {global_batch} rows is not divisible by {n} processes")
    share = global_batch // n
    return slice(pid * share, (pid + 1) * share)


def is_primary() -> bool:
    """True on the one process that writes run files (manifest, metrics, events, summaries)."""
    return jax.process_index() == 0
