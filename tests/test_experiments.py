"""vaa reproduce: runs per seed and variant, paired tests, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_pairs, write_tiny_presets
from vaa.cli import main


def _ece(probs: np.ndarray, gold: np.ndarray) -> float:
    """Top-label expected calibration error over equal-width confidence bins."""
    from vaa.calibration import ECE_BINS

    confidence, right = probs.max(1), probs.argmax(1) == gold
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            total += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return total


def test_reproduce_end_to_end(tmp_path, capsys):
    test = write_pairs(tmp_path / "test.tsv", 12, 2)
    preset, stage_two = write_tiny_presets(tmp_path, str(tmp_path / "esim-vaa-base.yaml"), more="log_every: 2\n")
    (tmp_path / "esim-vaa-base.yaml").write_text("extends: esim-vaa\n")
    out = tmp_path / "repro"
    args = [
        "reproduce",
        "--preset",
        str(preset),
        "--stage-two-preset",
        str(stage_two),
        "--seeds",
        "0",
        "1",
        "--output",
        str(out),
        "--test",
        str(test),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "table3.json").read_text())
    assert summary["splits"] == ["valid", "test"]
    assert set(summary["rows"]) == {"baseline", "vaa", "zeros", "random", "baseline_recal", "vaa_recal"}
    assert set(summary["vaa_vs_controls"]) == {"zeros", "random", "baseline_recal"}
    assert set(summary["recalibrated_vaa_vs_recalibrated_a"]) == {"valid", "test"}
    for name, folder in (("baseline", "a"), ("vaa", "vaa")):  # log-loss and ECE recomputed from the saved predictions
        saved = [np.load(out / f"seed{k}" / folder / "predictions" / "valid.npz") for k in (0, 1)]
        row = summary["rows"][name]["valid"]
        assert row["log_loss"] == pytest.approx(
            np.mean([-np.log(s["probs"][np.arange(16), s["gold"]]).mean() for s in saved]), rel=1e-6
        )
        assert row["ece"] == pytest.approx(np.mean([_ece(s["probs"].astype(np.float64), s["gold"]) for s in saved]), rel=1e-6)
    vaa = summary["rows"]["vaa"]["valid"]
    assert len(vaa["per_seed"]) == 2 and len(vaa["mcnemar_p_per_seed"]) == 2 and 0 < vaa["paired_bootstrap_p"] <= 1
    assert summary["rows"]["baseline"]["test"]["mean"] == pytest.approx(
        np.mean([json.loads((out / f"seed{k}" / "a" / "results.json").read_text())["scores"]["test"]["accuracy"] for k in (0, 1)])
    )
    for name in ("table3.md", "table3.png", "loss_seed0.png"):
        assert (out / name).exists()
    assert "+VAA" in (out / "table3.md").read_text()
    # a second call reuses every finished run
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().err.count("already finished") == 8  # logged: stderr


def test_demo_runs_the_whole_pipeline_on_synthetic_data(tmp_path):
    """Every headline figure of the demo recomputed from the files it saved:
    the predictions of each model, the per-pair criteria of the analysis."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from vaa.experiments import DEMO_EPS, demo

    folder = tmp_path / "demo"
    summary = demo(
        folder, overrides={"data": {"limit": 40}, "model": {"hidden": 6}, "optim": {"max_epochs": 1}, "progress": False}
    )
    assert json.loads((folder / "summary.json").read_text()) == summary
    for model, key in (("a", "valid_accuracy_a"), ("vaa", "valid_accuracy_vaa")):
        saved = np.load(folder / model / "predictions" / "valid.npz")
        assert summary[key] == pytest.approx(np.mean(saved["predicted"] == saved["gold"])), key
    names = json.loads((folder / "a" / "label_map.json").read_text())["names"]
    assert names[1] == "duplicate"  # the paper's orientation: class 1 is the positive class of the AUC
    per_pair = pd.read_csv(folder / "analysis" / "per_pair.csv")
    a_valid = np.load(folder / "a" / "predictions" / "valid.npz")
    # the analysis attacked model A on A's own validation split: its predictions are A's saved ones
    assert list(per_pair["predicted"]) == [names[k] for k in a_valid["predicted"]]
    assert list(per_pair["gold"]) == [names[k] for k in a_valid["gold"]]
    duplicate = (per_pair["gold"] == "duplicate").to_numpy()
    assert summary["auc_f2"] == pytest.approx(roc_auc_score(duplicate, per_pair["F2"]), abs=1e-9)
    assert summary["auc_a_probability"] == pytest.approx(roc_auc_score(duplicate, a_valid["probs"][:, 1]), abs=1e-6)
    assert summary["flip_rate"] == pytest.approx(per_pair["flipped"].mean())
    sweep = pd.read_csv(folder / "analysis" / "sweep.csv")
    assert sorted(set(sweep.loc[sweep["direction"] == "fgsm", "eps"])) == pytest.approx(sorted(DEMO_EPS))
    # stage two was trained from this model A, on the same data
    b_config = json.loads((folder / "vaa" / "config.json").read_text())
    assert (
        b_config["vaa"]["model_a"] == str(folder / "a")
        and json.loads((folder / "a" / "data.json").read_text())["train"]["format"] == "demo-synthetic"
    )


