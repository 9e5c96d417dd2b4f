"""The model card (README.md) of run folders, written from the run's records."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vaa.model_card import render
from vaa.run_folder import foreign_entries


def _card(run: str) -> str:
    return (Path(run) / "README.md").read_text()


def _figures(report: dict) -> list[str]:
    return [
        f"accuracy **{report['accuracy']:.4f}** on {report['pairs']} pairs",
        f"log-loss {report['log_loss']:.4f}",
        f"ECE {report['ece']:.4f}",
    ]


def test_stage_one_card_matches_the_runs_records(tiny_runs):
    _, a, _ = tiny_runs
    card = _card(a)
    results = json.loads((Path(a) / "results.json").read_text())
    data = json.loads((Path(a) / "data.json").read_text())
    assert card.startswith("# vaa model: esim, stage one")
    for figure in _figures(results["scores"]["valid"]):
        assert figure in card
    for split in ("train", "valid"):
        assert f"- {split}: {data[split]['path']} ({data[split]['kept']} pairs" in card
    assert f"epochs run: {results['epochs']} (best validation epoch: {results['best_epoch']}" in card
    assert f"seed: {results['seed']}" in card
    assert "none stored" in card  # no calibration yet
    assert foreign_entries(a) == []  # README.md is vaa's own entry: --overwrite still empties the folder


def test_stage_two_card_names_model_a_and_both_scores(tiny_runs):
    _, a, b = tiny_runs
    card = _card(b)
    results = json.loads((Path(b) / "results.json").read_text())
    assert card.startswith("# vaa model: esim, stage two")
    assert f"model A: {results['info']['model_a']}" in card and str(Path(a)) in results["info"]["model_a"]
    for figure in _figures(results["scores"]["valid"]) + _figures(results["model_a_scores"]["valid"]):
        assert figure in card
    assert f"V injected as: {results['vaa']['injection']}" in card
    assert foreign_entries(b) == []


def test_caveats_follow_the_data_and_the_encoder():
    shared = {"train": {"path": "../shared/data/qqp/train_sample.tsv", "kept": 19197, "format": "qqp"}}
    mine = {"train": {"path": "my/train.tsv", "kept": 10, "format": "generic"}}
    minilm = render({"family": "hf", "stage": "stage1"}, {"model": {"path": None}}, shared)
    esim = render({"family": "esim", "stage": "stage1"}, {"model": {}}, mine)
    assert "Reduced-scale protocol" in minilm and "Reduced-scale protocol" not in esim
    assert "pre-trained on sentence pairs that include SNLI, MultiNLI and Quora" in minilm
    assert "MultiNLI" not in esim
    own_bert = render({"family": "hf", "stage": "stage1"}, {"model": {"path": "/models/my-bert"}}, mine)
    assert "MultiNLI" not in own_bert and "my-bert" in own_bert
    # stage two: the checkpoint's record of A's encoder wins over a config.json that does not name it
    b_meta = {"kind": "vaa", "model": {"family": "hf", "spec": {"model_path": "/models/my-bert"}}}
    assert "MultiNLI" not in render({"family": "hf", "stage": "stage2"}, {"model": {"path": None}}, mine, meta=b_meta)


def test_a_card_with_missing_records_says_so():
    card = render(meta={"kind": "model", "model": {"family": "esim", "label_map": {"names": ["no", "yes"]}}})
    assert "not recorded (no data.json)" in card and "not recorded (no results.json)" in card
    assert "labels (probability columns in this order): no, yes" in card


def test_a_finished_run_without_a_card_gets_one_when_run_again(tiny_runs, tmp_path, caplog):
    import shutil

    import vaa
    from vaa.config import RunConfig, apply_overrides

    _, a, _ = tiny_runs
    run = tmp_path / "old"
    shutil.copytree(a, run)
    (run / "README.md").unlink()  # a run finished before model cards existed
    config = apply_overrides(RunConfig.load(run / "config.json"), {"output": str(run)})
    with caplog.at_level(logging.INFO, logger="vaa"):
        vaa.train(config)
    assert "already finished" in caplog.text  # nothing was trained again
    assert (run / "README.md").read_text() == _card(a).replace(str(a), str(run))
