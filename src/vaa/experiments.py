"""``vaa reproduce``: the paper's Table 3 comparison, with controls, over seeds.

For every seed: model A (stage one), then three stage-two runs from that same A
on the same data and seed:

- ``vaa``: the paper's stage two (V from the FGSM attack);
- ``zeros``: V replaced by zeros — the same extra training without any
  vulnerability (does the gain come from V, or from training longer?);
- ``random``: E~ from a random direction of the same norm (does it come from
  the *adversarial* direction?).

The summary gives mean ± std over seeds per split, and paired significance
tests of each variant against the baseline A on the same pairs: an exact
McNemar test per seed and a paired bootstrap of the seed-averaged accuracy
difference. Every run is an ordinary run folder, so an interrupted
reproduction resumes where it stopped and finished runs are reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import binomtest

from .analysis.plots import plot_losses
from .config import RunConfig, apply_overrides, load_preset
from .runs import write_json
from .stage_one import train
from .stage_two import train_vaa
from .training import read_jsonl

VARIANTS: dict[str, dict[str, Any]] = {
    "vaa": {},
    "zeros": {"vaa": {"vulnerability": "zeros"}},
    "random": {"attack": {"direction": "random"}},
}
LABELS = {"baseline": "baseline (model A)", "vaa": "+VAA", "zeros": "control: V = 0 (extra training only)",
          "random": "control: random direction, same norm"}


def stage_one_config(preset: str, seed: int, output: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Model A's config for one seed of a reproduction."""
    config = apply_overrides(load_preset(preset), overrides or {}, source="stage-one overrides")
    return apply_overrides(config, {"seed": seed, "output": str(Path(output) / f"seed{seed}" / "a")})


