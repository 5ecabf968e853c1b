"""The package version (a module of its own so that any floor can read it without importing ``medseg``)."""

__version__ = "0.1.0"
