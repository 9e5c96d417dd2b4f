"""The two-stage VAA model (paper Section 3.2, Fig. 1).

    V1 = A^-(E), V2 = A^-(E~), V3 = [V1; V2; V1 - V2], V = W V3 + b  (V in R^l)

Model A is frozen (no parameter of A changes; it stays in eval mode). Model B
has A's structure, starts from A's weights, and receives V by one of three
injections:

- ``token`` (the paper, default): V is an extra embedding position in front of
  each sentence, masks extended;
- ``classifier`` (the authors' code): V is concatenated to B's last hidden
  vector before a new final layer. The new layer starts as A's final layer
  with zero weights for V, so B starts out computing exactly A's function;
- ``add``: V is added to every real word embedding.

V1/V2 come from the batch when stage two precomputed them (the cache), or are
computed on the fly from A (new pairs at inference, or ``cache: false``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from .attack import forward_embedded, forward_with_gradient, perturbation
from .config import B_INPUTS, INJECTIONS, V3_ORDERS, VULNERABILITY_SOURCES, AttackConfig, VAAConfig  # noqa: F401  (re-exported)
from .data.batching import Batch
from .guards import check_finite
from .models.base import Embedded, PairModel



def _extend_head(old: nn.Module, new: nn.Module, old_in: int) -> None:
    """Copy A's final layer into a wider one: same weights on the first
    ``old_in`` inputs, zeros on the added ones."""
    old_params = dict(old.named_parameters())
    with torch.no_grad():
        for name, param in new.named_parameters():
            src = old_params[name]
            if src.shape == param.shape:
                param.copy_(src)
            elif param.ndim == 2 and src.shape[1] == old_in:
                param.zero_()
                param[:, :old_in] = src
            else:
                raise ValueError(f"cannot extend head parameter {name}: {tuple(src.shape)} -> {tuple(param.shape)}")


class VAAModel(nn.Module):
    """Frozen A, projection W, model B. ``forward(batch) -> logits``."""

    def __init__(self, model_a: PairModel, vaa: VAAConfig, attack: AttackConfig):
        super().__init__()
        vaa, attack = dataclasses.replace(vaa), dataclasses.replace(attack)  # re-checked: the rules live in config.py
        self.vaa_config = vaa
        self.attack_config = attack
        self.a = model_a
        self.a.requires_grad_(False)
        self.a.eval()
        self.b = copy.deepcopy(model_a)
        self.b.requires_grad_(True)
        if getattr(model_a, "freeze_embeddings", False):
            self.b.embedding.requires_grad_(False)  # type: ignore[union-attr]
        h, l = model_a.hidden_size, model_a.embedding_dim
        self.projection = nn.Linear(3 * h, l)
        self.b_head: nn.Module | None = None
        if vaa.injection == "classifier":
            self.b_head = self.b.new_head(h + l)
            _extend_head(self.b.head, self.b_head, h)

    def train(self, mode: bool = True) -> "VAAModel":
        """Train B and W; A always stays in eval mode."""
        super().train(mode)
        self.a.eval()
        return self

    # -- vulnerability ----------------------------------------------------
    def a_features(self, batch: Batch, need_adversarial: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        """(V1, V2, step) for the batch. The step that made E~ is returned when
        B reads E~ (``b_input: adversarial``), which needs the attack itself."""
        if "v1" in batch and not need_adversarial:
            return batch["v1"], batch["v2"], None
        base = forward_with_gradient(self.a, batch)
        steps = perturbation(base, self.attack_config)
        emb_adv = base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)])
        _, hidden_adv = forward_embedded(self.a, emb_adv)
        hint = f"attack.eps={self.attack_config.eps:g} is too large for these embeddings"
        for step in steps:
            check_finite(step, "attack step", hint)
        check_finite(base.hidden, "V1 (model A's hidden vector)", "model A's weights hold NaN or inf")
        check_finite(hidden_adv, "V2 (model A's hidden vector on the attacked input)", hint)
        return base.hidden, hidden_adv, steps

    def vulnerability_vector(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """V = W V3 + b, or zeros for the extra-training-only control."""
        if self.vaa_config.vulnerability == "zeros":
            return torch.zeros(v1.shape[0], self.projection.out_features, dtype=v1.dtype)
        parts = [v1, v2, v1 - v2] if self.vaa_config.v3_order == "paper" else [v1 - v2, v1, v2]
        return self.projection(torch.cat(parts, dim=-1))

    # -- model B ----------------------------------------------------------
    def forward(self, batch: Batch, vector: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of B. ``vector`` overrides V (tests, analyses)."""
        adversarial_input = self.vaa_config.b_input == "adversarial"
        use_attack = self.vaa_config.vulnerability == "attack"
        steps = None
        if adversarial_input or (vector is None and use_attack):
            v1, v2, steps = self.a_features(batch, need_adversarial=adversarial_input)
            if vector is None:
                vector = self.vulnerability_vector(v1, v2)
        if vector is None:  # the zeros control needs nothing from A
            vector = torch.zeros(batch["label"].shape[0], self.projection.out_features)
        emb = self.b.embed(batch)
        if adversarial_input and steps is not None:  # the authors' ESIM: B reads E~
            emb = emb.with_values([v + s for v, s in zip(emb.values, steps)])
        return self.forward_embedded(emb, vector)

    def forward_embedded(self, emb: Embedded, vector: torch.Tensor) -> torch.Tensor:
        injection = self.vaa_config.injection
        if injection == "token":
            emb = self.b.prepend(emb, vector)
        elif injection == "add":
            masks = emb.group_masks()
            emb = emb.with_values([e + vector.unsqueeze(1) * m.unsqueeze(-1).to(e.dtype) for e, m in zip(emb.values, masks)])
        hidden = self.b.encode(emb)
        if injection == "classifier":
            assert self.b_head is not None
            return self.b_head(torch.cat([hidden, vector], dim=-1))
        return self.b.classify(hidden)

    def shape_fields(self) -> dict[str, list[tuple[str, int]]]:
        """Axes of W and of the classifier head that follow the metadata (see
        ``PairModel.shape_fields``); A's and B's come from the family."""
        return {"projection.weight": [("embedding size", 0)], "projection.bias": [("embedding size", 0)],
                "b_head.1.weight": [("label count", 0)], "b_head.1.bias": [("label count", 0)]}

    def describe(self) -> dict[str, Any]:
        import dataclasses

        return {"vaa": dataclasses.asdict(self.vaa_config), "attack": dataclasses.asdict(self.attack_config)}
