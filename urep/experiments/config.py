"""Experiment configs: YAML (loaded with `yaml.safe_load`) validated into frozen dataclasses.

A config names its data sources, the source representation, the task heads, the fine-tuning strategies, the
baseline, the cross-validation, the statistics and the paper tables the report puts beside the results.
Defaults are the papers' values; each field's constraints are in its type (`urep.constraints`), the rules
between fields in `_cross_field_rules`; docs/configuration.md explains both. Example:
`load_config("cxr_heterogeneous_phantom").tasks[0].name == "lung_segmentation"`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml

from urep.constraints import Ref, Rule
from urep.experiments.schema import ConfigError, build, check_refs, to_plain

if TYPE_CHECKING:
    from urep.training.config import TrainConfig

__all__ = [
    "ConfigError", "PhantomSpec", "DataSource", "NoiseLevel", "AugmentationConfig", "PreprocessingConfig",
    "TrainSettings", "SourceConfig", "TaskConfig",
    "BaselineConfig", "TrainingPhases", "CrossValidation", "StatisticsConfig", "ExplainConfig",
    "RecommendationConfig", "MultiMixExperimentConfig", "DistributionConfig", "ExperimentConfig", "SuiteConfig", "load_config", "load_any",
    "load_suite_parts", "parse_config",
    "find_config", "list_configs", "config_to_dict", "dump_config", "apply_overrides", "resolve_data_root",
    "KNOWN_STRATEGIES",
    "ReferencesConfig",
]

Strategy = Literal["independent", "alternating", "joint", "cross_stitch"]
KNOWN_STRATEGIES = typing.get_args(Strategy)
DATA_ROOT_ENV = "UREP_DATA_ROOT"
CONFIG_PACKAGE = "urep.experiments.configs"

Optimizer = Literal["sgd", "adam", "rmsprop"]
MultiMixVariant = Literal["unet", "encoder", "umtl", "encssl", "umtls", "umtls_ssl", "multimix"]
LabelBudget = Annotated[int, Rule(min=1, expected="`all` or at least 1")] | Literal["all"]
DataRef = Annotated[str, Ref("data", "data source")]
TaskRef = Annotated[str, Ref("tasks", "task")]
POSITIVE = Rule(gt=0)
AT_LEAST_1 = Rule(min=1)
FRACTION = Rule(min=0, lt=1)


def _taskwise_problem(value: Any) -> None:
    """`urep.training.config.check_taskwise_stopping` (imported only when the option is set: `urep.training`
    imports TensorFlow)."""
    if value is not False:
        from urep.training.config import check_taskwise_stopping

        check_taskwise_stopping(value)


def _folds_problem(n: int) -> str | None:
    return None if n == 0 or n >= 2 else f"folds must be 0 (no CV) or at least 2, got {n}"


def _fractions(split: tuple[float, ...]) -> str | None:
    if abs(sum(split) - 1.0) > 1e-6 or any(f < 0 for f in split):
        return f"fractions must be non-negative and sum to 1, got {list(split)}"
    return None


@dataclass(frozen=True)
class PhantomSpec:
    """Synthetic images generated into the run directory (no download).

    Attributes:
        generator: `cxr` (`urep.data.phantoms.make_cxr_phantoms`) or `doppler` (`make_doppler_phantoms`).
        n_patients: number of generated patients.
        per_patient: images per patient (`views_per_patient` / `images_per_patient` of the generator).
        size: side of the generated square images in pixels (32 to 512).
        seed: generator seed.
        options: further keyword arguments for the generator (`labels` for CXR; `flows`, `qualities`,
            `quality_labeled_fraction` for Doppler).
    """

    generator: Literal["cxr", "doppler"]
    n_patients: int = 32
    per_patient: int = 2
    size: int = 64
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSource:
    """One data set: a dataset adapter on a folder, or a phantom generator.

    Attributes:
        adapter: name for `urep.data.datasets.load` (`rsna`, `shenzhen`, `montgomery`, `pediatric_pneumonia`,
            `jsrt`, `doppler`, `folder`); `folder` for phantoms.
        root: folder relative to the data root (`--data-root`, else `$UREP_DATA_ROOT`, else the current
            folder); absolute paths are kept. Required unless `phantom` is given.
        phantom: generate the images instead of reading `root`.
        options: keyword arguments for the adapter.
        limit: keep at most this many images (whole patients, drawn with the experiment seed); `null` keeps
            all. Used for reduced-scale runs; the papers used every image.
        include: names of other sources concatenated into this one (the preprint trained its CXR heads on
            Shenzhen + Montgomery); `adapter`, `root` and `phantom` are then unused.
        split_column: a column of the source's table holding each image's official part (`train`, `val`,
            `test`; e.g. JSRT's `split` in a manifest, Kermany's folders through `pediatric_pneumonia`): the
            source is split by it instead of the random patient split (`split`); without `val` rows the
            validation patients are drawn from `train` with the `split` proportions. `null` = random split.
    """

    adapter: str = "folder"
    root: str | None = None
    phantom: PhantomSpec | None = None
    options: dict[str, Any] = field(default_factory=dict)
    limit: Annotated[int | None, Rule(min=2)] = None
    include: tuple[str, ...] = ()
    split_column: str | None = None


@dataclass(frozen=True)
class NoiseLevel:
    """A corruption for the denoising source: `gaussian` (sigma), `poisson` (peak) or `speckle` (sigma)."""

    kind: Literal["gaussian", "poisson", "speckle"]
    level: Annotated[float, POSITIVE]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.level:g}"


@dataclass(frozen=True)
class AugmentationConfig:
    """Seeded on-the-fly augmentation of the training images (`urep.data.augment.paired_augment`).

    Off by default (the papers do not describe augmentation). The defaults of the geometric ranges are those
    of the authors' public Keras code (rotation 5 degrees, zoom 0.2, horizontal flip); the intensity ranges
    are ours (the public code has none). Segmentation masks get the same geometric transform as their image;
    intensity changes touch the image only. Validation and test images are never augmented.

    Attributes:
        enabled: augment the training batches of this phase (fresh draws every epoch, a function of the
            seed, the epoch and the position in the epoch).
        rotation: maximum rotation in degrees (uniform in +-rotation).
        zoom: zoom factor drawn uniformly in `[1 - zoom, 1 + zoom]`.
        horizontal_flip: flip left-right with probability 0.5.
        brightness: additive brightness shift drawn in `+-brightness` (images in [0, 1]).
        contrast: contrast factor drawn in `[1 - contrast, 1 + contrast]` around the image mean.
        gamma: gamma drawn in `[1 - gamma, 1 + gamma]` (`x ** gamma`).
    """

    enabled: bool = False
    rotation: Annotated[float, Rule(min=0, lt=180)] = 5.0
    zoom: Annotated[float, FRACTION] = 0.2
    horizontal_flip: bool = True
    brightness: Annotated[float, FRACTION] = 0.1
    contrast: Annotated[float, FRACTION] = 0.1
    gamma: Annotated[float, FRACTION] = 0.1


@dataclass(frozen=True)
class PreprocessingConfig:
    """Per-image intensity standardisation applied after reading and resizing, before the mean normalization
    (`urep.data.standardize`). `none` is the papers' reading; the real-data configs use the option measured
    best across sites (docs/real_data.md).

    Attributes:
        standardize: `none`, `zscore` (per image, clipped and mapped back to [0, 1]), `histeq` (OpenCV global
            histogram equalization) or `clahe` (OpenCV CLAHE).
        clahe_clip_limit: CLAHE contrast limit.
        clahe_tile_grid: CLAHE tiles per side.
        zscore_clip: z-scores are clipped to +- this before mapping to [0, 1].
    """

    standardize: Literal["none", "zscore", "histeq", "clahe"] = "none"
    clahe_clip_limit: Annotated[float, POSITIVE] = 2.0
    clahe_tile_grid: Annotated[int, POSITIVE] = 8
    zscore_clip: Annotated[float, POSITIVE] = 3.0

    def options(self) -> dict[str, Any]:
        """Keyword arguments of `urep.data.standardize.standardize_images`."""
        return {"method": self.standardize, "clip_limit": self.clahe_clip_limit, "tile_grid": self.clahe_tile_grid,
                "zscore_clip": self.zscore_clip}


@dataclass(frozen=True)
class TrainSettings:
    """How one model (or one phase) is trained; mapped onto `urep.training.TrainConfig`.

    Defaults: batch 16, learning rate 1e-3 reduced on plateau, early stopping (journal section 3.3.1;
    preprint Tables 1 and 3), 64 epochs (journal section 4.2, the only budget published). The plateau factor
    (0.5) and patiences (3 and 8) are not published; they are `urep.training.TrainConfig`'s choices.

    Attributes:
        epochs: maximum epochs.
        batch_size: mini-batch size: the global batch of one optimizer step, split over all replicas when
            `distribution` uses several devices or workers.
        optimizer: `sgd`, `adam` or `rmsprop`.
        learning_rate: initial learning rate.
        reduce_lr_factor: learning-rate factor on a plateau of the validation loss.
        reduce_lr_patience: epochs without improvement before a reduction.
        early_stopping_patience: epochs without improvement before stopping; `null` disables.
        max_steps_per_epoch: cap on the steps of one epoch (reduced-scale runs); `null` = whole data set.
        jit_compile: XLA-compile the training steps.
        data_autotune: tf.data autotuning of the per-epoch datasets; off by default because TensorFlow 2.21
            then idles up to about 4 s at the end of every epoch (`urep.training.TrainConfig.data_autotune`).
        taskwise_stopping: task-wise early stopping (Zhang et al. 2014) of the alternating, joint and
            cross-stitch strategies (heads phase): false, true, or a mapping of `k`, `epsilon`, `main`,
            `importance` (see `urep.training.TrainConfig.taskwise_stopping`). Off in the papers.
        augmentation: seeded on-the-fly augmentation of the training batches (heads and baselines; the
            source phase ignores it). Off by default.
        class_weight: `none`, or `balanced`: the classification loss (training and validation, hence the
            model selection by validation loss) weights each class by `n / (k * n_class)` of the training
            fold (scikit-learn's `compute_class_weight`). Ignored by segmentation tasks.
        lookahead_steps: wrap the optimizer in Lookahead, merging into slow weights every this many steps
            (`urep.training.lookahead`); null disables. Off in the papers; the authors' public Keras code wraps
            its classifier's Adam with 5 (docs/choices.md).
        lookahead_alpha: the slow weights' step towards the fast ones at each merge (the authors' code: 0.5).
    """

    epochs: Annotated[int, AT_LEAST_1] = 64
    batch_size: Annotated[int, AT_LEAST_1] = 16
    optimizer: Optimizer = "rmsprop"
    learning_rate: Annotated[float, POSITIVE] = 1e-3
    reduce_lr_factor: float = 0.5
    reduce_lr_patience: int = 3
    early_stopping_patience: int | None = 8
    max_steps_per_epoch: int | None = None
    jit_compile: bool = True
    data_autotune: bool = False
    taskwise_stopping: Annotated[bool | dict[str, Any], Rule(check=_taskwise_problem)] = False
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    class_weight: Literal["none", "balanced"] = "none"
    lookahead_steps: Annotated[int | None, AT_LEAST_1] = None
    lookahead_alpha: Annotated[float, Rule(gt=0, max=1)] = 0.5

    def optimizer_spec(self, name: str | None = None, learning_rate: float | None = None) -> dict:
        """The `urep.training.OptimizerConfig` (as a dict) of this phase, or of a task's own optimizer name and
        learning rate (None, or 0 for the rate, keeps this phase's)."""
        spec = {"name": name or self.optimizer, "learning_rate": learning_rate or self.learning_rate}
        if self.lookahead_steps is not None:
            spec.update(lookahead_steps=self.lookahead_steps, lookahead_alpha=self.lookahead_alpha)
        return spec

    def train_config(self, *, seed: int, deterministic: bool = False, mixed_precision: str | None = None,
                     optimizer: str | None = None, learning_rate: float | None = None, **changes: Any) -> TrainConfig:
        """This phase's `urep.training.TrainConfig`: the one mapping of these settings onto the training loop.

        Args:
            seed, deterministic, mixed_precision: the experiment-wide settings of the same names.
            optimizer, learning_rate: a task's own optimizer and learning rate (`TaskConfig`); None (or 0
                for the rate) keeps this phase's.
            **changes: further `TrainConfig` fields, overriding the mapped ones (e.g. `progress_bar=False`).
        """
        from urep.training.config import TrainConfig

        mapped = dict(
            epochs=self.epochs, batch_size=self.batch_size,
            optimizer=self.optimizer_spec(optimizer, learning_rate),
            reduce_lr_factor=self.reduce_lr_factor, reduce_lr_patience=self.reduce_lr_patience,
            early_stopping_patience=self.early_stopping_patience, max_steps_per_epoch=self.max_steps_per_epoch,
            jit_compile=self.jit_compile, data_autotune=self.data_autotune,
            taskwise_stopping=self.taskwise_stopping, seed=seed,
            deterministic=deterministic, progress_bar=None, mixed_precision=mixed_precision)
        return TrainConfig(**{**mapped, **changes})


@dataclass(frozen=True)
class SourceConfig:
    """The shared representation (U-Rep / UMS-Rep) trained once on the source data.

    Attributes:
        kind: `cdae` (U-Rep 1, unsupervised denoising; preprint Fig. 2), `dilated_cnn` (U-Rep 2, supervised
            on the task with most labels; preprint Fig. 4) or `super_resolution` (named in the preprint).
        data: data source names the representation is trained on (split 70/20/10 by patient).
        label: label column for a supervised source (`dilated_cnn`).
        classes: class names of a supervised source, in output order.
        noise: corruptions applied to the inputs while training (one drawn per batch); default Gaussian
            sigma 0.03 (preprint).
        eval_noise: the levels of the denoising table (journal Table 2). The sigma values were lost from the
            journal's text; the defaults are `urep.data.noise.DEFAULT_NOISES` (Gaussian 0.01/0.03/0.05/0.07/0.10,
            Poisson peak 100).
        model: keyword arguments for the builder in `urep.models` (for `cdae`, e.g. `filters` and
            `output: residual` and `skips: add|concat`, variants not in the papers, see `urep.models.cdae`).
        examples: number of denoising (or super-resolution) examples drawn in the report figure.
        references: classical denoisers computed on the same test images for the denoising table
            (`urep.models.classical_denoisers`: `nl_means`, OpenCV non-local means, and `gaussian_blur`),
            each with its strength tuned per noise level on the source's validation split. The papers
            compare with none; they show whether the CDAE beats simple filters. `[]` turns them off.
        scale: degradation factor of a `super_resolution` source. The preprint names a residual
            super-resolution CNN as a possible shared representation and gives no protocol; ours: each image
            is down-sampled by `scale` (area average) and up-sampled back to `image_size` (bicubic), and the
            network (`urep.models.super_resolution` with its internal up-sampling off, VDSR style) learns
            the residual to the original at the working size, so the heads read the encoder at that size.
    """

    kind: Literal["cdae", "dilated_cnn", "super_resolution"] = "cdae"
    data: tuple[DataRef, ...] = ()
    label: str = "label"
    classes: tuple[str, ...] = ()
    noise: tuple[NoiseLevel, ...] = (NoiseLevel("gaussian", 0.03),)
    eval_noise: tuple[NoiseLevel, ...] = (
        NoiseLevel("gaussian", 0.01), NoiseLevel("gaussian", 0.03), NoiseLevel("gaussian", 0.05),
        NoiseLevel("gaussian", 0.07), NoiseLevel("gaussian", 0.1), NoiseLevel("poisson", 100.0),
    )
    model: dict[str, Any] = field(default_factory=dict)
    examples: int = 4
    scale: Annotated[int, Rule(min=2)] = 2
    references: tuple[Literal["nl_means", "gaussian_blur"], ...] = ("nl_means", "gaussian_blur")


@dataclass(frozen=True)
class TaskConfig:
    """One target task: a light head on the truncated shared encoder.

    Attributes:
        name: task name (used for model files and tables).
        kind: `classification` or `segmentation`.
        data: data source the head is trained on (cross-validated when `cross_validation.folds > 1`).
        test_data: data source used as the test set (journal Table 3: Montgomery); `null` holds out the test
            fraction of `split` from `data` by patient.
        label: label column of a classification task.
        classes: class names; for classification the rows whose label is in `classes` are kept (this is how
            the homogeneous tasks of journal Tables 5 and 9 are cut from one data set); output order.
        paper_task: the task's name in `urep.experiments.paper_numbers` (e.g. `lung_segmentation`).
        head: keyword arguments for the head builder (`head_keys`): `dense_units`, `dropout` for
            classification; `context_dilations`, `context_width` for segmentation on a CDAE (a variant,
            off by default: `urep.models.segmentation_head_from_autoencoder`); the decoder's options on a
            dilated CNN.
        optimizer: head optimizer; default SGD for classification, RMSprop for segmentation on a CDAE and
            Adam on a dilated CNN (preprint Tables 1 and 3).
        learning_rate: head learning rate; default the `training.heads` value.
        loss_weight: weight of this task in the joint loss (journal: "learned empirically"; 1.0 is ours).
    """

    name: str
    kind: Literal["classification", "segmentation"]
    data: DataRef
    test_data: DataRef | None = None
    label: str = "label"
    classes: tuple[str, ...] = ()
    paper_task: str | None = None
    head: dict[str, Any] = field(default_factory=dict)
    optimizer: Optimizer | None = None
    learning_rate: float | None = None
    loss_weight: float = 1.0


@dataclass(frozen=True)
class BaselineConfig:
    """The traditional approach: a separate denoiser, then one randomly initialised model per task.

    Attributes:
        enabled: train the baselines.
        denoise_inputs: feed the baselines images denoised by a separately trained denoiser (journal
            sections 4.1.1 and 4.1.2: "a separate image denoising model ... for a fair comparison").
        classifier: keyword arguments for `urep.models.baseline_classifier` (journal Table 4: 1,573,506
            parameters).
        segmenter: keyword arguments for the separate segmentation model (same architecture as the head,
            random initialisation).
    """

    enabled: bool = True
    denoise_inputs: bool = True
    classifier: dict[str, Any] = field(default_factory=dict)
    segmenter: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferencesConfig:
    """Simple references computed in the same run, on the same split and test set as U-Rep, so a report shows
    whether U-Rep's numbers are good in absolute terms (`urep.experiments.references`; not in the papers).

    Attributes:
        enabled: compute the references.
        majority: classification: predict the training pool's majority class (probabilities = the class
            frequencies of the fold's training images, so its AUC is 0.5).
        pca_logistic: classification: PCA + logistic regression (scikit-learn) on the raw images downsampled
            to `pca_size` x `pca_size`, fitted on each fold's training images.
        pca_components: PCA components (capped at the training images - 1 and the pixels).
        pca_size: side of the downsampled images of the PCA reference (OpenCV area interpolation).
        mean_mask: segmentation: the mean training mask thresholded at 0.5, predicted for every test image.
        unet: segmentation: train a standard U-Net with skips (`urep.models.unet`) with the baseline's data,
            budget and protocol (`training.baseline`); `auto` = on unless every data source is a phantom
            (keeps the phantom configs and the demo fast).
        unet_model: keyword arguments for `urep.models.unet` (default widths 8/16/32/64: about the size of
            the CDAE segmentation baseline of the real-data configs).
    """

    enabled: bool = True
    majority: bool = True
    pca_logistic: bool = True
    pca_components: Annotated[int, AT_LEAST_1] = 30
    pca_size: Annotated[int, Rule(min=2)] = 32
    mean_mask: bool = True
    unet: bool | Literal["auto"] = "auto"
    unet_model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingPhases:
    """Training settings per phase: the source representation, the heads, the baselines."""

    source: TrainSettings = field(default_factory=TrainSettings)
    heads: TrainSettings = field(default_factory=lambda: TrainSettings(optimizer="sgd"))
    baseline: TrainSettings = field(default_factory=TrainSettings)


@dataclass(frozen=True)
class CrossValidation:
    """K-fold cross-validation of the heads by patient (journal section 4.1: 10 folds).

    Attributes:
        folds: number of folds; 0 trains once on the train split.
        ensemble: also report the fold ensemble (mean of the folds' probabilities) on the test set.
    """

    folds: Annotated[int, Rule(check=_folds_problem)] = 10
    ensemble: bool = True


@dataclass(frozen=True)
class StatisticsConfig:
    """Paired tests between strategies, against the baseline and against the references (journal: McNemar,
    p < 0.05).

    `mcnemar`: per-image correctness (classification; the papers' test). `wilcoxon`: signed-rank on per-image
    IoU (segmentation; ours). `delong`: DeLong's paired test of two AUCs (binary classification; ours).
    """

    tests: tuple[Literal["mcnemar", "wilcoxon", "delong"], ...] = ("mcnemar", "wilcoxon", "delong")
    alpha: Annotated[float, Rule(gt=0, lt=1)] = 0.05


@dataclass(frozen=True)
class ExplainConfig:
    """Grad-CAM on a classification head (preprint Fig. 3; journal Fig. 9).

    Attributes:
        gradcam: draw Grad-CAM overlays.
        task: classification task to explain; default the first classification task.
        mask_task: segmentation task whose ground-truth masks measure the Grad-CAM energy inside the mask
            per class (our measurement of "high activations are observed in the affected ROIs").
        n_images: number of overlays drawn.
    """

    gradcam: bool = True
    task: TaskRef | None = None
    mask_task: TaskRef | None = None
    n_images: int = 4


@dataclass(frozen=True)
class RecommendationConfig:
    """The Doppler derivable task: merge flow-type and quality heads into use/exclude (journal Fig. 9).

    Attributes:
        enabled: compute the recommendation.
        flow_task: classification task giving the flow type.
        quality_task: classification task giving the quality.
        options: keyword arguments for `urep.explain.recommend`.
    """

    enabled: bool = False
    flow_task: TaskRef | None = None
    quality_task: TaskRef | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MultiMixExperimentConfig:
    """MultiMix (Haque et al., ISBI 2021) settings; see `urep.training.multimix`.

    Attributes:
        segmentation_data: labeled segmentation source (JSRT in the paper).
        classification_data: labeled classification source (Kermany CheX in the paper).
        classes: classification classes.
        segmentation_labels: labeled segmentation images; `null` uses all (paper: 10 / 50 / all).
        classification_labels: labeled classification images; `null` uses all (paper: 100 / 1000 / all).
        cross_domain_segmentation: data source for cross-domain segmentation (Montgomery in the paper).
        cross_domain_classification: data source for cross-domain classification (NIH subset in the paper).
        label_budgets: `[segmentation, classification]` labelled-image pairs, each an integer or `all`, run
            one after the other on the same split (paper: 10 / 50 / all masks, 100 / 1000 / all labels); empty
            = the one pair `segmentation_labels`, `classification_labels`.
        variants: the MultiMix models to train (`urep.training.multimix.VARIANTS`, the paper's Table 2
            ablations); default the full method.
        options: keyword arguments for the MultiMix trainer (`urep.training.multimix.MultiMixConfig` fields;
            paper: lr 1e-4, x0.1 every 8 epochs, batch 10, t 0.7, lambda 0.25, alpha 5.0, beta 0.01) and, under
            `model`, for the network (`urep.models.multimix.multimix`).
        seeds: repeat every budget with each of these seeds (label draw, weights, data order; the split and
            U-Rep's source stay those of the experiment `seed`); results get mean and spread over seeds and the
            paired tests per seed. Empty = one run with the experiment `seed`.
    """

    segmentation_data: DataRef
    classification_data: DataRef
    classes: tuple[str, ...] = ("normal", "pneumonia")
    classification_label: str = "label"
    segmentation_labels: int | None = None
    classification_labels: int | None = None
    cross_domain_segmentation: DataRef | None = None
    cross_domain_classification: DataRef | None = None
    label_budgets: tuple[tuple[LabelBudget, LabelBudget], ...] = ()
    variants: Annotated[tuple[MultiMixVariant, ...], Rule(min_items=1)] = ("multimix",)
    options: dict[str, Any] = field(default_factory=dict)
    seeds: Annotated[tuple[Annotated[int, Rule(min=0)], ...], Rule(unique=True)] = ()


@dataclass(frozen=True)
class DistributionConfig:
    """How the training steps are spread over devices and machines (`tf.distribute`; docs/scale.md).

    Every `training.*.batch_size` is the *global* batch: it is split evenly over all replicas (devices of
    all workers), so one step sees the same examples whatever the distribution. Learning rates are left
    as configured (`urep run --profile gpu --scale-lr` scales them with a larger batch).

    Attributes:
        kind: `default` (one device),
            `mirrored` (`tf.distribute.MirroredStrategy` over the local `devices`, default all GPUs), or
            `multi_worker` (`tf.distribute.MultiWorkerMirroredStrategy`, the cluster read from `TF_CONFIG`;
            only the chief writes the run directory, the other workers write to `scratch` and delete it).
        devices: device names for `mirrored`, e.g. `["/gpu:0", "/gpu:1"]`. CPU devices beyond the
            first (`/cpu:1`, ...) are created as logical CPU devices (a test setup; needs a fresh process).
        scratch: folder of the non-chief workers' run directories (default: the system temporary folder);
            kept after a failure so that a restarted worker resumes, deleted after success.
        prefetch_to_device: with one replica and a visible GPU, copy the batches to the GPU ahead of the
            step (`tf.data.experimental.prefetch_to_device`; several replicas prefetch anyway).
    """

    kind: Literal["default", "mirrored", "multi_worker"] = "default"
    devices: tuple[str, ...] = ()
    scratch: str | None = None
    prefetch_to_device: bool = False


#: The `experiment` kinds run by the MultiMix trainer (`urep.experiments.multimix_experiment`).
MULTIMIX_EXPERIMENTS = ("multimix", "urep_vs_multimix")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment. See the module docstring for the papers' defaults.

    Attributes:
        name: experiment name (run directory tables and reports use it).
        description: one line for humans.
        experiment: `urep` (source + heads + strategies + baselines; no tasks = denoising only), `multimix`,
            `urep_vs_multimix` (both on the same data), or `pairwise_transfer` (source, then every task alone
            and every pair jointly: the transfer matrix; `urep.experiments.transfer`).
        seed: seed of everything (`urep.seed_everything`).
        deterministic: ask TensorFlow for deterministic kernels (slower).
        image_size: `(height, width)` every image is resized to (journal: 256x256; preprint Doppler 224x224).
        channels: input channels (1 for CXR; the paper's U-Rep 2 used 3).
        data: named data sources.
        split: patient-level train/val/test fractions (journal: 0.7/0.2/0.1).
        source: the shared representation.
        tasks: the target tasks (heads).
        strategies: fine-tuning strategies to compare (`independent`, `alternating`, `joint`,
            `cross_stitch`).
        alternating_ratio: `proportional` (batches per task proportional to its data size, Luong et al.
            2015, journal section 3.4) or `equal`.
        baseline: the traditional approach.
        references: majority / PCA + logistic regression / mean-mask / U-Net references on the same split.
        training: training settings per phase.
        cross_validation: k-fold CV of the heads.
        statistics: paired tests.
        explain: Grad-CAM.
        recommendation: the Doppler recommendation.
        multimix: MultiMix settings (for `multimix` and `urep_vs_multimix`).
        paper_tables: keys of `urep.experiments.paper_numbers.PAPER_TABLES` reported beside the results.
        figures: draw figures (training curves, denoising examples, overlays, cost chart).
        batchnorm_momentum: momentum of the moving statistics of every batch-normalization layer of the
            models built by the run; `null` keeps Keras' 0.99. The papers are silent. With 0.99 the moving
            statistics need a few hundred steps to settle, so short CPU runs (the phantom configs, the demo)
            use 0.9: otherwise validation and test, which use the moving statistics, lag far behind training.
        distribution: devices and machines the training runs on (`DistributionConfig`); batch sizes are
            global batches.
        mixed_precision: Keras dtype policy of every model of the run (U-Rep and MultiMix alike): `null`
            (float32), `mixed_float16` (loss scaling added; outputs stay float32) or `mixed_bfloat16`. Pays on GPUs
            with tensor cores, and `mixed_bfloat16` with XLA off on CPUs with bfloat16 hardware (AMX /
            AVX512-BF16: 1.5-2.2x); elsewhere on a CPU it runs, slower (docs/scale.md).
        preprocessing: per-image intensity standardisation before the mean normalization (`none` = papers).
    """

    name: str
    description: str = ""
    experiment: Literal["urep", "multimix", "urep_vs_multimix", "pairwise_transfer"] = "urep"
    seed: int = 0
    deterministic: bool = False
    image_size: tuple[Annotated[int, POSITIVE], Annotated[int, POSITIVE]] = (256, 256)
    channels: Literal[1, 3] = 1
    data: dict[str, DataSource] = field(default_factory=dict)
    split: Annotated[tuple[float, float, float], Rule(check=_fractions)] = (0.7, 0.2, 0.1)
    source: SourceConfig = field(default_factory=SourceConfig)
    tasks: tuple[TaskConfig, ...] = ()
    strategies: tuple[Strategy, ...] = ("independent", "alternating", "joint")
    alternating_ratio: Literal["proportional", "equal"] = "proportional"
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    references: ReferencesConfig = field(default_factory=ReferencesConfig)
    training: TrainingPhases = field(default_factory=TrainingPhases)
    cross_validation: CrossValidation = field(default_factory=CrossValidation)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    recommendation: RecommendationConfig = field(default_factory=RecommendationConfig)
    multimix: MultiMixExperimentConfig | None = None
    paper_tables: tuple[str, ...] = ()
    figures: bool = True
    batchnorm_momentum: Annotated[float | None, FRACTION] = None
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    mixed_precision: Literal["mixed_float16", "mixed_bfloat16"] | None = None
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    path: str | None = field(default=None, compare=False, init=False)

    def task(self, name: str) -> TaskConfig:
        """The task called `name` (KeyError naming the known tasks otherwise)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r} in experiment {self.name!r}; tasks: {[t.name for t in self.tasks]}")

    def task_train(self, task: TaskConfig) -> TrainSettings:
        """The training settings of one head: `training.heads` with the task's optimizer/lr applied."""
        base = self.training.heads
        optimizer = task.optimizer or base.optimizer
        return dataclasses.replace(base, optimizer=optimizer, learning_rate=task.learning_rate or base.learning_rate)


def head_keys(kind: str, source_kind: str) -> tuple[str, ...]:
    """The `tasks[].head` options a task of `kind` accepts on a source of `source_kind`: the keyword
    arguments of the head builder the pipeline calls (`urep.models.MultiTaskModel.add_classification_head`;
    `add_segmentation_head` with the CDAE's decoder, or `segmentation_head_from_encoder`)."""
    if kind == "classification":
        return ("dense_units", "dropout")
    if source_kind == "cdae":
        return ("context_dilations", "context_width")
    return ("decoder_filters", "kernel_size", "dilation_rates", "upsample_levels")


def _cross_field_rules(config: ExperimentConfig) -> Iterator[tuple[bool, str, str]]:
    """`(broken, key, message)` of every rule between fields (a field's own rules are on its type), in order;
    the caller stops at the first broken one, so a rule may rely on the rules before it."""
    plain = sorted(k for k, v in config.data.items() if not v.include)
    for key, source in config.data.items():
        for i, ref in enumerate(source.include):
            yield (ref not in plain, f"data.{key}.include[{i}]",
                   f"include names another plain data source; {ref!r} is not one of {plain}")
        yield (not source.include and source.phantom is None and source.root is None, f"data.{key}",
               "a data source needs `root` (a folder) or `phantom` (a generator)")
    source, tasks, multimix_run = config.source, config.tasks, config.experiment in MULTIMIX_EXPERIMENTS
    yield (config.experiment != "multimix" and not source.data, "source.data",
           "name at least one data source to train the representation on")
    yield source.kind == "dilated_cnn" and len(source.classes) < 2, "source.classes", \
        "a supervised source needs at least two classes"
    super_resolution = source.kind == "super_resolution"
    yield (super_resolution and "scale" in source.model, "source.model.scale", "the runner builds the "
           "super-resolution network at the working size (scale 1); set the degradation factor with source.scale")
    yield (super_resolution and any(size < 2 * source.scale for size in config.image_size), "source.scale",
           f"image_size {list(config.image_size)} is too small to down-sample by source.scale {source.scale}")
    from urep.experiments.paper_numbers import PAPER_TABLES

    for i, table in enumerate(config.paper_tables):
        yield (table not in PAPER_TABLES, f"paper_tables[{i}]",
               f"unknown paper table {table!r}; known: {sorted(PAPER_TABLES)}")
    names = [task.name for task in tasks]
    for i, task in enumerate(tasks):
        yield task.name in names[:i], f"tasks[{i}].name", f"duplicate task name {task.name!r}"
        yield (task.kind == "classification" and len(task.classes) < 2, f"tasks[{i}].classes",
               "a classification task needs at least two classes")
        allowed = head_keys(task.kind, source.kind)
        unknown = sorted(set(task.head) - set(allowed))
        yield (bool(unknown), f"tasks[{i}].head.{unknown[0] if unknown else ''}",
               f"not an option of a {task.kind} head on a {source.kind} source; options: {list(allowed)}")
        yield (task.paper_task is not None
               and not any(task.paper_task in PAPER_TABLES[t].tasks for t in config.paper_tables),
               f"tasks[{i}].paper_task",
               f"paper_task {task.paper_task!r} is in none of the paper tables {list(config.paper_tables)}")
    yield bool(tasks) and not config.strategies, "strategies", "name at least one fine-tuning strategy"
    # cross_stitch: one column per task; the first strategy's models are saved for `urep explain` with
    # Grad-CAM at `encoder_out`, a layer the cross-stitch columns rename
    stitch = config.strategies.index("cross_stitch") if "cross_stitch" in config.strategies and tasks else None
    yield (stitch is not None and len(tasks) < 2, f"strategies[{stitch}]",
           f"cross_stitch needs at least 2 tasks, got {len(tasks)}")
    yield (stitch == 0, "strategies[0]", "cross_stitch cannot be the first strategy (the first strategy's models "
           "are saved for urep explain/recommend); list a hard-sharing strategy first")
    yield (config.experiment == "pairwise_transfer" and len(tasks) < 2, "tasks",
           f"pairwise_transfer needs at least 2 tasks, got {len(tasks)}")
    yield (multimix_run and config.distribution.kind != "default", "distribution.kind",
           "the MultiMix trainer runs on one device; use kind `default`")
    yield (multimix_run and config.multimix is None, "multimix",
           f"experiment {config.experiment!r} needs a `multimix` section")
    yield (bool(config.distribution.devices) and config.distribution.kind != "mirrored", "distribution.devices",
           f"devices are for kind `mirrored`, not {config.distribution.kind!r}")
    for attr in ("flow_task", "quality_task"):
        yield (config.recommendation.enabled and getattr(config.recommendation, attr) is None,
               f"recommendation.{attr}", f"unknown task None; tasks: {sorted(names)}")


def _check_semantics(config: ExperimentConfig, file: str | None) -> None:
    """Check the references between sections (`Ref` fields), then the rules between fields.

    Raises:
        ConfigError: the first broken rule, naming the key path and `file`.
    """
    check_refs(config, {"data": config.data.keys(), "tasks": [task.name for task in config.tasks]}, file)
    for broken, key, message in _cross_field_rules(config):
        if broken:
            raise ConfigError(message, key, file)


@dataclass(frozen=True)
class SuiteConfig:
    """Several experiments run one after the other into `RUN_DIR/<part>/` (e.g. the preprint's two U-Reps).

    Attributes:
        name: suite name.
        description: one line for humans.
        parts: config names or paths (relative paths are resolved next to the suite file first).
    """

    name: str
    parts: tuple[str, ...]
    description: str = ""
    path: str | None = field(default=None, compare=False, init=False)


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The folder data sources' `root` is relative to: `data_root`, else `$UREP_DATA_ROOT`, else `.`."""
    if data_root is not None:
        return Path(data_root)
    return Path(os.environ.get(DATA_ROOT_ENV, "."))


def source_root(source: DataSource, data_root: str | os.PathLike | None = None) -> Path | None:
    """Absolute path of a data source's folder (None for phantoms)."""
    if source.root is None:
        return None
    root = Path(source.root).expanduser()
    return root if root.is_absolute() else resolve_data_root(data_root) / root


def check_data_roots(config: ExperimentConfig, data_root: str | os.PathLike | None = None) -> None:
    """Raise `ConfigError` naming `data.NAME.root` and the file when a source's folder does not exist."""
    for name, source in config.data.items():
        if source.phantom is not None or source.include:
            continue
        folder = source_root(source, data_root)
        if not folder.is_dir():
            raise ConfigError(
                f"data folder {str(folder)!r} does not exist (root {source.root!r} relative to data root "
                f"{str(resolve_data_root(data_root))!r}; pass --data-root or set ${DATA_ROOT_ENV})",
                f"data.{name}.root", config.path,
            )


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...], file: str | None = None) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to a raw config mapping.

    List items are addressed by index (`tasks.0.classes=[a, b]`). Returns a new mapping.

    Raises:
        ConfigError: malformed override or a path through a non-container.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE", item, file)
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        node: Any = raw
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            where = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ConfigError(f"no list item {key!r} (list of {len(node)})", where, file)
                key = int(key)
            elif not isinstance(node, dict):
                raise ConfigError(f"cannot set a key inside {node!r}", where, file)
            if last:
                try:
                    node[key] = yaml.safe_load(text)
                except yaml.YAMLError as err:
                    problem = str(err).splitlines()[0]
                    raise ConfigError(f"value {text!r} is not valid YAML ({problem})", where, file) from err
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return raw


