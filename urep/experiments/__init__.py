"""Experiments: config (YAML -> dataclasses) -> run -> results.json -> tables and figures; demo; paper numbers.

Importing this package is cheap (no TensorFlow); `run_experiment` imports the heavy layers when called.
"""

from __future__ import annotations

from urep.experiments.config import ConfigError, ExperimentConfig, list_configs, load_config
from urep.experiments.paper_numbers import PAPER_TABLES, paper_value

__all__ = ["ConfigError", "ExperimentConfig", "list_configs", "load_config", "PAPER_TABLES", "paper_value",
           "run_experiment"]


def __getattr__(name: str):
    if name == "run_experiment":
        from urep.experiments.runner import run_experiment

        return run_experiment
    raise AttributeError(f"module 'urep.experiments' has no attribute {name!r}")
