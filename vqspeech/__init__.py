"""vqspeech: a speech codec and voice converter on VQ-VAE discrete codes."""

__version__ = "0.1.0"
