"""`urep.env`: what a run records about the machine it ran on."""

from __future__ import annotations

from urep import env

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.0GHz
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_cpu_features_and_bfloat16_hardware_come_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO, encoding="utf-8")
    monkeypatch.setattr(env, "CPUINFO", str(info))
    assert env.cpu_model() == "Example CPU @ 2.0GHz"
    assert env.cpu_features() == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert env.native_bfloat16() is True
    info.write_text(CPUINFO.replace(" avx512_bf16 amx_bf16 amx_tile", ""), encoding="utf-8")
    assert env.cpu_features() == ["avx2", "avx512f"]
    assert env.native_bfloat16() is False
    monkeypatch.setattr(env, "CPUINFO", str(tmp_path / "missing"))
    assert env.cpu_features() == [] and env.native_bfloat16() is False
    assert env.cpu_model()  # falls back to the platform's name


def test_environment_records_cpu_features_and_onednn_setting(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    record = env.environment()
    assert record["onednn_opts"] == "0"
    assert set(record["cpu_features"]) <= set(env.SPEED_FLAGS)
    assert record["packages"]["numpy"]
