"""What a run ran on: package versions and devices, recorded with every result."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "numpy", "opencv-python-headless", "pydicom",
    "scikit-learn", "tf-keras-vis", "pandas", "matplotlib", "PyYAML",
)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or `platform.processor()` elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "packages": versions,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
