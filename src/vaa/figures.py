"""Writing figures, and the two figures the stages draw themselves.

:func:`save_figure` is the one way vaa writes a PNG: a Figure on its own Agg
canvas (no pyplot global state, no display), laid out, written through a
folder it creates. Fig. 5 (the loss across both stages, drawn at the end of
stage two and by ``vaa reproduce``) and the reliability diagram (``vaa
calibrate``) live here rather than in :mod:`vaa.analysis.plots` because the
stages that draw them sit below the analysis layer (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | PathLike[str], dpi: int = 120) -> Path:
    """Lay out ``fig`` and write it as a PNG to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=dpi)
    return path


def plot_losses(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, boundary: float | None = None, title: str = ""
) -> Path:
    """Fig. 5: training loss per logged batch window across both stages.
    ``curves`` are (label, steps, losses); ``boundary`` marks where stage two starts."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for label, steps, losses in curves:
        ax.plot(steps, losses, linewidth=1, label=label)
    if boundary is not None:
        ax.axvline(boundary, linestyle="--", color="grey", label="stage two starts")
    ax.set_xlabel("training batches (both stages)")
    ax.set_ylabel("training loss (mean over the last logged batches)")
    ax.set_title(title or "Training loss across stage one and stage two")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_reliability(bins: dict[str, Sequence[dict[str, float]]], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence
    bin, one line per rule (e.g. before/after re-fitting); the diagonal is a
    perfectly calibrated model, marker area the bin's share of pairs."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for k, (name, rows) in enumerate(bins.items()):
        if not rows:
            continue
        total = sum(r["pairs"] for r in rows)
        conf = [r["confidence"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        ax.plot(conf, acc, marker="o", color=f"C{k}", label=name)
        ax.scatter(conf, acc, s=[600 * r["pairs"] / total for r in rows], color=f"C{k}", alpha=0.3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in bin (top class)")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title or "Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)
