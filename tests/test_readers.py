"""Readers: every format on small fixtures written from the published schemas,
auto-detection, and a DataError naming file and line for each kind of bad
input. The real files in ../shared/data are checked against their README."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from vaa.data.pairs import DataError, LabelMap
from vaa.data.readers import (
    FORMATS,
    NLI_LABELS,
    QQP_LABELS,
    ColumnSpec,
    detect_format,
    preferred_labels,
    read_pairs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = Path(__file__).parents[2] / "shared" / "data"

SNLI_TXT_HEADER = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
    "sentence1\tsentence2\tcaptionID\tpairID\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5"
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def snli_txt_row(gold: str, s1: str, s2: str, pair_id: str = "p") -> str:
    return "\t".join([gold, "( x )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, "c", pair_id, gold, "", "", "", ""])


# ---------------------------------------------------------------- formats


def test_snli_jsonl_skips_dash_labels_and_ignores_other_keys():
    data = read_pairs(FIXTURES / "snli_1.0_sample.jsonl")
    assert data.report.format == "nli-jsonl"
    assert [p.label for p in data] == ["neutral", "contradiction", "entailment"]
    assert data.report.rows == 4 and data.report.kept == 3
    assert data.report.skipped == {"gold_label '-'": 1}
    last = data[2]
    assert last.a == "Two dogs run across a snowy field."  # stripped
    assert last.id == "200#1r1e"


def test_snli_txt_by_header_with_quotes_in_sentences():
    data = read_pairs(FIXTURES / "snli_1.0_sample.txt")
    assert data.report.format == "nli-tsv"
    assert data[0].a == 'A woman holds a sign that says "Free hugs".'
    assert data[0].b == "A woman is holding a sign."
    assert (data[0].label, data[0].id) == ("entailment", "300.jpg#2r1e")
    assert data.labels() == ["entailment", "contradiction"]
    assert data.report.skipped == {"gold_label '-'": 1}


def test_multinli_txt_columns_found_by_name():
    data = read_pairs(FIXTURES / "multinli_1.0_sample.txt")
    assert data.report.format == "nli-tsv"
    assert [(p.a, p.label, p.id) for p in data] == [
        ("The committee met on Tuesday.", "neutral", "5001n"),
        ('He said "no" twice.', "entailment", "5002e"),
    ]


def test_nli_txt_row_may_omit_unused_trailing_columns(tmp_path):
    row = "\t".join(["neutral", "( x )", "( y )", "(ROOT x)", "(ROOT y)", "A b.", "C d.", "c", "p1", "neutral"])
    data = read_pairs(write(tmp_path, "t.txt", SNLI_TXT_HEADER + "\n" + row + "\n"))
    assert data[0].id == "p1"


def test_qqp_wang():
    data = read_pairs(FIXTURES / "qqp_wang.tsv")
    assert data.report.format == "qqp-wang"
    assert data.labels() == ["duplicate", "not_duplicate", "not_duplicate", "duplicate"]
    assert data[2].a == 'What is a "good" laptop for students ?'
    assert [p.id for p in data] == ["0", "1", "2", "3"]


def test_qqp_glue_train_and_unlabelled_test():
    train = read_pairs(FIXTURES / "qqp_glue_train.tsv")
    assert train.report.format == "qqp-glue"
    assert [(p.id, p.label) for p in train] == [("7", "duplicate"), ("8", "not_duplicate"), ("9", "duplicate")]
    assert train[0].a == "How do I improve my English?"
    test = read_pairs(FIXTURES / "qqp_glue_test.tsv")
    assert test.report.format == "qqp-glue"
    assert test.labels() == [None, None] and not test.labelled
    assert test[1].b == "Where is the tallest mountain?"


def test_generic_tsv():
    spec = ColumnSpec.parse("a=left,b=right,label=gold,id=uid")
    data = read_pairs(FIXTURES / "generic.tsv", format="generic", columns=spec)
    assert [(p.a, p.b, p.label, p.id) for p in data] == [
        ("A cat sits on a mat.", "A cat is sitting.", "yes", "g1"),
        ("A boy eats an apple.", "A girl sleeps.", "no", "g2"),
    ]


def test_generic_csv_uses_real_quoting_and_first_line_numbers():
    data = read_pairs(FIXTURES / "generic.csv", columns=ColumnSpec("left", "right", "gold"))
    assert data.report.format == "generic"
    assert data[0].a == "Hello, world" and data[0].b == 'He said "hi".'
    assert data[1].a == "A sentence\nover two lines"
    # no id column: ids are file:line, the line where the record starts
    assert [p.id for p in data] == ["generic.csv:2", "generic.csv:3", "generic.csv:5"]


def test_generic_jsonl_numbers_become_strings():
    data = read_pairs(FIXTURES / "generic.jsonl", format="generic", columns=ColumnSpec("s1", "s2", "y"))
    assert data.labels() == ["1", "0", "1"]
    assert data[1].id == "generic.jsonl:2"


def test_generic_without_label_column_is_unlabelled():
    data = read_pairs(FIXTURES / "generic.tsv", format="generic", columns=ColumnSpec("left", "right"))
    assert data.labels() == [None, None]


def test_generic_needs_columns():
    with pytest.raises(DataError, match="--columns"):
        read_pairs(FIXTURES / "generic.tsv", format="generic")


def test_columns_with_a_builtin_format_is_an_error():
    with pytest.raises(ValueError, match="columns"):
        read_pairs(FIXTURES / "qqp_wang.tsv", format="qqp-wang", columns=ColumnSpec("x", "y"))


@pytest.mark.parametrize("name", ["snli_1.0_sample.jsonl", "qqp_wang.tsv", "qqp_glue_test.tsv", "snli_1.0_sample.txt"])
def test_gzipped_reads_the_same(tmp_path, name):
    plain = read_pairs(FIXTURES / name)
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress((FIXTURES / name).read_bytes()))
    assert detect_format(gz) == plain.report.format
    packed = read_pairs(gz)
    assert [(p.a, p.b, p.label) for p in packed] == [(p.a, p.b, p.label) for p in plain]


def test_generic_csv_gzipped(tmp_path):
    gz = write(tmp_path, "g.csv.gz", gzip.compress((FIXTURES / "generic.csv").read_bytes()))
    assert len(read_pairs(gz, columns=ColumnSpec("left", "right", "gold"))) == 3


def test_hf_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(NLI_LABELS)),
        }
    )
    rows = {
        "premise": ["A man sings.", "A dog barks.", "Kids play."],
        "hypothesis": ["Someone sings.", "A cat.", "Hidden."],
        "label": [0, 2, -1],
    }
    ds = datasets.Dataset.from_dict(rows, features=features)
    ds.save_to_disk(str(tmp_path / "plain"))
    datasets.DatasetDict({"train": ds, "validation": ds.select([0, 1])}).save_to_disk(str(tmp_path / "dd"))

    assert detect_format(tmp_path / "plain") == "hf"
    data = read_pairs(tmp_path / "plain")
    assert data.report.format == "hf"
    assert data.labels() == ["entailment", "contradiction", None]  # ClassLabel names; -1 unlabelled
    assert data[0].a == "A man sings." and data[0].id == "plain:1"

    assert len(read_pairs(tmp_path / "dd")) == 3  # default split: train
    valid = read_pairs(f"{tmp_path / 'dd'}::validation")
    assert valid.labels() == ["entailment", "contradiction"]
    with pytest.raises(DataError, match="available splits"):
        read_pairs(f"{tmp_path / 'dd'}::test")

    spec = ColumnSpec(a="hypothesis", b="premise", label="label")
    assert read_pairs(tmp_path / "plain", columns=spec)[0].a == "Someone sings."
    with pytest.raises(DataError, match="missing column 'nope'"):
        read_pairs(tmp_path / "plain", format="hf", columns=ColumnSpec("nope", "premise"))
    with pytest.raises(DataError, match="row has no label"):
        read_pairs(tmp_path / "plain", require_labels=True)


def test_hf_without_datasets_package(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match="pip install datasets"):
        read_pairs("hf:someone/some-data", format="hf")


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("snli_1.0_sample.jsonl", "nli-jsonl"),
        ("snli_1.0_sample.txt", "nli-tsv"),
        ("multinli_1.0_sample.txt", "nli-tsv"),
        ("qqp_wang.tsv", "qqp-wang"),
        ("qqp_glue_train.tsv", "qqp-glue"),
        ("qqp_glue_test.tsv", "qqp-glue"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(FIXTURES / name) == fmt
    assert detect_format(str(FIXTURES / name)) == fmt


@pytest.mark.parametrize("name", ["generic.tsv", "generic.csv", "generic.jsonl"])
def test_detect_format_refuses_to_guess(name):
    with pytest.raises(DataError, match="could not detect.*--format generic --columns"):
        read_pairs(FIXTURES / name)


def test_detect_hf_prefix():
    assert detect_format("hf:nyu-mll/multi_nli::validation_matched") == "hf"


def test_preferred_labels_and_label_map():
    assert preferred_labels("nli-jsonl") == preferred_labels("nli-tsv") == NLI_LABELS
    assert preferred_labels("qqp-wang") == preferred_labels("qqp-glue") == QQP_LABELS
    assert preferred_labels("generic") is None and preferred_labels("hf") is None
    data = read_pairs(FIXTURES / "qqp_wang.tsv")
    labels = LabelMap.from_labels(data.labels(), preferred_labels(data.report.format))
    assert labels.index("duplicate") == 1  # index == the 0/1 in the file


def test_formats_constant():
    assert FORMATS == ("auto", "nli-jsonl", "nli-tsv", "qqp-wang", "qqp-glue", "generic", "hf")


# ---------------------------------------------------------------- column spec


def test_column_spec_parse():
    assert ColumnSpec.parse("a=question1,b=question2,label=is_duplicate,id=id") == ColumnSpec(
        "question1", "question2", "is_duplicate", "id"
    )
    assert ColumnSpec.parse(" a = x , b = y ") == ColumnSpec("x", "y")


@pytest.mark.parametrize("text", ["a=x", "a=x,b=y,colour=z", "a=x,b", "a=x,b=y,a=z", "a=x,b="])
def test_column_spec_parse_errors(text):
    with pytest.raises(ValueError):
        ColumnSpec.parse(text)


# ---------------------------------------------------------------- bad input


def nli_jsonl(gold: str = "entailment", s1: str = "A b.", s2: str = "C d.", **extra) -> str:
    return json.dumps({"gold_label": gold, "sentence1": s1, "sentence2": s2, "pairID": "p", **extra})


BAD_CASES = {
    # name: (file name, content, expected line, message pattern, skip reason)
    "invalid json": ("bad.jsonl", nli_jsonl() + "\n" + nli_jsonl() + "\n{not json\n", 3, "invalid JSON", "malformed row"),
    "json not object": ("bad.jsonl", nli_jsonl() + "\n[1, 2]\n", 2, "expected a JSON object", "malformed row"),
    "unknown nli label": (
        "bad.jsonl",
        nli_jsonl() + "\n" + nli_jsonl("entails") + "\n",
        2,
        "unknown label 'entails'",
        "unknown label",
    ),
    "empty sentence": (
        "bad.jsonl",
        nli_jsonl() + "\n" + nli_jsonl(s2="   ") + "\n",
        2,
        "empty sentence in column 'sentence2'",
        "empty sentence",
    ),
    "null sentence": (
        "bad.jsonl",
        nli_jsonl() + "\n" + nli_jsonl(s1=None) + "\n",
        2,
        "empty sentence in column 'sentence1'",
        "empty sentence",
    ),
    "missing json key": (
        "bad.jsonl",
        nli_jsonl() + '\n{"gold_label": "neutral", "sentence1": "x", "pairID": "q"}\n',
        2,
        r"missing column 'sentence2'; available columns: 'gold_label', 'sentence1', 'pairID'",
        "missing column",
    ),
    "wang too few fields": (
        "bad.tsv",
        "1\tq one\tq two\t0\n0\tq three\t1\n",
        2,
        "expected 4 tab-separated fields, found 3",
        "malformed row",
    ),
    "wang unknown label": ("bad.tsv", "1\tq one\tq two\t0\n2\tq three\tq four\t1\n", 2, "unknown label '2'", "unknown label"),
    "wang empty question": (
        "bad.tsv",
        "1\tq one\tq two\t0\n1\t \tq four\t1\n",
        2,
        "empty sentence in column 'q1'",
        "empty sentence",
    ),
    "nli txt too many fields": (
        "bad.txt",
        SNLI_TXT_HEADER + "\n" + snli_txt_row("neutral", "A.", "B.") + "\n" + snli_txt_row("neutral", "A.", "B.") + "\textra\n",
        3,
        "expected 14 tab-separated fields, found 15",
        "malformed row",
    ),
    "nli txt too few fields": (
        "bad.txt",
        SNLI_TXT_HEADER + "\n" + snli_txt_row("neutral", "A.", "B.") + "\nneutral\t( x )\n",
        3,
        "expected 14 tab-separated fields, found 2",
        "malformed row",
    ),
    "glue unknown label": (
        "bad.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tQ a?\tQ b?\t1\n2\t3\t4\tQ c?\tQ d?\tyes\n",
        3,
        "unknown label 'yes'",
        "unknown label",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_raises_with_file_and_line(tmp_path, case):
    name, content, line, pattern, _ = BAD_CASES[case]
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=pattern) as info:
        read_pairs(path)
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_skipped_and_counted(tmp_path, case):
    name, content, _, _, reason = BAD_CASES[case]
    data = read_pairs(write(tmp_path, name, content), on_error="skip")
    assert data.report.skipped == {reason: 1}
    assert data.report.kept == data.report.rows - 1 == len(data)


def test_skip_counts_several_reasons(tmp_path):
    lines = [nli_jsonl(), "{oops", nli_jsonl("maybe"), nli_jsonl(s1=""), nli_jsonl("-"), nli_jsonl("neutral")]
    data = read_pairs(write(tmp_path, "mix.jsonl", "\n".join(lines) + "\n"), on_error="skip")
    assert data.report.rows == 6 and data.report.kept == 2
    assert data.report.skipped == {"malformed row": 1, "unknown label": 1, "empty sentence": 1, "gold_label '-'": 1}
    assert "skipped" in data.report.summary()


def test_missing_column_in_header_names_available_columns(tmp_path):
    path = write(tmp_path, "g.tsv", "left\tright\nx\ty\n")
    with pytest.raises(DataError, match=r"missing column 'gold'; available columns: 'left', 'right'") as info:
        read_pairs(path, columns=ColumnSpec("left", "right", "gold"), on_error="skip")
    assert info.value.line == 1


def test_generic_csv_field_count(tmp_path):
    path = write(tmp_path, "g.csv", 'a,b,label\n"x, y",z,1\nonly,two\n')
    with pytest.raises(DataError, match="expected 3 comma-separated fields, found 2") as info:
        read_pairs(path, columns=ColumnSpec("a", "b", "label"))
    assert info.value.line == 3


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("empty.jsonl", "", "empty file"),
        ("blank.jsonl", "\n  \n", "empty file"),
        ("header.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n", "empty file: only a header"),
    ],
)
def test_empty_file_raises_even_when_skipping(tmp_path, name, content, pattern):
    path = write(tmp_path, name, content)
    fmt = "qqp-glue" if name.endswith(".tsv") else "nli-jsonl"
    with pytest.raises(DataError, match=pattern) as info:
        read_pairs(path, format=fmt, on_error="skip")
    assert info.value.path == str(path)


def test_empty_file_detected_as_empty(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_pairs(write(tmp_path, "e.tsv", ""))


def test_all_rows_skipped_raises(tmp_path):
    path = write(tmp_path, "dash.jsonl", nli_jsonl("-") + "\n")
    with pytest.raises(DataError, match="no pairs kept"):
        read_pairs(path)


def test_bad_encoding_names_line(tmp_path):
    good = b"1\tq one\tq two\t0\n"
    path = write(tmp_path, "latin.tsv", good + good + "0\tcaf\xe9 ?\tq\t2\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as info:
        read_pairs(path, format="qqp-wang")
    assert (info.value.path, info.value.line) == (str(path), 3)
    with pytest.raises(DataError, match="not UTF-8") as info:
        read_pairs(path)  # auto-detection reads the prefix and hits it too
    assert info.value.line == 3


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_pairs(tmp_path / "nope.jsonl", format="nli-jsonl")
    with pytest.raises(DataError, match="cannot read"):
        read_pairs(write(tmp_path, "x.jsonl.gz", b"not gzip"), format="nli-jsonl")


def test_require_labels(tmp_path):
    with pytest.raises(DataError, match="row has no label") as info:
        read_pairs(FIXTURES / "qqp_glue_test.tsv", require_labels=True)
    assert info.value.line == 2
    assert len(read_pairs(FIXTURES / "qqp_glue_train.tsv", require_labels=True)) == 3


def test_generic_empty_label_cell_is_unlabelled(tmp_path):
    path = write(tmp_path, "g.tsv", "a\tb\ty\nx1\ty1\t1\nx2\ty2\t\n")
    spec = ColumnSpec("a", "b", "y")
    assert read_pairs(path, columns=spec).labels() == ["1", None]
    with pytest.raises(DataError, match="row has no label") as info:
        read_pairs(path, columns=spec, require_labels=True)
    assert info.value.line == 3


def test_line_numbers_count_blank_lines_and_header(tmp_path):
    content = (
        "\n" + SNLI_TXT_HEADER + "\n\n" + snli_txt_row("neutral", "A.", "B.") + "\n" + snli_txt_row("neutral", "", "B.") + "\n"
    )
    with pytest.raises(DataError) as info:
        read_pairs(write(tmp_path, "b.txt", content))
    assert info.value.line == 5


def test_crlf_line_endings(tmp_path):
    path = write(tmp_path, "w.tsv", "1\tq one\tq two\t0\r\n0\tq three\tq four\t1\r\n")
    data = read_pairs(path)
    assert data[0].id == "0" and data[1].b == "q four"


def test_unicode_line_separators_stay_inside_sentences(tmp_path):
    path = write(tmp_path, "u.tsv", "1\tq\u2028one\tq two\t0\n0\tq\x85three\tq four\t1\n")
    data = read_pairs(path)
    assert len(data) == 2 and data[0].a == "q\u2028one"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown format"):
        read_pairs(FIXTURES / "qqp_wang.tsv", format="parquet")
    with pytest.raises(ValueError, match="on_error"):
        read_pairs(FIXTURES / "qqp_wang.tsv", on_error="ignore")
    with pytest.raises(ValueError, match="limit"):
        read_pairs(FIXTURES / "qqp_wang.tsv", limit=0)


# ---------------------------------------------------------------- limit, ids


def test_limit_counts_kept_pairs():
    data = read_pairs(FIXTURES / "snli_1.0_sample.jsonl", limit=3)
    # rows 1-2 kept, row 3 is '-', row 4 kept -> reading stops there
    assert len(data) == 3 and data.report.rows == 4 and data.report.kept == 3
    short = read_pairs(FIXTURES / "qqp_wang.tsv", limit=2)
    assert [p.id for p in short] == ["0", "1"] and short.report.rows == 2


def test_nli_without_pair_ids_uses_file_and_line(tmp_path):
    path = write(tmp_path, "noid.jsonl", json.dumps({"gold_label": "neutral", "sentence1": "A.", "sentence2": "B."}) + "\n")
    assert read_pairs(path)[0].id == "noid.jsonl:1"


# ---------------------------------------------------------------- real data

REAL_FILES = [
    ("qqp/train_sample.tsv", "qqp-wang", 19_197, {"duplicate": 7_071, "not_duplicate": 12_126}),
    ("qqp/dev.tsv", "qqp-wang", 10_000, {"duplicate": 5_000, "not_duplicate": 5_000}),
    ("snli/snli_1.0_train_sample.jsonl", "nli-jsonl", 8_160, {"entailment": 2_704, "neutral": 2_669, "contradiction": 2_787}),
    ("snli/snli_1.0_dev.jsonl", "nli-jsonl", 9_842, {"entailment": 3_329, "neutral": 3_235, "contradiction": 3_278}),
    (
        "mnli/multinli_1.0_train_sample.jsonl",
        "nli-jsonl",
        19_738,
        {"entailment": 6_462, "neutral": 6_615, "contradiction": 6_661},
    ),
    ("mnli/multinli_1.0_dev_matched.jsonl", "nli-jsonl", 9_815, {"entailment": 3_479, "neutral": 3_123, "contradiction": 3_213}),
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared real data not present")
@pytest.mark.parametrize("name, fmt, rows, counts", REAL_FILES)
def test_real_files_match_readme(name, fmt, rows, counts):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = read_pairs(path, require_labels=True)
    assert data.report.format == fmt
    assert data.report.rows == data.report.kept == len(data) == rows
    assert dict(data.label_counts()) == counts
    assert len({p.id for p in data}) == rows
