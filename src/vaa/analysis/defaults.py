"""Defaults shared by the analyses and the CLI (kept apart so that the CLI can
show them without importing plotting code)."""

# The paper's Fig. 3b grid, widened at both ends so a dead or saturated signal shows.
DEFAULT_EPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

# `vaa robustness` grids: L2 per sentence (a GloVe 50-d word vector has norm ~5,
# a sentence ~15), L-inf per entry (entries ~0.3-0.5); PGD's steps.
ROBUSTNESS_L2_EPS = (0.0, 0.25, 0.5, 1.0, 2.0)
ROBUSTNESS_LINF_EPS = (0.0, 0.01, 0.02, 0.05, 0.1)
ROBUSTNESS_PGD_STEPS = 10
