"""Shared code of the report's notebooks: data, models, training, results."""

__version__ = "0.1.0"
