"""Shared test helpers: a tiny model with an analytically known gradient, and
tiny pair sets. Tests run on one thread: the models are tiny, and torch's
thread pool only adds noise on a shared 2-core machine."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vaa.config import DataConfig, RunConfig, apply_overrides  # noqa: E402
from vaa.data.pairs import LabelMap, Pair  # noqa: E402
from vaa.models.base import Embedded, PairModel  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


class ToyModel(PairModel):
    """logits = W [mean(E_a); mean(E_b)] + c over whitespace tokens.

    Its input gradient is known in closed form:
    dJ/dE_a[t] = (1/len_a) W_a^T (softmax(O) - onehot(y)) on real tokens."""

    family = "toy"

    def __init__(self, words: Sequence[str], num_labels: int = 2, dim: int = 4):
        super().__init__()
        self.words = list(words)
        self.index = {w: i + 1 for i, w in enumerate(self.words)}
        self.num_labels = num_labels
        self.embedding_dim = dim
        self.hidden_size = 2 * dim
        self.embedding = nn.Embedding(len(self.words) + 1, dim, padding_idx=0)
        self.head = self.new_head(2 * dim)

    def featurize(self, pair: Pair, label_map: LabelMap | None, index: int) -> dict[str, Any]:
        ids = lambda s: [self.index.get(w, 0) or 1 for w in s.split()]  # noqa: E731
        label = -1 if pair.label is None or label_map is None else label_map.index(pair.label)
        return {"a_ids": ids(pair.a), "b_ids": ids(pair.b), "label": label, "index": index}

    def embed(self, batch):
        ma, mb = batch["a_ids_mask"], batch["b_ids_mask"]
        return Embedded([self.embedding(batch["a_ids"]), self.embedding(batch["b_ids"])], [ma, mb], [(0, ma), (1, mb)])

    def encode(self, emb: Embedded) -> torch.Tensor:
        means = [(e * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True) for e, m in zip(emb.values, emb.masks)]
        return torch.cat(means, -1)

    def prepend(self, emb, vector):
        v = vector.unsqueeze(1)
        one = torch.ones_like(emb.masks[0][:, :1])
        return Embedded(
            [torch.cat([v, e], 1) for e in emb.values],
            [torch.cat([one, m], 1) for m in emb.masks],
            [(t, torch.cat([torch.zeros_like(one), g], 1)) for t, g in emb.groups],
        )

    def new_head(self, in_features: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_features, self.num_labels))

    def spec(self):
        return {"dim": self.embedding_dim}

    def featurizer_state(self):
        return {"words": self.words}

    @classmethod
    def from_state(cls, spec, featurizer_state, num_labels):
        return cls(featurizer_state["words"], num_labels, **spec)


TOY_PAIRS = [
    Pair("the cat sat", "a cat sat down", "duplicate", "p0"),
    Pair("the dog ran", "no dog ran", "not_duplicate", "p1"),
    Pair("a bird", "the bird sang loudly today", "duplicate", "p2"),
    Pair("cat", "dog", "not_duplicate", "p3"),
    Pair("the sun is hot", "the sun is not hot", "not_duplicate", "p4"),
]
TOY_LABELS = LabelMap(["not_duplicate", "duplicate"])


def tiny_esim(num_labels: int = 2) -> PairModel:
    """A seeded ESIM small enough to run everywhere (embedding 6, hidden 5)
    over the words of ``TOY_PAIRS``: the real family in the tests."""
    from vaa.data.text import Vocab
    from vaa.models.esim import ESIM

    torch.manual_seed(0)
    words = sorted({w for p in TOY_PAIRS for w in (p.a + " " + p.b).split()})
    return ESIM(Vocab(["<pad>", "<unk>", *words]), num_labels, embedding_dim=6, hidden=5, dropout=0.5)


def toy_batch(model: PairModel, pairs: Sequence[Pair] = TOY_PAIRS) -> dict[str, Any]:
    """``pairs`` featurised by ``model`` and collated into one batch."""
    from vaa.data.batching import collate

    return collate(model.featurize_all(pairs, TOY_LABELS))


@pytest.fixture(autouse=True)
def _unconfigured_logging():
    """Every test starts and ends with logging as a library user finds it: a
    ``vaa`` command run by an earlier test leaves no handler or level behind."""
    from vaa.log_setup import reset_logging

    reset_logging()
    yield
    reset_logging()


@pytest.fixture
def toy_model() -> ToyModel:
    torch.manual_seed(0)
    words = sorted({w for p in TOY_PAIRS for w in (p.a + " " + p.b).split()})
    return ToyModel(words)


WORDS = "cat dog bird fish horse cow sheep goat lion tiger".split()


def write_pairs(path, n, seed):
    """A learnable toy task: duplicate when both sentences name the same animal."""
    rng = random.Random(seed)
    lines = ["a\tb\ty"]
    for i in range(n):
        x = rng.choice(WORDS)
        y = x if i % 2 == 0 else rng.choice([w for w in WORDS if w != x])
        lines.append(f"the {x} is here\twhere is the {y}\t{int(x == y)}")
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_COLUMNS = "a=a,b=b,label=y"


def tiny_train_argv(
    data: DataConfig,
    output: str | Path,
    *more: str,
    hidden: str = "8",
    batch_size: str | None = "8",
    no_progress: bool = True,
) -> list[str]:
    """The ``vaa train`` argument list for a one-epoch ESIM on the toy files
    of ``data`` (generic format; ``--valid`` only when ``data.valid`` is set),
    written to ``output``, then ``more``. One place for it, so that the many
    command-line tests differ only in what they are about. ``batch_size=None``
    leaves the CLI's default; ``no_progress=False`` leaves the progress bar
    alone (for the tests of what the CLI prints)."""
    argv = ["train", "--train", str(data.train)]
    if data.valid is not None:
        argv += ["--valid", str(data.valid)]
    argv += ["--format", "generic", "--columns", str(data.columns), "--hidden", hidden, "--epochs", "1"]
    if batch_size is not None:
        argv += ["--batch-size", batch_size]
    argv += ["--output", str(output)]
    if no_progress:
        argv.append("--no-progress")
    return [*argv, *more]


def write_tiny_presets(tmp_path: Path, stage_two_extends: str = "esim-vaa", more: str = "") -> tuple[Path, Path]:
    """(stage one's preset, stage two's preset) in ``tmp_path`` for ``vaa
    reproduce`` on fresh toy files: a one-epoch, 6-wide ESIM at batch size 8.
    Stage two's preset extends ``stage_two_extends``; ``more`` (YAML lines)
    ends both."""
    train_file = write_pairs(tmp_path / "train.tsv", 32, 0)
    valid_file = write_pairs(tmp_path / "valid.tsv", 16, 1)
    preset = tmp_path / "tiny.yaml"
    preset.write_text(f"""extends: esim
