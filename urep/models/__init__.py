"""Models: backbones, truncation with weight inheritance, task heads, the multi-task assembly, baselines.

Every backbone names the last layer of its encoder `encoder_out`; heads, Grad-CAM and checkpoints find
layers by name. See `docs/design.md` and the journal's Tables 4, 6, 8 and 10 for the parameter counts.
"""

from urep.models.assembly import MultiTaskModel
from urep.models.baselines import baseline_classifier, baseline_denoiser, baseline_like
from urep.models.batchnorm import BatchNorm, set_batchnorm_momentum
from urep.models.cdae import cdae, cdae_parameter_count, closest_constant_width, set_residual_skip
from urep.models.decoders import decoder_layers, segmentation_decoder
from urep.models.dilated_cnn import dilated_cnn, dilated_convolutions
from urep.models.heads import (
    classification_head,
    context_block,
    reconstruction_head_from_autoencoder,
    segmentation_head_from_autoencoder,
    segmentation_head_from_encoder,
)
from urep.models.inspection import last_conv_layer_name, parameter_counts
from urep.models.super_resolution import super_resolution
from urep.models.truncation import ENCODER_OUT, truncate
from urep.models.unet import unet

__all__ = [
    "BatchNorm",
    "ENCODER_OUT",
    "MultiTaskModel",
    "baseline_classifier",
    "baseline_denoiser",
    "baseline_like",
    "cdae",
    "cdae_parameter_count",
    "set_residual_skip",
    "classification_head",
    "closest_constant_width",
    "context_block",
    "decoder_layers",
    "dilated_cnn",
    "dilated_convolutions",
    "last_conv_layer_name",
    "parameter_counts",
    "reconstruction_head_from_autoencoder",
    "segmentation_decoder",
    "segmentation_head_from_autoencoder",
    "segmentation_head_from_encoder",
    "set_batchnorm_momentum",
    "super_resolution",
    "truncate",
    "unet",
]
