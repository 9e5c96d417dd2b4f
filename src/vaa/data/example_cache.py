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
import json
import os
import pickle
import tempfile
import weakref
from pathlib import Path
from typing import Any, Sequence

from ..runtime import LOCAL, Runtime
from .batching import Example
from .pairs import LabelMap, Pair


def _update(h: "hashlib._Hash", value: Any) -> None:
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


_FEATURIZERS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


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


def _load(path: Path) -> list[Example]:
    gc.disable()  # millions of small lists: the cyclic collector would triple the time
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    finally:
        gc.enable()


def _save(examples: list[Example], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(examples, f, protocol=5)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def featurize_cached(model: Any, pairs: Sequence[Pair], label_map: LabelMap | None, directory: str | Path | None,
                     runtime: Runtime = LOCAL) -> list[Example]:
    """``model.featurize_all(pairs, label_map)``, read from ``directory`` when
    it was computed before (no cache when ``directory`` is None). Under DDP
    rank 0 featurises and writes; the other ranks wait and read the file."""
    if directory is None or not pairs:
        return model.featurize_all(pairs, label_map)
    path = Path(directory) / f"examples-{cache_key(model, pairs, label_map)}.pkl"
    if all(runtime.all_gather(path.exists())):
        return _load(path)
    examples = None
    if runtime.is_main:
        examples = model.featurize_all(pairs, label_map)
        _save(examples, path)
    runtime.barrier()
    return examples if examples is not None else _load(path)


__all__ = ["featurize_cached", "cache_key"]
