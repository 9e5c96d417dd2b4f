"""FGSM on word embeddings (paper eq. 4 and 5), as pure functions.

The attack is split in two so that a sweep over many (norm, eps) settings pays
for model A's normal forward pass and its input gradient once:

    base = forward_with_gradient(model, batch)      # O, V1, dJ/dE, y_pred
    emb_adv = perturb(base, cfg)                    # E~ = E + step
    logits_adv, hidden_adv = forward_embedded(model, emb_adv)   # O~, V2

The loss is the cross-entropy against A's *predicted* label, summed over the
batch, so each pair's gradient is its own (a batch-mean loss would scale it by
1/batch size) and does not depend on the other pairs in the batch. Gradients
are taken with respect to E only: A's parameters never receive a gradient.

Step sizes
- ``l2`` (eq. 5): step = eps * g / ||g||_2, the norm taken per sample over the
  real tokens x dims of each sentence (the authors' choice; ``scope="pair"``
  uses one norm over both sentences). A zero gradient gives a zero step.
- ``linf`` (eq. 4): step = eps * sign(g) on real tokens.
- ``relative=True``: eps is a fraction of the sentence's own embedding scale
  (its L2 norm for ``l2``, its mean absolute entry for ``linf``), so one setting
  means the same for GloVe 50-d, GloVe 300-d and BERT.
- ``direction="random"``: a control with the same norm as the FGSM step but a
  random direction (Gaussian for l2, random signs for linf), drawn per pair
  from (seed, pair index, sentence) so that it does not depend on the batch.
- ``direction="random-matched"``: the random direction rescaled per pair so
  that ||V1 - V2|| equals the FGSM step's (a random step of the same *norm*
  barely moves V: without this the random control is in effect V2 = V1).
Padding and special tokens stay untouched.

Beyond FGSM (options; the defaults are the paper's single step):
- ``steps=k > 1``: PGD. k steps of size ``step_ratio * eps / k`` (the same
  normalisation as FGSM: sign for linf, unit L2 per sentence or pair), each
  followed by a projection back into the eps ball. A single PGD step whose size
  is at least eps, projected, is exactly FGSM (tested).
- ``target=c >= 0``: a targeted attack that *descends* CE(A(E~), c): it pushes
  the pair toward class c ("how easy is it to make this a contradiction").

Precision: the attack always runs in fp32, also inside a bf16/fp16 autocast
region (:func:`vaa.device.full_precision`): a half-precision input gradient
has about three significant digits, too coarse for an L2 step of 0.02, and
V1/V2 would change with the precision setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import DIRECTIONS, NORMS, SCOPES, AttackConfig  # noqa: F401  (the choices live in config.py; re-exported)
from .data.batching import Batch
from .device import full_precision
from .models.base import Embedded, PairModel

MATCH_ITERATIONS = 3  # rescalings of the matched random step (exact after one for a model linear in E)


@dataclass
class BasePass:
    """Model A's normal pass on a batch and the input gradient."""

    emb: Embedded  # E (detached)
    logits: torch.Tensor  # O
    hidden: torch.Tensor | None  # V1 = A^-(E); None in adversarial training's pass (its gradient directions never read it)
    grads: list[torch.Tensor]  # dJ(A(E), y_pred)/dE, one per tensor of E
    predicted: torch.Tensor  # y_pred
    index: torch.Tensor  # each pair's index in its dataset (seeds the random-direction control)
    labels: torch.Tensor | None = None  # the labels of the attack loss (y_pred, or the target class)
    targeted: bool = False  # True: the step descends CE(., labels) instead of ascending it
    model: PairModel | None = None  # A itself: multi-step and matched attacks need more passes


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run in eval mode (no dropout: the attack must be deterministic) with
    A's parameters excluded from autograd, and restore both afterwards.

    Excluding the parameters guarantees that no gradient reaches A, and it
    spares the backward pass the weight gradients nobody needs (a third of
    its work)."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def validate(cfg: AttackConfig) -> None:
    """Check the settings again (a config object is checked when built, but
    its attributes can be changed afterwards); every rule, combinations
    included, lives in config.py."""
    dataclasses.replace(cfg)


