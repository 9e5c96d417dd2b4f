"""ESIM (Chen et al., 2017): the paper's model A over GloVe word vectors.

Input encoding BiLSTM -> soft alignment -> enhancement [a; a~; a-a~; a*a~] ->
projection -> composition BiLSTM -> average and max pooling -> MLP. The MLP's
hidden layer output (after tanh, size ``hidden``) is A^-'s output, the "last
hidden vector" V1/V2 of the paper; ``classify`` is the final linear layer.

Padding never changes an output: LSTMs run on packed sequences, attention and
pooling are masked (tested).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..data.batching import Batch, Example
from ..data.embeddings import DEFAULT_VECTORS, build_embedding_matrix
from ..data.pairs import LabelMap, Pair
from ..data.text import Vocab, tokenize
from .base import Embedded, PairModel
from .unrolled_lstm import unrolled_bilstm

log = logging.getLogger(__name__)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A batch-first LSTM over the real positions only; padding outputs are 0.

    When autograd needs the input gradient but no weight gradient (the FGSM
    attack on a frozen model A) on CPU, the LSTM is unrolled step by step:
    PyTorch's packed-sequence backward is quadratic in the length there (see
    :mod:`vaa.models.unrolled_lstm`). Every other case uses PyTorch's LSTM."""
    path = lstm_path(lstm, x)
    if path == "unrolled":
        return unrolled_bilstm(lstm, x, mask)
    lengths = mask.sum(1).clamp(min=1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    if path == "cudnn-input-gradient" and not lstm.training:
        # cuDNN's RNN backward refuses a module in eval mode; a one-layer LSTM
        # has no dropout, so train mode computes the same function.
        lstm.train()
        try:
            out, _ = lstm(packed)
        finally:
            lstm.eval()
    else:
        out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


def lstm_path(lstm: nn.LSTM, x: torch.Tensor) -> str:
    """Which LSTM implementation ``run_lstm`` uses: ``unrolled`` for the
    attack's input gradient on the CPU (a CPU optimisation), on a GPU
    ``cudnn-input-gradient`` (PyTorch's LSTM, cuDNN on CUDA), else ``pytorch``."""
    attack = torch.is_grad_enabled() and x.requires_grad and not any(p.requires_grad for p in lstm.parameters())
    if not attack:
        return "pytorch"
    return "unrolled" if x.device.type == "cpu" else "cudnn-input-gradient"


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, ignoring positions where ``mask`` is False."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[masked mean; masked max] over the time axis."""
    m = mask.unsqueeze(-1)
    mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
    maxed = x.masked_fill(~m, float("-inf")).max(1).values
    return torch.cat([mean, maxed], dim=-1)


class ESIM(PairModel):
    family = "esim"

    def __init__(
        self,
        vocab: Vocab,
        num_labels: int,
        embedding_dim: int = 50,
        hidden: int = 300,
        dropout: float = 0.5,
        lowercase: bool = True,
        max_tokens: int = 0,
        freeze_embeddings: bool = False,
        embeddings: np.ndarray | None = None,
        vectors: str = DEFAULT_VECTORS,
    ):
        super().__init__()
        self.vocab = vocab
        self.num_labels = num_labels
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden
        self.dropout_p = dropout
        self.lowercase = lowercase
        self.max_tokens = max_tokens
        self.freeze_embeddings = freeze_embeddings
        self.vectors = vectors

        self.embedding = nn.Embedding(len(vocab), embedding_dim, padding_idx=vocab.pad_index)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.dropout = nn.Dropout(dropout)
        self.input_lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.projection = nn.Sequential(nn.Linear(8 * hidden, hidden), nn.ReLU())
        self.composition_lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.hidden_layer = nn.Sequential(nn.Dropout(dropout), nn.Linear(8 * hidden, hidden), nn.Tanh())
        self.head = self.new_head(hidden)
        self._init_weights()
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(torch.as_tensor(embeddings))

    def _init_weights(self) -> None:
        """Xavier for linear layers, orthogonal recurrent weights and forget
        gate bias 1 for the LSTMs: the usual ESIM initialisation."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LSTM):
                for name, param in module.named_parameters():
                    if "weight_ih" in name:
                        nn.init.xavier_uniform_(param)
                    elif "weight_hh" in name:
                        nn.init.orthogonal_(param)
                    elif "bias" in name:
                        nn.init.zeros_(param)
                        h = param.numel() // 4
                        param.data[h : 2 * h] = 0.5  # two biases per gate: forget bias totals 1

    # -- construction -----------------------------------------------------
    @classmethod
    def build(
        cls,
        train_pairs: Sequence[Pair],
        label_map: LabelMap,
        vectors: str = DEFAULT_VECTORS,
        hidden: int = 300,
        dropout: float = 0.5,
        lowercase: bool = True,
        min_count: int = 1,
        max_tokens: int = 0,
        freeze_embeddings: bool = False,
        oov_std: float = 1.0,
        seed: int = 0,
        **_: Any,
    ) -> ESIM:
        """A fresh ESIM: vocabulary from the training split, GloVe rows where
        there is a vector, N(0, oov_std^2) elsewhere, PAD zero."""
        token_lists = (tokenize(t, lowercase) for p in train_pairs for t in (p.a, p.b))
        vocab = Vocab.build(token_lists, min_count=min_count)
        init = build_embedding_matrix(vocab, vectors, seed=seed, oov_std=oov_std)
        model = cls(
            vocab,
            len(label_map),
            embedding_dim=init.dim,
            hidden=hidden,
            dropout=dropout,
            lowercase=lowercase,
            max_tokens=max_tokens,
            freeze_embeddings=freeze_embeddings,
            embeddings=init.matrix,
            vectors=str(vectors),
        )
        model.build_info = {
            "vocab_size": len(vocab),
            "pretrained_coverage": round(init.coverage(len(vocab)), 4),
            "vectors": init.source,
        }
        return model

    def spec(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "hidden": self.hidden_size,
            "dropout": self.dropout_p,
            "lowercase": self.lowercase,
            "max_tokens": self.max_tokens,
            "freeze_embeddings": self.freeze_embeddings,
            "vectors": self.vectors,
        }

    def featurizer_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.words}

    def featurizer_settings(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase, "max_tokens": self.max_tokens}

    def featurizer_files(self) -> dict[str, bytes]:
        return {"vocab.json": json.dumps(self.vocab.words, ensure_ascii=False).encode()}

    @classmethod
    def featurizer_from_files(cls, files: dict[str, bytes]) -> dict[str, Any]:
        words = json.loads(files["vocab.json"])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("vocab.json must be a list of words")
        return {"vocab": words}

    def shape_fields(self) -> dict[str, list[tuple[str, int]]]:
        return {
            "embedding.weight": [("vocabulary size", 0), ("embedding size", 1)],
            "input_lstm.weight_ih_l0": [("hidden size", 0), ("embedding size", 1)],
            "hidden_layer.1.weight": [("hidden size", 0)],
            "head.1.weight": [("label count", 0), ("hidden size", 1)],
            "head.1.bias": [("label count", 0)],
        }

    @classmethod
    def from_state(cls, spec: dict[str, Any], featurizer_state: dict[str, Any], num_labels: int) -> ESIM:
        return cls(Vocab(featurizer_state["vocab"]), num_labels, **spec)

    # -- text -> examples -------------------------------------------------
    def _all_ids(self, text: str) -> list[int]:
        return self.vocab.encode(tokenize(text, self.lowercase)) or [self.vocab.unk_index]

    def _cap(self, ids: list[int]) -> list[int]:
        return ids[: self.max_tokens] if self.max_tokens > 0 else ids

    def _example(self, a_ids: list[int], b_ids: list[int], pair: Pair, label_map: LabelMap | None, index: int) -> Example:
        label = -1 if pair.label is None or label_map is None else label_map.index(pair.label)
        return {"a_ids": self._cap(a_ids), "b_ids": self._cap(b_ids), "label": label, "index": index}

    def featurize(self, pair: Pair, label_map: LabelMap | None, index: int) -> Example:
        return self._example(self._all_ids(pair.a), self._all_ids(pair.b), pair, label_map, index)

    def featurize_all(self, pairs: Sequence[Pair], label_map: LabelMap | None) -> list[Example]:
        """As ``featurize``, counting the pairs with a sentence cut at
        ``max_tokens`` (``last_truncated``, as the HF family does): a cap that
        silently dropped text would change what the model is judged on."""
        examples, truncated = [], 0
        for i, pair in enumerate(pairs):
            a, b = self._all_ids(pair.a), self._all_ids(pair.b)
            truncated += int(self.max_tokens > 0 and max(len(a), len(b)) > self.max_tokens)
            examples.append(self._example(a, b, pair, label_map, i))
        if truncated:
            log.warning(
                "%d of %d pairs had a sentence longer than %d tokens, truncated (model.max_tokens)",
                truncated,
                len(pairs),
                self.max_tokens,
            )
        self.last_truncated = (truncated, len(pairs))
        return examples

    # -- the three cuts ---------------------------------------------------
    def embed(self, batch: Batch) -> Embedded:
        ma, mb = batch["a_ids_mask"], batch["b_ids_mask"]
        ea, eb = self.embedding(batch["a_ids"]), self.embedding(batch["b_ids"])
        return Embedded(values=[ea, eb], masks=[ma, mb], groups=[(0, ma), (1, mb)])

    def encode(self, emb: Embedded) -> torch.Tensor:
        (ea, eb), (ma, mb) = emb.values, emb.masks
        a = run_lstm(self.input_lstm, self.dropout(ea), ma)
        b = run_lstm(self.input_lstm, self.dropout(eb), mb)
        scores = torch.bmm(a, b.transpose(1, 2))  # [B, La, Lb]
        a_tilde = torch.bmm(masked_softmax(scores, mb.unsqueeze(1)), b)
        b_tilde = torch.bmm(masked_softmax(scores.transpose(1, 2), ma.unsqueeze(1)), a)
        a_enh = torch.cat([a, a_tilde, a - a_tilde, a * a_tilde], dim=-1)
        b_enh = torch.cat([b, b_tilde, b - b_tilde, b * b_tilde], dim=-1)
        a_comp = run_lstm(self.composition_lstm, self.dropout(self.projection(a_enh)), ma)
        b_comp = run_lstm(self.composition_lstm, self.dropout(self.projection(b_enh)), mb)
        pooled = torch.cat([pool(a_comp, ma), pool(b_comp, mb)], dim=-1)
        return self.hidden_layer(pooled)

    def new_head(self, in_features: int) -> nn.Module:
        head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(in_features, self.num_labels))
        nn.init.xavier_uniform_(head[1].weight)
        nn.init.zeros_(head[1].bias)
        return head

    def prepend(self, emb: Embedded, vector: torch.Tensor) -> Embedded:
        v = vector.unsqueeze(1)
        values = [torch.cat([v, e], dim=1) for e in emb.values]
        ones = torch.ones_like(emb.masks[0][:, :1])
        masks = [torch.cat([ones, m], dim=1) for m in emb.masks]
        groups = [(t, torch.cat([torch.zeros_like(ones), g], dim=1)) for t, g in emb.groups]
        return Embedded(values=values, masks=masks, groups=groups, extras=dict(emb.extras))
