"""The `urep relatedness` inputs: its standalone config, and the image sets of a config or an experiment.

`load_relatedness_config`/`parse_relatedness_config` validate the standalone YAML (`CONFIG_HELP`) into a
`RelatednessConfig` (errors are `ConfigError`s naming the key and the file); `relatedness_inputs` reads the
images of either config form (seeded samples, at most `max_images` per set) and the optional encoder, ready
for `urep.relatedness.relatedness_table`; `write_table` writes the table as CSV or JSON.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from urep.constraints import Rule
from urep.experiments.config import load_config, read_yaml, resolve_data_root
from urep.experiments.schema import ConfigError, build

logger = logging.getLogger(__name__)

#: What `urep relatedness --help` shows after its one-line description.
CONFIG_HELP = """\
CONFIG is either an experiment config (`urep run`'s YAML: the source set is the union of `source.data`, the
targets are the data sets named by the tasks' `data` and `test_data`) or this minimal standalone YAML::

    # relatedness.yaml -- roots are relative to --data-root, else $UREP_DATA_ROOT, else the current folder
    source: {dataset: shenzhen, root: shenzhen}          # dataset: a urep.data.datasets adapter name
    targets:
      montgomery: {dataset: montgomery, root: montgomery}
      doppler: {dataset: folder, root: doppler_tte47, options: {}, limit: 100}
    image_size: [64, 64]          # optional: default the encoder's input size, else 64x64
    encoder: models/source.keras  # optional, relative to this file: features at its `encoder_out`
    threshold: 4.0                # optional: see urep.relatedness.DEFAULT_THRESHOLD
    alpha: 0.05                   # optional: level of the MMD permutation test
    n_permutations: 200           # optional
    max_images: 400               # optional: seeded sample per set (the MMD kernel is n^2 in memory)
    seed: 0                       # optional

Each set: `dataset` and `root` (required), `options` (keyword arguments of the adapter) and `limit` (at most
this many images, a seeded sample; the smaller of `limit` and `max_images` applies). Errors name the key and
the file. Command-line flags override the file. Exit status 0, or 3 with `--fail-unrelated` when a target
looks unrelated.
"""

DEFAULT_IMAGE_SIZE = (64, 64)
DEFAULT_MAX_IMAGES = 400


def _known_adapter(name: str) -> str | None:
    from urep.data.datasets import ADAPTERS

    return None if name in ADAPTERS else f"unknown dataset {name!r}; expected one of {sorted(ADAPTERS)}"


def _image_sizes(size: tuple[int, int] | int) -> str | None:
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    return None if min(sizes) >= 8 else f"expected sizes >= 8, got {size!r}"


@dataclass(frozen=True)
class ImageSetSpec:
    """One image set of the standalone config.

    Attributes:
        dataset: adapter name for `urep.data.datasets.load` (`shenzhen`, `montgomery`, `folder`, ...).
        root: the data set's folder, relative to the data root unless absolute.
        options: keyword arguments for the adapter.
        limit: at most this many images (seeded sample); None: all (still capped by `max_images`).
    """

    dataset: Annotated[str, Rule(check=_known_adapter)]
    root: str
    options: dict[str, Any] = field(default_factory=dict)
    limit: Annotated[int | None, Rule(min=2)] = None


@dataclass(frozen=True)
class RelatednessConfig:
    """The standalone `urep relatedness` config (see `CONFIG_HELP`).

    Attributes:
        source: the source modality's images.
        targets: target name -> its images.
        image_size: `(height, width)`, or None for the encoder's input size (64x64 without an encoder).
        encoder: path of a saved Keras model (`.keras`), relative to the config file; None: thumbnails.
        threshold: normalized Fréchet threshold; None: `urep.relatedness.DEFAULT_THRESHOLD`.
        alpha: level of the MMD permutation test.
        n_permutations: MMD permutations.
        max_images: per-set cap (seeded sample).
        seed: seed of the samples, splits and permutations.
    """

    source: ImageSetSpec
    targets: Annotated[dict[str, ImageSetSpec], Rule(check=lambda v: None if v else "needs at least one target")]
    image_size: Annotated[tuple[int, int] | int | None, Rule(check=_image_sizes)] = None
    encoder: str | None = None
    threshold: Annotated[float | None, Rule(gt=0)] = None
    alpha: Annotated[float, Rule(gt=0, lt=1)] = 0.05
    n_permutations: Annotated[int, Rule(min=1)] = 200
    max_images: Annotated[int, Rule(min=4)] = DEFAULT_MAX_IMAGES
    seed: Annotated[int, Rule(min=0)] = 0
    path: str | None = field(default=None, compare=False)


def is_standalone(raw: Any) -> bool:
    """Whether parsed YAML looks like the standalone format (a `targets` key, or `source.dataset`)."""
    if not isinstance(raw, dict):
        return False
    source = raw.get("source")
    return "targets" in raw or (isinstance(source, dict) and "dataset" in source)


def parse_relatedness_config(raw: Any, file: str | os.PathLike | None = None) -> RelatednessConfig:
    """Validate parsed YAML into a `RelatednessConfig`.

    Raises:
        urep.experiments.schema.ConfigError: naming the key path and `file` (unknown or missing key, wrong
            type, unknown dataset adapter, empty targets, bad numbers).
    """
    file = str(file) if file is not None else None
    if isinstance(raw, dict) and "path" in raw:
        raise ConfigError("unknown key 'path'", "path", file)
    config = build(RelatednessConfig, raw, "", file)  # every field rule is declared on the dataclasses
    size = config.image_size
    if size is not None:
        size = (size, size) if isinstance(size, int) else size
    encoder = config.encoder
    if encoder is not None and file is not None and not Path(encoder).is_absolute():
        encoder = str(Path(file).parent / encoder)
    return RelatednessConfig(
        source=config.source, targets=config.targets, image_size=size, encoder=encoder,
        threshold=config.threshold, alpha=config.alpha, n_permutations=config.n_permutations,
        max_images=config.max_images, seed=config.seed, path=file,
    )


def read_relatedness_yaml(path: str | os.PathLike) -> Any:
    """The parsed YAML of a `urep relatedness` config (either form).

    Raises:
        urep.experiments.schema.ConfigError: no such file, or not valid YAML.
    """
    if not Path(path).is_file():
        raise ConfigError("config file not found", "", path)
    return read_yaml(path)


def load_relatedness_config(path: str | os.PathLike) -> RelatednessConfig:
    """Read and validate a standalone relatedness YAML (see `CONFIG_HELP`)."""
    path = Path(path)
    return parse_relatedness_config(read_relatedness_yaml(path), path)


def _sample(df, limit: int | None, max_images: int, seed: int):
    cap = max_images if limit is None else min(limit, max_images)
    if len(df) <= cap:
        return df
    logger.info("using a seeded sample of %d of %d images", cap, len(df))
    return df.sample(n=cap, random_state=seed).sort_index()


def _read_images(df, size: tuple[int, int]):
    import numpy as np

    from urep.data import read_image

    return np.stack([read_image(path, size=size) for path in df["image"]]).astype("float32")


def _set_frame(spec: ImageSetSpec, key: str, config: RelatednessConfig, data_root: str | None):
    from urep.data import datasets

    root = Path(spec.root).expanduser()
    root = root if root.is_absolute() else resolve_data_root(data_root) / root
    if not root.is_dir():
        raise ConfigError(
            f"data folder {str(root)!r} does not exist (pass --data-root or set $UREP_DATA_ROOT)",
            f"{key}.root", config.path,
        )
    df = datasets.load(spec.dataset, root, **spec.options)
    return _sample(df, spec.limit, config.max_images, config.seed)


def _load_encoder(path: str | None):
    if path is None:
        return None
    import urep.models  # noqa: F401  (registers urep's serializable layers before loading)
    from urep.models import cross_stitch  # noqa: F401

    if not Path(path).is_file():
        raise FileNotFoundError(f"encoder model {path!r} not found")
    from urep.io import load_keras_model

    return load_keras_model(path)


def _image_size(configured, encoder) -> tuple[int, int]:
    if configured is not None:
        return tuple(int(v) for v in configured)
    if encoder is not None:
        height, width = encoder.inputs[0].shape[1:3]
        if height is not None and width is not None:
            return int(height), int(width)
    return DEFAULT_IMAGE_SIZE


def standalone_inputs(config: RelatednessConfig, data_root: str | None = None, encoder_path: str | None = None):
    """Source images, target images and the encoder of a standalone config.

    Returns:
        `(source_images (n, H, W), {target: (m, H, W)}, encoder or None)`.
    """
    encoder = _load_encoder(encoder_path or config.encoder)
    size = _image_size(config.image_size, encoder)
    source = _read_images(_set_frame(config.source, "source", config, data_root), size)
    targets = {
        name: _read_images(_set_frame(spec, f"targets.{name}", config, data_root), size)
        for name, spec in config.targets.items()
    }
    return source, targets, encoder


def experiment_inputs(path: Path, data_root: str | None, encoder_path: str | None, max_images: int, seed: int):
    """Source and target images of an experiment config: `source.data` vs the tasks' data sets.

    Phantom sources are generated into a temporary folder that is removed afterwards.
    """
    import pandas as pd

    from urep.experiments.sources import load_sources

    config = load_config(path, data_root=data_root, check_data=True)
    if not config.source.data:
        raise ConfigError("the experiment has no source data to compare with", "source.data", path)
    target_names: list[str] = []
    for task in config.tasks:
        for name in (task.data, task.test_data):
            if name is not None and name not in target_names:
                target_names.append(name)
    if not target_names:
        raise ConfigError("the experiment has no task data to compare with the source", "tasks", path)
    encoder = _load_encoder(encoder_path)
    size = _image_size(config.image_size, encoder)
    with tempfile.TemporaryDirectory(prefix="urep-relatedness-") as run_dir:
        frames = load_sources(config, run_dir, data_root)
        source_df = pd.concat([frames[name] for name in config.source.data], ignore_index=True)
        source = _read_images(_sample(source_df, None, max_images, seed), size)
        targets = {name: _read_images(_sample(frames[name], None, max_images, seed), size) for name in target_names}
    return source, targets, encoder


@dataclass
class RelatednessInputs:
    """The images to compare and the settings of one `urep relatedness` call.

    Attributes:
        config: the standalone config (for an experiment config: the defaults, with `max_images`).
        source: source images `(n, H, W)`.
        targets: target name -> images `(m, H, W)`.
        encoder: the feature encoder, or None (thumbnails).
        source_name: how the table names the source.
    """

    config: RelatednessConfig
    source: Any
    targets: dict[str, Any]
    encoder: Any
    source_name: str


def relatedness_inputs(path: str | os.PathLike, data_root: str | None = None, encoder_path: str | None = None,
                       max_images: int | None = None) -> RelatednessInputs:
    """Read a standalone relatedness config or an experiment config and the images it names.

    Args:
        path: the YAML file (either form, told apart by `is_standalone`).
        data_root: folder the data roots are relative to (see `resolve_data_root`).
        encoder_path: a saved Keras model overriding the config's `encoder`.
        max_images: overrides `max_images` (None: the config's, else `DEFAULT_MAX_IMAGES`).

    Raises:
        urep.experiments.schema.ConfigError: invalid or missing config, naming the key and the file.
        urep.data.DatasetError, urep.data.ImageReadError, FileNotFoundError: unreadable data or encoder.
    """
    path = Path(path)
    raw = read_relatedness_yaml(path)
    if is_standalone(raw):
        config = parse_relatedness_config(raw, path)
        if max_images is not None:
            config = replace(config, max_images=max_images)
        source, targets, encoder = standalone_inputs(config, data_root, encoder_path)
        return RelatednessInputs(config, source, targets, encoder, config.source.dataset)
    config = RelatednessConfig(source=ImageSetSpec("", ""), targets={}, path=str(path),
                               max_images=max_images or DEFAULT_MAX_IMAGES)
    source, targets, encoder = experiment_inputs(path, data_root, encoder_path, config.max_images, config.seed)
    return RelatednessInputs(config, source, targets, encoder, "the source data")


def write_table(table, path: str | os.PathLike) -> None:
    """Write a `relatedness_table` to a `.json` (`{"table": [rows]}`) or `.csv` file, atomically."""
    from urep.io import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix == ".json":
        atomic_write_json(path, {"table": table.reset_index().to_dict(orient="records")})
    else:
        atomic_write_text(path, table.to_csv())
    logger.info("wrote %s", path)
