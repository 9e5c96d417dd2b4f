"""Paired tests: exact values, and what pairs alone and seeds together can show."""

from __future__ import annotations

import numpy as np
import pytest

from vaa.significance import format_p, hierarchical_bootstrap_p, mcnemar_p, paired_bootstrap_p, seed_level_tests


def test_mcnemar_exact_values():
    a = np.array([True] * 10 + [False] * 10)
    b = np.array([True] * 10 + [True] * 8 + [False] * 2)
    # 0 pairs where only a is right, 8 where only b is: p = 2 * 0.5**8
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5**8)
    assert mcnemar_p(a, a) == 1.0


def test_paired_bootstrap_separates_real_and_null_differences():
    rng = np.random.default_rng(0)
    base = rng.random((3, 2000)) < 0.7
    better = base | (rng.random((3, 2000)) < 0.1)
    assert paired_bootstrap_p(base, better, resamples=2000) < 0.01
    noise = rng.random((3, 2000)) < 0.7
    assert paired_bootstrap_p(base, noise, resamples=2000) > 0.01


def test_seed_level_statistics():
    tests = seed_level_tests([0.02, 0.03, 0.025])
    assert 0 < tests["seed_t_test_p"] < 0.05 and tests["sign_test_p"] == pytest.approx(0.25)
    assert seed_level_tests([0.02, -0.03, 0.01])["seed_t_test_p"] > 0.5
    assert seed_level_tests([0.01, 0.01])["seed_t_test_p"] is None  # identical deltas: t undefined
    rng = np.random.default_rng(0)
    base = rng.random((3, 3000)) < 0.7
    # one seed gains a lot, two lose a little: pairs alone look convincing, seeds do not
    other = base.copy()
    other[0, :600] = True
    other[1, :60] &= False
    other[2, :60] &= False
    assert paired_bootstrap_p(base, other, resamples=2000) < 0.01
    assert hierarchical_bootstrap_p(base, other, resamples=2000) > 0.05
    assert hierarchical_bootstrap_p(base[:1], other[:1]) is None
    # p written (count + 1) / (R + 1): never 0, and its floor reads "< 1/R"
    assert paired_bootstrap_p(np.zeros((1, 500), bool), np.ones((1, 500), bool), resamples=999) == pytest.approx(1 / 1000)
    assert format_p(1 / 1000, 999) == "< 1e-03" and format_p(0.0123, 999) == "0.0123"
