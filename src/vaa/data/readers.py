"""Readers for sentence-pair files: SNLI/MultiNLI, QQP (Wang and GLUE layouts),
generic TSV/CSV/JSONL with user-named columns, and Hugging Face datasets.

Every format is reduced to the same two things: a stream of *records*
(``(line, {column: value})``) and a :class:`_Schema` saying which columns hold
the two sentences, the label and the id and how raw labels become label names.
One function (:func:`_collect`) then turns records into :class:`Pair` objects,
so validation, error messages, ``on_error="skip"`` accounting, ``limit`` and
``require_labels`` behave identically for every format.

Every format is one entry of ``READERS`` (at the end of this module): how to
read it, whether it takes ``--columns``, its label order, and how to recognise
it for ``--format auto``. Adding a format is adding one ``register_format``
call; ``FORMATS`` (the ``--format`` choices) is made from the registry.

Errors are :class:`DataError` naming the file and the 1-based line (the header,
where there is one, is line 1), so a user can open the file at that line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pairs import DataError, Pair, PairDataset, ReadReport

NLI_LABELS = ("entailment", "neutral", "contradiction")
QQP_LABELS = ("not_duplicate", "duplicate")
ON_ERROR = ("raise", "skip")

# Report keys for rows that on_error="skip" drops; also the "-" gold label.
SKIP_MALFORMED = "malformed row"
SKIP_MISSING_COLUMN = "missing column"
SKIP_UNKNOWN_LABEL = "unknown label"
SKIP_EMPTY_SENTENCE = "empty sentence"
SKIP_NO_GOLD = "gold_label '-'"

_GENERIC_HINT = "pass --format generic --columns a=...,b=...,label=..."
_HF_PREFIX = "hf:"
_SPLIT_SEP = "::"

Record = Mapping[str, Any]


@dataclass(frozen=True)
class ColumnSpec:
    """Which columns hold sentence a, sentence b, the label and the id.

    Needed for the generic format and for HF datasets whose columns are not
    one of the common name sets; the built-in formats carry their own."""

    a: str
    b: str
    label: str | None = None
    id: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnSpec:
        """Parse ``"a=question1,b=question2,label=is_duplicate,id=id"``
        (``label`` and ``id`` optional), as given on the command line."""
        allowed = ("a", "b", "label", "id")
        values: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not value:
                raise ValueError(f"bad column spec {part!r} in {text!r}: expected key=column")
            if key not in allowed:
                raise ValueError(f"bad column spec key {key!r} in {text!r}: keys are {', '.join(allowed)}")
            if key in values:
                raise ValueError(f"column spec {text!r} gives {key!r} twice")
            values[key] = value
        missing = [k for k in ("a", "b") if k not in values]
        if missing:
            raise ValueError(
                f"column spec {text!r} lacks {' and '.join(missing)}; e.g. a=question1,b=question2,label=is_duplicate"
            )
        return cls(**values)

    def names(self) -> list[str]:
        """The column names in use, in a, b, label, id order."""
        return [c for c in (self.a, self.b, self.label, self.id) if c is not None]


@dataclass(frozen=True)
class _Schema:
    """How one format maps records to pairs.

    ``labels`` maps a raw label (as text) to a label name, or to ``None`` for
    "unlabelled"; ``None`` instead of a mapping keeps labels as written.
    ``skip_labels`` maps raw labels that mean "no gold label, drop the pair" to
    the report reason. ``optional`` columns may be absent (read as empty).
    ``label_like`` columns are checked to hold labels: in a TSV, a tab inside
    a sentence shifts the fields after it, and a shifted id or parse in a label
    column is how the shift shows (a row may omit its trailing label columns,
    so the field count alone cannot)."""

    columns: ColumnSpec
    labels: Mapping[str, str | None] | None = None
    skip_labels: Mapping[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    label_like: frozenset[str] = frozenset()  # columns that, when present and not empty, hold a label of ``labels``

    def required(self) -> list[str]:
        return [c for c in self.columns.names() if c not in self.optional]


_NLI_SCHEMA = _Schema(
    ColumnSpec(a="sentence1", b="sentence2", label="gold_label", id="pairID"),
    labels={n: n for n in NLI_LABELS},
    skip_labels={"-": SKIP_NO_GOLD},
    optional=frozenset({"pairID"}),
    # the annotators' labels: a tab inside a sentence shifts an id or a parse into them
    label_like=frozenset({"label1", "label2", "label3", "label4", "label5"}),
)
_QQP_LABEL_MAP = {"0": QQP_LABELS[0], "1": QQP_LABELS[1]}
_WANG_FIELDS = ("label", "q1", "q2", "id")
_WANG_SCHEMA = _Schema(ColumnSpec(a="q1", b="q2", label="label", id="id"), labels=_QQP_LABEL_MAP)
_GLUE_TEST_HEADER = ["id", "question1", "question2"]
# Column sets tried, in order, for an HF dataset given without a ColumnSpec.
_HF_COMMON = (("premise", "hypothesis"), ("sentence1", "sentence2"), ("question1", "question2"))
_HF_ID_NAMES = ("id", "pairID", "idx")


class _RowError(Exception):
    """A problem with one row; ``reason`` is its key in the read report.
    ``expected`` marks rows that the format itself says to drop (NLI gold
    label ``-``): they are skipped and counted even when ``on_error="raise"``."""

    def __init__(self, reason: str, message: str, expected: bool = False):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.expected = expected


@dataclass
class _Source:
    """Records of one input plus what is needed to turn them into pairs."""

    schema: _Schema
    records: Iterator[tuple[int, Record | _RowError]]
    id_prefix: str
    has_header: bool = False


# --------------------------------------------------------------------------
# Public API


def preferred_labels(format: str) -> tuple[str, ...] | None:
    """Label order a :class:`LabelMap` should use for ``format`` (a resolved
    format, e.g. ``dataset.report.format``), so that SNLI and MultiNLI share
    one map and QQP index 1 is always "duplicate"; ``None`` when the format
    has no fixed label set."""
    reader = READERS.get(format)
    return None if reader is None else reader.labels


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its extension and first line.

    Only the official layouts are recognised; anything else must be read as
    ``generic`` with explicit columns, because guessing which columns are the
    sentences would silently train on the wrong text."""
    if _looks_like_hf(path):  # a dataset folder or hub id: no first line to look at
        return "hf"
    suffix = _suffix(path)
    first = _first_line(path)
    for reader in READERS.values():
        if reader.detect is not None and reader.detect(suffix, first):
            return reader.name
    raise DataError(f"could not detect the file format; {_GENERIC_HINT}", path)


