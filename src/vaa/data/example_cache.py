"""Featurised pairs cached on disk with the run.

Tokenising and featurising a full training set is not free (550k SNLI pairs:
about half a minute for ESIM and over a minute for the BERT family on a
2-core machine, see benchmarks/featurize.py), and a run needs the same
examples again and again: when it resumes, in each of its stage-two runs
(which read model A's featuriser), in every process of a DDP job. So the
first featurisation is stored in the run folder (``features/``) and read back
afterwards, about ten times faster.

The file name is a hash of the featuriser (family, settings, vocabulary or
tokenizer files), the label map and the pairs' text, labels and ids: any
change misses and featurises again, never reuses stale examples.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime import LOCAL, Runtime
from .batching import Example
from .pairs import LabelMap, Pair


def _update(h: hashlib._Hash, value: Any) -> None:
    """Hash JSON-like values, with bytes (tokenizer files) hashed as they are."""
    if isinstance(value, bytes):
        h.update(b"b" + len(value).to_bytes(8, "little") + value)
    elif isinstance(value, dict):
        for key in sorted(value):
            h.update(json.dumps(key).encode())
            _update(h, value[key])
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        h.update(("\n".join(value) + f"|{len(value)}").encode())  # a vocabulary: one update, not one per word
    elif isinstance(value, (list, tuple)):
        h.update(f"[{len(value)}".encode())
        for v in value:
            _update(h, v)
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


_FEATURIZERS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _featurizer_hash(model: Any) -> str:
    """A hash of the featuriser, once per model object (a featuriser does not
    change after construction; the HF one costs a tokenizer save to compute)."""
    known = _FEATURIZERS.get(model)
    if known is None:
        h = hashlib.sha256()
        _update(h, {"family": model.family, "settings": model.featurizer_settings(), "featurizer": model.featurizer_state()})
        known = _FEATURIZERS[model] = h.hexdigest()
    return known


def cache_key(model: Any, pairs: Sequence[Pair], label_map: LabelMap | None) -> str:
    """What the examples depend on: featuriser, label map, pairs."""
    h = hashlib.sha256()
    _update(h, {"featurizer": _featurizer_hash(model), "labels": label_map.names if label_map is not None else None})
    for p in pairs:
        h.update(f"{p.a}\t{p.b}\t{p.label}\t{p.id}\n".encode())
    return h.hexdigest()[:32]


_META = "__meta__"


def _columns(examples: list[Example], truncated: Any = None) -> dict[str, np.ndarray] | None:
    """The examples as flat int64 columns: an int field is one array, a list
    field is its values concatenated plus ``<name>.offsets``. None when a
    field holds anything else (such examples are not cached)."""
    if not examples:
        return None
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, first in examples[0].items():
        if isinstance(first, bool) or not isinstance(first, (int, list)):
            return None
        try:
            if isinstance(first, int):
                arrays[name] = np.fromiter((e[name] for e in examples), dtype=np.int64, count=len(examples))
                kinds[name] = "int"
            else:
                lengths = np.fromiter((len(e[name]) for e in examples), dtype=np.int64, count=len(examples))
                arrays[name] = np.fromiter(
                    itertools.chain.from_iterable(e[name] for e in examples), dtype=np.int64, count=int(lengths.sum())
                )
                arrays[name + ".offsets"] = np.concatenate([[0], np.cumsum(lengths)])
                kinds[name] = "list"
        except (TypeError, KeyError, ValueError):
            return None
    cut = [int(truncated[0]), int(truncated[1])] if truncated is not None else None
    arrays[_META] = np.frombuffer(
        json.dumps({"fields": kinds, "count": len(examples), "truncated": cut}).encode(), dtype=np.uint8
    )
    return arrays


def _load(path: Path) -> tuple[list[Example], tuple[int, int] | None] | None:
    """The examples stored at ``path`` and the featuriser's truncation count,
    or None when the file is unreadable or inconsistent (it is then
    featurised again). Read with
    ``allow_pickle=False``: the file holds numbers only, never code."""
    gc.disable()  # millions of small lists: the cyclic collector would triple the time
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz[_META]).decode())
            count, fields = int(meta["count"]), meta["fields"]
            columns: dict[str, list[Any]] = {}
            for name, kind in fields.items():
                values = npz[name].tolist()
                if kind == "int":
                    columns[name] = values
                else:
                    offsets = npz[name + ".offsets"].tolist()
                    columns[name] = [values[offsets[i] : offsets[i + 1]] for i in range(count)]
                if len(columns[name]) != count:
                    return None
        names = list(columns)
        cut = meta.get("truncated")
        return [dict(zip(names, row)) for row in zip(*(columns[n] for n in names))], (tuple(cut) if cut else None)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile):
        return None
    finally:
        gc.enable()


def _save(examples: list[Example], path: Path, truncated: Any = None) -> bool:
    """Store the examples at ``path`` atomically; False when they are not plain
    integers and lists of integers (then nothing is written)."""
    from ..files import atomic_write

    arrays = _columns(examples, truncated)
    if arrays is None:
        return False

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
    return True


def featurize_cached(
    model: Any,
    pairs: Sequence[Pair],
    label_map: LabelMap | None,
    directory: str | Path | None,
    runtime: Runtime = LOCAL,
    read_only: Sequence[str | Path] = (),
) -> list[Example]:
    """``model.featurize_all(pairs, label_map)``, read from ``directory`` (or
    from a ``read_only`` folder: another run's, never written) when it was
    computed before; no cache when ``directory`` is None. Under DDP rank 0
    featurises and writes; the other ranks wait and read the file. The file
    is an ``.npz`` of integer columns (no pickle); it also keeps the
    featuriser's truncation count, set back as ``model.last_truncated``."""
    if directory is None or not pairs:
        return model.featurize_all(pairs, label_map)
    name = f"examples-{cache_key(model, pairs, label_map)}.npz"
    path = Path(directory) / name
    stored = None
    for candidate in (path, *(Path(d) / name for d in read_only)):
        stored = _load(candidate) if candidate.exists() else None
        if stored is not None:
            break
    if all(runtime.all_gather(stored is not None and len(stored[0]) == len(pairs))):
        return _restored(model, stored)  # type: ignore[arg-type]
    examples = None
    if runtime.is_main:
        examples = model.featurize_all(pairs, label_map)
        _save(examples, path, getattr(model, "last_truncated", None))
    runtime.barrier()
    if examples is not None:
        return examples
    stored = _load(path) if path.exists() else None
    if stored is None or len(stored[0]) != len(pairs):  # not cacheable, or not visible here: featurise on this rank
        return model.featurize_all(pairs, label_map)
    return _restored(model, stored)


def _restored(model: Any, stored: tuple[list[Example], tuple[int, int] | None]) -> list[Example]:
    examples, cut = stored
    if cut is not None:
        model.last_truncated = cut  # as featurize_all would have set it
    return examples


__all__ = ["featurize_cached", "cache_key"]
