"""Tests for Theorem 1 (vaa.analysis.theorem): closed form, corollaries, fitting, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from vaa.analysis.plots import plot_accuracy_curves
from vaa.analysis.theorem import (
    CriterionFit,
    corollary_limits,
    fit_criterion,
    format_report,
    monte_carlo_accuracy,
    overlap_mass,
    predicted_accuracy,
)

# ---------------------------------------------------------------------------
# Closed form
# ---------------------------------------------------------------------------


def test_overlap_mass_matches_normal_integral() -> None:
    # S is the N(mu, sigma^2) mass on [mu, mu + d/2]; check against scipy's cdf
    # with a non-zero mean so a formula that ignores the centring would fail.
    mu, sigma = 3.0, 1.7
    for d in (0.0, 0.3, 1.0, 2.5, 7.0):
        expected = norm.cdf(mu + d / 2, mu, sigma) - norm.cdf(mu, mu, sigma)
        assert overlap_mass(d, sigma) == pytest.approx(expected, abs=1e-12)
    # Vectorised and broadcast.
    out = overlap_mass(np.array([0.0, 1.0, 2.0]), np.array([[1.0], [2.0]]))
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(norm.cdf(0.5) - 0.5)


def test_predicted_accuracy_hand_values() -> None:
    # n = 2, d/sigma = 2: S = Phi(1) - 1/2, P = 1/2 + S = Phi(1).
    assert predicted_accuracy(2, 2.0, 1.0) == pytest.approx(norm.cdf(1.0), abs=1e-12)
    # n = 3, d/sigma = 2: P = (1 - 2S)/3 + 2S with 2S = 2 Phi(1) - 1.
    two_s = 2 * norm.cdf(1.0) - 1
    assert predicted_accuracy(3, 2.0, 1.0) == pytest.approx((1 - two_s) / 3 + two_s, abs=1e-12)
    # n = 1: a single class is always right.
    assert predicted_accuracy(1, 0.7, 3.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "n, d, sigma",
    [(2, 1.0, 1.0), (2, 0.4, 2.0), (3, 2.0, 1.5), (3, 1.0, 0.5), (5, 0.5, 1.0), (8, 3.0, 2.0)],
)
def test_closed_form_matches_monte_carlo(n: int, d: float, sigma: float) -> None:
    acc, se = monte_carlo_accuracy(n, d, sigma, samples_per_class=20000, seed=n)
    assert se > 0
    assert abs(acc - float(predicted_accuracy(n, d, sigma))) < 4 * se


def test_monte_carlo_is_reproducible_and_seeded() -> None:
    assert monte_carlo_accuracy(3, 1.0, 1.0, 2000, seed=5) == monte_carlo_accuracy(3, 1.0, 1.0, 2000, seed=5)
    assert monte_carlo_accuracy(3, 1.0, 1.0, 2000, seed=5) != monte_carlo_accuracy(3, 1.0, 1.0, 2000, seed=6)


def test_chance_at_zero_gap_and_one_for_huge_gap() -> None:
    ns = np.arange(1, 12)
    np.testing.assert_allclose(predicted_accuracy(ns, 0.0, 1.3), 1.0 / ns, rtol=0, atol=1e-15)
    np.testing.assert_allclose(predicted_accuracy(ns, 1e4, 1.0), 1.0, rtol=0, atol=1e-12)
    # sigma -> infinity is the same as d -> 0.
    np.testing.assert_allclose(predicted_accuracy(ns, 1.0, 1e12), 1.0 / ns, atol=1e-9)


def test_depends_only_on_d_over_sigma() -> None:
    d = np.linspace(0.0, 5.0, 11)
    for n in (2, 3, 7):
        base = predicted_accuracy(n, d, 1.0)
        for k in (0.01, 0.5, 3.0, 250.0):
            np.testing.assert_allclose(predicted_accuracy(n, k * d, k * 1.0), base, atol=1e-14)
    # ... and changing the ratio changes the answer.
    assert predicted_accuracy(3, 2.0, 1.0) != pytest.approx(predicted_accuracy(3, 2.0, 2.0))


def test_monotone_in_d_and_non_increasing_in_n() -> None:
    d = np.linspace(0.0, 8.0, 200)
    for n in (2, 3, 5, 20):
        p = predicted_accuracy(n, d, 1.0)
        assert np.all(np.diff(p) > 0)
        assert np.all((p >= 1.0 / n - 1e-15) & (p <= 1.0))
    ns = np.arange(1, 60)
    for ratio in (0.0, 0.3, 1.0, 2.0, 5.0):
        p = predicted_accuracy(ns, ratio, 1.0)
        assert np.all(np.diff(p) <= 1e-15)
        if 0 < ratio < 5:  # strictly decreasing while S < 1/2 numerically
            assert np.all(np.diff(p) < 0)


def test_corollary_limits_match_stated_limits() -> None:
    for n, d, sigma in [(2, 1.0, 1.0), (3, 0.8, 2.0), (10, 4.0, 1.5)]:
        lim = corollary_limits(n, d, sigma)
        s = float(norm.cdf(d / (2 * sigma)) - 0.5)
        assert lim["P"] == pytest.approx((1 - 2 * s) / n + 2 * s, abs=1e-12)
        assert lim["S"] == pytest.approx(s, abs=1e-12)
        assert lim["P_d_to_inf"] == pytest.approx(1.0, abs=1e-9)
        assert lim["P_d_to_0"] == pytest.approx(1.0 / n, abs=1e-8)
        assert lim["P_sigma_to_inf"] == pytest.approx(1.0 / n, abs=1e-8)
        assert lim["P_n_to_inf"] == pytest.approx(2 * s, abs=1e-8)
        assert lim["chance"] == pytest.approx(1.0 / n)
        # The limits bracket P the right way round.
        assert lim["P_d_to_0"] <= lim["P"] <= lim["P_d_to_inf"]
        assert lim["P_n_to_inf"] <= lim["P"]


# ---------------------------------------------------------------------------
# Fitting a measured criterion
# ---------------------------------------------------------------------------


def _normal_classes(means: list[float], sigma: float, count: int | list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = [count] * len(means) if isinstance(count, int) else count
    values = np.concatenate([rng.normal(m, sigma, c) for m, c in zip(means, counts)])
    labels = np.repeat(np.arange(len(means)), counts)
    return values, labels


def test_fit_recovers_parameters_three_classes() -> None:
    # Class order deliberately not sorted by mean: d must come from sorted means.
    values, labels = _normal_classes([4.0, 0.0, 2.0], 1.0, 8000, seed=0)
    fit = fit_criterion(values, labels, ["hi", "lo", "mid"])
    assert fit.classes == ["hi", "lo", "mid"]
    assert fit.counts == [8000, 8000, 8000]
    np.testing.assert_allclose(fit.means, [4.0, 0.0, 2.0], atol=0.05)
    np.testing.assert_allclose(fit.stds, [1.0, 1.0, 1.0], atol=0.03)
    assert fit.d == pytest.approx(2.0, abs=0.05)
    assert fit.sigma == pytest.approx(1.0, abs=0.02)
    assert fit.d_over_sigma == pytest.approx(fit.d / fit.sigma)
    assert fit.predicted == pytest.approx(float(predicted_accuracy(3, fit.d, fit.sigma)))
    assert fit.observed_rule == "nearest mean"
    assert fit.balanced_observed == pytest.approx(fit.predicted, abs=0.015)
    assert fit.observed == pytest.approx(fit.balanced_observed)  # equal counts
    assert fit.threshold is None


def test_fit_two_classes_unbalanced_balanced_accuracy_tracks_prediction() -> None:
    values, labels = _normal_classes([1.0, 2.5], 0.8, [12000, 3000], seed=1)
    fit = fit_criterion(values, labels, ["neg", "pos"])
    assert fit.observed_rule == "best threshold"
    assert fit.d == pytest.approx(1.5, abs=0.05)
    assert fit.sigma == pytest.approx(0.8, abs=0.02)
    assert fit.balanced_observed == pytest.approx(fit.predicted, abs=0.015)
    # Optimal balanced threshold of two equal-variance normals is the midpoint.
    assert fit.threshold == pytest.approx(1.75, abs=0.1)
    assert fit.high_class == "pos"


def test_fit_sigma_is_pooled_and_empty_classes_are_dropped() -> None:
    values = np.array([0.0, 2.0, 10.0, 11.0, 12.0, 13.0])
    labels = np.array([0, 0, 2, 2, 2, 2])
    fit = fit_criterion(values, labels, ["a", "unused", "c"])
    assert fit.classes == ["a", "c"]
    assert fit.counts == [2, 4]
    assert fit.means == pytest.approx([1.0, 11.5])
    # Pooled: (1 * var_a + 3 * var_c) / (6 - 2), ddof = 1 per class.
    var_a, var_c = np.var([0.0, 2.0], ddof=1), np.var([10.0, 11.0, 12.0, 13.0], ddof=1)
    assert fit.sigma == pytest.approx(math.sqrt((1 * var_a + 3 * var_c) / 4))
    assert fit.d == pytest.approx(10.5)


def test_best_threshold_hand_example() -> None:
    # Class A: 0..9 (10 values); class B: 7.5 and 20.
    # Cut in (7, 7.5), B above: A recall 8/10, B recall 2/2 -> balanced 0.9, plain 10/12.
    # Cut in (9, 20): A 10/10, B 1/2 -> balanced 0.75 but plain 11/12 (better plain).
    # The rule is chosen by balanced accuracy, so plain must be 10/12, not 11/12.
    values = np.concatenate([np.arange(10.0), [7.5, 20.0]])
    labels = np.array([0] * 10 + [1] * 2)
    fit = fit_criterion(values, labels, ["A", "B"])
    assert fit.observed_rule == "best threshold"
    assert fit.balanced_observed == pytest.approx(0.9)
    assert fit.observed == pytest.approx(10 / 12)
    assert fit.threshold == pytest.approx(7.25)
    assert fit.high_class == "B"
    # Mirrored values: the direction flips and the accuracies are unchanged.
    flipped = fit_criterion(-values, labels, ["A", "B"])
    assert flipped.balanced_observed == pytest.approx(0.9)
    assert flipped.observed == pytest.approx(10 / 12)
    assert flipped.threshold == pytest.approx(-7.25)
    assert flipped.high_class == "A"


def test_nearest_mean_hand_example() -> None:
    # Means: a = 0, b = 5, c = 10. Value 2.6 of class a is nearer b; 7 of class c is nearer b.
    values = np.array([-1.0, -1.6, 2.6, 4.0, 5.0, 6.0, 7.0, 11.5, 11.5])
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    fit = fit_criterion(values, labels, ["a", "b", "c"])
    assert fit.means == pytest.approx([0.0, 5.0, 10.0])
    assert fit.observed_rule == "nearest mean"
    assert fit.observed == pytest.approx(7 / 9)
    assert fit.balanced_observed == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)


@pytest.mark.parametrize(
    "values, labels, names",
    [
        (np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0]), ["a", "b"]),  # one class
        (np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1]), ["a", "b"]),  # class with 1 sample
        (np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 2]), ["a", "b"]),  # label out of range
        (np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, -1]), ["a", "b"]),  # negative label
        (np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1, 1]), ["a", "b"]),  # length mismatch
        (np.array([1.0, np.nan, 3.0, 4.0]), np.array([0, 0, 1, 1]), ["a", "b"]),  # NaN value
        (np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 0.5, 1]), ["a", "b"]),  # non-integer label
        (np.array([]), np.array([], dtype=int), ["a", "b"]),  # empty
    ],
)
def test_fit_criterion_rejects_bad_input(values: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    with pytest.raises(ValueError):
        fit_criterion(values, labels, names)


@pytest.mark.parametrize(
    "call",
    [
        lambda: overlap_mass(1.0, 0.0),
        lambda: overlap_mass(1.0, -1.0),
        lambda: overlap_mass(-0.1, 1.0),
        lambda: overlap_mass(np.array([1.0, np.nan]), 1.0),
        lambda: overlap_mass(1.0, np.array([1.0, 0.0])),
        lambda: predicted_accuracy(0, 1.0, 1.0),
        lambda: predicted_accuracy(2.5, 1.0, 1.0),
        lambda: predicted_accuracy(np.array([2, -1]), 1.0, 1.0),
        lambda: predicted_accuracy(2, 1.0, 0.0),
        lambda: corollary_limits(0, 1.0, 1.0),
        lambda: corollary_limits(2, 1.0, -2.0),
        lambda: monte_carlo_accuracy(0, 1.0, 1.0),
        lambda: monte_carlo_accuracy(2, 1.0, 0.0),
        lambda: monte_carlo_accuracy(2, -1.0, 1.0),
        lambda: monte_carlo_accuracy(2, 1.0, 1.0, samples_per_class=1),
    ],
)
def test_invalid_arguments_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------
# Report and plot
# ---------------------------------------------------------------------------


def _small_fit() -> CriterionFit:
    values, labels = _normal_classes([0.0, 1.5], 1.0, 500, seed=3)
    return fit_criterion(values, labels, ["not_duplicate", "duplicate"])


def test_format_report_contains_the_numbers() -> None:
    fit = _small_fit()
    text = format_report(fit, "F2")
    assert "F2" in text
    for name in fit.classes:
        assert name in text
    assert f"{fit.predicted:.4f}" in text
    assert f"{fit.balanced_observed:.4f}" in text
    assert f"{fit.observed:.4f}" in text
    assert f"{fit.d_over_sigma:.4f}" in text
    assert "best threshold" in text
    assert len(text.splitlines()) >= 10


def test_plot_writes_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sub" / "theorem.png"
    plot_accuracy_curves(out, ns=(2, 3), d_over_sigma=np.linspace(0, 4, 21), mark=_small_fit())
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000
    plain = tmp_path / "plain.png"
    plot_accuracy_curves(str(plain))
    assert plain.stat().st_size > 5000
