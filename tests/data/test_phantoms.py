"""Phantoms: determinism by seed, sizes, masks, label balance, Doppler envelope geometry, manifest."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from urep.data import datasets
from urep.data.phantoms import (
    CXR_LABELS,
    DOPPLER_FLOWS,
    make_cxr_phantoms,
    make_doppler_phantoms,
    render_cxr,
    render_cxr_view,
    render_doppler,
    render_doppler_image,
    sample_cxr_anatomy,
    sample_doppler_patient,
    write_sample_grids,
)


def _folder_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("size", [32, 64])
def test_render_cxr_shapes_ranges_and_masks(size):
    for label in CXR_LABELS:
        view = render_cxr_view(
            sample_cxr_anatomy(np.random.default_rng(3), label), size, np.random.default_rng(4)
        )
        assert view.image.shape == (size, size) and view.image.dtype == np.float32
        assert 0.0 <= view.image.min() and view.image.max() <= 1.0
        for mask in (view.lung_mask, view.lesion_mask, view.body_mask):
            assert mask.shape == (size, size) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1}
        lung = view.lung_mask.astype(bool)
        assert 0.12 < lung.mean() < 0.5, f"lung fields cover {lung.mean():.2f} of a {label} image"
        assert not (lung & ~view.body_mask.astype(bool)).any(), "lung pixels outside the body"
        assert not (view.lesion_mask.astype(bool) & ~lung).any(), "lesion pixels outside the lungs"
        assert view.lesion_mask.any() == (label != "normal")
        # two separate lung fields, left and right of the midline
        count, _ = cv2.connectedComponents(view.lung_mask)
        assert count - 1 == 2
        # air in the lungs is darker than the soft tissue of the body around them
        tissue = view.body_mask.astype(bool) & ~lung
        assert view.image[lung].mean() < view.image[tissue].mean() - 0.05


def test_cxr_lesions_raise_density_where_the_lesion_mask_says():
    anatomy = sample_cxr_anatomy(np.random.default_rng(11), "bacterial")
    sick = render_cxr_view(anatomy, 64, np.random.default_rng(5), pose=False)
    anatomy.lesions = {}
    healthy = render_cxr_view(anatomy, 64, np.random.default_rng(5), pose=False)
    lesion = sick.lesion_mask.astype(bool)
    assert lesion.sum() > 10
    assert (sick.image - healthy.image)[lesion].mean() > 0.05
    near = cv2.dilate(sick.lesion_mask, np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(sick.image - healthy.image)[~near].max() < 0.01, "the finding changed pixels far from it"


def test_render_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="unknown CXR phantom label 'covid'"):
        render_cxr(np.random.default_rng(0), 64, "covid")
    with pytest.raises(ValueError, match="size must be an integer from 32 to 512, got 16"):
        render_cxr(np.random.default_rng(0), 16, "normal")
    with pytest.raises(ValueError, match="unknown Doppler flow 'AV'"):
        render_doppler(np.random.default_rng(0), 64, "AV", "good")
    with pytest.raises(ValueError, match="unknown Doppler quality 'ok'"):
        render_doppler(np.random.default_rng(0), 64, "MV", "ok")


def test_render_is_deterministic_by_rng():
    a = render_cxr(np.random.default_rng(7), 32, "viral")
    b = render_cxr(np.random.default_rng(7), 32, "viral")
    c = render_cxr(np.random.default_rng(8), 32, "viral")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    d = render_doppler(np.random.default_rng(7), 32, "TR", "low")
    e = render_doppler(np.random.default_rng(7), 32, "TR", "low")
    assert np.array_equal(d[0], e[0]) and np.array_equal(d[1], e[1])


@pytest.mark.parametrize("flow", DOPPLER_FLOWS)
def test_doppler_envelope_mask_lies_on_the_flow_side_of_the_baseline(flow):
    for i in range(4):
        rng = np.random.default_rng(100 + i)
        result = render_doppler_image(sample_doppler_patient(rng), 64, flow, "good", rng)
        mask = result.envelope_mask.astype(bool)
        rows = np.nonzero(mask.any(axis=1))[0]
        base = result.baseline_row
        above, below = mask[:base].sum(), mask[base + 1 :].sum()
        assert set(np.unique(result.envelope_mask)) <= {0, 1}
        if flow == "MV":
            assert above > 20 and below == 0
        elif flow == "TR":
            assert below > 20 and above == 0
        else:
            assert above > 5 and below > 5
        # the mask touches the baseline: it is the region between the baseline and the envelope
        assert rows.min() <= base + 1 and rows.max() >= base - 1
        # the spectrum is bright inside the envelope and dark in the display outside it
        assert result.image[mask].mean() > 3 * result.image[~mask][-(64 * 20) :].mean()


def test_doppler_low_quality_records_its_problems():
    problems = set()
    for i in range(12):
        rng = np.random.default_rng(i)
        result = render_doppler_image(sample_doppler_patient(rng), 32, "MV", "low", rng)
        assert 1 <= len(result.problems) <= 3
        problems.update(result.problems)
        good = render_doppler_image(sample_doppler_patient(rng), 32, "MV", "good", rng)
        assert good.problems == ()
    assert len(problems) >= 4


def test_make_cxr_phantoms_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kwargs = dict(n_patients=4, views_per_patient=2, size=32)
    a = make_cxr_phantoms(tmp_path / "a", seed=1, **kwargs)
    b = make_cxr_phantoms(tmp_path / "b", seed=1, **kwargs)
    c = make_cxr_phantoms(tmp_path / "c", seed=2, **kwargs)
    files_a, files_b, files_c = _folder_bytes(a), _folder_bytes(b), _folder_bytes(c)
    assert len(files_a) == 8 * 3 + 1
    assert files_a == files_b
    assert files_a["images/cxr0000_v0.png"] != files_c["images/cxr0000_v0.png"]


def test_make_cxr_phantoms_layout_manifest_and_balance(tmp_path):
    root = make_cxr_phantoms(tmp_path / "cxr", n_patients=8, views_per_patient=3, size=64, seed=0)
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["file", "mask", "lesion", "label", "patient", "view", "lesion_fraction"]
    assert len(manifest) == 24
    assert manifest.groupby("patient")["label"].nunique().max() == 1, "a patient has one finding"
    assert manifest.groupby("patient").size().tolist() == [3] * 8
    assert manifest.drop_duplicates("patient")["label"].value_counts().to_dict() == dict.fromkeys(
        CXR_LABELS, 2
    )
    for row in manifest.itertuples():
        image = cv2.imread(str(root / "images" / row.file), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(root / "masks" / row.mask), cv2.IMREAD_UNCHANGED)
        lesion = cv2.imread(str(root / "lesions" / row.lesion), cv2.IMREAD_UNCHANGED)
        assert image.shape == mask.shape == lesion.shape == (64, 64) and image.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and set(np.unique(lesion)) <= {0, 255}
        assert (row.label == "normal") == (row.lesion_fraction == 0)
    # the folder adapter reads it back as the standard table
    table = datasets.folder(root, require_masks=True)
    assert len(table) == 24 and table["has_mask"].all()
    assert set(table["label"]) == set(CXR_LABELS)


def test_make_phantoms_validates_arguments_and_refuses_to_overwrite(tmp_path):
    with pytest.raises(ValueError, match="labels must be distinct values"):
        make_cxr_phantoms(tmp_path / "x", n_patients=2, labels=("normal", "tb"))
    with pytest.raises(ValueError, match="n_patients must be a positive integer, got 0"):
        make_cxr_phantoms(tmp_path / "x", n_patients=0)
    make_cxr_phantoms(
        tmp_path / "x", n_patients=2, views_per_patient=1, size=32, labels=("normal", "abnormal")
    )
    with pytest.raises(FileExistsError, match="already holds a data set"):
        make_cxr_phantoms(tmp_path / "x", n_patients=1, views_per_patient=1, size=32)
    root = make_cxr_phantoms(tmp_path / "x", n_patients=1, views_per_patient=1, size=32, overwrite=True)
    assert len(list((root / "images").iterdir())) == 1


def test_make_doppler_phantoms_manifest_balance_and_determinism(tmp_path):
    root = make_doppler_phantoms(tmp_path / "d", n_patients=4, images_per_patient=6, size=32, seed=3)
    again = make_doppler_phantoms(tmp_path / "e", n_patients=4, images_per_patient=6, size=32, seed=3)
    other = make_doppler_phantoms(tmp_path / "f", n_patients=4, images_per_patient=6, size=32, seed=4)
    assert _folder_bytes(root) == _folder_bytes(again)
    assert _folder_bytes(root)["images/dop0000_00.png"] != _folder_bytes(other)["images/dop0000_00.png"]
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    assert list(manifest.columns) == ["file", "mask", "label", "flow", "quality", "patient", "problems"]
    assert (manifest["label"] == manifest["flow"]).all()
    assert manifest.groupby(["flow", "quality"]).size().tolist() == [4] * 6
    assert ((manifest["quality"] == "good") == (manifest["problems"] == "")).all()
    for row in manifest.itertuples():
        mask = cv2.imread(str(root / "masks" / row.mask), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(mask)) == {0, 255}
    partial = make_doppler_phantoms(
        tmp_path / "g", n_patients=3, images_per_patient=4, size=32, quality_labeled_fraction=0.25
    )
    qualities = pd.read_csv(partial / "manifest.csv", keep_default_na=False)["quality"]
    assert (qualities != "").sum() == 3


def test_write_sample_grids_writes_pngs(tmp_path):
    paths = write_sample_grids(tmp_path / "grids", size=32, seed=0, per_row=2)
    assert [p.name for p in paths] == ["cxr_phantoms.png", "doppler_phantoms.png"]
    for path in paths:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 200
    assert not list((tmp_path / "grids").glob(".*"))
