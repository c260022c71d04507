"""`urep explain` on a run directory built by hand, with a head whose activation map is known exactly."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from urep.cli import main

SIZE = 16


def _bright_region_head():
    """conv (identity kernel) -> ReLU `encoder_out` -> GAP -> Dense softmax over ("dark", "bright").

    With the run's normaliser (mean 0.5) `encoder_out` is positive exactly where the image is brighter than
    0.5, and the "bright" logit grows with it, so the Grad-CAM of "bright" is that region (the feature map
    is at full resolution: no upsampling blur).
    """
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 1))
    conv = layers.Conv2D(1, 3, padding="same", name="enc_conv")
    x = layers.ReLU(name="encoder_out")(conv(inputs))
    dense = layers.Dense(2, activation="softmax", name="cls_softmax")
    model = keras.Model(inputs, dense(layers.GlobalAveragePooling2D(name="cls_gap")(x)), name="abnormal")
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1] = 1.0
    conv.set_weights([kernel, np.zeros(1, np.float32)])
    dense.set_weights([np.array([[-20.0, 20.0]], np.float32), np.array([0.5, -0.5], np.float32)])
    return model


def _segmentation_model():
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 1))
    return keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(inputs), name="lungs")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from urep.data import MeanNormalizer
    from urep.explain import TaskEntry, save_run_models

    root = tmp_path_factory.mktemp("run")
    entries = {
        "abnormal": TaskEntry("abnormal", "models/independent/abnormal.keras", "classification", (SIZE, SIZE), 1,
                              ("dark", "bright"), "independent", "encoder_out"),
        "lungs": TaskEntry("lungs", "models/independent/lungs.keras", "segmentation", (SIZE, SIZE), 1),
    }
    models = {"abnormal": _bright_region_head(), "lungs": _segmentation_model()}
    normalizer = MeanNormalizer().fit(np.full((1, 4, 4), 0.5, np.float32))
    save_run_models(root, models, entries, normalizer)
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A black image with a white 6x6 square at rows/cols 2-7, its mask, and a mask of the other corner."""
    folder = tmp_path_factory.mktemp("images")
    image = np.zeros((SIZE, SIZE), np.uint8)
    image[2:8, 2:8] = 255
    square = (image > 0).astype(np.uint8) * 255
    corner = np.zeros_like(square)
    corner[10:16, 10:16] = 255
    paths = {"image": folder / "case1.png", "square": folder / "case1_mask.png", "corner": folder / "corner.png",
             "black": folder / "black.png"}
    for key, array in (("image", image), ("square", square), ("corner", corner), ("black", np.zeros_like(image))):
        cv2.imwrite(str(paths[key]), array)
    return paths


def test_explain_writes_overlays_and_energy(run_dir, files, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(run_dir), str(files["image"]), str(files["image"]),
                 "--mask", str(files["square"]), str(files["corner"]), "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "explain.json").read_text())
    assert summary["task"] == "abnormal" and summary["layer"] == "encoder_out"
    first, second = summary["images"]
    assert first["predicted"] == "bright" and first["explained_class"] == "bright"
    assert first["energy_inside_mask"] == pytest.approx(1.0, abs=1e-3)  # all the map is on the square
    assert second["energy_inside_mask"] == pytest.approx(0.0, abs=1e-3)  # none of it in the far corner
    assert summary["energy_by_predicted_class"]["bright"]["n"] == 2
    # duplicate stems get an index prefix, so nothing is overwritten
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000_case1_abnormal_gradcam.png", "001_case1_abnormal_gradcam.png", "explain.json"]
    overlay = cv2.imread(str(out / names[0]))
    assert overlay.shape == (SIZE, SIZE, 3)
    green = np.all(overlay == (0, 255, 0), axis=-1)  # BGR of the mask outline
    assert green[2, 2:8].all() and not green[12].any()
    assert "predicted bright" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["gradcam++", "scorecam"])
def test_other_methods_and_default_out_dir(run_dir, files, method):
    assert main(["explain", str(run_dir), str(files["image"]), "--method", method, "--class", "bright"]) == 0
    suffix = method.replace("+", "p")
    written = run_dir / "explain" / "abnormal" / f"case1_abnormal_{suffix}.png"
    assert written.is_file()
    record = json.loads((run_dir / "explain" / "abnormal" / "explain.json").read_text())
    assert record["method"] == method and record["images"][0]["explained_class"] == "bright"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "lungs"], "is a segmentation task"),
        (["--task", "flow"], "no task 'flow'"),
        (["--class", "grey"], "--class 'grey' is not a class"),
        (["--mask", "a.png", "b.png"], "2 masks for 1 images"),
    ],
)
def test_bad_options_exit_with_message(run_dir, files, extra, message):
    with pytest.raises(SystemExit, match=message):
        main(["explain", str(run_dir), str(files["black"]), *extra])


def test_bad_run_dirs_exit_with_message(tmp_path, files):
    with pytest.raises(SystemExit, match="not found"):
        main(["explain", str(tmp_path / "missing"), str(files["black"])])
    bad = tmp_path / "bad"
    (bad / "models").mkdir(parents=True)
    (bad / "models" / "manifest.json").write_text('{"tasks": {"abnormal": {"path": "m.keras", "kind": "classification"}}}')
    with pytest.raises(SystemExit, match="task 'abnormal' lacks 'image_size'"):
        main(["explain", str(bad), str(files["black"])])


def test_mask_of_another_size_is_an_error_unless_resize_mask(run_dir, files, tmp_path, capsys):
    small = tmp_path / "small_mask.png"
    cv2.imwrite(str(small), np.full((SIZE // 2, SIZE // 2), 255, np.uint8))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["explain", str(run_dir), str(files["image"]), "--mask", str(small), "--out", str(out)])
    assert stop.value.code == 2
    assert (f"--mask {small} is {SIZE // 2}x{SIZE // 2} but its image {files['image']} is {SIZE}x{SIZE}; pass "
            "--resize-mask") in str(stop.value)
    assert not out.exists()
    capsys.readouterr()
    assert main(["explain", str(run_dir), str(files["image"]), "--mask", str(small), "--resize-mask",
                 "--out", str(out)]) == 0
    assert json.loads((out / "explain.json").read_text())["images"][0]["energy_inside_mask"] > 0.99


def test_damaged_model_file_is_named_as_damaged(run_dir, files, tmp_path):
    import shutil

    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    model = broken / "models" / "independent" / "abnormal.keras"
    model.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(SystemExit) as stop:
        main(["explain", str(broken), str(files["image"])])
    assert stop.value.code == 2
    assert f"model file {model} is damaged or not a .keras file (not a zip archive; 29 bytes)" in str(stop.value)
    assert "File not found" not in str(stop.value)
