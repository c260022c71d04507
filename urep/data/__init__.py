"""The data layer: read images and masks, adapt public datasets, split by patient, add noise, phantoms, tf.data.

Light on purpose: importing `urep.data` pulls in NumPy and OpenCV only. The submodules are imported by name:
`urep.data.datasets`, `urep.data.splits`, `urep.data.noise`, `urep.data.phantoms`, `urep.data.pipeline`.
"""

from urep.data.errors import DatasetError, ImageReadError
from urep.data.normalization import MeanNormalizer
from urep.data.readers import combine_masks, image_shape, read_image, read_mask

__all__ = [
    "DatasetError",
    "ImageReadError",
    "MeanNormalizer",
    "combine_masks",
    "image_shape",
    "read_image",
    "read_mask",
]
