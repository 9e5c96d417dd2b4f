"""Adversarial training of model A (``train.adversarial_training``): the loss
is clean + weight * adversarial with the perturbation of ``vaa.attack``
against the gold label, nothing of the perturbation stays in the embedding
matrix, PGD stays in its ball, and ``none`` trains exactly as before."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TOY_LABELS, TOY_PAIRS, write_tiny_bert
from vaa.adversarial import AdversarialLoss
from vaa.cli import main
from vaa.config import OptimConfig, RunConfig, TrainConfig, apply_overrides
from vaa.data.batching import collate
from vaa.stage_one import train
from vaa.training import Trainer, TrainerSettings, read_jsonl


def _examples(model):
    return model.featurize_all(TOY_PAIRS, TOY_LABELS)


def _trainer(model, tmp_path, adversarial=None, **optim):
    settings = TrainerSettings(
        OptimConfig(batch_size=len(TOY_PAIRS), scheduler="none", **optim), tmp_path, dict, progress=False, adversarial=adversarial
    )
    examples = _examples(model)
    return Trainer(model, examples, examples, settings), examples


def _manual_l2_delta(model, batch, eps):
    """FGM written out by hand: eps * g / ||g|| per sentence (real tokens x
    dims), g = d CE_mean(A(E), gold) / dE."""
    emb = model.embed(batch)
    values = [v.detach().requires_grad_(True) for v in emb.values]
    loss = F.cross_entropy(model.classify(model.encode(emb.with_values(values))), batch["label"])
    grads = torch.autograd.grad(loss, values)
    out = []
    for g, (_, mask) in zip(grads, emb.groups):
        g = g * mask.unsqueeze(-1)
        norm = g.flatten(1).norm(dim=1).view(-1, 1, 1)
        out.append(eps * g / norm)
    return out


def _manual_total(model, batch, eps, weight):
    delta = _manual_l2_delta(model, batch, eps)
    emb = model.embed(batch)
    clean = F.cross_entropy(model.classify(model.encode(emb)), batch["label"])
    adv = F.cross_entropy(
        model.classify(model.encode(emb.with_values([v + d for v, d in zip(emb.values, delta)]))), batch["label"]
    )
    return clean + weight * adv, clean


def test_fgm_gradient_is_that_of_clean_plus_weighted_adversarial_loss(toy_model):
    cfg = TrainConfig(adversarial_training="fgm", adversarial_eps=0.7, adversarial_weight=0.5)
    batch = collate(_examples(toy_model))
    reference = copy.deepcopy(toy_model)
    total, clean = _manual_total(reference, batch, 0.7, 0.5)
    total.backward()

    adversary = AdversarialLoss(cfg)
    logits, emb = adversary.forward(toy_model, batch)
    F.cross_entropy(logits, batch["label"]).backward()
    delta = adversary.perturbation(toy_model, batch, emb, logits)
    adv = 0.5 * F.cross_entropy(adversary.perturbed_forward(toy_model, batch, delta), batch["label"])
    adv.backward()
    adv = adv.detach()
    assert float(adv) == pytest.approx(float((total - clean).detach()), rel=1e-5)
    assert float(adv) > 0
    for (name, p), q in zip(toy_model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    # and it is not the clean gradient alone
    plain = copy.deepcopy(reference)
    plain.zero_grad()
    clean_only, _ = _manual_total(plain, batch, 0.7, 0.0)
    clean_only.backward()
    assert not torch.allclose(plain.head[0].weight.grad, toy_model.head[0].weight.grad, atol=1e-4)


def test_trainer_step_with_fgm_reports_and_applies_the_defined_loss(toy_model, tmp_path):
    cfg = TrainConfig(adversarial_training="fgm", adversarial_eps=0.7, adversarial_weight=0.5)
    reference = copy.deepcopy(toy_model)
    trainer, examples = _trainer(toy_model, tmp_path, cfg, grad_clip=0.0)
    indices = trainer.batches.global_batches(0)[0]
    batch = collate([examples[i] for i in indices])
    total, _ = _manual_total(reference, batch, 0.7, 0.5)
    optimizer = torch.optim.Adam(reference.parameters(), lr=OptimConfig().lr)
    total.backward()
    optimizer.step()

    loss = trainer.train_step(indices)
    assert loss == pytest.approx(float(total.detach()), rel=1e-5)
    for (name, p), q in zip(toy_model.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_no_perturbation_stays_in_the_embedding_matrix(toy_model, tmp_path, method):
    trainer, _ = _trainer(toy_model, tmp_path, TrainConfig(adversarial_training=method, adversarial_eps=0.5))
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0  # the step itself moves nothing: whatever changed would be the perturbation
    before = toy_model.embedding.weight.detach().clone()
    trainer.train_step(trainer.batches.global_batches(0)[0])
    assert toy_model.embedding.weight.grad is not None and toy_model.embedding.weight.grad.abs().sum() > 0
    assert torch.equal(toy_model.embedding.weight.detach(), before)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_training_perturbation_stays_in_the_eps_ball(toy_model, norm):
    eps = 0.3
    adversary = AdversarialLoss(
        TrainConfig(
            adversarial_training="pgd",
            adversarial_norm=norm,
            adversarial_eps=eps,
            adversarial_steps=4,
            adversarial_step_ratio=2.5,
        )
    )
    batch = collate(_examples(toy_model))
    logits, emb = adversary.forward(toy_model, batch)
    F.cross_entropy(logits, batch["label"]).backward()
    delta = adversary.perturbation(toy_model, batch, emb, logits)
    for d, (_, mask) in zip(delta, emb.groups):
        assert (d[~mask] == 0).all()  # padding untouched
        if norm == "l2":
            norms = (d * mask.unsqueeze(-1)).flatten(1).norm(dim=1)
            assert (norms <= eps * (1 + 1e-5)).all() and (norms > 0.5 * eps).all()
        else:
            assert d.abs().max() <= eps + 1e-7 and d.abs().max() > 0.5 * eps


def test_none_trains_exactly_as_plain_cross_entropy(tiny_config, tmp_path):
    """``none`` (the default) is the plain step, bit for bit: forward,
    mean cross-entropy, backward, clip at 10, Adam, with the same RNG draws
    (ESIM's dropout)."""
    from vaa.data.sources import load_splits
    from vaa.models import build_model

    splits = load_splits(tiny_config.data)

    def fresh():
        torch.manual_seed(0)
        return build_model("esim", splits.train.pairs, splits.label_map, seed=0, hidden=8, dropout=0.5)

    model = fresh()
    examples = model.featurize_all(splits.train.pairs, splits.label_map)
    settings = TrainerSettings.for_run(tiny_config, tmp_path / "run", dict, adversarial=tiny_config.train)
    assert tiny_config.train.adversarial_training == "none"
    trainer = Trainer(model, examples, examples, settings)
    reference = fresh()
    params = [p for p in reference.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=tiny_config.optim.lr)
    batches = trainer.batches.global_batches(0)[:3]
    torch.manual_seed(1)
    model.train()
    losses = [trainer.train_step(ix) for ix in batches]
    torch.manual_seed(1)
    reference.train()
    expected = []
    for ix in batches:
        batch = collate([examples[i] for i in ix])
        loss = F.cross_entropy(reference(batch).float(), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        expected.append(float(loss.detach()))
    assert losses == expected
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), name


def test_stage_one_with_fgm_and_pgd_trains_and_records_the_setting(tiny_config):
    plain = train(tiny_config)
    for method in ("fgm", "pgd"):
        config = apply_overrides(
            tiny_config,
            {"train": {"adversarial_training": method, "adversarial_eps": 0.5}, "output": tiny_config.output + "-" + method},
        )
        results = train(config)
        assert RunConfig.load(f"{config.output}/config.json").train.adversarial_training == method
        # the logged training loss includes the adversarial term: larger than the clean run's in the first batches
        first = read_jsonl(f"{config.output}/loss.jsonl")[0]["loss"]
        assert first > read_jsonl(f"{tiny_config.output}/loss.jsonl")[0]["loss"]
        assert results["scores"]["valid"]["pairs"] == plain["scores"]["valid"]["pairs"]
        assert f"adversarial training: {method} on the word embeddings" in (Path(config.output) / "README.md").read_text()
    assert "adversarial training" not in (Path(tiny_config.output) / "README.md").read_text()


def test_hf_family_trains_adversarially(tmp_path):
    pytest.importorskip("transformers")
    from vaa.models.hf import HFPairModel

    folder = write_tiny_bert(tmp_path / "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(folder), max_length=16)
    trainer, _ = _trainer(
        model, tmp_path / "run", TrainConfig(adversarial_training="pgd", adversarial_eps=0.1, adversarial_steps=2)
    )
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0
    words_matrix = model.encoder.get_input_embeddings().weight
    before = words_matrix.detach().clone()
    loss = trainer.train_step(trainer.batches.global_batches(0)[0])
    assert loss > 0 and words_matrix.grad.abs().sum() > 0
    assert torch.equal(words_matrix.detach(), before)


def test_bad_values_and_stage_two_use_are_one_line_errors(tiny_config, tmp_path, capsys):
    assert main(["train", "--adversarial-training", "freelb", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.adversarial_training='freelb'" in err and "fgm" in err and len(err.splitlines()) == 1
    assert main(["train", "--adversarial-training", "pgd", "--adv-steps", "1", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.adversarial_steps" in err and len(err.splitlines()) == 1
    assert (
        main(
            [
                "train-vaa",
                "--preset",
                "esim-vaa",
                "--model-a",
                str(tmp_path / "none"),
                "--set",
                "train.adversarial_training=fgm",
                "--output",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "stage-one option" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()