def read_pairs(
    path: str | Path,
    format: str = "auto",
    columns: ColumnSpec | None = None,
    on_error: str = "raise",
    limit: int | None = None,
    require_labels: bool = False,
) -> PairDataset:
    """Read sentence pairs from ``path``.

    ``format="auto"`` detects the official layouts; with ``columns`` given it
    means ``generic`` (or ``hf`` for a dataset directory / ``hf:`` id).
    ``on_error="skip"`` drops malformed rows, empty sentences and unknown
    labels and counts them in ``dataset.report.skipped`` instead of raising.
    ``limit`` stops after that many kept pairs. ``require_labels`` makes an
    unlabelled row an error (use it for training files)."""
    if format != "auto" and format not in READERS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    fmt = _resolve_format(path, format, columns)
    source = READERS[fmt].source(path, columns)
    report = ReadReport(path=str(path), format=fmt)
    pairs = _collect(source, path, report, on_error, limit, require_labels)
    return PairDataset(pairs, report)


def _resolve_format(path: str | Path, format: str, columns: ColumnSpec | None) -> str:
    """The concrete format to read with; built-in formats bring their own
    columns, so a ColumnSpec with one is a mistake worth reporting."""
    if format == "auto":
        if columns is None:
            return detect_format(path)
        return "hf" if _looks_like_hf(path) else "generic"
    reader = READERS[format]
    if columns is not None and not reader.takes_columns:
        with_columns = " and ".join(r.name for r in READERS.values() if r.takes_columns)
        raise ValueError(f"columns apply only to the {with_columns} formats, not {format!r}")
    if reader.needs_columns and columns is None:
        raise DataError(f"the {format} format needs the column names; {_GENERIC_HINT}", path)
    return format


