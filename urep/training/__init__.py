"""Training: source models, fine-tuning strategies, loss weighting, run management, distribution.

Custom `tf.function` loops (XLA-compiled steps by default) with one engine for source models, heads and
baselines: `config` (`TrainConfig`, `OptimizerConfig`, `make_optimizer`), `loop` (`train_model`,
`PhaseEngine`, `TrainResult`), `strategies` (`Task`, `finetune`, `STRATEGIES`), `loss_weighting`, `source`
(`train_denoiser`, `train_supervised_source`, `train_super_resolution`, `evaluate_denoiser`), `run` (`Run`,
`NonFiniteLossError`, `NonFiniteInputError`) and `distribute` (distribution, loss scaling, mixed precision).
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
