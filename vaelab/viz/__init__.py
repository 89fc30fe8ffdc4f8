"""Plots, GIFs and the HTML report (being written)."""
