"""Subprocess helper of tests/test_tuning.py: a tiny CDAE grid search that can die mid-search.

Usage: `python tests/tuning_worker.py --arrays A.npz --project DIR --log LOG.jsonl [--die-after N]`

Runs a grid over kernel_size [3, 5] x optimizer [sgd, adam] (4 trials) on the images of `A.npz` (key
`images`, `(n, 16, 16, 1)` float32), reloading the project in DIR when it exists (`overwrite=False`). Every
`fit` appends `{"event": "start" | "end", "values": {...}, "pid": ...}` to LOG. With `--die-after N`, the
process kills itself with SIGKILL at the start of its (N + 1)-th trial, after N trials finished, like a
machine that goes down mid-search.
"""

from __future__ import annotations

import argparse
import json
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from urep.training.config import TrainConfig  # noqa: E402
from urep.tuning import CDAEHyperModel, TuningData, make_tuner, search  # noqa: E402

SPACE = {"kernel_size": [3, 5], "optimizer": ["sgd", "adam"]}


class LoggedCDAE(CDAEHyperModel):
    """A CDAE hypermodel that logs every trial and may kill its process."""

    def __init__(self, *args, log: str, die_after: int | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log, self.die_after, self.fits = log, die_after, 0

    def _write(self, event: str, values: dict) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "values": values, "pid": os.getpid()}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def fit(self, hp, model, *args, **kwargs):
        values = {name: hp.get(name) for name in self.space}
        self.fits += 1
        self._write("start", values)
        if self.die_after is not None and self.fits > self.die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = super().fit(hp, model, *args, **kwargs)
        self._write("end", values)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--die-after", type=int)
    args = parser.parse_args()
    images = np.load(args.arrays)["images"]
    data = TuningData(images[:6], images[:6], images[6:], images[6:])
    config = TrainConfig(epochs=1, batch_size=4, jit_compile=False, max_steps_per_epoch=1)
    hypermodel = LoggedCDAE(data, model_kwargs={"filters": [4, 8]}, search_space=SPACE, train_config=config,
                            log=args.log, die_after=args.die_after)
    search(make_tuner("grid", hypermodel, args.project, overwrite=False))


if __name__ == "__main__":
    main()
