"""The `cross_stitch` fine-tuning strategy: soft parameter sharing trained like the joint strategy.

Listed in `urep.training.strategies.STRATEGIES` as `"cross_stitch"`, so `finetune(assembly, tasks,
"cross_stitch", config, run)` returns the same `TrainResult`s as the other strategies. The hard-sharing
assembly is turned into its cross-stitch twin (`urep.models.cross_stitch.cross_stitch_from_assembly`) and
trained by `urep.training.strategies.joint` on the sum of the task losses (Misra et al. 2016); the assembly
given is not modified (docs/design.md, "Fine-tuning strategies").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from urep.models.cross_stitch import CrossStitchAssembly, cross_stitch_from_assembly
from urep.training.config import TrainConfig
from urep.training.loop import TrainResult
from urep.training.run import Run
from urep.training.strategies import Task, joint

logger = logging.getLogger(__name__)

STRATEGY_NAME = "cross_stitch"


def _column_kernels(network: CrossStitchAssembly) -> list:
    """GradNorm's W for soft sharing: the last kernel of every column (not the mixing matrices)."""
    kernels = []
    for task in network.task_names:
        own = [v for name in network.settings.get("column_layers", ())
               for v in network.network.get_layer(f"{task}_{name}").trainable_variables if len(v.shape) >= 2]
        kernels.extend(own[-1:])
    return kernels


def cross_stitch(
    assembly: Any,
    tasks: Sequence[Task],
    config: TrainConfig,
    run: Run | None = None,
    *,
    stitch_after: Sequence[str] | None = None,
    self_weight: float = 0.9,
    per_channel: bool = False,
    phase: str = STRATEGY_NAME,
    dist_strategy: tf.distribute.Strategy | None = None,
    **joint_options: Any,
) -> dict[str, TrainResult]:
    """Train a cross-stitch network on the tasks jointly (the `STRATEGIES["cross_stitch"]` entry).

    Args:
        assembly: a `urep.models.MultiTaskModel` (its encoder and heads are copied; it is not changed) or a
            `CrossStitchAssembly` (trained in place).
        tasks: the tasks, at least 2; their `model` is ignored (the cross-stitch task models are used), their
            loss, data, weight and metrics are used as by the joint strategy.
        config: training configuration.
        run: run directory manager, or None.
        stitch_after: encoder layer names after which to stitch (default: every non-linearity; only when
            `assembly` is a `MultiTaskModel`).
        self_weight: initial diagonal of the mixing matrices (Misra et al.: 0.9).
        per_channel: one mixing matrix per channel.
        phase: phase name (checkpoint and TensorBoard folder).
        dist_strategy: a `tf.distribute.Strategy` (default: the current one).
        **joint_options: passed to `urep.training.strategies.joint` (`loss_weighting`,
            `loss_weighting_options`, `optimizer`, `gradnorm_variables`).

    Returns:
        Task name -> `TrainResult` with `strategy="cross_stitch"` and `extra["cross_stitch"]` holding the
        stitch points, the initialization and the learned mixing matrices.

    Raises:
        ValueError: fewer than 2 tasks, or tasks that the assembly has no head for.
        TypeError: an assembly that is neither a `MultiTaskModel`-like object nor a `CrossStitchAssembly`.
    """
    tasks = list(tasks)
    names = [task.name for task in tasks]
    if len(tasks) < 2:
        raise ValueError(f"cross_stitch needs at least 2 tasks (one column each), got {names}")
    if isinstance(assembly, CrossStitchAssembly):
        network = assembly
        missing = [name for name in names if name not in network.task_models]
        if missing:
            raise ValueError(f"the cross-stitch network has no output for tasks {missing} "
                             f"(outputs: {network.task_names})")
    elif hasattr(assembly, "encoder") and hasattr(assembly, "task_models"):
        network = cross_stitch_from_assembly(assembly, tasks=names, stitch_after=stitch_after,
                                             self_weight=self_weight, per_channel=per_channel)
        logger.warning("cross_stitch: trained a new network built from %s; its task models are not the "
                       "assembly's (build it with cross_stitch_from_assembly and pass it to use them)",
                       type(assembly).__name__)
    else:
        raise TypeError("cross_stitch needs a MultiTaskModel (encoder + heads) or a CrossStitchAssembly, got "
                        f"{type(assembly).__name__}")
    logger.info("cross_stitch: %d columns, units after %s", len(names), network.settings.get("stitch_after"))
    column_tasks = [dataclasses.replace(task, model=network.task_models[task.name]) for task in tasks]
    if joint_options.get("gradnorm_variables") is None:
        joint_options["gradnorm_variables"] = _column_kernels(network)
    results = joint(network.task_models, column_tasks, config, run, dist_strategy=dist_strategy, phase=phase,
                    **joint_options)
    record = {**network.settings, "mixing_matrices": network.mixing_matrices()}
    for result in results.values():
        result.strategy = STRATEGY_NAME
        result.extra["cross_stitch"] = record
    return results

