"""``vaa analyze``: the paper's vulnerability analyses for one model A on one
labelled file, written to a folder.

    per_pair.csv           id, gold, predicted, F1, F2, ||V1-V2||, flipped (main setting)
    per_class_F1.png ...   Fig. 2 for F1, F2 and ||V1-V2||
    roc.png                Fig. 3a (F1 and F2, main setting)
    sweep.csv / sweep.md / sweep.png   Fig. 3b: AUC for criterion x norm x eps,
                           with the flip rate and mean ||V1-V2|| per setting
    theorem.txt / theorem.png          Theorem 1 on the measured criteria
    analysis.json / report.md          everything above in one place
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import expected_calibration_error, log_loss
from ..config import AttackConfig
from ..inference import load_model, run_validation_split
from ..metrics import mean_and_std
from ..models.base import PairModel
from ..runs import write_json
from ..vulnerability import Vulnerability, measure, sweep
from .defaults import DEFAULT_EPS
from .plots import plot_accuracy_curves, plot_per_class, plot_roc, plot_sweep
from .roc import ROCResult, criterion_roc
from .theorem import CriterionFit, fit_criterion, format_report

logger = logging.getLogger(__name__)

# F1 and F2 are the paper's criteria; ||V1 - V2|| is the raw feature behind
# them, scored the same way because it can carry more than the output does.
CRITERIA = ("F1", "F2", "distance")
NO_ATTACK = {"F1": "A's entropy", "F2": "-log max phi", "distance": "||V1||"}


def class_statistics(values: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean, std and count of a criterion per gold class."""
    out = {}
    for k, name in enumerate(class_names):
        v = values[labels == k]
        if v.size:
            out[name] = {**mean_and_std(v), "count": int(v.size)}
    return out


def _separable(labels: np.ndarray) -> bool:
    """ROC/AUC need at least two classes in the data."""
    return np.unique(labels).size >= 2


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def sweep_rows(
    results: Sequence[Vulnerability], settings: Sequence[AttackConfig], labels: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (setting, criterion): AUC, flip rate, signal size."""
    rows = []
    for cfg, res in zip(settings, results):
        for criterion in CRITERIA:
            roc = criterion_roc(res.criterion(criterion), labels, class_names, criterion) if _separable(labels) else None
            rows.append(
                {
                    "criterion": criterion,
                    "norm": cfg.norm,
                    "eps": cfg.eps,
                    "relative": cfg.relative,
                    "direction": cfg.direction,
                    "auc": roc.auc if roc else None,
                    "auc_oriented": roc.auc_oriented if roc else None,
                    "flip_rate": float(res.flipped.mean()),
                    "mean_distance": float(res.distance.mean()),
                    "median_distance": float(np.median(res.distance)),
                }
            )
    return rows


def no_attack_reference(main: Vulnerability, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """What A says about a pair without any attack, scored like each criterion:
    F1 and F2 at eps = 0 (A's entropy and -log max phi), and ||V1|| for
    ||V1 - V2||. The attack adds information only where a criterion beats this."""
    logp = np.log(np.clip(main.probs, 1e-12, 1.0))
    values = {"F1": -(main.probs * logp).sum(1), "F2": -logp.max(1), "distance": main.v1_norm}
    return {c: criterion_roc(v, labels, class_names, c).auc_oriented for c, v in values.items()}


def probability_reference(main: Vulnerability, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The strongest no-attack reference: the AUC of A's own probability of
    each class (one-vs-rest; class 1 alone for two classes). A vulnerability
    criterion that does not beat it tells nothing A's output does not."""
    present = [k for k in range(len(class_names)) if (labels == k).any()]
    positives = [present[1]] if len(present) == 2 else present
    return {
        class_names[k]: criterion_roc(main.probs[:, k], labels == k, ["rest", class_names[k]]).per_class[0].auc for k in positives
    }


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| criterion | norm | direction | eps | AUC | AUC (oriented) | flipped | mean ‖V1−V2‖ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['criterion']} | {r['norm']} | {r['direction']} | {r['eps']:g} | {_fmt(r['auc'])} | {_fmt(r['auc_oriented'])} | "
            f"{r['flip_rate']:.4f} | {r['mean_distance']:.4g} |"
        )
    return "\n".join(lines)


