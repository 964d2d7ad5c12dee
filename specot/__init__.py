"""specot: theory, simulation and exact verification of speculative decoding."""

__version__ = "0.1.0"
