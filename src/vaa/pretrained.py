"""``LoadedModel.save_pretrained(dir)``: a trained model as one folder that
travels alone and that ``vaa.load(dir)`` reads back.

The folder is a checkpoint folder of :mod:`vaa.checkpoint` (written by its
own ``write_checkpoint_files``: one format, one set of load-time checks), plus
what a user needs to trust it away from its run folder:

    model.safetensors, vaa.json, vocab.json | tokenizer/   the checkpoint
    calibration.json   the stored decision rule, if the model has one (its
                       weights fingerprint still matches: the weights are the same)
    README.md          the model card (see :mod:`vaa.model_card`)

A standalone checkpoint folder is its own run folder for ``vaa.load``
(:func:`vaa.calibration.run_folder_of`), so the calibration is applied on
load exactly as it was in the run.

Saving never deletes anything it did not write: the target must be new,
empty, or an earlier save (only the entries a save writes). It is replaced
as a whole only once the new folder is complete.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .calibration import CALIBRATION_FILE, run_folder_of, save_calibration, weights_fingerprint
from .checkpoint import FORMAT, METADATA, WEIGHTS, CheckpointInfo, write_checkpoint_files
from .files import OutputError, atomic_write_text, replace_folder
from .model_card import CARD, render
from .run_folder import is_run_folder

if TYPE_CHECKING:
    from .inference import LoadedModel

_META_OWN = ("format", "version", "kind", "model")  # written by write_checkpoint_files itself


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _save_entries(meta: dict[str, Any]) -> set[str]:
    """The top-level names a save writes, given its ``vaa.json``."""
    featurizer = (meta.get("model") or {}).get("featurizer_files") or []
    return {WEIGHTS, METADATA, CARD, CALIBRATION_FILE} | {str(name).split("/")[0] for name in featurizer}


def check_target(target: Path, source: Path) -> None:
    """Refuse a target that is not new, empty or an earlier save (one line
    naming the folder and what to do); never the folder the model came from."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot save to {target}: it is a file; choose a folder path")
    if target.resolve() == source.resolve():
        raise OutputError(f"cannot save to {target}: the model was loaded from this folder; choose another folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if target.parent.name == "checkpoints" and is_run_folder(target.parent.parent):
        raise OutputError(f"cannot save to {target}: it is a training run's checkpoint, not a saved model; choose another folder")
    meta = _read_json(target / METADATA)
    if meta is None or meta.get("format") != FORMAT:
        raise OutputError(
            f"cannot save to {target}: the folder is not empty and not an earlier save_pretrained "
            f"(no {METADATA}); choose an empty or new folder"
        )
    foreign = sorted(p.name for p in target.iterdir() if p.name not in _save_entries(meta) and not p.name.endswith(".tmp"))
    if foreign:
        raise OutputError(
            f"cannot save to {target}: it holds files a save does not write ({', '.join(foreign[:5])}); "
            "move them away or choose another folder"
        )


def _card(model: LoadedModel, meta: dict[str, Any], calibration: dict[str, Any] | None) -> str:
    """The card from the records of the run the model came from; from an
    earlier save (no records) its card is kept; otherwise what vaa.json says."""
    run_dir = run_folder_of(model.path)
    results = _read_json(run_dir / "results.json")
    if results is not None:
        return render(
            results,
            _read_json(run_dir / "config.json"),
            _read_json(run_dir / "data.json"),
            calibration,
            meta,
            source=str(run_dir),
        )
    earlier = Path(model.path) / CARD
    if earlier.is_file():
        return earlier.read_text()
    return render(calibration=calibration, meta=meta, source=model.path)


def save_pretrained(model: LoadedModel, directory: str | Path) -> Path:
    """Write ``model`` (either stage, either family) into ``directory`` as a
    self-contained folder; returns its path. See the module docstring."""
    target = Path(directory)
    check_target(target, Path(model.path))
    meta = dict(model.meta)
    extra = {k: v for k, v in meta.items() if k not in _META_OWN}
    info = CheckpointInfo(model.base, model.label_map, model.kind, extra)
    calibration: dict[str, Any] | None = None
    rule = model.calibration
    if rule is not None:
        if rule.fingerprint is None:  # a rule set by hand: tie it to these weights
            rule = dataclasses.replace(rule, fingerprint=weights_fingerprint(model.module.state_dict()))
        stored = _read_json(run_folder_of(model.path) / CALIBRATION_FILE) or {}
        report = stored.get("report") if stored.get("calibration") == rule.to_json() else None
        calibration = {"calibration": rule.to_json(), **({"report": report} if report else {})}

    def write(folder: Path) -> None:
        write_checkpoint_files(folder, model.module, info)
        if rule is not None and calibration is not None:
            save_calibration(rule, folder, calibration.get("report"))
        written = _read_json(folder / METADATA) or meta
        atomic_write_text(_card(model, written, calibration), folder / CARD)

    return replace_folder(target, write)
