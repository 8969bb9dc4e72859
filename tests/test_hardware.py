"""The host-CPU facts runs record and warn by (tkd_jax/hardware.py)."""

from tkd_jax import hardware
from tkd_jax.train import trainer


def test_bf16_warning_only_on_cpus_without_bf16_instructions(monkeypatch):
    cases = [(("Intel Xeon", ("avx512f", "avx512_bf16", "amx_bf16")), True),
             (("AMD EPYC", ("avx2", "fma")), False),
             (("", ()), None)]  # no x86 flags (e.g. an ARM host): unknown, no warning
    for fields, native in cases:
        monkeypatch.setattr(hardware, "_cpuinfo_fields", lambda fields=fields: fields)
        assert hardware.has_bf16_matmul() is native
        row = trainer._precision_row("bf16", "cpu")
        assert row.startswith("bf16 (this CPU has no bf16") if native is False else row == "bf16"
        assert trainer._precision_row("fp32", "cpu") == "fp32"
        assert trainer._precision_row("bf16", "tpu") == "bf16"


def test_bf16_and_int8_dot_instructions_from_the_host_or_recorded_flags(monkeypatch):
    xeon = ["amx_bf16", "amx_int8", "avx2", "avx512_bf16", "avx512_vnni", "avx512f", "fma"]
    zen1 = ["avx2", "fma"]
    alder_lake = ["avx2", "avx_vnni", "fma"]  # int8 dots (AVX-VNNI), no bf16 ones
    assert (hardware.has_bf16_matmul(xeon), hardware.has_int8_matmul(xeon)) == (True, True)
    assert (hardware.has_bf16_matmul(zen1), hardware.has_int8_matmul(zen1)) == (False, False)
    assert (hardware.has_bf16_matmul(alder_lake), hardware.has_int8_matmul(alder_lake)) == (
        False, True)
    assert hardware.has_int8_matmul([]) is None  # nothing recorded: unknown
    monkeypatch.setattr(hardware, "_cpuinfo_fields", lambda: ("Intel Xeon", tuple(xeon)))
    assert hardware.has_int8_matmul() is True and hardware.has_bf16_matmul() is True
    # the flags they go by are among those manifests record
    assert all(f.startswith(hardware.ISA_PREFIXES)
               for f in hardware.BF16_MATMUL_FLAGS + hardware.INT8_MATMUL_FLAGS)