def stage_two_config(preset: str, a_config: RunConfig, variant: str, output: str | Path,
                     overrides: dict[str, Any] | None = None) -> RunConfig:
    """A stage-two variant's config: A's data, seed and threads; the variant's settings."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} ({', '.join(VARIANTS)})")
    config = apply_overrides(load_preset(preset), overrides or {}, source="stage-two overrides")
    config = apply_overrides(config, VARIANTS[variant], source=f"variant {variant}")
    return dataclasses.replace(
        apply_overrides(config, {"vaa": {"model_a": a_config.output}, "seed": a_config.seed,
                                 "output": str(Path(output) / f"seed{a_config.seed}" / variant)}),
        data=a_config.data, threads=a_config.threads, progress=a_config.progress)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided McNemar test on paired correctness."""
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def paired_bootstrap_p(correct_base: np.ndarray, correct_other: np.ndarray, resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of the seed-averaged accuracy difference, resampling
    pairs (the same resample for every seed). Inputs are [seeds, pairs]."""
    diff = (correct_other.astype(np.float64) - correct_base.astype(np.float64)).mean(0)
    rng = np.random.default_rng(seed)
    n = diff.size
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        idx = rng.integers(0, n, size=(min(1000, resamples - start), n))
        means[start:start + idx.shape[0]] = diff[idx].mean(1)
    observed = diff.mean()
    # shift the bootstrap distribution to the null hypothesis (no difference)
    return float(min(1.0, (np.abs(means - observed) >= abs(observed)).mean() + 1.0 / resamples))


def _load_predictions(run: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = run / "predictions" / f"{split}.npz"
    if not path.exists():
        return None
    data = np.load(path)
    return data["predicted"], data["gold"]


def summarize(output: str | Path, seeds: Sequence[int], variants: Sequence[str], title: str = "") -> dict[str, Any]:
    """Table 3 from finished runs: accuracy mean ± std and paired tests."""
    output = Path(output)
    rows: dict[str, Any] = {}
    correct: dict[str, dict[str, np.ndarray]] = {}
    splits: list[str] = []
    missing: list[str] = []
    for split in ("valid", "test"):
        base = [_load_predictions(output / f"seed{k}" / "a", split) for k in seeds]
        if any(b is None for b in base):
            if split == "valid":
                missing += [f"seed{k}/a/predictions/valid.npz" for k, b in zip(seeds, base) if b is None]
            continue
        gold = base[0][1]
        labelled = gold >= 0  # unlabelled pairs (a test file without labels) are not scored
        if labelled.any():
            splits.append(split)
    for name in ["baseline", *variants]:
        folder = "a" if name == "baseline" else name
        row: dict[str, Any] = {"label": LABELS.get(name, name)}
        for split in splits:
            per_seed = []
            for k in seeds:
                loaded = _load_predictions(output / f"seed{k}" / folder, split)
                if loaded is None:
                    missing.append(f"seed{k}/{folder}/predictions/{split}.npz")
                    per_seed = []
                    break
                predicted, gold = loaded
                per_seed.append((predicted == gold)[gold >= 0])
            if not per_seed:
                continue
            matrix = np.stack(per_seed)
            correct.setdefault(name, {})[split] = matrix
            acc = matrix.mean(1)
            row[split] = {"per_seed": acc.tolist(), "mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                          "pairs": int(matrix.shape[1])}
        rows[name] = row
    for name in variants:
        for split in splits:
            if split not in correct.get(name, {}) or split not in correct.get("baseline", {}):
                continue
            rows[name][split].update(_paired(correct["baseline"][split], correct[name][split], "delta_vs_baseline"))
    # the question the controls answer: does +VAA beat the same stage two without the attack's signal?
    versus: dict[str, Any] = {}
    for name in variants:
        if name == "vaa" or "vaa" not in correct or name not in correct:
            continue
        for split in splits:
            if split in correct["vaa"] and split in correct[name]:
                versus.setdefault(name, {})[split] = _paired(correct[name][split], correct["vaa"][split], "delta")
    return {"title": title, "seeds": list(seeds), "variants": list(variants), "splits": splits, "rows": rows,
            "vaa_vs_controls": versus, "missing": missing}


def _paired(base: np.ndarray, other: np.ndarray, delta_key: str) -> dict[str, Any]:
    """Accuracy difference (other - base) and its paired tests; inputs are [seeds, pairs]."""
    return {delta_key: float(other.mean() - base.mean()), "mcnemar_p_per_seed": [mcnemar_p(b, o) for b, o in zip(base, other)],
            "paired_bootstrap_p": paired_bootstrap_p(base, other)}


def table_markdown(summary: dict[str, Any]) -> str:
    """The summary laid out like the paper's Table 3 (accuracy in %)."""
    splits = summary["splits"]
    head = "| model | " + " | ".join(f"{s} acc. (mean ± std, %) | Δ vs A | McNemar p per seed | bootstrap p" for s in splits) + " |"
    lines = [f"### {summary['title']}" if summary["title"] else "", f"Seeds {summary['seeds']}.", "", head,
             "|---|" + "---|---|---|---|" * len(splits)]
    for name, row in summary["rows"].items():
        cells = []
        for s in splits:
            r = row.get(s)
            if r is None:
                cells += ["—"] * 4
                continue
            cells.append(f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}")
            if "delta_vs_baseline" in r:
                cells += [f"{100 * r['delta_vs_baseline']:+.2f}", ", ".join(f"{p:.3g}" for p in r["mcnemar_p_per_seed"]),
                          f"{r['paired_bootstrap_p']:.3g}"]
            else:
                cells += ["", "", ""]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    if summary.get("missing"):
        lines += ["", "Not in the table (no saved predictions): " + ", ".join(summary["missing"])]
    versus = summary.get("vaa_vs_controls", {})
    if versus:
        lines += ["", "+VAA against each control (same seeds, same pairs):", "",
                  "| +VAA vs | split | Δ (+VAA − control) | McNemar p per seed | bootstrap p |", "|---|---|---|---|---|"]
        for name, per_split in versus.items():
            for split, r in per_split.items():
                lines.append(f"| {LABELS.get(name, name)} | {split} | {100 * r['delta']:+.2f} | "
                             f"{', '.join(f'{p:.3g}' for p in r['mcnemar_p_per_seed'])} | {r['paired_bootstrap_p']:.3g} |")
    return "\n".join(lines).strip() + "\n"


def plot_table(summary: dict[str, Any], path: Path) -> Path:
    """Accuracy per variant with the seeds' spread, one panel per split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = [s for s in summary["splits"] if any(s in r for r in summary["rows"].values())]
    fig = Figure(figsize=(5 * max(1, len(splits)), 4.2))
    for k, split in enumerate(splits):
        ax = fig.add_subplot(1, len(splits), k + 1)
        names = [n for n, r in summary["rows"].items() if split in r]
        means = [100 * summary["rows"][n][split]["mean"] for n in names]
        stds = [100 * summary["rows"][n][split]["std"] for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(names))])
        for i, n in enumerate(names):
            ax.scatter([i] * len(summary["rows"][n][split]["per_seed"]), [100 * a for a in summary["rows"][n][split]["per_seed"]],
                       color="black", s=10, zorder=3)
        ax.set_xticks(range(len(names)), names)
        lo = min(m - s for m, s in zip(means, stds))
        hi = max(m + s for m, s in zip(means, stds))
        ax.set_ylim(lo - 1.0, hi + 1.0)
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.set_title(f"{summary['title']} — {split} (bars: mean ± std; dots: seeds)")
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_stage_losses(output: Path, seed: int, variants: Sequence[str]) -> Path | None:
    """Fig. 5 for one seed: A's loss, then each stage-two variant's."""
    a = read_jsonl(output / f"seed{seed}" / "a" / "loss.jsonl")
    if not a:
        return None
    curves = [("stage one (model A)", np.array([r["step"] for r in a]), np.array([r["loss"] for r in a]))]
    for v in variants:
        b = read_jsonl(output / f"seed{seed}" / v / "loss.jsonl")
        if b:
            curves.append((f"stage two: {LABELS.get(v, v)}", np.array([r["step"] for r in b]), np.array([r["loss"] for r in b])))
    return plot_losses(curves, output / f"loss_seed{seed}.png", boundary=float(curves[0][1][-1]),
                       title=f"Training loss per 20 batches, both stages (seed {seed})")


def reproduce(
    preset: str, output: str | Path, seeds: Sequence[int] = (0, 1, 2), stage_two_preset: str | None = None,
    variants: Sequence[str] = tuple(VARIANTS), overrides_a: dict[str, Any] | None = None,
    overrides_b: dict[str, Any] | None = None, title: str = "", log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or reuse) every run, then write table3.md/.json/.png and the
    loss plots into ``output``. ``stage_two_preset`` defaults to esim-vaa or
    hf-vaa after model A's family."""
    output = Path(output)
    for seed in seeds:
        a_config = stage_one_config(preset, seed, output, overrides_a)
        if stage_two_preset is None:  # B is trained like its family's A
            stage_two_preset = "hf-vaa" if a_config.model.family == "hf" else "esim-vaa"
        log(f"== seed {seed}: model A ({a_config.output})")
        train(a_config, log=log)
        for variant in variants:
            b_config = stage_two_config(stage_two_preset, a_config, variant, output, overrides_b)
            log(f"== seed {seed}: stage two, {LABELS.get(variant, variant)} ({b_config.output})")
            train_vaa(b_config, log=log)
    summary = summarize(output, seeds, variants, title or preset)
    write_json(output / "table3.json", summary)
    (output / "table3.md").write_text(table_markdown(summary))
    if summary["splits"]:
        plot_table(summary, output / "table3.png")
    for seed in seeds[:1]:
        plot_stage_losses(output, seed, variants)
    log(table_markdown(summary))
    return summary


DEMO_EPS = (0.005, 0.02, 0.1, 0.5)


def demo(output: str | Path = "runs/demo", preset: str = "demo", stage_two_preset: str = "demo-vaa",
         overrides: dict[str, Any] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The main job end to end on the built-in synthetic data: model A, the
    vulnerability analyses of its validation pairs, stage two; returns the
    headline figures."""
    from .analysis.analyze import analyze

    output = Path(output)
    log("vaa demo: the built-in SYNTHETIC paraphrase set (generated question pairs, not real data)")
    a_config = apply_overrides(load_preset(preset), {**(overrides or {}), "output": str(output / "a")})
    a = train(a_config, log=log)
    log("== vulnerability of model A's validation pairs (FGSM, L2, eps 0.02; small sweep)")
    analysis = analyze(a["run"], None, output / "analysis", eps_list=DEMO_EPS, progress=a_config.progress, log=log)
    log("== stage two: model B with the vulnerability vector")
    b_config = stage_two_config(stage_two_preset, a_config, "vaa", output, overrides)
    b_config = dataclasses.replace(b_config, output=str(output / "vaa"))
    b = train_vaa(b_config, log=log)
    f2 = next(r for r in analysis["roc"] if r["criterion"] == "F2")
    summary = {
        "valid_accuracy_a": a["scores"]["valid"]["accuracy"], "valid_accuracy_vaa": b["scores"]["valid"]["accuracy"],
        "test_accuracy_a": a["scores"].get("test", {}).get("accuracy"), "test_accuracy_vaa": b["scores"].get("test", {}).get("accuracy"),
        "auc_f2": f2["auc_oriented"], "flip_rate": analysis["flip_rate"], "folder": str(output),
    }
    write_json(output / "summary.json", summary)
    return summary
