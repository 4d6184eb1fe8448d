"""Shared code of the report's notebooks: data, models, training, results."""

from .device import flush_denormals

# before torch starts its CPU worker threads, so that every one of them inherits flush-to-zero
flush_denormals()

__version__ = "0.1.0"
