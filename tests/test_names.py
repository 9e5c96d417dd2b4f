"""The one name-index class behind LabelMap and Vocab."""

from __future__ import annotations

import pytest

from vaa.data.names import NameIndex
from vaa.data.pairs import LabelMap
from vaa.data.text import PAD, UNK, Vocab


def test_label_map_and_vocab_share_lookups_and_differ_on_unknown_names():
    labels, vocab = LabelMap(["no", "yes"]), Vocab([PAD, UNK, "no", "yes"])
    assert isinstance(labels, NameIndex) and isinstance(vocab, NameIndex)
    assert (labels.position("yes"), vocab.position("yes")) == (1, 3)
    assert labels.position("maybe") is None and vocab.position("maybe") is None
    assert vocab.index("maybe") == vocab.unk_index  # a word it never saw: the unknown word
    with pytest.raises(KeyError, match="unknown label 'maybe'"):
        labels.index("maybe")  # a label it never saw: an error


def test_duplicates_are_refused_and_equality_needs_the_same_kind_and_order():
    with pytest.raises(ValueError, match="duplicate label names"):
        LabelMap(["a", "b", "a"])
    with pytest.raises(ValueError, match="duplicate words"):
        Vocab([PAD, UNK, "x", "x"])
    assert LabelMap(["a", "b"]) == LabelMap(["a", "b"]) != LabelMap(["b", "a"])
    assert LabelMap([PAD, UNK]) != Vocab([PAD, UNK])