def _looks_like_hf(path: str | Path) -> bool:
    text = str(path)
    location = text.split(_SPLIT_SEP)[0]
    return text.startswith(_HF_PREFIX) or (bool(location) and Path(location).is_dir())


# --------------------------------------------------------------------------
# Records -> pairs (shared by every format)


def _collect(
    source: _Source, path: str | Path, report: ReadReport, on_error: str, limit: int | None, require_labels: bool
) -> list[Pair]:
    """Turn records into pairs, filling ``report``; the one place where row
    problems become errors or skip counts."""
    pairs: list[Pair] = []
    for line, record in source.records:
        report.rows += 1
        try:
            if isinstance(record, _RowError):
                raise record
            pair = _make_pair(record, line, source)
        except _RowError as problem:
            if on_error == "raise" and not problem.expected:
                raise DataError(problem.message, path, line) from None
            report.skip(problem.reason)
            continue
        if require_labels and pair.label is None:
            raise DataError("row has no label, but labels are required here (a training file?)", path, line)
        pairs.append(pair)
        if limit is not None and len(pairs) >= limit:
            break
    report.kept = len(pairs)
    if report.rows == 0:
        what = "only a header, no data rows" if source.has_header else "no data rows"
        raise DataError(f"empty file: {what}", path)
    if not pairs:
        raise DataError(f"no pairs kept: {report.summary()}", path)
    return pairs


def _make_pair(record: Record, line: int, source: _Source) -> Pair:
    """One pair from one record; raises :class:`_RowError` for anything
    wrong with the row, and for a pair without a gold label."""
    schema, cols = source.schema, source.schema.columns
    _check_label_like(record, schema)
    label = None
    if cols.label is not None:
        raw = _text(_get(record, cols.label, schema), cols.label)
        if raw in schema.skip_labels:
            raise _RowError(schema.skip_labels[raw], f"label {raw!r}: no gold label", expected=True)
        label = _label_name(raw, schema)
    a = _sentence(record, cols.a, schema)
    b = _sentence(record, cols.b, schema)
    pair_id = _text(_get(record, cols.id, schema), cols.id) if cols.id is not None else ""
    return Pair(a=a, b=b, label=label, id=pair_id or f"{source.id_prefix}:{line}")


def _check_label_like(record: Record, schema: _Schema) -> None:
    if not schema.label_like or schema.labels is None:
        return
    for column in sorted(schema.label_like):
        value = record.get(column)
        if (
            isinstance(value, str)
            and value.strip()
            and value.strip() not in schema.labels
            and value.strip() not in schema.skip_labels
        ):
            found = record.found if isinstance(record, _ShortRow) else len(record)
            raise _RowError(
                SKIP_MALFORMED,
                f"column {column!r} holds {_clip(value)!r}, not a label: the fields are shifted "
                f"(a tab inside a sentence?); {found} tab-separated fields",
            )


