"""Grad-CAM on the real urep assembly: a truncated CDAE encoder shared by heads, task and fused models."""

from __future__ import annotations

import importlib

import keras
import numpy as np
import pytest

from urep.models.assembly import MultiTaskModel
from urep.models.cdae import cdae
from urep.models.dilated_cnn import dilated_cnn
from urep.models.truncation import truncate

gc = importlib.import_module("urep.explain.gradcam")


@pytest.fixture(scope="module")
def cxr_assembly():
    """U-Rep 1 shape at 32x32: CDAE truncated at `encoder_out`, a classification and a segmentation head."""
    source = cdae((32, 32, 1), filters=(4, 4, 4, 4))
    assembly = MultiTaskModel(truncate(source, "encoder_out"), name="cxr")
    assembly.add_classification_head("abnormal", n_classes=2, dense_units=8)
    assembly.add_segmentation_head("lungs", autoencoder=source)
    return assembly


def test_task_model_and_fused_model_agree(cxr_assembly):
    images = np.random.default_rng(0).random((3, 32, 32, 1)).astype(np.float32)
    task = gc.gradcam(cxr_assembly.task_model("abnormal"), images, class_index=1)
    fused = gc.gradcam(cxr_assembly.fused_model(), images, class_index=1, task="abnormal")
    assert task.shape == (3, 32, 32)
    np.testing.assert_allclose(fused, task, atol=1e-5)
    with pytest.raises(ValueError, match="not \\(batch, classes\\)"):
        gc.gradcam(cxr_assembly.fused_model(), images, task="lungs")


def test_head_wrapped_as_nested_model_and_saved_round_trip(cxr_assembly, tmp_path):
    images = np.random.default_rng(1).random((2, 32, 32, 1)).astype(np.float32)
    head = cxr_assembly.task_model("abnormal")
    expected = gc.gradcam(head, images, method="gradcam++")
    inputs = keras.Input((32, 32, 1))
    wrapper = keras.Model(inputs, head(inputs), name="wrapped")  # the head as a layer of another model
    np.testing.assert_allclose(gc.gradcam(wrapper, images, method="gradcam++"), expected, atol=1e-5)
    head.save(tmp_path / "abnormal.keras")
    loaded = keras.saving.load_model(tmp_path / "abnormal.keras", compile=False)
    np.testing.assert_allclose(gc.gradcam(loaded, images, method="gradcam++"), expected, atol=1e-5)


def test_doppler_backbone_with_three_channels():
    """U-Rep 2 shape: the dilated CNN (3-channel input) itself as the flow classifier."""
    model = dilated_cnn((32, 32, 3), filters=(2, 2, 4, 4, 4, 4), dense_units=4, n_classes=3)
    images = np.random.default_rng(2).random((2, 32, 32, 3)).astype(np.float32)
    cams = gc.gradcam(model, images, method="scorecam", scorecam_max_n=2)
    assert cams.shape == (2, 32, 32) and np.all((cams >= 0) & (cams <= 1))
