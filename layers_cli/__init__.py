"""Layers: a local-first AI gateway. The public surface is kept small on purpose."""

__version__ = "0.1.0"

__all__ = ["__version__"]
