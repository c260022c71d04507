"""How the joint strategy weighs the task losses: fixed weights, uncertainty weighting, GradNorm.

Fixed weights (the papers' empirical weights, journal sections 2.3 and 3.3), uncertainty weighting (Kendall et
al. 2018) and GradNorm (Chen et al. 2018) behind one interface used by `urep.training.steps.JointStep`:
`combine(losses, num_replicas)` gives the loss to minimise, `trainable_variables` are trained with the
network's optimizer, `update(tape, losses)` runs after the network's gradients, `weights()` reports each task's
effective weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

#: Kendall et al. (2018) factor on exp(-s) per kind of task: a Gaussian likelihood (regression) gives
#: 1/(2 sigma^2) = 0.5 exp(-s); a softmax/Bernoulli likelihood (classification, per-pixel segmentation) gives
#: 1/sigma^2 = exp(-s). With s = log sigma^2 the regulariser log sigma is 0.5 s for both.
KIND_FACTORS = {"classification": 1.0, "segmentation": 1.0, "reconstruction": 0.5, "regression": 0.5}


class LossWeighting:
    """Base class: equal weights, nothing learned. Subclasses override the hooks they need."""

    name = "base"
    needs_task_gradients = False

    def __init__(self) -> None:
        self.names: list[str] = []
        self.built = False

    def build(self, names: Sequence[str], kinds: Sequence[str], weights: Sequence[float],
              strategy: tf.distribute.Strategy, shared_variables: Sequence = ()) -> None:
        """Create the state for these tasks, inside `strategy.scope()`.

        Args:
            names: task names.
            kinds: task kinds ("classification" | "segmentation" | "reconstruction" | "regression").
            weights: the tasks' configured weights (`Task.weight`).
            strategy: the distribution strategy.
            shared_variables: the last shared layer's weights (GradNorm's W).
        """
        self.names = list(names)
        self.built = True

    @property
    def trainable_variables(self) -> list:
        """Variables trained by the network's optimizer."""
        return []

    @property
    def variables(self) -> list:
        """Every state variable (checkpointed with the run)."""
        return []

    def combine(self, losses: Sequence[tf.Tensor], num_replicas: int) -> tf.Tensor:
        """The loss to minimise from this replica's scaled task losses (their sum over replicas is global)."""
        return tf.add_n(list(losses))

    def update(self, tape: tf.GradientTape, losses: Sequence[tf.Tensor]) -> None:
        """Hook run inside the step after the network's gradients (GradNorm)."""

    def weights(self) -> dict[str, float]:
        """Effective weight of each task's loss now."""
        return dict.fromkeys(self.names, 1.0)

    def config(self) -> dict:
        """A plain-dict description for the run record."""
        return {"method": self.name}


