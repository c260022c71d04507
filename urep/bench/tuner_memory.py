"""Peak memory of a Keras Tuner search over many tiny trials: does RSS stay flat between trials?

`run(out_dir, quick)` runs a grid search of `CDAEHyperModel` (20 trials, 6 in quick mode) on 32x32 CXR
phantoms, samples `VmRSS` after each trial, and returns and writes the RSS per trial, the peak (`VmHWM`) and
the growth in MiB per trial to `OUT_DIR/tuner_memory.json`. Linux only (`/proc`).
Usage: `python -m urep.bench.tuner_memory --out OUT_DIR [--quick]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from urep.data import read_image  # noqa: E402
from urep.data.datasets import load as load_dataset  # noqa: E402
from urep.data.phantoms import make_cxr_phantoms  # noqa: E402
from urep.env import environment  # noqa: E402
from urep.io import atomic_write_json  # noqa: E402
from urep.training.config import TrainConfig  # noqa: E402
from urep.tuning import CDAEHyperModel, TuningData, make_tuner, search  # noqa: E402

logger = logging.getLogger("urep.bench.tuner_memory")
SPACE = {"kernel_size": [3, 5, 7], "optimizer": ["sgd", "adam", "rmsprop"], "batch_size": [4, 8, 16]}


def proc_status_mib(field: str) -> float:
    """A memory field of `/proc/self/status` (`VmRSS`, `VmHWM`, ...) in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field} line (not Linux?)")


class SampledCDAE(CDAEHyperModel):
    """Samples VmRSS after every trial's fit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rss_mib: list[float] = []

    def fit(self, hp, model, *args, **kwargs):
        result = super().fit(hp, model, *args, **kwargs)
        self.rss_mib.append(proc_status_mib("VmRSS"))
        return result


def _images(folder: Path, n_patients: int) -> np.ndarray:
    root = make_cxr_phantoms(folder, n_patients=n_patients, views_per_patient=1, size=32, seed=0)
    df = load_dataset("folder", root)
    return np.stack([read_image(p, size=(32, 32)) for p in df["image"]])[..., None].astype("float32")


def run(out_dir: str | os.PathLike, quick: bool = False) -> dict:
    """Run the search and write `out_dir/tuner_memory.json`.

    Args:
        out_dir: where to write the JSON record (the Keras Tuner project goes to a temporary folder).
        quick: 6 trials instead of 20 (a smoke run).

    Returns:
        `{"trials", "rss_mib" (after each trial), "rss_start_mib", "peak_rss_mib" (VmHWM),
        "growth_mib_per_trial", "rss_last_minus_second_mib", "seconds", "environment"}`.
    """
    trials = 6 if quick else 20
    rss_start = proc_status_mib("VmRSS")
    with tempfile.TemporaryDirectory() as scratch:
        images = _images(Path(scratch) / "phantoms", 24)
        clean_train, clean_val = images[:16], images[16:]
        rng = np.random.default_rng(0)

        def corrupt(clean: np.ndarray, epoch: int) -> np.ndarray:
            noise = np.random.default_rng(epoch).normal(0, 0.03, clean.shape)
            return np.clip(clean + noise, 0, 1).astype("float32")

        data = TuningData(clean_train, clean_train, np.clip(clean_val + rng.normal(0, 0.03, clean_val.shape), 0, 1)
                          .astype("float32"), clean_val, corrupt=corrupt)
        hypermodel = SampledCDAE(data, model_kwargs={"filters": [8, 16]}, search_space=SPACE,
                                 train_config=TrainConfig(epochs=1, jit_compile=False, max_steps_per_epoch=2))
        tuner = make_tuner("grid", hypermodel, Path(scratch) / "search", max_trials=trials)
        started = time.perf_counter()
        search(tuner)
        seconds = time.perf_counter() - started
    rss = hypermodel.rss_mib
    tail = np.asarray(rss[1:])
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) >= 2 else 0.0
    record = {
        "trials": len(rss), "rss_mib": [round(v, 1) for v in rss], "rss_start_mib": round(rss_start, 1),
        "peak_rss_mib": round(proc_status_mib("VmHWM"), 1), "growth_mib_per_trial": round(slope, 2),
        "rss_last_minus_second_mib": round(rss[-1] - rss[1], 1) if len(rss) > 1 else 0.0,
        "seconds": round(seconds, 1), "space": SPACE, "image_size": [32, 32],
        "environment": environment(),
    }
    atomic_write_json(Path(out_dir) / "tuner_memory.json", record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="6 trials instead of 20")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    record = run(args.out, quick=args.quick)
    print(f"{record['trials']} trials in {record['seconds']} s: peak RSS {record['peak_rss_mib']} MiB, "
          f"RSS after each trial {record['rss_mib']} MiB, growth {record['growth_mib_per_trial']} MiB/trial")


if __name__ == "__main__":
    main()
