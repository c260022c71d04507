"""Run an experiment under `tf.distribute` (the config's `distribution`) and the GPU profile.

`distribution_for(config)` builds the `tf.distribute.Strategy` of a `DistributionConfig` (None for the
default single device); `placement(...)` says where this process writes: the chief (or a single process)
writes the run directory, every other worker of a `multi_worker` cluster writes a scratch run directory that
`run_distributed` deletes after success and keeps after a failure (a restarted worker resumes from it).
`apply_profile(config, "gpu")` turns on what pays on a GPU. Layout, launch recipes and what was tested:
docs/scale.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from urep.env import cpu_model, native_bfloat16
from urep.experiments.config import MULTIMIX_EXPERIMENTS, DistributionConfig, ExperimentConfig

logger = logging.getLogger(__name__)

__all__ = ["PROFILES", "Placement", "apply_profile", "distribution_for", "placement", "run_distributed",
           "worker_role"]

#: Profiles of `urep run --profile` / `urep bench --profile`. `cpu` keeps the config as written; `gpu`
#: XLA-compiles every training phase, trains in `mixed_float16` (loss scaling; outputs stay float32),
#: multiplies every batch by `batch_multiplier` and prefetches batches to the GPU. `cpu-bf16` trains in
#: `mixed_bfloat16` with XLA off, batches unchanged: on a CPU with bfloat16 hardware (AVX512-BF16 / AMX, e.g.
#: Intel Sapphire Rapids) oneDNN's bfloat16 convolutions trained the CDAE 1.5x (128x128) and 2.2x (256x256)
#: faster than float32 with XLA, while XLA's CPU backend is slower in bfloat16 than in float32; on CPUs
#: without it bfloat16 is emulated and slower (docs/scale.md). In `multimix` / `urep_vs_multimix` experiments
#: a profile sets the precision of every model and XLA of U-Rep's phases but keeps every batch (the
#: comparison trains both methods on the papers' batches); MultiMix's XLA stays `multimix.options.jit_compile`.
PROFILES = {
    "cpu": {},
    "cpu-bf16": {"jit_compile": False, "mixed_precision": "mixed_bfloat16", "batch_multiplier": 1,
                 "prefetch_to_device": False},
    "gpu": {"jit_compile": True, "mixed_precision": "mixed_float16", "batch_multiplier": 4,
            "prefetch_to_device": True},
}

_CPU_DEVICE = re.compile(r"^/?(?:device:)?cpu:(\d+)$", re.IGNORECASE)


def apply_profile(config: ExperimentConfig, profile: str, batch_multiplier: int | None = None,
                  scale_learning_rate: bool = False, deterministic: bool | None = None) -> ExperimentConfig:
    """A copy of `config` with the settings of a profile (see `PROFILES`).

    Args:
        config: the experiment.
        profile: `cpu` (unchanged), `cpu-bf16` or `gpu`.
        batch_multiplier: every training phase's (global) batch is multiplied by this (default: the
            profile's, 4 for `gpu`; 1 keeps the batches).
        scale_learning_rate: multiply the learning rates by the same factor (the linear scaling rule,
            Goyal et al. 2017); off by default: the papers' learning rates stay as written.
        deterministic: set `config.deterministic` (TensorFlow's deterministic ops); None keeps it.

    Returns:
        The new config (`config.path` kept).

    Raises:
        ValueError: unknown profile or a multiplier below 1.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    settings = PROFILES[profile]
    multimix = config.experiment in MULTIMIX_EXPERIMENTS
    if multimix and settings and ((batch_multiplier or 1) != 1 or scale_learning_rate):
        raise ValueError(f"profile {profile!r}: experiment {config.experiment!r} keeps the papers' batches "
                         "(MultiMix: 10 per stream) so both methods see the same data; no batch_multiplier or "
                         "scale_learning_rate")
    # MultiMix experiments: the profile's precision and XLA, not its batches (see PROFILES)
    default_factor = 1 if multimix else settings.get("batch_multiplier", 1)
    factor = default_factor if batch_multiplier is None else batch_multiplier
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"batch_multiplier must be an integer >= 1, got {factor!r}")
    changes: dict = {}
    if deterministic is not None:
        changes["deterministic"] = deterministic
    if settings:
        def phase(train):
            lr = train.learning_rate * factor if scale_learning_rate else train.learning_rate
            return dataclasses.replace(train, jit_compile=settings["jit_compile"],
                                       batch_size=train.batch_size * factor, learning_rate=lr)

        training = config.training
        changes["training"] = dataclasses.replace(training, source=phase(training.source),
                                                  heads=phase(training.heads), baseline=phase(training.baseline))
        if scale_learning_rate:
            changes["tasks"] = tuple(dataclasses.replace(t, learning_rate=t.learning_rate * factor)
                                     if t.learning_rate else t for t in config.tasks)
        changes["mixed_precision"] = settings["mixed_precision"]
        changes["distribution"] = dataclasses.replace(config.distribution,
                                                      prefetch_to_device=settings["prefetch_to_device"])
    elif scale_learning_rate or (batch_multiplier or 1) != 1:
        raise ValueError(f"profile {profile!r} changes no batch; batch_multiplier/scale_learning_rate need `gpu`")
    new = dataclasses.replace(config, **changes)
    object.__setattr__(new, "path", config.path)
    return new


