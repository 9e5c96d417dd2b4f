"""Adversarial training of model A on its word embeddings (FGM, PGD-K).

The baseline a practitioner reaches for instead of VAA (Miyato et al., 2017;
Madry et al., 2018, as used on the word embeddings of BERT-style models):
every training batch adds the loss on an adversarially perturbed copy of its
looked-up embeddings,

    loss = CE(A(E), y) + weight * CE(A(E + delta), y),

where delta comes from ``vaa.attack``, the same attack core that measures
vulnerability, but driven by the *gold* label y (the model is learning it):

- ``fgm``: one step of ``eps`` in the normalised direction of dCE/dE (L2 per
  sentence, or sign for L-inf). The gradient is the one the clean loss's
  backward pass computes anyway, so FGM costs one extra forward/backward pass.
- ``pgd``: ``steps`` steps of ``step_ratio * eps / steps``, each projected into
  the eps ball (``attack.pgd_perturbation``); the first step reuses the clean
  gradient, the later ones are ``vaa.attack``'s own passes (eval mode: no
  dropout, no weight gradient), so PGD-K costs about K extra passes.

Only the *looked-up* embeddings E are perturbed, never the embedding matrix:
the adversarial pass looks the words up again and adds delta (a constant) to
the result, so the matrix receives the gradient of both losses at its own
values and nothing of delta is left in it when the optimiser steps (the
usual FGM recipe "perturb, backward, restore", without the restore).

The trainer calls :meth:`AdversarialLoss.forward` instead of the model's own
forward pass, then, after the clean loss's backward pass,
:meth:`AdversarialLoss.perturbation` and :meth:`AdversarialLoss.perturbed_forward`
and adds the adversarial loss's backward pass; with ``none`` no object exists
and training is unchanged. Both passes go through the model's ``forward`` (the
DDP wrapper's under torchrun): the clean pass's gradients stay local
(``no_sync``) and the adversarial pass exchanges the sum once, so a run under
torchrun equals one process with the same global batch.
"""

from __future__ import annotations

import torch

from .attack import BasePass, perturbation
from .config import AttackConfig, TrainConfig
from .data.batching import Batch
from .models.base import Embedded, PairModel


def attack_for(cfg: TrainConfig) -> AttackConfig:
    """The ``vaa.attack`` settings of a training perturbation."""
    steps = 1 if cfg.adversarial_training == "fgm" else cfg.adversarial_steps
    return AttackConfig(norm=cfg.adversarial_norm, eps=cfg.adversarial_eps, steps=steps, step_ratio=cfg.adversarial_step_ratio)


class AdversarialLoss:
    """The adversarial half of the training loss; see the module docstring."""

    def __init__(self, cfg: TrainConfig):
        if cfg.adversarial_training == "none":
            raise ValueError("adversarial_training is 'none': train without an AdversarialLoss")
        self.cfg = cfg
        self.attack = attack_for(cfg)
        self.weight = float(cfg.adversarial_weight)

    @staticmethod
    def check_model(model: torch.nn.Module) -> PairModel:
        """Adversarial training needs the embedding cut of ``PairModel`` (model A)."""
        if not isinstance(model, PairModel):
            raise ValueError(
                f"adversarial training needs a model A (a PairModel), not {type(model).__name__}: it is a stage-one option"
            )
        return model

    def forward(self, model: PairModel, batch: Batch, module: torch.nn.Module | None = None) -> tuple[torch.Tensor, Embedded]:
        """The clean pass, A(E), keeping the gradient of E for the attack:
        (logits, E). ``module`` is what to call: the DistributedDataParallel
        wrapper of ``model`` under torchrun, else ``model`` itself."""
        model = self.check_model(model)
        kept: list[Embedded] = []

        def keep_gradient(emb: Embedded) -> Embedded:
            values = []
            for v in emb.values:
                if v.requires_grad:
                    v.retain_grad()  # the gradient also flows on into the embedding matrix
                else:  # frozen word vectors: E is a leaf of its own
                    v = v.detach().requires_grad_(True)
                values.append(v)
            kept.append(emb.with_values(values))
            return kept[0]

        logits = (module or model)(batch, perturb=keep_gradient)
        return logits, kept[0]

    def perturbation(self, model: PairModel, batch: Batch, emb: Embedded, logits: torch.Tensor) -> list[torch.Tensor]:
        """delta from the clean gradient of E (after the clean backward pass),
        against the gold labels; zero outside real word positions."""
        grads = [v.grad if v.grad is not None else torch.zeros_like(v) for v in emb.values]
        grads = [g.detach().float() for g in grads]
        labels = batch["label"]
        base = BasePass(
            emb=emb.with_values([v.detach().float() for v in emb.values]),
            logits=logits.detach().float(),
            hidden=None,
            grads=grads,
            predicted=logits.detach().argmax(-1),
            index=batch["index"] if "index" in batch else torch.arange(labels.shape[0], device=labels.device),
            labels=labels,
            targeted=False,
            model=model,
        )
        return [d.detach() for d in perturbation(base, self.attack)]

    def perturbed_forward(
        self, model: PairModel, batch: Batch, delta: list[torch.Tensor], module: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Logits of A(E + delta): the words are looked up again and delta (a
        constant) is added, so it never touches the embedding matrix."""
        self.check_model(model)

        def shift(emb: Embedded) -> Embedded:
            return emb.with_values([v + d.to(v.dtype) for v, d in zip(emb.values, delta)])

        return (module or model)(batch, perturb=shift)


def adversarial_loss(cfg: TrainConfig | None) -> AdversarialLoss | None:
    """The trainer's adversarial loss, or None for plain training."""
    if cfg is None or cfg.adversarial_training == "none":
        return None
    return AdversarialLoss(cfg)