data: {{train: {train_file}, valid: {valid_file}, format: generic, columns: "{TINY_COLUMNS}"}}
model: {{hidden: 6}}
optim: {{batch_size: 8, max_epochs: 1}}
{more}""")
    stage_two = tmp_path / "tiny-vaa.yaml"
    stage_two.write_text(f"extends: {stage_two_extends}\nmodel: {{hidden: 6}}\noptim: {{batch_size: 8, max_epochs: 1}}\n{more}")
    return preset, stage_two


def make_tokenizer(vocab: Sequence[str]):
    """A WordPiece tokenizer over ``vocab``, built in memory (no download)."""
    import transformers

    return transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


def write_tiny_bert(
    folder: Path,
    *,
    hidden_size: int = 16,
    layers: int = 1,
    intermediate_size: int = 32,
    max_positions: int = 64,
    extra_words: Sequence[str] = (),
    seed: int | None = 0,
    **bert_options: Any,
) -> Path:
    """A WordPiece tokenizer over the toy words (plus ``extra_words``) and a
    randomly initialised BERT of the given size saved in ``folder``: an HF
    model for the tests, built in memory (no download). ``seed=None`` leaves
    torch's random state as it is; ``bert_options`` go to ``BertConfig``."""
    import transformers

    words = sorted({w for p in TOY_PAIRS for w in (p.a + " " + p.b).split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *extra_words]
    make_tokenizer(vocab).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        **bert_options,
    )
    if seed is not None:
        torch.manual_seed(seed)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_config(tmp_path):
    return make_tiny_config(tmp_path)


def tiny_data_section(folder: Path) -> dict[str, str]:
    """The ``data`` section for the toy task's files, written in ``folder``
    (48 training pairs, 16 validation pairs, generic format)."""
    train_file = write_pairs(folder / "train.tsv", 48, 0)
    valid_file = write_pairs(folder / "valid.tsv", 16, 1)
    return {"train": str(train_file), "valid": str(valid_file), "format": "generic", "columns": TINY_COLUMNS}


def make_tiny_config(tmp_path):
    """A two-epoch ESIM run on the toy task, in ``tmp_path``."""
    return apply_overrides(
        RunConfig(),
        {
            "data": tiny_data_section(tmp_path),
            "model": {"hidden": 8},
            "optim": {"batch_size": 8, "max_epochs": 2, "eval_batch_size": 16},
            "output": str(tmp_path / "run"),
            "progress": False,
            "log_every": 2,
        },
    )


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """(folder, model A's run, stage two's run): a tiny ESIM A and a one-epoch
    stage two on it, trained once for the whole session. Tests only read
    them (copy a run before changing it)."""
    import vaa

    tmp = tmp_path_factory.mktemp("tiny-runs")
    config = make_tiny_config(tmp)
    vaa.train(config)
    b = apply_overrides(
        config,
        {
            "vaa": {"model_a": config.output},
            "optim": {"max_epochs": 1},
            "output": str(tmp / "b"),
            "data": {"train": None, "valid": None},
        },
    )
    vaa.train_vaa(b)
    return tmp, config.output, b.output
