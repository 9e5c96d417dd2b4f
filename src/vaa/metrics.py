"""Classification metrics: accuracy, per-class precision/recall/F1, confusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def mean_and_std(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value, so
    one seed reads "± 0.00" rather than NaN) -- the spread every table of
    seeds, folds or classes reports."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


def classification_report(
    gold: np.ndarray, predicted: np.ndarray, names: Sequence[str], probs: np.ndarray | None = None
) -> dict[str, Any]:
    """Metrics over the labelled pairs (``gold >= 0``) as plain JSON types;
    macro-F1 averages the classes that occur in the gold labels. With the
    class probabilities, log-loss and expected calibration error too: two
    models of equal accuracy can differ in how far their confidence holds."""
    extra = {}
    if probs is not None:
        from .calibration import expected_calibration_error, log_loss

        extra = {"log_loss": log_loss(probs, gold), "ece": expected_calibration_error(probs, gold)}
    known = gold >= 0
    gold, predicted = gold[known], predicted[known]
    if gold.size == 0:
        raise ValueError("no labelled pairs to score")
    labels = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    per_class = {
        names[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i in labels
    }
    present = s > 0  # a class absent from the file would add a meaningless F1 of 0
    return {
        "pairs": int(gold.size),
        "accuracy": float((gold == predicted).mean()),
        "macro_f1": float(np.mean(f[present])),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(names),
            "rows_gold_cols_predicted": confusion_matrix(gold, predicted, labels=labels).tolist(),
        },
        **extra,
    }


def format_report(report: dict[str, Any], title: str = "") -> str:
    """The report as a text table for the terminal."""
    names = report["confusion_matrix"]["labels"]
    width = max(12, *(len(n) for n in names))
    lines = [title] if title else []
    head = f"pairs {report['pairs']}  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}"
    if "log_loss" in report:
        head += f"  log-loss {report['log_loss']:.4f}  ECE {report['ece']:.4f}"
    lines.append(head)
    lines.append(f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}")
    for name in names:
        c = report["per_class"][name]
        lines.append(f"{name:<{width}} {c['precision']:>9.4f} {c['recall']:>9.4f} {c['f1']:>9.4f} {c['support']:>8d}")
    lines.append("confusion matrix (rows: gold, columns: predicted)")
    lines.append(" " * width + " " + " ".join(f"{n[:10]:>10}" for n in names))
    for name, row in zip(names, report["confusion_matrix"]["rows_gold_cols_predicted"]):
        lines.append(f"{name:<{width}} " + " ".join(f"{v:>10d}" for v in row))
    return "\n".join(lines)
