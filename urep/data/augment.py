"""Weak and strong (RandAugment-style) augmentation in pure TensorFlow, for `tf.data` CPU workers.

MultiMix's FixMatch branch (Sohn et al. 2020) needs a weak view (flip + small translation) and a strong view
(the weak transform, then random distortions from `STRONG_OPS`) of the same image; `weak_strong_pairs` makes
both inside one `map` call. Every function takes one image `(H, W, C)` float32 in [0, 1] and a stateless seed
of shape `(2,)`, and returns the same shape and range. Magnitudes and padding: docs/choices.md, "Weak and
strong augmentation".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tensorflow as tf

Seed = tf.Tensor
"""A stateless seed: an int tensor of shape (2,)."""

STRONG_OPS = (
    "autocontrast", "brightness", "contrast", "equalize", "identity", "posterize", "rotate", "sharpness",
    "shear_x", "shear_y", "solarize", "translate_x", "translate_y",
)
"""The strong-augmentation pool (Haque et al., ISBI 2021, Section 3.1), in the order ``op_index`` refers to."""

_FACTOR_RANGE = (0.05, 0.95)
_MAX_ROTATION_DEGREES = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.3
_POSTERIZE_BITS = (4, 8)


def _check_image(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"expected one image of shape (height, width, channels), got shape {image.shape}")
    if image.dtype != tf.float32:
        raise ValueError(f"expected a float32 image in [0, 1], got dtype {image.dtype.name}")
    return image


def _seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.shape != (2,) or not seed.dtype.is_integer:
        raise ValueError(f"seed must be an integer tensor of shape (2,), got shape {seed.shape} {seed.dtype.name}")
    return tf.cast(seed, tf.int64)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: ``degenerate + factor * (image - degenerate)``, clipped to [0, 1]."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _affine(image: tf.Tensor, transform: Sequence[tf.Tensor]) -> tf.Tensor:
    """Resample ``image`` at input points ``(a0 x + a1 y + a2, b0 x + b1 y + b2)`` of each output ``(x, y)``."""
    row = tf.cast(tf.stack([*transform, 0.0, 0.0]), tf.float32)[tf.newaxis]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=row, output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    return out[0]


def _centre(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return (shape[1] - 1.0) / 2.0, (shape[0] - 1.0) / 2.0


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel to [0, 1] (PIL ``autocontrast`` without cutoff); a constant channel is kept."""
    low = tf.reduce_min(image, axis=(0, 1), keepdims=True)
    high = tf.reduce_max(image, axis=(0, 1), keepdims=True)
    stretched = tf.math.divide_no_nan(image - low, high - low)
    return tf.where(high > low, stretched, image)


