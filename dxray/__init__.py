"""dxray: audit image classifiers for spurious features and biases with diffusion models."""

__version__ = "0.1.0"
