"""Distribution and precision plumbing shared by every training loop.

Every loop runs under a `tf.distribute.Strategy` (`dist_strategy`; the default single-device one when none
is given): datasets are distributed, the replica step runs with `dist_strategy.run`, and each replica's loss
is scaled by the *global* batch size. Optimizers are built inside the scope, XLA is off with several
replicas, batch normalization is synchronized over replicas. Why: docs/design.md ("Distribution").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


def get_dist_strategy(dist_strategy: tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """The strategy to run under: `dist_strategy` if given, else the current one (the default strategy)."""
    if dist_strategy is None:
        return tf.distribute.get_strategy()
    if not isinstance(dist_strategy, tf.distribute.Strategy):
        raise TypeError(f"dist_strategy must be a tf.distribute.Strategy or None, got {type(dist_strategy).__name__}")
    return dist_strategy


def use_xla(dist_strategy: tf.distribute.Strategy, requested: bool) -> bool:
    """Whether the replica step may be XLA-compiled: only when asked and with a single replica."""
    if requested and dist_strategy.num_replicas_in_sync > 1:
        logger.info("jit_compile disabled: %s has %d replicas and XLA cannot reach variables on other devices",
                    type(dist_strategy).__name__, dist_strategy.num_replicas_in_sync)
        return False
    return requested


def build_optimizer(optimizer: keras.optimizers.Optimizer, variables: list,
                    dist_strategy: tf.distribute.Strategy) -> keras.optimizers.Optimizer:
    """Create the optimizer's slot variables for `variables` inside `dist_strategy.scope()`.

    Args:
        optimizer: a Keras 3 optimizer, possibly a `LossScaleOptimizer`.
        variables: the variables it will update.
        dist_strategy: the strategy the training runs under.

    Returns:
        The same optimizer, built.

    Raises:
        ValueError: the optimizer was already built for a different set of variables.
    """
    if optimizer.built:
        known = {id(v) for v in optimizer._trainable_variables}
        missing = [v.path for v in variables if id(v) not in known]
        if missing:
            raise ValueError(f"optimizer already built for other variables; it does not cover {missing[:5]}")
        return optimizer
    with dist_strategy.scope():
        optimizer.build(variables)
    return optimizer


_PREFETCH_DEVICE: str | None = None


@contextlib.contextmanager
def prefetch_to(device: str | None) -> Iterator[None]:
    """Within the block, single-replica training and validation batches are copied to `device` (e.g. the
    GPU) ahead of the step (`tf.data.experimental.prefetch_to_device`); None leaves them where they are.
    Several replicas: `experimental_distribute_dataset` already prefetches to every replica's device."""
    global _PREFETCH_DEVICE
    previous, _PREFETCH_DEVICE = _PREFETCH_DEVICE, device
    try:
        yield
    finally:
        _PREFETCH_DEVICE = previous


def synchronize_batchnorm(models, dist_strategy: tf.distribute.Strategy) -> int:
    """With several replicas, make every BatchNormalization layer of `models` (nested models included) compute
    its batch statistics over the global batch (`synchronized=True`, an all-reduce per layer).

    Per-replica statistics would make a distributed run differ from a one-device run of the same global
    batch, and under `MultiWorkerMirroredStrategy` the moving statistics would drift apart between workers
    (each would hold its own shard's). Call before the first step is traced.

    Returns:
        The number of layers changed (0 with one replica).
    """
    if dist_strategy.num_replicas_in_sync == 1:
        return 0
    changed, seen = 0, set()

    def visit(layer) -> None:
        nonlocal changed
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            if not layer.synchronized:
                layer.synchronized = True
                changed += 1
        for inner in getattr(layer, "layers", []) or []:
            visit(inner)

    for model in models:
        visit(model)
    return changed


