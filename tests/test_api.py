"""The loaded-model API (`vaa.load`) and label mappings for files whose labels
are spelled differently from the model's."""

from __future__ import annotations

import numpy as np
import pytest

import vaa
import vaa.inference as inference
from vaa.config import apply_overrides
from vaa.data.pairs import DataError

GENERIC = {"format": "generic", "columns": "a=a,b=b,label=y"}
PAIRS = [
    ("the cat is here", "where is the cat"),
    ("the dog is here", "where is the fish"),
    ("the cow is here", "where is the cow"),
]


@pytest.fixture
def trained_run(tiny_config):
    vaa.train(tiny_config)
    return tiny_config.output


def test_top_level_names_import():
    from vaa import calibrate, evaluate, load, predict, train, train_vaa  # noqa: F401  (the README's imports)

    with pytest.raises(AttributeError):
        vaa.no_such_thing  # noqa: B018


def test_loaded_model_is_read_once_and_agrees_with_the_functions(trained_run, tmp_path, monkeypatch):
    model = vaa.load(trained_run)
    calls = []
    real = inference.load_checkpoint
    monkeypatch.setattr(inference, "load_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    probs = model.predict(PAIRS)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1.0)
    model.predict(PAIRS, batch_size=1)
    model.vulnerability(PAIRS)
    model.evaluate(tmp_path / "valid.tsv", **GENERIC)
    assert calls == []  # everything above used the model in memory
    rows = vaa.predict(trained_run, pairs=PAIRS)
    assert len(calls) == 1
    assert np.allclose(probs, [[r[f"p_{name}"] for name in model.labels] for r in rows], atol=1e-6)
    assert model.predict_labels(PAIRS) == [r["predicted"] for r in rows]
    frame = model.vulnerability(PAIRS)
    assert list(frame["id"]) == ["pair-0", "pair-1", "pair-2"]
    assert {"F1", "F2", "distance", "flipped", "predicted"} <= set(frame.columns)
    assert frame.to_dict("records") == inference.vulnerability_rows(trained_run, pairs=PAIRS, progress=False)
    report = model.evaluate(tmp_path / "valid.tsv", **GENERIC)
    assert report == vaa.evaluate(trained_run, tmp_path / "valid.tsv", **GENERIC)


def test_a_stage_two_model_loads_and_predicts(trained_run, tiny_config, tmp_path):
    config = apply_overrides(
        tiny_config,
        {
            "vaa": {"model_a": trained_run},
            "optim": {"max_epochs": 1},
            "output": str(tmp_path / "b"),
            "data": {"train": None, "valid": None},
        },
    )
    vaa.train_vaa(config)
    model = vaa.load(tmp_path / "b")
    assert model.kind == "vaa"
    probs = model.predict(PAIRS)
    assert probs.shape == (3, 2)
    # B's output is not A's: stage two changed something the API exposes
    assert not np.allclose(probs, vaa.load(trained_run).predict(PAIRS))


def _respelled(path, tmp_path):
    """The same validation file with its labels written yes/no instead of 1/0."""
    lines = path.read_text().splitlines()
    out = [lines[0]] + [line.rsplit("\t", 1)[0] + "\t" + ("yes" if line.endswith("\t1") else "no") for line in lines[1:]]
    new = tmp_path / "respelled.tsv"
    new.write_text("\n".join(out) + "\n")
    return new


def test_label_mapping_evaluates_a_file_with_other_label_spellings(trained_run, tmp_path):
    respelled = _respelled(tmp_path / "valid.tsv", tmp_path)
    model = vaa.load(trained_run)
    with pytest.raises(DataError, match="do not occur in the training data"):
        model.evaluate(respelled, **GENERIC)
    mapped = model.evaluate(respelled, labels="no=0,yes=1", **GENERIC)
    original = model.evaluate(tmp_path / "valid.tsv", **GENERIC)
    assert mapped["accuracy"] == original["accuracy"]
    assert mapped["confusion_matrix"] == original["confusion_matrix"]
    # the mapping decides each pair's gold label (a swapped one reads every label the other way)
    gold = [r["gold"] for r in vaa.predict(trained_run, data=tmp_path / "valid.tsv", **GENERIC)]
    assert [r["gold"] for r in vaa.predict(trained_run, data=respelled, labels="no=0,yes=1", **GENERIC)] == gold
    swapped = [r["gold"] for r in vaa.predict(trained_run, data=respelled, labels="no=1,yes=0", **GENERIC)]
    assert swapped == [{"0": "1", "1": "0"}[g] for g in gold]


def test_label_mapping_on_the_command_line_and_its_errors(trained_run, tmp_path, capsys):
    from vaa.cli import main

    respelled = _respelled(tmp_path / "valid.tsv", tmp_path)
    flags = ["--format", "generic", "--columns", GENERIC["columns"]]
    assert main(["evaluate", trained_run, str(respelled), *flags, "--labels", "no=0,yes=1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", trained_run, str(respelled), *flags, "--labels", "no=0,yes"]) == 2
    assert "expected FILE_LABEL=MODEL_LABEL" in capsys.readouterr().err
    assert main(["evaluate", trained_run, str(respelled), *flags, "--labels", "no=0,no=1"]) == 2
    assert "mapped twice" in capsys.readouterr().err


def test_training_reads_relabelled_files(tiny_config, tmp_path):
    """data.labels applies to training too: a file labelled yes/no trains the
    same model as the 1/0 file when mapped onto 1/0."""
    respelled_train = _respelled(tmp_path / "train.tsv", tmp_path)
    respelled_train = respelled_train.rename(tmp_path / "train_yes_no.tsv")
    respelled_valid = _respelled(tmp_path / "valid.tsv", tmp_path)
    config = apply_overrides(
        tiny_config,
        {
            "data": {"train": str(respelled_train), "valid": str(respelled_valid), "labels": "no=0,yes=1"},
            "output": str(tmp_path / "mapped"),
        },
    )
    mapped = vaa.train(config)
    plain = vaa.train(tiny_config)
    assert mapped["scores"]["valid"]["accuracy"] == plain["scores"]["valid"]["accuracy"]
    assert (tmp_path / "mapped" / "label_map.json").read_text() == (tmp_path / "run" / "label_map.json").read_text()
    assert mapped["history"][-1]["train_loss"] == plain["history"][-1]["train_loss"]
