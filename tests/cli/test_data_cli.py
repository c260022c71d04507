"""Tests for `urep data check` and `urep data samples`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from urep.cli import main


def make_flat(root: Path, n: int = 4, mask_for: int | None = None) -> Path:
    rows = []
    for i in range(n):
        name = f"im{i}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), np.full((16, 20), 100, np.uint8))
        if mask_for is None or i < mask_for:
            (root / "masks").mkdir(exist_ok=True)
            cv2.imwrite(str(root / "masks" / name), np.full((16, 20), 255, np.uint8))
        rows.append({"file": name, "label": "a" if i % 2 else "b", "patient": f"p{i // 2}", "split": "train"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_check_clean_folder(tmp_path, capsys):
    root = make_flat(tmp_path / "f", mask_for=3)
    assert main(["data", "check", "folder", str(root)]) == 0
    out = capsys.readouterr().out
    assert "folder: 4 images, 2 patients" in out
    assert "  a: 2\n  b: 2" in out and "split: train 4" in out
    assert "masks: 3 found, 1 missing" in out
    assert "image sizes (from all 4 images):\n  16x20: 4" in out
    assert "problems: 0" in out


def test_check_reports_every_problem_and_fails(tmp_path, capsys):
    root = make_flat(tmp_path / "f", n=6)
    (root / "images" / "im1.png").unlink()
    data = (root / "images" / "im2.png").read_bytes()
    (root / "images" / "im2.png").write_bytes(data[:30])
    cv2.imwrite(str(root / "masks" / "im3.png"), np.zeros((8, 8), np.uint8))
    assert main(["data", "check", "folder", str(root), "--sizes", "2"]) == 1
    out = capsys.readouterr().out
    assert "folder: 3 images" in out and "problems: 3" in out
    assert "im1.png: image file not found" in out
    assert "im2.png: unreadable image" in out and "truncated PNG" in out
    assert "im3.png: image is 16x20 but its mask" in out
    assert "from a random sample of 2 of 3 images (seed 0; --sizes 0 for all)" in out


def test_check_require_masks_and_size_check_flags(tmp_path, capsys):
    root = make_flat(tmp_path / "f", mask_for=3)
    assert main(["data", "check", "folder", str(root), "--require-masks"]) == 1
    assert "im3.png: no mask for this image" in capsys.readouterr().out
    cv2.imwrite(str(root / "masks" / "im0.png"), np.zeros((8, 8), np.uint8))
    assert main(["data", "check", "folder", str(root), "--no-check-sizes"]) == 0


def test_check_layout_error_exit_code(tmp_path, capsys):
    assert main(["data", "check", "montgomery", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "montgomery: FAILED" in err and "does not exist; expected MontgomerySet/" in err


def test_check_bad_arguments(tmp_path, capsys):
    assert main(["data", "check", "chexpert", str(tmp_path)]) == 2
    assert "unknown dataset 'chexpert'" in capsys.readouterr().err
    assert main(["data", "check", "montgomery", str(tmp_path), "--manifest", "m.csv"]) == 2
    assert "--manifest does not apply to the 'montgomery' adapter" in capsys.readouterr().err
    assert main(["data"]) == 2


def test_check_manifest_option_for_doppler(tmp_path, capsys):
    root = tmp_path / "d"
    (root / "frames").mkdir(parents=True)
    cv2.imwrite(str(root / "frames" / "a.png"), np.full((8, 8), 50, np.uint8))
    pd.DataFrame([{"image": "frames/a.png", "flow": "MV", "patient": "P1"}]).to_csv(root / "list.csv", index=False)
    assert main(["data", "check", "doppler", str(root), "--manifest", "list.csv"]) == 0
    assert "MV: 1" in capsys.readouterr().out


def test_check_real_montgomery(shared_data, capsys):
    assert main(["data", "check", "montgomery", str(shared_data / "montgomery"), "--require-masks"]) == 0
    out = capsys.readouterr().out
    assert "montgomery: 40 images" in out and "abnormal: 17" in out and "masks: 40 found, 0 missing" in out


def test_samples_calls_phantom_grids(tmp_path, capsys):
    pytest.importorskip("urep.data.phantoms")
    assert main(["data", "samples", "--out", str(tmp_path / "grids"), "--size", "32", "--seed", "1"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split()]
    assert len(written) == 2 and all(path.is_file() and path.suffix == ".png" for path in written)
