"""Using a trained model: load any checkpoint (model A or a VAA model),
evaluate it on a labelled file, predict labels for a file or a single pair.

``vaa evaluate`` and ``vaa predict`` call these; so can Python code::

    from vaa import predict
    predict("runs/qqp/checkpoints/best.pt", pairs=[("how do i cook rice ?", "how to cook rice ?")])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from torch import nn

from .calibration import (Calibration, cross_fit, fit, read_calibration, reliability_bins, run_folder_of, save_calibration,
                          scores, weights_fingerprint)
from .checkpoint import read_checkpoint, rebuild_model
from .config import AttackConfig, DataConfig, VAAConfig
from .data.batching import Example
from .data.pairs import LabelMap, Pair
from .data.pairs import PairDataset
from .data.sources import check_labels, load_splits, read_file
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
    calibration: Calibration | None = None  # a decision rule re-fitted on validation (`vaa calibrate`)

    def featurize(self, pairs: Sequence[Pair]) -> list[Example]:
        return self.base.featurize_all(pairs, self.label_map)

    @property
    def run_dir(self) -> Path:
        return run_folder_of(self.path)

    def predictions(self, examples: Sequence[Example], batch_size: int = 256, progress: bool = False) -> Predictions:
        """The model's probabilities, with the stored calibration applied if any."""
        preds = predict_examples(self.module, examples, batch_size, progress=progress)
        if self.calibration is None:
            return preds
        return Predictions(self.calibration.apply(preds.probs), preds.labels, None)


def load_model(path: str | Path, raw: bool = False) -> LoadedModel:
    """Load a checkpoint file or run folder of either stage, in eval mode.
    A calibration stored in the run folder is loaded too unless ``raw``."""
    payload = read_checkpoint(path)
    base, label_map = rebuild_model(payload["model"])
    if payload["kind"] == "vaa":
        from .framework import VAAModel

        module: nn.Module = VAAModel(base, VAAConfig(**payload["vaa"]), AttackConfig(**payload["attack"]))
    else:
        module = base
    module.load_state_dict(payload["state_dict"])
    module.eval()
    loaded = LoadedModel(module, base, label_map, payload["kind"], payload["path"])
    if not raw:
        loaded.calibration = read_calibration(loaded.run_dir, weights_fingerprint(module.state_dict()))
    return loaded