def _logical_cpus(devices: tuple[str, ...]) -> int:
    """How many CPU devices `devices` needs (0 when it names none)."""
    indices = [int(m.group(1)) for d in devices if (m := _CPU_DEVICE.match(d.strip()))]
    return max(indices) + 1 if indices else 0


def distribution_for(dist: DistributionConfig):
    """The `tf.distribute.Strategy` of `dist`, or None for the default strategy.

    Call it before any other TensorFlow work of the process: logical CPU devices and the collective ops of
    `MultiWorkerMirroredStrategy` can only be set up before TensorFlow initialises its devices.

    Raises:
        RuntimeError: logical CPU devices were asked for after TensorFlow initialised.
        ValueError: `multi_worker` without a `TF_CONFIG` cluster.
    """
    import tensorflow as tf

    if dist.kind == "multi_worker":
        role = worker_role()
        if role is None:
            raise ValueError("distribution.kind multi_worker needs the TF_CONFIG environment variable "
                             "(a cluster spec and this process's task); see docs/scale.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if dist.kind == "mirrored":
        n_cpus = _logical_cpus(dist.devices)
        if n_cpus > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n_cpus)
            except RuntimeError as error:
                raise RuntimeError(f"distribution.devices {list(dist.devices)} needs {n_cpus} logical CPU devices, "
                                   "which must be set before TensorFlow initialises; run in a fresh process "
                                   "(`urep run`)") from error
        return tf.distribute.MirroredStrategy(devices=list(dist.devices) or None)
    return None


def prefetch_device(dist: DistributionConfig, dist_strategy) -> str | None:
    """The device single-replica batches are prefetched to: the first GPU with `prefetch_to_device`, else None."""
    if not dist.prefetch_to_device or dist_strategy is not None:
        return None
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        logger.info("prefetch_to_device: no GPU visible, batches stay on the CPU")
        return None
    return gpus[0].name


