"""The U-Net reference builder: shapes, skip connections, options and errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from urep.models import unet


def test_unet_output_shape_and_skip_connections():
    model = unet((32, 32, 1), filters=(4, 8), name="u")
    out = np.asarray(model(np.zeros((2, 32, 32, 1), np.float32), training=False))
    assert out.shape == (2, 32, 32, 1) and np.all((out >= 0) & (out <= 1))
    for level, size in ((0, 32), (1, 16)):
        skip = model.get_layer(f"dec{level}_skip")
        assert isinstance(skip, keras.layers.Concatenate)
        sources = {t._keras_history.operation.name for t in skip.input}
        assert f"enc{level}_act1" in sources  # the encoder level of the same resolution
        assert tuple(skip.output.shape[1:3]) == (size, size)
    assert model.get_layer("bottleneck_conv0").filters == 16  # twice the last encoder width


def test_unet_options_change_the_network():
    plain = unet((16, 16, 1), filters=(4,), batch_norm=False, upsampling="bilinear", convs_per_level=1,
                 dropout=0.2, output_channels=2)
    names = [layer.name for layer in plain.layers]
    assert not any("bn" in n for n in names) and "bottleneck_dropout" in names
    assert isinstance(plain.get_layer("dec0_up"), keras.layers.UpSampling2D)
    assert plain.output.shape[-1] == 2
    assert unet((16, 16, 1), filters=(4,)).count_params() > plain.count_params()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"input_shape": (30, 32, 1)}, "divisible by 2 \\*\\* len\\(filters\\) = 4"),
    ({"upsampling": "nearest"}, "upsampling must be 'transpose' or 'bilinear'"),
    ({"dropout": 1.0}, "dropout must be in \\[0, 1\\)"),
    ({"filters": ()}, "filters must be a non-empty sequence"),
])
def test_unet_rejects_bad_arguments(kwargs, message):
    kwargs = {"input_shape": (32, 32, 1), "filters": (4, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        unet(**kwargs)
