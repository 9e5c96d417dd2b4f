"""One place to add a reader format: an entry in ``READERS``."""

from __future__ import annotations

import pytest

from vaa.data import readers
from vaa.data.readers import FORMATS, READERS, ColumnSpec, ReaderFormat, preferred_labels, read_pairs, register_format


def test_the_format_choices_are_the_registry():
    assert FORMATS == ("auto", *READERS)
    assert all(preferred_labels(name) == reader.labels for name, reader in READERS.items())


@pytest.fixture
def pipe_format():
    """A toy format: 'a|b|label' lines in a .pipe file."""

    def source(path, columns):
        lines = readers._numbered_lines(readers._read_text(path))
        records = ((line, dict(zip(("a", "b", "label"), text.split("|")))) for line, text in lines)
        return readers._Source(readers._Schema(ColumnSpec(a="a", b="b", label="label")), records, "pipe")

    reader = register_format(ReaderFormat("pipe", source, ("no", "yes"), lambda suffix, first: suffix == ".pipe"))
    try:
        yield reader
    finally:
        del READERS["pipe"]


def test_a_registered_format_is_read_detected_and_has_its_label_order(pipe_format, tmp_path):
    path = tmp_path / "pairs.pipe"
    path.write_text("how are you ?|how do you do ?|yes\nwho is she ?|where is he ?|no\n")
    for fmt in ("pipe", "auto"):
        data = read_pairs(path, format=fmt)
        assert [(p.a, p.label) for p in data.pairs] == [("how are you ?", "yes"), ("who is she ?", "no")]
        assert data.report.format == "pipe"
    assert preferred_labels("pipe") == ("no", "yes")
    with pytest.raises(ValueError, match="columns apply only to the generic and hf formats"):
        read_pairs(path, format="pipe", columns=ColumnSpec(a="a", b="b"))
    with pytest.raises(ValueError, match="already taken"):
        register_format(ReaderFormat("pipe", pipe_format.source))
