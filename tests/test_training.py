"""Stage one end to end: train, resume after an interruption, evaluate, predict."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_train_argv
from vaa.checkpoint import header
from vaa.cli import main
from vaa.config import RunConfig, apply_overrides
from vaa.data.sources import load_splits
from vaa.models import build_model
from vaa.runs import RunError
from vaa.stage_one import train
from vaa.training import Trainer, TrainerSettings, read_jsonl


def test_train_writes_a_self_describing_run_folder(tiny_config):
    results = train(tiny_config)
    run = tiny_config.output
    names = {p.name for p in __import__("pathlib").Path(run).iterdir()}
    assert {"config.json", "label_map.json", "data.json", "metrics.jsonl", "loss.jsonl", "results.json", "checkpoints"} <= names
    assert json.load(open(f"{run}/label_map.json"))["names"] == ["0", "1"]
    assert RunConfig.load(f"{run}/config.json").model.hidden == 8
    metrics = read_jsonl(f"{run}/metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [0, 1]
    losses = read_jsonl(f"{run}/loss.jsonl")
    assert [r["step"] for r in losses] == [2, 4, 6, 8, 10, 12]  # 6 batches/epoch, every 2 batches
    # the reported score is the best epoch's, recomputed from the saved predictions of the best checkpoint
    saved = np.load(Path(run) / "predictions" / "valid.npz")
    assert results["scores"]["valid"]["accuracy"] == pytest.approx(np.mean(saved["predicted"] == saved["gold"]))
    assert results["scores"]["valid"]["accuracy"] == pytest.approx(max(m["valid_accuracy"] for m in metrics))
    assert results["best_epoch"] == 1 + max(range(len(metrics)), key=lambda k: (metrics[k]["valid_accuracy"], -k))
    assert results["scores"]["valid"]["pairs"] == 16
    # a second call returns the finished run instead of training again
    assert train(tiny_config)["best_epoch"] == results["best_epoch"]


def test_finished_run_without_predictions_gets_them_from_its_best_checkpoint(tiny_config, caplog):
    train(tiny_config)
    path = Path(tiny_config.output) / "predictions" / "valid.npz"
    saved = np.load(path)
    predicted, gold = saved["predicted"].copy(), saved["gold"].copy()
    path.unlink()  # a run made before predictions were saved
    with caplog.at_level(logging.INFO, logger="vaa"):
        train(tiny_config)
    assert any("no saved predictions" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    again = np.load(path)
    assert (again["predicted"] == predicted).all() and (again["gold"] == gold).all()


def test_changed_config_in_existing_folder_is_refused(tiny_config):
    train(tiny_config)
    changed = apply_overrides(tiny_config, {"optim": {"lr": 0.1}})
    with pytest.raises(RunError, match="optim.lr"):
        train(changed)


def _trainer(config, run_dir):
    torch.manual_seed(0)
    splits = load_splits(config.data)
    model = build_model("esim", splits.train.pairs, splits.label_map, hidden=8)
    tr = model.featurize_all(splits.train.pairs, splits.label_map)
    va = model.featurize_all(splits.valid.pairs, splits.label_map)
    return model, Trainer(
        model,
        tr,
        va,
        TrainerSettings(
            config.optim,
            run_dir,
            lambda: header(model, splits.label_map),
            seed=0,
            log_every=2,
            checkpoint_every=1,
            progress=False,
        ),
    )


def test_resume_after_interruption_gives_the_same_model(tiny_config, tmp_path):
    straight, trainer = _trainer(tiny_config, tmp_path / "straight")
    trainer.fit()
    resumed, trainer = _trainer(tiny_config, tmp_path / "resumed")
    trainer.fit(stop_after_batches=9)  # dies in the second epoch, after the first validation, mid loss window
    assert trainer.state.epoch == 1 and trainer.state.batch_in_epoch == 3
    resumed, trainer = _trainer(tiny_config, tmp_path / "resumed")  # a new process
    state = trainer.fit()
    assert state.finished and state.epoch == 2
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    resumed_log = read_jsonl(tmp_path / "resumed" / "loss.jsonl")
    assert [r["step"] for r in resumed_log] == [2, 4, 6, 8, 10, 12]
    straight_log = read_jsonl(tmp_path / "straight" / "loss.jsonl")
    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in straight_log])
    assert [m["epoch"] for m in read_jsonl(tmp_path / "resumed" / "metrics.jsonl")] == [0, 1]


def test_cli_train_evaluate_predict(tiny_config, tmp_path, capsys):
    data = tiny_config.data
    run = str(tmp_path / "cli-run")
    code = main(tiny_train_argv(data, run))
    assert code == 0
    out = capsys.readouterr().out
    assert "validation accuracy:" in out
    assert (
        main(["evaluate", run, data.valid, "--format", "generic", "--columns", data.columns, "--json", str(tmp_path / "e.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "accuracy" in out
    report = json.load(open(tmp_path / "e.json"))
    assert sum(map(sum, report["confusion_matrix"]["rows_gold_cols_predicted"])) == 16
    assert main(["predict", run, "--pair", "the cat is here", "where is the cat"]) == 0
    line = capsys.readouterr().out.strip().split("\t")
    assert line[1] in {"0", "1"} and abs(sum(float(x.split("=")[1]) for x in line[2].split()) - 1) < 1e-4
    assert (
        main(["predict", run, data.valid, "--format", "generic", "--columns", data.columns, "--output", str(tmp_path / "p.csv")])
        == 0
    )
    assert len(open(tmp_path / "p.csv").read().splitlines()) == 17


def test_cli_reports_bad_input_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"gold_label": "neutral", "sentence1": "a", "sentence2": "b"}\n{not json\n')
    code = main(["train", "--train", str(bad), "--output", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    assert f"{bad}:2" in capsys.readouterr().err