def brightness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blend with black: ``factor * image`` (PIL ``Brightness``)."""
    return _blend(tf.zeros_like(image), image, factor)


def contrast(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blend with the image's mean grey level (PIL ``Contrast``)."""
    return _blend(tf.reduce_mean(image) * tf.ones_like(image), image, factor)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalization of each channel on 256 levels; a constant channel is kept."""
    channels = []
    for c in range(image.shape[-1]):
        levels = tf.cast(tf.round(tf.clip_by_value(image[..., c], 0.0, 1.0) * 255.0), tf.int32)
        hist = tf.math.bincount(tf.reshape(levels, [-1]), minlength=256, maxlength=256, dtype=tf.float32)
        cdf = tf.cumsum(hist)
        cdf_min = tf.reduce_min(tf.where(hist > 0, cdf, tf.reduce_max(cdf)))
        total = cdf[-1]
        lut = tf.clip_by_value(tf.math.divide_no_nan(cdf - cdf_min, total - cdf_min), 0.0, 1.0)
        equalized = tf.gather(lut, levels)
        channels.append(tf.where(total > cdf_min, equalized, image[..., c]))
    return tf.stack(channels, axis=-1)


def posterize(image: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Keep the ``bits`` most significant bits of each 8-bit level (PIL ``posterize``)."""
    levels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.int32)
    shift = 8 - tf.cast(bits, tf.int32)
    kept = tf.bitwise.left_shift(tf.bitwise.right_shift(levels, shift), shift)
    return tf.cast(kept, tf.float32) / 255.0


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Rotate about the centre by ``degrees`` (counter-clockwise), filling with black."""
    theta = tf.cast(degrees, tf.float32) * math.pi / 180.0
    cx, cy = _centre(image)
    cos, sin = tf.cos(theta), tf.sin(theta)
    return _affine(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy])


def sharpness(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Blend with PIL's SMOOTH-filtered image (3x3 kernel, centre 5, others 1, /13; border unchanged)."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    channels = image.shape[-1]
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(image[tf.newaxis], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    interior = tf.pad(tf.ones_like(image[1:-1, 1:-1]), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(interior > 0, smooth, image)
    return _blend(degenerate, image, factor)


def shear_x(image: tf.Tensor, shear: tf.Tensor) -> tf.Tensor:
    """Horizontal shear about the centre row: input x = x + shear * (y - cy)."""
    _, cy = _centre(image)
    return _affine(image, [1.0, shear, -shear * cy, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, shear: tf.Tensor) -> tf.Tensor:
    """Vertical shear about the centre column: input y = y + shear * (x - cx)."""
    cx, _ = _centre(image)
    return _affine(image, [1.0, 0.0, 0.0, shear, 1.0, -shear * cx])


def solarize(image: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """Invert every pixel at or above ``threshold`` (PIL ``solarize``)."""
    return tf.where(image >= threshold, 1.0 - image, image)


def translate_x(image: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """Shift horizontally by ``fraction`` of the width, filling with black."""
    width = tf.cast(tf.shape(image)[1], tf.float32)
    return _affine(image, [1.0, 0.0, fraction * width, 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """Shift vertically by ``fraction`` of the height, filling with black."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    return _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, fraction * height])


def _lerp(low: float, high: float, magnitude: tf.Tensor) -> tf.Tensor:
    return low + (high - low) * magnitude


_OPS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "autocontrast": lambda x, m: autocontrast(x),
    "brightness": lambda x, m: brightness(x, _lerp(*_FACTOR_RANGE, m)),
    "contrast": lambda x, m: contrast(x, _lerp(*_FACTOR_RANGE, m)),
    "equalize": lambda x, m: equalize(x),
    "identity": lambda x, m: x,
    "posterize": lambda x, m: posterize(x, tf.round(_lerp(*_POSTERIZE_BITS, m))),
    "rotate": lambda x, m: rotate(x, _lerp(-_MAX_ROTATION_DEGREES, _MAX_ROTATION_DEGREES, m)),
    "sharpness": lambda x, m: sharpness(x, _lerp(*_FACTOR_RANGE, m)),
    "shear_x": lambda x, m: shear_x(x, _lerp(-_MAX_SHEAR, _MAX_SHEAR, m)),
    "shear_y": lambda x, m: shear_y(x, _lerp(-_MAX_SHEAR, _MAX_SHEAR, m)),
    "solarize": lambda x, m: solarize(x, m),
    "translate_x": lambda x, m: translate_x(x, _lerp(-_MAX_TRANSLATE, _MAX_TRANSLATE, m)),
    "translate_y": lambda x, m: translate_y(x, _lerp(-_MAX_TRANSLATE, _MAX_TRANSLATE, m)),
}


def apply_op(image: tf.Tensor, name: str, magnitude: float | tf.Tensor) -> tf.Tensor:
    """Apply one strong operation at a magnitude in [0, 1] mapped onto its range (docs/choices.md).

    Args:
        image: ``(H, W, C)`` float32 in [0, 1].
        name: one of ``STRONG_OPS``.
        magnitude: 0 -> the low end of the op's range, 1 -> the high end (e.g. rotate -30 .. +30 degrees).

    Returns:
        ``(H, W, C)`` float32 in [0, 1].

    Raises:
        ValueError: for an unknown op name or a bad image.
    """
    if name not in _OPS:
        raise ValueError(f"unknown strong augmentation {name!r}; expected one of {STRONG_OPS}")
    image = _check_image(image)
    out = _OPS[name](image, tf.cast(magnitude, tf.float32))
    return tf.ensure_shape(tf.clip_by_value(out, 0.0, 1.0), image.shape)


