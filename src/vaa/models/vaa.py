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

Feature options (issue 12; defaults are the paper's): each part of V3
normalised (a LayerNorm per part, or standardised with training-set statistics
kept as buffers, so they are saved with B); V1 - V2 divided by the attack's
step norm; non-linear scalars appended to V3 (W is linear: it cannot compute
||V1 - V2|| or a flip itself); per-word gradient saliency added to B's word
embeddings times a learned vector (zero at the start, so B starts as A).
Controls: ``zeros`` (V = 0), ``v1-only`` (V = W[V1]: A's representation without
any attack), ``permuted`` (V1 the pair's own, the vulnerability part another
pair's: a fixed, label-agnostic permutation).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from ..attack import forward_embedded, forward_with_gradient, perturbation
from ..config import AttackConfig, VAAConfig
from ..data.batching import Batch
from ..device import full_precision
from ..features import TINY, attachable, batch_features, feature_needs, permutation_for, permute, scalar_names, scalar_width
from ..guards import check_finite
from .base import Embedded, PairModel


class DimensionError(ValueError):
    """Two sizes that must agree do not (a model whose declared sizes and
    layers disagree): reported when the VAA model is built, not as a shape
    error deep inside the first forward pass."""


def check_dimensions_match(first: int, second: int, first_name: str, second_name: str) -> None:
    """Raise ``DimensionError`` in one line naming both sizes unless they match."""
    if first != second:
        raise DimensionError(f"{first_name} must match {second_name}, but got {first} and {second} instead")


def _input_width(head: nn.Module) -> int | None:
    """Input size of a final layer (its first Linear), if it has one."""
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    return None if first is None else first.in_features


def check_dimensions(model_a: PairModel) -> None:
    """The sizes V is built from, against the layers they come from: A's
    final layer reads vectors of ``hidden_size`` (V1, V2 and the classifier
    injection's input), and A's word embeddings have ``embedding_dim`` (V
    takes a word embedding's place, or is added to one)."""
    head_in = _input_width(model_a.head)
    if head_in is not None:
        check_dimensions_match(
            int(model_a.hidden_size), head_in, "model A's hidden size (hidden_size)", "the input size of its final layer"
        )
    embeddings = model_a.input_embeddings()
    if embeddings is not None:
        check_dimensions_match(
            int(model_a.embedding_dim),
            int(embeddings.embedding_dim),
            "model A's embedding size (embedding_dim)",
            "the width of its word embeddings",
        )


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
        check_dimensions(model_a)
        # registered as "a" and "b": the tensor-name prefixes of every VAA checkpoint (a./b.)
        self.add_module("a", model_a)
        self.model_a.requires_grad_(False)
        self.model_a.eval()
        self.add_module("b", copy.deepcopy(model_a))
        self.model_b.requires_grad_(True)
        if getattr(model_a, "freeze_embeddings", False):
            self.model_b.embedding.requires_grad_(False)  # type: ignore[union-attr]
        dataclasses.replace(vaa)  # every rule, combinations included, is checked in config.py
        h, l = model_a.hidden_size, model_a.embedding_dim  # noqa: E741 - the paper's names
        v1_only = vaa.vulnerability == "v1-only"
        self.num_scalars = 0 if v1_only else scalar_width(scalar_names(vaa.scalars), model_a.num_labels)
        parts = 1 if v1_only else 3
        width = parts * h + self.num_scalars
        self.projection = nn.Linear(width, l)
        self.part_norms = nn.ModuleList([nn.LayerNorm(h) for _ in range(parts)]) if vaa.normalize == "layernorm" else None
        if vaa.normalize == "standardize":  # set from the training pairs by stage two; saved with B
            self.register_buffer("v3_mean", torch.zeros(width))
            self.register_buffer("v3_std", torch.ones(width))
        self.saliency_weight = (
            nn.Parameter(torch.zeros(l)) if vaa.saliency and not v1_only and vaa.vulnerability != "zeros" else None
        )
        self.b_head: nn.Module | None = None
        if vaa.injection == "classifier":
            self.b_head = self.model_b.new_head(h + l)
            _extend_head(self.model_b.head, self.b_head, h)

    @property
    def model_a(self) -> PairModel:
        """Model A: frozen, in eval mode; V1 and V2 come from it."""
        return self._modules["a"]  # type: ignore[return-value]

    @property
    def model_b(self) -> PairModel:
        """Model B: A's structure, started from A's weights, trained with V."""
        return self._modules["b"]  # type: ignore[return-value]

    def train(self, mode: bool = True) -> VAAModel:
        """Train B and W; A always stays in eval mode."""
        super().train(mode)
        self.model_a.eval()
        return self

    def new_parameters(self) -> list[str]:
        """Names of the parameters stage two adds to A's structure (W, norms,
        the saliency vector): what ``w_lr`` applies to."""
        return [n for n, _ in self.named_parameters() if n.startswith(("projection.", "part_norms.", "saliency_weight"))]

    def learning_rates(self) -> dict[str, float]:
        """Per-parameter learning rates that differ from the optimiser's (the trainer reads this)."""
        if self.vaa_config.w_lr <= 0:
            return {}
        return {name: self.vaa_config.w_lr for name in self.new_parameters()}

    # -- vulnerability ----------------------------------------------------
    def a_features(
        self, batch: Batch, need_adversarial: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        """(V1, V2, step) for the batch. The step that made E~ is returned when
        B reads E~ (``b_input: adversarial``), which needs the attack itself."""
        if "v1" in batch and not need_adversarial:
            return batch["v1"], batch["v2"], None
        if self.vaa_config.vulnerability == "v1-only" and not need_adversarial:  # no attack at all
            with torch.no_grad():
                emb = self.model_a.embed(batch)
            _, hidden = forward_embedded(self.model_a, emb)
            return hidden, hidden, None
        with full_precision(batch["label"].device):  # the attack is fp32 under any autocast (vaa.attack)
            base = forward_with_gradient(self.model_a, batch)
            steps = perturbation(base, self.attack_config)
            emb_adv = base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)])
            _, hidden_adv = forward_embedded(self.model_a, emb_adv)
            hint = f"attack.eps={self.attack_config.eps:g} is too large for these embeddings"
            for step in steps:
                check_finite(step, "attack step", hint)
            check_finite(base.hidden, "V1 (model A's hidden vector)", "model A's weights hold NaN or inf")
            check_finite(hidden_adv, "V2 (model A's hidden vector on the attacked input)", hint)
        return base.hidden, hidden_adv, steps

    def features(self, batch: Batch, need_adversarial: bool = False) -> tuple[dict[str, torch.Tensor], list[torch.Tensor] | None]:
        """Everything V is built from: v1, v2 and, for the feature options,
        step_norm, scalars and saliency<t>; from the batch (the cache) or from
        A on the fly, through the same ``batch_features`` as the cache."""
        want = feature_needs(self.vaa_config)
        cached = "v1" in batch
        if cached or not want:
            v1, v2, steps = self.a_features(batch, need_adversarial)
            out = {"v1": v1, "v2": v2}
            out.update({k: batch[k] for k in batch if k in ("step_norm", "scalars") or k.startswith("saliency")})
        else:
            raw = batch_features(self.model_a, batch, self.attack_config, [w for w in want if w != "scalars"])
            out = {k: torch.as_tensor(v, device=batch["label"].device) for k, v in attachable(raw, self.vaa_config).items()}
            steps = None
        if self.vaa_config.vulnerability == "permuted" and not cached:  # cached pairs were permuted over their whole split
            order = permutation_for(out["v1"].shape[0], int(batch["index"].sum()) if "index" in batch else 0)
            out = permute(out, torch.as_tensor(order, device=out["v1"].device))
        return out, steps

    def v3_inputs(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """[parts of V3 (normalised per part); scalars], before standardisation."""
        v1 = feats["v1"]
        if self.vaa_config.vulnerability == "v1-only":
            parts = [v1]
        else:
            v2 = feats["v2"]
            diff = v1 - v2
            if self.vaa_config.diff_scale == "step":
                diff = diff / feats["step_norm"].clamp(min=TINY).unsqueeze(-1).to(diff.dtype)
            parts = [v1, v2, diff] if self.vaa_config.v3_order == "paper" else [diff, v1, v2]
        if self.part_norms is not None:
            parts = [norm(p) for norm, p in zip(self.part_norms, parts)]
        if self.num_scalars:
            parts.append(feats["scalars"].to(v1.dtype))
        return torch.cat(parts, dim=-1)

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training pairs' statistics (``normalize: standardize``)."""
        with torch.no_grad():
            self.v3_mean.copy_(mean)
            self.v3_std.copy_(torch.where(std > TINY, std, torch.ones_like(std)))

    def vulnerability_vector(self, v1: torch.Tensor | dict[str, torch.Tensor], v2: torch.Tensor | None = None) -> torch.Tensor:
        """V = W V3 + b, or zeros for the extra-training-only control. Takes
        (V1, V2), or the dict of ``features`` for the feature options."""
        feats = v1 if isinstance(v1, dict) else {"v1": v1, "v2": v2}
        if self.vaa_config.vulnerability == "zeros":
            return torch.zeros(
                feats["v1"].shape[0], self.projection.out_features, dtype=feats["v1"].dtype, device=feats["v1"].device
            )
        x = self.v3_inputs(feats)
        if self.vaa_config.normalize == "standardize":
            x = (x - self.v3_mean) / self.v3_std
        return self.projection(x)

    # -- model B ----------------------------------------------------------
    def forward(self, batch: Batch, vector: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of B. ``vector`` overrides V (tests, analyses)."""
        adversarial_input = self.vaa_config.b_input == "adversarial"
        use_a = self.vaa_config.vulnerability != "zeros"
        steps = None
        feats: dict[str, torch.Tensor] = {}
        if adversarial_input or (use_a and (vector is None or self.saliency_weight is not None)):
            feats, steps = self.features(batch, need_adversarial=adversarial_input)
            if vector is None:
                vector = self.vulnerability_vector(feats)
        if vector is None:  # the zeros control needs nothing from A
            vector = torch.zeros(batch["label"].shape[0], self.projection.out_features, device=self.projection.weight.device)
        emb = self.model_b.embed(batch)
        if adversarial_input and steps is not None:  # the authors' ESIM: B reads E~
            emb = emb.with_values([v + s for v, s in zip(emb.values, steps)])
        if self.saliency_weight is not None:
            emb = self.add_saliency(emb, feats)
        return self.forward_embedded(emb, vector)

    def add_saliency(self, emb: Embedded, feats: dict[str, torch.Tensor]) -> Embedded:
        """E + s_t u on every word position t (s_t: the word's relative
        gradient saliency under A, u: a learned vector)."""
        values = []
        for t, value in enumerate(emb.values):
            s = feats[f"saliency{t}"].to(value.dtype)
            length = value.shape[1]
            s = s[:, :length] if s.shape[1] >= length else torch.nn.functional.pad(s, (0, length - s.shape[1]))
            values.append(value + s.unsqueeze(-1) * self.saliency_weight)
        return emb.with_values(values)

    def forward_embedded(self, emb: Embedded, vector: torch.Tensor) -> torch.Tensor:
        injection = self.vaa_config.injection
        if injection == "token":
            emb = self.model_b.prepend(emb, vector)
        elif injection == "add":
            masks = emb.group_masks()
            emb = emb.with_values([e + vector.unsqueeze(1) * m.unsqueeze(-1).to(e.dtype) for e, m in zip(emb.values, masks)])
        hidden = self.model_b.encode(emb)
        if injection == "classifier":
            assert self.b_head is not None
            return self.b_head(torch.cat([hidden, vector], dim=-1))
        return self.model_b.classify(hidden)

    def shape_fields(self) -> dict[str, list[tuple[str, int]]]:
        """Axes of W and of the classifier head that follow the metadata (see
        ``PairModel.shape_fields``); A's and B's come from the family."""
        return {
            "projection.weight": [("embedding size", 0)],
            "projection.bias": [("embedding size", 0)],
            "b_head.1.weight": [("label count", 0)],
            "b_head.1.bias": [("label count", 0)],
        }

    def describe(self) -> dict[str, Any]:
        return {"vaa": dataclasses.asdict(self.vaa_config), "attack": dataclasses.asdict(self.attack_config)}
