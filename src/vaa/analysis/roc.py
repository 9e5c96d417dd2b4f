"""How well one vulnerability criterion alone predicts the gold label
(paper Fig. 3a: QQP, F2, L2, eps 0.02 -> AUC 0.81).

For two classes the score is the criterion and the positive class is class 1
(``duplicate`` for QQP): AUC < 0.5 means the *other* class is the more
vulnerable one. Since the paper reports the separability, not a direction,
each AUC also comes *oriented* (max(AUC, 1 - AUC)) with the class that has the
higher values named. For more classes: one-vs-rest per class and the macro
average of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def auc_score(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's; tied scores count one half).
    ``positive`` is boolean."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise ValueError("AUC needs both positive and negative examples")
    return float(roc_auc_score(positive, scores))


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct threshold,
    starting from (0, 0) (scikit-learn's ``roc_curve``, no point dropped)."""
    fpr, tpr, _ = roc_curve(np.asarray(positive, dtype=bool), np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    return fpr, tpr


@dataclass
class ClassAUC:
    positive_class: str
    auc: float  # score = criterion, positive = this class (vs the rest)
    auc_oriented: float  # max(auc, 1 - auc)
    higher_for: str  # "this class" or "the rest": which side has the higher criterion
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)


@dataclass
class ROCResult:
    criterion: str
    per_class: list[ClassAUC]

    @property
    def binary(self) -> bool:
        return len(self.per_class) == 1

    @property
    def auc(self) -> float:
        """The binary AUC, or the macro average of one-vs-rest AUCs."""
        return float(np.mean([c.auc for c in self.per_class]))

    @property
    def auc_oriented(self) -> float:
        return float(np.mean([c.auc_oriented for c in self.per_class]))

    def to_json(self) -> dict:
        return {
            "criterion": self.criterion,
            "auc": self.auc,
            "auc_oriented": self.auc_oriented,
            "per_class": [
                {"positive_class": c.positive_class, "auc": c.auc, "auc_oriented": c.auc_oriented, "higher_for": c.higher_for}
                for c in self.per_class
            ],
        }


def criterion_roc(values: np.ndarray, labels: np.ndarray, class_names: Sequence[str], criterion: str = "") -> ROCResult:
    """ROC/AUC of predicting ``labels`` (class indices) from ``values``."""
    labels = np.asarray(labels)
    present = [k for k in range(len(class_names)) if (labels == k).any()]
    if len(present) < 2:
        raise ValueError("ROC needs at least two classes in the data")
    positives = [present[1]] if len(present) == 2 else present
    out = []
    for k in positives:
        is_pos = labels == k
        auc = auc_score(values, is_pos)
        fpr, tpr = roc_points(values, is_pos)
        out.append(ClassAUC(class_names[k], auc, max(auc, 1 - auc), "this class" if auc >= 0.5 else "the rest", fpr, tpr))
    return ROCResult(criterion, out)
