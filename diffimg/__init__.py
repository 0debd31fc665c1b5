"""diffimg: differential filesystem images."""

__version__ = "0.1.0"