def distribute_dataset(dataset: tf.data.Dataset, dist_strategy: tf.distribute.Strategy):
    """The dataset as the strategy wants it (unchanged for a single replica; then copied to the device of
    `prefetch_to` when one is set)."""
    if dist_strategy.num_replicas_in_sync == 1:
        if _PREFETCH_DEVICE is not None:
            return dataset.apply(tf.data.experimental.prefetch_to_device(_PREFETCH_DEVICE, buffer_size=2))
        return dataset
    return dist_strategy.experimental_distribute_dataset(dataset)


def _to_float32(value):
    return tf.nest.map_structure(
        lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating and t.dtype != tf.float32 else t, value)


def unreduced_loss(loss_fn: Callable, y_true, y_pred) -> tf.Tensor:
    """The loss before reduction, computed in float32.

    Keras `Loss` objects are called through `.call` (their per-sample values, e.g. `(batch, H, W)` for MSE
    on images); plain functions such as `keras.losses.mean_squared_error` already return per-sample values.
    A loss defined on the whole mini-batch (e.g. Dice over the batch) returns a scalar.
    """
    y_true = _to_float32(y_true)
    y_pred = _to_float32(y_pred)
    if isinstance(loss_fn, keras.losses.Loss):
        return tf.convert_to_tensor(loss_fn.call(y_true, y_pred))
    return tf.convert_to_tensor(loss_fn(y_true, y_pred))


def batch_size_of(y_true) -> tf.Tensor:
    """Number of examples in a (nested) batch, as an int32 scalar tensor."""
    return tf.shape(tf.nest.flatten(y_true)[0])[0]


def replica_loss(loss_fn: Callable, y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """This replica's share of the global mean loss; call in replica context.

    Per-example losses (the mean over every non-batch axis of the unreduced loss) are summed and divided by
    the global batch size (`tf.nn.compute_average_loss`, the global size all-reduced so that an uneven last
    batch is weighted right). A batch-level loss (scalar) counts as the mean over this replica's examples.

    Returns:
        `(scaled, loss_sum, n)`: the scaled loss to differentiate (summing it over replicas gives the
        global mean), the sum of the per-example losses on this replica and its number of examples (float32).
    """
    values = unreduced_loss(loss_fn, y_true, y_pred)
    n = batch_size_of(y_true)
    global_n = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, n)
    n_float = tf.cast(n, tf.float32)
    if values.shape.rank == 0:
        loss_sum = values * n_float
        scaled = tf.math.divide_no_nan(loss_sum, tf.cast(global_n, tf.float32))
    else:
        per_example = values
        if values.shape.rank > 1:
            per_example = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
        loss_sum = tf.reduce_sum(per_example)
        scaled = tf.nn.compute_average_loss(per_example, global_batch_size=global_n)
    return scaled, loss_sum, n_float


def is_loss_scaled(optimizer) -> bool:
    """True for a `keras.optimizers.LossScaleOptimizer` (mixed_float16)."""
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def gradients(tape: tf.GradientTape, loss: tf.Tensor, variables: list, optimizer) -> list:
    """Gradients of `loss`, through the optimizer's loss scale when it has one (unscaled by `apply`).

    The scaling is recorded on `tape` (re-entered): scaled outside it, the loss would be disconnected from
    the variables and every gradient None.
    """
    if is_loss_scaled(optimizer):
        with tape:
            loss = optimizer.scale_loss(loss)
    return tape.gradient(loss, variables)


@contextlib.contextmanager
def mixed_precision_scope(policy: str | None) -> Iterator[None]:
    """Set Keras' global dtype policy for the models built inside; the previous policy is put back after.

    Args:
        policy: None (float32), "mixed_float16" or "mixed_bfloat16" (a `TrainConfig.mixed_precision`).
    """
    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_precision(model: keras.Model, policy: str | None) -> None:
    """Log a warning when a model's compute dtype does not match the configured mixed-precision policy."""
    expected = {None: "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[policy]
    compute = getattr(model.dtype_policy, "compute_dtype", "float32")
    if compute != expected:
        logger.warning("model %s computes in %s but the training config asks for %s; build the model inside "
                       "urep.training.distribute.mixed_precision_scope(%r)", model.name, compute, expected, policy)
