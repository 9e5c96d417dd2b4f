"""train_valid_split: deterministic, stratified, disjoint, covering."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from vaa.data.pairs import DataError, Pair, PairDataset, ReadReport
from vaa.data.split import train_valid_split


def make(labels: list[str | None]) -> PairDataset:
    pairs = [Pair(a=f"a{i}", b=f"b{i}", label=label, id=str(i)) for i, label in enumerate(labels)]
    return PairDataset(pairs, ReadReport(path="mem", format="generic", rows=len(pairs), kept=len(pairs)))


def ids(data: PairDataset) -> list[str]:
    return [p.id for p in data]


def test_disjoint_and_covering():
    data = make(["x"] * 70 + ["y"] * 30)
    train, valid = train_valid_split(data, 0.2, seed=3)
    assert set(ids(train)).isdisjoint(ids(valid))
    assert sorted(ids(train) + ids(valid), key=int) == ids(data)
    assert len(valid) == 20 and len(train) == 80


def test_deterministic_per_seed():
    data = make(["x", "y", "z"] * 40)
    first = train_valid_split(data, 0.25, seed=7)
    again = train_valid_split(data, 0.25, seed=7)
    other = train_valid_split(data, 0.25, seed=8)
    assert ids(first[1]) == ids(again[1]) and ids(first[0]) == ids(again[0])
    assert ids(first[1]) != ids(other[1])


def test_independent_of_python_hash_seed():
    code = (
        "from vaa.data.pairs import Pair, PairDataset, ReadReport\n"
        "from vaa.data.split import train_valid_split\n"
        "pairs = [Pair(str(i), str(i), 'pqr'[i % 3], str(i)) for i in range(60)]\n"
        "valid = train_valid_split(PairDataset(pairs, ReadReport('mem', 'generic')), 0.3, seed=1)[1]\n"
        "print([p.id for p in valid])\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_stratified_keeps_label_proportions():
    data = make(["a"] * 600 + ["b"] * 300 + ["c"] * 100)
    train, valid = train_valid_split(data, 0.1, seed=0)
    assert valid.label_counts() == Counter({"a": 60, "b": 30, "c": 10})
    assert train.label_counts() == Counter({"a": 540, "b": 270, "c": 90})


def test_stratified_rounding_adds_up():
    data = make(["a"] * 7 + ["b"] * 5 + ["c"] * 3)
    train, valid = train_valid_split(data, 0.3, seed=0)
    assert len(valid) == round(15 * 0.3) and len(train) + len(valid) == 15


def test_unstratified_and_unlabelled():
    data = make([None] * 10)
    train, valid = train_valid_split(data, 0.3, seed=0, stratify=False)
    assert len(valid) == 3 and len(train) == 7
    assert len(train_valid_split(data, 0.3, seed=0)[1]) == 3


@pytest.mark.parametrize("n, fraction", [(2, 0.01), (2, 0.99), (3, 0.5), (5, 0.001)])
def test_never_an_empty_side(n, fraction):
    train, valid = train_valid_split(make(["x"] * n), fraction)
    assert len(train) >= 1 and len(valid) >= 1 and len(train) + len(valid) == n


def test_order_kept_and_subset_reports():
    train, valid = train_valid_split(make(["x", "y"] * 10), 0.5, seed=2)
    assert ids(train) == sorted(ids(train), key=int) and ids(valid) == sorted(ids(valid), key=int)
    assert train.report.path == "mem [train]" and valid.report.path == "mem [valid]"


def test_errors():
    with pytest.raises(DataError, match="at least 2"):
        train_valid_split(make(["x"]))
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="valid_fraction"):
            train_valid_split(make(["x", "y"]), bad)
