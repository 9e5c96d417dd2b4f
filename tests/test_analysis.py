"""Vulnerability analyses: AUC, sweep, the analysis folder, the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score, roc_curve

import vaa.vulnerability as vuln
from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim
from vaa.analysis.analyze import analyze_examples
from vaa.analysis.roc import auc_score, criterion_roc, roc_points
from vaa.checkpoint import save_model
from vaa.cli import main
from vaa.config import AttackConfig


def test_auc_agrees_with_scikit_learn_including_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 300).astype(bool)
        s = np.round(rng.normal(size=300) + y * 0.7, 1)  # rounding makes ties
        assert auc_score(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        fpr, tpr = roc_points(s, y)
        assert sk_auc(fpr, tpr) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        sk_fpr, sk_tpr, _ = roc_curve(y, s)
        assert sk_auc(sk_fpr, sk_tpr) == pytest.approx(sk_auc(fpr, tpr), abs=1e-12)


def test_criterion_roc_binary_and_one_vs_rest():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 200)
    values = rng.normal(size=400) - labels  # class 1 is *less* vulnerable
    r = criterion_roc(values, labels, ["a", "b"], "F2")
    assert r.binary and r.per_class[0].positive_class == "b"
    assert r.auc == pytest.approx(roc_auc_score(labels == 1, values))
    assert r.auc < 0.5 and r.auc_oriented == pytest.approx(1 - r.auc) and r.per_class[0].higher_for == "the rest"
    labels3 = np.repeat([0, 1, 2], 100)
    values3 = rng.normal(size=300) + labels3
    r3 = criterion_roc(values3, labels3, ["x", "y", "z"])
    assert [c.positive_class for c in r3.per_class] == ["x", "y", "z"]
    want = np.mean([roc_auc_score(labels3 == k, values3) for k in range(3)])
    assert r3.auc == pytest.approx(want)
    with pytest.raises(ValueError):
        criterion_roc(values, np.zeros(400, dtype=int), ["a", "b"])


def _examples(model):
    pairs = TOY_PAIRS * 4
    return model.featurize_all(pairs, TOY_LABELS), np.asarray([TOY_LABELS.index(p.label) for p in pairs])


def test_sweep_matches_single_measurements_and_shares_the_base_pass(monkeypatch):
    model = tiny_esim().eval()
    examples, _ = _examples(model)
    settings = [AttackConfig(norm=n, eps=e) for n in ("l2", "linf") for e in (0.01, 0.5)]
    calls = []
    original = vuln.forward_with_gradient
    monkeypatch.setattr(vuln, "forward_with_gradient", lambda m, b: (calls.append(1), original(m, b))[1])
    results = vuln.sweep(model, examples, settings, batch_size=8)
    assert len(calls) == 3  # 20 examples / 8 per batch: once per batch, not per setting
    for cfg, res in zip(settings, results):
        single = vuln.measure(model, examples, cfg, batch_size=7)
        np.testing.assert_allclose(res.f2, single.f2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.distance, single.distance, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(res.predicted, single.predicted)
    # a stronger attack moves V2 further
    assert results[1].distance.mean() > results[0].distance.mean()


def _attacked_one_by_one(model, examples, cfg):
    """F1, F2, ||V1 - V2||, A's prediction and the flip of each pair, from
    the attack primitives on one pair at a time (the analysis batches them)."""
    from vaa.attack import attack
    from vaa.data.batching import collate

    rows = []
    for example in examples:
        base, _, logits_adv, hidden_adv = attack(model, collate([example]), cfg)
        phi, log_psi = torch.softmax(base.logits, -1)[0], torch.log_softmax(logits_adv, -1)[0]
        predicted = int(base.logits.argmax())
        rows.append(
            {
                "F1": float(-(phi * log_psi).sum()),
                "F2": float(-log_psi[predicted]),
                "distance": float((base.hidden - hidden_adv).norm()),
                "predicted": TOY_LABELS.names[predicted],
                "flipped": int(logits_adv.argmax()) != predicted,
            }
        )
    return pd.DataFrame(rows)


def test_analysis_folder_holds_every_figure_and_table(tmp_path):
    model = tiny_esim().eval()
    examples, labels = _examples(model)
    ids = [f"pair{k}" for k in range(len(examples))]
    result = analyze_examples(
        model, examples, labels, TOY_LABELS.names, tmp_path, eps_list=(0.01, 1.0), batch_size=8, progress=False, ids=ids
    )
    for name in (
        "per_pair.csv",
        "per_class_F1.png",
        "per_class_F2.png",
        "per_class_distance.png",
        "roc.png",
        "sweep.csv",
        "sweep.md",
        "sweep.png",
        "theorem.txt",
        "theorem.png",
        "analysis.json",
        "report.md",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    # every row of per_pair.csv is its own pair's attack, recomputed here pair by pair from the primitives
    per_pair = pd.read_csv(tmp_path / "per_pair.csv")
    assert list(per_pair["id"]) == ids and list(per_pair["gold"]) == [TOY_LABELS.names[k] for k in labels]
    expected = _attacked_one_by_one(model, examples, AttackConfig())
    for column in ("F1", "F2", "distance"):
        np.testing.assert_allclose(per_pair[column], expected[column], rtol=1e-4, atol=1e-6, err_msg=column)
    assert list(per_pair["predicted"]) == list(expected["predicted"]) and list(per_pair["flipped"]) == list(expected["flipped"])
    # the figures of analysis.json from those recomputed values (scikit-learn's AUC, numpy's means)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    duplicate = labels == TOY_LABELS.index("duplicate")
    for criterion in ("F1", "F2", "distance"):
        roc = next(r for r in saved["roc"] if r["criterion"] == criterion)
        assert roc["auc"] == pytest.approx(roc_auc_score(duplicate, expected[criterion]), abs=1e-9)
        assert saved["per_class"][criterion]["duplicate"]["mean"] == pytest.approx(
            expected[criterion][duplicate].mean(), rel=1e-4
        )
    assert saved["flip_rate"] == pytest.approx(expected["flipped"].mean())
    assert saved["accuracy_of_A"] == pytest.approx(np.mean(expected["predicted"] == per_pair["gold"]))
    # the sweep: one row per criterion x norm x eps (plus the random control), each its setting's AUC
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    assert len(sweep) == 3 * 2 * 2 + 3 and set(sweep["direction"]) == {"fgsm", "random"}
    strong = _attacked_one_by_one(model, examples, AttackConfig(norm="linf", eps=1.0))
    row = sweep[(sweep["criterion"] == "F2") & (sweep["norm"] == "linf") & (sweep["eps"] == 1.0) & (sweep["direction"] == "fgsm")]
    assert float(row["auc"].iloc[0]) == pytest.approx(roc_auc_score(duplicate, strong["F2"]), abs=1e-9)
    assert float(row["flip_rate"].iloc[0]) == pytest.approx(strong["flipped"].mean())
    assert result["pairs"] == saved["pairs"] == len(examples)


def test_cli_vulnerability_for_one_pair_and_a_file(tmp_path, capsys):
    model = tiny_esim().eval()
    save_model(model, TOY_LABELS, tmp_path / "a")
    assert main(["vulnerability", str(tmp_path / "a"), "--pair", "the cat sat", "a cat sat", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "F1=" in out and "F2=" in out and "distance=" in out
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{'1' if p.label == 'duplicate' else '0'}\t{p.a}\t{p.b}\t{p.id}\n" for p in TOY_PAIRS))
    assert main(["vulnerability", str(tmp_path / "a"), str(data), "--output", str(tmp_path / "v.parquet"), "--no-progress"]) == 0
    table = pd.read_parquet(tmp_path / "v.parquet")
    assert list(table.columns) == ["id", "gold", "predicted", "confidence", "F1", "F2", "distance", "flipped"]
    assert len(table) == len(TOY_PAIRS) and (table["F2"] >= 0).all()


def _printed(out: str, label: str) -> float:
    """The number after ``=`` on the line starting with ``label``."""
    line = next(line for line in out.splitlines() if line.strip().startswith(label))
    return float(line.split("=")[-1].split()[0])


def test_cli_theorem_prints_closed_form_and_monte_carlo(capsys, tmp_path):
    from scipy.stats import norm

    n, d, sigma = 3, 1.5, 0.7
    assert (
        main(
            [
                "theorem",
                "--n",
                str(n),
                "--d",
                str(d),
                "--sigma",
                str(sigma),
                "--samples",
                "4000",
                "--plot",
                str(tmp_path / "t.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # Theorem 1 computed here: S = Phi(d / 2 sigma) - 1/2, P = (1 - 2S)/n + 2S
    s = norm.cdf(d / (2 * sigma)) - 0.5
    p = (1 - 2 * s) / n + 2 * s
    assert _printed(out, "S =") == pytest.approx(s, abs=1e-6)
    assert _printed(out, "P = (1 - 2S)/n + 2S") == pytest.approx(p, abs=1e-6)
    line = next(line for line in out.splitlines() if "Monte-Carlo" in line)
    estimate, error = (float(x) for x in line.split("=")[1].split()[0:3:2])  # "0.816167 +- 0.004924"
    assert 0 < error < 0.02 and abs(estimate - p) < 4 * error  # the simulation agrees with the closed form
    limit = next(line for line in out.splitlines() if "n -> infinity" in line)  # "P = 0.716023   (limit 2S = 0.716023)"
    assert float(limit.split("P =")[1].split()[0]) == pytest.approx(2 * s, abs=1e-6)  # P tends to 2S as n grows
    assert (tmp_path / "t.png").stat().st_size > 0


def test_macro_f1_ignores_classes_absent_from_the_file():
    from vaa.metrics import classification_report

    report = classification_report(np.array([0, 0, 0]), np.array([0, 0, 0]), ["a", "b", "c"])
    assert report["accuracy"] == 1.0 and report["macro_f1"] == 1.0


def test_analysis_of_single_class_data_still_writes_the_per_class_picture(tmp_path, caplog):
    model = tiny_esim().eval()
    examples, _ = _examples(model)
    labels = np.zeros(len(examples), dtype=int)
    with caplog.at_level(logging.INFO, logger="vaa"):
        result = analyze_examples(
            model, examples, labels, TOY_LABELS.names, tmp_path, eps_list=(0.01,), batch_size=8, progress=False
        )
    assert result["roc"] == [] and result["theorem"] == {}
    assert (tmp_path / "per_class_F2.png").exists() and (tmp_path / "report.md").exists() and not (tmp_path / "roc.png").exists()
    assert any("one class" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert pd.read_csv(tmp_path / "sweep.csv")["auc"].isna().all()


def test_probability_reference_scores_a_own_class_probability():
    from types import SimpleNamespace

    from vaa.analysis.analyze import probability_reference

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    # p(class 1) ranks: positives 0.4, 0.7; negatives 0.1, 0.55 -> 3 of 4 positive-negative pairs ordered right
    assert probability_reference(SimpleNamespace(probs=probs), labels, ["no", "yes"]) == {"yes": 0.75}
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    ref = probability_reference(SimpleNamespace(probs=three), np.array([0, 1, 2, 0]), ["e", "n", "c"])
    assert set(ref) == {"e", "n", "c"} and ref["n"] == 1.0 and ref["c"] == 1.0
