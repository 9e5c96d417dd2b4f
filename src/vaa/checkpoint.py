"""Checkpoints as folders that load without running any code from them.

A checkpoint is a folder (``<run>/checkpoints/best/``, ``.../last/``)::

    model.safetensors      the weights (safetensors: tensors only, no pickle)
    vaa.json               format, kind, family, architecture (spec), label map,
                           stage-two settings, which featuriser files belong to it
    vocab.json             ESIM's vocabulary (featuriser files, named by the family)
    tokenizer/...          or the Hugging Face tokenizer's own JSON/text files
    training_state.pt      last/ only: optimiser, scheduler, RNG and loop state,
                           read with ``torch.load(weights_only=True)``

This is the layout a ``save_pretrained(dir)`` / ``vaa.load(dir)`` API can
reuse as it is. A stage-two checkpoint (kind ``vaa``) holds the whole VAA
model: the frozen A (``a.*``), W (``projection.*``) and B (``b.*``).

Loading trusts nothing in the folder: the weights are read with safetensors,
``vaa.json`` is plain JSON, and the two are checked against each other (keys,
shapes, label count, vocabulary and hidden sizes, family, and hashes of the
label map and featuriser files recorded in the weights' header, which catch
a swapped label or a shuffled vocabulary). Non-finite weights are refused.
Old single-file ``.pt`` checkpoints (pickle) are refused; ``vaa convert``
turns one you made yourself into a folder.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.pairs import DataError, LabelMap
from .files import replace_folder
from .models import model_class
from .models.base import PairModel

FORMAT = "vaa-checkpoint"
VERSION = 2
WEIGHTS = "model.safetensors"
METADATA = "vaa.json"
TRAINING_STATE = "training_state.pt"
CONVERT_HINT = (
    "if you made it yourself with an older vaa, convert it with `vaa convert OLD NEW` "
    "(that executes code from the file: only for files you trust)"
)


class CheckpointError(DataError):
    """A checkpoint that cannot be used as it is (the message names the field)."""


# -- what a checkpoint describes --------------------------------------------


@dataclass
class CheckpointInfo:
    """Everything a checkpoint says besides the weights: the base model (whose
    architecture and featuriser are saved), the label map, the kind ("model"
    for stage one, "vaa" for stage two) and extra JSON settings."""

    base: PairModel
    label_map: LabelMap
    kind: str = "model"
    extra: dict[str, Any] = field(default_factory=dict)


def header(base: PairModel, label_map: LabelMap, kind: str = "model", **extra: Any) -> CheckpointInfo:
    """What the trainer saves around the weights (``kind``: "model" | "vaa")."""
    return CheckpointInfo(base, label_map, kind, extra)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_hash(obj: Any) -> str:
    return _sha256(json.dumps(obj, sort_keys=True, default=str).encode())


def _fingerprints(family: str, kind: str, spec: Any, label_map: dict[str, Any], files: dict[str, str]) -> dict[str, str]:
    """Hashes stored in the weights' header: they tie the weights to the
    metadata they were trained with."""
    return {
        "format": FORMAT,
        "family": family,
        "kind": kind,
        "spec_sha256": _json_hash(spec),
        "label_map_sha256": _json_hash(label_map),
        "featurizer_sha256": _json_hash(files),
    }


# -- training state without pickle -------------------------------------------


def rng_state(device: torch.device | str | None = None) -> dict[str, Any]:
    """The RNG states of torch, numpy and Python (and of ``device`` when it is
    a CUDA device) as tensors and plain lists, so that
    ``torch.load(weights_only=True)`` can read them back."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": int(version), "state": list(internal), "gauss": py_gauss},
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | str | None = None) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device is not None and torch.device(device).type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