def parse_config(raw: Any, file: str | os.PathLike | None = None) -> ExperimentConfig:
    """Validate a raw mapping (e.g. from `yaml.safe_load`) into an `ExperimentConfig`.

    Raises:
        ConfigError: naming the key path and `file`.
    """
    file = str(file) if file is not None else None
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(raw).__name__}", "", file)
    config = build(ExperimentConfig, raw, "", file)
    object.__setattr__(config, "path", file)
    _check_semantics(config, file)
    return config


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file path: an existing path, else a config shipped with urep (`cxr_heterogeneous`).

    Raises:
        FileNotFoundError: neither a file nor a shipped config name; lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = resources.files(CONFIG_PACKAGE) / f"{stem}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(
        f"no config file {str(name_or_path)!r} and no shipped config of that name; shipped: {list_configs()}"
    )


def read_yaml(file: str | os.PathLike) -> Any:
    """The parsed YAML of `file` (every urep config reader uses this one).

    Raises:
        ConfigError: not valid YAML, naming the file.
    """
    try:
        return yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", "", file) from err


def list_configs() -> list[str]:
    """Names of the configs shipped with urep (`urep/experiments/configs/*.yaml`)."""
    folder = resources.files(CONFIG_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    check_data: bool = False,
) -> ExperimentConfig:
    """Load and validate an experiment config.

    Args:
        path: a YAML file, or the name of a shipped config (see `list_configs`).
        data_root: folder the data sources' `root` is relative to (see `resolve_data_root`).
        overrides: `key.path=value` strings applied before validation (see `apply_overrides`).
        check_data: also check that every non-phantom data folder exists.

    Returns:
        The validated config; `config.path` is the file it came from.

    Raises:
        FileNotFoundError: no such file or shipped config.
        ConfigError: invalid YAML, unknown key, wrong type, bad reference, or (with `check_data`) a missing
            data folder; the message names the key path and the file.
    """
    file = find_config(path)
    raw = read_yaml(file)
    if overrides:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides, str(file))
    config = parse_config(raw, file)
    if check_data:
        check_data_roots(config, data_root)
    return config


