"""Theorem 1 of the VAA paper: how well a single scalar criterion can separate classes.

Zhang et al. (COLING 2020) argue that the vulnerability of an input (the criteria
F1 / F2 measured after an FGSM attack) carries label information. Their Theorem 1
makes this quantitative under an idealised model: ``n`` classes whose criterion
values are normal with a common standard deviation ``sigma`` and means evenly
spaced ``d`` apart. Classifying a value by maximum density (which, with equal
variances, is the nearest mean) then has expected accuracy, classes equally
likely,

    P(n, d, sigma) = (1 - 2S) / n + 2S,
    S = integral_mu^{mu + d/2} N(x; mu, sigma^2) dx = Phi(d / (2 sigma)) - 1/2.

Derivation: an inner class is right when its value falls within d/2 of its own
mean (probability 2S); the two end classes are also right on their whole outer
half (probability 1/2 + S). Averaging, (n - 2) * 2S + 2 * (1/2 + S) over n gives
the formula.

Corollaries (checked numerically by :func:`corollary_limits` and the tests):
P grows with d / sigma; P -> 1 as d / sigma -> infinity; P -> 1/n (chance) as
d -> 0 or sigma -> infinity; P -> 2S as n -> infinity; P is non-increasing in n
for fixed d / sigma; P depends on d and sigma only through d / sigma.

This module provides the closed form, a Monte-Carlo check of it, and the bridge
to real data: :func:`fit_criterion` estimates d and sigma from measured
criterion values, computes the predicted P, and measures what a simple
classifier on the same values actually achieves, so the theorem can be held
against the data (:func:`format_report`; the figure is
:func:`vaa.analysis.plots.plot_accuracy_curves`).

Everything here is a pure function of its arguments; no module-level state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

__all__ = [
    "CriterionFit",
    "corollary_limits",
    "fit_criterion",
    "format_report",
    "monte_carlo_accuracy",
    "overlap_mass",
    "predicted_accuracy",
]

ArrayLike = float | int | np.ndarray | Sequence[float]


# ---------------------------------------------------------------------------
# Closed form
# ---------------------------------------------------------------------------


def overlap_mass(d: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Return S = Phi(d / (2 sigma)) - 1/2, vectorised over ``d`` and ``sigma``.

    S is the probability mass of N(mu, sigma^2) between the class mean and the
    midpoint to the next mean, i.e. half the probability that a draw is nearer
    its own mean than a neighbour's. It is computed as ``erf(d / (2 sqrt(2)
    sigma)) / 2`` rather than ``Phi(...) - 0.5`` so that tiny ``d / sigma`` keeps
    full relative precision (no cancellation against 0.5).

    Raises ValueError if any ``sigma`` is not > 0, any ``d`` is negative, or
    either contains NaN: the theorem is stated for a positive spread and a
    non-negative gap, and a silent NaN would poison every downstream number.
    Infinite values are allowed (d = inf gives S = 1/2, sigma = inf gives 0).
    """
    d_arr = np.asarray(d, dtype=float)
    s_arr = np.asarray(sigma, dtype=float)
    if np.any(np.isnan(d_arr)) or np.any(np.isnan(s_arr)):
        raise ValueError("d and sigma must not be NaN")
    if np.any(s_arr <= 0):
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if np.any(d_arr < 0):
        raise ValueError(f"d must be >= 0 (a distance between means), got {d!r}")
    with np.errstate(invalid="ignore"):
        ratio = d_arr / s_arr
    # inf / inf is the only way to get NaN here; such a ratio is undefined.
    if np.any(np.isnan(ratio)):
        raise ValueError("d / sigma is undefined when both are infinite")
    return np.asarray(0.5 * erf(ratio / (2.0 * np.sqrt(2.0))))


