"""``vaa probe``: does a vulnerability feature say anything about the gold
label that model A's own output (or its hidden vector V1) does not?

The cheap gate before a stage-two run: for a trained A and a labelled file,
compute per-pair features with the library's attack code, then fit k-fold
cross-validated logistic regressions predicting the gold label from

    (a) A's log-probabilities,           (b) V1,
    (c) each of those plus one vulnerability feature,
    (d) the same with the feature measured under the random-direction control.

A feature is worth a stage-two run only where (c) beats (a) or (b) by more than
the folds' spread *and* (d) does not do as well: otherwise the attack adds
nothing B could not get from A without it.

Every pair is scored by a model that never saw its label: the folds partition
the pairs, and the standardisation and the regression are fitted on the
training part of each fold only (a scikit-learn pipeline refitted per fold).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AttackConfig, DataConfig
from ..data.sources import check_labels, read_file
from ..features import feature_values, flip_grid, pair_features
from ..inference import load_model
from ..metrics import mean_and_std
from ..runs import write_json

logger = logging.getLogger(__name__)

# Feature name -> (what it is, how it enters the regression). Every one is
# derived from the same batch_features pass.
FEATURES: dict[str, str] = {
    "F1": "F1 (cross-entropy of O~ against phi)",
    "F2": "F2 (-log psi of the predicted class)",
    "distance": "||V1 - V2||",
    "log_distance": "log ||V1 - V2||",
    "relative_distance": "||V1 - V2|| / ||V1||",
    "cosine": "cos(V1, V2)",
    "log_grad_norm": "log ||dJ/dE|| per sentence",
    "flip": "the attack flips the prediction",
    "log_flip_eps": "log smallest flipping eps (grid)",
    "targeted_loss_drop": "per class: loss drop of a targeted step",
    "targeted_log_flip_eps": "per class: log smallest eps that makes A predict it",
}
# Features with no random-direction version (they do not depend on the step's direction).
NO_RANDOM = {"log_grad_norm", "targeted_loss_drop", "targeted_log_flip_eps"}
BASELINES = {"log_probs": "A's log-probabilities", "v1": "V1"}
# Features that need more than one attacked pass (batch_features' optional outputs).
NEEDS = {
    "log_grad_norm": "grad_norm",
    "log_flip_eps": "flip_eps",
    "targeted_loss_drop": "targeted_loss_drop",
    "targeted_log_flip_eps": "targeted_flip_eps",
}


def feature_matrix(features: dict[str, np.ndarray], name: str) -> np.ndarray:
    """One feature as an [N, k] matrix (logs floored at a tiny value)."""
    value = np.asarray(feature_values(features, name), dtype=np.float64)
    return value.reshape(len(value), -1)


def cv_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds: (train indices, test indices), the test parts a
    partition of the pairs."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    smallest = counts[counts > 0].min()
    if folds < 2:
        raise ValueError(f"the probe needs at least 2 folds, got {folds}")
    if smallest < folds:
        raise ValueError(
            f"the probe's {folds} folds need at least {folds} pairs of every class; the rarest has {smallest} "
            "(give more pairs or fewer --folds)"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(len(labels)), labels)]


def fold_scores(
    x: np.ndarray, labels: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]], c: float = 1.0
) -> dict[str, np.ndarray]:
    """Accuracy and log-loss per fold of a standardised logistic regression
    fitted on each fold's training part only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(labels)
    acc, loss = [], []
    for train, test in folds:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x[train], labels[train])
        probs = model.predict_proba(x[test])
        acc.append(float((model.classes_[probs.argmax(1)] == labels[test]).mean()))
        loss.append(float(log_loss(labels[test], probs, labels=classes)))
    return {"accuracy": np.array(acc), "log_loss": np.array(loss)}


def compare(
    features: dict[str, np.ndarray],
    random_features: dict[str, np.ndarray] | None,
    labels: np.ndarray,
    names: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
) -> dict[str, Any]:
    """The probe's table as data: per baseline, its fold scores, then per
    feature the scores of baseline + feature and the gains over the baseline
    (accuracy up, log-loss down: both positive when the feature helps), with
    their standard deviation over folds; the same for the random version."""
    splits = cv_folds(labels, folds, seed)
    out: dict[str, Any] = {"folds": folds, "seed": seed, "pairs": int(len(labels)), "C": c, "baselines": {}}
    for base_name, base_label in BASELINES.items():
        base_x = feature_matrix(features, base_name)
        base = fold_scores(base_x, labels, splits, c)
        rows: dict[str, Any] = {}
        for name in names:
            row: dict[str, Any] = {"label": FEATURES[name]}
            for version, source in (("attack", features), ("random", random_features)):
                if source is None or (version == "random" and name in NO_RANDOM):
                    continue
                with_f = fold_scores(np.concatenate([base_x, feature_matrix(source, name)], 1), labels, splits, c)
                row[version] = {
                    "accuracy": mean_and_std(with_f["accuracy"]),
                    "log_loss": mean_and_std(with_f["log_loss"]),
                    "accuracy_gain": mean_and_std(with_f["accuracy"] - base["accuracy"]),
                    "log_loss_gain": mean_and_std(base["log_loss"] - with_f["log_loss"]),
                }
            rows[name] = row
        out["baselines"][base_name] = {
            "label": base_label,
            "accuracy": mean_and_std(base["accuracy"]),
            "log_loss": mean_and_std(base["log_loss"]),
            "features": rows,
        }
    return out


