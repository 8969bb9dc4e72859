"""Launch N real Python processes that form one `jax.distributed` job on 127.0.0.1.

Each child gets fake CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=K`, set in
its environment so it applies before jax is imported), the job's coordinator address, process
count and id in `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` (read by
`tkd_jax.train.multihost.initialize`), and runs in its own session so that a hung job is torn
down by killing whole process groups. Output goes to files, not pipes, so a chatty child can
never block on a full pipe while its peers wait for it in a collective.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# 4 fake devices share 2 cores with a second process, so one replica can reach an all-reduce
# long after the others; XLA's default collective timeouts would abort a slow but healthy job.
SLOW_COLLECTIVES = ("--xla_cpu_collective_call_terminate_timeout_seconds=900 "
                    "--xla_cpu_collective_timeout_seconds=900")

# Run before each child's code: on SIGUSR1 it writes every thread's Python stack to stderr, so a
# child the harness has to kill for hanging first says where it hung (SIGKILL cannot be caught).
STACK_ON_SIGNAL = ("import faulthandler as _fh, signal as _sig; "
                   "_fh.register(_sig.SIGUSR1, all_threads=True)\n")
STACK_WAIT_SECONDS = 2.0


@dataclasses.dataclass
class Result:
    """What one child left behind: exit code (negative = killed by that signal) and output."""

    process_id: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool  # torn down by the harness (timeout, or a peer failed and it hung)


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it; the race is harmless in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(*, process_id: int, num_processes: int, port: int, devices: int,
              env: dict | None = None) -> dict:
    out = {k: v for k, v in os.environ.items()
           # gRPC honours proxy variables even for 127.0.0.1 on some builds; jax warns about it.
           if "proxy" not in k.lower()}
    out.update({
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {SLOW_COLLECTIVES}",
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(num_processes),
        "JAX_PROCESS_ID": str(process_id),
        "PYTHONUNBUFFERED": "1",
    })
    out.update(env or {})
    return {k: v for k, v in out.items() if v is not None}


def launch(code: str, *, num_processes: int = 2, devices: int = 4, args=(),
           env: dict | None = None, per_process_env: list[dict] | None = None,
           timeout: float = 120.0, grace: float = 30.0,
           port: int | None = None, kill_when=None) -> list[Result]:
    """Run `python -c code *args` as process 0..N-1 of one job and wait for all of them.

    A child that is still running `timeout` seconds after launch, or `grace` seconds after a
    peer exited non-zero (it is then usually stuck in a collective), first writes its Python
    stacks to its stderr (SIGUSR1, `STACK_ON_SIGNAL`) and is then killed with its whole
    process group. `per_process_env[i]` (a value of None unsets a variable) is applied last.
    `kill_when()`, polled every 50 ms, kills every child the first time it returns True (a
    simulated crash of the whole job, e.g. once a checkpoint exists).
    """
    port = free_port() if port is None else port
    logs = pathlib.Path(tempfile.mkdtemp(prefix="tkd_mp_"))
    procs, files = [], []
    start = time.monotonic()
    try:
        for pid in range(num_processes):
            extra = {**(env or {}), **((per_process_env or [{}] * num_processes)[pid])}
            out = open(logs / f"{pid}.out", "w")  # noqa: SIM115 -- closed in finally
            err = open(logs / f"{pid}.err", "w")  # noqa: SIM115
            files += [out, err]
            procs.append(subprocess.Popen(
                [sys.executable, "-c", STACK_ON_SIGNAL + code, *map(str, args)], cwd=REPO,
                stdout=out, stderr=err,
                env=child_env(process_id=pid, num_processes=num_processes, port=port,
                              devices=devices, env=extra),
                start_new_session=True))
        ended: dict[int, float] = {}
        killed: set[int] = set()
        first_failure = None
        while len(ended) < num_processes:
            now = time.monotonic()
            for pid, p in enumerate(procs):
                if pid not in ended and p.poll() is not None:
                    ended[pid] = now - start
                    if p.returncode != 0 and first_failure is None:
                        first_failure = now
            late = now - start > timeout or (first_failure is not None
                                             and now - first_failure > grace)
            if late or (kill_when is not None and len(ended) < num_processes and kill_when()):
                if late:
                    _dump_stacks([p for pid, p in enumerate(procs) if pid not in ended])
                for pid, p in enumerate(procs):
                    if pid not in ended:
                        _kill_group(p)
                        killed.add(pid)
                        ended[pid] = now - start
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_group(p)
        for f in files:
            f.close()
    return [Result(pid, p.returncode, (logs / f"{pid}.out").read_text(),
                   (logs / f"{pid}.err").read_text(), ended[pid], pid in killed)
            for pid, p in enumerate(procs)]


def _dump_stacks(hung: list[subprocess.Popen]) -> None:
    """Ask each hung child for its Python stacks and give it a moment to write them."""
    for p in hung:
        try:
            os.kill(p.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    time.sleep(STACK_WAIT_SECONDS)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def tagged(r: Result, tag: str) -> str | None:
    """The text from ``tag`` to the end of its line in the child's stdout (the first such).

    Gloo's C++ threads write their connection messages to the same stdout in pieces, so a line
    the child printed can follow a piece of theirs (``[Gloo] Rank RESULT {...}``) instead of
    starting a line. Python writes its buffered line in one write(), so the line is whole.
    """
    m = re.search(re.escape(tag) + r".*", r.stdout)
    return m.group(0) if m else None


def describe(results: list[Result], tail: int = 2000) -> str:
    """Every child's exit code and the end of its stderr, for assertion messages."""
    return "\n".join(f"--- process {r.process_id}: rc={r.returncode} killed={r.killed} "
                     f"{r.seconds:.1f}s\n{r.stderr[-tail:]}" for r in results)