# -- writing ---------------------------------------------------------------


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as separate contiguous CPU tensors (safetensors refuses
    tensors that share memory)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def write_checkpoint_files(
    folder: Path, module: nn.Module, info: CheckpointInfo, training_state: dict[str, Any] | None = None
) -> None:
    """Fill an (empty) folder with a checkpoint; see the module docstring."""
    from safetensors.torch import save_file

    base = info.base
    files = base.featurizer_files()
    hashes = {}
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        hashes[name] = _sha256(content)
    spec, label_map = base.spec(), info.label_map.to_json()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": info.kind,
        "model": {"family": base.family, "spec": spec, "label_map": label_map, "featurizer_files": sorted(files)},
        **info.extra,
    }
    (folder / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    save_file(_tensors(module), str(folder / WEIGHTS), metadata=_fingerprints(base.family, info.kind, spec, label_map, hashes))
    if training_state is not None:
        torch.save(training_state, folder / TRAINING_STATE)


def save_checkpoint(
    path: str | Path, module: nn.Module, info: CheckpointInfo, training_state: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint folder, replacing any previous one only once the new
    one is complete (a ``kill -9`` leaves the old or the new, never a mix)."""
    return replace_folder(path, lambda tmp: write_checkpoint_files(tmp, module, info, training_state))


def save_model(model: PairModel, label_map: LabelMap, path: str | Path, **extra: Any) -> Path:
    """Save a stage-one model as a checkpoint folder."""
    return save_checkpoint(path, model, header(model, label_map, **extra))


# -- finding and reading -----------------------------------------------------


def _is_pickle_checkpoint(path: Path) -> bool:
    """An old single-file checkpoint: a torch zip archive or a raw pickle."""
    if not path.is_file():
        return False
    if path.suffix in (".pt", ".pth", ".bin", ".pkl"):
        return True
    try:
        with path.open("rb") as f:
            start = f.read(2)
    except OSError:
        return False
    return zipfile.is_zipfile(path) or start[:1] == b"\x80"


def checkpoint_folder(path: str | Path) -> Path:
    """The checkpoint folder meant by ``path``: a checkpoint folder, a run
    folder (its ``checkpoints/best``), or the weights file inside one. An old
    pickle checkpoint is refused here, before anything reads it."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS, METADATA):
        path = path.parent
    if _is_pickle_checkpoint(path):
        raise CheckpointError(f"old-format checkpoint (pickle, may run code when loaded): refused; {CONVERT_HINT}", path)
    if path.is_dir() and not (path / METADATA).exists():
        best = path / "checkpoints" / "best"
        if (best / METADATA).exists():
            return best
        for old in (path / "checkpoints" / "best.pt", path / "best.pt"):
            if old.exists():
                raise CheckpointError(
                    f"old-format checkpoint {old.name} (pickle, may run code when loaded): refused; {CONVERT_HINT}", path
                )
        raise CheckpointError(
            f"no checkpoint here (expected {METADATA} and {WEIGHTS}, or a run folder with checkpoints/best/)", path
        )
    if not path.exists():
        raise CheckpointError("checkpoint not found", path)
    if not path.is_dir():
        raise CheckpointError(f"not a checkpoint (expected a folder with {METADATA} and {WEIGHTS})", path)
    return path


def _require(meta: dict[str, Any], dotted: str, kind: type | tuple[type, ...], where: Path) -> Any:
    value: Any = meta
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict) or part not in value:
            raise CheckpointError(f"missing field '{'.'.join(parts[: i + 1])}'; the file was changed or is incomplete", where)
        value = value[part]
    if not isinstance(value, kind):
        raise CheckpointError(f"field '{dotted}' has the wrong type ({type(value).__name__})", where)
    return value


def read_metadata(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(checkpoint folder, its checked ``vaa.json``) without reading weights."""
    folder = checkpoint_folder(path)
    where = folder / METADATA
    try:
        meta = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"not readable JSON ({exc})", where) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a vaa checkpoint (format is not {FORMAT!r})", where)
    version = _require(meta, "version", int, where)
    if version > VERSION:
        raise CheckpointError(f"checkpoint version {version} is newer than this vaa ({VERSION}); upgrade vaa", where)
    if version < VERSION:
        raise CheckpointError(f"checkpoint version {version} is older than this vaa ({VERSION}); {CONVERT_HINT}", where)
    kind = _require(meta, "kind", str, where)
    if kind not in ("model", "vaa"):
        raise CheckpointError(f"field 'kind' is {kind!r} (model | vaa)", where)
    _require(meta, "model.family", str, where)
    _require(meta, "model.spec", dict, where)
    names = _require(meta, "model.label_map.names", list, where)
    _require(meta, "model.featurizer_files", list, where)
    if len(names) < 2 or len(set(map(str, names))) != len(names):
        raise CheckpointError(f"field 'model.label_map.names' must list two or more distinct labels, got {names}", where)
    if kind == "vaa":
        _require(meta, "vaa", dict, where)
        _require(meta, "attack", dict, where)
    return folder, meta


def _read_featurizer(folder: Path, names: list[Any]) -> dict[str, bytes]:
    files = {}
    for name in names:
        target = (folder / str(name)).resolve()
        if folder.resolve() not in target.parents:
            raise CheckpointError(f"featuriser file {name!r} lies outside the checkpoint folder", folder / METADATA)
        if not target.is_file():
            raise CheckpointError(f"featuriser file {name} is missing", folder)
        files[str(name)] = target.read_bytes()
    return files


def _weights_header(folder: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, name -> shape) of the safetensors file, without the data."""
    from safetensors import safe_open

    path = folder / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{WEIGHTS} is missing", folder)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"damaged weights file ({type(exc).__name__}: {exc})", path) from None


def _explain_shape(name: str, expected: tuple[int, ...], found: tuple[int, ...], fields: dict[str, list[tuple[str, int]]]) -> str:
    """Name the metadata field a shape mismatch contradicts, if we know it."""
    lookup = name
    for prefix in ("a.", "b."):
        if name.startswith(prefix) and name[len(prefix) :] in fields:
            lookup = name[len(prefix) :]
    for label, dim in fields.get(lookup, []):
        if dim < len(expected) and dim < len(found) and expected[dim] != found[dim]:
            return f"{label} {expected[dim]} in the metadata does not match the weights ({name} has {found[dim]} on axis {dim})"
    return f"tensor {name} has shape {list(found)}, the architecture in {METADATA} expects {list(expected)}"


def check_weights(
    module: nn.Module, shapes: dict[str, tuple[int, ...]], fields: dict[str, list[tuple[str, int]]], where: Path
) -> None:
    """Keys and shapes of the saved tensors against the module rebuilt from
    the metadata; the first problem is one line naming the field."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))

    def named_first(name: str) -> tuple[bool, str]:  # tensors whose axes name a field are explained first
        bare = name[2:] if name[:2] in ("a.", "b.") else name
        return (bare not in fields and name not in fields, name)

    for name in sorted(set(expected) & set(shapes), key=named_first):
        if expected[name] != shapes[name]:
            raise CheckpointError(_explain_shape(name, expected[name], shapes[name], fields), where)
    if missing:
        raise CheckpointError(
            f"{len(missing)} tensor(s) missing from {WEIGHTS} (e.g. {missing[0]}); "
            f"the weights do not belong to the architecture in {METADATA}",
            where,
        )
    if extra:
        raise CheckpointError(
            f"{len(extra)} unexpected tensor(s) in {WEIGHTS} (e.g. {extra[0]}); "
            f"the weights do not belong to the architecture in {METADATA}",
            where,
        )


def load_weights(module: nn.Module, folder: Path, fields: dict[str, list[tuple[str, int]]] | None = None) -> dict[str, str]:
    """Load ``model.safetensors`` into ``module`` after checking keys, shapes
    and finiteness; returns the weights' header metadata."""
    from safetensors.torch import load_file

    metadata, shapes = _weights_header(folder)
    check_weights(module, shapes, fields or {}, folder / WEIGHTS)
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as exc:
        raise CheckpointError(f"damaged weights file ({type(exc).__name__}: {exc})", folder / WEIGHTS) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"tensor {name} holds {bad} non-finite value(s) (NaN/inf): the model is unusable", folder / WEIGHTS
            )
    module.load_state_dict(tensors, strict=True)
    return metadata


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: ``module`` maps batches to logits (model A, or
    the VAA model), ``base`` is model A (featurises raw text)."""

    module: nn.Module
    base: PairModel
    label_map: LabelMap
    kind: str
    meta: dict[str, Any]
    path: str


def _rebuild_base(meta: dict[str, Any], files: dict[str, bytes], where: Path) -> tuple[PairModel, LabelMap]:
    description = meta["model"]
    family = description["family"]
    try:
        cls = model_class(family)
    except ValueError as exc:
        raise CheckpointError(f"field 'model.family': {exc}", where) from None
    label_map = LabelMap.from_json(description["label_map"])
    try:
        state = cls.featurizer_from_files(files)
        return cls.from_state(description["spec"], state, len(label_map)), label_map
    except CheckpointError:
        raise
    except Exception as exc:  # a spec that does not fit the family
        raise CheckpointError(
            f"cannot rebuild the {family} model from field 'model.spec' "
            f"({type(exc).__name__}: {exc}); the metadata was changed or belongs to another family",
            where,
        ) from None


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load a checkpoint folder of either stage (or a run folder's best), in
    eval mode, with every check of the module docstring."""
    folder, meta = read_metadata(path)
    where = folder / METADATA
    description = meta["model"]
    files = _read_featurizer(folder, description["featurizer_files"])
    header_meta, shapes = _weights_header(folder)
    if header_meta.get("format") != FORMAT:
        raise CheckpointError(f"{WEIGHTS} was not written by vaa (no {FORMAT} header)", folder / WEIGHTS)
    for key, value in (("family", description["family"]), ("kind", meta["kind"])):
        if header_meta.get(key) != value:
            raise CheckpointError(
                f"field '{'model.family' if key == 'family' else key}' is {value!r} but the weights were "
                f"saved for {header_meta.get(key)!r}",
                where,
            )
    base, label_map = _rebuild_base(meta, files, where)
    fields = base.shape_fields()
    module: nn.Module = base
    if meta["kind"] == "vaa":
        from .config import AttackConfig, VAAConfig
        from .models.vaa import VAAModel

        try:
            module = VAAModel(base, VAAConfig(**meta["vaa"]), AttackConfig(**meta["attack"]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"fields 'vaa'/'attack': {exc}", where) from None
        fields = {**fields, **module.shape_fields()}
    check_weights(module, shapes, fields, folder / WEIGHTS)
    spec_hash = _json_hash(description["spec"])
    hashes = {name: _sha256(content) for name, content in files.items()}
    for key, value, what in (
        ("spec_sha256", spec_hash, "field 'model.spec'"),
        ("label_map_sha256", _json_hash(description["label_map"]), "field 'model.label_map' (label names or order)"),
        ("featurizer_sha256", _json_hash(hashes), f"the featuriser files ({', '.join(sorted(files))})"),
    ):
        if header_meta.get(key) != value:
            raise CheckpointError(
                f"{what}: not what the weights were trained with (hash recorded in {WEIGHTS}); "
                "the checkpoint was changed after saving",
                where,
            )
    load_weights(module, folder, fields)
    module.eval()
    return LoadedCheckpoint(module, base, label_map, meta["kind"], meta, str(folder))


def load_pair_model(path: str | Path) -> tuple[PairModel, LabelMap, dict[str, Any]]:
    """A stage-one model from its checkpoint (folder or run folder); the third
    item is the metadata with ``path`` (the checkpoint folder) added."""
    loaded = load_checkpoint(path)
    if loaded.kind != "model":
        raise CheckpointError(f"this is a {loaded.kind} checkpoint, expected a stage-one model", loaded.path)
    return loaded.base, loaded.label_map, {**loaded.meta, "path": loaded.path}


def load_training_state(folder: str | Path) -> dict[str, Any]:
    """The training state of ``last/``, read with ``weights_only=True``: a
    file that tries to run code is refused instead of executed."""
    path = Path(folder) / TRAINING_STATE
    if not path.is_file():
        raise CheckpointError(f"{TRAINING_STATE} is missing: this checkpoint cannot resume a training", folder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for anything beyond tensors and plain containers
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"refused: not plain training state ({type(exc).__name__}: {reason[:200]}); "
            "remove the checkpoints/last folder to start over",
            path,
        ) from None
    if not isinstance(state, dict) or not {"state", "optimizer", "rng"} <= set(state):
        raise CheckpointError("not a vaa training state (missing state/optimizer/rng)", path)
    return state


# -- converting old checkpoints ------------------------------------------------


def _old_payload(path: Path) -> dict[str, Any]:
    """Read an old pickle checkpoint. This EXECUTES code from the file."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != 1:
        raise CheckpointError("not an old (version 1) vaa checkpoint", path)
    return payload


def _old_training_state(training: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept numpy's and Python's RNG states as tuples (pickle)."""
    kind, keys, pos, has_gauss, gauss = training["rng"]["numpy"]
    version, internal, py_gauss = training["rng"]["python"]
    import numpy as np

    rng = {
        "torch": training["rng"]["torch"],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": int(version), "state": list(internal), "gauss": py_gauss},
    }
    return {"state": training["state"], "optimizer": training["optimizer"], "scheduler": training["scheduler"], "rng": rng}


def convert_file(old: str | Path, new: str | Path) -> Path:
    """One old ``.pt`` checkpoint -> a checkpoint folder (training state too,
    for a ``last.pt``). Executes code from ``old``: trusted files only."""
    old, new = Path(old), Path(new)
    payload = _old_payload(old)
    description = payload["model"]
    label_map = LabelMap.from_json(description["label_map"])
    base = model_class(description["family"]).from_state(description["spec"], description["featurizer"], len(label_map))
    extra = {
        k: v for k, v in payload.items() if k not in ("format", "version", "kind", "model", "state_dict", "training", "path")
    }
    module: nn.Module = base
    if payload["kind"] == "vaa":
        from .config import AttackConfig, VAAConfig
        from .models.vaa import VAAModel

        module = VAAModel(base, VAAConfig(**payload["vaa"]), AttackConfig(**payload["attack"]))
    module.load_state_dict(payload["state_dict"])
    training = _old_training_state(payload["training"]) if "training" in payload else None
    return save_checkpoint(new, module, CheckpointInfo(base, label_map, payload["kind"], extra), training)


def convert(old: str | Path, new: str | Path) -> list[Path]:
    """``vaa convert``: an old ``.pt`` file -> a checkpoint folder, or an old
    run folder -> a new run folder (its JSON/log files copied, every
    ``checkpoints/*.pt`` converted, the old V1/V2 cache left behind)."""
    import shutil

    from .run_folder import claim_new_folder

    old, new = Path(old), Path(new)
    if not old.exists():
        raise CheckpointError("nothing to convert: not found", old)
    if new.exists():
        raise CheckpointError("the converted copy must go to a new path: it exists already", new)
    if old.is_file():
        return [convert_file(old, new)]
    olds = sorted((old / "checkpoints").glob("*.pt"))
    if not olds:
        raise CheckpointError("no old-format checkpoints (checkpoints/*.pt) in this folder", old)
    claim_new_folder(new)
    for item in old.iterdir():
        if item.name in ("checkpoints", "vcache") or item.name.startswith(".vaa-"):
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name)
        else:
            shutil.copy2(item, new / item.name)
    return [convert_file(pt, new / "checkpoints" / pt.stem) for pt in olds]
