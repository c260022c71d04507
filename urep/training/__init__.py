"""Training: source models, fine-tuning strategies, loss weighting, run management, distribution.

Custom `tf.function` loops (XLA-compiled steps by default) with one engine for everything, so source models,
heads and baselines are timed the same way:

- `config`: `TrainConfig`, `OptimizerConfig`, `make_optimizer` (the papers' defaults, validated).
- `loop`: `train_model` (one model), `PhaseEngine`, `TrainResult`.
- `strategies`: `Task`, `finetune`, `STRATEGIES` (independent, alternating, joint).
- `loss_weighting`: fixed weights, uncertainty weighting (Kendall et al. 2018), GradNorm (Chen et al. 2018).
- `source`: `train_denoiser`, `train_supervised_source`, `train_super_resolution`, `evaluate_denoiser`.
- `run`: `Run` (run directory, checkpoints, resume, TensorBoard), `NonFiniteLossError`,
  `NonFiniteInputError`.
- `distribute`: strategies, loss scaling by the global batch, mixed precision.
"""

from urep.training.config import OptimizerConfig, TrainConfig, make_optimizer
from urep.training.loop import TrainResult, train_model
from urep.training.run import NonFiniteInputError, NonFiniteLossError, Run
from urep.training.strategies import STRATEGIES, Task, finetune

__all__ = [
    "STRATEGIES",
    "NonFiniteInputError",
    "NonFiniteLossError",
    "OptimizerConfig",
    "Run",
    "Task",
    "TrainConfig",
    "TrainResult",
    "finetune",
    "make_optimizer",
    "train_model",
]