def probe_markdown(result: dict[str, Any]) -> str:
    """The probe as Markdown: one table per baseline (accuracy in %)."""
    lines = [
        f"Probe: {result['folds']}-fold cross-validated logistic regression (C = {result['C']}, seed {result['seed']}) "
        f"on {result['pairs']} labelled pairs; gains are (baseline + feature) − baseline per fold, mean ± std over folds; "
        "log-loss gain = baseline log-loss − with-feature log-loss (positive: the feature helps).",
        "",
    ]
    if "attack" in result:
        lines += [
            f"Attack: {result['attack']}; flip grid {result.get('flip_grid', '')}; control direction: "
            f"{result.get('control_direction')}. Attack flips {100 * result['flip_rate']:.2f}% of the pairs; "
            f"mean ||V1 - V2|| / ||V1||: {result['mean_relative_distance']:.4g} (control: {result['mean_relative_distance_random']})."
            if result.get("flip_rate") is not None
            else f"Attack: {result['attack']}.",
            "",
        ]
    for base in result["baselines"].values():
        lines += [
            f"### Baseline: {base['label']} — accuracy {100 * base['accuracy']['mean']:.2f} ± {100 * base['accuracy']['std']:.2f} %, "
            f"log-loss {base['log_loss']['mean']:.4f} ± {base['log_loss']['std']:.4f}",
            "",
            "| + feature | acc. gain (pts) | log-loss gain | random direction: acc. gain | random: log-loss gain |",
            "|---|---|---|---|---|",
        ]
        for row in base["features"].values():
            cells = []
            for version in ("attack", "random"):
                r = row.get(version)
                if r is None:
                    cells += ["—", "—"]
                    continue
                cells += [
                    f"{100 * r['accuracy_gain']['mean']:+.2f} ± {100 * r['accuracy_gain']['std']:.2f}",
                    f"{r['log_loss_gain']['mean']:+.4f} ± {r['log_loss_gain']['std']:.4f}",
                ]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def probe(
    checkpoint: str | Path,
    data: str | Path,
    output: str | Path | None = None,
    attack: AttackConfig | None = None,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
    names: Sequence[str] = tuple(FEATURES),
    random_control: bool = True,
    control_direction: str = "random",
    format: str = "auto",
    columns: str | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    progress: bool = True,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Run the probe for model A of ``checkpoint`` on a labelled file; write
    probe.md, probe.json and the per-pair features (features.npz) to ``output``.
    ``control_direction`` is the control's step: ``random`` (same norm as
    FGSM's) or ``random-matched`` (same ||V1 - V2|| as FGSM's)."""
    attack = attack if attack is not None else AttackConfig()
    if control_direction not in ("random", "random-matched"):
        raise ValueError(f"the probe's control direction must be random or random-matched, got {control_direction!r}")
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown probe feature(s) {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    loaded = load_model(checkpoint, raw=True)  # A itself: the probe scores its raw output, not a recalibration
    dataset = read_file(
        str(data), DataConfig(format=format, columns=columns, limit=limit, on_error=on_error), require_labels=True
    )
    check_labels(loaded.label_map, dataset)
    examples = loaded.featurize(dataset.pairs)
    labels = np.array([e["label"] for e in examples], dtype=np.int64)
    want = sorted({NEEDS[n] for n in names if n in NEEDS})  # the grids cost ~12 passes each: only when asked for
    started = time.perf_counter()
    features = pair_features(loaded.base, examples, attack, want, batch_size, progress)
    random_features = None
    if random_control:
        control = dataclasses.replace(attack, direction=control_direction)
        random_features = pair_features(
            loaded.base, examples, control, [w for w in want if w == "flip_eps"], batch_size, progress
        )
    seconds = time.perf_counter() - started
    logger.info(f"features of {len(examples)} pairs in {seconds:.1f} s; fitting {folds}-fold logistic regressions")
    result = compare(features, random_features, labels, names, folds, seed, c)
    result.update(
        {
            "attack": dataclasses.asdict(attack),
            "control_direction": control_direction if random_control else None,
            "flip_grid": [float(e) for e in flip_grid(attack)],
            "checkpoint": loaded.path,
            "data": str(data),
            "feature_seconds": round(seconds, 1),
            "flip_rate": float(features["flip"].mean()),
            "mean_relative_distance": float(features["relative_distance"].mean()),
            "mean_relative_distance_random": float(random_features["relative_distance"].mean()) if random_features else None,
        }
    )
    if output is not None:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "probe.json", result)
        (folder / "probe.md").write_text(probe_markdown(result))
        np.savez_compressed(
            folder / "features.npz",
            labels=labels,
            **{k: v for k, v in features.items() if k not in ("v1", "v2")},
            **({f"random_{k}": v for k, v in random_features.items() if k not in ("v1", "v2")} if random_features else {}),
        )
    return result
