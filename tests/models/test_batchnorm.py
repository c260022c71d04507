"""`urep.models.set_batchnorm_momentum`: every BatchNormalization layer, nested models included."""

from __future__ import annotations

import keras
import pytest

from urep.models import set_batchnorm_momentum


def _nested_model() -> keras.Model:
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="inner_bn")(inner_in), name="inner")
    outer_in = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization(name="outer_bn")(inner(outer_in))
    return keras.Model(outer_in, x, name="outer")


@pytest.mark.parametrize(("momentum", "expected"), [(0.9, 0.9), (None, 0.99)])
def test_sets_every_layer_including_nested(momentum, expected):
    model = _nested_model()
    assert set_batchnorm_momentum(model, momentum) is model
    assert model.get_layer("outer_bn").momentum == pytest.approx(expected)
    assert model.get_layer("inner").get_layer("inner_bn").momentum == pytest.approx(expected)


def test_pipeline_and_tuner_share_one_function():
    from urep import tuning
    from urep.experiments import pipeline

    assert tuning.hypermodels.set_batchnorm_momentum is set_batchnorm_momentum
    assert not hasattr(pipeline, "set_batchnorm_momentum")
