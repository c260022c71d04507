"""Tuners: `make_tuner` by name, the resumable grid oracle, and `search` (incl. the distributed chief).

`make_tuner` returns a Keras Tuner tuner optimising a hypermodel's objective (`grid` uses
`ResumableGridSearchOracle`, which continues a reloaded grid). `search(tuner)` trains the trials, or, in the
chief of a distributed search (`KERASTUNER_*` variables), serves the oracle over gRPC until every trial ended.
This is the one module that uses Keras Tuner's private API (see the note at the imports).
"""

from __future__ import annotations

import functools
import logging
import os
import time

import keras_tuner

# Keras Tuner private API, used here only: `keras_tuner.src.tuners.gridsearch.LinkedList` and the oracle's
# `_ordered_ids`, `_populate_next` and `_compare` (ResumableGridSearchOracle), and
# `keras_tuner.src.protos` / `keras_tuner.src.distribute.oracle_chief` (the chief's gRPC server). They are
# checked against keras-tuner 1.4.8; setup.cfg and requirements.txt therefore bound keras-tuner to < 1.5.
from keras_tuner.src.tuners.gridsearch import LinkedList

from urep.tuning.hypermodels import UrepHyperModel

logger = logging.getLogger("urep.tuning")

#: Tuner names accepted by `make_tuner`.
TUNERS = ("grid", "random", "bayesian", "hyperband")


class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """Keras Tuner's grid oracle, plus a reload that continues the grid.

    On `set_state` (called by `reload`, after the trials were read back from their `trial.json` files) the
    ordered list of tried combinations is rebuilt by sorting the saved trials with the oracle's own order,
    and every ended trial is queued again to propose its successor; successors already tried are skipped by
    the stock logic, so nothing finished is proposed twice. (Keras Tuner 1.4.8's own grid oracle keeps that
    order only in memory: a reloaded `GridSearch` stops at once or crashes with a `KeyError`.)
    """

    def set_state(self, state: dict) -> None:
        super().set_state(state)

        def compare(a: str, b: str) -> int:
            return self._compare(self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values)

        self._ordered_ids = LinkedList()
        for trial_id in sorted(self.trials, key=functools.cmp_to_key(compare)):
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(dict.fromkeys(self.end_order))


def make_tuner(name: str, hypermodel: UrepHyperModel, directory: str | os.PathLike, *,
               project_name: str = "search", max_trials: int | None = None, seed: int = 0,
               overwrite: bool = False, max_epochs: int | None = None, hyperband_factor: int = 3,
               hyperband_iterations: int = 1, executions_per_trial: int = 1) -> keras_tuner.Tuner:
    """A Keras Tuner tuner by name, optimising `hypermodel.objective`.

    Args:
        name: "grid" (exhaustive; `ResumableGridSearchOracle`), "random", "bayesian" or "hyperband".
        hypermodel: the hypermodel (its `objective` and `direction` are the tuner's).
        directory: folder of the project (`directory/project_name`: `oracle.json`, `trial_*/`).
        project_name: project folder name.
        max_trials: trial budget. None: the whole grid (grid), 10 (random, bayesian), Hyperband's own budget
            (hyperband; a number caps it).
        seed: oracle seed (random draws, Bayesian initial points, Hyperband brackets).
        overwrite: delete an existing project first; False reloads it and continues.
        max_epochs: Hyperband's largest epoch budget; default the hypermodel's `train_config.epochs`.
        hyperband_factor: Hyperband's reduction factor.
        hyperband_iterations: Hyperband's iterations.
        executions_per_trial: trainings per trial (the objective is their mean).

    Returns:
        The tuner (call `search(tuner)`).

    Raises:
        ValueError: unknown name or bad budget.
    """
    if name not in TUNERS:
        raise ValueError(f"unknown tuner {name!r}; expected one of {list(TUNERS)}")
    if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(max_trials, int)
                                   or max_trials < 1):
        raise ValueError(f"max_trials must be None or an integer >= 1, got {max_trials!r}")
    objective = hypermodel.kt_objective
    common = {"hypermodel": hypermodel, "directory": str(directory), "project_name": project_name,
              "overwrite": overwrite, "executions_per_trial": executions_per_trial}
    if name == "grid":
        oracle = ResumableGridSearchOracle(objective=objective, max_trials=max_trials, seed=seed)
        return keras_tuner.Tuner(oracle=oracle, **common)
    if name == "random":
        return keras_tuner.RandomSearch(objective=objective, max_trials=max_trials or 10, seed=seed, **common)
    if name == "bayesian":
        return keras_tuner.BayesianOptimization(objective=objective, max_trials=max_trials or 10, seed=seed,
                                                **common)
    epochs = max_epochs or hypermodel.train_config.epochs
    if epochs < 2:
        raise ValueError(f"hyperband needs max_epochs >= 2 (it trains brackets of growing budgets), got {epochs}")
    tuner = keras_tuner.Hyperband(objective=objective, max_epochs=epochs, factor=hyperband_factor,
                                  hyperband_iterations=hyperband_iterations, seed=seed, **common)
    if max_trials is not None:
        tuner.oracle.max_trials = max_trials
    return tuner


# -- distributed mode ----------------------------------------------------------------------------------------
def is_distributed() -> bool:
    """Whether the Keras Tuner chief/worker variables are set (`KERASTUNER_ORACLE_IP`, ...)."""
    return "KERASTUNER_ORACLE_IP" in os.environ


def is_chief() -> bool:
    """Whether this process is the chief of a distributed search (its tuner id contains "chief")."""
    return is_distributed() and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_worker() -> bool:
    """Whether this process is a worker of a distributed search."""
    return is_distributed() and not is_chief()


def _serve_chief(tuner: keras_tuner.Tuner, poll_seconds: float) -> None:
    """Serve the oracle over gRPC until it has no trial left and every worker has been told to stop."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    for key in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if key not in os.environ:
            raise RuntimeError(f"KERASTUNER_ORACLE_IP is set but {key} is not; set all three variables")
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"the chief cannot listen on {address} (port in use?)")
    server.start()
    logger.info("chief: oracle serving on %s", address)
    try:
        while not (servicer.stop_triggered and exit_chief(tuner.oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1.0)
    logger.info("chief: every trial ended and every worker stopped")


def search(tuner: keras_tuner.Tuner, poll_seconds: float = 0.5) -> None:
    """Run the search: the chief serves the oracle, a worker or a single process trains trials.

    Args:
        tuner: from `make_tuner`.
        poll_seconds: how often the chief checks whether the search is over.
    """
    if is_chief():
        _serve_chief(tuner, poll_seconds)
        return
    tuner.search(verbose=0)

