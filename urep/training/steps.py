"""Compiled training and evaluation steps: one set per (task, model), traced once and reused every epoch.

`TaskSteps` trains one model on one loss (source models, baselines, independent heads, each task of the
alternating strategy); `JointStep` trains several task models sharing an encoder on one weighted loss, one
batch of every task per step (the joint strategy). With one replica a step is a `BatchFunction` (batch
dimension left open in its input signature, so the smaller last batch reuses the trace; XLA when on); with
several it runs through `dist_strategy.run` (`reduce_retracing=True`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from urep.training.distribute import (
    build_optimizer,
    distribute_dataset,
    gradients,
    replica_loss,
    synchronize_batchnorm,
    use_xla,
)

SUM = tf.distribute.ReduceOp.SUM


def unique_variables(variables) -> list:
    """Variables in first-seen order with duplicates (the same object seen twice) removed."""
    seen: set[int] = set()
    unique = []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


def count_params(variables) -> int:
    """Number of scalars in `variables`."""
    return int(sum(np.prod(v.shape) for v in variables))


def _regularization(model: keras.Model, num_replicas: int) -> tf.Tensor | None:
    if not model.losses:
        return None
    return tf.add_n([tf.cast(loss, tf.float32) for loss in model.losses]) / num_replicas


class Evaluator:
    """The compiled evaluation of one model with one loss: mean loss over examples and Keras metrics.

    Args:
        name: the task name (used in errors).
        model: a Keras model `x -> y_pred`.
        loss_fn: a Keras loss object or function `(y_true, y_pred) -> loss`.
        dist_strategy: the distribution strategy.
        jit_compile: XLA-compile the forward pass (single replica only).
        metrics: Keras metrics, reset and updated at every `evaluate`.
    """

    def __init__(self, name: str, model: keras.Model, loss_fn: Callable, dist_strategy: tf.distribute.Strategy,
                 jit_compile: bool = True, metrics: Sequence = ()) -> None:
        self.name, self.model, self.loss_fn, self.dist_strategy = name, model, loss_fn, dist_strategy
        self.metrics = list(metrics)
        self._eval = _compile(self._replica_eval, dist_strategy, use_xla(dist_strategy, jit_compile), None)
        self._update_metrics = BatchFunction(self._metrics_update)

    def _replica_eval(self, x, y):
        y_pred = self.model(x, training=False)
        _, loss_sum, n = replica_loss(self.loss_fn, y, y_pred)
        return loss_sum, n, y_pred

    def _metrics_update(self, y, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        for metric in self.metrics:
            metric.update_state(y, y_pred)

    def evaluate(self, dataset: tf.data.Dataset, max_steps: int | None = None) -> dict[str, float]:
        """Mean loss over the examples of `dataset` and the metrics' results.

        Args:
            dataset: batches `(x, y)` (not yet distributed).
            max_steps: stop after this many batches (None: the whole dataset).

        Returns:
            `{"loss": float, <metric name>: float, ...}`.

        Raises:
            ValueError: the dataset gave no batches.
        """
        for metric in self.metrics:
            metric.reset_state()
        loss_sum, count = 0.0, 0.0
        # Several workers: every worker evaluates every whole batch (passed undistributed, so each replica
        # gets all of it; the first local replica's result is used), so the validation loss, and with it the
        # plateau, early-stopping and best-epoch decisions, is the same on every worker.
        whole = isinstance(self.dist_strategy, tf.distribute.MultiWorkerMirroredStrategy)
        for step, (x, y) in enumerate(dataset if whole else distribute_dataset(dataset, self.dist_strategy)):
            if max_steps is not None and step >= max_steps:
                break
            sums, ns, preds = self._eval(x, y)
            if self.dist_strategy.num_replicas_in_sync == 1:
                parts = [(sums, ns, y, preds)]
            elif whole:
                local = self.dist_strategy.experimental_local_results
                parts = [(local(sums)[0], local(ns)[0], y, local(preds)[0])]
            else:
                local = self.dist_strategy.experimental_local_results
                parts = list(zip(local(sums), local(ns), local(y), local(preds), strict=True))
            for part_sum, part_n, part_y, part_pred in parts:
                loss_sum += float(part_sum)
                count += float(part_n)
                if self.metrics:
                    self._update_metrics(part_y, part_pred)
        if count == 0:
            raise ValueError(f"task {self.name!r}: the validation dataset gave no batches")
        results = {"loss": loss_sum / count}
        for metric in self.metrics:
            results[metric.name] = float(metric.result())
        return results


def _batch_spec(value) -> tf.TensorSpec:
    """The spec of one tensor with its first (batch) dimension unknown."""
    shape = tf.TensorShape(value.shape)
    if shape.rank:
        shape = tf.TensorShape([None, *shape[1:]])
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


class BatchFunction:
    """`fn(*tensors)` as a `tf.function` traced once per input structure, whatever the batch size.

    The first call with a given structure (nesting, dtypes, shapes after the batch dimension) traces `fn` with
    an input signature whose batch dimension is None, so the smaller last batch of an epoch runs the same
    graph instead of retracing (XLA, when on, still compiles per concrete shape, without retracing).

    Args:
        fn: a function of (nested structures of) tensors.
        jit_compile: XLA-compile the traced function.
    """

    def __init__(self, fn: Callable, jit_compile: bool = False) -> None:
        self.fn, self.jit_compile = fn, jit_compile
        self._traced: dict = {}

    def __call__(self, *args):
        specs = tuple(tf.nest.map_structure(_batch_spec, arg) for arg in args)
        key = repr(specs)  # nesting, dtypes and shapes (TensorSpecs print all three)
        function = self._traced.get(key)
        if function is None:
            function = tf.function(self.fn, input_signature=specs, jit_compile=self.jit_compile)
            self._traced[key] = function
        return function(*args)

    @property
    def traces(self) -> int:
        """How many times `fn` was traced (one per input structure seen)."""
        return sum(f.experimental_get_tracing_count() for f in self._traced.values())


def _compile(replica_fn: Callable, dist_strategy: tf.distribute.Strategy, xla: bool, reduce_op):
    """`replica_fn` as one traced function: XLA-compiled itself with one replica (a `BatchFunction`), else
    run by `dist_strategy.run` inside an outer `tf.function` (and reduced with `reduce_op` unless None)."""
    if dist_strategy.num_replicas_in_sync == 1:
        return BatchFunction(replica_fn, jit_compile=xla)

    def distributed(*args):
        result = dist_strategy.run(replica_fn, args=args)
        if reduce_op is None:
            return result
        return tf.nest.map_structure(lambda value: dist_strategy.reduce(reduce_op, value, axis=None), result)

    return tf.function(distributed, reduce_retracing=True)


class TaskSteps:
    """The compiled train step of one model with one loss and one optimizer, and its `Evaluator`.

    Args:
        name: the task name (used in errors).
        model: a Keras model `x -> y_pred`.
        loss_fn: a Keras loss object or function `(y_true, y_pred) -> loss`.
        optimizer: a Keras 3 optimizer; built here, inside the strategy scope, for `variables`.
        dist_strategy: the distribution strategy.
        jit_compile: XLA-compile the replica step (single replica only).
        variables: the variables to train; default the model's trainable variables at construction time
            (freeze layers before building the steps).
        metrics: Keras metrics updated during `evaluate`.

    Raises:
        ValueError: the model has no trainable variables.
    """

    def __init__(self, name: str, model: keras.Model, loss_fn: Callable, optimizer,
                 dist_strategy: tf.distribute.Strategy, jit_compile: bool = True, variables: Sequence | None = None, metrics: Sequence = ()) -> None:
        self.name, self.model, self.loss_fn, self.optimizer = name, model, loss_fn, optimizer
        self.dist_strategy = dist_strategy
        self.variables = unique_variables(model.trainable_variables if variables is None else variables)
        if not self.variables:
            raise ValueError(f"task {name!r}: model {model.name!r} has no trainable variables to train")
        build_optimizer(optimizer, self.variables, dist_strategy)
        synchronize_batchnorm([model], dist_strategy)
        self.xla = use_xla(dist_strategy, jit_compile)
        self._train = _compile(self._replica_train, dist_strategy, self.xla, SUM)
        self.evaluator = Evaluator(name, model, loss_fn, dist_strategy, jit_compile, metrics)

    def _replica_train(self, x, y):
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            scaled, _, _ = replica_loss(self.loss_fn, y, y_pred)
            regularization = _regularization(self.model, self.dist_strategy.num_replicas_in_sync)
            total = scaled if regularization is None else scaled + regularization
        grads = gradients(tape, total, self.variables, self.optimizer)
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
        return scaled

    def train_step(self, x, y) -> tf.Tensor:
        """One optimizer step on a (possibly distributed) batch; returns the global mean loss (scalar)."""
        return self._train(x, y)

    def evaluate(self, dataset: tf.data.Dataset, max_steps: int | None = None) -> dict[str, float]:
        """See `Evaluator.evaluate`."""
        return self.evaluator.evaluate(dataset, max_steps)


class JointStep:
    """One optimizer step on the weighted sum of several tasks' losses, one batch of each task.

    Args:
        names: task names, in the order batches are given.
        models: the task models (sharing an encoder).
        loss_fns: the tasks' losses.
        weighting: a `urep.training.loss_weighting.LossWeighting`, built here for the tasks.
        optimizer: the single optimizer of the whole network (and the weighting's trainable parameters).
        dist_strategy: the distribution strategy.
        jit_compile: XLA-compile the replica step (single replica only).
    """

    def __init__(self, names: Sequence[str], models: Sequence[keras.Model], loss_fns: Sequence[Callable],
                 weighting, optimizer, dist_strategy: tf.distribute.Strategy, jit_compile: bool = True) -> None:
        self.names = list(names)
        self.models = list(models)
        self.loss_fns = list(loss_fns)
        self.weighting = weighting
        self.optimizer = optimizer
        self.dist_strategy = dist_strategy
        synchronize_batchnorm(self.models, dist_strategy)
        self.network_variables = unique_variables(v for m in self.models for v in m.trainable_variables)
        self.variables = self.network_variables + list(weighting.trainable_variables)
        build_optimizer(optimizer, self.variables, dist_strategy)
        self.xla = use_xla(dist_strategy, jit_compile)
        self._train = _compile(self._replica_train, dist_strategy, self.xla, SUM)
        self._train_active: dict[tuple[bool, ...], Callable] = {}

    def _train_some(self, active: tuple[bool, ...]) -> Callable:
        """The compiled step for one set of active tasks; with one replica it takes the active tasks' batches
        only (inactive tasks have None, which an input signature cannot hold)."""
        if active not in self._train_active:
            if self.dist_strategy.num_replicas_in_sync == 1:
                def step(active_batches, active=active):
                    given = iter(active_batches)
                    return self._replica_train(tuple(next(given) if on else None for on in active), active)

                self._train_active[active] = BatchFunction(step, jit_compile=self.xla)
            else:
                self._train_active[active] = lambda batches, active=active: self._train(batches, active)
        return self._train_active[active]

    def _active_variables(self, active: tuple[bool, ...] | None) -> list:
        """The variables one step updates: every task's, or only those of the active tasks' models."""
        if active is None:
            return self.variables
        models = [model for model, on in zip(self.models, active, strict=True) if on]
        return unique_variables(v for m in models for v in m.trainable_variables) + list(
            self.weighting.trainable_variables)

    def _replica_train(self, batches, active=None):
        num_replicas = self.dist_strategy.num_replicas_in_sync
        with tf.GradientTape(persistent=self.weighting.needs_task_gradients) as tape:
            losses = []
            regularization = []
            for index, (model, loss_fn, batch) in enumerate(zip(self.models, self.loss_fns, batches, strict=True)):
                if active is not None and not active[index]:
                    losses.append(tf.constant(0.0, tf.float32))
                    continue
                x, y = batch
                y_pred = model(x, training=True)
                scaled, _, _ = replica_loss(loss_fn, y, y_pred)
                losses.append(scaled)
                extra = _regularization(model, num_replicas)
                if extra is not None:
                    regularization.append(extra)
            total = self.weighting.combine(losses, num_replicas)
            objective = total + tf.add_n(regularization) if regularization else total
        variables = self._active_variables(active)
        grads = gradients(tape, objective, variables, self.optimizer)
        if self.weighting.needs_task_gradients:
            self.weighting.update(tape, losses)
        del tape
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return total, tf.stack(losses)

    def train_step(self, batches, active: tuple[bool, ...] | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """One step; `batches` is a tuple of `(x, y)` per task (distributed when there are replicas).

        Args:
            batches: one batch per task, in `names` order (None for an inactive task).
            active: which tasks train (task-wise early stopping): an inactive task's loss is 0 in the sum and
                its own variables are not updated. None: every task (one trace per distinct tuple).

        Returns:
            `(total, losses)`: the combined loss (scalar) and the per-task mean losses `(n_tasks,)` (0 for an
            inactive task).
        """
        if active is None:
            return self._train(tuple(batches))
        active = tuple(bool(on) for on in active)
        if self.dist_strategy.num_replicas_in_sync == 1:
            batches = tuple(batch for batch, on in zip(batches, active, strict=True) if on)
        return self._train_some(active)(tuple(batches))
