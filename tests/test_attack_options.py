"""Attack options beyond the paper's FGSM: PGD, targeted attacks, the
matched random control."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import TOY_PAIRS, tiny_esim, toy_batch
from vaa.attack import forward_embedded, forward_with_gradient, perturbation, pgd_perturbation, validate
from vaa.config import AttackConfig


def _norms(steps):
    return [s.flatten(1).norm(dim=1) for s in steps]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_pgd_step_is_fgsm(norm):
    model = tiny_esim()
    base = forward_with_gradient(model, toy_batch(model))
    fgsm = perturbation(base, AttackConfig(norm=norm, eps=0.07))
    pgd = pgd_perturbation(base, AttackConfig(norm=norm, eps=0.07, steps=1, step_ratio=2.5))
    for f, p in zip(fgsm, pgd):
        torch.testing.assert_close(p, f, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm,relative", [("linf", False), ("l2", False), ("l2", True), ("linf", True)])
def test_pgd_stays_in_the_eps_ball_and_goes_further_than_fgsm(norm, relative):
    model = tiny_esim()
    base = forward_with_gradient(model, toy_batch(model))
    eps = 0.3 if relative else 0.4
    cfg = AttackConfig(norm=norm, eps=eps, steps=5, relative=relative)
    steps = perturbation(base, cfg)
    fgsm = perturbation(base, dataclasses.replace(cfg, steps=1))
    for (_, mask), s, f in zip(base.emb.groups, steps, fgsm):
        assert (s[~mask] == 0).all()
        if norm == "linf":  # every entry within the (per-sentence) eps of FGSM's own step size
            assert (s.abs().amax(dim=(1, 2)) <= f.abs().amax(dim=(1, 2)) + 1e-6).all()
        else:
            assert (s.flatten(1).norm(dim=1) <= f.flatten(1).norm(dim=1) + 1e-5).all()

    # PGD is a stronger attack: A's loss against y_pred after PGD >= after FGSM (summed over the batch)
    def loss(st):
        logits, _ = forward_embedded(model, base.emb.with_values([v + x for v, x in zip(base.emb.values, st)]))
        return torch.nn.functional.cross_entropy(logits, base.predicted, reduction="sum").item()

    assert loss(steps) >= loss(fgsm) - 1e-6
    assert not all(torch.allclose(s, f) for s, f in zip(steps, fgsm))


def test_targeted_step_descends_the_target_loss_on_the_toy_model(toy_model):
    batch = toy_batch(toy_model)
    for target in (0, 1):
        base = forward_with_gradient(toy_model, batch, target=target)
        steps = perturbation(base, AttackConfig(norm="l2", eps=0.5, target=target))
        # closed form: dCE(O, c)/dE_a = (1/len_a) W_a^T (softmax(O) - onehot(c)); the step is -eps g/||g||
        logits = toy_model(batch)
        p = torch.softmax(logits, -1)
        onehot = torch.nn.functional.one_hot(torch.full((len(TOY_PAIRS),), target), 2).float()
        w, d = toy_model.head[0].weight, toy_model.embedding_dim
        for k, (step, mask) in enumerate(zip(steps, base.emb.masks)):
            g = ((p - onehot) @ w[:, k * d : (k + 1) * d]).unsqueeze(1) / mask.sum(1).view(-1, 1, 1) * mask.unsqueeze(-1)
            want = -0.5 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1)
            torch.testing.assert_close(step, want.detach(), rtol=1e-5, atol=1e-6)
        adv, _ = forward_embedded(toy_model, base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)]))
        assert (torch.softmax(adv, -1)[:, target] > p[:, target]).all()


def test_targeted_config_retargets_a_plain_pass(toy_model):
    batch = toy_batch(toy_model)
    plain = forward_with_gradient(toy_model, batch)
    cfg = AttackConfig(norm="linf", eps=0.1, target=1)
    via_plain = perturbation(plain, cfg)
    direct = perturbation(forward_with_gradient(toy_model, batch, target=1), cfg)
    for a, b in zip(via_plain, direct):
        torch.testing.assert_close(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(via_plain, perturbation(plain, AttackConfig(norm="linf", eps=0.1))))


def test_matched_random_direction_moves_v_as_far_as_fgsm():
    model = tiny_esim()
    base = forward_with_gradient(model, toy_batch(model))
    cfg = AttackConfig(norm="l2", eps=0.2)

    def distance(st):
        _, hidden = forward_embedded(model, base.emb.with_values([v + s for v, s in zip(base.emb.values, st)]))
        return (hidden - base.hidden).norm(dim=-1)

    fgsm, plain_random = perturbation(base, cfg), perturbation(base, dataclasses.replace(cfg, direction="random"))
    matched = perturbation(base, dataclasses.replace(cfg, direction="random-matched"))
    torch.testing.assert_close(distance(matched), distance(fgsm), rtol=2e-2, atol=1e-6)
    assert not torch.allclose(distance(plain_random), distance(fgsm), rtol=2e-2)
    for m, r in zip(matched, plain_random):  # the same random direction, only rescaled
        cos = torch.nn.functional.cosine_similarity(m.flatten(1), r.flatten(1), dim=1)
        torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-5)


def test_toy_model_matched_random_is_exact_after_one_rescaling(toy_model):
    """The toy's V is linear in E, so one rescaling matches exactly."""
    base = forward_with_gradient(toy_model, toy_batch(toy_model))
    cfg = AttackConfig(norm="l2", eps=0.3)
    fgsm = perturbation(base, cfg)
    matched = perturbation(base, dataclasses.replace(cfg, direction="random-matched"))
    d = lambda st: (
        forward_embedded(toy_model, base.emb.with_values([v + s for v, s in zip(base.emb.values, st)]))[1] - base.hidden
    ).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(d(matched), d(fgsm), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 3, "direction": "random"}, "fgsm"),
        ({"target": 1, "direction": "random"}, "targeted"),
        ({"step_ratio": 0.0}, "step_ratio"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_bad_attack_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        validate(AttackConfig(**bad))
