"""The full-scale presets: the paper's setting, files from user paths."""

from __future__ import annotations

import pytest

from vaa.cli import main
from vaa.config import load_preset


@pytest.mark.parametrize("dataset", ["qqp", "snli", "mnli"])
def test_full_presets_have_the_papers_setting(dataset):
    esim = load_preset(f"{dataset}-esim-full")
    assert esim.model.family == "esim" and esim.model.hidden == 300
    assert esim.model.vectors.endswith("glove.840B.300d.txt")
    assert (esim.optim.max_epochs, esim.optim.patience, esim.optim.batch_size, esim.optim.lr) == (64, 5, 64, 4e-4)
    bert = load_preset(f"{dataset}-bert-full")
    assert bert.model.family == "hf" and bert.model.path.endswith("bert-base-uncased")
    for config in (esim, bert):
        assert config.data.train and config.data.valid and config.data.test
        assert config.precision == "fp32"


def test_a_missing_full_scale_file_is_one_clear_line(tmp_path, capsys):
    code = main(
        [
            "train",
            "--preset",
            "snli-esim-full",
            "--train",
            str(tmp_path / "nowhere.jsonl"),
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere.jsonl" in err
