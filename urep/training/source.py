"""Building the shared representation (UMS-Rep): the source models and their evaluation.

`train_denoiser` (U-Rep 1 CDAE, noisy -> clean, noise drawn per image and epoch; journal section 3.1),
`train_supervised_source` (U-Rep 2: `dilated_cnn` on Doppler flow type), `train_super_resolution` (the
preprint's residual super-resolution backbone, x2), `evaluate_denoiser` (PSNR, SSIM, MS-SSIM per noise level;
journal Table 2). All train through `urep.training.loop.train_model`; the batches and noise of epoch e depend
on `(config.seed, e)` only, so an interrupted run resumes with the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from urep.training.config import TrainConfig
from urep.training.loop import DataSource, TrainResult, train_model
from urep.training.run import Run


def epoch_seed(seed: int, epoch: int) -> int:
    """A 31-bit seed that depends only on (seed, epoch) (NumPy's `SeedSequence`)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] & 0x7FFFFFFF)


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"{name} must be a non-empty (N, H, W, C) array, got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name} must be float images in [0, 1], got dtype {images.dtype}")
    return images.astype(np.float32, copy=False)


def denoising_data(images: np.ndarray, noise_specs, config: TrainConfig, shuffle: bool, offset: int = 0,
                   normalizer=None) -> Callable[[int], tf.data.Dataset]:
    """`epoch -> dataset` of `(noisy, clean)` batches; noise and order seeded by (config.seed + offset, epoch).

    Args:
        images: `(N, H, W, C)` float32 clean images in [0, 1].
        noise_specs: one `NoiseSpec`/"kind:level" or a sequence (one drawn uniformly per image and epoch).
        config: gives the batch size and the seed.
        shuffle: shuffle the order each epoch.
        offset: added to the seed (validation data uses a different stream from training data).
        normalizer: a fitted `MeanNormalizer` applied to the network input only, or None.
    """
    from urep.data.pipeline import make_dataset

    def make(epoch: int) -> tf.data.Dataset:
        seed = epoch_seed(config.seed + offset, epoch if shuffle else 0)
        return make_dataset(images, None, batch_size=config.batch_size, shuffle=shuffle, seed=seed,
                            noise=noise_specs, normalizer=normalizer)

    return make


def train_denoiser(cdae_model: keras.Model, train_images: np.ndarray, val_images: np.ndarray | None,
                   noise_specs, config: TrainConfig, *, run: Run | None = None, name: str = "cdae",
                   normalizer=None, strategy: tf.distribute.Strategy | None = None,
                   metrics: Sequence = ()) -> TrainResult:
    """Train the CDAE to reconstruct clean images from noisy ones with MSE (journal Section 3.1).

    Args:
        cdae_model: `(batch, H, W, C)` -> `(batch, H, W, C)`, e.g. `urep.models.cdae(...)`.
        train_images: `(N, H, W, C)` float32 clean images in [0, 1] (the RSNA training split in the paper).
        val_images: validation images (same form), or None (then set `config.monitor="loss"`).
        noise_specs: a `urep.data.noise.NoiseSpec`, a "kind:level" string, or a sequence of them: each image
            gets one of them, drawn uniformly, anew every epoch (the papers train one model for several
            Gaussian levels and Poisson noise; a choice: the mixing is not described). Validation noise is
            fixed across epochs.
        config: training configuration (the paper: RMSprop, lr 1e-3 reduced on plateau, batch 16).
        run: run directory manager, or None.
        name: the model's name in results, checkpoints and logs.
        normalizer: a fitted `MeanNormalizer` for the network input (the target stays in [0, 1]), or None.
        strategy: a `tf.distribute.Strategy`, or None.
        metrics: Keras metrics on the validation data.

    Returns:
        The `TrainResult` (kind "reconstruction").
    """
    train_images = _check_images(train_images, "train_images")
    val = None
    if val_images is not None:
        val = denoising_data(_check_images(val_images, "val_images"), noise_specs, config, shuffle=False,
                             offset=1, normalizer=normalizer)
    return train_model(cdae_model, "mse", denoising_data(train_images, noise_specs, config, shuffle=True,
                                                         normalizer=normalizer),
                       val, config, name=name, kind="reconstruction", metrics=metrics, n_train=len(train_images),
                       run=run, strategy=strategy)