def _check_n(n: int | np.ndarray | Sequence[int]) -> np.ndarray:
    """Validate class counts: integers >= 1 (integral floats such as 1e9 accepted)."""
    n_arr = np.asarray(n)
    if n_arr.dtype == bool or not (np.issubdtype(n_arr.dtype, np.integer) or np.issubdtype(n_arr.dtype, np.floating)):
        raise ValueError(f"n must be an integer number of classes, got {n!r}")
    n_float = n_arr.astype(float)
    if np.any(~np.isfinite(n_float)) or np.any(n_float != np.round(n_float)):
        raise ValueError(f"n must be an integer number of classes, got {n!r}")
    if np.any(n_float < 1):
        raise ValueError(f"n must be >= 1, got {n!r}")
    return n_float


def predicted_accuracy(n: int | np.ndarray | Sequence[int], d: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Return Theorem 1's expected accuracy P = (1 - 2S)/n + 2S, vectorised.

    ``n``, ``d`` and ``sigma`` broadcast against each other. ``n = 1`` gives
    P = 1 (one class cannot be confused), which the formula yields on its own.
    Raises ValueError for n that is not an integer >= 1 and for the invalid
    ``d`` / ``sigma`` that :func:`overlap_mass` rejects.
    """
    n_float = _check_n(n)
    two_s = 2.0 * overlap_mass(d, sigma)
    return np.asarray((1.0 - two_s) / n_float + two_s)


def corollary_limits(n: int, d: float, sigma: float) -> dict[str, float]:
    """Evaluate the corollaries' limits numerically from the closed form.

    The values are computed at extreme arguments rather than written down, so
    that a test can compare them with the limits the paper states (P -> 1,
    P -> 1/n, P -> 2S) and catch a wrong formula:

    - ``"P"``: P(n, d, sigma) itself;
    - ``"P_d_to_inf"``: P at d / sigma = 1e6 (stated limit 1);
    - ``"P_d_to_0"``: P at d / sigma = 1e-9 (stated limit 1/n, chance);
    - ``"P_sigma_to_inf"``: P at sigma = 1e9 * max(d, 1) (stated limit 1/n);
    - ``"P_n_to_inf"``: P with n = 1e9 classes (stated limit 2S);
    - ``"chance"``: 1/n, the accuracy of guessing;
    - ``"S"``: the overlap mass S(d, sigma), so the caller can form 2S.
    """
    n_float = float(_check_n(n))
    s = float(overlap_mass(d, sigma))
    return {
        "P": float(predicted_accuracy(n, d, sigma)),
        "P_d_to_inf": float(predicted_accuracy(n, 1e6 * sigma, sigma)),
        "P_d_to_0": float(predicted_accuracy(n, 1e-9 * sigma, sigma)),
        "P_sigma_to_inf": float(predicted_accuracy(n, d, 1e9 * max(float(d), 1.0))),
        "P_n_to_inf": float(predicted_accuracy(10**9, d, sigma)),
        "chance": 1.0 / n_float,
        "S": s,
    }


# ---------------------------------------------------------------------------
# Monte-Carlo check
# ---------------------------------------------------------------------------


def monte_carlo_accuracy(
    n: int,
    d: float,
    sigma: float,
    samples_per_class: int = 20000,
    seed: int = 0,
) -> tuple[float, float]:
    """Estimate the maximum-density classifier's accuracy by simulation.

    Draws ``samples_per_class`` values from each of n normals with means
    0, d, ..., (n-1) d and standard deviation ``sigma``, labels each draw with
    the argmax of the n normal densities (ties go to the lowest index), and
    returns ``(accuracy, standard_error)``. The classes have equal counts, so
    accuracy is the mean of the per-class accuracies p_k and the (stratified)
    standard error is sqrt(sum_k p_k (1 - p_k) / m) / n with m draws per class.

    This is an independent check on :func:`predicted_accuracy`: it uses the
    densities directly and never the closed form.
    """
    n_int = int(_check_n(n))
    overlap_mass(d, sigma)  # validates d >= 0 and sigma > 0
    if not np.isfinite(d) or not np.isfinite(sigma):
        raise ValueError("monte_carlo_accuracy needs finite d and sigma")
    if int(samples_per_class) < 2:
        raise ValueError(f"samples_per_class must be >= 2, got {samples_per_class!r}")
    m = int(samples_per_class)
    rng = np.random.default_rng(seed)
    means = np.arange(n_int, dtype=float) * float(d)
    draws = rng.normal(loc=means[:, None], scale=float(sigma), size=(n_int, m))
    # Log-densities of every draw under every class: shape (n, m, n).
    z = (draws[:, :, None] - means[None, None, :]) / float(sigma)
    log_pdf = -0.5 * z**2 - np.log(float(sigma)) - 0.5 * np.log(2.0 * np.pi)
    predicted = np.argmax(log_pdf, axis=2)
    per_class = np.mean(predicted == np.arange(n_int)[:, None], axis=1)
    accuracy = float(per_class.mean())
    stderr = float(np.sqrt(np.sum(per_class * (1.0 - per_class)) / m) / n_int)
    return accuracy, stderr


# ---------------------------------------------------------------------------
# Fitting the theorem to a measured criterion
# ---------------------------------------------------------------------------


@dataclass
class CriterionFit:
    """What Theorem 1 says about one measured criterion on one dataset.

    Per-class lists are in the order of ``class_names`` given to
    :func:`fit_criterion` (classes without samples left out). ``d`` is the mean
    gap between adjacent class means after sorting them, i.e.
    (max mean - min mean) / (n - 1); the theorem assumes evenly spaced means, so
    for n > 2 this is an approximation. ``sigma`` is the pooled within-class
    standard deviation (each class's variance weighted by its degrees of
    freedom), since the theorem assumes one common variance.

    ``observed`` is the plain accuracy of the rule named in ``observed_rule``;
    ``balanced_observed`` is its mean per-class recall. Theorem 1 assumes
    equally likely classes, so ``predicted`` should be compared with
    ``balanced_observed``. For the best-threshold rule, ``threshold`` and
    ``high_class`` describe it: values above ``threshold`` are predicted
    ``high_class``.
    """

    classes: list[str]
    means: list[float]
    stds: list[float]
    counts: list[int]
    d: float
    sigma: float
    d_over_sigma: float
    predicted: float
    observed: float
    observed_rule: str
    balanced_observed: float
    threshold: float | None = None
    high_class: str | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes that had samples."""
        return len(self.classes)

    @property
    def chance(self) -> float:
        """Balanced accuracy of guessing, 1/n: the floor P falls to as d -> 0."""
        return 1.0 / len(self.classes)


def _cut_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cut between consecutive distinct values, ascending (plus -inf and
    +inf: everything on one side), with how many values of ``a`` and of ``b``
    fall below it. The counts come from scikit-learn's ``roc_curve`` (b as
    the positives, no threshold dropped): at threshold values[j] it counts
    the values at or above it, i.e. those above cut j."""
    from sklearn.metrics import roc_curve

    n_a, n_b = len(a), len(b)
    fpr, tpr, thresholds = roc_curve(np.r_[np.zeros(n_a, bool), np.ones(n_b, bool)], np.r_[a, b], drop_intermediate=False)
    values = thresholds[1:][::-1]  # the distinct values, ascending (thresholds[0] is +inf: nothing above)
    above_a = np.rint(fpr[::-1] * n_a).astype(np.int64)  # exact counts back from the rates
    above_b = np.rint(tpr[::-1] * n_b).astype(np.int64)
    cuts = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2.0, [np.inf]])
    return n_a - above_a, n_b - above_b, cuts


def _best_threshold(
    groups: list[np.ndarray],
) -> tuple[float, float, float, int]:
    """Best single threshold between two groups, by balanced accuracy.

    Tries every cut between consecutive distinct values (plus "everything on
    one side") in both directions. Ties in balanced accuracy go to the higher
    plain accuracy, then to the first cut found, so the result is deterministic.
    Returns (threshold, balanced accuracy, plain accuracy, index of the group
    predicted for values above the threshold).
    """
    low_a, low_b, cuts = _cut_counts(groups[0], groups[1])
    n_a, n_b = len(groups[0]), len(groups[1])

    best: tuple[float, float, float, int] | None = None
    # Direction 0: group a low, group b high. Direction 1: the reverse.
    for high, correct_a, correct_b in (
        (1, low_a, n_b - low_b),
        (0, n_a - low_a, low_b),
    ):
        balanced = 0.5 * (correct_a / n_a + correct_b / n_b)
        plain = (correct_a + correct_b) / (n_a + n_b)
        # lexsort: last key is primary.
        order = np.lexsort((np.arange(len(cuts)), -plain, -balanced))
        j = int(order[0])
        candidate = (float(cuts[j]), float(balanced[j]), float(plain[j]), high)
        if best is None or (candidate[1], candidate[2]) > (best[1], best[2]):
            best = candidate
    assert best is not None
    return best


def fit_criterion(values: np.ndarray, labels: np.ndarray, class_names: list[str]) -> CriterionFit:
    """Estimate Theorem 1's d and sigma from criterion values and test its prediction.

    ``values`` are one criterion (e.g. F2) per example, ``labels`` integer
    indices into ``class_names``. Classes with no samples are left out; the rest
    must number at least two and each have at least two samples (ValueError
    otherwise), because a standard deviation needs two points.

    The observed accuracy uses the classifier the theorem describes, fitted to
    the data: for two classes, the single threshold (and direction) with the
    best balanced accuracy, which is what maximum density reduces to for two
    equal-variance normals; for more classes, the nearest class mean. Both the
    plain and the balanced accuracy of that rule are reported; compare the
    prediction with the balanced one, since the theorem assumes equally likely
    classes. Note the observed figure is measured on the same data the rule was
    fitted to, so it is slightly optimistic for small samples.
    """
    vals, labs = _checked_inputs(values, labels, class_names)
    names = list(class_names)
    present = [k for k in range(len(names)) if np.any(labs == k)]
    if len(present) < 2:
        raise ValueError(f"need at least 2 classes with samples, got {len(present)}")
    groups = [vals[labs == k] for k in present]
    small = [names[k] for k, g in zip(present, groups) if len(g) < 2]
    if small:
        raise ValueError(f"every class needs at least 2 samples; too few for {small}")

    counts, means, stds, d, sigma = _estimate_d_sigma(groups)
    d_over_sigma, predicted = _prediction(len(present), d, sigma)
    threshold: float | None = None
    high_class: str | None = None
    if len(present) == 2:
        threshold, balanced, plain, high = _best_threshold(groups)
        high_class = names[present[high]]
        rule = "best threshold"
    else:
        rule = "nearest mean"
        balanced, plain = _nearest_mean_accuracy(groups, means)

    return CriterionFit(
        classes=[names[k] for k in present],
        means=[float(m) for m in means],
        stds=[float(s) for s in stds],
        counts=counts,
        d=d,
        sigma=sigma,
        d_over_sigma=float(d_over_sigma),
        predicted=predicted,
        observed=float(plain),
        observed_rule=rule,
        balanced_observed=float(balanced),
        threshold=threshold,
        high_class=high_class,
    )


def _checked_inputs(values: np.ndarray, labels: np.ndarray, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Values as finite floats and labels as integer indices into
    ``class_names``, or ValueError saying what is wrong."""
    vals = np.asarray(values, dtype=float).ravel()
    labs_raw = np.asarray(labels).ravel()
    if vals.shape != labs_raw.shape:
        raise ValueError(f"values and labels must have the same length, got {vals.size} and {labs_raw.size}")
    if not np.all(np.isfinite(vals)):
        raise ValueError("criterion values must be finite")
    integral = np.issubdtype(labs_raw.dtype, np.integer) or (
        np.issubdtype(labs_raw.dtype, np.floating)
        and bool(np.all(np.isfinite(labs_raw)))
        and bool(np.all(labs_raw == np.round(labs_raw)))
    )
    if labs_raw.dtype == bool or not integral:
        raise ValueError("labels must be integer indices into class_names")
    labs = labs_raw.astype(np.int64)
    if labs.size and (labs.min() < 0 or labs.max() >= len(class_names)):
        raise ValueError(f"labels must lie in [0, {len(class_names)}), got range [{labs.min()}, {labs.max()}]")
    return vals, labs


def _estimate_d_sigma(groups: list[np.ndarray]) -> tuple[list[int], np.ndarray, np.ndarray, float, float]:
    """(counts, means, stds, d, sigma): d is the mean gap between consecutive
    sorted class means, sigma the pooled within-class std (ddof = 1 per class)."""
    n = len(groups)
    counts = [int(len(g)) for g in groups]
    means = np.array([g.mean() for g in groups])
    variances = np.array([g.var(ddof=1) for g in groups])
    stds = np.sqrt(variances)
    sigma = float(np.sqrt(np.sum((np.array(counts) - 1) * variances) / (sum(counts) - n)))
    d = float(np.mean(np.diff(np.sort(means))))
    return counts, means, stds, d, sigma


def _prediction(n: int, d: float, sigma: float) -> tuple[float, float]:
    """(d / sigma, the theorem's P), with the degenerate cases spelled out."""
    if sigma > 0:
        return d / sigma, float(predicted_accuracy(n, d, sigma))
    if d > 0:  # every class constant, classes distinct: perfectly separable
        return float("inf"), 1.0
    return 0.0, 1.0 / n  # every value identical: nothing to separate


def _nearest_mean_accuracy(groups: list[np.ndarray], means: np.ndarray) -> tuple[float, float]:
    """(balanced, plain) accuracy of assigning each value to the nearest class mean."""
    recalls = []
    correct = 0
    for k, g in enumerate(groups):
        nearest = np.argmin(np.abs(g[:, None] - means[None, :]), axis=1)
        hits = int(np.sum(nearest == k))
        recalls.append(hits / len(g))
        correct += hits
    return float(np.mean(recalls)), correct / sum(len(g) for g in groups)


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def format_report(fit: CriterionFit, criterion: str) -> str:
    """Render a fit as a plain-text table, for logs and RESULTS files.

    Shows the per-class statistics the estimate rests on, the fitted d, sigma
    and d/sigma, and the theorem's P next to what the data gave (balanced, the
    like-for-like comparison, and plain).
    """
    width = max([len("class")] + [len(c) for c in fit.classes])
    lines = [
        f"Theorem 1 check for criterion {criterion} ({fit.n_classes} classes)",
        f"  {'class':<{width}}  {'mean':>12}  {'std':>12}  {'count':>8}",
    ]
    for name, mean, std, count in zip(fit.classes, fit.means, fit.stds, fit.counts):
        lines.append(f"  {name:<{width}}  {mean:>12.6g}  {std:>12.6g}  {count:>8d}")
    rows = [
        ("d (mean gap between sorted class means)", f"{fit.d:.6g}"),
        ("sigma (pooled within-class std)", f"{fit.sigma:.6g}"),
        ("d / sigma", f"{fit.d_over_sigma:.4f}"),
        ("chance (1/n)", f"{fit.chance:.4f}"),
        ("predicted P (Theorem 1)", f"{fit.predicted:.4f}"),
        (f"observed, balanced ({fit.observed_rule})", f"{fit.balanced_observed:.4f}"),
        (f"observed, plain ({fit.observed_rule})", f"{fit.observed:.4f}"),
        ("observed - predicted (balanced)", f"{fit.balanced_observed - fit.predicted:+.4f}"),
    ]
    label_width = max(len(label) for label, _ in rows)
    lines += [f"  {label:<{label_width}}  {value}" for label, value in rows]
    if fit.threshold is not None:
        low_class = fit.classes[1 - fit.classes.index(fit.high_class)]
        lines.append(f"  rule: value > {fit.threshold:.6g} -> {fit.high_class}, else {low_class}")
    return "\n".join(lines)
