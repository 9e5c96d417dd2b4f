"""The small interface every model family implements.

VAA needs to cut model A in three places: the word-embedding lookup (the FGSM
attack perturbs its *output* E), the encoder A^- (E -> the last hidden vector,
V1/V2 in the paper) and the final layer. A family that provides

    embed(batch)    -> Embedded        tokens -> E (+ masks)
    encode(emb)     -> [B, h]          A^-: E -> last hidden vector
    classify(h)     -> [B, n] logits   the final layer
    prepend(emb, v) -> Embedded        V as an extra position before each sentence

works with the attack, the vulnerability analyses and stage two without any
change there.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.batching import Batch, Example
from ..data.pairs import LabelMap, Pair


@dataclass
class Embedded:
    """Word embeddings E of a batch of pairs, with what the encoder needs.

    ``values`` are the tensors the attack may perturb ([B, L, d] each: one per
    sentence for ESIM, one joint sequence for BERT). ``masks`` say which
    positions of each tensor the encoder attends to. ``groups`` name the *real
    word* positions of each sentence as (tensor index, bool mask [B, L]): the
    attack normalises per group and never touches [CLS]/[SEP]/padding.
    """

    values: list[torch.Tensor]
    masks: list[torch.Tensor]
    groups: list[tuple[int, torch.Tensor]]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def with_values(self, values: Sequence[torch.Tensor]) -> Embedded:
        if len(values) != len(self.values):
            raise ValueError(f"expected {len(self.values)} tensors, got {len(values)}")
        return replace(self, values=list(values))

    def group_masks(self) -> list[torch.Tensor]:
        """Per tensor, the union of its groups' masks (the perturbable positions)."""
        out = [torch.zeros_like(m) for m in self.masks]
        for t, mask in self.groups:
            out[t] = out[t] | mask
        return out


class PairModel(nn.Module, ABC):
    """A sentence-pair classifier split as VAA needs it.

    Subclasses set ``family`` and keep their text featuriser on the instance, so
    a checkpoint restores a model that can read raw pairs again."""

    family: ClassVar[str] = ""

    num_labels: int
    hidden_size: int  # size of A^-'s output (the last hidden vector)
    embedding_dim: int  # l: size of one word embedding (and of V)

    # -- text -> examples -------------------------------------------------
    @abstractmethod
    def featurize(self, pair: Pair, label_map: LabelMap | None, index: int) -> Example:
        """Turn one pair into an example (token ids, label index or -1, index)."""

    def featurize_all(self, pairs: Sequence[Pair], label_map: LabelMap | None) -> list[Example]:
        return [self.featurize(p, label_map, i) for i, p in enumerate(pairs)]

    # -- the three cuts ---------------------------------------------------
    @abstractmethod
    def embed(self, batch: Batch) -> Embedded:
        """Tokens -> word embeddings E (the output of the lookup)."""

    @abstractmethod
    def encode(self, emb: Embedded) -> torch.Tensor:
        """A^-: E -> the last hidden vector [B, hidden_size]."""

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final layer: hidden -> logits."""
        return self.head(hidden)

    @abstractmethod
    def prepend(self, emb: Embedded, vector: torch.Tensor) -> Embedded:
        """Insert ``vector`` [B, embedding_dim] as an extra input position in
        front of each sentence (stage two's ``token`` injection)."""

    def forward(self, batch: Batch, perturb: Callable[[Embedded], Embedded] | None = None) -> torch.Tensor:
        """Logits of A(E). ``perturb`` (adversarial training) maps the looked-up
        E to what the pass reads; going through ``forward`` keeps a
        DistributedDataParallel wrapper's gradient exchange in the loop."""
        emb = self.embed(batch)
        if perturb is not None:
            emb = perturb(emb)
        return self.classify(self.encode(emb))

    @abstractmethod
    def new_head(self, in_features: int) -> nn.Module:
        """A final layer shaped like this family's own, for ``in_features``
        inputs (stage two's ``classifier`` injection)."""

    head: nn.Module

    def input_embeddings(self) -> nn.Module | None:
        """The word-embedding lookup (an ``nn.Embedding``), whose width the
        VAA model checks against ``embedding_dim``; ``self.embedding`` by
        default, None where a family has no single lookup (nothing checked)."""
        return getattr(self, "embedding", None)

    # -- persistence ------------------------------------------------------
    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild this architecture."""

    @abstractmethod
    def featurizer_state(self) -> dict[str, Any]:
        """What the featuriser needs to be restored (vocabulary, tokenizer)."""

    def featurizer_settings(self) -> dict[str, Any]:
        """The settings featurisation depends on besides ``featurizer_state``
        (the key of the on-disk example cache); by default the whole spec."""
        return self.spec()

    @classmethod
    @abstractmethod
    def from_state(cls, spec: dict[str, Any], featurizer_state: dict[str, Any], num_labels: int) -> PairModel:
        """Rebuild an (untrained) model from ``spec`` and featuriser state."""

    def featurizer_files(self) -> dict[str, bytes]:
        """The featuriser as files of a checkpoint folder (name -> content).
        JSON by default; families override to use their own formats (the HF
        tokenizer's files). Never pickle: a checkpoint must load without
        running code from it."""
        return {"featurizer.json": json.dumps(self.featurizer_state()).encode()}

    @classmethod
    def featurizer_from_files(cls, files: dict[str, bytes]) -> dict[str, Any]:
        """``featurizer_files`` read back into what ``from_state`` takes."""
        return json.loads(files["featurizer.json"])

    def shape_fields(self) -> dict[str, list[tuple[str, int]]]:
        """Which metadata field each axis of a weight tensor follows
        (tensor name -> [(field, axis)]): a checkpoint whose metadata and
        weights disagree is reported by the field's name, not as a size
        mismatch deep in ``load_state_dict``."""
        return {"head.0.weight": [("label count", 0)], "head.1.weight": [("label count", 0)]}
