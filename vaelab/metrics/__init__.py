"""Disentanglement and clustering metrics (being written)."""
