"""Re-fitting the decision rule on validation (`vaa calibrate`), calibration
metrics, and the stored calibration applied by predict/evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vaa.calibration as calibration
from vaa.calibration import Calibration, CalibrationError, cross_fit, expected_calibration_error, fit, halves, log_loss, softmax


def _shifted(n: int, shift: np.ndarray, seed: int = 0, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the 'model' outputs softmax((z + shift) * T)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, shift.size))
    labels = np.array([rng.choice(shift.size, p=p) for p in softmax(z)])
    return softmax((z + shift) * temperature), labels


@pytest.mark.parametrize("method", ["temperature-bias", "logistic"])
def test_refit_recovers_a_prior_shift_and_raises_accuracy(method):
    shift = np.array([1.5, 0.0, -0.5])
    probs, labels = _shifted(20000, shift)
    rule = fit(probs, labels, method)
    if method == "temperature-bias":
        assert rule.temperature == pytest.approx(1.0, abs=0.05)
        bias = np.asarray(rule.bias)
        # the bias undoes the shift up to the softmax's constant
        assert np.allclose(bias - bias.mean(), -(shift - shift.mean()), atol=0.1)
    fresh_probs, fresh_labels = _shifted(20000, shift, seed=1)
    before = (fresh_probs.argmax(1) == fresh_labels).mean()
    after = (rule.apply(fresh_probs).argmax(1) == fresh_labels).mean()
    assert after > before + 0.02
    assert log_loss(rule.apply(fresh_probs), fresh_labels) < log_loss(fresh_probs, fresh_labels)


def test_refit_recovers_a_temperature():
    probs, labels = _shifted(20000, np.zeros(2), temperature=2.5)  # over-confident by 2.5x
    rule = fit(probs, labels)
    assert rule.temperature == pytest.approx(2.5, rel=0.08)
    assert expected_calibration_error(rule.apply(probs), labels) < expected_calibration_error(probs, labels) / 2


def test_identity_rule_changes_nothing():
    probs, _ = _shifted(500, np.array([0.3, -0.2, 0.0]))
    same = Calibration.identity(3).apply(probs)
    assert np.allclose(same, probs, atol=1e-9)
    assert (same.argmax(1) == probs.argmax(1)).all()


def test_expected_calibration_error_by_hand():
    # bin [0.6, 0.667): two pairs at confidence 0.6, one right -> |0.5 - 0.6| * 2/4
    # bin [0.933, 1.0]: two pairs at confidence 0.95, both right -> |1 - 0.95| * 2/4
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [0.95, 0.05], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.1 * 0.5 + 0.05 * 0.5)
    assert log_loss(probs, labels) == pytest.approx(-np.mean(np.log([0.6, 0.4, 0.95, 0.95])))
    # unlabelled pairs are ignored
    assert expected_calibration_error(np.vstack([probs, [[0.5, 0.5]]]), np.append(labels, -1)) == pytest.approx(0.075)


def test_halves_are_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 6 + [2] * 4)
    folds = halves(labels, seed=3)
    for value in (0, 1, 2):
        assert (folds[labels == value] == 0).sum() == (labels == value).sum() // 2
    assert (halves(labels, seed=3) == folds).all()
    assert not (halves(labels, seed=4) == folds).all()


def test_cross_fitting_never_scores_a_pair_with_a_rule_fitted_on_it(monkeypatch):
    probs, labels = _shifted(400, np.array([1.0, 0.0]))
    rows = {tuple(r) for r in probs}
    assert len(rows) == probs.shape[0]  # every pair identifiable by its row
    scored: list[tuple] = []

    class Recorder:
        def __init__(self, fitted_rows):
            self.fitted = {tuple(r) for r in fitted_rows}

        def apply(self, p):
            applied = {tuple(r) for r in p}
            assert not applied & self.fitted, "a pair was scored by a rule fitted on its own label"
            scored.extend(applied)
            return p

    monkeypatch.setattr(calibration, "fit", lambda p, y, method="temperature-bias": Recorder(p))
    out, folds = cross_fit(probs, labels)
    assert sorted(scored) == sorted(rows)  # every pair scored exactly once
    assert set(folds.tolist()) == {0, 1}


def test_fit_refuses_what_it_cannot_fit():
    probs = softmax(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(CalibrationError, match="two classes"):
        fit(probs, np.zeros(10, dtype=int))
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        fit(probs, np.arange(10) % 2, "isotonic")
    with pytest.raises(CalibrationError, match="invalid calibration record"):
        Calibration.from_json({"method": "temperature-bias", "temperature": float("nan"), "bias": [0.0, 0.0]})


GENERIC = {"format": "generic", "columns": "a=a,b=b,label=y"}


@pytest.fixture
def trained_run(tiny_config):
    from vaa.stage_one import train

    train(tiny_config)
    return tiny_config.output


def test_stored_calibration_survives_reload_and_is_applied_by_predict(trained_run, tmp_path):
    from vaa.inference import calibrate, evaluate, load_model, predict

    pairs = [("the cat is here", "where is the cat"), ("the dog is here", "where is the fish")]
    raw = np.array([[r["p_0"], r["p_1"]] for r in predict(trained_run, pairs=pairs)])
    report = calibrate(trained_run)
    saved = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert saved["calibration"]["fitted_on"]["pairs"] == 16  # the run's validation file
    assert (tmp_path / "run" / "calibration.png").stat().st_size > 0
    rule = Calibration.from_json(saved["calibration"])
    assert rule.temperature != pytest.approx(1.0)  # a rule that changes something, so the test can fail

    loaded = load_model(trained_run)
    assert loaded.calibration is not None and loaded.calibration.bias == rule.bias
    applied = np.array([[r["p_0"], r["p_1"]] for r in predict(trained_run, pairs=pairs)])
    assert np.allclose(applied, rule.apply(raw), atol=1e-6)
    again_raw = np.array([[r["p_0"], r["p_1"]] for r in predict(trained_run, pairs=pairs, raw=True)])
    assert np.allclose(again_raw, raw)

    valid = tmp_path / "valid.tsv"
    calibrated_report = evaluate(trained_run, valid, **GENERIC)
    raw_report = evaluate(trained_run, valid, raw=True, **GENERIC)
    assert calibrated_report["calibration"] is not None and raw_report["calibration"] is None
    assert calibrated_report["log_loss"] == pytest.approx(report["after_in_sample"]["log_loss"], abs=1e-5)
    assert raw_report["log_loss"] == pytest.approx(report["before"]["log_loss"], abs=1e-5)
    assert {"ece", "log_loss", "accuracy"} <= set(raw_report)


def test_a_calibration_for_other_weights_is_refused(trained_run, tmp_path):
    from vaa.inference import calibrate, load_model

    calibrate(trained_run)
    path = tmp_path / "run" / "calibration.json"
    saved = json.loads(path.read_text())
    saved["calibration"]["fingerprint"] = "0" * 32
    path.write_text(json.dumps(saved))
    with pytest.raises(CalibrationError, match="other weights"):
        load_model(trained_run)
    assert load_model(trained_run, raw=True).calibration is None


def test_calibrate_cli_on_a_given_file(trained_run, tmp_path, capsys, caplog):
    from vaa.cli import main

    flags = ["--format", "generic", "--columns", GENERIC["columns"]]
    assert main(["calibrate", trained_run, str(tmp_path / "train.tsv"), "--method", "logistic", *flags]) == 0
    err = capsys.readouterr().err  # the report is logged (INFO, stderr)
    assert "after cross fitted" in err and "logistic" in err
    saved = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert saved["calibration"]["method"] == "logistic" and saved["calibration"]["fitted_on"]["pairs"] == 48
    with caplog.at_level("INFO", logger="vaa.inference"):
        assert main(["evaluate", trained_run, str(tmp_path / "valid.tsv"), *flags]) == 0
    assert "ECE" in capsys.readouterr().out
    assert "applying the run's logistic calibration" in caplog.text  # the user is told the output is re-fitted


def test_calibrate_refuses_a_folder_in_use(trained_run, tmp_path):
    """A training still holding the run folder's lock keeps `vaa calibrate` out
    (and nothing is written)."""
    from vaa.inference import calibrate
    from vaa.run_folder import RunError, RunLock

    with RunLock(trained_run):
        with pytest.raises(RunError, match="in use"):
            calibrate(trained_run)
        assert not (tmp_path / "run" / "calibration.json").exists()
    calibrate(trained_run)
    assert (tmp_path / "run" / "calibration.json").exists()
