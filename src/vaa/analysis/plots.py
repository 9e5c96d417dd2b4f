"""The paper's figures as PNG files that read without the code: titles, axis
labels and legends everywhere. Figures are drawn on their own Agg canvas, so
nothing here touches pyplot's global state or needs a screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .roc import ROCResult


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_per_class(values: np.ndarray, labels: np.ndarray, class_names: Sequence[str], criterion: str, path: str | Path,
                   title: str = "", max_points: int = 3000, seed: int = 0) -> Path:
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
    return _save(fig, path)


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
    return _save(fig, path)


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", reference: dict[str, float] | None = None) -> Path:
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
    for ax, ylabel in zip(axes, ("AUC (oriented: max(AUC, 1-AUC))", "share of predictions flipped by the attack", "mean ||V1 - V2||")):
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
    return _save(fig, path)


def plot_losses(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, boundary: float | None = None, title: str = "") -> Path:
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
    return _save(fig, path)


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
    return _save(fig, path)


def plot_robustness(report: dict[str, Any], path: str | Path) -> Path:
    """Accuracy against eps (``vaa robustness``): one panel per attack
    (FGSM/PGD-K x L2/L-inf), one line per model; eps 0 is clean accuracy."""
    models = report["models"]
    attacks = list(dict.fromkeys(r["attack"] for r in models[0]["results"])) if models else []
    fig = Figure(figsize=(4.5 * max(1, len(attacks)), 4))
    for k, attack in enumerate(attacks):
        ax = fig.add_subplot(1, len(attacks), k + 1)
        for m in models:
            rows = [r for r in m["results"] if r["attack"] == attack]
            ax.plot([r["eps"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o", linewidth=1.2,
                    label=f"{m['name']} ({m['kind']})")
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy under attack (%)")
        ax.set_title(attack)
        ax.legend(fontsize=7)
    return _save(fig, path)
