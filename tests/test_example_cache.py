"""Featurised pairs cached with the run: reused by a resume and by stage two,
never reused when the featuriser, labels or pairs change."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import TOY_LABELS, TOY_PAIRS
from vaa.config import apply_overrides
from vaa.data.example_cache import cache_key, featurize_cached
from vaa.data.pairs import LabelMap, Pair
from vaa.models import build_model
from vaa.models.esim import ESIM
from vaa.run_folder import foreign_entries
from vaa.stage_one import train
from vaa.stage_two import train_vaa


def test_cached_examples_equal_fresh_ones_and_the_key_follows_what_they_depend_on(tmp_path):
    torch.manual_seed(0)
    model = build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=4)
    first = featurize_cached(model, TOY_PAIRS, TOY_LABELS, tmp_path)
    assert len(list(tmp_path.glob("examples-*.npz"))) == 1
    again = featurize_cached(model, TOY_PAIRS, TOY_LABELS, tmp_path)
    assert again == first == model.featurize_all(TOY_PAIRS, TOY_LABELS)
    key = cache_key(model, TOY_PAIRS, TOY_LABELS)
    other_vocab = build_model("esim", TOY_PAIRS[:2], TOY_LABELS, hidden=4)
    truncated = ESIM.from_state({**model.spec(), "max_tokens": 2}, model.featurizer_state(), 2)
    edited = [Pair(p.a + " again", p.b, p.label, p.id) if i == 1 else p for i, p in enumerate(TOY_PAIRS)]
    assert key != cache_key(other_vocab, TOY_PAIRS, TOY_LABELS)
    assert key != cache_key(truncated, TOY_PAIRS, TOY_LABELS)
    assert key != cache_key(model, edited, TOY_LABELS)
    assert key != cache_key(model, TOY_PAIRS, LabelMap(list(reversed(TOY_LABELS.names))))
    # settings that do not change featurisation do not change the key (a restored model A hits stage one's cache)
    restored = ESIM.from_state({**model.spec(), "hidden": 16}, model.featurizer_state(), 2)
    assert key == cache_key(restored, TOY_PAIRS, TOY_LABELS)


def test_stage_two_and_a_rerun_read_the_examples_stage_one_cached(tiny_config, tmp_path, monkeypatch):
    config = apply_overrides(tiny_config, {"optim": {"max_epochs": 1}})
    train(config)
    cached = sorted(p.name for p in (Path(config.output) / "features").glob("examples-*.npz"))
    assert len(cached) == 2  # train and valid
    calls = []
    original = ESIM.featurize_all
    monkeypatch.setattr(ESIM, "featurize_all", lambda self, pairs, lm: calls.append(len(pairs)) or original(self, pairs, lm))
    b = apply_overrides(config, {"output": str(tmp_path / "b"), "vaa": {"model_a": config.output}})
    results = train_vaa(b)
    assert calls == [] and results["scores"]["valid"]["pairs"] == 16
    # read from model A's folder, never written there; features/ is vaa's own entry (--overwrite may replace it)
    assert sorted(p.name for p in (Path(config.output) / "features").iterdir()) == cached
    assert foreign_entries(config.output) == [] and foreign_entries(b.output) == []


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_cache_is_plain_arrays_and_a_pickle_in_its_place_is_never_run(tmp_path):
    import pickle

    import numpy as np

    model = ESIM.from_state(
        {**build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=4).spec(), "max_tokens": 2},
        build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=4).featurizer_state(),
        2,
    )
    fresh = featurize_cached(model, TOY_PAIRS, TOY_LABELS, tmp_path)
    cut = model.last_truncated
    assert cut[0] > 0  # the cap of 2 tokens cuts some pairs
    (path,) = tmp_path.glob("examples-*.npz")
    with np.load(path, allow_pickle=False) as npz:  # loads without pickle: integer and byte arrays only
        assert all(npz[name].dtype.kind in "iu" for name in npz.files)
    model.last_truncated = None
    assert featurize_cached(model, TOY_PAIRS, TOY_LABELS, tmp_path) == fresh
    assert model.last_truncated == cut  # a cache hit still reports the truncation (data.json)
    # a pickle planted under the cache's name is refused (featurised again), never executed
    marker = tmp_path / "executed"
    path.write_bytes(pickle.dumps([_Payload(marker)]))
    assert featurize_cached(model, TOY_PAIRS, TOY_LABELS, tmp_path) == fresh
    assert not marker.exists()
    with np.load(path, allow_pickle=False) as npz:  # and the cache was written again, as arrays
        assert "__meta__" in npz.files