def _loss_gradient(
    model: PairModel, emb: Embedded, labels: torch.Tensor | None
) -> tuple[Embedded, torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(E, V, O, dJ/dE, labels) at embeddings ``emb``, J = CE(O, labels)
    summed; labels default to the prediction at ``emb``. Always fp32."""
    with eval_mode(model), torch.enable_grad(), full_precision(emb.values[0].device):
        values = [v.detach().requires_grad_(True) for v in emb.values]
        emb = emb.with_values(values)
        hidden = model.encode(emb)
        logits = model.classify(hidden)
        if labels is None:
            labels = logits.argmax(-1)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        grads = torch.autograd.grad(loss, values)
    return (
        emb.with_values([v.detach() for v in values]),
        hidden.detach(),
        logits.detach(),
        [g.detach() for g in grads],
        labels.detach(),
    )


def forward_with_gradient(
    model: PairModel, batch: Batch, target: torch.Tensor | int | None = None, labels: torch.Tensor | None = None
) -> BasePass:
    """A's normal forward pass and dJ/dE for J = CE(A(E), y_pred) summed, or,
    with ``target`` (a class index or one per pair), J = CE(A(E), target)
    (a targeted attack), or, with ``labels``, the untargeted J = CE(A(E),
    labels): the attack away from the *gold* label that robust accuracy and
    adversarial training use (``vaa.robustness``, ``vaa.adversarial``)."""
    if target is not None and labels is not None:
        raise ValueError("give a target class (targeted attack) or labels to attack away from, not both")
    with eval_mode(model), torch.no_grad(), full_precision(batch["label"].device):
        emb = model.embed(batch)
    index = batch["index"] if "index" in batch else None
    if target is not None:
        size, device = emb.values[0].shape[0], emb.values[0].device
        labels = (
            torch.full((size,), int(target), dtype=torch.long, device=device)
            if isinstance(target, int)
            else target.long().to(device)
        )
    return embedded_pass(model, emb, labels, targeted=target is not None, index=index)


def embedded_pass(
    model: PairModel, emb: Embedded, labels: torch.Tensor | None = None, targeted: bool = False, index: torch.Tensor | None = None
) -> BasePass:
    """:func:`forward_with_gradient` from embeddings that are already looked
    up (a perturbed E, or a model whose "embeddings" feed more than A, as in
    the stage-two threat model of ``vaa.robustness``)."""
    emb, hidden, logits, grads, labels = _loss_gradient(model, emb, labels.long() if labels is not None else None)
    return BasePass(
        emb=emb,
        logits=logits,
        hidden=hidden,
        grads=grads,
        predicted=logits.argmax(-1),
        index=index if index is not None else torch.arange(logits.shape[0], device=logits.device),
        labels=labels,
        targeted=targeted,
        model=model,
    )


def retarget(base: BasePass, target: int) -> BasePass:
    """The same pass with the gradient of CE(A(E), target): one backward,
    reusing E (a targeted attack toward each class needs n of them)."""
    if base.model is None:
        raise ValueError("retarget needs the BasePass of forward_with_gradient (it carries model A)")
    labels = torch.full_like(base.predicted, int(target))
    _, _, _, grads, _ = _loss_gradient(base.model, base.emb, labels)
    return BasePass(
        emb=base.emb,
        logits=base.logits,
        hidden=base.hidden,
        grads=grads,
        predicted=base.predicted,
        index=base.index,
        labels=labels,
        targeted=True,
        model=base.model,
    )


def gradient_norms(base: BasePass) -> torch.Tensor:
    """||dJ/dE|| per pair and sentence ([B, groups]), over real tokens x dims."""
    return torch.stack([_sq_norm(base.grads[t] * m.unsqueeze(-1).to(base.grads[t].dtype)).sqrt() for t, m in base.emb.groups], 1)


def token_saliency(base: BasePass) -> list[torch.Tensor]:
    """Per tensor of E, ||dJ/dE_t|| per position ([B, L]; zero outside real words)."""
    out = [torch.zeros(v.shape[:2], dtype=v.dtype, device=v.device) for v in base.emb.values]
    for t, m in base.emb.groups:
        out[t] = out[t] + base.grads[t].norm(dim=-1) * m.to(out[t].dtype)
    return out


def forward_embedded(model: PairModel, emb: Embedded) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last hidden vector) of A on given embeddings, without gradient (fp32)."""
    with eval_mode(model), torch.no_grad(), full_precision(emb.values[0].device):
        hidden = model.encode(emb)
        return model.classify(hidden), hidden


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).flatten(1).sum(1)


