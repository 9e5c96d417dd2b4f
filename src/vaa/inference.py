"""Using a trained model: load any checkpoint (model A or a VAA model),
evaluate it on a labelled file, predict labels for a file or a single pair.

``vaa evaluate`` and ``vaa predict`` call these; so can Python code::

    from vaa import predict
    predict("runs/qqp/checkpoints/best.pt", pairs=[("how do i cook rice ?", "how to cook rice ?")])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .checkpoint import read_checkpoint, rebuild_model
from .config import AttackConfig, DataConfig, VAAConfig
from .data.batching import Example
from .data.pairs import LabelMap, Pair
from .data.sources import check_labels, read_file
from .metrics import classification_report
from .models.base import PairModel
from .training import Predictions, predict_examples


@dataclass
class LoadedModel:
    """A model ready for raw pairs: ``module`` maps batches to logits,
    ``base`` featurises text (model A, or A inside a VAA model)."""

    module: nn.Module
    base: PairModel
    label_map: LabelMap
    kind: str  # "model" (stage one) | "vaa" (stage two)
    path: str

    def featurize(self, pairs: Sequence[Pair]) -> list[Example]:
        return self.base.featurize_all(pairs, self.label_map)


def load_model(path: str | Path) -> LoadedModel:
    """Load a checkpoint file or run folder of either stage, in eval mode."""
    payload = read_checkpoint(path)
    base, label_map = rebuild_model(payload["model"])
    if payload["kind"] == "vaa":
        from .framework import VAAModel

        module: nn.Module = VAAModel(base, VAAConfig(**payload["vaa"]), AttackConfig(**payload["attack"]))
    else:
        module = base
    module.load_state_dict(payload["state_dict"])
    module.eval()
    return LoadedModel(module, base, label_map, payload["kind"], payload["path"])


def score_examples(model: nn.Module, examples: Sequence[Example], label_map: LabelMap, batch_size: int = 256) -> dict[str, Any] | None:
    """Classification report, or None when no example is labelled."""
    preds = predict_examples(model, examples, batch_size)
    if (preds.labels < 0).all():
        return None
    return classification_report(preds.labels, preds.predicted, label_map.names)


def evaluate(
    checkpoint: str | Path, data: str | Path, format: str = "auto", columns: str | None = None, batch_size: int = 256,
    limit: int | None = None, on_error: str = "raise",
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of a
    checkpoint on a labelled file."""
    loaded = load_model(checkpoint)
    dataset = read_file(str(data), DataConfig(format=format, columns=columns, limit=limit, on_error=on_error), require_labels=True)
    check_labels(loaded.label_map, dataset)
    report = score_examples(loaded.module, loaded.featurize(dataset.pairs), loaded.label_map, batch_size)
    assert report is not None
    report["data"] = dataset.report.to_json()
    report["checkpoint"] = loaded.path
    return report


def _model_and_pairs(checkpoint: str | Path, data: str | Path | None, pairs: Sequence[tuple[str, str]] | None,
                     settings: DataConfig) -> tuple[LoadedModel, list[Pair]]:
    """The model, and the pairs of a file or of (a, b) tuples (exactly one)."""
    if (data is None) == (pairs is None):
        raise ValueError("give either a data file or pairs")
    loaded = load_model(checkpoint)
    if pairs is not None:
        return loaded, [Pair(a, b, None, f"pair-{i}") for i, (a, b) in enumerate(pairs)]
    dataset = read_file(str(data), settings)
    check_labels(loaded.label_map, dataset)
    return loaded, dataset.pairs


def _rows(pairs: Sequence[Pair], preds: Predictions, label_map: LabelMap) -> list[dict[str, Any]]:
    rows = []
    for pair, probs, predicted in zip(pairs, preds.probs, preds.predicted):
        row: dict[str, Any] = {"id": pair.id, "a": pair.a, "b": pair.b, "predicted": label_map.name(int(predicted))}
        if pair.label is not None:
            row["gold"] = pair.label
        row.update({f"p_{name}": float(p) for name, p in zip(label_map.names, probs)})
        rows.append(row)
    return rows


def predict(
    checkpoint: str | Path, data: str | Path | None = None, pairs: Sequence[tuple[str, str]] | None = None,
    format: str = "auto", columns: str | None = None, batch_size: int = 256, limit: int | None = None,
    on_error: str = "raise",
) -> list[dict[str, Any]]:
    """Predicted label and class probabilities per pair, for a file or for
    ``pairs`` given as (sentence a, sentence b) tuples."""
    loaded, items = _model_and_pairs(checkpoint, data, pairs, DataConfig(format=format, columns=columns, limit=limit, on_error=on_error))
    preds = predict_examples(loaded.module, loaded.featurize(items), batch_size)
    return _rows(items, preds, loaded.label_map)


def vulnerability_rows(
    checkpoint: str | Path, data: str | Path | None = None, pairs: Sequence[tuple[str, str]] | None = None,
    attack: AttackConfig = AttackConfig(), format: str = "auto", columns: str | None = None, limit: int | None = None,
    batch_size: int = 128, progress: bool = True, on_error: str = "raise",
) -> list[dict[str, Any]]:
    """Per pair: id, gold label if known, A's prediction, F1, F2, ||V1-V2||
    and whether the attack flipped the prediction (model A of the checkpoint)."""
    from .vulnerability import measure

    loaded, items = _model_and_pairs(checkpoint, data, pairs, DataConfig(format=format, columns=columns, limit=limit, on_error=on_error))
    v = measure(loaded.base, loaded.featurize(items), attack, batch_size, progress=progress)
    names = loaded.label_map.names
    rows = []
    for i, pair in enumerate(items):
        row: dict[str, Any] = {"id": pair.id}
        if pair.label is not None:
            row["gold"] = pair.label
        row.update({"predicted": names[int(v.predicted[i])], "confidence": float(v.probs[i].max()), "F1": float(v.f1[i]),
                    "F2": float(v.f2[i]), "distance": float(v.distance[i]), "flipped": bool(v.flipped[i])})
        rows.append(row)
    return rows
