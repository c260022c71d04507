"""`urep demo`: both papers' pipelines on freshly generated phantoms, on a CPU, in minutes.

1. CXR U-Rep 1 (`cxr_heterogeneous_phantom`): a CDAE source, lung segmentation and abnormality heads with every
   strategy, the baseline, paired tests, Grad-CAM energy inside the lungs, journal Tables 3-4 beside ours.
2. Doppler U-Rep 2 (`doppler_heterogeneous_phantom`): a dilated CNN source, envelope segmentation, quality
   and flow heads, the recommendation, Grad-CAM, journal Tables 7-8.

Profiles `quick`, `full` and `tiny` (tests): docs/design.md ("Module notes"); times: docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from urep.experiments.config import ExperimentConfig, load_config
from urep.experiments.scale import shrink
from urep.io import atomic_write_json, atomic_write_text, prepare_run_dir

logger = logging.getLogger(__name__)

__all__ = ["PROFILES", "demo_configs", "run_demo"]

#: Profile -> (shrink arguments, Doppler strategies, Doppler baseline). XLA (`jit_compile`) is off in every
#: profile: compiling each of the demo's dozens of small models costs more than their few hundred steps save
#: (the quick demo took 224 s without XLA and 375 s with it on the loaded 2-core CPU).
#: `run_demo(jit_compile=...)` and `urep demo --xla on|off` override it.
PROFILES: dict[str, dict] = {
    "tiny": {"cxr": {"image_size": 32, "patients": 8, "epochs": 1, "steps": 1, "jit_compile": False},
             "doppler": {"image_size": 32, "patients": 6, "epochs": 1, "steps": 1, "jit_compile": False},
             "doppler_strategies": ("independent",), "doppler_baseline": False, "folds": 0},
    "quick": {"cxr": {"image_size": 48, "patients": 32, "epochs": 25, "steps": None, "batch_size": 8,
                      "jit_compile": False},
              "doppler": {"image_size": 32, "patients": 24, "epochs": 25, "steps": None, "batch_size": 8,
                          "jit_compile": False},
              "doppler_strategies": ("independent",), "doppler_baseline": False, "folds": 0},
    "full": {"cxr": {"image_size": 48, "patients": None, "epochs": 30, "steps": None, "batch_size": 8,
                     "jit_compile": False},
             "doppler": {"image_size": 48, "patients": None, "epochs": 30, "steps": None, "batch_size": 8,
                         "jit_compile": False},
             "doppler_strategies": ("independent", "alternating", "joint"), "doppler_baseline": True, "folds": 2},
}


def demo_configs(profile: str = "quick", seed: int = 0, jit_compile: bool | None = None) -> list[ExperimentConfig]:
    """The two experiment configs of the demo for `profile` (`tiny`, `quick` or `full`); `jit_compile`
    overrides the profile's XLA setting.

    Raises:
        ValueError: unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown demo profile {profile!r}; expected one of {sorted(PROFILES)}")
    spec = PROFILES[profile]
    if jit_compile is not None:
        spec = {**spec, "cxr": {**spec["cxr"], "jit_compile": jit_compile},
                "doppler": {**spec["doppler"], "jit_compile": jit_compile}}
    cxr = shrink(load_config("cxr_heterogeneous_phantom"), folds=None, limit=None, **spec["cxr"])
    cxr = dataclasses.replace(cxr, name="demo_cxr_urep1", seed=seed,
                              cross_validation=dataclasses.replace(cxr.cross_validation, folds=spec["folds"]))
    doppler = shrink(load_config("doppler_heterogeneous_phantom"), folds=None, limit=None, **spec["doppler"])
    doppler = dataclasses.replace(
        doppler, name="demo_doppler_urep2", seed=seed, strategies=spec["doppler_strategies"],
        baseline=dataclasses.replace(doppler.baseline, enabled=spec["doppler_baseline"]),
        cross_validation=dataclasses.replace(doppler.cross_validation, folds=spec["folds"]))
    return [cxr, doppler]


def run_demo(out_dir: str | os.PathLike = "urep_demo", profile: str = "quick", overwrite: bool = False,
             seed: int = 0, jit_compile: bool | None = None) -> dict:
    """Run both demo pipelines into `out_dir/cxr` and `out_dir/doppler` and write `out_dir/report.md`.

    Args:
        out_dir: the demo's folder (must be new or empty unless `overwrite`).
        profile: `quick`, `full` or `tiny`.
        overwrite: replace an existing demo folder.
        seed: seed of both experiments.
        jit_compile: XLA-compile the training steps (None: the profile's choice, see `PROFILES`).

    Returns:
        `{"profile", "seconds", "parts": {"cxr": results, "doppler": results}}`.

    Raises:
        urep.io.RunDirExistsError: `out_dir` is not empty and `overwrite` is false.
    """
    from urep.experiments.runner import run_experiment

    root = prepare_run_dir(out_dir, overwrite=overwrite)
    started = time.perf_counter()
    parts = {}
    configs = demo_configs(profile, seed, jit_compile)
    logger.info("urep demo (%s): 2 parts follow, one after the other: 1. CXR U-Rep 1 (%s), 2. Doppler U-Rep 2 "
                "(%s); output in %s", profile, configs[0].name, configs[1].name, root)
    for number, (key, config) in enumerate(zip(("cxr", "doppler"), configs, strict=True), start=1):
        logger.info("demo (%s) part %d of 2: %s", profile, number, config.name)
        parts[key] = run_experiment(config, root / key)
    seconds = time.perf_counter() - started
    summary = {"profile": profile, "seconds": seconds, "parts": list(parts)}
    atomic_write_json(root / "demo.json", summary)
    atomic_write_text(root / "report.md", _index(parts, profile, seconds))
    return {"profile": profile, "seconds": seconds, "parts": parts}


def _index(parts: dict[str, dict], profile: str, seconds: float) -> str:
    from urep.experiments.report import summary_table

    lines = [f"# urep demo ({profile})", "",
             f"Both U-Rep pipelines on generated phantoms in {seconds / 60:.1f} min. Phantom numbers show the "
             "pipeline works; they are not the papers' results (those columns are in each part's tables).", ""]
    for key, results in parts.items():
        lines += [f"## [{results['config']['name']}]({key}/report.md)", "", results["config"]["description"], "",
                  summary_table(results).to_markdown()]
        rec = results.get("recommendation")
        if rec:
            lines.append(f"Recommendation: {rec['usable']} of {rec['n']} test images usable; agreement with the "
                         f"labels' recommendation {rec['agreement']:.2f}.\n")
        energy = (results.get("explain") or {}).get("energy_by_class")
        if energy:
            lines.append("Grad-CAM energy inside the lung mask (untrained model / mask area for reference): "
                         + ", ".join(f"{k} {v['mean']:.2f} ({_fmt(v.get('untrained'))} / "
                                     f"{_fmt(v.get('mask_area'))}, n={v.get('n')})"
                                     for k, v in energy.items() if v.get("mean") is not None) + ".\n")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def demo_report_path(out_dir: str | os.PathLike) -> Path:
    """Where `run_demo` writes its index."""
    return Path(out_dir) / "report.md"
