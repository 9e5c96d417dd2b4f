"""Re-fitting a trained model's decision rule on validation data.

Stage two selects model B on the validation file, and B's new parameters can
move its decision rule toward the validation distribution; model A never gets
that chance. The cheapest thing a practitioner does with a validation file is
to re-fit A's decision rule on it, with no retraining: temperature scaling plus
a per-class bias (n + 1 parameters), or, as an option, a full multinomial
logistic regression on the log-probabilities (n^2 + n parameters). A gain from
stage two can only be read next to that baseline.

Everything here works on probabilities (``[N, n]`` arrays) and gold labels
(``-1`` = unknown), so it serves a saved run's predictions as well as a live
model. The fitted rule is stored in the run folder (``calibration.json``) with
a fingerprint of the weights it was fitted for; ``predict``/``evaluate`` apply
it by default.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

METHODS = ("temperature-bias", "logistic")
CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15  # equal-width confidence bins (Guo et al., 2017)
_FLOOR = 1e-12  # log of a probability that underflowed to 0
_RIDGE = 1e-6  # pins the softmax's shift invariance; too small to move a fit


class CalibrationError(ValueError):
    """A calibration cannot be fitted or applied as asked."""


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Natural log of probabilities, floored so an underflowed 0 stays finite."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _FLOOR, None))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass
class Calibration:
    """A re-fitted decision rule: ``softmax(W log p / T + b)``.

    ``temperature-bias`` keeps W = I (one temperature, one bias per class);
    ``logistic`` fits W as well (T stays 1)."""

    method: str
    temperature: float
    bias: list[float]
    weight: list[list[float]] | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)  # source, pairs
    fingerprint: str | None = None  # of the weights the rule was fitted for

    @classmethod
    def identity(cls, num_labels: int) -> Calibration:
        """The rule that changes nothing (T = 1, b = 0)."""
        return cls("temperature-bias", 1.0, [0.0] * num_labels)

    def logits(self, probs: np.ndarray) -> np.ndarray:
        z = log_probs(probs)
        if z.shape[1] != len(self.bias):
            raise CalibrationError(f"calibration is for {len(self.bias)} classes, the probabilities have {z.shape[1]}")
        if self.weight is not None:
            z = z @ np.asarray(self.weight).T
        return z / self.temperature + np.asarray(self.bias)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for ``probs`` (rows sum to 1)."""
        return softmax(self.logits(probs))

    def describe(self) -> str:
        """One line for the terminal."""
        bias = ", ".join(f"{b:+.3f}" for b in self.bias)
        where = self.fitted_on.get("source", "validation")
        rule = (
            f"temperature {self.temperature:.3f}, bias [{bias}]" if self.weight is None else f"logistic regression, bias [{bias}]"
        )
        return f"{self.method} calibration ({rule}) fitted on {where} ({self.fitted_on.get('pairs', '?')} pairs)"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Calibration:
        try:
            out = cls(**obj)
        except TypeError as exc:
            raise CalibrationError(f"not a calibration record ({exc})") from None
        if out.method not in METHODS or not np.isfinite(out.temperature) or out.temperature <= 0:
            raise CalibrationError(f"invalid calibration record (method {out.method!r}, temperature {out.temperature!r})")
        if not np.all(np.isfinite(out.bias)) or (out.weight is not None and not np.all(np.isfinite(out.weight))):
            raise CalibrationError("invalid calibration record (non-finite parameters)")
        return out