def _pad_pixels(size: int, pad_fraction: float) -> int:
    return min(int(round(size * pad_fraction)), size - 1)


def flip_and_shift(image: tf.Tensor, seed, pad_fraction: float = 0.125, flip: bool = True) -> tf.Tensor:
    """Random horizontal flip, then reflect-pad by ``pad_fraction`` of the size and random-crop back.

    Args:
        image: ``(H, W, C)`` float32 in [0, 1] with a static shape.
        seed: int tensor of shape ``(2,)``.
        pad_fraction: padding as a fraction of height/width (0.125 -> 32 px at 256); 0 disables the shift.
        flip: draw a horizontal flip with probability 0.5.

    Returns:
        ``(H, W, C)`` float32 in [0, 1].

    Raises:
        ValueError: on a bad image, seed or ``pad_fraction`` outside [0, 1).
    """
    image = _check_image(image)
    if not 0.0 <= pad_fraction < 1.0:
        raise ValueError(f"pad_fraction must be in [0, 1), got {pad_fraction}")
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), 2))
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    height, width, channels = image.shape
    pad_h, pad_w = _pad_pixels(height, pad_fraction), _pad_pixels(width, pad_fraction)
    if pad_h or pad_w:
        padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(padded, [height, width, channels], crop_seed)
    return image


def weak_augment(image: tf.Tensor, seed, pad_fraction: float = 0.125) -> tf.Tensor:
    """The weak view: ``flip_and_shift`` (flip + up to ``pad_fraction`` translation with reflect padding).

    Args:
        image: ``(H, W, C)`` float32 in [0, 1].
        seed: int tensor of shape ``(2,)``.
        pad_fraction: maximum shift as a fraction of the size (0.125 -> 32 px at 256, the public code's value).

    Returns:
        ``(H, W, C)`` float32 in [0, 1].
    """
    return flip_and_shift(image, seed, pad_fraction=pad_fraction)


def _validate_strong_options(n_ops: int, ops: Sequence[str], apply_probability: float) -> tuple[str, ...]:
    ops = tuple(ops)
    if not ops or any(op not in _OPS for op in ops):
        raise ValueError(f"ops must be a non-empty subset of {STRONG_OPS}, got {ops!r}")
    if n_ops < 0:
        raise ValueError(f"n_ops must be >= 0, got {n_ops}")
    if not 0.0 <= apply_probability <= 1.0:
        raise ValueError(f"apply_probability must be in [0, 1], got {apply_probability}")
    return ops


def strong_augment(
    image: tf.Tensor,
    seed,
    n_ops: int = 2,
    pad_fraction: float = 0.125,
    ops: Sequence[str] = STRONG_OPS,
    apply_probability: float = 0.5,
) -> tf.Tensor:
    """The strong view: flip + shift, then ``n_ops`` random operations from ``ops`` at random magnitudes.

    Args:
        image: ``(H, W, C)`` float32 in [0, 1].
        seed: int tensor of shape ``(2,)``.
        n_ops: operations drawn (uniformly, with replacement) per image (RandAugment's N; the paper's 2).
        pad_fraction: shift as a fraction of the size (32 px at 256; the public code's 4 px is fixed here).
        ops: the pool, a subset of ``STRONG_OPS``.
        apply_probability: each drawn operation is applied with this probability (0.5 as ``RandAugmentMC``).

    Returns:
        ``(H, W, C)`` float32 in [0, 1].

    Raises:
        ValueError: on an empty/unknown pool, negative ``n_ops`` or a probability outside [0, 1].
    """
    ops = _validate_strong_options(n_ops, ops, apply_probability)
    seeds = tf.random.experimental.stateless_split(_seed(seed), 1 + 3 * n_ops)
    image = flip_and_shift(image, seeds[0], pad_fraction=pad_fraction)
    shape = image.shape
    for i in range(n_ops):
        pick_seed, magnitude_seed, apply_seed = seeds[1 + 3 * i], seeds[2 + 3 * i], seeds[3 + 3 * i]
        index = tf.random.stateless_uniform([], pick_seed, minval=0, maxval=len(ops), dtype=tf.int32)
        magnitude = tf.random.stateless_uniform([], magnitude_seed)
        applied = tf.random.stateless_uniform([], apply_seed) < apply_probability
        current = image
        branches = [lambda op=op, x=current, m=magnitude: _OPS[op](x, m) for op in ops]
        changed = tf.switch_case(index, branches)
        image = tf.ensure_shape(tf.clip_by_value(tf.where(applied, changed, current), 0.0, 1.0), shape)
    return image


