"""How long a process spends compiling, from JAX's own monitoring events.

``snapshot()`` returns running totals since the first call in the process; a run takes one at
its start and one at its end and reports the difference (``final_metrics.json["compile"]``):
``seconds`` (tracing, lowering to StableHLO, and XLA compilation or loading from the persistent
cache), ``compiles`` (programs XLA compiled) and ``cache_hits`` (programs loaded from the
persistent compilation cache). Training time minus compile seconds is compute (plus
evaluation and checkpoint I/O).

JAX reports these durations only through ``jax.monitoring`` listeners, which cannot be removed
again, so one listener per process feeds module-level totals.
"""

from __future__ import annotations

import threading

import jax

# Duration events that are compile work (jax/_src/dispatch.py, pxla.py, compiler.py).
_DURATIONS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
)
_MISS = "/jax/compilation_cache/cache_misses"
_HIT = "/jax/compilation_cache/cache_hits"

_lock = threading.Lock()
_totals = {"seconds": 0.0, "compiles": 0, "cache_hits": 0, "backend_seconds": 0.0}
_installed = False


def _on_duration(event: str, duration: float, **_) -> None:
    if event in _DURATIONS:
        with _lock:
            _totals["seconds"] += float(duration)
            if event == "/jax/core/compile/backend_compile_duration":
                _totals["backend_seconds"] += float(duration)


def _on_event(event: str, **_) -> None:
    with _lock:
        if event == _MISS:
            _totals["compiles"] += 1
        elif event == _HIT:
            _totals["cache_hits"] += 1


def snapshot() -> dict:
    """Totals so far in this process (installs the listeners on the first call)."""
    global _installed
    with _lock:
        if not _installed:
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            jax.monitoring.register_event_listener(_on_event)
            _installed = True
        return dict(_totals)


def since(start: dict) -> dict:
    """What was spent compiling since ``start`` (a :func:`snapshot`)."""
    now = snapshot()
    return {k: round(now[k] - start[k], 3) if isinstance(now[k], float) else now[k] - start[k]
            for k in now}
