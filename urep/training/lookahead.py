"""Lookahead (Zhang, Lucas, Ba and Hinton, NeurIPS 2019) around any Keras 3 optimizer of urep.

The inner optimizer (Adam, RMSprop, SGD) takes the "fast" steps on the model's weights; every `k` steps the
"slow" weights move a fraction `alpha` of the way to the fast ones, and the fast weights restart from them:

    slow <- slow + alpha * (fast - slow);   fast <- slow

The slow weights start as the weights when the optimizer is built (urep builds it eagerly just before a phase
trains, after any weights were inherited or restored). The papers do not mention it; the authors' public
Keras code wraps its separate classifier's Adam in Lookahead with k = 5 and alpha = 0.5 (its segmentation model
trains with plain Adam), so a config can ask for it (`lookahead_steps`, `lookahead_alpha` of
`urep.training.OptimizerConfig`; off by default).

The slow weights are optimizer variables (`optimizer.variables`), so checkpoints and resumed runs carry them. A
step that updates only some variables (task-wise stopping) merges those only. Under the alternating strategy each
task's optimizer keeps its own slow copy of the shared encoder, as Lookahead injected into each task's model
would.

The updates run in cross-replica context through `tf.distribute`'s `extended.update`, one per variable, like
Keras' own optimizer updates, so the wrapper works under a `MirroredStrategy` and inside XLA-compiled steps.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

DEFAULT_STEPS = 5
DEFAULT_ALPHA = 0.5


def check_lookahead(steps: int, alpha: float) -> None:
    """Raise `ValueError` unless `steps` is an integer >= 1 and 0 < `alpha` <= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"lookahead_steps (k) must be an integer >= 1, got {steps!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ValueError(f"lookahead_alpha must be a number in (0, 1], got {alpha!r}")


class _Lookahead:
    """Mixin placed before a Keras optimizer class; see the module docstring."""

    def __init__(self, *args, lookahead_steps: int = DEFAULT_STEPS, lookahead_alpha: float = DEFAULT_ALPHA,
                 **kwargs) -> None:
        check_lookahead(lookahead_steps, lookahead_alpha)
        super().__init__(*args, **kwargs)
        self.lookahead_steps = int(lookahead_steps)
        self.lookahead_alpha = float(lookahead_alpha)

    def build(self, variables) -> None:
        """Create the slow weights as copies of `variables`' current values.

        Raises:
            RuntimeError: called while tracing a `tf.function` (the copy would run at every call): build the
                optimizer eagerly first, as `urep.training.distribute.build_optimizer` does.
        """
        if self.built:
            return
        if tf.inside_function():
            raise RuntimeError(f"{type(self).__name__} must be built eagerly before the training step is traced "
                               "(urep.training.distribute.build_optimizer), not inside a tf.function")
        super().build(variables)
        self._slow_weights = self.add_optimizer_variables(variables, "slow")
        for slow, variable in zip(self._slow_weights, variables, strict=True):
            slow.assign(variable)

    def _backend_apply_gradients(self, grads, trainable_variables) -> None:
        super()._backend_apply_gradients(grads, trainable_variables)
        self._merge(trainable_variables)

    def _merge(self, variables) -> None:
        """After every k-th step: slow += alpha * (fast - slow); fast = slow."""
        slow = [self._slow_weights[self._get_variable_index(v)] for v in variables]
        pairs = [(v.value if isinstance(v, keras.Variable) else v, s.value if isinstance(s, keras.Variable) else s)
                 for v, s in zip(variables, slow, strict=True)]
        alpha = self.lookahead_alpha

        def merged(distribution, pairs):
            step = tf.convert_to_tensor(self.iterations)  # the step being taken, 0-based, before its increment
            due = tf.equal(tf.math.floormod(step + 1, self.lookahead_steps), 0)

            def update(fast, slow_var):
                def merge():
                    value = slow_var + tf.cast(alpha, slow_var.dtype) * (fast - slow_var)
                    slow_var.assign(value)
                    fast.assign(value)

                tf.cond(due, merge, lambda: None)

            for fast, slow_var in pairs:
                distribution.extended.update(fast, update, args=(slow_var,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(merged, self._distribution_strategy, pairs)

    def get_config(self) -> dict:
        return {**super().get_config(), "lookahead_steps": self.lookahead_steps,
                "lookahead_alpha": self.lookahead_alpha}


@functools.cache
def lookahead_class(base: type) -> type:
    """The Lookahead version of the Keras optimizer class `base` (one class per base, made once)."""
    if not (isinstance(base, type) and issubclass(base, keras.optimizers.Optimizer)):
        raise TypeError(f"Lookahead wraps a Keras optimizer class, got {base!r}")
    return type(f"Lookahead{base.__name__}", (_Lookahead, base), {"__module__": __name__})


def with_lookahead(base: type, steps: int = DEFAULT_STEPS, alpha: float = DEFAULT_ALPHA, **kwargs):
    """A new optimizer of class `base` (e.g. `keras.optimizers.Adam`) with Lookahead; `kwargs` go to `base`.

    Raises:
        ValueError: `steps` is not an integer >= 1 or `alpha` is outside (0, 1].
    """
    return lookahead_class(base)(lookahead_steps=steps, lookahead_alpha=alpha, **kwargs)