def random_direction(
    like: torch.Tensor, mask: torch.Tensor, index: torch.Tensor, seed: int, group: int, norm: str
) -> torch.Tensor:
    """A random direction on each pair's real positions, drawn from a
    generator seeded by (seed, pair index, sentence): the same for a pair
    whatever batch it is in (so cached and on-the-fly V2 agree)."""
    out = torch.zeros_like(like)
    for row, pair in enumerate(index.tolist()):
        positions = mask[row].nonzero().squeeze(1)
        rng = np.random.default_rng([seed, pair, group])
        shape = (positions.numel(), like.shape[-1])
        draw = RANDOM_DRAWS[norm](rng, shape)
        out[row, positions] = torch.from_numpy(draw).to(device=like.device, dtype=like.dtype)
    return out


def perturbation(base: BasePass, cfg: AttackConfig) -> list[torch.Tensor]:
    """The step added to each tensor of E (zero outside real word positions):
    FGSM (the paper), PGD for ``steps > 1``, the random controls."""
    validate(cfg)
    if cfg.target >= 0 and not (base.targeted and bool((base.labels == cfg.target).all())):
        base = retarget(base, cfg.target)
    if cfg.steps > 1:
        return pgd_perturbation(base, cfg)
    return DIRECTIONS_STEP[cfg.direction](base, cfg)


def _single_step(base: BasePass, cfg: AttackConfig, grads: list[torch.Tensor], size: float = 1.0) -> list[torch.Tensor]:
    """One step of size ``size * eps`` in the FGSM (or random) direction of
    ``grads``; a targeted attack steps against the gradient."""
    values = base.emb.values
    steps = [torch.zeros_like(v) for v in values]
    # The direction of the step, restricted to each group's real tokens.
    directions: list[torch.Tensor] = []
    for k, (t, mask) in enumerate(base.emb.groups):
        if cfg.direction == "fgsm":
            sign = -1.0 if base.targeted else 1.0
            directions.append(sign * grads[t] * mask.unsqueeze(-1).to(values[t].dtype))
        else:
            directions.append(random_direction(values[t], mask, base.index, cfg.seed, k, cfg.norm))

    if cfg.norm == "linf":
        for (t, mask), d in zip(base.emb.groups, directions):
            eps = size * _eps(cfg, values[t], mask)
            steps[t] = steps[t] + eps.view(-1, 1, 1) * torch.sign(d)
        return steps

    norms = torch.stack([_sq_norm(d) for d in directions])  # [groups, B]
    if cfg.scope == "pair":
        norms = norms.sum(0, keepdim=True).expand_as(norms)
    norms = norms.sqrt()
    for k, ((t, mask), d) in enumerate(zip(base.emb.groups, directions)):
        eps = size * (_eps(cfg, values[t], mask) if cfg.scope == "sentence" else _pair_eps(cfg, base.emb))
        safe = torch.where(norms[k] > 0, norms[k], torch.ones_like(norms[k]))
        scale = torch.where(norms[k] > 0, eps / safe, torch.zeros_like(safe))
        steps[t] = steps[t] + scale.view(-1, 1, 1) * d
    return steps


