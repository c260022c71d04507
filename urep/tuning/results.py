"""Results of a search: trial records, the trials table (CSV, Markdown), the objective plot, `best.json`.

Read from the oracle of a chief or single process (`trial_records` refuses a distributed worker's client);
every file is written atomically by `write_results`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner
import numpy as np

from urep.io import atomic_save, atomic_write_json, atomic_write_text
from urep.plotting import new_figure
from urep.tuning.hypermodels import SECONDS_METRIC


@dataclass
class TrialRecord:
    """One trial as the results table shows it.

    Attributes:
        trial_id: Keras Tuner's id (creation order).
        status: COMPLETED, RUNNING, INVALID, FAILED, ...
        values: hyperparameter name -> value (Hyperband's `tuner/...` bookkeeping included).
        objective: the trial's objective value (None when it did not complete).
        train_seconds: wall clock of its training.
        metrics: every reported metric's best value.
    """

    trial_id: str
    status: str
    values: dict[str, Any]
    objective: float | None
    train_seconds: float | None
    metrics: dict[str, float]


def trial_records(tuner: keras_tuner.Tuner) -> list[TrialRecord]:
    """Every trial of the tuner's oracle, in creation order (chief or single process only).

    Raises:
        RuntimeError: called on a distributed worker, whose oracle lives in the chief.
    """
    oracle = tuner.oracle
    if not isinstance(oracle, keras_tuner.Oracle):
        raise RuntimeError("trial records live in the chief's oracle; collect them on the chief")
    records = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        metrics = {name: float(trial.metrics.get_best_value(name)) for name in trial.metrics.metrics
                   if trial.metrics.get_history(name)}
        score = trial.score if trial.status == "COMPLETED" else None
        records.append(TrialRecord(
            trial_id=trial_id, status=str(trial.status), values=dict(trial.hyperparameters.values),
            objective=None if score is None or not math.isfinite(score) else float(score),
            train_seconds=metrics.get(SECONDS_METRIC), metrics=metrics))
    return records


def trials_table(records: Sequence[TrialRecord], objective: str):
    """A pandas DataFrame: trial, status, one column per hyperparameter, the objective, training seconds."""
    import pandas as pd

    names = list(dict.fromkeys(name for record in records for name in record.values))
    rows = []
    for record in records:
        row = {"trial": record.trial_id, "status": record.status}
        row.update({name: record.values.get(name) for name in names})
        row[objective] = record.objective
        row[SECONDS_METRIC] = record.train_seconds
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "status", *names, objective, SECONDS_METRIC])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_markdown(table) -> str:
    """A Markdown table of `trials_table(...)` (numbers to 4 significant digits)."""
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_objective(records: Sequence[TrialRecord], objective: str, direction: str,
                   path: str | os.PathLike) -> Path:
    """Objective of each completed trial (dots, in creation order) and the best so far (line); atomic PNG."""
    done = [(i, r.objective) for i, r in enumerate(records) if r.objective is not None]
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if done:
        xs, ys = zip(*done, strict=True)
        best = np.minimum.accumulate(ys) if direction == "min" else np.maximum.accumulate(ys)
        ax.scatter(xs, ys, s=18, label="trial")
        ax.step(xs, best, where="post", color="tab:red", label=f"best so far ({direction})")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("trial (creation order)")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} per trial")
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120))


def best_values(tuner: keras_tuner.Tuner, knobs: Sequence[str] | None = None) -> dict[str, Any]:
    """The best trial's hyperparameter values (only `knobs` when given; Hyperband's `tuner/...` dropped).

    Raises:
        RuntimeError: no trial completed.
    """
    trials = tuner.oracle.get_best_trials(1)
    if not trials or trials[0].score is None:
        raise RuntimeError("no trial completed; nothing to report as best")
    values = {k: v for k, v in trials[0].hyperparameters.values.items() if not k.startswith("tuner/")}
    return {k: v for k, v in values.items() if knobs is None or k in knobs}


def write_results(tuner: keras_tuner.Tuner, out_dir: str | os.PathLike, objective: str,
                  direction: str) -> dict[str, Path]:
    """Write `trials.csv`, `trials.md`, `objective.png` and `best.json` into `out_dir` (atomically).

    Returns:
        Name -> path of every file written (`best.json` only when a trial completed).
    """
    out = Path(out_dir)
    records = trial_records(tuner)
    table = trials_table(records, objective)
    paths = {
        "trials.csv": atomic_write_text(out / "trials.csv", table.to_csv(index=False)),
        "trials.md": atomic_write_text(out / "trials.md", trials_markdown(table)),
        "objective.png": plot_objective(records, objective, direction, out / "objective.png"),
    }
    completed = [r for r in records if r.objective is not None]
    if completed:
        pick = min if direction == "min" else max
        best = pick(completed, key=lambda r: r.objective)
        paths["best.json"] = atomic_write_json(out / "best.json", {
            "trial": best.trial_id, "objective": objective, "direction": direction, "value": best.objective,
            "values": best.values, "train_seconds": best.train_seconds,
            "trials": {"total": len(records), "completed": len(completed)}})
    return paths
