"""The non-finite guard: a NaN or an infinity stops the work that made it.

A NaN loss trains nothing but NaN weights, a NaN criterion says nothing about
a pair, and a NaN validation metric must never pick the "best" epoch. So each
place that produces such a value checks it here and raises
:class:`NonFiniteError` with what went wrong; the trainer adds the stage,
epoch and batch. Nothing non-finite is written afterwards: the check runs
before the optimiser step and before any file is written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


class NonFiniteError(RuntimeError):
    """A loss, gradient, attack step, hidden vector or criterion is NaN or infinite."""


def is_finite(value: Any) -> bool:
    """True when every entry of a tensor, array or number is finite."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all())
    return math.isfinite(float(value))


def check_finite(value: Any, what: str, hint: str = "") -> None:
    """Raise NonFiniteError naming ``what`` when ``value`` has a NaN or inf."""
    if not is_finite(value):
        raise NonFiniteError(f"non-finite {what}" + (f"; {hint}" if hint else ""))


__all__ = ["NonFiniteError", "check_finite", "is_finite"]
