"""benchmarks/archive.py: finished runs kept without weights and without the
data's gold labels, and brought back as run folders that summarise exactly
as the originals did."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_pairs, write_tiny_presets
from vaa.cli import main
from vaa.experiments import summarize

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import archive  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A one-seed reproduction of the toy task with a test file."""
    tmp = tmp_path_factory.mktemp("archive")
    test = write_pairs(tmp / "test.tsv", 12, 2)
    preset, stage_two = write_tiny_presets(tmp)
    out = tmp / "out" / "toy"
    args = ["reproduce", "--preset", str(preset), "--stage-two-preset", str(stage_two), "--seeds", "0"]
    args += ["--variants", "vaa", "--output", str(out), "--test", str(test), "--no-progress"]
    assert main(args) == 0
    return tmp


def _rows(output: Path) -> dict:
    return summarize(output, [0], ["vaa"])["rows"]


def test_a_restored_run_summarises_as_the_original(finished, tmp_path):
    out, store = finished / "out", tmp_path / "archive"
    (out / "toy" / "robustness.json").write_text('{"eps": [0.1]}')  # what a benchmark wrote beside the runs
    assert archive.main(["save", "toy", "--out", str(out), "--archive", str(store)]) == 0
    kept = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    assert "toy/robustness.json" in kept and "toy/table3.json" in kept
    assert "toy/seed0/a/predictions/valid.npz" in kept and "toy/seed0/vaa/predictions/test.npz" in kept
    assert not any("checkpoints" in k or "vcache" in k or "features" in k for k in kept)  # no weights, no caches
    with np.load(store / "toy/seed0/a/predictions/valid.npz") as saved:
        assert "gold" not in saved.files  # the data's labels are never kept

    restored = tmp_path / "restored"
    assert archive.main(["restore", "toy", "--out", str(restored), "--archive", str(store)]) == 0
    for run in ("a", "vaa"):
        for split in ("valid", "test"):
            original = np.load(out / "toy/seed0" / run / "predictions" / f"{split}.npz")
            back = np.load(restored / "toy/seed0" / run / "predictions" / f"{split}.npz")
            assert sorted(back.files) == sorted(original.files)
            for key in original.files:
                np.testing.assert_array_equal(back[key], original[key])
    assert _rows(restored / "toy") == _rows(out / "toy")
    assert json.loads((restored / "toy" / "robustness.json").read_text()) == {"eps": [0.1]}
    # a second restore leaves what is there alone
    (restored / "toy/seed0/a/results.json").write_text("{}")
    assert archive.main(["restore", "toy", "--out", str(restored), "--archive", str(store)]) == 0
    assert json.loads((restored / "toy/seed0/a/results.json").read_text()) == {}


def test_restore_refuses_labels_that_changed_and_writes_nothing(finished, tmp_path, capsys):
    out, store = finished / "out", tmp_path / "archive"
    archive.main(["save", "toy", "--out", str(out), "--archive", str(store)])
    config = json.loads((store / "toy/seed0/a/config.json").read_text())
    moved = tmp_path / "valid.tsv"
    shutil.copyfile(config["data"]["valid"], moved)
    lines = moved.read_text().splitlines()
    flipped = lines[1].rsplit("\t", 1)
    lines[1] = f"{flipped[0]}\t{1 - int(flipped[1])}"  # one gold label differs from the scored one
    moved.write_text("\n".join(lines) + "\n")
    config["data"]["valid"] = str(moved)
    (store / "toy/seed0/a/config.json").write_text(json.dumps(config))

    restored = tmp_path / "restored"
    assert archive.main(["restore", "toy", "--out", str(restored), "--archive", str(store)]) == 2
    assert "the gold labels of valid" in capsys.readouterr().err
    assert not restored.exists()  # the other run, whose labels match, is not restored either
