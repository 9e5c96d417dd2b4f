"""Issue 10, item 5 and the readers: every command that reads data says how
many rows it skipped; malformed files that used to be misread are errors in
raise mode and counted skips in skip mode; empty pairs, one-class training
sets and overlong sentences are handled."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from conftest import TINY_COLUMNS, TOY_LABELS, TOY_PAIRS, tiny_train_argv, write_pairs
from vaa.cli import main
from vaa.config import DataConfig, ModelConfig
from vaa.data.pairs import DataError, Pair
from vaa.data.readers import ColumnSpec, read_pairs
from vaa.inference import predict

GENERIC = ["--format", "generic", "--columns", TINY_COLUMNS]
SNLI_HEADER = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
    "sentence1\tsentence2\tcaptionID\tpairID\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5"
)
MNLI_HEADER = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
    "sentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5"
)


def with_bad_row(path, position=3):
    """The file with one malformed row (an extra field) inserted."""
    lines = path.read_text().splitlines()
    lines.insert(position, "the cat is here\twhere is the cat\t1\textra field")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """A tiny ESIM model A trained through the CLI; its folder."""
    folder = tmp_path_factory.mktemp("run")
    train = write_pairs(folder / "train.tsv", 40, 0)
    run = folder / "a"
    assert main(tiny_train_argv(DataConfig(train=str(train), columns=TINY_COLUMNS), run, hidden="4")) == 0
    return run


@pytest.fixture
def bad_file(tmp_path):
    return with_bad_row(write_pairs(tmp_path / "eval.tsv", 12, 3))


# -- skip counts are reported by every command ---------------------------------


def test_train_without_valid_reports_the_skipped_row(tmp_path, capsys):
    train = with_bad_row(write_pairs(tmp_path / "train.tsv", 26, 0))
    run = tmp_path / "run"
    data = DataConfig(train=str(train), columns=TINY_COLUMNS)
    assert main(tiny_train_argv(data, run, "--on-error", "skip", hidden="4")) == 0
    err = capsys.readouterr().err  # the CLI logs to stderr
    assert "26 pairs kept of 27 rows; skipped: 1 malformed row" in err
    files = json.loads((run / "data.json").read_text())["files"]
    assert files["train"]["rows"] == 27 and files["train"]["skipped"] == {"malformed row": 1}
    assert json.loads((run / "data.json").read_text())["skipped"] == 1


def test_evaluate_reports_skips_on_stderr(run_a, bad_file, capsys):
    assert main(["evaluate", str(run_a), str(bad_file), *GENERIC, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "12 pairs kept of 13 rows; skipped: 1 malformed row" in captured.err
    assert "accuracy" in captured.out and "skipped" not in captured.out  # stdout: the report only


def test_predict_reports_skips(run_a, bad_file, tmp_path, capsys, caplog):
    out_file = tmp_path / "p.csv"
    assert main(["predict", str(run_a), str(bad_file), *GENERIC, "--on-error", "skip", "--output", str(out_file)]) == 0
    assert "skipped: 1 malformed row" in capsys.readouterr().err
    assert main(["predict", str(run_a), str(bad_file), *GENERIC, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "skipped: 1 malformed row" in captured.err  # rows go to stdout, the report to stderr
    assert len(captured.out.strip().splitlines()) == 12
    caplog.clear()  # from Python: the report is one INFO record of vaa.inference
    with caplog.at_level(logging.INFO, logger="vaa"):
        predict(run_a, data=bad_file, format="generic", columns="a=a,b=b,label=y", on_error="skip")
    assert [(r.name, r.levelno) for r in caplog.records if "skipped: 1 malformed row" in r.getMessage()] == [
        ("vaa.inference", logging.INFO)
    ]


def _vulnerability_skipping(run, pairs_file, out_file, *more: str) -> list[str]:
    """``vaa vulnerability`` of ``run`` on ``pairs_file`` in skip mode, into ``out_file``."""
    return [
        "vulnerability",
        str(run),
        str(pairs_file),
        *GENERIC,
        "--on-error",
        "skip",
        *more,
        "--output",
        str(out_file),
        "--no-progress",
    ]


def test_vulnerability_reports_skips(run_a, bad_file, tmp_path, capsys):
    out_file = tmp_path / "v.csv"
    assert main(_vulnerability_skipping(run_a, bad_file, out_file)) == 0
    assert "skipped: 1 malformed row" in capsys.readouterr().err


def test_run_records_truncation_counts(run_a):
    data = json.loads((run_a / "data.json").read_text())
    assert data["truncated"]["train"]["pairs_truncated"] == 0 and data["truncated"]["train"]["pairs"] > 0


# -- values that must not reach a model -----------------------------------------


def test_vulnerability_refuses_an_overflowing_eps(run_a, bad_file, tmp_path, capsys):
    out_file = tmp_path / "v.csv"
    assert main(_vulnerability_skipping(run_a, bad_file, out_file, "--eps", "1e38")) == 2
    err = capsys.readouterr().err
    error = err.strip().splitlines()[-1]  # after the read report (a log line): the error, in one line
    assert error.startswith("vaa: error:") and "non-finite" in error and "eps=1e+38" in error and "Traceback" not in err
    assert not out_file.exists()


@pytest.mark.parametrize("pair", [["", "a cat"], ["a cat", "   "]])
def test_an_empty_pair_sentence_is_an_error(run_a, capsys, pair):
    assert main(["predict", str(run_a), "--pair", *pair]) == 2
    assert "is empty" in capsys.readouterr().err
    with pytest.raises(DataError, match="is empty"):
        predict(run_a, pairs=[tuple(pair)])


def test_a_one_class_training_set_is_an_error(tmp_path, capsys):
    train = tmp_path / "one.tsv"
    train.write_text("a\tb\ty\n" + "".join(f"s{i} x\tt{i} y\t1\n" for i in range(12)))
    run = tmp_path / "run"
    assert main(["train", "--train", str(train), *GENERIC, "--output", str(run), "--no-progress"]) == 2
    assert "only one class" in capsys.readouterr().err
    assert not run.exists()  # the data are checked before the run folder is made


def test_bad_training_data_leave_no_run_folder(tmp_path, capsys):
    train = with_bad_row(write_pairs(tmp_path / "train.tsv", 20, 0))
    run = tmp_path / "run"
    assert main(["train", "--train", str(train), *GENERIC, "--output", str(run), "--no-progress"]) == 2
    assert "train.tsv:4: expected 3 tab-separated fields, found 4" in capsys.readouterr().err
    assert not run.exists()


def test_esim_counts_and_caps_overlong_sentences():
    from conftest import tiny_esim

    model = tiny_esim()
    model.max_tokens = 3
    pairs = [Pair("the cat sat on the mat", "a cat", "duplicate", "long"), TOY_PAIRS[3]]
    examples = model.featurize_all(pairs, TOY_LABELS)
    assert len(examples[0]["a_ids"]) == 3 and model.last_truncated == (1, 2)
    model.max_tokens = 0
    model.featurize_all(pairs, TOY_LABELS)
    assert model.last_truncated == (0, 2)


def test_default_esim_cap_truncates_no_real_sentence():
    # the longest sentence of the shared QQP/SNLI/MultiNLI files has 260 tokens (measured; see config.ESIM_MAX_TOKENS)
    assert ModelConfig().max_tokens >= 260 and ModelConfig().max_tokens <= 1024


# -- malformed files -------------------------------------------------------------


def _row(header: str, gold: str, s1: str, s2: str, pair_id: str, labels: int = 1) -> str:
    n_fixed = len(header.split("\t")) - 5  # fields before label1
    fields = [gold, "( x )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2, "c", pair_id] + (["fiction"] if n_fixed == 10 else [])
    return "\t".join(fields + [gold] * labels)


@pytest.mark.parametrize("header", [SNLI_HEADER, MNLI_HEADER], ids=["snli", "multinli"])
@pytest.mark.parametrize("labels", [1, 5])
def test_a_tab_inside_an_nli_sentence_is_caught(tmp_path, header, labels):
    good = _row(header, "neutral", "A man sleeps.", "A man rests.", "p1", labels)
    shifted = _row(header, "entailment", "A dog\truns.", "A dog moves.", "p2", labels)
    path = tmp_path / "nli.txt"
    path.write_text("\n".join([header, good, shifted, good.replace("p1", "p3")]) + "\n")
    with pytest.raises(DataError, match=r"nli.txt:3: .*(shifted|fields)"):
        read_pairs(path)
    data = read_pairs(path, on_error="skip")
    assert [p.id for p in data] == ["p1", "p3"] and data.report.skipped == {"malformed row": 1}


def test_an_unbalanced_csv_quote_is_caught(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('a,b,label\nhow are you,"fine thanks,1\nwhat is x,what is y,0\nwhere,"there",1\nok,fine,0\n')
    spec = ColumnSpec("a", "b", "label")
    with pytest.raises(DataError, match=r"q.csv:2: unbalanced quote\? .* line 3 inside it"):
        read_pairs(path, columns=spec)
    data = read_pairs(path, columns=spec, on_error="skip")
    assert [p.a for p in data] == ["ok"] and data.report.skipped == {"malformed row": 1}


def test_a_real_multiline_csv_field_is_still_read(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('a,b,label\n"a sentence\nover two lines",short,1\n"three\nlines, with a comma\nhere",x,0\n')
    data = read_pairs(path, columns=ColumnSpec("a", "b", "label"))
    assert [p.a for p in data] == ["a sentence\nover two lines", "three\nlines, with a comma\nhere"]


def test_a_corrupt_gzip_is_a_clear_error(tmp_path):
    body = gzip.compress(("a\tb\ty\n" + "x y\tz w\t1\n" * 200).encode())
    path = tmp_path / "c.tsv.gz"
    path.write_bytes(body[:20] + bytes(b ^ 0x5A for b in body[20:60]) + body[60:])
    with pytest.raises(DataError, match=r"c.tsv.gz: cannot read gzip file \(corrupt or truncated\)"):
        read_pairs(path, columns=ColumnSpec("a", "b", "y"))
    truncated = tmp_path / "t.tsv.gz"
    truncated.write_bytes(body[: len(body) // 2])
    with pytest.raises(DataError, match="cannot read gzip file"):
        read_pairs(truncated, columns=ColumnSpec("a", "b", "y"))


def test_nul_characters_and_utf16_without_bom_are_caught(tmp_path):
    path = tmp_path / "n.tsv"
    path.write_text("a\tb\ty\nthe cat\x00\ta cat\t1\nthe dog\ta dog\t0\n")
    with pytest.raises(DataError, match=r"n.tsv:2: NUL character in column 'a'"):
        read_pairs(path, columns=ColumnSpec("a", "b", "y"))
    assert read_pairs(path, columns=ColumnSpec("a", "b", "y"), on_error="skip").report.skipped == {"malformed row": 1}
    utf16 = tmp_path / "u.tsv"
    utf16.write_bytes("a\tb\ty\nthe cat\ta cat\t1\n".encode("utf-16-le"))  # no BOM: every byte pair is "valid" UTF-8
    with pytest.raises(DataError, match="NUL character"):
        read_pairs(utf16, columns=ColumnSpec("a", "b", "y"))