def analyze_examples(
    model: PairModel,
    examples: Sequence[Any],
    labels: np.ndarray,
    class_names: Sequence[str],
    output: str | Path,
    attack: AttackConfig | None = None,
    eps_list: Sequence[float] = DEFAULT_EPS,
    norms: Sequence[str] = ("l2", "linf"),
    run_sweep: bool = True,
    batch_size: int = 128,
    progress: bool = True,
    ids: Sequence[str] | None = None,
    title: str = "",
) -> dict[str, Any]:
    """All analyses for featurised, labelled examples (see module docstring):
    per-pair table, Fig. 2, Fig. 3a with its no-attack references, Theorem 1,
    the summary, the Fig. 3b sweep, and the report."""
    attack = attack if attack is not None else AttackConfig()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{title}: " if title else ""
    setting = f"{attack.norm}, eps {attack.eps:g}{' (relative)' if attack.relative else ''}"
    start = time.perf_counter()
    main = measure(model, examples, attack, batch_size, progress=progress)
    seconds = time.perf_counter() - start
    logger.info(f"vulnerability of {len(examples)} pairs in {seconds:.1f} s ({len(examples) / seconds:.1f} pairs/s)")
    write_per_pair(out / "per_pair.csv", main, labels, class_names, ids)
    stats = per_class_figures(main, labels, class_names, out, prefix, setting)
    rocs: list[ROCResult] = []
    reference: dict[str, float] = {}
    probability_auc: dict[str, float] = {}
    if _separable(labels):
        rocs = roc_figure(main, labels, class_names, out / "roc.png", f"{prefix}label from vulnerability alone ({setting})")
        for r in rocs:
            logger.info(f"AUC of {r.criterion} ({setting}): {r.auc:.4f} (oriented {r.auc_oriented:.4f})")
        reference = no_attack_reference(main, labels, class_names)
        logger.info(
            "AUC without attack (entropy, -log max phi, ||V1||): " + ", ".join(f"{c} {v:.4f}" for c, v in reference.items())
        )
        probability_auc = probability_reference(main, labels, class_names)
        logger.info("AUC of A's own class probability: " + ", ".join(f"{c} {v:.4f}" for c, v in probability_auc.items()))
    else:
        logger.warning("only one class in the data: no ROC/AUC and no Theorem 1 fit (per-class plots still written)")
    try:
        fits = theorem_fits(main, labels, class_names, out)
    except ValueError as exc:  # fewer than two classes with two pairs each
        logger.warning(f"no Theorem 1 fit: {exc}")
        fits = {}
    result = summary(main, labels, attack, seconds, rocs, reference, probability_auc, stats, fits)
    if run_sweep:
        result.update(
            sweep_figure(
                model,
                examples,
                attack,
                eps_list,
                norms,
                labels,
                class_names,
                out,
                reference,
                batch_size,
                progress,
                f"{prefix}criterion x norm x eps",
            )
        )
    write_json(out / "analysis.json", result)
    (out / "report.md").write_text(report_markdown(result, class_names, title))
    return result


def write_per_pair(
    path: Path, main: Vulnerability, labels: np.ndarray, class_names: Sequence[str], ids: Sequence[str] | None
) -> None:
    """per_pair.csv: each pair's gold and predicted class, F1, F2, ||V1 - V2||, flip and ||V1||."""
    import pandas as pd

    pd.DataFrame(
        {
            "id": list(ids) if ids is not None else range(len(labels)),
            "gold": [class_names[k] for k in labels],
            "predicted": [class_names[k] for k in main.predicted],
            "F1": main.f1,
            "F2": main.f2,
            "distance": main.distance,
            "flipped": main.flipped,
            "v1_norm": main.v1_norm,
        }
    ).to_csv(path, index=False)


def per_class_figures(
    main: Vulnerability, labels: np.ndarray, class_names: Sequence[str], out: Path, prefix: str, setting: str
) -> dict[str, dict[str, dict[str, float]]]:
    """Fig. 2 for each criterion (per_class_<criterion>.png) and the
    per-class statistics behind it."""
    stats = {}
    for name in CRITERIA:
        values = main.criterion(name)
        stats[name] = class_statistics(values, labels, class_names)
        label = "||V1 - V2||" if name == "distance" else name
        plot_per_class(
            values, labels, class_names, label, out / f"per_class_{name}.png", title=f"{prefix}{label} per gold class ({setting})"
        )
    return stats