def _clip(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def _get(record: Record, column: str, schema: _Schema) -> Any:
    try:
        return record[column]
    except KeyError:
        if column in schema.optional:
            return None
        if isinstance(record, _ShortRow):
            raise _field_count_error(record.found, record.expected) from None
        raise _RowError(SKIP_MISSING_COLUMN, _missing_column_message(column, list(record))) from None


def _text(value: Any, column: str) -> str:
    """A cell as stripped text; numbers (JSON, HF) become their ``str()``."""
    if value is None:
        return ""
    if isinstance(value, str):
        if "\x00" in value:  # never in text; UTF-16 without a BOM decodes as "valid" UTF-8 full of NULs
            raise _RowError(SKIP_MALFORMED, f"NUL character in column {column!r} (binary data, or UTF-16 text? re-save as UTF-8)")
        return value.strip()
    if isinstance(value, (int, float)):
        return str(value)
    raise _RowError(SKIP_MALFORMED, f"column {column!r} holds a {type(value).__name__}, expected text")


def _sentence(record: Record, column: str, schema: _Schema) -> str:
    text = _text(_get(record, column, schema), column)
    if not text:
        raise _RowError(SKIP_EMPTY_SENTENCE, f"empty sentence in column {column!r}")
    return text


def _label_name(raw: str, schema: _Schema) -> str | None:
    """Map a raw label to its name; an empty cell means "unlabelled" only for
    formats without a fixed label set (generic files may be unlabelled)."""
    if schema.labels is None:
        return raw or None
    try:
        return schema.labels[raw]
    except KeyError:
        known = ", ".join(repr(k) for k in schema.labels)
        raise _RowError(SKIP_UNKNOWN_LABEL, f"unknown label {raw!r}; expected one of {known}") from None


def _missing_column_message(column: str, available: list[str]) -> str:
    return f"missing column {column!r}; available columns: {', '.join(map(repr, available)) or 'none'}"


def _check_header(names: list[str], schema: _Schema, path: str | Path, line: int | None) -> None:
    """Fail once, at the header, when a needed column is absent: every row
    would fail the same way."""
    if any("\x00" in name for name in names):
        raise DataError("NUL characters in the header: binary data, or UTF-16 text? re-save the file as UTF-8", path, line)
    for column in schema.required():
        if column not in names:
            raise DataError(_missing_column_message(column, names), path, line)


# --------------------------------------------------------------------------
# Text files


def _nli_jsonl_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    return _Source(_NLI_SCHEMA, _jsonl_records(_numbered_lines(_read_text(path))), Path(path).name)


def _nli_tsv_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    lines = _numbered_lines(_read_text(path))
    return _header_source(path, _tsv_table(path, lines), lambda names: _NLI_SCHEMA, Path(path).name)


def _qqp_wang_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    return _Source(_WANG_SCHEMA, _fixed_tsv_records(_numbered_lines(_read_text(path)), _WANG_FIELDS), Path(path).name)


def _qqp_glue_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    lines = _numbered_lines(_read_text(path))
    return _header_source(path, _tsv_table(path, lines), _glue_schema, Path(path).name)


def _generic_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    """A .tsv/.txt/.csv/.jsonl file (optionally .gz) with the user's column names."""
    assert columns is not None
    text = _read_text(path)
    lines = _numbered_lines(text)
    prefix = Path(path).name
    schema = _Schema(columns)
    suffix = _suffix(path)
    if suffix == ".jsonl":
        return _Source(schema, _jsonl_records(lines), prefix)
    if suffix == ".csv":
        return _header_source(path, _csv_table(path, text), lambda names: schema, prefix)
    if suffix in (".tsv", ".txt"):
        return _header_source(path, _tsv_table(path, lines), lambda names: schema, prefix)
    raise DataError(
        f"the generic format reads .tsv, .txt, .csv or .jsonl files (optionally .gz), not {suffix or 'no extension'!r}", path
    )


def _tsv_fields(suffix: str, first: str) -> list[str] | None:
    """The first line's tab-separated fields, for a .tsv/.txt file."""
    return [f.strip() for f in first.split("\t")] if suffix in (".txt", ".tsv") else None


def _is_nli_jsonl(suffix: str, first: str) -> bool:
    if suffix != ".jsonl":
        return False
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "gold_label" in record


def _is_nli_tsv(suffix: str, first: str) -> bool:
    fields = _tsv_fields(suffix, first)
    return fields is not None and "gold_label" in fields and "sentence1" in fields


def _is_qqp_wang(suffix: str, first: str) -> bool:
    fields = _tsv_fields(suffix, first)
    return fields is not None and len(fields) == 4 and fields[0] in _QQP_LABEL_MAP


def _is_qqp_glue(suffix: str, first: str) -> bool:
    fields = _tsv_fields(suffix, first)
    return fields is not None and ("is_duplicate" in fields or fields == _GLUE_TEST_HEADER)


def _glue_schema(header: list[str]) -> _Schema:
    """GLUE's QQP test file has no ``is_duplicate`` column: pairs unlabelled."""
    label = "is_duplicate" if "is_duplicate" in header else None
    return _Schema(ColumnSpec(a="question1", b="question2", label=label, id="id"), labels=_QQP_LABEL_MAP)


_Table = tuple[int, list[str], Iterator[tuple[int, Record | _RowError]]]


def _header_source(path: str | Path, table: _Table, schema_for: Callable[[list[str]], _Schema], prefix: str) -> _Source:
    """A source for a file with a header; the schema may depend on the header."""
    header_line, names, records = table
    schema = schema_for(names)
    _check_header(names, schema, path, header_line)
    return _Source(schema, records, prefix, has_header=True)


def _suffix(path: str | Path) -> str:
    """Lower-case extension, looking through a ``.gz``."""
    p = Path(str(path))
    if p.suffix.lower() == ".gz":
        p = p.with_suffix("")
    return p.suffix.lower()


def _open_binary(path: str | Path):
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path)
    if p.is_dir():
        raise DataError("is a directory, not a file (for a saved Hugging Face dataset use --format hf)", path)
    return gzip.open(p, "rb") if p.suffix.lower() == ".gz" else open(p, "rb")