def _split_element(element) -> tuple[tf.Tensor, tuple]:
    if isinstance(element, (tuple, list)):
        if not element:
            raise ValueError("dataset elements must hold an image first, got an empty tuple")
        return element[0], tuple(element[1:])
    return element, ()


def _element_seed(seed: int, index: tf.Tensor, stream: int) -> tf.Tensor:
    base = tf.constant([seed, stream], dtype=tf.int64)
    return tf.random.experimental.stateless_fold_in(base, index)


def weakly_augmented(dataset: tf.data.Dataset, seed: int = 0, pad_fraction: float = 0.125,
                     num_parallel_calls: int = tf.data.AUTOTUNE) -> tf.data.Dataset:
    """Replace the image of every (unbatched) element by its weak view; other fields pass through.

    The element's position in the dataset (``enumerate``) is folded into ``seed``, so a repeated dataset gets
    fresh draws every epoch yet the stream is reproducible.

    Args:
        dataset: elements ``image`` ``(H, W, C)`` float32 in [0, 1] (static shape), or ``(image, *rest)``.
        seed: integer seed of the stream.
        pad_fraction: shift as a fraction of the size (see ``weak_augment``).
        num_parallel_calls: ``tf.data`` map parallelism (order is kept).

    Returns:
        A dataset of ``image`` or ``(image, *rest)`` like the input.
    """

    def view(index, element):
        image, rest = _split_element(element)
        weak = weak_augment(image, _element_seed(seed, index, 1), pad_fraction=pad_fraction)
        return (weak, *rest) if rest else weak

    return dataset.enumerate().map(view, num_parallel_calls=num_parallel_calls, deterministic=True)