def worker_role() -> tuple[str, int, bool] | None:
    """`(task type, task index, is chief)` from `TF_CONFIG`, or None when it names no cluster.

    The chief is the `chief` task, or worker 0 in a cluster without one (TensorFlow's convention).

    Raises:
        ValueError: `TF_CONFIG` is not JSON or lacks `cluster`/`task`.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        kind, index = str(task["type"]), int(task["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster spec with `cluster` and `task: {{type, index}}`: {error}; "
                         f"got {raw[:200]!r}") from error
    if not cluster:
        return None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return kind, index, chief


@dataclass(frozen=True)
class Placement:
    """Where this process writes.

    Attributes:
        run_dir: the run directory it writes (the requested one for the chief, a scratch folder otherwise).
        chief: it writes the run directory the user asked for.
        role: `"chief"`, `"worker 1"`, ... (`"single"` without a cluster).
    """

    run_dir: Path
    chief: bool
    role: str


def placement(dist: DistributionConfig, out_dir: str | os.PathLike) -> Placement:
    """Where this process writes under `dist`: the chief writes `out_dir`, other workers a scratch folder
    named after `out_dir` and their task (the same after a restart, so that a restarted worker resumes)."""
    role = worker_role() if dist.kind == "multi_worker" else None
    if role is None:
        return Placement(Path(out_dir), True, "single")
    kind, index, chief = role
    if chief:
        return Placement(Path(out_dir), True, "chief")
    root = Path(dist.scratch) if dist.scratch else Path(tempfile.gettempdir()) / "urep-workers"
    digest = hashlib.sha1(str(Path(out_dir).resolve()).encode()).hexdigest()[:10]
    return Placement(root / f"{Path(out_dir).name}-{digest}" / f"{kind}-{index}", False, f"{kind} {index}")


def describe(dist_strategy) -> dict:
    """What the results record of the distribution: strategy class, replicas, workers."""
    if dist_strategy is None:
        return {"dist_strategy": "default", "replicas": 1, "workers": 1}
    resolver = getattr(dist_strategy, "cluster_resolver", None)
    workers = 1
    if resolver is not None and resolver.cluster_spec().as_dict():
        workers = sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values())
    return {"dist_strategy": type(dist_strategy).__name__, "replicas": dist_strategy.num_replicas_in_sync,
            "workers": workers}


def run_distributed(config: ExperimentConfig, out_dir: str | os.PathLike,
                    run: Callable[[ExperimentConfig, Path, dict], dict]) -> dict:
    """Call `run(config, run_dir, info)` under the config's distribution and mixed-precision policy.

    The strategy is created first (before any TensorFlow work), every model of the run is built inside its
    scope (so the training loops pick it up with `tf.distribute.get_strategy()`), and a non-chief worker's
    run directory is a scratch folder, deleted when the run succeeds.

    `info` describes the distribution (kind, strategy class, replicas, workers, this process's role) for
    the results.

    Returns:
        `run`'s results.
    """
    import contextlib

    from urep.training.distribute import mixed_precision_scope, prefetch_to

    dist = config.distribution
    where = placement(dist, out_dir)
    dist_strategy = distribution_for(dist)
    info = {"kind": dist.kind, **describe(dist_strategy), "role": where.role}
    if dist_strategy is not None:
        logger.info("distribution: %s, %d replica(s), %s; this process is the %s, writing %s", info["dist_strategy"],
                    info["replicas"], f"{info['workers']} worker(s)", where.role, where.run_dir)
    scope = dist_strategy.scope() if dist_strategy is not None else contextlib.nullcontext()
    device = prefetch_device(dist, dist_strategy)
    _advise_precision(config)
    with scope, mixed_precision_scope(config.mixed_precision), prefetch_to(device):
        results = run(config, where.run_dir, info)
    if not where.chief:
        shutil.rmtree(where.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            where.run_dir.parent.rmdir()  # the run's scratch folder, once every worker has left it
        logger.info("worker scratch %s deleted; the chief wrote the results", where.run_dir)
    return results


def _advise_precision(config: ExperimentConfig) -> None:
    """Warn where a CPU-only run asks for bfloat16 in a way measured to be slow (docs/scale.md)."""
    import tensorflow as tf

    if config.mixed_precision != "mixed_bfloat16" or tf.config.list_physical_devices("GPU"):
        return
    if not native_bfloat16():
        logger.warning("mixed_bfloat16 on a CPU without bfloat16 hardware (%s): emulated, usually slower than "
                       "float32", cpu_model())
    xla = [name for name in ("source", "heads", "baseline") if getattr(config.training, name).jit_compile]
    if xla:
        logger.warning("mixed_bfloat16 with XLA on the CPU (training.%s.jit_compile): XLA's CPU backend trained "
                       "bfloat16 slower than float32 here; set jit_compile: false or use --profile cpu-bf16",
                       "/".join(xla))
