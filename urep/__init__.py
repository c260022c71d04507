"""urep: unified modality-specific representation learning (U-Rep / UMS-Rep) for medical images.

One encoder is trained once on a modality (as a denoising autoencoder, or on the task with most labels),
then truncated and its weights inherited by light task heads fine-tuned with the independent, alternating
or joint strategy. MultiMix is included as the semi-supervised peer.
"""

from urep.seed import seed_everything

__version__ = "0.1.0"

__all__ = ["seed_everything", "__version__"]
