"""Per-pair vulnerability features on hand-computed values, and the probe's
cross-validation (no pair's label in its own fold's training part)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import TOY_PAIRS, toy_batch
from vaa.analysis.probe import compare, cv_folds, feature_matrix, fold_scores, probe
from vaa.config import AttackConfig
from vaa.features import batch_features, flip_grid, scalar_columns
from vaa.vulnerability import criteria


def toy_step_logit_change(model, batch, labels, sign):
    """For the toy model, an L2 step of eps along sign * dCE(O, labels)/dE
    (per-sentence norm) changes the logits by eps * sum_k W_k u_k / sqrt(L_k),
    u_k the unit vector of sign * W_k^T (p - onehot(labels))."""
    logits = model(batch)
    p = torch.softmax(logits, -1)
    y = torch.nn.functional.one_hot(labels, model.num_labels).float()
    w, d = model.head[0].weight, model.embedding_dim
    change = torch.zeros_like(logits)
    for k, key in enumerate(("a_ids_mask", "b_ids_mask")):
        wk = w[:, k * d : (k + 1) * d]
        u = sign * (p - y) @ wk
        u = u / u.norm(dim=1, keepdim=True)
        change = change + (u @ wk.T) / batch[key].sum(1, keepdim=True).sqrt()
    return logits.detach(), change.detach()


def test_features_match_hand_computed_values(toy_model):
    batch = toy_batch(toy_model)
    cfg = AttackConfig(norm="l2", eps=0.3)
    out = batch_features(toy_model, batch, cfg, ["grad_norm", "flip_eps", "targeted_loss_drop", "targeted_flip_eps"])
    logits, change = toy_step_logit_change(toy_model, batch, toy_model(batch).argmax(-1), 1.0)
    adv = logits + 0.3 * change
    f1, f2 = criteria(logits, adv)
    np.testing.assert_allclose(out["F1"], f1.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["F2"], f2.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["log_probs"], torch.log_softmax(logits, -1).numpy(), rtol=1e-5)
    v1, v2 = out["v1"], out["v2"]
    d = np.linalg.norm(v1 - v2, axis=1)
    np.testing.assert_allclose(out["distance"], d, rtol=1e-5)
    np.testing.assert_allclose(out["relative_distance"], d / np.linalg.norm(v1, axis=1), rtol=1e-5)
    np.testing.assert_allclose(
        out["cosine"], (v1 * v2).sum(1) / np.linalg.norm(v1, axis=1) / np.linalg.norm(v2, axis=1), rtol=1e-5
    )
    # two sentences, each step of norm eps
    np.testing.assert_allclose(out["step_norm"], np.full(len(TOY_PAIRS), 0.3 * math.sqrt(2)), rtol=1e-5)
    np.testing.assert_array_equal(out["flip"], (adv.argmax(-1) != logits.argmax(-1)).numpy().astype(np.float32))
    # gradient norm per sentence: ||(1/L) W_k^T (p - y)|| * sqrt(L)
    p = torch.softmax(logits, -1)
    y = torch.nn.functional.one_hot(logits.argmax(-1), 2).float()
    w, dim = toy_model.head[0].weight, toy_model.embedding_dim
    for k, key in enumerate(("a_ids_mask", "b_ids_mask")):
        lengths = batch[key].sum(1).float()
        want = ((p - y) @ w[:, k * dim : (k + 1) * dim]).norm(dim=1) / lengths.sqrt()
        np.testing.assert_allclose(out["grad_norm"][:, k], want.detach().numpy(), rtol=1e-5)


def test_smallest_flipping_eps_is_the_first_grid_point_past_the_margin(toy_model):
    """The toy's logits move linearly along the FGSM direction: the margin
    O_pred - O_other hits zero at eps* = margin / slope, so the grid answer is
    the first grid point >= eps*."""
    batch = toy_batch(toy_model)
    cfg = AttackConfig(norm="l2", eps=0.5)
    grid = flip_grid(cfg)
    out = batch_features(toy_model, batch, cfg, ["flip_eps", "targeted_flip_eps", "targeted_loss_drop"])
    predicted = toy_model(batch).argmax(-1)
    logits, change = toy_step_logit_change(toy_model, batch, predicted, 1.0)
    other = 1 - predicted
    rows = torch.arange(len(TOY_PAIRS))
    margin = logits[rows, predicted] - logits[rows, other]
    slope = change[rows, other] - change[rows, predicted]
    crossing = (margin / slope).numpy()
    want = np.array([grid[grid >= c][0] if (grid >= c).any() else grid[-1] * 2 for c in crossing])
    np.testing.assert_allclose(out["flip_eps"], want)
    # targeted toward the other class: for two classes the same direction, so the same eps;
    # toward the predicted class: the floor of the grid / 2
    for i, c in enumerate(predicted.tolist()):
        assert out["targeted_flip_eps"][i, c] == pytest.approx(grid[0] / 2)
        assert out["targeted_flip_eps"][i, 1 - c] == pytest.approx(want[i])
    # targeted loss drop toward class c: CE(O, c) - CE(O + eps * change_c, c)
    for c in (0, 1):
        labels = torch.full_like(predicted, c)
        _, change_c = toy_step_logit_change(toy_model, batch, labels, -1.0)
        ce = lambda z: torch.nn.functional.cross_entropy(z, labels, reduction="none")  # noqa: E731, B023 - used in this iteration
        np.testing.assert_allclose(
            out["targeted_loss_drop"][:, c], (ce(logits) - ce(logits + 0.5 * change_c)).numpy(), rtol=1e-4, atol=1e-6
        )
        assert (out["targeted_loss_drop"][:, c] > 0).all()


def test_scalar_columns_take_logs_of_scale_quantities():
    features = {
        "distance": np.array([1.0, math.e]),
        "grad_norm": np.array([[1.0, 2.0], [3.0, 4.0]]),
        "F2": np.array([0.5, 0.25]),
        "flip_eps": np.array([0.01, 1.0]),
    }
    cols = scalar_columns(features, ["log_distance", "log_grad_norm", "F2", "log_flip_eps"])
    np.testing.assert_allclose(
        cols, [[0.0, 0.0, math.log(2), 0.5, math.log(0.01)], [1.0, math.log(3), math.log(4), 0.25, 0.0]], atol=1e-6
    )
    with pytest.raises(ValueError, match="unknown vulnerability scalar"):
        scalar_columns(features, ["loudness"])


def test_folds_partition_the_pairs_and_never_train_on_a_test_pair():
    labels = np.array([0, 1] * 15 + [2] * 6)
    folds = cv_folds(labels, 3, seed=0)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests.tolist()) == list(range(len(labels)))
    for train, test in folds:
        assert not set(train) & set(test)
        assert len(train) + len(test) == len(labels)
    with pytest.raises(ValueError, match="at least 7 pairs of every class"):
        cv_folds(labels, 7, seed=0)


def test_a_pair_identity_feature_cannot_leak_its_label():
    """One-hot pair ids let a regression memorise the labels it was fitted
    on: if a pair's label reached its own fold's training part, accuracy would
    be ~1; without a leak, unseen ids carry nothing and accuracy is the
    majority rate."""
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.array([0] * 30 + [1] * 30))
    ids = np.eye(len(labels))
    folds = cv_folds(labels, 5, seed=0)
    honest = fold_scores(ids, labels, folds, c=100.0)["accuracy"].mean()
    leaky = fold_scores(ids, labels, [(np.arange(len(labels)), test) for _, test in folds], c=100.0)["accuracy"].mean()
    assert leaky > 0.95
    assert honest < 0.65


def test_compare_finds_a_feature_that_carries_the_label_and_not_its_noise():
    rng = np.random.default_rng(1)
    n = 300
    labels = rng.integers(0, 2, n)
    informative = labels + 0.5 * rng.standard_normal(n)
    noise = rng.standard_normal(n)  # log_probs below: an A that knows nothing
    features = {"log_probs": rng.standard_normal((n, 2)), "v1": rng.standard_normal((n, 4)), "F2": informative}
    random = {"F2": noise}
    result = compare(features, random, labels, ["F2"], folds=5, seed=0)
    for base in result["baselines"].values():
        row = base["features"]["F2"]
        assert row["attack"]["accuracy_gain"]["mean"] > 0.15
        assert row["attack"]["log_loss_gain"]["mean"] > 0.1
        assert abs(row["random"]["accuracy_gain"]["mean"]) < 0.06
    np.testing.assert_allclose(feature_matrix({"flip_eps": np.array([1.0, math.e])}, "log_flip_eps"), [[0.0], [1.0]])


def _probe_valid(config, out, names: list[str]) -> dict:
    """``probe`` of ``config``'s trained run on 12 of its validation pairs, 2 folds, the features ``names``."""
    return probe(
        config.output,
        config.data.valid,
        out,
        folds=2,
        columns="a=a,b=b,label=y",
        format="generic",
        limit=12,
        progress=False,
        names=names,
    )


