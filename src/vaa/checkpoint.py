"""Self-describing checkpoints, written atomically.

A checkpoint file holds everything needed to use the model on raw text again:
the model family and its arguments, the featuriser state (vocabulary or
tokenizer), the label map and the weights. Stage-two checkpoints add the VAA
settings and model A. Files are written to a temporary name and renamed, so an
interruption never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .data.pairs import DataError, LabelMap
from .models import model_class
from .models.base import PairModel

FORMAT = "vaa-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def describe_model(model: PairModel, label_map: LabelMap) -> dict[str, Any]:
    """What rebuilds ``model`` (without weights)."""
    return {
        "family": model.family,
        "spec": model.spec(),
        "featurizer": model.featurizer_state(),
        "label_map": label_map.to_json(),
    }


def rebuild_model(description: dict[str, Any]) -> tuple[PairModel, LabelMap]:
    label_map = LabelMap.from_json(description["label_map"])
    cls = model_class(description["family"])
    return cls.from_state(description["spec"], description["featurizer"], len(label_map)), label_map


def header(base: PairModel, label_map: LabelMap, kind: str = "model", **extra: Any) -> dict[str, Any]:
    """A checkpoint without its weights: what the trainer saves around
    ``state_dict`` (``kind`` is "model" for stage one, "vaa" for stage two)."""
    return {"format": FORMAT, "version": VERSION, "kind": kind, "model": describe_model(base, label_map), **extra}


def save_model(model: PairModel, label_map: LabelMap, path: str | Path, **extra: Any) -> None:
    """Save a stage-one model as a checkpoint file."""
    atomic_save({**header(model, label_map, **extra), "state_dict": model.state_dict()}, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file, with a clear error when it is not one."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.pt", path / "best.pt"):
            if candidate.exists():
                path = candidate
                break
        else:
            raise DataError("no checkpoint in this folder (expected checkpoints/best.pt)", path)
    if not path.exists():
        raise DataError("checkpoint not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or foreign file
        raise DataError(f"not a readable checkpoint ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError("not a vaa checkpoint", path)
    if payload.get("version", 0) > VERSION:
        raise DataError(f"checkpoint version {payload['version']} is newer than this vaa ({VERSION})", path)
    payload["path"] = str(path)
    return payload


def load_pair_model(path: str | Path) -> tuple[PairModel, LabelMap, dict[str, Any]]:
    """A stage-one model from its checkpoint (file or run folder)."""
    payload = read_checkpoint(path)
    if payload["kind"] != "model":
        raise DataError(f"this is a {payload['kind']} checkpoint, expected a stage-one model", payload["path"])
    model, label_map = rebuild_model(payload["model"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, label_map, payload
