"""Paired significance tests for accuracy comparisons on the same pairs.

Two models scored on the same pairs are compared pair by pair (exact McNemar
per seed, a bootstrap over pairs), and, because one trained model is one
draw of training, seed by seed too (a t-test and a sign test over the
per-seed differences, a bootstrap over seeds and pairs together). Shared by
Table 3 (``vaa.experiments``) and robust accuracy under attack
(``vaa.robustness``), so both report the same tests the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, ttest_1samp


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided McNemar test on paired correctness."""
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


BOOTSTRAP_RESAMPLES = 10000


def _bootstrap_p(means: np.ndarray, observed: float) -> float:
    """Two-sided p of ``observed`` against bootstrap means shifted to the null
    (no difference), written (count + 1) / (R + 1): a resampled statistic can
    never prove p = 0, and the floor 1 / (R + 1) says how far R can see."""
    count = int((np.abs(means - observed) >= abs(observed)).sum())
    return (count + 1) / (means.size + 1)


def paired_bootstrap_p(
    correct_base: np.ndarray, correct_other: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> float:
    """Two-sided p-value of the seed-averaged accuracy difference, resampling
    pairs only (the same resample for every seed). Inputs are [seeds, pairs].
    It treats the trained models as fixed: see ``hierarchical_bootstrap_p``."""
    diff = (correct_other.astype(np.float64) - correct_base.astype(np.float64)).mean(0)
    rng = np.random.default_rng(seed)
    n = diff.size
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        idx = rng.integers(0, n, size=(min(1000, resamples - start), n))
        means[start : start + idx.shape[0]] = diff[idx].mean(1)
    return _bootstrap_p(means, float(diff.mean()))


def hierarchical_bootstrap_p(
    correct_base: np.ndarray, correct_other: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> float | None:
    """Two-sided p-value resampling seeds *and* pairs: each resample draws
    seeds with replacement (training variance) and pairs with replacement
    (test-set variance). None with a single seed, where it cannot see
    training variance at all."""
    diff = correct_other.astype(np.float64) - correct_base.astype(np.float64)
    seeds, n = diff.shape
    if seeds < 2:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // (seeds * n))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        per_seed = diff[:, rng.integers(0, n, size=(k, n))].mean(2)  # [seeds, k]
        pick = rng.integers(0, seeds, size=(k, seeds))
        means[start : start + k] = per_seed[pick, np.arange(k)[:, None]].mean(1)
    return _bootstrap_p(means, float(diff.mean()))


def seed_level_tests(per_seed_delta: Sequence[float]) -> dict[str, float | None]:
    """Tests that treat the seed as the unit: a paired t-test of the per-seed
    accuracy differences against 0, and an exact sign test. With 3 seeds the
    sign test cannot go below 0.25: that is what 3 seeds can show."""
    deltas = np.asarray(per_seed_delta, dtype=np.float64)
    t_p = None
    if deltas.size >= 2 and np.ptp(deltas) > 1e-12:  # identical deltas leave t undefined
        t_p = float(ttest_1samp(deltas, 0.0).pvalue)
    nonzero = deltas[deltas != 0]
    sign_p = float(binomtest(int((nonzero > 0).sum()), nonzero.size, 0.5).pvalue) if nonzero.size else 1.0
    return {"seed_t_test_p": t_p, "sign_test_p": sign_p}


def format_p(p: float | None, resamples: int | None = None) -> str:
    """A p-value for a table; a bootstrap p at its floor reads "< 1/R"."""
    if p is None:
        return "—"
    if resamples and p <= 1.0 / (resamples + 1) + 1e-15:
        return f"< {1.0 / resamples:.0e}"
    return f"{p:.3g}"


def paired_tests(
    base: np.ndarray, other: np.ndarray, delta_key: str = "delta", resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """Accuracy difference (other - base) and its paired tests; inputs are
    [seeds, pairs] of per-pair correctness: McNemar per seed and the pair
    bootstrap (pairs as the unit), the seed-level t and sign tests, and the
    bootstrap over seeds and pairs together (training variance included)."""
    per_seed = (other.mean(1) - base.mean(1)).tolist()
    return {
        delta_key: float(other.mean() - base.mean()),
        "delta_per_seed": per_seed,
        "mcnemar_p_per_seed": [mcnemar_p(b, o) for b, o in zip(base, other)],
        "paired_bootstrap_p": paired_bootstrap_p(base, other, resamples),
        **seed_level_tests(per_seed),
        "hierarchical_bootstrap_p": hierarchical_bootstrap_p(base, other, resamples),
    }
