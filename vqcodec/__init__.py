"""vqcodec: a learned image codec built on a residual VQ-VAE."""

__version__ = "0.1.0"