class FixedWeights(LossWeighting):
    """L = sum_i w_i L_i with fixed weights (the papers' joint loss).

    Args:
        weights: task name -> weight; tasks not listed use their `Task.weight` (default 1.0, unweighted sum).

    Raises:
        ValueError: a weight is negative or not finite, or names an unknown task (at build).
    """

    name = "fixed"

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self._given = dict(weights or {})
        self._weights: list[float] = []

    def build(self, names, kinds, weights, strategy, shared_variables=()) -> None:
        unknown = sorted(set(self._given) - set(names))
        if unknown:
            raise ValueError(f"loss weights given for unknown tasks {unknown}; tasks are {list(names)}")
        resolved = [float(self._given.get(name, weight)) for name, weight in zip(names, weights, strict=True)]
        bad = {n: w for n, w in zip(names, resolved, strict=True) if not np.isfinite(w) or w < 0}
        if bad:
            raise ValueError(f"loss weights must be finite and >= 0, got {bad}")
        self._weights = resolved
        super().build(names, kinds, weights, strategy, shared_variables)

    def combine(self, losses, num_replicas):
        return tf.add_n([w * loss for w, loss in zip(self._weights, losses, strict=True)])

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self._weights, strict=True))

    def config(self) -> dict:
        return {"method": self.name, "weights": self.weights()}


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    L = sum_i c_i exp(-s_i) L_i + 0.5 s_i, with s_i = log sigma_i^2 learned with the network. The factor c_i
    is 0.5 for regression-like tasks (Gaussian likelihood: MSE reconstruction) and 1 for classification-like
    tasks (softmax or per-pixel Bernoulli likelihood: classification and segmentation), see `KIND_FACTORS`;
    `factors` overrides it per task. (Many implementations use c_i = 1 and s_i instead of 0.5 s_i for every
    task, which is the regression form scaled by 2; `factors={...: 1.0}` gives that weighting up to scale.)

    Args:
        factors: task name -> c_i, overriding the kind's factor.
        initial_log_variance: initial s_i (0: every task starts with weight c_i).
    """

    name = "uncertainty"

    def __init__(self, factors: Mapping[str, float] | None = None, initial_log_variance: float = 0.0) -> None:
        super().__init__()
        self._given = dict(factors or {})
        self.initial_log_variance = float(initial_log_variance)
        self.factors: list[float] = []
        self.log_variances = None

    def build(self, names, kinds, weights, strategy, shared_variables=()) -> None:
        unknown = sorted(set(self._given) - set(names))
        if unknown:
            raise ValueError(f"uncertainty factors given for unknown tasks {unknown}; tasks are {list(names)}")
        factors = []
        for name, kind in zip(names, kinds, strict=True):
            if name in self._given:
                factors.append(float(self._given[name]))
            elif kind in KIND_FACTORS:
                factors.append(KIND_FACTORS[kind])
            else:
                raise ValueError(f"task {name!r} has kind {kind!r}; uncertainty weighting knows "
                                 f"{sorted(KIND_FACTORS)} (or pass factors={{{name!r}: c}})")
        self.factors = factors
        with strategy.scope():
            self.log_variances = keras.Variable(np.full(len(names), self.initial_log_variance, np.float32),
                                                trainable=True, name="uncertainty_log_variances")
        super().build(names, kinds, weights, strategy, shared_variables)

    @property
    def trainable_variables(self) -> list:
        return [self.log_variances]

    @property
    def variables(self) -> list:
        return [self.log_variances]

    def combine(self, losses, num_replicas):
        s = tf.convert_to_tensor(self.log_variances)
        terms = [c * tf.exp(-s[i]) * loss + 0.5 * s[i] / num_replicas
                 for i, (c, loss) in enumerate(zip(self.factors, losses, strict=True))]
        return tf.add_n(terms)

    def weights(self) -> dict[str, float]:
        s = np.asarray(self.log_variances.numpy(), np.float64)
        return {name: float(c * np.exp(-s[i])) for i, (name, c) in enumerate(zip(self.names, self.factors,
                                                                                 strict=True))}

    def config(self) -> dict:
        return {"method": self.name, "factors": dict(zip(self.names, self.factors, strict=True)),
                "initial_log_variance": self.initial_log_variance}


class GradNorm(LossWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018).

    The network minimises sum_i w_i L_i (weights held constant for the network's gradient). The weights are
    trained on L_grad = sum_i |G_i - mean(G) r_i^alpha|, where G_i = ||grad_W (w_i L_i)||_2 with W the
    weights of the last shared layer, r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) the relative inverse
    training rate, and the target treated as a constant; after each update the weights are renormalised to
    sum to the number of tasks (and kept >= `min_weight`).

    Args:
        alpha: the asymmetry hyperparameter (the paper uses 0.12 to 3; 1.5 is its most used value).
        learning_rate: Adam learning rate of the weights (the paper is not specific; 0.01 chosen).
        min_weight: floor applied before renormalising, so no task is switched off for good.
    """

    name = "gradnorm"
    needs_task_gradients = True

    def __init__(self, alpha: float = 1.5, learning_rate: float = 1e-2, min_weight: float = 1e-3) -> None:
        super().__init__()
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"GradNorm alpha must be a finite number >= 0, got {alpha!r}")
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"GradNorm learning_rate must be > 0, got {learning_rate!r}")
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.min_weight = float(min_weight)
        self.task_weights = None
        self.initial_losses = None
        self.initialized = None
        self.optimizer = None
        self.layer_variables: list = []

    def build(self, names, kinds, weights, strategy, shared_variables=()) -> None:
        if not shared_variables:
            raise ValueError("GradNorm needs the last shared layer's weights (gradnorm_variables=...); "
                             "none were found")
        self.layer_variables = list(shared_variables)
        n = len(names)
        with strategy.scope():
            self.task_weights = keras.Variable(np.ones(n, np.float32), trainable=True, name="gradnorm_weights",
                                               aggregation="only_first_replica")
            self.initial_losses = keras.Variable(np.ones(n, np.float32), trainable=False,
                                                 name="gradnorm_initial_losses", aggregation="only_first_replica")
            self.initialized = keras.Variable(0.0, trainable=False, name="gradnorm_initialized",
                                              aggregation="only_first_replica")
            self.optimizer = keras.optimizers.Adam(self.learning_rate)
            self.optimizer.build([self.task_weights])
        super().build(names, kinds, weights, strategy, shared_variables)

    @property
    def variables(self) -> list:
        return [self.task_weights, self.initial_losses, self.initialized, *self.optimizer.variables]

    def combine(self, losses, num_replicas):
        w = tf.stop_gradient(tf.convert_to_tensor(self.task_weights))
        return tf.add_n([w[i] * loss for i, loss in enumerate(losses)])

    def update(self, tape, losses) -> None:
        context = tf.distribute.get_replica_context()
        num_replicas = context.num_replicas_in_sync
        global_losses = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack(losses))
        norms = []
        for loss in losses:
            grads = tape.gradient(loss, self.layer_variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.layer_variables, strict=True)]
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            norms.append(tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads])))
        norms = tf.stack(norms)
        first = tf.equal(tf.convert_to_tensor(self.initialized), 0.0)
        initial = tf.where(first, global_losses, tf.convert_to_tensor(self.initial_losses))
        self.initial_losses.assign(initial)
        self.initialized.assign(1.0)
        w = tf.convert_to_tensor(self.task_weights)
        g_w = w * norms
        inverse_rate = global_losses / tf.maximum(initial, 1e-12)
        relative = inverse_rate / tf.maximum(tf.reduce_mean(inverse_rate), 1e-12)
        target = tf.stop_gradient(tf.reduce_mean(g_w) * tf.pow(relative, self.alpha))
        grad = tf.sign(g_w - target) * norms / num_replicas
        self.optimizer.apply_gradients([(grad, self.task_weights)])
        updated = tf.maximum(tf.convert_to_tensor(self.task_weights), self.min_weight)
        self.task_weights.assign(updated * len(self.names) / tf.reduce_sum(updated))

    def weights(self) -> dict[str, float]:
        return {name: float(w) for name, w in zip(self.names, self.task_weights.numpy(), strict=True)}

    def config(self) -> dict:
        return {"method": self.name, "alpha": self.alpha, "learning_rate": self.learning_rate,
                "min_weight": self.min_weight, "layer": [v.path for v in self.layer_variables]}


METHODS = {"fixed": FixedWeights, "uncertainty": UncertaintyWeighting, "gradnorm": GradNorm}


def make_loss_weighting(spec: str | LossWeighting | Mapping[str, float] | None = None,
                        **kwargs) -> LossWeighting:
    """A loss weighting from a name, a task->weight mapping, an instance, or None (fixed `Task.weight`s).

    Args:
        spec: "fixed" | "uncertainty" | "gradnorm", a mapping of fixed weights, a `LossWeighting`, or None.
        **kwargs: passed to the class named by `spec` (e.g. `alpha=1.5` for GradNorm).

    Raises:
        ValueError: unknown method name.
    """
    if isinstance(spec, LossWeighting):
        return spec
    if spec is None:
        return FixedWeights(**kwargs)
    if isinstance(spec, Mapping):
        return FixedWeights(weights=spec)
    if spec not in METHODS:
        raise ValueError(f"unknown loss weighting {spec!r}; expected one of {sorted(METHODS)}")
    return METHODS[spec](**kwargs)
