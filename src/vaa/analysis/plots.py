"""The analysis figures (Fig. 2, Fig. 3a/3b, Theorem 1) as PNG files that read
without the code: titles, axis labels and legends everywhere. Each is drawn on
its own Figure and written by :func:`vaa.figures.save_figure` (the figures
training and calibration draw themselves -- Fig. 5, the reliability diagram --
live in :mod:`vaa.figures`, below the stages that write them)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..figures import save_figure
from .roc import ROCResult
from .theorem import CriterionFit, overlap_mass, predicted_accuracy


def plot_per_class(
    values: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    criterion: str,
    path: str | Path,
    title: str = "",
    max_points: int = 3000,
    seed: int = 0,
) -> Path:
    """Fig. 2: each pair's criterion as a point in its gold class's column
    (jittered; at most ``max_points`` drawn), each class's mean as a line."""
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k}" for k in range(len(class_names))]
    for k, name in enumerate(class_names):
        v = values[labels == k]
        if v.size == 0:
            continue
        shown = v if v.size <= max_points // len(class_names) else rng.choice(v, max_points // len(class_names), replace=False)
        ax.scatter(k + rng.uniform(-0.3, 0.3, shown.size), shown, s=4, alpha=0.35, color=colours[k], label=f"{name} (n={v.size})")
        ax.hlines(v.mean(), k - 0.4, k + 0.4, color="black", linewidth=2)
        ax.annotate(f"mean {v.mean():.3g}", (k + 0.42, v.mean()), fontsize=8, va="center")
    ax.set_xticks(range(len(class_names)), list(class_names))
    ax.set_xlabel("gold class")
    ax.set_ylabel(criterion)
    if values.size and np.nanmin(values) > 0 and np.nanmax(values) / max(np.nanmin(values), 1e-12) > 1e3:
        ax.set_yscale("log")
    ax.set_title(title or f"Vulnerability per class ({criterion}); black line: class mean")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    return save_figure(fig, path)