def test_summary_scores_labelled_pairs_only(tmp_path):
    from vaa.experiments import summarize

    gold = np.array([0, 1, -1, -1])
    for folder, predicted in (("a", [0, 1, 1, 0]), ("vaa", [0, 0, 1, 1])):
        (tmp_path / "seed0" / folder / "predictions").mkdir(parents=True)
        for split, g in (("valid", gold), ("test", np.full(4, -1))):
            np.savez(tmp_path / "seed0" / folder / "predictions" / f"{split}.npz", predicted=np.array(predicted), gold=g)
    summary = summarize(tmp_path, [0], ["vaa"])
    assert summary["splits"] == ["valid"]  # the unlabelled test file is not a scored split
    assert summary["rows"]["baseline"]["valid"]["mean"] == 1.0 and summary["rows"]["vaa"]["valid"]["mean"] == 0.5
    assert summary["rows"]["vaa"]["valid"]["pairs"] == 2
    assert summary["missing"] == []


def test_summary_names_runs_without_predictions(tmp_path):
    from vaa.experiments import summarize, table_markdown

    (tmp_path / "seed0" / "a").mkdir(parents=True)
    summary = summarize(tmp_path, [0], ["vaa"])
    assert summary["splits"] == [] and summary["missing"] == ["seed0/a/predictions/valid.npz"]
    assert "seed0/a/predictions/valid.npz" in table_markdown(summary)


def test_summary_compares_vaa_with_each_control(tmp_path):
    from vaa.experiments import summarize, table_markdown

    gold = np.zeros(10, dtype=int)
    runs = {"a": [0] * 5 + [1] * 5, "vaa": [0] * 8 + [1] * 2, "zeros": [0] * 6 + [1] * 4, "random": [0] * 9 + [1]}
    for folder, predicted in runs.items():
        (tmp_path / "seed0" / folder / "predictions").mkdir(parents=True)
        np.savez(tmp_path / "seed0" / folder / "predictions" / "valid.npz", predicted=np.array(predicted), gold=gold)
    summary = summarize(tmp_path, [0], ["vaa", "zeros", "random"])
    versus = summary["vaa_vs_controls"]
    assert set(versus) == {"zeros", "random"}
    assert versus["zeros"]["valid"]["delta"] == pytest.approx(0.2)
    assert versus["random"]["valid"]["delta"] == pytest.approx(-0.1)
    # zeros is right on a subset of the pairs +VAA gets right: 2 discordant pairs, both for +VAA
    assert versus["zeros"]["valid"]["mcnemar_p_per_seed"] == [pytest.approx(0.5)]
    assert "+VAA against each control" in table_markdown(summary)


def _write_outputs(folder, split, probs, gold):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{split}.npz", predicted=probs.argmax(1), gold=gold, probs=probs)


