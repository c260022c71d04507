"""The empirical pairing experiment (`experiment: pairwise_transfer`): is sharing good for each pair of tasks?

The source is trained once; then every task is fine-tuned alone and every unordered pair jointly
(`urep.training.strategies.joint`), each from the same source weights and split, and scored on its test set.
`urep.relatedness.run_pairwise_transfer` turns the scores into a transfer matrix (gain of the row task from
the column partner), written to `results.json` (`transfer`), `tables/transfer_matrix.md|csv` and
`figures/transfer_matrix.png`. Protocol choices: docs/choices.md, "Pairwise transfer".
"""

from __future__ import annotations

import logging
import math
from typing import Any

from urep.experiments.evaluation import predict, summarise_method
from urep.experiments.pipeline import UrepPipeline

logger = logging.getLogger(__name__)

__all__ = ["TransferPipeline", "TRANSFER_METRICS", "transfer_results"]

#: Task kind -> the test metric that scores it in the transfer matrix (higher is better).
TRANSFER_METRICS = {"classification": "accuracy", "segmentation": "iou"}


def transfer_results(outcome, metrics: dict[str, str]) -> dict[str, Any]:
    """The JSON record of a `urep.relatedness.PairwiseTransfer`.

    Returns:
        `{"metric": task -> metric, "alone": task -> score, "pairs": [{"task", "partner", "score"}],
        "matrix": {task: {partner: gain | None}}}` (None on the diagonal).
    """
    matrix = {task: {partner: None if math.isnan(value) else float(value) for partner, value in row.items()}
              for task, row in outcome.matrix.to_dict(orient="index").items()}
    return {"metric": dict(metrics), "alone": dict(outcome.alone),
            "pairs": [{"task": task, "partner": partner, "score": score}
                      for (task, partner), score in outcome.pairs.items()],
            "matrix": matrix}


class TransferPipeline(UrepPipeline):
    """The U-Rep pipeline's data and source stages, then the pairwise transfer runs (see the module docstring).

    Takes the arguments of `UrepPipeline`.
    """

    def _train_group(self, group: tuple[str, ...]) -> dict[str, float]:
        """Fine-tune the tasks of `group` jointly from the trained source; each task's test score."""
        from urep.training.strategies import finetune

        label = group[0] + "_alone" if len(group) == 1 else "_with_".join(group)
        assembly = self._assembly(f"transfer_{label}", 0)
        tasks = [task for task in self._tasks_for_fold(0, None) if task.name in group]
        results = finetune(assembly, tasks, "joint", self._train_config(self.config.training.heads),
                           run=self.manager, phase=f"transfer/{label}")
        method = "alone" if len(group) == 1 else "with " + " + ".join(group)
        scores = {}
        for name, result in results.items():
            self._record(result, "transfer", method, name, 0, tasks=list(group))
            data = self.task_data[name]
            output = predict(assembly.task_model(name), self._norm(data.test.images))
            metrics = summarise_method(data.config.kind, data.truth(), [output], data.config.classes)["metrics"]
            scores[name] = metrics[TRANSFER_METRICS[data.config.kind]]
        return scores

    def run(self) -> dict:
        """Data, source, every alone and paired run, the transfer matrix and its heat map."""
        from urep.relatedness import plot_transfer_matrix, run_pairwise_transfer

        self.load_data()
        self.train_source()
        names = [task.name for task in self.config.tasks]
        outcome = run_pairwise_transfer(names, self._train_group, higher_is_better=True)
        metrics = {task.name: TRANSFER_METRICS[task.kind] for task in self.config.tasks}
        self.results["transfer"] = transfer_results(outcome, metrics)
        negative = [(t, p) for t, row in self.results["transfer"]["matrix"].items()
                    for p, gain in row.items() if gain is not None and gain < 0]
        logger.info("pairwise transfer: %d of %d (task, partner) pairs lose from sharing: %s", len(negative),
                    len(names) * (len(names) - 1), negative)
        if self.config.figures:
            path = plot_transfer_matrix(outcome.matrix, self.run_dir / "figures" / "transfer_matrix.png",
                                        title=f"{self.config.name}: gain from joint training with a partner")
            self.figures.append(str(path.relative_to(self.run_dir)))
        self.results["figures"] = sorted(self.figures)
        return self.results
