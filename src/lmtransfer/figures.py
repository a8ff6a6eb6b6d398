"""Figures without pyplot: no backend is chosen and no global figure registry is touched, so the
library leaves matplotlib's state as the caller set it (a notebook keeps its inline backend)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(*grid: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A figure of ``figsize`` inches and its axes (``Figure.subplots`` arguments); ``fig.savefig`` writes it."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **kwargs)
