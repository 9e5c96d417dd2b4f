"""The optional TensorBoard writer: the curves it writes are the run's own
records (loss.jsonl, metrics.jsonl, stage two's V statistics), and a missing
tensorboard package is a one-line error before anything is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_train_argv
from vaa.cli import main
from vaa.config import apply_overrides
from vaa.run_folder import RunError, foreign_entries
from vaa.stage_one import train
from vaa.stage_two import train_vaa


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_stages_write_the_runs_curves_and_the_v_statistics(tiny_config, tmp_path):
    config = apply_overrides(tiny_config, {"tensorboard": True})
    train(config)
    run = Path(config.output)
    curves = _scalars(run / "tensorboard")
    losses = _jsonl(run / "loss.jsonl")
    assert curves["train/loss"] == pytest.approx({r["step"]: r["loss"] for r in losses})
    assert set(curves["train/lr"]) == set(curves["train/loss"]) and curves["train/lr"][losses[0]["step"]] == pytest.approx(
        config.optim.lr
    )
    metrics = _jsonl(run / "metrics.jsonl")
    assert sorted(curves["valid/accuracy"].values()) == pytest.approx(sorted(m["valid_accuracy"] for m in metrics))
    assert len(curves["valid/loss"]) == len(curves["epoch/lr"]) == len(curves["epoch/train_loss"]) == len(metrics) == 2
    assert foreign_entries(run) == []  # tensorboard/ is a known entry: --overwrite may empty the folder

    b = apply_overrides(
        config,
        {
            "vaa": {"model_a": config.output},
            "optim": {"max_epochs": 2},
            "output": str(tmp_path / "b"),
            "data": {"train": None, "valid": None},
        },
    )
    results = train_vaa(b)
    curves = _scalars(tmp_path / "b" / "tensorboard")
    offset = losses[-1]["step"]  # stage two continues stage one's step count, as in loss.jsonl
    assert min(curves["train/loss"]) > offset
    assert set(curves["train/loss"]) == {r["step"] for r in _jsonl(tmp_path / "b" / "loss.jsonl")}
    # ||V1 - V2|| over the validation pairs, as stage two measured it from its cache
    diff = curves["V/v1_minus_v2_norm_mean"]
    assert len(diff) == 2 and all(v == pytest.approx(results["info"]["signal_valid"]["mean"], rel=1e-4) for v in diff.values())
    norms = list(curves["V/norm_mean"].values())
    assert len(norms) == 2 and all(v > 0 for v in norms) and norms[0] != norms[1]  # V = W V3 + b moves as W trains
    assert set(curves["V/norm_std"]) == set(curves["V/norm_mean"]) == set(curves["valid/accuracy"])


def test_without_the_option_nothing_is_written(tiny_config):
    train(tiny_config)
    assert not (Path(tiny_config.output) / "tensorboard").exists()


def test_a_missing_tensorboard_is_one_line_before_anything_is_written(tiny_config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(RunError, match=r"needs the tensorboard package .*pip install tensorboard==2.21.0"):
        train(apply_overrides(tiny_config, {"tensorboard": True}))
    assert not Path(tiny_config.output).exists()
    code = main(tiny_train_argv(tiny_config.data, tiny_config.output, "--tensorboard", batch_size=None, no_progress=False))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("vaa: error: tensorboard: true (--tensorboard) needs") and len(err.splitlines()) == 1
    assert not Path(tiny_config.output).exists()


def test_a_resumed_run_drops_what_the_interrupted_one_wrote_after_its_checkpoint(tiny_config, tmp_path):
    from vaa.checkpoint import header
    from vaa.data.sources import load_splits
    from vaa.models import build_model
    from vaa.tensorboard_log import TensorBoardLog
    from vaa.training import Trainer, TrainerSettings

    splits = load_splits(tiny_config.data)
    run = tmp_path / "resumed"

    def trainer() -> Trainer:
        model = build_model("esim", splits.train.pairs, splits.label_map, hidden=8, seed=0)
        tr, va = (model.featurize_all(s.pairs, splits.label_map) for s in (splits.train, splits.valid))
        t = Trainer(
            model,
            tr,
            va,
            TrainerSettings(tiny_config.optim, run, lambda: header(model, splits.label_map), log_every=2, progress=False),
        )
        t.board = TensorBoardLog(run)
        return t

    trainer().fit(stop_after_batches=9)  # 6 batches an epoch: killed at step 9, after a loss event at step 8
    trainer().fit()  # resumes from the end of epoch 1 (step 6) and writes step 8 again
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(set(steps)) == [2, 4, 6, 8, 10, 12]  # each step once
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(
        {r["step"]: r["loss"] for r in _jsonl(run / "loss.jsonl")}
    )
    assert [e.step for e in events.Scalars("valid/accuracy")] == [6, 12]
