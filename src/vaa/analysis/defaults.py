"""Defaults shared by the analyses and the CLI (kept apart so that the CLI can
show them without importing plotting code)."""

# The paper's Fig. 3b grid, widened at both ends so a dead or saturated signal shows.
DEFAULT_EPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
