"""`distribution` and `--profile gpu|cpu-bf16` of `urep run`: config, roles, placement, and real distributed runs.

The distributed runs are subprocesses (logical CPU devices and collective ops must be set up before
TensorFlow initialises): MirroredStrategy over two logical CPU devices through `urep run`, and two
MultiWorkerMirroredStrategy workers on loopback ports with `TF_CONFIG`, compared with the single-process
mirrored run of the same global batch. The multi-worker tests start several TensorFlow processes and take
minutes on a loaded 2-core machine: they run only with `UREP_SLOW_TESTS=1`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from urep.experiments.config import ConfigError, load_config
from urep.experiments.distribution import PROFILES, _logical_cpus, apply_profile, placement, worker_role

ROOT = Path(__file__).resolve().parents[2]
SLOW = pytest.mark.skipif(not os.environ.get("UREP_SLOW_TESTS"),
                          reason="starts several TensorFlow processes (minutes); set UREP_SLOW_TESTS=1")

TINY = textwrap.dedent("""\
    name: scale_tiny
    seed: 0
    image_size: [32, 32]
    channels: 1
    batchnorm_momentum: 0.9
    figures: false
    data:
      source_phantoms: {phantom: {generator: cxr, n_patients: 12, per_patient: 2, size: 32, seed: 1}}
    source:
      kind: cdae
      data: [source_phantoms]
      model: {filters: [4, 8, 8, 8]}
      noise: [{kind: gaussian, level: 0.05}]
      eval_noise: [{kind: gaussian, level: 0.05}]
      examples: 0
    tasks: []
    baseline: {enabled: false}
    training:
      source: {optimizer: adam, learning_rate: 0.01, batch_size: 4, epochs: EPOCHS, max_steps_per_epoch: 2,
               jit_compile: false, early_stopping_patience: null}
    cross_validation: {folds: 0}
    explain: {gradcam: false}
    """)


def tiny_config(folder: Path, epochs: int = 3) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.replace("EPOCHS", str(epochs)), encoding="utf-8")
    return path


def urep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "urep", *args]


def env(**extra: str) -> dict:
    out = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **extra}
    out.pop("TF_CONFIG", None)
    out.update(extra)
    return out


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def training_history(run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    source = next(m for m in results["models"] if m.get("role") == "source")
    return results, source["history"]


# -- configuration, profile, roles (fast) ---------------------------------------------------------------

def test_distribution_block_parses_and_checks_devices(tmp_path):
    config = load_config(tiny_config(tmp_path), overrides=[
        "distribution.kind=mirrored", 'distribution.devices=["/cpu:0", "/cpu:1"]'])
    assert config.distribution.kind == "mirrored"
    assert config.distribution.devices == ("/cpu:0", "/cpu:1")
    assert load_config(tiny_config(tmp_path)).distribution.kind == "default"
    with pytest.raises(ConfigError, match=r"distribution\.devices.*devices are for kind `mirrored`"):
        load_config(tiny_config(tmp_path), overrides=['distribution.devices=["/gpu:0"]'])
    with pytest.raises(ConfigError, match="distribution.kind"):
        load_config(tiny_config(tmp_path), overrides=["distribution.kind=ring"])


def test_multimix_experiments_refuse_distribution_and_take_a_profile_without_its_batches():
    with pytest.raises(ConfigError, match="MultiMix trainer runs on one device"):
        load_config("multimix_cxr_phantom", overrides=["distribution.kind=mirrored"])
    config = load_config("urep_vs_multimix_phantom")
    assert load_config("multimix_cxr_phantom", overrides=["mixed_precision=mixed_float16"]).mixed_precision \
        == "mixed_float16"
    for profile, policy in (("gpu", "mixed_float16"), ("cpu-bf16", "mixed_bfloat16")):
        resolved = apply_profile(config, profile)
        assert resolved.mixed_precision == policy
        assert resolved.multimix == config.multimix  # MultiMix's batch and XLA as configured
        for phase in ("source", "heads", "baseline"):
            before, after = getattr(config.training, phase), getattr(resolved.training, phase)
            assert after.batch_size == before.batch_size  # the comparison keeps the papers' batches
            assert after.jit_compile is PROFILES[profile]["jit_compile"]
    with pytest.raises(ValueError, match="keeps the papers' batches"):
        apply_profile(config, "gpu", batch_multiplier=2)
    with pytest.raises(ValueError, match="keeps the papers' batches"):
        apply_profile(load_config("multimix_cxr_phantom"), "gpu", scale_learning_rate=True)


def test_gpu_profile_resolves_to_xla_mixed_precision_larger_batches_and_prefetch(tmp_path):
    config = load_config(tiny_config(tmp_path))
    gpu = apply_profile(config, "gpu")
    for phase in ("source", "heads", "baseline"):
        before, after = getattr(config.training, phase), getattr(gpu.training, phase)
        assert after.jit_compile is True
        assert after.batch_size == 4 * before.batch_size
        assert after.learning_rate == before.learning_rate  # global batch grows; lr only if asked
    assert gpu.mixed_precision == "mixed_float16"
    assert gpu.distribution.prefetch_to_device is True
    assert gpu.deterministic is config.deterministic
    scaled = apply_profile(config, "gpu", batch_multiplier=2, scale_learning_rate=True, deterministic=True)
    assert scaled.training.source.batch_size == 8
    assert scaled.training.source.learning_rate == pytest.approx(0.02)
    assert scaled.deterministic is True
    assert apply_profile(config, "cpu") == config
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        apply_profile(config, "tpu")
    with pytest.raises(ValueError, match="batch_multiplier must be an integer >= 1, got 0"):
        apply_profile(config, "gpu", batch_multiplier=0)


def test_cpu_bf16_profile_trains_in_bfloat16_without_xla_and_keeps_batches(tmp_path):
    config = load_config(tiny_config(tmp_path))
    bf16 = apply_profile(config, "cpu-bf16")
    for phase in ("source", "heads", "baseline"):
        before, after = getattr(config.training, phase), getattr(bf16.training, phase)
        assert after.jit_compile is False
        assert (after.batch_size, after.learning_rate) == (before.batch_size, before.learning_rate)
    assert bf16.mixed_precision == "mixed_bfloat16"
    assert bf16.distribution.prefetch_to_device is False
    assert apply_profile(load_config("multimix_cxr_phantom"), "cpu-bf16").mixed_precision == "mixed_bfloat16"


def test_bfloat16_with_xla_or_without_the_hardware_is_warned_about(tmp_path, monkeypatch, caplog):
    from urep.experiments import distribution

    monkeypatch.setattr(distribution, "native_bfloat16", lambda: True)
    config = load_config(tiny_config(tmp_path), overrides=["mixed_precision=mixed_bfloat16"])
    with caplog.at_level("WARNING", logger="urep.experiments.distribution"):
        distribution._advise_precision(config)
    assert "training.heads/baseline.jit_compile" in caplog.text  # the tiny source trains without XLA
    assert "without bfloat16 hardware" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="urep.experiments.distribution"):
        distribution._advise_precision(apply_profile(config, "cpu-bf16"))
        distribution._advise_precision(load_config(tiny_config(tmp_path)))  # float32: nothing to say
    assert not caplog.records
    monkeypatch.setattr(distribution, "native_bfloat16", lambda: False)
    with caplog.at_level("WARNING", logger="urep.experiments.distribution"):
        distribution._advise_precision(apply_profile(config, "cpu-bf16"))
    assert "without bfloat16 hardware" in caplog.text and "jit_compile" not in caplog.text


def test_cpu_bf16_profile_runs_in_bfloat16(tmp_path):
    """The cpu-bf16 profile through `run_experiment`: bfloat16 layers, float32 outputs, finite losses, and a
    denoiser that still denoises (on any CPU: bfloat16 is emulated where the hardware lacks it)."""
    import keras

    from urep.experiments.runner import run_experiment

    config = apply_profile(load_config(tiny_config(tmp_path, epochs=2)), "cpu-bf16")
    results = run_experiment(config, tmp_path / "run")
    assert keras.config.dtype_policy().name == "float32"
    assert results["config"]["mixed_precision"] == "mixed_bfloat16"
    assert "cpu_features" in results["environment"] and "onednn_opts" in results["environment"]
    history = next(m for m in results["models"] if m.get("role") == "source")["history"]
    assert np.all(np.isfinite(history["loss"])) and len(history["loss"]) == 2
    assert results["denoising"][0]["psnr"] > 10
    model = keras.models.load_model(tmp_path / "run" / "models" / "source" / "denoising.keras")
    assert model.get_layer("enc_conv1").dtype_policy.compute_dtype == "bfloat16"
    assert model.output.dtype == "float32"


def test_worker_role_follows_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert worker_role() is None
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 0))
    assert worker_role() == ("worker", 0, True)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 1))
    assert worker_role() == ("worker", 1, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                                               "task": {"type": "worker", "index": 0}}))
    assert worker_role() == ("worker", 0, False)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not a cluster spec"):
        worker_role()


def test_only_the_chief_writes_the_run_directory(monkeypatch, tmp_path):
    config = load_config(tiny_config(tmp_path), overrides=["distribution.kind=multi_worker",
                                                           f"distribution.scratch={tmp_path / 'scratch'}"])
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 0))
    chief = placement(config.distribution, tmp_path / "run")
    assert chief.chief and chief.run_dir == tmp_path / "run" and chief.role == "chief"
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 1))
    worker = placement(config.distribution, tmp_path / "run")
    assert not worker.chief and worker.role == "worker 1"
    assert worker.run_dir.parent.parent == tmp_path / "scratch"
    assert worker.run_dir.name == "worker-1"
    assert placement(config.distribution, tmp_path / "run") == worker  # a restarted worker finds its folder
    monkeypatch.delenv("TF_CONFIG")
    single = placement(config.distribution, tmp_path / "run")
    assert single.chief and single.role == "single"


def test_logical_cpu_count_of_device_names():
    assert _logical_cpus(("/cpu:0", "/cpu:1")) == 2
    assert _logical_cpus(("/job:localhost/replica:0/task:0/device:CPU:0",)) == 0  # full names: use as given
    assert _logical_cpus(("/gpu:0", "/gpu:1")) == 0
    assert _logical_cpus(("CPU:3",)) == 4


def test_urep_run_scale_lr_needs_the_gpu_profile(tmp_path):
    from urep.cli import main

    with pytest.raises(SystemExit, match="--scale-lr goes with --profile gpu"):
        main(["run", str(tiny_config(tmp_path)), "--out", str(tmp_path / "run"), "--scale-lr"])


def test_cli_profile_choices_are_the_known_profiles():
    from urep.bench.suite import PROFILE_POLICY
    from urep.cli import build_parser
    from urep.experiments.distribution import PROFILES

    commands = next(a for a in build_parser()._actions if a.choices and "run" in a.choices).choices
    choices = {name: next(a for a in commands[name]._actions if "--profile" in a.option_strings).choices
               for name in ("run", "bench")}
    assert set(choices["run"]) == set(PROFILES) and set(choices["bench"]) == set(PROFILE_POLICY)


# -- real runs -------------------------------------------------------------------------------------------

def test_gpu_profile_runs_on_cpu_in_mixed_float16(tmp_path):
    """The gpu profile (without XLA, which only pays after minutes of compilation) trains the tiny CDAE in
    mixed_float16 on the CPU: float16 compute, float32 outputs, loss-scaled optimizer, finite losses."""
    import keras

    from urep.experiments.runner import run_experiment

    config = apply_profile(load_config(tiny_config(tmp_path, epochs=2)), "gpu", batch_multiplier=2)
    source = dataclasses.replace(config.training.source, jit_compile=False)
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, source=source))
    results = run_experiment(config, tmp_path / "run")
    assert keras.config.dtype_policy().name == "float32"  # the policy is put back after the run
    assert results["config"]["mixed_precision"] == "mixed_float16"
    history = next(m for m in results["models"] if m.get("role") == "source")["history"]
    assert np.all(np.isfinite(history["loss"])) and len(history["loss"]) == 2
    assert results["denoising"][0]["psnr"] > 10
    model = keras.models.load_model(tmp_path / "run" / "models" / "source" / "denoising.keras")
    assert model.get_layer("enc_conv1").dtype_policy.compute_dtype == "float16"
    assert model.output.dtype == "float32"


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory):
    """`urep run --distribution mirrored` over two logical CPU devices (its own process)."""
    folder = tmp_path_factory.mktemp("mirrored")
    done = subprocess.run(urep_command("run", str(tiny_config(folder)), "--out", str(folder / "run"),
                                       "--distribution", "mirrored",
                                       "--set", 'distribution.devices=["/cpu:0", "/cpu:1"]'),
                          capture_output=True, text=True, env=env(), timeout=500, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run"


@pytest.mark.timeout(600)
def test_urep_run_mirrored_over_two_logical_cpus(mirrored_run):
    results, history = training_history(mirrored_run)
    assert results["distribution"] == {"kind": "mirrored", "dist_strategy": "MirroredStrategy", "replicas": 2,
                                       "workers": 1, "role": "single"}
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    assert (mirrored_run / "report.md").is_file() and (mirrored_run / "models" / "source" / "denoising.keras").is_file()


def start_workers(config: Path, out: Path, scratch: Path, ports: list[int], *extra: str) -> list[subprocess.Popen]:
    procs = []
    for index in range(len(ports)):
        log = open(out.parent / f"worker{index}.log", "a", encoding="utf-8")  # noqa: SIM115 (closed by the OS)
        procs.append(subprocess.Popen(
            urep_command("-v", "run", str(config), "--out", str(out), "--distribution", "multi_worker",
                         "--set", f"distribution.scratch={scratch}", *extra),
            stdout=log, stderr=subprocess.STDOUT, env=env(TF_CONFIG=tf_config(ports, index)), cwd=out.parent))
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
    return codes


@SLOW
@pytest.mark.timeout(900)
def test_two_workers_on_loopback_train_together_and_only_the_chief_writes(tmp_path, mirrored_run):
    config, out, scratch = tiny_config(tmp_path), tmp_path / "run", tmp_path / "scratch"
    codes = wait_all(start_workers(config, out, scratch, free_ports(2)), timeout=800)
    logs = [(tmp_path / f"worker{i}.log").read_text(encoding="utf-8") for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    # (a) both trained: each logged its three epochs, with the same (all-reduced) losses
    for log in logs:
        assert log.count("source epoch ") == 3  # per-epoch lines reach the console with -v
    assert "worker 1 finished; the chief wrote the results" in logs[1]
    # (b) only the chief wrote results; the worker's scratch is gone
    results, history = training_history(out)
    assert results["distribution"]["role"] == "chief"
    assert results["distribution"]["replicas"] == 2 and results["distribution"]["workers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "scratch", "tiny.yaml", "worker0.log",
                                                          "worker1.log"]
    assert list(scratch.iterdir()) == []
    # (c) same numbers as single-process runs with the same global batch: two logical devices (mirrored), and
    # one device (batch normalization is synchronized over the replicas, so the statistics are the global
    # batch's); measured: 7e-8 (mirrored) and 5e-5 (one device) relative; 5e-4 leaves room for rounding.
    _, mirrored = training_history(mirrored_run)
    from urep.experiments.runner import run_experiment

    single = run_experiment(load_config(config), tmp_path / "single")
    one = next(m for m in single["models"] if m.get("role") == "source")["history"]
    for reference in (mirrored, one):
        np.testing.assert_allclose(history["loss"], reference["loss"], rtol=5e-4)
        np.testing.assert_allclose(history["val_loss"], reference["val_loss"], rtol=5e-4)
    assert results["denoising"][0]["psnr"] == pytest.approx(single["denoising"][0]["psnr"], abs=0.01)
