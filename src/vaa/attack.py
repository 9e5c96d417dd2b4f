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
Padding and special tokens stay untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .config import DIRECTIONS, NORMS, SCOPES, AttackConfig  # noqa: F401  (the choices live in config.py; re-exported)
from .data.batching import Batch
from .models.base import Embedded, PairModel



@dataclass
class BasePass:
    """Model A's normal pass on a batch and the input gradient."""

    emb: Embedded  # E (detached)
    logits: torch.Tensor  # O
    hidden: torch.Tensor  # V1 = A^-(E)
    grads: list[torch.Tensor]  # dJ(A(E), y_pred)/dE, one per tensor of E
    predicted: torch.Tensor  # y_pred
    index: torch.Tensor  # each pair's index in its dataset (seeds the random-direction control)


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
        # cuDNN's RNN backward refuses eval mode; the native kernels do not.
        with torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def validate(cfg: AttackConfig) -> None:
    """Check the settings again (a config object is checked when built, but
    its attributes can be changed afterwards); the rules live in config.py."""
    dataclasses.replace(cfg)


def forward_with_gradient(model: PairModel, batch: Batch) -> BasePass:
    """A's normal forward pass and dJ/dE for J = CE(A(E), y_pred) summed."""
    with eval_mode(model), torch.enable_grad():
        emb = model.embed(batch)
        values = [v.detach().requires_grad_(True) for v in emb.values]
        emb = emb.with_values(values)
        hidden = model.encode(emb)
        logits = model.classify(hidden)
        predicted = logits.argmax(-1)
        loss = F.cross_entropy(logits, predicted, reduction="sum")
        grads = torch.autograd.grad(loss, values)
    return BasePass(
        emb=emb.with_values([v.detach() for v in values]), logits=logits.detach(), hidden=hidden.detach(),
        grads=[g.detach() for g in grads], predicted=predicted.detach(),
        index=batch["index"] if "index" in batch else torch.arange(predicted.shape[0]),
    )


def forward_embedded(model: PairModel, emb: Embedded) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last hidden vector) of A on given embeddings, without gradient."""
    with eval_mode(model), torch.no_grad():
        hidden = model.encode(emb)
        return model.classify(hidden), hidden


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).flatten(1).sum(1)


def random_direction(like: torch.Tensor, mask: torch.Tensor, index: torch.Tensor, seed: int, group: int, norm: str) -> torch.Tensor:
    """A random direction on each pair's real positions, drawn from a
    generator seeded by (seed, pair index, sentence): the same for a pair
    whatever batch it is in (so cached and on-the-fly V2 agree)."""
    out = torch.zeros_like(like)
    for row, pair in enumerate(index.tolist()):
        positions = mask[row].nonzero().squeeze(1)
        rng = np.random.default_rng([seed, pair, group])
        shape = (positions.numel(), like.shape[-1])
        draw = rng.standard_normal(shape) if norm == "l2" else rng.choice([-1.0, 1.0], size=shape)
        out[row, positions] = torch.from_numpy(draw).to(like.dtype)
    return out


def perturbation(base: BasePass, cfg: AttackConfig) -> list[torch.Tensor]:
    """The step added to each tensor of E (zero outside real word positions)."""
    validate(cfg)
    values = base.emb.values
    steps = [torch.zeros_like(v) for v in values]
    # The direction of the step, restricted to each group's real tokens.
    directions: list[torch.Tensor] = []
    for k, (t, mask) in enumerate(base.emb.groups):
        if cfg.direction == "fgsm":
            directions.append(base.grads[t] * mask.unsqueeze(-1).to(values[t].dtype))
        else:
            directions.append(random_direction(values[t], mask, base.index, cfg.seed, k, cfg.norm))

    if cfg.norm == "linf":
        for (t, mask), d in zip(base.emb.groups, directions):
            eps = _eps(cfg, values[t], mask)
            steps[t] = steps[t] + eps.view(-1, 1, 1) * torch.sign(d)
        return steps

    norms = torch.stack([_sq_norm(d) for d in directions])  # [groups, B]
    if cfg.scope == "pair":
        norms = norms.sum(0, keepdim=True).expand_as(norms)
    norms = norms.sqrt()
    for k, ((t, mask), d) in enumerate(zip(base.emb.groups, directions)):
        eps = _eps(cfg, values[t], mask) if cfg.scope == "sentence" else _pair_eps(cfg, base.emb)
        safe = torch.where(norms[k] > 0, norms[k], torch.ones_like(norms[k]))
        scale = torch.where(norms[k] > 0, eps / safe, torch.zeros_like(safe))
        steps[t] = steps[t] + scale.view(-1, 1, 1) * d
    return steps


def _eps(cfg: AttackConfig, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample step size for one sentence: eps, or eps x its own scale."""
    batch = value.shape[0]
    if not cfg.relative:
        return torch.full((batch,), float(cfg.eps), dtype=value.dtype)
    masked = value * mask.unsqueeze(-1).to(value.dtype)
    if cfg.norm == "l2":
        return cfg.eps * _sq_norm(masked).sqrt()
    entries = (mask.sum(1) * value.shape[-1]).clamp(min=1).to(value.dtype)
    return cfg.eps * masked.abs().flatten(1).sum(1) / entries


def _pair_eps(cfg: AttackConfig, emb: Embedded) -> torch.Tensor:
    """Per-sample step size when one L2 norm covers the whole pair."""
    if not cfg.relative:
        return torch.full((emb.values[0].shape[0],), float(cfg.eps), dtype=emb.values[0].dtype)
    total = sum(_sq_norm(emb.values[t] * m.unsqueeze(-1).to(emb.values[t].dtype)) for t, m in emb.groups)
    return cfg.eps * total.sqrt()


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
