"""What a run ran on: package versions and devices, recorded with every result."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "numpy", "opencv-python-headless", "pydicom",
    "scikit-learn", "tf-keras-vis", "pandas", "matplotlib", "PyYAML",
)


#: CPU features that change which precision trains fastest (recorded with every run): oneDNN runs bfloat16
#: convolutions natively on AVX512-BF16 / AMX and emulates them elsewhere (docs/scale.md).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` of `CPUINFO` (None where there is no such file or field)."""
    try:
        with open(CPUINFO, encoding="utf-8") as handle:
            for line in handle:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or `platform.processor()` elsewhere."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """Which of `SPEED_FLAGS` the CPU reports in /proc/cpuinfo (empty where it cannot be read)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [flag for flag in SPEED_FLAGS if flag in flags]


def native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))


def environment() -> dict:
    """Versions of Python and urep's dependencies, the CPU, and the TensorFlow devices visible."""
    import os

    import tensorflow as tf

    import urep

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "urep": urep.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "packages": versions,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