def test_probe_end_to_end_and_cli(tiny_config, tmp_path, capsys):
    from vaa.cli import main
    from vaa.stage_one import train

    train(tiny_config)
    out = tmp_path / "probe"
    result = _probe_valid(tiny_config, out, ["F2", "log_flip_eps", "targeted_loss_drop"])
    assert result["pairs"] == 12
    stored = json.loads((out / "probe.json").read_text())
    assert set(stored["baselines"]) == {"log_probs", "v1"}
    assert "random" in stored["baselines"]["v1"]["features"]["F2"]
    assert "random" not in stored["baselines"]["v1"]["features"]["targeted_loss_drop"]
    assert "log smallest flipping eps" in (out / "probe.md").read_text()
    assert np.load(out / "features.npz")["flip_eps"].shape == (12,)
    code = main(
        [
            "probe",
            tiny_config.output,
            tiny_config.data.valid,
            "--format",
            "generic",
            "--columns",
            "a=a,b=b,label=y",
            "--folds",
            "2",
            "--limit",
            "10",
            "--features",
            "F1",
            "--no-progress",
            "--control",
            "random-matched",
            "--output",
            str(tmp_path / "matched"),
        ]
    )
    assert code == 0 and "| F1 (cross-entropy" in capsys.readouterr().out
    matched = json.loads((tmp_path / "matched" / "probe.json").read_text())
    assert matched["control_direction"] == "random-matched"
    assert matched["mean_relative_distance_random"] == pytest.approx(matched["mean_relative_distance"], rel=0.05)
    assert (
        result["mean_relative_distance_random"] < 0.5 * result["mean_relative_distance"]
    )  # the plain random step barely moves V
    assert (
        main(
            [
                "probe",
                tiny_config.output,
                tiny_config.data.valid,
                "--format",
                "generic",
                "--columns",
                "a=a,b=b,label=y",
                "--features",
                "volume",
            ]
        )
        == 2
    )


def test_probe_computes_only_the_features_it_is_asked_for(tiny_config, tmp_path, monkeypatch):
    import vaa.analysis.probe as probe_module
    from vaa.stage_one import train

    train(tiny_config)
    asked: list[list[str]] = []
    real = probe_module.pair_features
    monkeypatch.setattr(
        probe_module, "pair_features", lambda model, ex, cfg, want, *a: asked.append(list(want)) or real(model, ex, cfg, want, *a)
    )
    _probe_valid(tiny_config, None, ["F2", "distance"])
    assert asked == [[], []]  # no gradient norms, no eps grids
    asked.clear()
    _probe_valid(tiny_config, None, ["log_flip_eps", "targeted_loss_drop"])
    assert asked == [["flip_eps", "targeted_loss_drop"], ["flip_eps"]]