def weak_strong_pairs(
    dataset: tf.data.Dataset,
    seed: int = 0,
    n_ops: int = 2,
    pad_fraction: float = 0.125,
    ops: Sequence[str] = STRONG_OPS,
    apply_probability: float = 0.5,
    num_parallel_calls: int = tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """Map each (unbatched) element to ``(weak, strong, *rest)``: two views of the SAME image.

    Both views are made from the one element inside one ``map`` call, so they are paired by construction,
    whatever shuffling or batching happens before or after. Extra fields (an id, a label) pass through.

    Args:
        dataset: elements ``image`` ``(H, W, C)`` float32 in [0, 1] (static shape), or ``(image, *rest)``.
        seed: integer; with the element's position it determines both views.
        n_ops: strong operations per image.
        pad_fraction: flip/shift padding fraction for both views.
        ops: the strong pool.
        apply_probability: probability of applying each drawn strong operation.
        num_parallel_calls: ``tf.data`` map parallelism (order is kept: ``deterministic=True``).

    Returns:
        A dataset of ``(weak, strong)`` or ``(weak, strong, *rest)``.

    Raises:
        ValueError: if the images are not rank-3 float32 or the options are invalid.
    """
    ops = _validate_strong_options(n_ops, ops, apply_probability)
    if not 0.0 <= pad_fraction < 1.0:
        raise ValueError(f"pad_fraction must be in [0, 1), got {pad_fraction}")

    def views(index, element):
        image, rest = _split_element(element)
        weak = weak_augment(image, _element_seed(seed, index, 2), pad_fraction=pad_fraction)
        strong = strong_augment(image, _element_seed(seed, index, 3), n_ops=n_ops, pad_fraction=pad_fraction,
                                ops=ops, apply_probability=apply_probability)
        return (weak, strong, *rest)

    return dataset.enumerate().map(views, num_parallel_calls=num_parallel_calls, deterministic=True)


# --------------------------------------------------------------------------------------------------------
# Paired (image, mask) augmentation for the heads and baselines (the authors' public Keras code's protocol)
# --------------------------------------------------------------------------------------------------------

def paired_augment(image: tf.Tensor, mask: tf.Tensor | None, seed, rotation: float = 5.0, zoom: float = 0.2,
                   horizontal_flip: bool = True, brightness: float = 0.0, contrast: float = 0.0,
                   gamma: float = 0.0) -> tuple[tf.Tensor, tf.Tensor | None]:
    """One random geometric transform applied identically to an image and its mask, then intensity changes
    of the image only.

    Geometric (as the authors' public Keras code's `ImageDataGenerator`: rotation 5 degrees, zoom 0.2,
    horizontal flip): a flip with probability 0.5, then a rotation by an angle uniform in +-``rotation``
    degrees and a zoom by a factor uniform in ``[1 - zoom, 1 + zoom]``, both about the centre, resampled
    bilinearly with the nearest edge pixel filling uncovered areas (Keras' default ``fill_mode="nearest"``).
    The mask is resampled with the same transform and thresholded at 0.5, so it stays binary.
    Intensity (ours; the public code has none): an additive brightness shift in +-``brightness``, a contrast
    factor in ``[1 - contrast, 1 + contrast]`` about the image mean, and ``x ** g`` with ``g`` in
    ``[1 - gamma, 1 + gamma]``, clipped to [0, 1]. A range of 0 disables that part.

    Args:
        image: ``(H, W, C)`` float32 in [0, 1] with a static shape.
        mask: ``(H, W, 1)`` float32 in {0, 1}, or None (classification).
        seed: int tensor of shape ``(2,)``.
        rotation, zoom, horizontal_flip, brightness, contrast, gamma: the ranges above.

    Returns:
        ``(image, mask)`` of the input shapes (``mask`` None when None was given).
    """
    image = _check_image(image)
    seeds = tf.random.experimental.stateless_split(_seed(seed), 6)
    height, width, channels = image.shape
    stack = image if mask is None else tf.concat([image, tf.cast(mask, tf.float32)], axis=-1)
    if horizontal_flip:
        stack = tf.image.stateless_random_flip_left_right(stack, seeds[0])
    if rotation > 0 or zoom > 0:
        theta = tf.random.stateless_uniform([], seeds[1], -rotation, rotation) * (math.pi / 180.0)
        scale = tf.random.stateless_uniform([], seeds[2], 1.0 - zoom, 1.0 + zoom)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        # output (x, y) reads input centre + (1 / scale) * R(theta) (out - centre): zoom > 1 enlarges
        a = tf.cos(theta) / scale
        b = tf.sin(theta) / scale
        transform = [a, -b, cx - a * cx + b * cy, b, a, cy - b * cx - a * cy]
        row = tf.cast(tf.stack([*transform, 0.0, 0.0]), tf.float32)[tf.newaxis]
        stack = tf.raw_ops.ImageProjectiveTransformV3(
            images=stack[tf.newaxis], transforms=row, output_shape=tf.constant([height, width]), fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST")[0]
    out_image = stack[..., :channels]
    out_mask = None if mask is None else tf.cast(stack[..., channels:] >= 0.5, tf.float32)
    if brightness > 0:
        out_image = out_image + tf.random.stateless_uniform([], seeds[3], -brightness, brightness)
    if contrast > 0:
        factor = tf.random.stateless_uniform([], seeds[4], 1.0 - contrast, 1.0 + contrast)
        mean = tf.reduce_mean(out_image)
        out_image = (out_image - mean) * factor + mean
    if gamma > 0:
        g = tf.random.stateless_uniform([], seeds[5], 1.0 - gamma, 1.0 + gamma)
        out_image = tf.pow(tf.clip_by_value(out_image, 0.0, 1.0), g)
    out_image = tf.ensure_shape(tf.clip_by_value(out_image, 0.0, 1.0), image.shape)
    if out_mask is not None:
        out_mask = tf.ensure_shape(out_mask, (height, width, 1))
    return out_image, out_mask
