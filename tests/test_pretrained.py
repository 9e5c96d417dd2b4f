"""``LoadedModel.save_pretrained``: one folder that ``vaa.load`` reads back
with identical outputs (both stages, both families), the stored calibration
carried along, a model card, and no foreign folder ever written into."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vaa
from conftest import TOY_LABELS, TOY_PAIRS
from test_hf import tiny_bert_dir  # noqa: F401  (fixture: a tiny random BERT, no download)
from vaa.checkpoint import header, save_checkpoint, save_model
from vaa.config import AttackConfig, VAAConfig
from vaa.files import OutputError
from vaa.models.hf import HFPairModel
from vaa.models.vaa import VAAModel

PAIRS = [
    ("the cat is here", "where is the cat"),
    ("the dog is here", "where is the fish"),
    ("the cow is here", "where is the cow"),
]
TOY = [(p.a, p.b) for p in TOY_PAIRS]


def _round_trip(source, target, pairs):
    model = vaa.load(source)
    saved = model.save_pretrained(target)
    again = vaa.load(saved)
    assert again.kind == model.kind and again.labels == model.labels
    np.testing.assert_array_equal(again.predict(pairs), model.predict(pairs))
    return model, again


@pytest.mark.parametrize("stage", ["a", "b"])
def test_esim_round_trip_gives_identical_probabilities(tiny_runs, tmp_path, stage):
    _, a, b = tiny_runs
    model, again = _round_trip(a if stage == "a" else b, tmp_path / "saved", PAIRS)
    assert again.kind == ("model" if stage == "a" else "vaa")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["README.md", "model.safetensors", "vaa.json", "vocab.json"]
    card = (tmp_path / "saved" / "README.md").read_text()
    assert ("stage two" in card) == (stage == "b")
    if stage == "b":  # the stage-two settings travel in vaa.json, so the folder rebuilds the same VAA model
        assert again.meta["vaa"] == model.meta["vaa"] and again.meta["attack"] == model.meta["attack"]


@pytest.mark.parametrize("stage", ["a", "b"])
def test_hf_round_trip_gives_identical_probabilities(tiny_bert_dir, tmp_path, stage):  # noqa: F811
    import torch

    torch.manual_seed(0)
    bert = HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(tiny_bert_dir), max_length=16).eval()
    if stage == "a":
        save_model(bert, TOY_LABELS, tmp_path / "ckpt")
    else:
        module = VAAModel(bert, VAAConfig(), AttackConfig())
        save_checkpoint(tmp_path / "ckpt", module, header(bert, TOY_LABELS, kind="vaa", **module.describe()))
    _, again = _round_trip(tmp_path / "ckpt", tmp_path / "saved", TOY)
    assert again.base.family == "hf" and (tmp_path / "saved" / "tokenizer").is_dir()
    assert again.kind == ("model" if stage == "a" else "vaa")


def test_the_stored_calibration_survives_the_round_trip(tiny_runs, tmp_path):
    _, a, _ = tiny_runs
    run = tmp_path / "run"
    shutil.copytree(a, run)
    vaa.calibrate(run)
    raw = vaa.load(run, raw=True).predict(PAIRS)
    model = vaa.load(run)
    assert model.calibration is not None and not np.allclose(model.predict(PAIRS), raw)  # a rule that changes the output
    saved = model.save_pretrained(tmp_path / "saved")
    again = vaa.load(saved)
    assert again.calibration is not None and again.calibration.to_json() == model.calibration.to_json()
    np.testing.assert_array_equal(again.predict(PAIRS), model.predict(PAIRS))
    np.testing.assert_array_equal(vaa.load(saved, raw=True).predict(PAIRS), raw)
    stored = json.loads((saved / "calibration.json").read_text())
    assert "report" in stored  # the calibration's own report comes along (the card quotes its cross-fitted scores)
    assert "temperature-bias calibration" in (saved / "README.md").read_text()
    assert "temperature-bias calibration" in (run / "README.md").read_text()  # `vaa calibrate` refreshed the run's card


def test_saving_again_replaces_an_earlier_save(tiny_runs, tmp_path):
    _, a, b = tiny_runs
    vaa.load(a).save_pretrained(tmp_path / "saved")
    vaa.load(b).save_pretrained(tmp_path / "saved")
    assert vaa.load(tmp_path / "saved").kind == "vaa"
    (tmp_path / "empty").mkdir()
    vaa.load(a).save_pretrained(tmp_path / "empty")
    assert vaa.load(tmp_path / "empty").kind == "model"


def test_a_foreign_or_unsafe_target_is_refused_and_left_alone(tiny_runs, tmp_path):
    _, a, _ = tiny_runs
    model = vaa.load(a)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty and not an earlier save_pretrained"):
        model.save_pretrained(foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    earlier = model.save_pretrained(tmp_path / "saved")
    (earlier / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match=r"holds files a save does not write \(notes.txt\)"):
        model.save_pretrained(earlier)
    assert (earlier / "notes.txt").read_text() == "keep me" and (earlier / "vaa.json").exists()

    with pytest.raises(OutputError, match="loaded from this folder"):
        model.save_pretrained(model.path)
    other_run_checkpoint = tmp_path / "copy"
    shutil.copytree(a, other_run_checkpoint)
    with pytest.raises(OutputError, match="a training run's checkpoint"):
        model.save_pretrained(other_run_checkpoint / "checkpoints" / "best")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="it is a file"):
        model.save_pretrained(tmp_path / "file")
    error = str(pytest.raises(OutputError, model.save_pretrained, foreign).value)
    assert "\n" not in error
