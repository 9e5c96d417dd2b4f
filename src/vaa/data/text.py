"""Tokenisation and vocabulary for word-vector models (ESIM over GloVe).

GloVe 6B is lowercased and tokenised in the Stanford/PTB style: punctuation
apart, clitics split off (``don't`` -> ``do n't``, ``john's`` -> ``john 's``),
but abbreviations (``u.s.``), numbers (``5,000``, ``3.5``) and hyphenated words
(``well-known``) kept whole. The tokenizer below reproduces that so that as many
tokens as possible find a pre-trained vector.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .names import NameIndex

PAD = "<pad>"
UNK = "<unk>"

_CLITIC_NT = re.compile(r"(\w)n't\b")
_CLITIC = re.compile(r"(\w)('s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(
    r"(?:[a-z]\.){2,}"  # abbreviations: u.s., e.g.
    r"|\d+(?:[.,:]\d+)*"  # numbers: 5,000 3.5 10:30
    r"|n't|'(?:s|re|ve|ll|d|m)\b"  # clitics split off above
    r"|\w+(?:[-']\w+)*"  # words, hyphenated words, o'clock
    r"|\.\.\.|--"  # multi-character punctuation
    r"|[^\w\s]"  # any other single symbol
)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split ``text`` into GloVe-style tokens."""
    if lowercase:
        text = text.lower()
    text = _CLITIC_NT.sub(r"\1 n't", text)
    text = _CLITIC.sub(r"\1 \2", text)
    return _TOKEN.findall(text)


class Vocab(NameIndex):
    """Word <-> index. Index 0 is padding, index 1 the unknown word."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}")
        super().__init__(words, "duplicate words in vocabulary")

    pad_index = 0
    unk_index = 1

    @property
    def words(self) -> list[str]:
        """Words in token-id order."""
        return self._names

    def index(self, word: str) -> int:
        """Token id of ``word``; the unknown word's id when it is not in the vocabulary."""
        position = self.position(word)
        return self.unk_index if position is None else position

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index(t) for t in tokens]

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1) -> Vocab:
        """Vocabulary from the training split: words seen at least ``min_count``
        times, most frequent first (ties alphabetical, so the result does not
        depend on row order)."""
        counts: Counter = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in (PAD, UNK)), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK, *ranked])

    def save(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls(Path(path).read_text(encoding="utf-8").split("\n")[:-1])
