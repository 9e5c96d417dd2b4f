"""``vaa theorem``: Theorem 1 in numbers — the closed form, the corollaries'
limits, a Monte-Carlo check, and (given a ``vaa analyze`` folder) the theorem
fitted to the measured criteria of a real dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import plot_accuracy_curves
from .theorem import corollary_limits, fit_criterion, format_report, monte_carlo_accuracy, predicted_accuracy


def closed_form_text(n: int, d: float, sigma: float, samples: int = 20000, seed: int = 0) -> str:
    lim = corollary_limits(n, d, sigma)
    mc, se = monte_carlo_accuracy(n, d, sigma, samples_per_class=samples, seed=seed)
    lines = [
        f"Theorem 1 with n={n} classes, adjacent means d={d:g} apart, within-class std sigma={sigma:g} (d/sigma={d / sigma:.4g})",
        f"  S = integral_mu^(mu+d/2) N(mu, sigma^2) = {lim['S']:.6f}",
        f"  P = (1 - 2S)/n + 2S                    = {lim['P']:.6f}",
        f"  Monte-Carlo (maximum density, {samples} draws/class) = {mc:.6f} +- {se:.6f}  "
        f"(difference {mc - lim['P']:+.6f} = {(mc - lim['P']) / se if se > 0 else 0.0:+.2f} standard errors)",
        "Corollaries (closed form at extreme arguments, and the stated limit):",
        f"  d/sigma -> infinity : P = {lim['P_d_to_inf']:.6f}   (limit 1)",
        f"  d -> 0              : P = {lim['P_d_to_0']:.6f}   (limit 1/n = {lim['chance']:.6f})",
        f"  sigma -> infinity   : P = {lim['P_sigma_to_inf']:.6f}   (limit 1/n = {lim['chance']:.6f})",
        f"  n -> infinity       : P = {lim['P_n_to_inf']:.6f}   (limit 2S = {2 * lim['S']:.6f})",
        "  P against n (same d/sigma): "
        + ", ".join(f"n={k}: {float(predicted_accuracy(k, d, sigma)):.4f}" for k in (1, 2, 3, 5, 10)),
    ]
    return "\n".join(lines)


def measured_text(analysis: str | Path) -> tuple[str, object]:
    """Fit the theorem to F1 and F2 of a ``vaa analyze`` folder."""
    import pandas as pd

    frame = pd.read_csv(Path(analysis) / "per_pair.csv")
    classes = sorted(frame["gold"].astype(str).unique())
    labels = frame["gold"].astype(str).map({c: k for k, c in enumerate(classes)}).to_numpy()
    parts, fits = [], {}
    for criterion in ("F1", "F2"):
        fits[criterion] = fit_criterion(frame[criterion].to_numpy(dtype=np.float64), labels, classes)
        parts.append(format_report(fits[criterion], criterion))
    return "\n\n".join(parts), fits["F2"]


def theorem_text(
    n: int = 2,
    d: float = 1.0,
    sigma: float = 1.0,
    samples: int = 20000,
    seed: int = 0,
    analysis: str | Path | None = None,
    plot: str | Path | None = None,
) -> str:
    text = closed_form_text(n, d, sigma, samples, seed)
    mark = None
    if analysis is not None:
        measured, mark = measured_text(analysis)
        text += f"\n\nMeasured criteria ({analysis}):\n" + measured
    if plot is not None:
        plot_accuracy_curves(plot, mark=mark)
        text += f"\n\nplot written to {plot}"
    return text
