"""Hyperparameter search with Keras Tuner (the papers used Talos; UMS-Rep journal, Sections 4.1.1 and 4.2.1).

`space` parses search spaces, `hypermodels` builds and trains urep models per trial, `tuners` makes tuners
(`grid`, `random`, `bayesian`, `hyperband`) and runs the search (single process, or chief and workers), and
`results` writes the trials table, plot and best values. Every public name is re-exported here. Design notes,
resuming, memory and distributed mode: docs/tuning.md.
"""

from __future__ import annotations

from urep.tuning.hypermodels import (
    SECONDS_METRIC,
    CDAEHyperModel,
    DilatedCNNHyperModel,
    HeadHyperModel,
    TuningData,
    UrepHyperModel,
)
from urep.tuning.results import (
    TrialRecord,
    best_values,
    plot_objective,
    trial_records,
    trials_markdown,
    trials_table,
    write_results,
)
from urep.tuning.space import (
    DEFAULT_HEAD_SPACE,
    KNOB_TYPES,
    PAPER_CDAE_SPACE,
    PAPER_DILATED_CNN_SPACE,
    SearchSpaceError,
    declare,
    parse_search_space,
)
from urep.tuning.tuners import (
    TUNERS,
    ResumableGridSearchOracle,
    is_chief,
    is_distributed,
    is_worker,
    make_tuner,
    search,
)

__all__ = [
    "CDAEHyperModel",
    "DEFAULT_HEAD_SPACE",
    "DilatedCNNHyperModel",
    "HeadHyperModel",
    "KNOB_TYPES",
    "PAPER_CDAE_SPACE",
    "PAPER_DILATED_CNN_SPACE",
    "ResumableGridSearchOracle",
    "SECONDS_METRIC",
    "SearchSpaceError",
    "TUNERS",
    "TrialRecord",
    "TuningData",
    "UrepHyperModel",
    "best_values",
    "declare",
    "is_chief",
    "is_distributed",
    "is_worker",
    "make_tuner",
    "parse_search_space",
    "plot_objective",
    "search",
    "trial_records",
    "trials_markdown",
    "trials_table",
    "write_results",
]
