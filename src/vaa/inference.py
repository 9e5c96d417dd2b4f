"""Using a trained model: load any checkpoint (model A or a VAA model) once,
then predict, measure vulnerability, evaluate and calibrate with it.

    import vaa

    model = vaa.load("runs/qqp-a")                       # stays in memory
    probs = model.predict([("how do i cook rice ?", "how to cook rice ?")])   # [N, classes]
    model.predict_labels(pairs)                          # label names
    model.vulnerability(pairs)                           # DataFrame: F1, F2, ||V1-V2||, flipped
    model.evaluate("dev.tsv", labels="0=not_duplicate,1=duplicate")
    model.save_pretrained("models/qqp-a")                # one folder that vaa.load reads back

The module-level ``predict``/``evaluate``/``vulnerability_rows`` (what ``vaa
predict``/``vaa evaluate``/``vaa vulnerability`` call) load a checkpoint and
call these methods: one code path for the CLI and the Python API.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .calibration import (
    Calibration,
    cross_fit,
    fit,
    read_calibration,
    reliability_bins,
    run_folder_of,
    save_calibration,
    scores,
    weights_fingerprint,
)
from .checkpoint import load_checkpoint
from .config import AttackConfig, DataConfig
from .data.batching import Example
from .data.pairs import DataError, LabelMap, Pair, PairDataset
from .data.sources import check_labels, load_splits, read_file
from .device import check_precision, resolve_device
from .metrics import classification_report
from .models.base import PairModel
from .prediction import Predictions, predict_examples
from .runtime import Runtime

if TYPE_CHECKING:
    import pandas as pd

PairsLike = Iterable["Pair | tuple[str, str]"]
logger = logging.getLogger(__name__)


def as_pairs(pairs: PairsLike) -> list[Pair]:
    """``Pair`` objects, or (sentence a, sentence b) tuples numbered pair-0,
    pair-1, ... An empty sentence is an error: a model would still answer,
    with a confident-looking guess about nothing."""
    out = []
    for i, item in enumerate(pairs):
        if isinstance(item, Pair):
            pair = item
        else:
            if isinstance(item, str) or len(item) != 2:
                raise DataError(f"pair {i}: expected two sentences (a, b), got {item!r}")
            a, b = (str(s).strip() for s in item)
            pair = Pair(a, b, None, f"pair-{i}")
        for name, text in (("a", pair.a), ("b", pair.b)):
            if not text.strip():
                raise DataError(f"pair {i}: sentence {name} is empty; give two non-empty sentences")
        out.append(pair)
    if not out:
        raise DataError("no pairs given")
    return out


@dataclass
class LoadedModel:
    """A trained model held in memory, ready for raw text: ``module`` maps
    batches to logits (model A, or the whole VAA model), ``base`` featurises
    text (model A, or A inside a VAA model). ``vaa.load`` returns one."""

    module: nn.Module
    base: PairModel
    label_map: LabelMap
    kind: str  # "model" (stage one) | "vaa" (stage two)
    path: str
    calibration: Calibration | None = None  # a decision rule re-fitted on validation (`vaa calibrate`)
    runtime: Runtime = dataclasses.field(default_factory=Runtime)  # the device the module is on, the precision to run it in
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # the checkpoint's vaa.json (save_pretrained writes it back)

    @property
    def labels(self) -> list[str]:
        """Class names in the order of the probability columns."""
        return list(self.label_map.names)

    @property
    def run_dir(self) -> Path:
        return run_folder_of(self.path)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write this model into ``directory`` as a self-contained folder that
        ``vaa.load(directory)`` reads back: the checkpoint (safetensors), the
        stored calibration if any, and a model card (README.md). The folder
        must be new, empty or an earlier save; see ``vaa.pretrained``."""
        from .pretrained import save_pretrained

        return save_pretrained(self, directory)

    def featurize(self, pairs: Sequence[Pair]) -> list[Example]:
        return self.base.featurize_all(pairs, self.label_map)

    def read(
        self,
        data: str | Path,
        format: str = "auto",
        columns: str | None = None,
        labels: str | None = None,
        limit: int | None = None,
        on_error: str = "raise",
        require_labels: bool = False,
    ) -> PairDataset:
        """Pairs of a file, their labels renamed by ``labels`` (e.g.
        "0=not_duplicate,1=duplicate") and checked against the model's.
        The read report (rows kept and skipped by reason) is logged at INFO."""
        dataset = read_file(
            str(data),
            DataConfig(format=format, columns=columns, labels=labels, limit=limit, on_error=on_error),
            require_labels=require_labels,
        )
        logger.info(dataset.report.summary())
        check_labels(self.label_map, dataset)
        return dataset

    def predictions(self, examples: Sequence[Example], batch_size: int = 256, progress: bool = False) -> Predictions:
        """The model's probabilities, with the stored calibration applied if any."""
        preds = predict_examples(self.module, examples, batch_size, progress=progress, runtime=self.runtime)
        if self.calibration is None:
            return preds
        return Predictions(self.calibration.apply(preds.probs), preds.labels, None)

    def predict(self, pairs: PairsLike, batch_size: int = 256) -> np.ndarray:
        """Class probabilities [pairs, classes] (columns in ``labels`` order)."""
        return self.predictions(self.featurize(as_pairs(pairs)), batch_size).probs

    def predict_labels(self, pairs: PairsLike, batch_size: int = 256) -> list[str]:
        return [self.label_map.name(int(k)) for k in self.predict(pairs, batch_size).argmax(1)]

    def prediction_rows(self, pairs: Sequence[Pair], batch_size: int = 256) -> list[dict[str, Any]]:
        """Per pair: id, sentences, predicted label, gold if known, p_<label>."""
        preds = self.predictions(self.featurize(pairs), batch_size)
        rows = []
        for pair, probs, predicted in zip(pairs, preds.probs, preds.predicted):
            row: dict[str, Any] = {"id": pair.id, "a": pair.a, "b": pair.b, "predicted": self.label_map.name(int(predicted))}
            if pair.label is not None:
                row["gold"] = pair.label
            row.update({f"p_{name}": float(p) for name, p in zip(self.label_map.names, probs)})
            rows.append(row)
        return rows

    def vulnerability(
        self, pairs: PairsLike, attack: AttackConfig | None = None, batch_size: int = 128, progress: bool = False
    ) -> pd.DataFrame:
        """Per pair: id, gold if known, A's prediction and confidence, F1, F2,
        ||V1 - V2|| and whether the attack flips A's prediction (model A of a
        VAA model; A's own output, never a calibration). Non-finite criteria
        (an eps that overflows) raise NonFiniteError instead of being returned."""
        import pandas as pd

        from .vulnerability import measure

        items = as_pairs(pairs)
        v = measure(self.base, self.featurize(items), attack or AttackConfig(), batch_size, progress=progress)
        names = self.label_map.names
        rows = []
        for i, pair in enumerate(items):
            row: dict[str, Any] = {"id": pair.id}
            if pair.label is not None:
                row["gold"] = pair.label
            row.update(
                {
                    "predicted": names[int(v.predicted[i])],
                    "confidence": float(v.probs[i].max()),
                    "F1": float(v.f1[i]),
                    "F2": float(v.f2[i]),
                    "distance": float(v.distance[i]),
                    "flipped": bool(v.flipped[i]),
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def evaluate(
        self,
        data: str | Path,
        format: str = "auto",
        columns: str | None = None,
        labels: str | None = None,
        batch_size: int = 256,
        limit: int | None = None,
        on_error: str = "raise",
    ) -> dict[str, Any]:
        """Accuracy, per-class precision/recall/F1, the confusion matrix,
        log-loss and expected calibration error on a labelled file."""
        dataset = self.read(data, format, columns, labels, limit, on_error, require_labels=True)
        preds = self.predictions(self.featurize(dataset.pairs), batch_size)
        report = classification_report(preds.labels, preds.predicted, self.label_map.names, probs=preds.probs)
        report["data"] = dataset.report.to_json()
        report["checkpoint"] = self.path
        report["calibration"] = self.calibration.describe() if self.calibration else None
        return report


def load_model(path: str | Path, raw: bool = False, device: str | torch.device = "cpu", precision: str = "fp32") -> LoadedModel:
    """Load a checkpoint folder or run folder of either stage, in eval mode
    (checked, and without running code from it: see ``vaa.checkpoint``), on
    ``device`` (auto | cpu | cuda | cuda:N | mps), to run in ``precision``.
    A calibration stored in the run folder is loaded too unless ``raw``."""
    resolved = resolve_device(device)
    runtime = Runtime(resolved, check_precision(precision, resolved))
    checkpoint = load_checkpoint(path)
    module = checkpoint.module
    loaded = LoadedModel(
        module, checkpoint.base, checkpoint.label_map, checkpoint.kind, checkpoint.path, runtime=runtime, meta=checkpoint.meta
    )
    if not raw:
        loaded.calibration = read_calibration(loaded.run_dir, module.state_dict())
        if loaded.calibration is not None:
            logger.info("applying the run's %s; raw=True (--raw) gives the model's own output", loaded.calibration.describe())
    module.to(runtime.device)
    return loaded


load = load_model  # ``vaa.load(path)``


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    format: str = "auto",
    columns: str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    on_error: str = "raise",
    raw: bool = False,
    labels: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> dict[str, Any]:
    """``load_model(checkpoint, raw, device, precision).evaluate(data, ...)``:
    the run's stored calibration is applied unless ``raw``."""
    return load_model(checkpoint, raw=raw, device=device, precision=precision).evaluate(
        data, format, columns, labels, batch_size, limit, on_error
    )


def _model_and_pairs(
    checkpoint: str | Path,
    data: str | Path | None,
    pairs: PairsLike | None,
    format: str,
    columns: str | None,
    labels: str | None,
    limit: int | None,
    on_error: str,
    raw: bool = True,
    device: str = "cpu",
    precision: str = "fp32",
) -> tuple[LoadedModel, list[Pair]]:
    """The model, and the pairs of a file or of (a, b) tuples (exactly one)."""
    if (data is None) == (pairs is None):
        raise ValueError("give either a data file or pairs")
    items = as_pairs(pairs) if pairs is not None else None  # checked before the model is loaded
    loaded = load_model(checkpoint, raw=raw, device=device, precision=precision)
    if items is not None:
        return loaded, items
    return loaded, loaded.read(data, format, columns, labels, limit, on_error).pairs


def predict(
    checkpoint: str | Path,
    data: str | Path | None = None,
    pairs: PairsLike | None = None,
    format: str = "auto",
    columns: str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    on_error: str = "raise",
    raw: bool = False,
    labels: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Predicted label and class probabilities per pair, for a file or for
    ``pairs`` given as (sentence a, sentence b) tuples; the run's stored
    calibration is applied unless ``raw`` (and logged when it is). The file's read
    report (how many rows were kept and skipped) is logged at INFO."""
    loaded, items = _model_and_pairs(
        checkpoint, data, pairs, format, columns, labels, limit, on_error, raw=raw, device=device, precision=precision
    )
    return loaded.prediction_rows(items, batch_size)


def vulnerability_rows(
    checkpoint: str | Path,
    data: str | Path | None = None,
    pairs: PairsLike | None = None,
    attack: AttackConfig | None = None,
    format: str = "auto",
    columns: str | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    progress: bool = True,
    on_error: str = "raise",
    labels: str | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Per pair: id, gold label if known, A's prediction, F1, F2, ||V1-V2||
    and whether the attack flipped the prediction (model A of the checkpoint;
    the attack is fp32 on any device). The file's read report is logged at INFO."""
    loaded, items = _model_and_pairs(checkpoint, data, pairs, format, columns, labels, limit, on_error, device=device)
    return loaded.vulnerability(items, attack, batch_size, progress).to_dict("records")


def run_validation_split(checkpoint: str | Path, label_map: LabelMap, limit: int | None = None) -> PairDataset:
    """The validation pairs of the run that produced ``checkpoint`` (its own
    ``--valid`` file, or the same seeded split of ``--train`` it held out)."""
    from .config import RunConfig
    from .data.pairs import DataError
    from .runs import a_run_folder

    folder = a_run_folder(checkpoint)
    if folder is None:
        raise DataError("no data file given and no run folder (config.json) next to this checkpoint", checkpoint)
    data = RunConfig.load(folder / "config.json").data
    if limit is not None:
        data = dataclasses.replace(data, limit=limit)
    return load_splits(data, label_map=label_map).valid


def _validation_probabilities(
    loaded: LoadedModel, data: str | Path | None, settings: DataConfig, batch_size: int
) -> tuple[np.ndarray, np.ndarray, str]:
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
        dataset = loaded.read(
            data, settings.format, settings.columns, settings.labels, settings.limit, settings.on_error, require_labels=True
        )
        source = str(data)
    preds = predict_examples(loaded.module, loaded.featurize(dataset.pairs), batch_size, runtime=loaded.runtime)
    return preds.probs.astype(np.float64), preds.labels, source


def _run_lock(folder: Path) -> Any:
    """The run folder's lock when it is a vaa run folder, else nothing to hold
    (a standalone checkpoint folder)."""
    from contextlib import nullcontext

    from .run_folder import RunLock, is_run_folder

    return RunLock(folder) if is_run_folder(folder) else nullcontext()


def calibrate(
    checkpoint: str | Path,
    data: str | Path | None = None,
    method: str = "temperature-bias",
    format: str = "auto",
    columns: str | None = None,
    limit: int | None = None,
    on_error: str = "raise",
    batch_size: int = 256,
    seed: int = 0,
    labels: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Re-fit the checkpoint's decision rule on validation data (``data``, or
    its run's validation split) and store it in the run folder, where
    ``predict``/``evaluate``/``load_model`` apply it.

    Reports accuracy, log-loss and ECE before, after (in-sample: the stored
    rule on the pairs it was fitted on) and cross-fitted (a rule fitted on one
    half scores the other half): the honest estimate of what it gains."""
    from .figures import plot_reliability

    loaded = load_model(checkpoint, raw=True, device=device)
    settings = DataConfig(format=format, columns=columns, labels=labels, limit=limit, on_error=on_error)
    probs, gold, source = _validation_probabilities(loaded, data, settings, batch_size)
    rule = fit(probs, gold, method)
    rule.fitted_on = {"source": source, "pairs": int((gold >= 0).sum())}
    rule.fingerprint = weights_fingerprint(loaded.module.state_dict())
    after = rule.apply(probs)
    crossed, _ = cross_fit(probs, gold, method, seed=seed)
    report = {
        "checkpoint": loaded.path,
        "method": method,
        "fitted_on": rule.fitted_on,
        "before": scores(probs, gold),
        "after_in_sample": scores(after, gold),
        "after_cross_fitted": scores(crossed, gold),
        "reliability": {"before": reliability_bins(probs, gold), "after": reliability_bins(after, gold)},
    }
    with _run_lock(loaded.run_dir):  # a training still writing this folder keeps us out
        path = save_calibration(rule, loaded.run_dir, report)
        if (loaded.run_dir / "results.json").exists():  # a run folder: its model card now names the stored rule
            from .model_card import write_run_card

            write_run_card(loaded.run_dir)
        plot = plot_reliability(
            report["reliability"],
            loaded.run_dir / "calibration.png",
            title=f"Reliability on {source} ({rule.fitted_on['pairs']} pairs)",
        )
    report.update({"calibration": rule.to_json(), "saved": str(path), "plot": str(plot)})
    logger.info(rule.describe())
    for name in ("before", "after_in_sample", "after_cross_fitted"):
        s = report[name]
        logger.info(
            f"{name.replace('_', ' '):>18}: accuracy {s['accuracy']:.4f}  log-loss {s['log_loss']:.4f}  ECE {s['ece']:.4f}"
        )
    logger.info(f"stored in {path}; predict/evaluate apply it (--raw for the model's own output); diagram {plot}")
    return report