def test_recalibrated_baseline_is_cross_fitted_on_valid_and_fitted_on_all_of_valid_for_test(tmp_path):
    """A's probabilities are shifted toward class 0 (a prior shift): the
    re-fitted A gains, on validation (cross-fitted) and on test (fitted on
    the whole validation split), exactly as calibration.cross_fit/fit say."""
    from vaa.calibration import cross_fit, fit, softmax
    from vaa.experiments import summarize, table_markdown

    rng = np.random.default_rng(0)
    outputs = {}
    for split, n in (("valid", 3000), ("test", 2000)):
        z = rng.normal(0, 2, size=(n, 2))
        gold = np.array([rng.choice(2, p=p) for p in softmax(z)])
        outputs[split] = (softmax(z + np.array([1.5, 0.0])), gold, softmax(z + np.array([0.2, 0.0])))
    for split, (a_probs, gold, vaa_probs) in outputs.items():
        _write_outputs(tmp_path / "seed0" / "a" / "predictions", split, a_probs, gold)
        _write_outputs(tmp_path / "seed0" / "vaa" / "predictions", split, vaa_probs, gold)
    summary = summarize(tmp_path, [0], ["vaa"])
    rows = summary["rows"]
    a_valid, gold_valid, _ = outputs["valid"]
    a_test, gold_test, _ = outputs["test"]
    crossed, _ = cross_fit(a_valid, gold_valid, seed=0)
    assert rows["baseline_recal"]["valid"]["mean"] == pytest.approx((crossed.argmax(1) == gold_valid).mean())
    refit_test = fit(a_valid, gold_valid).apply(a_test)
    assert rows["baseline_recal"]["test"]["mean"] == pytest.approx((refit_test.argmax(1) == gold_test).mean())
    for split in ("valid", "test"):
        assert rows["baseline_recal"][split]["delta_vs_baseline"] > 0.02  # the prior shift is undone
        assert rows["baseline_recal"][split]["ece"] < rows["baseline"][split]["ece"]
    assert "A, recalibrated on validation (no training)" in table_markdown(summary)


def test_summary_adds_adversarially_trained_baselines_with_paired_tests(tmp_path):
    from vaa.experiments import summarize, table_markdown

    gold = np.zeros(10, dtype=int)
    runs = {"a": [0] * 5 + [1] * 5, "a-fgm": [0] * 7 + [1] * 3, "a-pgd": [0] * 4 + [1] * 6, "vaa": [0] * 8 + [1] * 2}
    for folder, predicted in runs.items():
        (tmp_path / "seed0" / folder / "predictions").mkdir(parents=True)
        np.savez(tmp_path / "seed0" / folder / "predictions" / "valid.npz", predicted=np.array(predicted), gold=gold)
    summary = summarize(tmp_path, [0], ["vaa"], baselines=["fgm", "pgd"])
    assert list(summary["rows"])[:3] == ["baseline", "a-fgm", "a-pgd"]
    assert summary["rows"]["a-fgm"]["valid"]["delta_vs_baseline"] == pytest.approx(0.2)
    assert summary["rows"]["a-pgd"]["valid"]["delta_vs_baseline"] == pytest.approx(-0.1)
    # +VAA against each adversarially trained A, on the same pairs
    assert summary["vaa_vs_controls"]["a-fgm"]["valid"]["delta"] == pytest.approx(0.1)
    assert summary["vaa_vs_controls"]["a-pgd"]["valid"]["delta"] == pytest.approx(0.4)
    assert summary["vaa_vs_controls"]["a-pgd"]["valid"]["mcnemar_p_per_seed"] == [pytest.approx(2 * 0.5**4)]
    text = table_markdown(summary)
    assert "| A + FGM adversarial training |" in text and "+VAA vs A + PGD adversarial training" in text
    # without the flag the table is as before
    assert "a-fgm" not in summarize(tmp_path, [0], ["vaa"])["rows"]


