"""An ordered list of distinct names and each name's position: what a label
map (label name <-> class index) and a vocabulary (word <-> token id) both are.

One class, so that both check duplicates, compare and look up the same way;
each subclass says what an unknown name means (an error for a label, the
unknown-word id for a word)."""

from __future__ import annotations

from collections.abc import Sequence


class NameIndex:
    """Names in a fixed order; ``position(name)`` is the name's index."""

    def __init__(self, names: Sequence[str], duplicate_message: str = "duplicate names"):
        names = list(names)
        if len(set(names)) != len(names):
            raise ValueError(duplicate_message)
        self._names: list[str] = names
        self._positions = {n: i for i, n in enumerate(names)}

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._positions

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other._names == self._names

    __hash__ = None  # type: ignore[assignment]  (mutable-looking, compared by content)

    def position(self, name: str) -> int | None:
        """Index of ``name``, or None when it is not in the list."""
        return self._positions.get(name)