def _read_bytes(path: str | Path, size: int = -1) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; corrupt data a zlib.error
        what = "cannot read gzip file (corrupt or truncated)" if _is_gzip(path) else "cannot read file"
        raise DataError(f"{what}: {exc}", path) from None


def _is_gzip(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".gz"


def _decode(data: bytes, path: str | Path, partial: bool = False) -> str:
    """UTF-8 text; on bad bytes, a DataError naming the line they are on.
    ``partial`` tolerates a character cut off at the end of a prefix read."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if partial and exc.start >= len(data) - 3 and "unexpected end" in exc.reason:
            text = data[: exc.start].decode("utf-8")
        else:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DataError(f"not UTF-8 text (byte {data[exc.start]:#04x}); re-save the file as UTF-8", path, line) from None
    return text[1:] if text.startswith("\ufeff") else text


def _read_text(path: str | Path) -> str:
    # Whole-file decoding is much faster than per line, and the byte offset of
    # a decoding error still gives its line.
    return _decode(_read_bytes(path), path)


def _first_line(path: str | Path) -> str:
    """First non-blank line, read from a prefix so detection stays cheap."""
    text = _decode(_read_bytes(path, 1 << 16), path, partial=True)
    for _, line in _numbered_lines(text):
        return line
    raise DataError("empty file: no data rows", path)


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with 1-based line numbers. Split on ``\\n`` only:
    ``str.splitlines`` would also break at characters such as U+2028 or
    U+0085 that occur inside real (QQP) sentences."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _jsonl_records(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, Record | _RowError]]:
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _RowError(SKIP_MALFORMED, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield number, _RowError(SKIP_MALFORMED, f"expected a JSON object, found {type(record).__name__}")
            continue
        yield number, record


def _fixed_tsv_records(lines: Iterator[tuple[int, str]], names: tuple[str, ...]) -> Iterator[tuple[int, Record | _RowError]]:
    """Records of a headerless TSV with known columns."""
    column_names = list(names)
    for number, line in lines:
        yield number, _tsv_record(line.split("\t"), column_names)


def _tsv_table(path: str | Path, lines: Iterator[tuple[int, str]]) -> _Table:
    """Header and records of a TSV. Fields are split on tabs only, without CSV
    quote handling: the official NLI and QQP files are not quoted and their
    sentences contain ``"``."""
    header_line, header = _header(path, lines)
    names = [n.strip() for n in header.split("\t")]
    return header_line, names, ((n, _tsv_record(line.split("\t"), names)) for n, line in lines)


def _tsv_record(fields: list[str], names: list[str]) -> Record | _RowError:
    """Zip fields with names. Extra fields are an error; missing trailing
    fields are tolerated (writers drop trailing empty cells, e.g. unused
    ``label2..label5``) unless the reader needs one of them."""
    if len(fields) > len(names):
        return _field_count_error(len(fields), len(names))
    if len(fields) < len(names):
        return _ShortRow(zip(names, fields), found=len(fields), expected=len(names))
    return dict(zip(names, fields))


class _ShortRow(dict):
    """A TSV row with fewer fields than the header, remembered so that a
    needed column it lacks is reported as a wrong field count."""

    def __init__(self, items, found: int, expected: int):
        super().__init__(items)
        self.found = found
        self.expected = expected


def _field_count_error(found: int, expected: int) -> _RowError:
    return _RowError(SKIP_MALFORMED, f"expected {expected} tab-separated fields, found {found}")


def _csv_table(path: str | Path, text: str) -> _Table:
    """Header and records of a CSV with real CSV quoting (fields may hold
    commas, quotes and newlines). A record's line is its first physical line.

    An unbalanced quote makes the csv module read on, across line ends, to the
    next quote, merging the rows in between into one field. A record that
    spans lines is therefore checked: if a line inside it reads, on its own,
    as a complete row, the quote is taken to be unbalanced (a real multi-line
    sentence rarely has a whole row's worth of commas on an inner line)."""
    physical = io.StringIO(text, newline="").readlines()
    records = _csv_rows(csv.reader(io.StringIO(text, newline="")))
    try:
        header_line, _, header = next(records)
    except StopIteration:
        raise DataError("empty file: no header and no data rows", path) from None
    if isinstance(header, _RowError):
        raise DataError(f"bad header: {header.message}", path, header_line)
    names = [n.strip() for n in header]
    return header_line, names, ((start, _csv_record(row, names, start, end, physical)) for start, end, row in records)


def _csv_rows(reader) -> Iterator[tuple[int, int, list[str] | _RowError]]:
    """(first line, last line, fields) of each non-blank CSV record."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, reader.line_num, _RowError(SKIP_MALFORMED, f"bad CSV: {exc}")
            continue
        if row and any(cell.strip() for cell in row):
            yield start, reader.line_num, row


def _csv_record(row: list[str] | _RowError, names: list[str], start: int, end: int, physical: list[str]) -> Record | _RowError:
    if isinstance(row, _RowError):
        return row
    spans = f"a quoted field runs from line {start} to line {end}: an unbalanced quote?" if end > start else ""
    if len(row) != len(names):
        return _RowError(
            SKIP_MALFORMED, f"expected {len(names)} comma-separated fields, found {len(row)}" + (f" ({spans})" if spans else "")
        )
    for number in range(start + 1, end):  # the lines strictly inside the record
        if _reads_as_row(physical[number - 1], len(names)):
            return _RowError(
                SKIP_MALFORMED,
                f"unbalanced quote? a quoted field runs from line {start} to line {end}, and line {number} "
                "inside it reads as a row of its own",
            )
    return dict(zip(names, row))


def _reads_as_row(line: str, fields: int) -> bool:
    try:
        rows = list(csv.reader([line.rstrip("\r\n")]))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) == fields and all(cell.strip() for cell in rows[0])


def _header(path: str | Path, lines: Iterator[tuple[int, str]]) -> tuple[int, str]:
    for number, line in lines:
        return number, line
    raise DataError("empty file: no header and no data rows", path)


# --------------------------------------------------------------------------
# Hugging Face datasets


def _hf_source(path: str | Path, columns: ColumnSpec | None) -> _Source:
    """Records of a saved (``save_to_disk``) or hub dataset; a record's
    "line" is its 1-based row number."""
    dataset, name = _load_hf(str(path))
    available = list(dataset.column_names)
    spec = columns or _guess_hf_columns(available, path)
    labels = _hf_label_map(dataset.features.get(spec.label)) if spec.label else None
    schema = _Schema(spec, labels=labels)
    _check_header(available, schema, path, None)
    data = dataset.select_columns(spec.names()).to_dict()
    records = ((i + 1, {c: data[c][i] for c in data}) for i in range(dataset.num_rows))
    return _Source(schema, records, name)


def _load_hf(text: str):
    """A ``datasets.Dataset`` for ``dir``, ``dir::split``, ``hf:id`` or
    ``hf:id::split``, and a short name for pair ids."""
    try:
        import datasets
    except ImportError:
        raise DataError("reading Hugging Face datasets needs the datasets package: pip install datasets", text) from None
    location, _, split = text.partition(_SPLIT_SEP)
    if location.startswith(_HF_PREFIX):
        hub_id = location[len(_HF_PREFIX) :]
        try:
            loaded = datasets.load_dataset(hub_id, split=split or "train")
        except Exception as exc:  # network, unknown id, unknown split: all user-facing
            raise DataError(f"cannot load Hugging Face dataset {hub_id!r} (needs network access): {exc}", text) from None
        return loaded, hub_id.replace("/", "_")
    if not Path(location).is_dir():
        raise DataError("not a directory written by datasets' save_to_disk", text)
    try:
        loaded = datasets.load_from_disk(location)
    except Exception as exc:  # FileNotFoundError / ValueError from datasets internals
        raise DataError(f"cannot load saved Hugging Face dataset: {exc}", text) from None
    name = Path(location).name
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            raise DataError(f"no split {split!r}; available splits: {', '.join(loaded)} (choose with {location}::<split>)", text)
        return loaded[split], f"{name}:{split}"
    if split:
        raise DataError(f"this saved dataset has no splits, so {split!r} cannot be chosen", text)
    return loaded, name


def _guess_hf_columns(available: list[str], path: str | Path) -> ColumnSpec:
    for a, b in _HF_COMMON:
        if a in available and b in available:
            label = "label" if "label" in available else None
            pair_id = next((c for c in _HF_ID_NAMES if c in available), None)
            return ColumnSpec(a=a, b=b, label=label, id=pair_id)
    raise DataError(
        f"cannot tell which columns hold the sentences (columns: {', '.join(available)}); pass --columns a=...,b=...,label=...",
        path,
    )


def _hf_label_map(feature: Any) -> dict[str, str | None] | None:
    """For a ClassLabel column, index -> class name, and -1 (the datasets
    convention for "no gold label", e.g. GLUE test sets) -> unlabelled."""
    names = getattr(feature, "names", None)
    if not names:
        return None
    mapping: dict[str, str | None] = {str(i): n for i, n in enumerate(names)}
    mapping["-1"] = None
    return mapping


# --------------------------------------------------------------------------
# The registry: one entry per format


@dataclass(frozen=True)
class ReaderFormat:
    """One file format: ``source`` reads ``(path, columns)`` into records
    and a schema; ``labels`` is its fixed label order (None: labels as found);
    ``detect(suffix, first line)`` recognises it for ``--format auto`` (None:
    never guessed); ``takes_columns``/``needs_columns``: whether ``--columns``
    applies / is required."""

    name: str
    source: Callable[[str | Path, ColumnSpec | None], _Source]
    labels: tuple[str, ...] | None = None
    detect: Callable[[str, str], bool] | None = None
    takes_columns: bool = False
    needs_columns: bool = False


READERS: dict[str, ReaderFormat] = {}


def register_format(reader: ReaderFormat) -> ReaderFormat:
    """Add a format (its name becomes a ``--format`` choice). Formats are
    tried for ``--format auto`` in the order they were registered."""
    if reader.name == "auto" or reader.name in READERS:
        raise ValueError(f"format {reader.name!r} is already taken")
    READERS[reader.name] = reader
    return reader


register_format(ReaderFormat("nli-jsonl", _nli_jsonl_source, NLI_LABELS, _is_nli_jsonl))
register_format(ReaderFormat("nli-tsv", _nli_tsv_source, NLI_LABELS, _is_nli_tsv))
register_format(ReaderFormat("qqp-wang", _qqp_wang_source, QQP_LABELS, _is_qqp_wang))
register_format(ReaderFormat("qqp-glue", _qqp_glue_source, QQP_LABELS, _is_qqp_glue))
register_format(ReaderFormat("generic", _generic_source, takes_columns=True, needs_columns=True))
register_format(ReaderFormat("hf", _hf_source, takes_columns=True))  # recognised by its path (detect_format)

FORMATS = ("auto", *READERS)  # the --format choices