def test_reproduce_with_baselines_trains_adversarial_a_beside_a(tmp_path):
    from vaa.config import RunConfig
    from vaa.experiments import reproduce

    preset, stage_two = write_tiny_presets(tmp_path)
    out = tmp_path / "repro"
    summary = reproduce(
        str(preset),
        out,
        seeds=[3],
        stage_two_preset=str(stage_two),
        variants=["vaa"],
        baselines=["fgm"],
        overrides_a={"optim": {"patience": 2}, "progress": False},
        overrides_b={"progress": False},
        overrides_adversarial={"train": {"adversarial_eps": 0.3}},
    )
    a = RunConfig.load(out / "seed3" / "a" / "config.json")
    fgm = RunConfig.load(out / "seed3" / "a-fgm" / "config.json")
    assert a.train.adversarial_training == "none" and a.train.adversarial_eps == 1.0
    assert fgm.train.adversarial_training == "fgm" and fgm.train.adversarial_eps == 0.3
    assert (fgm.seed, fgm.data, fgm.optim) == (a.seed, a.data, a.optim)  # same seed, data, budget caps
    assert set(summary["rows"]) >= {"baseline", "a-fgm", "vaa"}
    assert "delta_vs_baseline" in summary["rows"]["a-fgm"]["valid"] and "a-fgm" in summary["vaa_vs_controls"]
    assert "A + FGM adversarial training" in (out / "table3.md").read_text()


def test_reproduce_reuses_the_model_a_of_another_reproduction(tmp_path, capsys):
    import os

    from vaa.config import RunConfig

    preset, stage_two = write_tiny_presets(tmp_path)
    first = tmp_path / "first"
    common = ["--stage-two-preset", str(stage_two), "--seeds", "0", "--no-progress"]
    assert main(["reproduce", "--preset", str(preset), "--variants", "vaa", "--output", str(first), *common]) == 0
    a_dir = first / "seed0" / "a"
    files = lambda folder: {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}  # noqa: E731
    a_before, vaa_before = files(a_dir), files(first / "seed0" / "vaa")

    # a stage-two setting and its control on the same A, without training A again
    second = tmp_path / "second"
    args = ["reproduce", "--reuse-a", str(first), "--variants", "vaa", "permuted", "--set-b", "vaa.normalize=layernorm"]
    assert main([*args, "--output", str(second), *common]) == 0
    link = second / "seed0" / "a"
    assert link.is_symlink() and link.resolve() == a_dir.resolve()
    assert files(a_dir) == a_before  # A is only read
    b = RunConfig.load(second / "seed0" / "vaa" / "config.json")
    assert os.path.samefile(b.vaa.model_a, a_dir) and b.vaa.normalize == "layernorm"
    assert RunConfig.load(second / "seed0" / "permuted" / "config.json").vaa.normalize == "layernorm"
    summary = json.loads((second / "table3.json").read_text())
    reference = json.loads((first / "table3.json").read_text())
    assert summary["rows"]["baseline"]["valid"]["per_seed"] == reference["rows"]["baseline"]["valid"]["per_seed"]
    assert "permuted" in summary["vaa_vs_controls"]
    assert "already finished" not in capsys.readouterr().err  # A was not even opened for training

    # a linked stage-two run is read as it is, never trained or written through the link
    third = tmp_path / "third"
    (third / "seed0").mkdir(parents=True)
    (third / "seed0" / "vaa").symlink_to(first / "seed0" / "vaa", target_is_directory=True)
    assert main(["reproduce", "--reuse-a", str(first), "--variants", "vaa", "--output", str(third), *common]) == 0
    assert files(first / "seed0" / "vaa") == vaa_before
    assert json.loads((third / "table3.json").read_text())["rows"]["vaa"] == reference["rows"]["vaa"]

    # no finished A to reuse, or no preset at all: one-line errors, nothing trained
    capsys.readouterr()
    assert main(["reproduce", "--reuse-a", str(tmp_path / "none"), "--output", str(tmp_path / "x"), *common]) == 2
    assert "holds no finished model A" in capsys.readouterr().err
    assert main(["reproduce", "--output", str(tmp_path / "y"), *common]) == 2
    assert "needs --preset" in capsys.readouterr().err
    assert not (tmp_path / "x" / "seed0" / "vaa").exists() and not (tmp_path / "y").exists()
