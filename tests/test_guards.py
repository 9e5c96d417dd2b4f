"""The non-finite guard: a NaN/inf loss, gradient norm, attack step, V or
criterion stops the work with an error naming where, before anything
non-finite is stepped into the weights or written to disk."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TOY_LABELS, TOY_PAIRS
from vaa.config import AttackConfig, OptimConfig, VAAConfig
from vaa.guards import NonFiniteError, check_finite
from vaa.models.vaa import VAAModel
from vaa.training import Trainer, TrainerSettings, read_jsonl
from vaa.vulnerability import measure

PAIRS = TOY_PAIRS * 4  # 20 pairs: 5 batches of 4


class NaNAfter(nn.Module):
    """Wraps a model; from call ``start`` on, its logits are NaN (a toy
    stand-in for a diverging run). ``only_eval``: NaN in eval mode only."""

    def __init__(self, model: nn.Module, start: int, only_eval: bool = False):
        super().__init__()
        self.model, self.start, self.only_eval, self.calls = model, start, only_eval, 0

    def forward(self, batch):
        logits = self.model(batch)
        if self.only_eval and self.training:
            return logits
        self.calls += 1
        return logits * float("nan") if self.calls >= self.start else logits


def _examples(model):
    return model.featurize_all(PAIRS, TOY_LABELS)


def test_nan_loss_stops_training_naming_epoch_and_batch(toy_model, tmp_path):
    wrapped = NaNAfter(toy_model, start=3)
    examples = _examples(toy_model)
    trainer = Trainer(
        wrapped,
        examples,
        examples,
        TrainerSettings(
            OptimConfig(batch_size=4, max_epochs=2, scheduler="none"), tmp_path, describe=lambda: {}, progress=False, log_every=1
        ),
    )
    before = {k: v.clone() for k, v in toy_model.state_dict().items()}
    with pytest.raises(NonFiniteError, match=r"\[stage1\] epoch 1, batch 3: non-finite training loss"):
        trainer.fit()
    assert all(torch.isfinite(v).all() for v in toy_model.state_dict().values())  # no NaN step was taken
    assert any(not torch.equal(before[k], v) for k, v in toy_model.state_dict().items())  # batches 1-2 did train
    assert read_jsonl(tmp_path / "metrics.jsonl") == [] and not (tmp_path / "checkpoints").exists()
    assert [r["stage_step"] for r in read_jsonl(tmp_path / "loss.jsonl")] == [1, 2]


def test_nan_validation_is_never_the_best_epoch(toy_model, tmp_path):
    examples = _examples(toy_model)
    trainer = Trainer(
        NaNAfter(toy_model, start=1, only_eval=True),
        examples,
        examples,
        TrainerSettings(OptimConfig(batch_size=4, max_epochs=2, scheduler="none"), tmp_path, describe=lambda: {}, progress=False),
    )
    with pytest.raises(NonFiniteError, match=r"epoch 1, validation: non-finite validate output"):
        trainer.fit()
    assert read_jsonl(tmp_path / "metrics.jsonl") == [] and not (tmp_path / "checkpoints" / "best").exists()


def test_nan_gradient_norm_stops_training(toy_model, tmp_path):
    toy_model.head[0].weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    examples = _examples(toy_model)
    trainer = Trainer(
        toy_model,
        examples,
        examples,
        TrainerSettings(
            OptimConfig(batch_size=4, grad_clip=0.0, scheduler="none"), tmp_path, describe=lambda: {}, progress=False
        ),
    )
    with pytest.raises(NonFiniteError, match=r"epoch 1, batch 1: non-finite gradient norm"):
        trainer.fit()
    assert torch.isfinite(toy_model.head[0].weight).all()


def test_overflowing_attack_stops_stage_two_on_the_fly(toy_model, tmp_path):
    model = VAAModel(toy_model, VAAConfig(cache=False), AttackConfig(eps=1e38))
    examples = _examples(toy_model)
    trainer = Trainer(
        model,
        examples,
        examples,
        TrainerSettings(
            OptimConfig(batch_size=4, scheduler="none"), tmp_path, describe=lambda: {}, progress=False, stage="stage2"
        ),
    )
    with pytest.raises(NonFiniteError, match=r"\[stage2\] epoch 1, batch 1: non-finite"):
        trainer.fit()


def test_vulnerability_refuses_nan_criteria(toy_model):
    examples = _examples(toy_model)
    assert torch.isfinite(torch.as_tensor(measure(toy_model, examples, AttackConfig(eps=0.1)).f2)).all()
    with pytest.raises(NonFiniteError, match=r"eps=1e\+38.*use a smaller eps"):
        measure(toy_model, examples, AttackConfig(eps=1e38))


def test_check_finite_accepts_finite_values_only():
    check_finite(torch.tensor([1.0, -2.0]), "x")
    check_finite(3.0, "x")
    for bad in (torch.tensor([1.0, float("inf")]), float("nan")):
        with pytest.raises(NonFiniteError, match="non-finite x; hint"):
            check_finite(bad, "x", "hint")