def evaluate(
    checkpoint: str | Path, data: str | Path, format: str = "auto", columns: str | None = None, batch_size: int = 256,
    limit: int | None = None, on_error: str = "raise", raw: bool = False,
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1, the confusion matrix, log-loss
    and expected calibration error of a checkpoint on a labelled file (with
    the run's stored calibration applied unless ``raw``)."""
    loaded = load_model(checkpoint, raw=raw)
    dataset = read_file(str(data), DataConfig(format=format, columns=columns, limit=limit, on_error=on_error), require_labels=True)
    check_labels(loaded.label_map, dataset)
    preds = loaded.predictions(loaded.featurize(dataset.pairs), batch_size)
    report = classification_report(preds.labels, preds.predicted, loaded.label_map.names, probs=preds.probs)
    report["data"] = dataset.report.to_json()
    report["checkpoint"] = loaded.path
    report["calibration"] = loaded.calibration.describe() if loaded.calibration else None
    return report


def _model_and_pairs(checkpoint: str | Path, data: str | Path | None, pairs: Sequence[tuple[str, str]] | None,
                     settings: DataConfig, raw: bool = True) -> tuple[LoadedModel, list[Pair]]:
    """The model, and the pairs of a file or of (a, b) tuples (exactly one)."""
    if (data is None) == (pairs is None):
        raise ValueError("give either a data file or pairs")
    loaded = load_model(checkpoint, raw=raw)
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
    on_error: str = "raise", raw: bool = False, on_calibration: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Predicted label and class probabilities per pair, for a file or for
    ``pairs`` given as (sentence a, sentence b) tuples; the run's stored
    calibration is applied unless ``raw`` (and described to ``on_calibration``)."""
    loaded, items = _model_and_pairs(checkpoint, data, pairs, DataConfig(format=format, columns=columns, limit=limit, on_error=on_error),
                                     raw=raw)
    if loaded.calibration is not None and on_calibration is not None:
        on_calibration(loaded.calibration.describe())
    preds = loaded.predictions(loaded.featurize(items), batch_size)
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


def run_validation_split(checkpoint: str | Path, label_map: LabelMap, limit: int | None = None) -> PairDataset:
    """The validation pairs of the run that produced ``checkpoint`` (its own
    ``--valid`` file, or the same seeded split of ``--train`` it held out)."""
    from .config import RunConfig
    from .data.pairs import DataError
    from .stage_two import a_run_folder

    folder = a_run_folder(checkpoint)
    if folder is None:
        raise DataError("no data file given and no run folder (config.json) next to this checkpoint", checkpoint)
    data = RunConfig.load(folder / "config.json").data
    if limit is not None:
        data = dataclasses.replace(data, limit=limit)
    return load_splits(data, label_map=label_map).valid


def _validation_probabilities(loaded: LoadedModel, data: str | Path | None, settings: DataConfig,
                              batch_size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The model's own (raw) probabilities and gold labels on ``data``, or on
    its run's validation split. A finished run's saved validation predictions
    are those of the same best checkpoint, so they are reused."""
    saved = loaded.run_dir / "predictions" / "valid.npz"
    if data is None and settings.limit is None and saved.exists() and (loaded.run_dir / "results.json").exists():
        npz = np.load(saved)
        return npz["probs"].astype(np.float64), npz["gold"], "the run's validation split (saved predictions)"
    if data is None:
        dataset = run_validation_split(loaded.path, loaded.label_map, settings.limit)
        source = "the run's validation split"
    else:
        dataset = read_file(str(data), settings, require_labels=True)
        check_labels(loaded.label_map, dataset)
        source = str(data)
    preds = predict_examples(loaded.module, loaded.featurize(dataset.pairs), batch_size)
    return preds.probs.astype(np.float64), preds.labels, source


def calibrate(
    checkpoint: str | Path, data: str | Path | None = None, method: str = "temperature-bias", format: str = "auto",
    columns: str | None = None, limit: int | None = None, on_error: str = "raise", batch_size: int = 256,
    seed: int = 0, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Re-fit the checkpoint's decision rule on validation data (``data``, or
    its run's validation split) and store it in the run folder, where
    ``predict``/``evaluate``/``load_model`` apply it.

    Reports accuracy, log-loss and ECE before, after (in-sample: the stored
    rule on the pairs it was fitted on) and cross-fitted (a rule fitted on one
    half scores the other half): the honest estimate of what it gains."""
    from .analysis.plots import plot_reliability

    loaded = load_model(checkpoint, raw=True)
    settings = DataConfig(format=format, columns=columns, limit=limit, on_error=on_error)
    probs, labels, source = _validation_probabilities(loaded, data, settings, batch_size)
    rule = fit(probs, labels, method)
    rule.fitted_on = {"source": source, "pairs": int((labels >= 0).sum())}
    rule.fingerprint = weights_fingerprint(loaded.module.state_dict())
    after = rule.apply(probs)
    crossed, _ = cross_fit(probs, labels, method, seed=seed)
    report = {"checkpoint": loaded.path, "method": method, "fitted_on": rule.fitted_on,
              "before": scores(probs, labels), "after_in_sample": scores(after, labels), "after_cross_fitted": scores(crossed, labels),
              "reliability": {"before": reliability_bins(probs, labels), "after": reliability_bins(after, labels)}}
    path = save_calibration(rule, loaded.run_dir, report)
    plot = plot_reliability(report["reliability"], loaded.run_dir / "calibration.png",
                            title=f"Reliability on {source} ({rule.fitted_on['pairs']} pairs)")
    report.update({"calibration": rule.to_json(), "saved": str(path), "plot": str(plot)})
    log(rule.describe())
    for name in ("before", "after_in_sample", "after_cross_fitted"):
        s = report[name]
        log(f"{name.replace('_', ' '):>18}: accuracy {s['accuracy']:.4f}  log-loss {s['log_loss']:.4f}  ECE {s['ece']:.4f}")
    log(f"stored in {path}; predict/evaluate apply it (--raw for the model's own output); diagram {plot}")
    return report
