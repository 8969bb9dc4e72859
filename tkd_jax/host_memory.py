"""Keep freed host memory in the process heap, so XLA:CPU does not page-fault every step.

XLA:CPU allocates each executable's temporary and output buffers afresh on every call. With
glibc's defaults, blocks over the (dynamic, at most 32 MiB) mmap threshold come from ``mmap``
and go back with ``munmap``, so every call touches brand-new pages: a Transformer step at
batch 64 x 128 allocates tens of 50 MB buffers ([64, 12, 128, 128] attention scores, FFN
activations), and the page faults cost more than the arithmetic. Measured on 2 Xeon cores
(results/bench/README.md): a jitted bf16 x bf16 -> f32 matmul of [8192, 384] x [384, 1536]
takes 21 ms with the defaults and 4.3 ms with freed memory kept for reuse.

:func:`keep_freed_memory` raises glibc's mmap threshold and trim threshold (``mallopt``), the
runtime equivalent of ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``. It changes
where buffers live, never what is computed: results are bitwise the same. The cost is that
the process keeps its peak heap instead of returning it to the OS. A no-op on other C
libraries and platforms; ``TKD_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap (and are reused)
TRIM_THRESHOLD = (1 << 31) - 1  # never give the heap's top back to the OS

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the glibc settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("TKD_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
            "linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return _applied
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
