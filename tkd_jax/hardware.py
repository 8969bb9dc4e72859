"""The host CPU a run executes on: model, the instruction sets XLA:CPU's kernels use, cores.

A CPU run is bit-reproducible only on the same kind of CPU with the same core count: XLA:CPU
compiles other matmul and reduction kernels for another instruction set (AVX-512 / AMX vs
AVX2 gave different last digits here) and splits sums by its threads. Manifests record all
three so that `experiments.verify` can say why a re-run differs.
"""

from __future__ import annotations

import functools
import os
import platform

# The flags that change which kernels XLA:CPU emits for matmuls and reductions.
ISA_PREFIXES = ("avx512", "amx", "avx2", "avx_vnni", "fma")
CPUINFO = "/proc/cpuinfo"  # a module constant so that tests can point it at a stand-in file


@functools.cache
def _first_processor() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo as {key: value}; {} off Linux."""
    fields: dict[str, str] = {}
    try:
        with open(CPUINFO) as f:
            for line in f:
                if not line.strip():
                    break  # blocks are separated by a blank line: the first one is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpuinfo_fields() -> tuple[str, tuple[str, ...]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", ()) off Linux."""
    info = _first_processor()
    return info.get("model name", ""), tuple(info.get("flags", "").split())


def cpu_model() -> str:
    return _cpuinfo_fields()[0] or platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    """The host's XLA-relevant ISA flags, sorted (e.g. ['amx_bf16', ..., 'avx512f', 'fma'])."""
    return sorted(f for f in _cpuinfo_fields()[1] if f.startswith(ISA_PREFIXES))


# The instructions that make bf16 and int8 dots faster than f32 ones in XLA:CPU.
BF16_MATMUL_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_MATMUL_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _has_any(wanted: tuple[str, ...], flags) -> bool | None:
    flags = _cpuinfo_fields()[1] if flags is None else flags
    if not flags:  # not an x86 Linux host (or nothing recorded): nothing to tell by
        return None
    return any(f in flags for f in wanted)


def has_bf16_matmul(flags=None) -> bool | None:
    """Whether the CPU (the host's, or the one ``flags`` were recorded from) multiplies bf16
    in hardware (AVX512-BF16 or AMX-BF16); None when there are no x86 flags to tell by.

    Without them XLA:CPU widens bf16 operands to f32 around every dot: bf16 then adds
    conversions instead of saving work, and runs slower than fp32 (0.73-0.75x end to end on
    an AVX2-only EPYC)."""
    return _has_any(BF16_MATMUL_FLAGS, flags)


def has_int8_matmul(flags=None) -> bool | None:
    """Whether the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8);
    None when there are no x86 flags to tell by.

    Without them XLA:CPU's int8 x int8 -> int32 dots are no faster than f32 ones (w8a8 ran at
    0.85-0.87x of fp32 end to end on an AVX2-only EPYC, 1.6-1.7x on a VNNI/AMX Xeon)."""
    return _has_any(INT8_MATMUL_FLAGS, flags)


def cpu_generation() -> str | None:
    """"family F model M" of an x86 CPU (which micro-architecture it is), else None.

    Recorded, not compared: the model name alone does not tell CPUs apart ("AMD EPYC" is a Zen
    1 and a Zen 3 alike), and what decides XLA:CPU's kernels is the instruction set, which
    ``isa_flags`` records. A Zen 3 re-ran a Zen 1 teacher bit for bit, every logged record and
    prediction (results/README.md), so two generations with the same flags count as one kind.
    """
    info = _first_processor()
    family, model = info.get("cpu family"), info.get("model")
    return f"family {family} model {model}" if family and model else None


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, e.g. under taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_record() -> dict:
    """{"cpu", "cpu_flags", "cpu_cores", "cpu_generation"}: what a manifest records of the
    host CPU (``experiments.verify`` compares the first two)."""
    return {"cpu": cpu_model(), "cpu_flags": isa_flags(), "cpu_cores": cpu_cores(),
            "cpu_generation": cpu_generation()}
