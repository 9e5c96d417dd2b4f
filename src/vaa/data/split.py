"""Deterministic train/validation split of a labelled dataset.

Used when a user gives only a training file: the validation side selects
models and stops training early, so it must be the same across runs and
machines (numpy's seeded generator, no Python ``hash``), keep the label
proportions of the training file, and never overlap the training side.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .pairs import DataError, PairDataset


def train_valid_split(
    dataset: PairDataset, valid_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> tuple[PairDataset, PairDataset]:
    """Split ``dataset`` into (train, valid).

    About ``valid_fraction`` of the pairs go to valid (at least one, and at
    least one stays in train). With ``stratify`` each label is split in
    proportion, so a rare class is not left out of validation by chance.
    Both sides keep the file's order."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be strictly between 0 and 1, not {valid_fraction}")
    n = len(dataset)
    if n < 2:
        raise DataError(f"cannot split {n} pair(s) into train and validation; need at least 2", dataset.report.path)
    n_valid = min(n - 1, max(1, round(n * valid_fraction)))
    groups = _groups(dataset) if stratify else [list(range(n))]
    rng = np.random.default_rng(seed)
    valid: list[int] = []
    for members, k in zip(groups, _allocate(n_valid, [len(g) for g in groups])):
        chosen = rng.permutation(len(members))[:k]
        valid.extend(members[i] for i in chosen)
    valid_set = set(valid)
    train = [i for i in range(n) if i not in valid_set]
    return dataset.subset(train, "train"), dataset.subset(sorted(valid), "valid")


def _groups(dataset: PairDataset) -> list[list[int]]:
    """Indices by label, groups ordered by label name (unlabelled first) so
    that the draw does not depend on row order of first appearance."""
    by_label: dict[str | None, list[int]] = defaultdict(list)
    for i, pair in enumerate(dataset.pairs):
        by_label[pair.label].append(i)
    return [by_label[label] for label in sorted(by_label, key=lambda label: (label is not None, label or ""))]


def _allocate(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest
    remainder method), so the per-group counts add up exactly to ``total``."""
    n = sum(sizes)
    quotas = [total * s / n for s in sizes]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda g: (-(quotas[g] - counts[g]), g))
    for g in by_remainder[: total - sum(counts)]:
        counts[g] += 1
    return counts
