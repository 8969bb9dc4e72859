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
