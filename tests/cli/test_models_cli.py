"""`urep models summary`: the parameter table next to the papers' numbers."""

from __future__ import annotations

import pytest

from urep.cli import main


def _row(output: str, model: str, what: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(model) and what in line:
            return line.split()
    raise AssertionError(f"no row {model!r} / {what!r} in:\n{output}")


def test_summary_prints_every_builder_next_to_the_paper(capsys):
    assert main(["models", "summary", "--size", "32"]) == 0
    output = capsys.readouterr().out
    assert output.splitlines()[0].split()[:2] == ["model", "what"]
    assert _row(output, "dilated_cnn", "U-Rep 2 source")[-4:] == ["460,115", "-", "460,115", "+0"]
    assert _row(output, "segmentation_head_from_encoder", "U-Rep 2")[-4:] == [
        "786,497",
        "393,089",
        "786,497",
        "+0",
    ]
    assert _row(output, "baseline_classifier", "separate")[-4:] == ["1,573,506", "-", "1,573,506", "+0"]
    assert _row(output, "cdae", "U-Rep 1")[-5:] == ["796,769", "794,977", "-", "800,067", "-3,298"]
    assert _row(output, "classification_head", "U-Rep 2")[-3:] == ["66,563", "295,715", "+164,400"]
    assert _row(output, "super_resolution", "residual")[-5:] == ["185,857", "185,857", "-", "-", "-"]


def test_summary_rejects_a_size_the_cdae_cannot_take():
    with pytest.raises(SystemExit, match="multiple of 16"):
        main(["models", "summary", "--size", "40"])


def test_models_without_an_action_prints_help(capsys):
    assert main(["models"]) == 2
    assert "summary" in capsys.readouterr().out
