"""Grad-CAM family on a model whose discriminative region is known, on flat, nested and multi-output models."""

from __future__ import annotations

import importlib

import cv2
import keras
import numpy as np
import pytest
from scipy import ndimage

# `urep.explain.gradcam` is both a module and the function it exports; take the module.
gc = importlib.import_module("urep.explain.gradcam")


def _near_blob(regions: np.ndarray) -> np.ndarray:
    """The blob grown by 2 px: the encoder_out grid is 16x16, so the upsampled map is ~2 px coarse."""
    return np.stack([ndimage.binary_dilation(r, iterations=2) for r in regions])


def test_trained_model_detects_the_blob(blob_models):
    probs = blob_models.nested.predict(blob_models.data.images, verbose=0)
    assert (probs.argmax(axis=1) == blob_models.data.labels).mean() >= 0.9


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_most_energy_lands_on_the_blob(blob_models, method):
    data = blob_models.data
    positive = data.labels == 1
    cams = gc.gradcam(blob_models.nested, data.images[positive], class_index=1, method=method)
    assert cams.shape == (positive.sum(), 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    energies = [gc.energy_inside(c, r) for c, r in zip(cams, _near_blob(data.regions[positive]), strict=True)]
    # the region is 10x10 of 32x32 (~10% of the image); an untrained network puts ~40% there
    assert np.mean(energies) > 0.7, energies
    assert min(energies) > 0.5, energies


def test_nested_fused_and_flat_models_give_the_same_maps(blob_models):
    images = blob_models.data.images
    flat = gc.gradcam(blob_models.flat, images)
    nested = gc.gradcam(blob_models.nested, images)
    fused = gc.gradcam(blob_models.fused, images, task="blob")
    np.testing.assert_allclose(nested, flat, atol=1e-5)
    np.testing.assert_allclose(fused, flat, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_mixed_precision_model_is_explained_in_float32_with_the_same_maps(blob_models, policy):
    """A head trained under `--profile cpu-bf16` (or gpu): tf-keras-vis's SciPy upsampling refuses bfloat16
    maps, so Grad-CAM runs on a float32 copy with the same weights and gives the float32 model's maps."""
    mixed = keras.models.clone_model(
        blob_models.flat, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": policy}))
    mixed.set_weights(blob_models.flat.get_weights())
    assert mixed.get_layer("encoder_out").compute_dtype == policy.removeprefix("mixed_")
    images = blob_models.data.images
    cams = gc.gradcam(mixed, images, class_index=1)
    assert cams.dtype == np.float32 and cams.shape == (len(images), 32, 32)
    np.testing.assert_allclose(cams, gc.gradcam(blob_models.flat, images, class_index=1), atol=1e-5)
    assert mixed.get_layer("encoder_out").compute_dtype == policy.removeprefix("mixed_")  # caller's model kept


def test_flatten_model_inlines_submodels_and_shares_weights(blob_models):
    flat = gc.flatten_model(blob_models.nested)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    assert flat.get_layer("encoder_out") is blob_models.encoder.get_layer("encoder_out")
    images = blob_models.data.images
    np.testing.assert_allclose(flat.predict(images, verbose=0), blob_models.nested.predict(images, verbose=0), atol=1e-6)


def test_callers_model_is_not_modified(blob_models):
    images = blob_models.data.images[:4]
    before = blob_models.nested.predict(images, verbose=0)
    gc.gradcam(blob_models.nested, images, method="gradcam++")
    assert blob_models.nested.get_layer("cls_softmax").activation is keras.activations.softmax
    np.testing.assert_allclose(blob_models.nested.predict(images, verbose=0), before, atol=1e-6)


def test_class_index_options(blob_models):
    images = blob_models.data.images[:4]
    by_int = gc.gradcam(blob_models.flat, images, class_index=1)
    by_list = gc.gradcam(blob_models.flat, images, class_index=[1, 1, 1, 1])
    np.testing.assert_allclose(by_int, by_list)
    single_channel = gc.gradcam(blob_models.flat, images[..., 0], class_index=1)
    np.testing.assert_allclose(single_channel, by_int)
    with pytest.raises(ValueError, match="outside"):
        gc.gradcam(blob_models.flat, images, class_index=2)
    with pytest.raises(ValueError, match="3 entries for 4 images"):
        gc.gradcam(blob_models.flat, images, class_index=[0, 1, 1])


def test_errors_name_the_problem(blob_models):
    images = blob_models.data.images[:2]
    with pytest.raises(ValueError, match="no layer named 'conv_last'"):
        gc.gradcam(blob_models.flat, images, layer_name="conv_last")
    with pytest.raises(ValueError, match="pass task="):
        gc.gradcam(blob_models.fused, images)
    with pytest.raises(ValueError, match="no output 'flow'"):
        gc.gradcam(blob_models.fused, images, task="flow")
    with pytest.raises(ValueError, match="not \\(batch, classes\\)"):
        gc.gradcam(blob_models.fused, images, task="recon")
    with pytest.raises(ValueError, match="method must be one of"):
        gc.gradcam(blob_models.flat, images, method="lime")
    with pytest.raises(ValueError, match="model expects"):
        gc.gradcam(blob_models.flat, np.zeros((1, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="Grad-CAM needs"):
        gc.gradcam(blob_models.flat, images, layer_name="cls_dense")


def test_predict_probabilities_selects_task(blob_models):
    images = blob_models.data.images[:3]
    np.testing.assert_allclose(
        gc.predict_probabilities(blob_models.fused, images, task="blob"),
        blob_models.nested.predict(images, verbose=0),
        atol=1e-6,
    )


# --------------------------------------------------------------------------------------------------------
# Overlays and energy (no model needed)
# --------------------------------------------------------------------------------------------------------


def test_energy_inside_by_hand():
    heat = np.array([[1.0, 3.0], [0.0, 0.0]])
    assert gc.energy_inside(heat, np.array([[0, 1], [0, 0]])) == pytest.approx(0.75)
    assert gc.energy_inside(heat, np.ones((2, 2))) == pytest.approx(1.0)
    assert np.isnan(gc.energy_inside(np.zeros((2, 2)), np.ones((2, 2))))
    with pytest.raises(ValueError, match="same shape"):
        gc.energy_inside(heat, np.ones((3, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        gc.energy_inside(-heat, np.ones((2, 2)))


def test_energy_by_class():
    heat = np.array([[[1.0, 1.0]], [[1.0, 3.0]], [[2.0, 2.0]], [[0.0, 0.0]]])
    masks = np.array([[[1, 0]], [[0, 1]], [[1, 1]], [[1, 1]]])
    result = gc.energy_by_class(heat, masks, [0, 0, 1, 1], class_names=["normal", "abnormal"])
    assert result["normal"]["mean"] == pytest.approx((0.5 + 0.75) / 2)
    assert result["normal"]["std"] == pytest.approx(0.125)
    assert result["abnormal"] == {"mean": 1.0, "std": 0.0, "n": 1, "undefined": 1, "values": [1.0, pytest.approx(np.nan, nan_ok=True)]}
    with pytest.raises(ValueError, match="2 heat maps, 2 masks and 3 labels"):
        gc.energy_by_class(heat[:2], masks[:2], [0, 1, 1])


def test_overlay_blends_and_outlines_mask():
    image = np.full((16, 16), 0.5, np.float32)
    heat = np.zeros((8, 8), np.float32)  # lower resolution: resized to the image
    only_image = gc.overlay(image, heat, alpha=0.0)
    assert only_image.shape == (16, 16, 3) and only_image.dtype == np.uint8
    assert np.all(only_image == 128)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    outlined = gc.overlay(image, heat, mask=mask, alpha=0.0)
    green = np.all(outlined == gc.MASK_COLOUR, axis=-1)
    assert green[4, 4:12].all() and green[11, 4:12].all() and green[4:12, 4].all()
    assert not green[6:10, 6:10].any() and not green[0].any()
    hot = gc.overlay(image, np.ones((16, 16)), alpha=1.0)
    assert tuple(hot[0, 0]) == tuple(cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1])
    with pytest.raises(ValueError, match="alpha"):
        gc.overlay(image, heat, alpha=2.0)


def test_save_overlay_writes_png(tmp_path):
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    heat = np.eye(8, dtype=np.float32)
    path = gc.save_overlay(tmp_path / "sub" / "overlay.png", image, heat, mask=np.eye(8))
    written = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, gc.overlay(image, heat, mask=np.eye(8)))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["overlay.png"]  # no temporary file left
    with pytest.raises(ValueError, match=".png"):
        gc.save_overlay(tmp_path / "overlay.jpg", image, heat)
