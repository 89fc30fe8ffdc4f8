"""The package version (one place; `vaelab.__version__` re-exports it)."""

__version__ = "0.1.0"
