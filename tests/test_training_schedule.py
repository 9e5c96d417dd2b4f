"""The training loop's controls, each against its specification: early
stopping on validation accuracy, the plateau schedule, linear warm-up and
decay, gradient-norm clipping. Validation accuracies are scripted where a
control reacts to them, so each test knows exactly what must happen."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import vaa.training as training
from conftest import TOY_LABELS, TOY_PAIRS, ToyModel
from vaa.config import OptimConfig
from vaa.training import Predictions, Trainer, TrainerSettings, read_jsonl

PAIRS = TOY_PAIRS * 4  # 20 pairs: 5 batches of 4 per epoch


def _model() -> ToyModel:
    torch.manual_seed(0)
    return ToyModel(sorted({w for p in TOY_PAIRS for w in (p.a + " " + p.b).split()}))


def _trainer(tmp_path, **optim) -> Trainer:
    model = _model()
    examples = model.featurize_all(PAIRS, TOY_LABELS)
    cfg = OptimConfig(**{"batch_size": 4, "max_epochs": 10, "patience": 10, "scheduler": "none", **optim})
    trainer = Trainer(model, examples, examples, TrainerSettings(cfg, tmp_path, describe=lambda: {}, progress=False))
    trainer.save_best = trainer.save_last = lambda: None  # checkpoints are tested elsewhere
    return trainer


def _script_validation(monkeypatch, accuracies: list[float]) -> None:
    """Validation returns these accuracies, one per epoch (20 pairs each)."""
    scripted: Iterator[float] = iter(accuracies)

    def predict(model, examples, *args, **kwargs) -> Predictions:
        right = round(next(scripted) * 20)
        probs = np.array([[1.0, 0.0]] * right + [[0.0, 1.0]] * (20 - right))
        return Predictions(probs, np.zeros(20, dtype=np.int64), 0.5)

    monkeypatch.setattr(training, "predict_examples", predict)


@pytest.mark.parametrize("patience, epochs, best", [(2, 4, 1), (3, 8, 4)])
def test_early_stopping_after_patience_epochs_without_a_gain(monkeypatch, tmp_path, patience, epochs, best):
    _script_validation(monkeypatch, [0.5, 0.6, 0.6, 0.55, 0.9, 0.9, 0.9, 0.9, 0.95, 0.95])
    state = _trainer(tmp_path, patience=patience).fit()
    # patience 2: epochs 3 and 4 bring no gain, training stops before the 0.9 of epoch 5;
    # patience 3 reaches it, then stops after epochs 6-8 bring no gain (an equal accuracy is no gain)
    assert state.epoch == epochs and len(read_jsonl(tmp_path / "metrics.jsonl")) == epochs
    assert state.best_epoch == best and state.stop_reason.startswith("early stop: no gain in validation accuracy for")
    assert [m["best"] for m in state.history][:4] == [True, True, False, False]
    assert state.best_accuracy == pytest.approx(0.6 if patience == 2 else 0.9)


@pytest.mark.parametrize("plateau_patience, factors", [(0, [1, 1, 0.5, 0.5, 0.25]), (1, [1, 1, 1, 0.5, 0.5])])
def test_plateau_schedule_halves_the_lr_after_epochs_without_a_gain(monkeypatch, tmp_path, plateau_patience, factors):
    accuracies = [0.5, 0.6, 0.6, 0.7, 0.65] if plateau_patience == 0 else [0.5, 0.6, 0.6, 0.6, 0.6]
    _script_validation(monkeypatch, accuracies)
    state = _trainer(
        tmp_path, scheduler="plateau", plateau_factor=0.5, plateau_patience=plateau_patience, max_epochs=5, lr=1e-2
    ).fit()
    assert [m["lr"] for m in state.history] == pytest.approx([1e-2 * f for f in factors])


def test_without_a_schedule_the_lr_stays(monkeypatch, tmp_path):
    _script_validation(monkeypatch, [0.5, 0.4, 0.3])
    state = _trainer(tmp_path, max_epochs=3, lr=1e-2).fit()
    assert [m["lr"] for m in state.history] == [1e-2] * 3


def test_linear_schedule_warms_up_then_decays_to_zero(tmp_path):
    trainer = _trainer(tmp_path, scheduler="linear", warmup_ratio=0.25, max_epochs=4, lr=1e-2)
    used: list[float] = []
    step = trainer.train_step

    def recording(indices):
        used.append(trainer.optimizer.param_groups[0]["lr"])  # the lr this step trains with
        return step(indices)

    trainer.train_step = recording
    trainer.fit()
    # 20 steps, 5 of them (25%) warming up linearly to the peak, then linearly down towards 0
    warm = [1e-2 * k / 5 for k in range(1, 6)]
    decay = [1e-2 * (20 - s) / 15 for s in range(5, 20)]
    assert used == pytest.approx(warm + decay)


def _gradient_norms(tmp_path, clip: float) -> float:
    """The gradient norm the optimiser steps with, on the first batch."""
    trainer = _trainer(tmp_path, grad_clip=clip)
    seen: list[float] = []
    step = trainer.optimizer.step

    def recording(*args, **kwargs):
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.trainable]))))
        return step(*args, **kwargs)

    trainer.optimizer.step = recording
    trainer.fit(stop_after_batches=1)
    return seen[0]


def test_gradient_clipping_caps_the_norm_the_optimiser_sees(tmp_path):
    raw = _gradient_norms(tmp_path / "none", 0.0)  # 0: no clipping
    assert raw > 0
    assert _gradient_norms(tmp_path / "tight", raw / 4) == pytest.approx(raw / 4, rel=1e-5)
    assert _gradient_norms(tmp_path / "loose", raw * 10) == pytest.approx(raw, rel=1e-6)  # a cap above the norm: untouched
