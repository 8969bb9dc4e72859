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


def test_generation_from_the_first_processor_block(tmp_path, monkeypatch):
    """Family and model come from the first processor's block of /proc/cpuinfo, read here from
    a stand-in file (the real one is this host's; a Zen 3's lines below)."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma sse4_2\n"
                       "\nprocessor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n")
    monkeypatch.setattr(hardware, "CPUINFO", str(cpuinfo))
    hardware._first_processor.cache_clear()
    try:
        assert hardware.cpu_generation() == "family 25 model 1"
        assert (hardware.cpu_model(), hardware.isa_flags()) == ("AMD EPYC", ["avx2", "fma"])
        assert hardware.cpu_record()["cpu_generation"] == "family 25 model 1"
        cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n")
        hardware._first_processor.cache_clear()
        assert hardware.cpu_generation() is None  # an ARM host: no x86 family
    finally:  # later tests read the real host again
        hardware._first_processor.cache_clear()
