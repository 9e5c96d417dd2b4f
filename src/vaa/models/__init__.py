"""Model families. Each implements the small interface in ``base.PairModel``;
a family is found by name, so checkpoints, the CLI and stage two never import a
family directly."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from ..data.pairs import LabelMap, Pair
from .base import Embedded, PairModel

# family name -> "module:Class", imported on first use (the HF family pulls in
# transformers, which ESIM users should not pay for).
FAMILIES = {"esim": "vaa.models.esim:ESIM", "hf": "vaa.models.hf:HFPairModel"}


def model_class(family: str) -> type[PairModel]:
    try:
        module, name = FAMILIES[family].split(":")
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}") from None
    return getattr(import_module(module), name)


def build_model(family: str, train_pairs: Sequence[Pair], label_map: LabelMap, seed: int = 0, **options: Any) -> PairModel:
    """A fresh model A of ``family`` for this training data."""
    return model_class(family).build(train_pairs, label_map, seed=seed, **options)  # type: ignore[attr-defined]


__all__ = ["Embedded", "PairModel", "FAMILIES", "model_class", "build_model"]
