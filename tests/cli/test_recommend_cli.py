"""`urep recommend` on a run directory built by hand with two tiny heads whose answers are known."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from urep.cli import main

SIZE = 16


def _brightness_head(name: str, weights: list[float], biases: list[float]):
    """conv (identity) -> ReLU `encoder_out` -> GAP -> Dense softmax: logits = weights * m + biases, where m
    is the mean positive part of the normalised image (0 for a black image, 0.5 for a white one)."""
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 1))
    conv = layers.Conv2D(1, 3, padding="same", name="enc_conv")
    x = layers.ReLU(name="encoder_out")(conv(inputs))
    dense = layers.Dense(len(weights), activation="softmax", name=f"{name}_softmax")
    model = keras.Model(inputs, dense(layers.GlobalAveragePooling2D()(x)), name=name)
    kernel = np.zeros((3, 3, 1, 1), np.float32)
    kernel[1, 1] = 1.0
    conv.set_weights([kernel, np.zeros(1, np.float32)])
    dense.set_weights([np.array([weights], np.float32), np.array(biases, np.float32)])
    return model


def build_run_dir(root, recommendation=None, flow="flow", quality="quality"):
    """Flow head: black -> MV, white -> TR. Quality head (classes good, low): black -> good, white -> low."""
    from urep.data import MeanNormalizer
    from urep.explain import TaskEntry, save_run_models

    normalizer = MeanNormalizer().fit(np.full((1, 4, 4), 0.5, np.float32))
    models = {
        flow: _brightness_head(flow, [-10.0, 0.0, 10.0], [1.0, 0.5, -1.0]),
        quality: _brightness_head(quality, [-10.0, 10.0], [1.0, -1.0]),
    }
    entries = {
        flow: TaskEntry(flow, f"models/joint/{flow}.keras", "classification", (SIZE, SIZE), 1, ("MV", "MA", "TR")),
        quality: TaskEntry(quality, f"models/joint/{quality}.keras", "classification", (SIZE, SIZE), 1,
                           ("good", "low")),
    }
    save_run_models(root, models, entries, normalizer, recommendation)
    return root


def write_png(path, value: int):
    cv2.imwrite(str(path), np.full((24, 20), value, np.uint8))
    return path


def write_dicom(path, value: int):
    """A tiny 12-bit MONOCHROME2 DICOM filled with `value` (0..4095)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = 20, 20
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.full((20, 20), value, np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return {
        "black": write_png(folder / "black.png", 0),
        "white": write_png(folder / "white.png", 255),
        "white_dicom": write_dicom(folder / "white.dcm", 4095),
    }


def test_paper_default_excludes_low_quality_tr(tmp_path, images, capsys):
    run = build_run_dir(tmp_path / "run")
    out = tmp_path / "decisions.json"
    code = main(["recommend", str(run), str(images["black"]), str(images["white"]), str(images["white_dicom"]),
                 "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "black.png  flow MV" in printed and "-> usable: no rule matched" in printed
    record = json.loads(out.read_text())
    assert [d["decision"] for d in record["decisions"]] == ["usable", "exclude", "exclude"]
    assert [(d["flow"], d["quality"]) for d in record["decisions"]] == [("MV", "good"), ("TR", "low"), ("TR", "low")]
    assert record["decisions"][2]["image"].endswith("white.dcm")
    assert record["rules_source"].startswith("paper default")


def _decide(run, image, out, *extra):
    assert main(["recommend", str(run), str(image), "--json", str(out), *extra]) == 0
    return [(d["flow"], d["quality"], d["decision"]) for d in json.loads(out.read_text())["decisions"]]


def test_default_tasks_are_the_experiment_configs_names(tmp_path, images, capsys):
    """Runs of `doppler_heterogeneous_phantom.yaml` name the heads flow_classification / quality_assessment."""
    import yaml

    from urep.experiments.config import load_config

    config = load_config("doppler_heterogeneous_phantom")
    names = (config.recommendation.flow_task, config.recommendation.quality_task)
    assert names == ("flow_classification", "quality_assessment")
    run = build_run_dir(tmp_path / "run", flow=names[0], quality=names[1])
    assert _decide(run, images["white"], tmp_path / "d.json") == [("TR", "low", "exclude")]

    # a run's config.yaml names other heads: those are the defaults
    custom = build_run_dir(tmp_path / "custom", flow="flow_type", quality="image_quality")
    (custom / "config.yaml").write_text(yaml.safe_dump(
        {"name": "x", "recommendation": {"enabled": True, "flow_task": "flow_type", "quality_task": "image_quality"}}))
    assert _decide(custom, images["black"], tmp_path / "d.json") == [("MV", "good", "usable")]
    capsys.readouterr()

    unnamed = build_run_dir(tmp_path / "unnamed", flow="head_a", quality="head_b")
    with pytest.raises(SystemExit, match="no flow task .*name it with --flow-task"):
        main(["recommend", str(unnamed), str(images["black"])])


def test_threshold_and_rules_from_manifest_and_file(tmp_path, images, capsys):
    table = {"rules": [{"flow": "MV", "quality": "*", "decision": "exclude", "reason": "MV not measured here"}]}
    run = build_run_dir(tmp_path / "run", recommendation=table)
    out = tmp_path / "d.json"
    assert main(["recommend", str(run), str(images["black"]), str(images["white"]), "--json", str(out)]) == 0
    decisions = json.loads(out.read_text())["decisions"]
    assert [d["decision"] for d in decisions] == ["exclude", "usable"]
    assert decisions[0]["reason"] == "MV not measured here"

    # black: softmax([1, 0.5, -1])[0] = e / (e + e^0.5 + e^-1) = 0.574; softmax([1, -1])[0] = 0.881
    assert main(["recommend", str(run), str(images["black"]), "--threshold", "0.9", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["decisions"][0]["reason"] == (
        "uncertain: flow probability 0.574 and quality probability 0.881 < 0.9"
    )

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("rules:\n  - {flow: TR, quality: low, decision: usable, reason: keep all}\ndefault: exclude\n")
    assert main(["recommend", str(run), str(images["white"]), "--rules", str(rules_file), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["decisions"][0]["reason"] == "keep all"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--flow-task", "flow_type"], "no task 'flow_type'"),
        (["--threshold", "2"], "threshold must be a number in \\(0, 1\\]"),
    ],
)
def test_errors_exit_with_message(tmp_path, images, extra, message):
    run = build_run_dir(tmp_path / "run")
    with pytest.raises(SystemExit, match=message):
        main(["recommend", str(run), str(images["black"]), *extra])


def test_missing_image_and_bad_rules_file(tmp_path, images):
    run = build_run_dir(tmp_path / "run")
    with pytest.raises(SystemExit, match="nope.png"):
        main(["recommend", str(run), str(tmp_path / "nope.png")])
    bad = tmp_path / "rules.json"
    bad.write_text('{"rules": [{"flow": "TR", "quality": "poor", "decision": "exclude"}]}')
    with pytest.raises(SystemExit, match="quality class\\(es\\) \\['poor'\\] unknown"):
        main(["recommend", str(run), str(images["black"]), "--rules", str(bad)])
