"""diffrep: pre-trained diffusion models as representation learners."""

__version__ = "0.1.0"
