"""Core data types: a sentence pair, a label map, a read report and the errors
readers raise.

Everything downstream (tokenisers, models, the attack, reports) consumes these
types only, so a new file format never touches model code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .names import NameIndex


class DataError(ValueError):
    """Bad input data. The message always names the file and, where there is
    one, the line, so that a user can open the file and fix it."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


@dataclass(frozen=True)
class Pair:
    """One sentence pair. ``label`` is the label's *name* (``None`` when the
    file carries no label, e.g. a test file); ``id`` is the id from the file,
    or ``"<file line>"`` when the format has none."""

    a: str
    b: str
    label: str | None
    id: str


class LabelMap(NameIndex):
    """A fixed bijection between label names and class indices.

    It is stored with every checkpoint and checked whenever data meets a model,
    so that index 1 can never silently mean "entailment" for one file and
    "neutral" for another.
    """

    def __init__(self, names: Sequence[str]):
        names = [str(n) for n in names]
        if not names:
            raise ValueError("a label map needs at least one label")
        super().__init__(names, f"duplicate label names in {names}")

    @property
    def names(self) -> list[str]:
        """Label names in class-index order."""
        return self._names

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r})"

    def index(self, name: str) -> int:
        """Class index of ``name``; ``KeyError`` names the known labels."""
        position = self.position(name)
        if position is None:
            raise KeyError(f"unknown label {name!r}; known labels: {self.names}")
        return position

    def name(self, index: int) -> str:
        return self.names[index]

    def to_json(self) -> dict:
        return {"names": self.names}

    @classmethod
    def from_json(cls, obj: dict) -> LabelMap:
        return cls(obj["names"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_labels(cls, labels: Iterable[str | None], preferred: Sequence[str] | None = None) -> LabelMap:
        """Build a map from the labels seen in a training file.

        Labels listed in ``preferred`` come first in that order (so SNLI and
        MultiNLI share one map); the rest follow sorted, which makes the map
        independent of row order."""
        seen = {label for label in labels if label is not None}
        names = [p for p in (preferred or []) if p in seen]
        names += sorted(seen - set(names))
        return cls(names)


@dataclass
class ReadReport:
    """What a reader did: rows read, rows kept, and rows skipped by reason."""

    path: str
    format: str
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def summary(self) -> str:
        text = f"{self.path} ({self.format}): {self.kept} pairs kept of {self.rows} rows"
        if self.skipped:
            parts = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
            text += f"; skipped: {parts}"
        return text

    def to_json(self) -> dict:
        return {"path": self.path, "format": self.format, "rows": self.rows, "kept": self.kept, "skipped": dict(self.skipped)}


@dataclass
class PairDataset:
    """Pairs read from one source, with the report of how they were read."""

    pairs: list[Pair]
    report: ReadReport

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)

    def __getitem__(self, i: int) -> Pair:
        return self.pairs[i]

    @property
    def labelled(self) -> bool:
        """True when every pair has a gold label."""
        return bool(self.pairs) and all(p.label is not None for p in self.pairs)

    def label_counts(self) -> Counter:
        return Counter(p.label for p in self.pairs if p.label is not None)

    def labels(self) -> list[str | None]:
        return [p.label for p in self.pairs]

    def subset(self, indices: Sequence[int], name: str) -> PairDataset:
        """A new dataset holding the given pairs (used by splits and --limit)."""
        report = ReadReport(path=f"{self.report.path} [{name}]", format=self.report.format, rows=len(indices), kept=len(indices))
        return PairDataset([self.pairs[i] for i in indices], report)