def train_supervised_source(model: keras.Model, train_ds: DataSource, val_ds: DataSource | None,
                            config: TrainConfig, *, loss: str | Callable = "categorical_crossentropy",
                            metrics: Sequence = (), n_train: int | None = None, run: Run | None = None,
                            name: str = "source", strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Train a supervised source model (U-Rep 2: `dilated_cnn` on Doppler flow type, CCE, Adam, 64 epochs).

    Args:
        model: the backbone with its classifier, e.g. `urep.models.dilated_cnn(...)`.
        train_ds: training batches `(x, one-hot y)` or `epoch -> dataset` (preferred: exact resume).
        val_ds: validation batches, or None.
        config: training configuration.
        loss: the loss (default categorical cross-entropy, as in the journal Section 4.2).
        metrics: Keras metrics on the validation data (e.g. `keras.metrics.CategoricalAccuracy()`).
        n_train: number of training examples (when the dataset's size is unknown).
        run: run directory manager, or None.
        name: the model's name in results, checkpoints and logs.
        strategy: a `tf.distribute.Strategy`, or None.

    Returns:
        The `TrainResult` (kind "classification").
    """
    return train_model(model, loss, train_ds, val_ds, config, name=name, kind="classification", metrics=metrics,
                       n_train=n_train, run=run, strategy=strategy)


def degrade(images: tf.Tensor, scale: int, output_size: tuple[int, int], method: str = "area",
            upsample_method: str = "bicubic") -> tf.Tensor:
    """The low-resolution input of super-resolution training.

    The high-resolution `(batch, H, W, C)` images are down-sampled by `scale` with `method` ("area": the
    anti-aliased average over each `scale` x `scale` block), then, when the model expects full-size input
    (`output_size == (H, W)`, SRCNN/VDSR style), up-sampled back with `upsample_method`; a model that
    up-samples inside (`urep.models.super_resolution`) gets the `(H/scale, W/scale)` image itself.
    """
    height, width = images.shape[1], images.shape[2]
    low = tf.image.resize(images, (height // scale, width // scale), method=method)
    if tuple(output_size) != (height // scale, width // scale):
        low = tf.image.resize(low, output_size, method=upsample_method)
    return tf.clip_by_value(low, 0.0, 1.0)


def super_resolution_data(images: np.ndarray, scale: int, input_size: tuple[int, int], config: TrainConfig,
                          shuffle: bool, offset: int = 0) -> Callable[[int], tf.data.Dataset]:
    """`epoch -> dataset` of `(low resolution, high resolution)` batches (see `degrade`)."""

    def make(epoch: int) -> tf.data.Dataset:
        dataset = tf.data.Dataset.from_tensor_slices(images)
        if shuffle:
            dataset = dataset.shuffle(len(images), seed=epoch_seed(config.seed + offset, epoch),
                                      reshuffle_each_iteration=False)
        dataset = dataset.batch(config.batch_size)
        return dataset.map(lambda hr: (degrade(hr, scale, input_size), hr),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    return make


def train_super_resolution(model: keras.Model, train_images: np.ndarray, val_images: np.ndarray | None,
                           config: TrainConfig, *, scale: int = 2, run: Run | None = None,
                           name: str = "super_resolution", strategy: tf.distribute.Strategy | None = None,
                           metrics: Sequence = ()) -> TrainResult:
    """Train a super-resolution backbone on x`scale` up-scaling with MSE (the preprint's SR representation).

    Args:
        model: maps the low-resolution input to `(batch, H, W, C)`; its input is either `(H/scale, W/scale)`
            (a model that up-samples inside, like `urep.models.super_resolution`) or `(H, W)` (then the input
            is down-sampled and up-sampled back, see `degrade`).
        train_images: `(N, H, W, C)` float32 high-resolution images in [0, 1].
        val_images: validation images, or None.
        config: training configuration.
        scale: the up-scaling factor (x2 in the preprint).
        run: run directory manager, or None.
        name: the model's name in results, checkpoints and logs.
        strategy: a `tf.distribute.Strategy`, or None.
        metrics: Keras metrics on the validation data.

    Raises:
        ValueError: the model's input/output sizes do not match the images and `scale`.
    """
    train_images = _check_images(train_images, "train_images")
    height, width = train_images.shape[1:3]
    input_size = tuple(model.input_shape[1:3])
    output_size = tuple(model.output_shape[1:3])
    if output_size != (height, width) or input_size not in ((height, width), (height // scale, width // scale)):
        raise ValueError(f"super-resolution model {model.name!r} maps {input_size} to {output_size}; with "
                         f"{height}x{width} images and scale {scale} it must output {(height, width)} from "
                         f"{(height // scale, width // scale)} or {(height, width)}")
    val = None
    if val_images is not None:
        val = super_resolution_data(_check_images(val_images, "val_images"), scale, input_size, config,
                                    shuffle=False)
    return train_model(model, "mse", super_resolution_data(train_images, scale, input_size, config, shuffle=True),
                       val, config, name=name, kind="reconstruction", metrics=metrics, n_train=len(train_images),
                       run=run, strategy=strategy)


def evaluate_denoiser(model: keras.Model, test_images: np.ndarray, noise_specs, *, seed: int = 0,
                      batch_size: int = 16, normalizer=None) -> dict[str, dict[str, float]]:
    """PSNR, SSIM and MS-SSIM of the denoised test images at each noise level (journal Table 2).

    Args:
        model: the trained denoiser.
        test_images: `(N, H, W, C)` float32 clean images in [0, 1].
        noise_specs: the noise levels to test (one or a sequence of `NoiseSpec` / "kind:level").
        seed: seed of the test noise (`urep.data.noise.add_noise`), the same for every level.
        batch_size: prediction batch size.
        normalizer: the training normalizer applied to the noisy input, or None.

    Returns:
        `{spec name: {"psnr", "ssim", "ms_ssim", "ms_ssim_scales", "n", "noisy_psnr", "noisy_ssim"}}`: the
        metrics of the reconstructions (clipped to [0, 1]) and, for reference, of the noisy inputs
        (`urep.metrics.reconstruction_metrics`; MS-SSIM uses the scales that fit small images).
    """
    from urep.data.noise import add_noise, parse_noise
    from urep.metrics import reconstruction_metrics

    test_images = _check_images(test_images, "test_images")
    specs = [noise_specs] if isinstance(noise_specs, str) or not isinstance(noise_specs, Sequence) else noise_specs
    results = {}
    for spec in (parse_noise(s) for s in specs):
        noisy = add_noise(test_images, spec, seed)
        inputs = normalizer.transform(noisy) if normalizer is not None else noisy
        restored = np.clip(model.predict(inputs, batch_size=batch_size, verbose=0), 0.0, 1.0)
        metrics = reconstruction_metrics(test_images, restored)
        reference = reconstruction_metrics(test_images, noisy)
        results[spec.name] = {
            "psnr": metrics["psnr"], "ssim": metrics["ssim"], "ms_ssim": metrics["ms_ssim"],
            "ms_ssim_scales": metrics["ms_ssim_scales"], "n": metrics["n"],
            "noisy_psnr": reference["psnr"], "noisy_ssim": reference["ssim"],
        }
    return results