def roc_figure(main: Vulnerability, labels: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> list[ROCResult]:
    """Fig. 3a: the ROC of each criterion alone."""
    rocs = [criterion_roc(main.criterion(c), labels, class_names, c) for c in CRITERIA]
    plot_roc(rocs, path, title=title)
    return rocs


def theorem_fits(main: Vulnerability, labels: np.ndarray, class_names: Sequence[str], out: Path) -> dict[str, CriterionFit]:
    """Theorem 1 fitted to each criterion (theorem.txt) and drawn for F2, the
    paper's criterion (theorem.png). ValueError when the data cannot be fitted."""
    fits = {c: fit_criterion(main.criterion(c), labels, list(class_names)) for c in CRITERIA}
    (out / "theorem.txt").write_text("\n\n".join(format_report(f, c) for c, f in fits.items()) + "\n")
    plot_accuracy_curves(out / "theorem.png", mark=fits["F2"])  # the paper's criterion; theorem.txt has all
    return fits


def summary(
    main: Vulnerability,
    labels: np.ndarray,
    attack: AttackConfig,
    seconds: float,
    rocs: Sequence[ROCResult],
    reference: dict[str, float],
    probability_auc: dict[str, float],
    stats: dict[str, Any],
    fits: dict[str, CriterionFit],
) -> dict[str, Any]:
    """What analysis.json records about the main attack setting."""
    pairs = len(labels)
    return {
        "pairs": pairs,
        "accuracy_of_A": float((main.predicted == labels).mean()),
        "log_loss_of_A": log_loss(main.probs, labels),
        "ece_of_A": expected_calibration_error(main.probs, labels),
        "attack": dataclasses.asdict(attack),
        "pairs_per_s": pairs / seconds,
        "seconds": seconds,
        "flip_rate": float(main.flipped.mean()),
        "mean_distance": float(main.distance.mean()),
        "roc": [r.to_json() for r in rocs],
        "no_attack_auc_oriented": reference,
        "a_probability_auc": probability_auc,
        "per_class": stats,
        "theorem": {c: dataclasses.asdict(f) for c, f in fits.items()},
    }


def sweep_figure(
    model: PairModel,
    examples: Sequence[Any],
    attack: AttackConfig,
    eps_list: Sequence[float],
    norms: Sequence[str],
    labels: np.ndarray,
    class_names: Sequence[str],
    out: Path,
    reference: dict[str, float],
    batch_size: int,
    progress: bool,
    title: str,
) -> dict[str, Any]:
    """Fig. 3b: every norm x eps with FGSM, plus the random-direction control
    at the main setting (sweep.csv, sweep.md, sweep.png); returns the
    ``sweep`` rows and ``sweep_seconds`` for analysis.json."""
    import pandas as pd

    settings = [dataclasses.replace(attack, norm=n, eps=float(e), direction="fgsm") for n in norms for e in eps_list]
    settings.append(dataclasses.replace(attack, direction="random"))  # the control: a random direction of the same norm
    start = time.perf_counter()
    results = sweep(model, examples, settings, batch_size, progress=progress)
    rows = sweep_rows(results, settings, labels, class_names)
    seconds = time.perf_counter() - start
    pd.DataFrame(rows).to_csv(out / "sweep.csv", index=False)
    (out / "sweep.md").write_text(sweep_markdown(rows) + "\n")
    plot_sweep([r for r in rows if r["direction"] == "fgsm"], out / "sweep.png", reference=reference, title=title)
    return {"sweep_seconds": seconds, "sweep": rows}


def report_markdown(result: dict[str, Any], class_names: Sequence[str], title: str = "") -> str:
    a = result["attack"]
    lines = [
        f"# Vulnerability analysis{': ' + title if title else ''}",
        "",
        f"{result['pairs']} pairs; accuracy of A {result['accuracy_of_A']:.4f} (log-loss {result['log_loss_of_A']:.4f}, "
        f"ECE {result['ece_of_A']:.4f}); attack {a['norm']} eps {a['eps']:g}"
        f"{' relative' if a['relative'] else ''} ({a['scope']} norm, {a['direction']}); "
        f"{result['flip_rate']:.2%} of predictions flipped; mean ||V1-V2|| {result['mean_distance']:.4g}; "
        f"{result['pairs_per_s']:.1f} pairs/s.",
        "",
        "## AUC of one criterion (Fig. 3a)",
        "",
    ]
    if result["roc"]:
        lines += [
            "AUC with the score = the criterion and the positive class = "
            + ("class 1" if len(result["roc"][0]["per_class"]) == 1 else "each class against the rest")
            + " (the paper's orientation: higher = more vulnerable = that class). The oriented figure, max(AUC, 1 - AUC), "
            "picks the direction after the fact and is not comparable with the paper's. References without any "
            f"attack: {', '.join(f'{c} -> {v}' for c, v in NO_ATTACK.items())} (oriented), and A's own class "
            "probability (the strongest).",
            "",
        ]
    for r in result["roc"]:
        per = "; ".join(f"{c['positive_class']} {c['auc']:.4f}" for c in r["per_class"])
        lines.append(
            f"- {r['criterion']}: AUC {per} (oriented {r['auc_oriented']:.4f}; without attack — "
            f"{NO_ATTACK[r['criterion']]}: {result['no_attack_auc_oriented'][r['criterion']]:.4f})"
        )
    if result.get("a_probability_auc"):
        lines.append(
            "- A's own probability of the class: " + "; ".join(f"{c} {v:.4f}" for c, v in result["a_probability_auc"].items())
        )
    if not result["roc"]:
        lines.append("- not computed: the data hold a single class")
    lines += [
        "",
        "## Per-class means (Fig. 2)",
        "",
        "| criterion | " + " | ".join(class_names) + " |",
        "|---|" + "---|" * len(class_names),
    ]
    for name, per in result["per_class"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{per[c]['mean']:.4g} ± {per[c]['std']:.3g}" if c in per else "—" for c in class_names)
            + " |"
        )
    plots = (
        ["per_class_F1.png", "per_class_F2.png", "per_class_distance.png"]
        + (["roc.png"] if result["roc"] else [])
        + (["theorem.png"] if result["theorem"] else [])
        + (["sweep.png"] if "sweep" in result else [])
    )
    lines += ["", "Plots: " + ", ".join(plots), ""]
    if "sweep" in result:
        lines += ["## Sweep (Fig. 3b)", "", sweep_markdown(result["sweep"]), ""]
    return "\n".join(lines)


def analyze(
    checkpoint: str | Path,
    data: str | Path | None,
    output: str | Path,
    attack: AttackConfig | None = None,
    eps_list: Sequence[float] = DEFAULT_EPS,
    norms: Sequence[str] = ("l2", "linf"),
    run_sweep: bool = True,
    format: str = "auto",
    columns: str | None = None,
    limit: int | None = None,
    batch_size: int = 128,
    progress: bool = True,
    on_error: str = "raise",
    labels: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Analyse model A of ``checkpoint`` (a stage-one model, or the A inside a
    VAA model) on the labelled file ``data``; with ``data=None``, on the
    validation split of the run that trained A. A runs on ``device``."""
    loaded = load_model(checkpoint, raw=True, device=device)  # the attack reads A's own output
    if data is None:
        dataset = run_validation_split(checkpoint, loaded.label_map, limit)
    else:
        dataset = loaded.read(data, format, columns, labels, limit, on_error, require_labels=True)
    examples = loaded.featurize(dataset.pairs)
    labels = np.asarray([e["label"] for e in examples])
    result = analyze_examples(
        loaded.base,
        examples,
        labels,
        loaded.label_map.names,
        output,
        attack,
        eps_list,
        norms,
        run_sweep,
        batch_size,
        progress,
        ids=[p.id for p in dataset.pairs],
        title=Path(str(data)).name if data is not None else "validation split",
    )
    result["checkpoint"] = loaded.path
    result["data"] = dataset.report.to_json()
    write_json(Path(output) / "analysis.json", result)
    return result