def plot_roc(results: Sequence[ROCResult], path: str | Path, title: str = "") -> Path:
    """Fig. 3a: ROC curves of predicting the label from one criterion."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        for c in r.per_class:
            label = f"{r.criterion}: {c.positive_class}" if not r.binary else r.criterion
            ax.plot(c.fpr, c.tpr, label=f"{label} (AUC {c.auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC: label predicted from vulnerability alone")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_sweep(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", reference: dict[str, float] | None = None
) -> Path:
    """Fig. 3b and the signal check: AUC, flip rate and mean ||V1-V2|| per
    (criterion, norm) against eps. ``reference`` draws each criterion's AUC
    without any attack (eps = 0) as a dotted line."""
    fig = Figure(figsize=(13, 4.2))
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    combos = sorted({(r["criterion"], r["norm"]) for r in rows})
    for criterion, norm in combos:
        sel = sorted((r for r in rows if r["criterion"] == criterion and r["norm"] == norm), key=lambda r: r["eps"])
        sel = [r for r in sel if r["auc_oriented"] is not None]  # no AUC for single-class data
        if sel:
            axes[0].plot([r["eps"] for r in sel], [r["auc_oriented"] for r in sel], marker="o", label=f"{criterion}, {norm}")
    for norm in sorted({n for _, n in combos}):
        sel = sorted((r for r in rows if r["norm"] == norm and r["criterion"] == combos[0][0]), key=lambda r: r["eps"])
        axes[1].plot([r["eps"] for r in sel], [r["flip_rate"] for r in sel], marker="o", label=norm)
        axes[2].plot([r["eps"] for r in sel], [r["mean_distance"] for r in sel], marker="o", label=norm)
    for k, (criterion, value) in enumerate(sorted((reference or {}).items())):
        axes[0].axhline(value, linestyle=":", color=f"C{k + 5}", label=f"{criterion}: reference without attack")
    axes[0].axhline(0.5, linestyle="--", color="grey", label="chance")
    for ax, ylabel in zip(
        axes, ("AUC (oriented: max(AUC, 1-AUC))", "share of predictions flipped by the attack", "mean ||V1 - V2||")
    ):
        ax.set_xscale("log")
        ax.set_xlabel("eps")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[2].set_yscale("log")
    axes[0].set_title("AUC of one criterion")
    axes[1].set_title("attack success")
    axes[2].set_title("size of the vulnerability signal")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_accuracy_curves(
    path: str | PathLike[str],
    ns: Sequence[int] = (2, 3, 5, 10),
    d_over_sigma: np.ndarray | None = None,
    mark: CriterionFit | None = None,
) -> None:
    """Write a two-panel PNG of Theorem 1's accuracy curves to ``path``.

    Left: P against d/sigma, one line per n, with each n's chance level 1/n
    dashed in the same colour. Right: P against n = 1..20 for d/sigma in
    (0.5, 1, 2, 4), showing the fall towards 2S as n grows. If ``mark`` is
    given, its measured point (d/sigma, balanced_observed) and predicted point
    (d/sigma, predicted) are drawn on both panels, so a reader sees at once how
    far a real criterion sits from the idealised curve.

    Drawn on its own Figure (no pyplot state, no display needed).
    """
    ratios = np.linspace(0, 6, 121) if d_over_sigma is None else np.asarray(d_over_sigma, dtype=float)
    fig = Figure(figsize=(11, 4.5))
    ax_d, ax_n = fig.subplots(1, 2)

    for i, n in enumerate(ns):
        colour = f"C{i}"
        ax_d.plot(ratios, predicted_accuracy(n, ratios, 1.0), color=colour, label=f"n = {n}")
        ax_d.axhline(1.0 / n, color=colour, linestyle="--", linewidth=0.8, label=f"chance 1/{n}")
    ax_d.set_xlabel("d / sigma (gap between class means / within-class std)")
    ax_d.set_ylabel("expected accuracy P")
    ax_d.set_title("Theorem 1: P against d / sigma")
    ax_d.set_ylim(0.0, 1.02)

    n_grid = np.arange(1, 21)
    for i, ratio in enumerate((0.5, 1.0, 2.0, 4.0)):
        colour = f"C{i}"
        ax_n.plot(
            n_grid, predicted_accuracy(n_grid, ratio, 1.0), marker="o", markersize=3, color=colour, label=f"d/sigma = {ratio:g}"
        )
        ax_n.axhline(2.0 * float(overlap_mass(ratio, 1.0)), color=colour, linestyle=":", linewidth=0.8)
    ax_n.plot(n_grid, 1.0 / n_grid, color="grey", linestyle="--", linewidth=0.8, label="chance 1/n")
    ax_n.set_xticks(n_grid[::2])
    ax_n.set_xlabel("number of classes n")
    ax_n.set_ylabel("expected accuracy P")
    ax_n.set_title("Theorem 1: P against n (dotted: limit 2S)")
    ax_n.set_ylim(0.0, 1.02)

    if mark is not None and np.isfinite(mark.d_over_sigma):
        x = mark.d_over_sigma
        ax_d.plot(
            [x], [mark.balanced_observed], marker="*", markersize=12, color="black", linestyle="none", label="measured (balanced)"
        )
        ax_d.plot([x], [mark.predicted], marker="x", markersize=10, color="red", linestyle="none", label="predicted")
        ax_n.plot(
            [mark.n_classes],
            [mark.balanced_observed],
            marker="*",
            markersize=12,
            color="black",
            linestyle="none",
            label=f"measured (d/sigma = {x:.2f})",
        )
        ax_n.plot([mark.n_classes], [mark.predicted], marker="x", markersize=10, color="red", linestyle="none", label="predicted")

    ax_d.legend(fontsize=7, ncol=2, loc="lower right")
    ax_n.legend(fontsize=7, loc="best")
    save_figure(fig, path, dpi=100)


def plot_robustness(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against eps (``vaa robustness``): one panel per attack
    (FGSM/PGD-K x L2/L-inf), one line per model; eps 0 is clean accuracy.
    Also draws the seed summary of ``vaa.robustness.summarize_over_seeds``
    (mean with a ±1 std bar over seeds), the figure users of several seeds
    read instead of one plot per seed."""
    return save_figure(robustness_figure(report), path)


def robustness_figure(report: dict[str, Any]) -> Figure:
    """The figure of :func:`plot_robustness`, unsaved (tests read its lines)."""
    models = report["models"]
    attacks = list(dict.fromkeys(r["attack"] for r in models[0]["results"])) if models else []
    fig = Figure(figsize=(4.5 * max(1, len(attacks)), 4))
    for k, attack in enumerate(attacks):
        ax = fig.add_subplot(1, len(attacks), k + 1)
        for m in models:
            rows = [r for r in m["results"] if r["attack"] == attack]
            eps = [r["eps"] for r in rows]
            if "mean" in rows[0]:  # a summary over seeds
                ax.errorbar(
                    eps,
                    [100 * r["mean"] for r in rows],
                    yerr=[100 * r["std"] for r in rows],
                    marker="o",
                    linewidth=1.2,
                    capsize=3,
                    label=f"{m['name']} ({len(m['seeds'])} seed{'s' if len(m['seeds']) != 1 else ''})",
                )
            else:
                ax.plot(eps, [100 * r["accuracy"] for r in rows], marker="o", linewidth=1.2, label=f"{m['name']} ({m['kind']})")
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy under attack (%)")
        ax.set_title(attack)
        ax.legend(fontsize=7)
    return fig