def _nll_and_grad(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits ``z`` against labels ``y`` and dL/dz."""
    p = softmax(z)
    n = y.size
    loss = -np.log(np.clip(p[np.arange(n), y], 1e-300, None)).mean()
    grad = p
    grad[np.arange(n), y] -= 1.0
    return float(loss), grad / n


def fit(probs: np.ndarray, labels: np.ndarray, method: str = "temperature-bias") -> Calibration:
    """Fit the decision rule by minimising the log-loss on labelled pairs.

    Temperature-bias: logits = exp(s) * log p + b (the inverse temperature is
    kept positive through s). Logistic: logits = W log p + b, W starting at I.
    Both are smooth convex-in-b problems solved by L-BFGS with exact gradients."""
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    known = labels >= 0
    x, y = log_probs(probs[known]), labels[known].astype(np.int64)
    n_classes = probs.shape[1]
    if y.size < 2:
        raise CalibrationError(f"a calibration needs labelled pairs; {y.size} given")
    if np.unique(y).size < 2:
        raise CalibrationError("a calibration needs at least two classes among the labelled pairs")

    if method == "temperature-bias":

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = np.exp(theta[0]), theta[1:]
            loss, dz = _nll_and_grad(a * x + b, y)
            grad = np.concatenate([[a * float((dz * x).sum())], dz.sum(0) + 2 * _RIDGE * b])
            return loss + _RIDGE * float(b @ b), grad

        theta0 = np.zeros(1 + n_classes)
        res = minimize(objective, theta0, jac=True, method="L-BFGS-B")
        a, b = float(np.exp(res.x[0])), res.x[1:]
        return Calibration(method, 1.0 / a, b.tolist())

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: n_classes * n_classes].reshape(n_classes, n_classes)
        b = theta[n_classes * n_classes :]
        loss, dz = _nll_and_grad(x @ w.T + b, y)
        dw = dz.T @ x + 2 * _RIDGE * (w - np.eye(n_classes))
        reg = _RIDGE * (float(((w - np.eye(n_classes)) ** 2).sum()) + float(b @ b))
        return loss + reg, np.concatenate([dw.ravel(), dz.sum(0) + 2 * _RIDGE * b])

    theta0 = np.concatenate([np.eye(n_classes).ravel(), np.zeros(n_classes)])
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B")
    w = res.x[: n_classes * n_classes].reshape(n_classes, n_classes)
    return Calibration(method, 1.0, res.x[n_classes * n_classes :].tolist(), w.tolist())


def halves(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded, stratified split of the pairs into folds 0 and 1 (unlabelled
    pairs are spread like a class of their own)."""
    labels = np.asarray(labels)
    folds = np.empty(labels.size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(idx.size)]
        folds[idx] = np.arange(idx.size) % 2
    return folds


def cross_fit(
    probs: np.ndarray, labels: np.ndarray, method: str = "temperature-bias", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities for every pair, each from a rule fitted on the
    *other* half of the pairs: validation accuracy after re-fitting, without
    scoring a pair with a rule that saw its label. Returns (probs, folds)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    folds = halves(labels, seed)
    out = np.empty_like(probs)
    for k in (0, 1):
        rule = fit(probs[folds != k], labels[folds != k], method)
        out[folds == k] = rule.apply(probs[folds == k])
    return out, folds


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and
    accuracy over ``bins`` equal-width confidence bins (labelled pairs only)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    known = labels >= 0
    probs, labels = probs[known], labels[known]
    if labels.size == 0:
        raise CalibrationError("no labelled pairs")
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / labels.size)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the gold label (labelled pairs only)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    known = labels >= 0
    if not known.any():
        raise CalibrationError("no labelled pairs")
    return float(-log_probs(probs[known])[np.arange(int(known.sum())), labels[known]].mean())


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per confidence bin: its range, pairs, mean confidence and accuracy
    (what a reliability diagram draws)."""
    known = labels >= 0
    probs, labels = probs[known], labels[known]
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "pairs": int((which == b).sum()),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, log-loss and ECE of probabilities on labelled pairs."""
    known = np.asarray(labels) >= 0
    return {
        "accuracy": float((probs[known].argmax(1) == labels[known]).mean()),
        "log_loss": log_loss(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }


def weights_fingerprint(state_dict: dict[str, Any]) -> str:
    """A hash of a model's weights, independent of the checkpoint's file
    format: a stored calibration is applied only to the weights it was fitted for."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def run_folder_of(checkpoint_path: str | Path) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/<best>``),
    or the checkpoint's own folder when it stands alone."""
    path = Path(checkpoint_path)
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return path if path.is_dir() else path.parent  # a checkpoint folder standing alone is its own


def save_calibration(calibration: Calibration, run_dir: str | Path, report: dict[str, Any] | None = None) -> Path:
    from .files import write_json

    path = Path(run_dir) / CALIBRATION_FILE
    write_json(path, {"calibration": calibration.to_json(), **({"report": report} if report else {})})
    return path


def read_calibration(run_dir: str | Path, state_dict: dict[str, Any] | None = None) -> Calibration | None:
    """The stored calibration of a run, or None. A stored rule fitted for
    other weights than ``state_dict`` (the folder was retrained) is an error,
    never applied; the weights are hashed only when a rule is stored."""
    import json

    path = Path(run_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
        calibration = Calibration.from_json(obj["calibration"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"{path}: unreadable calibration ({exc}); run `vaa calibrate` again") from None
    if (
        state_dict is not None
        and calibration.fingerprint is not None
        and calibration.fingerprint != weights_fingerprint(state_dict)
    ):
        raise CalibrationError(
            f"{path} was fitted for other weights than this checkpoint's; run `vaa calibrate` again or pass --raw"
        )
    return calibration
