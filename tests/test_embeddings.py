"""Word vectors: GloVe text files (plain or gzipped) and the PyPI package."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vaa.data.embeddings import build_embedding_matrix
from vaa.data.pairs import DataError
from vaa.data.text import Vocab

GLOVE_TEXT = "the 0.1 0.2 0.3\ncat 1.0 -1.0 0.5\nnew york 9 9 9\n"


@pytest.mark.parametrize("gz", [False, True])
def test_text_vectors_fill_known_rows_and_randomise_the_rest(tmp_path, gz):
    path = tmp_path / ("v.txt.gz" if gz else "v.txt")
    (gzip.open(path, "wt") if gz else open(path, "w")).write(GLOVE_TEXT)
    vocab = Vocab(["<pad>", "<unk>", "cat", "the", "dog", "new york"])
    init = build_embedding_matrix(vocab, path, seed=3)
    m = init.matrix
    assert m.shape == (6, 3) and init.found == 3
    assert np.all(m[0] == 0)
    np.testing.assert_allclose(m[2], [1.0, -1.0, 0.5])
    np.testing.assert_allclose(m[5], [9, 9, 9])  # a "word" with a space, as in GloVe 840B
    again = build_embedding_matrix(vocab, path, seed=3).matrix
    np.testing.assert_array_equal(m, again)
    assert not np.allclose(build_embedding_matrix(vocab, path, seed=4).matrix[4], m[4])


def test_bad_vector_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2\ncat 0.1 x\n")
    with pytest.raises(DataError, match=r"bad.txt:2"):
        build_embedding_matrix(Vocab(["<pad>", "<unk>", "cat"]), path)
    with pytest.raises(DataError, match="not found"):
        build_embedding_matrix(Vocab(["<pad>", "<unk>"]), tmp_path / "missing.txt")


def test_default_vectors_come_from_the_package():
    init = build_embedding_matrix(Vocab(["<pad>", "<unk>", "the", "zzqxj"]))
    assert init.dim == 50 and init.found == 1
    assert np.linalg.norm(init.matrix[2]) > 1.0
