"""The layout of a urep run directory, in one place.

`RunDir(root)` names every file and folder a run writes or reads: the run marker, `config.yaml`,
`log.txt`, `results.json`, `fingerprint.json`, `report.md`, `tables/`, `figures/`, `models/` (with its
`manifest.json`), `normalizer.json`, `checkpoints/`, `tensorboard/`, generated `data/` and `explain/`.
Code that reads or writes a run directory asks it for paths instead of spelling file names. It only names
paths; creating, checking and deleting run directories is `urep.io`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir", "MARKER", "CONFIG", "LOG", "RESULTS", "FINGERPRINT", "REPORT"]

#: File that marks a folder as a urep run directory (the only kind `--overwrite` deletes).
MARKER = ".urep-run"
#: The resolved experiment config the run used.
CONFIG = "config.yaml"
#: The run's full log (every logger, including the per-epoch detail the console leaves out).
LOG = "log.txt"
#: The results record (`urep.experiments.runner.load_results` reads it).
RESULTS = "results.json"
#: What `--resume` compares: resolved config minus cosmetic keys, data manifests' hashes, urep version.
FINGERPRINT = "fingerprint.json"
#: The Markdown report (for a suite or the demo: the index of its parts).
REPORT = "report.md"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or checked).

    Attributes:
        root: the run directory.
    """

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def marker(self) -> Path:
        """`.urep-run`: marks the folder as a urep run directory."""
        return self.root / MARKER

    @property
    def config(self) -> Path:
        """`config.yaml`: the resolved config."""
        return self.root / CONFIG

    @property
    def log(self) -> Path:
        """`log.txt`: the run's log."""
        return self.root / LOG

    @property
    def results(self) -> Path:
        """`results.json`: the results record."""
        return self.root / RESULTS

    @property
    def fingerprint(self) -> Path:
        """`fingerprint.json`: what `--resume` checks."""
        return self.root / FINGERPRINT

    @property
    def report(self) -> Path:
        """`report.md`: the Markdown report."""
        return self.root / REPORT

    @property
    def tables(self) -> Path:
        """`tables/`: the result tables (`NAME.md` and `NAME.csv`)."""
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        """`figures/`: every PNG figure of the run."""
        return self.root / "figures"

    @property
    def models(self) -> Path:
        """`models/`: the trained models (`GROUP/NAME.keras`)."""
        return self.root / "models"

    @property
    def manifest(self) -> Path:
        """`models/manifest.json`: the task models `urep explain` / `urep recommend` load."""
        return self.models / "manifest.json"

    @property
    def normalizer(self) -> Path:
        """`normalizer.json`: the intensity normalizer fitted on the source's training split."""
        return self.root / "normalizer.json"

    @property
    def checkpoints(self) -> Path:
        """`checkpoints/`: resumable checkpoints, one folder per training phase."""
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        """`tensorboard/`: TensorBoard logs (`PHASE/TASK/`)."""
        return self.root / "tensorboard"

    @property
    def data(self) -> Path:
        """`data/`: phantom data sets generated for the run (`NAME/`)."""
        return self.root / "data"

    @property
    def explain(self) -> Path:
        """`explain/`: `urep explain`'s default output (`TASK/`)."""
        return self.root / "explain"

    def checkpoint(self, phase: str) -> Path:
        """`checkpoints/PHASE/`: the checkpoints of one training phase (e.g. "source", "independent/seg")."""
        return self.checkpoints / phase

    def table(self, name: str, suffix: str) -> Path:
        """`tables/NAME.SUFFIX` (suffix "md" or "csv")."""
        return self.tables / f"{name}.{suffix}"

    def model(self, group: str, name: str) -> Path:
        """`models/GROUP/NAME.keras` (group: "source", a fine-tuning method, "baseline")."""
        return self.models / group / f"{name}.keras"

    def relative(self, path: str | os.PathLike) -> str:
        """`path` relative to the run directory, with forward slashes (as manifests record it)."""
        return Path(path).relative_to(self.root).as_posix()
