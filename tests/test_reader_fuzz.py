"""Property-based tests of every reader (hypothesis): whatever bytes or rows a
file holds -- random bytes, random field counts, quotes, tabs, NULs, line
ends, other encodings, gzip -- reading it either gives well-formed pairs or
raises DataError naming the file. No other exception ever escapes.

Cases generated (``max_examples``), per reader:
  random bytes                     8 readers x 50 = 400
  random rows                      8 readers x 40 = 320
  rows in other encodings          8 readers x 15 = 120
  gzip: whole, cut and bit-flipped 30 (3 files each)
  random bytes named .gz           30 (2 readers each)
  total                            900 cases
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaa.data.pairs import DataError, PairDataset
from vaa.data.readers import ColumnSpec, read_pairs

SNLI_HEADER = [
    "gold_label",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "captionID",
    "pairID",
    "label1",
    "label2",
    "label3",
    "label4",
    "label5",
]
GLUE_HEADER = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
GENERIC_HEADER = ["a", "b", "y"]
SPEC = ColumnSpec("a", "b", "y")

# (name, file suffix, format, columns, header or None, field separator)
READERS = [
    ("nli-jsonl", ".jsonl", "nli-jsonl", None, None, None),
    ("nli-tsv", ".txt", "nli-tsv", None, SNLI_HEADER, "\t"),
    ("qqp-wang", ".tsv", "qqp-wang", None, None, "\t"),
    ("qqp-glue", ".tsv", "qqp-glue", None, GLUE_HEADER, "\t"),
    ("generic-tsv", ".tsv", "generic", SPEC, GENERIC_HEADER, "\t"),
    ("generic-csv", ".csv", "generic", SPEC, GENERIC_HEADER, ","),
    ("generic-jsonl", ".jsonl", "generic", SPEC, None, None),
    ("auto", ".tsv", "auto", None, None, "\t"),
]
IDS = [r[0] for r in READERS]

# Text that looks like data: words, labels, and the characters that break readers.
TRICKY = st.sampled_from(
    [
        "\t",
        '"',
        "'",
        ",",
        "\x00",
        "\n",
        "\r",
        "\r\n",
        "\\",
        "{",
        "}",
        "\u2028",
        "\u0085",
        "\ufeff",
        "é",
        "中",
        "-",
        "0",
        "1",
        "entailment",
        "neutral",
        "contradiction",
        " ",
    ]
)
# A fixed alphabet (ASCII, Latin, CJK, control and separator characters):
# hypothesis's full-Unicode text costs seconds of set-up per run.
ALPHABET = (
    "abcdefgh xyz ABC 0123456789 .?!-_:;/#()[]"
    + "\t\"',\x00\x01\x7f\n\r\x0b\x0c"
    + "éüßñ中文日本\u00a0\u2028\u0085\ufeff\U0001f600"
)
FIELD = st.lists(st.one_of(TRICKY, st.text(alphabet=ALPHABET, max_size=8)), max_size=6).map("".join)
ROWS = st.lists(st.lists(FIELD, min_size=0, max_size=16), min_size=0, max_size=8)
ENCODINGS = st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig", "utf-8"])


def _check(path: Path, fmt: str, columns: ColumnSpec | None) -> None:
    """The property: pairs with two non-empty sentences, or a DataError."""
    for on_error in ("raise", "skip"):
        try:
            data = read_pairs(path, format=fmt, columns=columns, on_error=on_error)
        except DataError as exc:
            assert str(path) in str(exc)
            continue
        assert isinstance(data, PairDataset) and 0 < data.report.kept <= data.report.rows
        assert all(p.a.strip() and p.b.strip() for p in data)
        assert data.report.kept + sum(data.report.skipped.values()) <= data.report.rows


def _rows_text(rows: list[list[str]], reader: tuple) -> str:
    _, suffix, _, _, header, sep = reader
    if sep is None:  # JSON lines: random objects with the known keys, random values
        keys = ["gold_label", "sentence1", "sentence2", "pairID", "a", "b", "y"]
        lines = [json.dumps({k: v for k, v in zip(keys, row)}) if len(row) % 3 else ",".join(row) for row in rows]
        return "\n".join(lines)
    lines = [sep.join(header)] if header else []
    lines += [sep.join(row) for row in rows]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("reader", READERS, ids=IDS)
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes(folder, reader, data):
    path = folder / f"bytes{reader[1]}"
    path.write_bytes(data)
    _check(path, reader[2], reader[3])


@pytest.mark.parametrize("reader", READERS, ids=IDS)
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_random_rows(folder, reader, rows):
    path = folder / f"rows{reader[1]}"
    path.write_text(_rows_text(rows, reader), encoding="utf-8", newline="")
    _check(path, reader[2], reader[3])


@pytest.mark.parametrize("reader", READERS, ids=IDS)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, encoding=ENCODINGS)
def test_other_encodings(folder, reader, rows, encoding):
    path = folder / f"enc{reader[1]}"
    path.write_bytes(_rows_text(rows, reader).encode(encoding, errors="replace"))
    _check(path, reader[2], reader[3])


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, cut=st.integers(min_value=0, max_value=200), flip=st.integers(min_value=0, max_value=255))
def test_gzip_whole_cut_or_flipped(folder, rows, cut, flip):
    body = gzip.compress(_rows_text(rows, READERS[4]).encode())
    for variant, data in (
        ("whole", body),
        ("cut", body[:cut]),
        ("flipped", body[:10] + bytes([body[10] ^ flip]) + body[11:] if len(body) > 11 else body),
    ):
        path = folder / f"{variant}.tsv.gz"
        path.write_bytes(data)
        _check(path, "generic", SPEC)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_named_gz(folder, data):
    path = folder / "raw.jsonl.gz"
    path.write_bytes(data)
    _check(path, "auto", None)
    _check(path, "nli-jsonl", None)
