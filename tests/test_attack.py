"""FGSM on word embeddings: direction, norms, batch independence, safety."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TOY_PAIRS, tiny_esim, toy_batch
from vaa.attack import attack, forward_with_gradient, perturbation
from vaa.config import AttackConfig
from vaa.vulnerability import criteria


def analytic_grads(model, batch):
    """dJ/dE for the toy model, J = CE(logits, argmax logits)."""
    emb = model.embed(batch)
    logits = model(batch)
    p = torch.softmax(logits, -1)
    y = torch.nn.functional.one_hot(logits.argmax(-1), model.num_labels).float()
    w = model.head[0].weight  # [n, 2d]
    d = model.embedding_dim
    grads = []
    for k, mask in enumerate(emb.masks):
        per_sample = (p - y) @ w[:, k * d : (k + 1) * d]  # [B, d]
        g = per_sample.unsqueeze(1) / mask.sum(1).view(-1, 1, 1) * mask.unsqueeze(-1)
        grads.append(g.detach())
    return grads


def test_gradient_matches_closed_form(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    for got, want in zip(base.grads, analytic_grads(toy_model, batch)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_l2_step_is_eps_times_unit_gradient_per_sentence(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    steps = perturbation(base, AttackConfig(norm="l2", eps=0.3))
    for step, g in zip(steps, analytic_grads(toy_model, batch)):
        norms = g.flatten(1).norm(dim=1).view(-1, 1, 1)
        torch.testing.assert_close(step, 0.3 * g / norms, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(step.flatten(1).norm(dim=1), torch.full((len(TOY_PAIRS),), 0.3), rtol=1e-5, atol=1e-6)


def test_linf_step_is_eps_times_sign_on_real_tokens(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    steps = perturbation(base, AttackConfig(norm="linf", eps=0.05))
    for step, g, mask in zip(steps, analytic_grads(toy_model, batch), base.emb.masks):
        torch.testing.assert_close(step, 0.05 * torch.sign(g))
        assert (step[~mask] == 0).all()  # padding untouched


def test_pair_scope_uses_one_norm_over_both_sentences(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    steps = perturbation(base, AttackConfig(norm="l2", eps=0.2, scope="pair"))
    total = torch.sqrt(sum(s.pow(2).flatten(1).sum(1) for s in steps))
    torch.testing.assert_close(total, torch.full((len(TOY_PAIRS),), 0.2), rtol=1e-5, atol=1e-6)
    ga, gb = analytic_grads(toy_model, batch)
    joint = torch.sqrt(ga.pow(2).flatten(1).sum(1) + gb.pow(2).flatten(1).sum(1)).view(-1, 1, 1)
    torch.testing.assert_close(steps[0], 0.2 * ga / joint, rtol=1e-5, atol=1e-7)


def test_relative_eps_scales_with_the_sentence(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    steps = perturbation(base, AttackConfig(norm="l2", eps=0.1, relative=True))
    for step, e in zip(steps, base.emb.values):
        want = 0.1 * e.flatten(1).norm(dim=1)  # padding rows of E are zero
        torch.testing.assert_close(step.flatten(1).norm(dim=1), want, rtol=1e-5, atol=1e-6)
    steps = perturbation(base, AttackConfig(norm="linf", eps=0.1, relative=True))
    for step, e, m in zip(steps, base.emb.values, base.emb.masks):
        mean_abs = e.abs().flatten(1).sum(1) / (m.sum(1) * e.shape[-1])
        got = step.abs().amax(dim=(1, 2))
        torch.testing.assert_close(got, 0.1 * mean_abs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_zero_gradient_leaves_embeddings_unchanged(toy_model, norm):
    with torch.no_grad():
        toy_model.head[0].weight.zero_()
    batch = toy_batch(toy_model)
    base, emb_adv, logits_adv, hidden_adv = attack(toy_model, batch, AttackConfig(norm=norm, eps=0.5))
    for before, after in zip(base.emb.values, emb_adv.values):
        assert torch.isfinite(after).all()
        torch.testing.assert_close(after, before)
    torch.testing.assert_close(hidden_adv, base.hidden)


def test_no_gradient_reaches_model_parameters(toy_model):
    attack(toy_model, toy_batch(toy_model), AttackConfig())
    assert all(p.grad is None for p in toy_model.parameters())


def test_attack_runs_in_eval_mode_and_restores_training_mode(toy_model):
    toy_model.train()
    seen = []
    original = toy_model.encode
    toy_model.encode = lambda emb: (seen.append(toy_model.training), original(emb))[1]
    attack(toy_model, toy_batch(toy_model), AttackConfig())
    assert seen and not any(seen)
    assert toy_model.training


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_per_sample_step_does_not_depend_on_the_batch(norm):
    model = tiny_esim()
    cfg = AttackConfig(norm=norm, eps=0.1)
    full = toy_batch(model)
    full_steps = perturbation(forward_with_gradient(model, full), cfg)
    for i, pair in enumerate(TOY_PAIRS):
        single = toy_batch(model, [pair])
        steps = perturbation(forward_with_gradient(model, single), cfg)
        for s_full, s_one, mask in zip(full_steps, steps, (single["a_ids_mask"], single["b_ids_mask"])):
            n = int(mask.sum())
            torch.testing.assert_close(s_full[i, :n], s_one[0, :n], rtol=1e-4, atol=1e-6)
            assert (s_full[i, n:] == 0).all()


def test_random_direction_has_the_same_norm_but_another_direction(toy_model):
    batch = toy_batch(toy_model)
    base = forward_with_gradient(toy_model, batch)
    fgsm = perturbation(base, AttackConfig(norm="l2", eps=0.2))
    rand = perturbation(base, AttackConfig(norm="l2", eps=0.2, direction="random", seed=1))
    for f, r, m in zip(fgsm, rand, base.emb.masks):
        torch.testing.assert_close(r.flatten(1).norm(dim=1), f.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
        assert (r[~m] == 0).all()
        cos = torch.nn.functional.cosine_similarity(f.flatten(1), r.flatten(1), dim=1)
        assert (cos.abs() < 0.999).all()


def test_criteria_on_hand_computed_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logits_adv = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    f1, f2 = criteria(logits, logits_adv)
    # pair 0: phi = softmax([2, 0]); psi = [0.5, 0.5] -> F1 = log 2, F2 = log 2
    assert f1[0].item() == pytest.approx(math.log(2))
    assert f2[0].item() == pytest.approx(math.log(2))
    # a case where F1 and F2 differ: psi = softmax([3, 0])
    phi = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    psi = torch.softmax(torch.tensor([3.0, 0.0]), 0)
    f1, f2 = criteria(torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]]))
    assert f1.item() == pytest.approx(-(phi * psi.log()).sum().item(), rel=1e-6)
    assert f2.item() == pytest.approx(-math.log(psi[0].item()), rel=1e-6)
    # no change of output -> F2 is the entropy term of the predicted class only
    f1, f2 = criteria(torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 2.0]]))
    p = torch.softmax(torch.tensor([0.0, 2.0]), 0)
    assert f2.item() == pytest.approx(-math.log(p[1].item()), rel=1e-6)
    assert f1.item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_direction_does_not_depend_on_the_batch(toy_model, norm):
    cfg = AttackConfig(norm=norm, eps=0.2, direction="random", seed=3)
    full = perturbation(forward_with_gradient(toy_model, toy_batch(toy_model)), cfg)
    for i, pair in enumerate(TOY_PAIRS):
        single = toy_batch(toy_model, [pair])
        single["index"] = torch.tensor([i])  # the pair's index in its dataset
        steps = perturbation(forward_with_gradient(toy_model, single), cfg)
        for s_full, s_one in zip(full, steps):
            n = s_one.shape[1]
            torch.testing.assert_close(s_full[i, :n], s_one[0], rtol=1e-5, atol=1e-7)
    other_seed = perturbation(
        forward_with_gradient(toy_model, toy_batch(toy_model)), AttackConfig(norm=norm, eps=0.2, direction="random", seed=4)
    )
    assert not torch.allclose(other_seed[0], full[0])