def load_any(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    check_data: bool = False,
) -> ExperimentConfig | SuiteConfig:
    """Load an experiment config, or a suite (a file with a top-level `parts` list).

    Overrides and data checks apply to the experiments; a suite's parts are loaded with `load_suite_parts`.

    Raises:
        FileNotFoundError, ConfigError: as `load_config`.
    """
    file = find_config(path)
    raw = read_yaml(file)
    if isinstance(raw, dict) and "parts" in raw:
        suite = build(SuiteConfig, raw, "", file)
        object.__setattr__(suite, "path", str(file))
        if not suite.parts:
            raise ConfigError("a suite needs at least one part", "parts", file)
        return suite
    return load_config(file, data_root=data_root, overrides=overrides, check_data=check_data)


def load_suite_parts(
    suite: SuiteConfig,
    data_root: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    check_data: bool = False,
) -> list[ExperimentConfig]:
    """The experiment configs of a suite, each loaded with the same overrides and data checks."""
    configs = []
    for part in suite.parts:
        beside = Path(suite.path).parent / (part if part.endswith(".yaml") else f"{part}.yaml")
        configs.append(load_config(beside if beside.is_file() else part, data_root=data_root,
                                   overrides=overrides, check_data=check_data))
    return configs


def config_to_dict(config: ExperimentConfig) -> dict:
    """The config as plain data (what `config.yaml` of a run holds); `parse_config` reads it back equal."""
    return to_plain(config)


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