def _eps(cfg: AttackConfig, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample step size for one sentence: eps, or eps x its own scale."""
    batch = value.shape[0]
    if not cfg.relative:
        return torch.full((batch,), float(cfg.eps), dtype=value.dtype, device=value.device)
    masked = value * mask.unsqueeze(-1).to(value.dtype)
    if cfg.norm == "l2":
        return cfg.eps * _sq_norm(masked).sqrt()
    entries = (mask.sum(1) * value.shape[-1]).clamp(min=1).to(value.dtype)
    return cfg.eps * masked.abs().flatten(1).sum(1) / entries


def _pair_eps(cfg: AttackConfig, emb: Embedded) -> torch.Tensor:
    """Per-sample step size when one L2 norm covers the whole pair."""
    if not cfg.relative:
        return torch.full((emb.values[0].shape[0],), float(cfg.eps), dtype=emb.values[0].dtype, device=emb.values[0].device)
    total = sum(_sq_norm(emb.values[t] * m.unsqueeze(-1).to(emb.values[t].dtype)) for t, m in emb.groups)
    return cfg.eps * total.sqrt()


def project(base: BasePass, cfg: AttackConfig, delta: list[torch.Tensor]) -> list[torch.Tensor]:
    """Project a perturbation into the eps ball: entry-wise clipping (linf),
    or rescaling to norm eps per sentence or per pair (l2)."""
    values = base.emb.values
    out = [d.clone() for d in delta]
    if cfg.norm == "linf":
        for t, mask in base.emb.groups:
            eps = _eps(cfg, values[t], mask).view(-1, 1, 1)
            real = mask.unsqueeze(-1)
            out[t] = torch.where(real, torch.maximum(torch.minimum(out[t], eps), -eps), out[t])
        return out
    norms = torch.stack([_sq_norm(delta[t] * m.unsqueeze(-1).to(delta[t].dtype)) for t, m in base.emb.groups])
    if cfg.scope == "pair":
        norms = norms.sum(0, keepdim=True).expand_as(norms)
    norms = norms.sqrt()
    for k, (t, mask) in enumerate(base.emb.groups):
        eps = _eps(cfg, values[t], mask) if cfg.scope == "sentence" else _pair_eps(cfg, base.emb)
        factor = torch.where(norms[k] > eps, eps / norms[k].clamp(min=1e-30), torch.ones_like(norms[k]))
        real = mask.unsqueeze(-1).to(out[t].dtype)
        out[t] = out[t] * (1 - real) + out[t] * real * factor.view(-1, 1, 1)
    return out


def pgd_perturbation(base: BasePass, cfg: AttackConfig) -> list[torch.Tensor]:
    """Projected gradient descent: ``cfg.steps`` steps of size
    ``step_ratio * eps / steps``, each projected into the eps ball, the loss
    taken against the same labels as the first step (y_pred or the target)."""
    if base.model is None:
        raise ValueError("a multi-step attack needs the BasePass of forward_with_gradient (it carries model A)")
    size = cfg.step_ratio / cfg.steps
    delta = project(base, cfg, _single_step(base, cfg, base.grads, size))
    for _ in range(cfg.steps - 1):
        emb = base.emb.with_values([v + d for v, d in zip(base.emb.values, delta)])
        _, _, _, grads, _ = _loss_gradient(base.model, emb, base.labels)
        step = _single_step(base, cfg, grads, size)
        delta = project(base, cfg, [d + s for d, s in zip(delta, step)])
    return delta


def matched_random_perturbation(base: BasePass, cfg: AttackConfig) -> list[torch.Tensor]:
    """A random direction per pair, rescaled so that ||V1 - V2|| equals the
    FGSM step's at the same eps (a few multiplicative corrections, since A^-
    is not linear)."""
    if base.model is None:
        raise ValueError("the matched random control needs the BasePass of forward_with_gradient (it carries model A)")
    import dataclasses

    fgsm = _single_step(base, dataclasses.replace(cfg, direction="fgsm"), base.grads)
    _, hidden_fgsm = forward_embedded(base.model, base.emb.with_values([v + s for v, s in zip(base.emb.values, fgsm)]))
    wanted = (hidden_fgsm - base.hidden).norm(dim=-1)
    steps = _single_step(base, dataclasses.replace(cfg, direction="random"), base.grads)
    for _ in range(MATCH_ITERATIONS):
        _, hidden = forward_embedded(base.model, base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)]))
        got = (hidden - base.hidden).norm(dim=-1)
        factor = torch.where(got > 0, wanted / got.clamp(min=1e-30), torch.zeros_like(got)).view(-1, 1, 1)
        steps = [s * factor for s in steps]
    return steps


def perturb(base: BasePass, cfg: AttackConfig) -> Embedded:
    """E~ = E + step."""
    steps = perturbation(base, cfg)
    return base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)])


def attack(model: PairModel, batch: Batch, cfg: AttackConfig) -> tuple[BasePass, Embedded, torch.Tensor, torch.Tensor]:
    """The whole attack on one batch: (base pass, E~, O~, V2)."""
    base = forward_with_gradient(model, batch)
    emb_adv = perturb(base, cfg)
    logits_adv, hidden_adv = forward_embedded(model, emb_adv)
    return base, emb_adv, logits_adv, hidden_adv


# The attack's choices as tables (their names are config.DIRECTIONS and config.NORMS;
# tests/test_attack_registry.py keeps the two in step): how a one-step attack of
# each direction is made, and how the random controls draw a direction under each norm.
DIRECTIONS_STEP: dict[str, Callable[[BasePass, AttackConfig], list[torch.Tensor]]] = {
    "fgsm": lambda base, cfg: _single_step(base, cfg, base.grads),
    "random": lambda base, cfg: _single_step(base, cfg, base.grads),  # _single_step draws random_direction
    "random-matched": matched_random_perturbation,
}
RANDOM_DRAWS: dict[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]] = {
    "l2": lambda rng, shape: rng.standard_normal(shape),  # Gaussian: uniform over directions
    "linf": lambda rng, shape: rng.choice([-1.0, 1.0], size=shape),  # random signs: a corner of the cube
}
