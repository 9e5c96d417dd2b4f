"""``vaa reproduce``: the paper's Table 3 comparison, with controls, over seeds.

For every seed: model A (stage one), then three stage-two runs from that same A
on the same data and seed:

- ``vaa``: the paper's stage two (V from the FGSM attack);
- ``zeros``: V replaced by zeros — the same extra training without any
  vulnerability (does the gain come from V, or from training longer?);
- ``random``: E~ from a random direction of the same norm (does it come from
  the *adversarial* direction?).

Two more rows need no training at all: "A, recalibrated on validation" and
"+VAA, recalibrated on validation" re-fit each model's decision rule
(temperature and per-class bias) on the validation split — cross-fitted there,
so no pair is scored by a rule fitted on its label — because B is selected on
validation and may gain just by shifting its decision rule toward it.

The summary gives mean ± std over seeds per split, log-loss and ECE, and
paired significance tests of each row against the baseline A on the same
pairs: an exact McNemar test per seed and a paired bootstrap of the
seed-averaged difference (pairs as the unit), a t-test and a sign test over
seeds (seeds as the unit), and a bootstrap over seeds and pairs together.
Every run is an ordinary run folder, so an interrupted reproduction resumes
where it stopped and finished runs are reused.

``baselines`` (``vaa reproduce --baselines fgm pgd``) adds what a practitioner
would use instead of VAA: model A adversarially trained on its word embeddings
(``train.adversarial_training``, see ``vaa.adversarial``), per seed beside A in
``seed<k>/a-fgm`` and ``seed<k>/a-pgd`` -- same preset, seed, data and budget
caps as A (``overrides_a``), plus ``overrides_adversarial`` (e.g. the eps).
Their rows get the same paired tests against A, and +VAA is tested against
them like against the controls.

``reuse_a`` (``vaa reproduce --reuse-a DIR``) takes the finished model A's of
another reproduction (``DIR/seed<k>/a``) instead of training them: each is
linked as ``seed<k>/a``, so a stage-two setting can be compared with its
controls on the same A's without training A again. A linked run folder is
only read: reproduce never trains or writes through a link.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import cross_fit, expected_calibration_error, fit, log_loss
from .config import RunConfig, apply_overrides, load_preset
from .figures import plot_losses, save_figure
from .jobs import Job, gpu_slots, job_for, run_jobs
from .metrics import mean_and_std
from .runs import RunError, loss_curve, write_json
from .significance import BOOTSTRAP_RESAMPLES, format_p, paired_tests
from .stage_one import train
from .stage_two import train_vaa

logger = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, Any]] = {
    "vaa": {},
    "zeros": {"vaa": {"vulnerability": "zeros"}},
    "random": {"attack": {"direction": "random"}},
    "v1only": {"vaa": {"vulnerability": "v1-only"}},
    "random_matched": {"attack": {"direction": "random-matched"}},
    "permuted": {"vaa": {"vulnerability": "permuted"}},
}
LABELS = {
    "baseline": "baseline (model A)",
    "vaa": "+VAA",
    "zeros": "control: V = 0 (extra training only)",
    "random": "control: random direction, same norm",
    "baseline_recal": "A, recalibrated on validation (no training)",
    "vaa_recal": "+VAA, recalibrated on validation",
    "v1only": "control: V = W[V1] (A's vector, no attack)",
    "random_matched": "control: random direction, same ||V1 - V2|| as FGSM",
    "permuted": "control: another pair's vulnerability (permuted)",
}
# The default reproduction: the paper's comparison with the original two controls.
DEFAULT_VARIANTS = ("vaa", "zeros", "random")
# Adversarially trained A's (stage one): name -> the settings that make one from A's config.
BASELINES: dict[str, dict[str, Any]] = {
    "fgm": {"train": {"adversarial_training": "fgm"}},
    "pgd": {"train": {"adversarial_training": "pgd"}},
}
LABELS.update({"a-fgm": "A + FGM adversarial training", "a-pgd": "A + PGD adversarial training"})


def baseline_folder(baseline: str) -> str:
    """The run folder (and Table 3 row) of an adversarially trained A, next to ``a``."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r} ({' | '.join(BASELINES)})")
    return f"a-{baseline}"


def stage_one_config(
    preset: str,
    seed: int,
    output: str | Path,
    overrides: dict[str, Any] | None = None,
    baseline: str | None = None,
    overrides_adversarial: dict[str, Any] | None = None,
) -> RunConfig:
    """Model A's config for one seed of a reproduction; with ``baseline``
    (fgm | pgd), the same A adversarially trained, in its own folder."""
    config = apply_overrides(load_preset(preset), overrides or {}, source="stage-one overrides")
    folder = "a"
    if baseline is not None:
        folder = baseline_folder(baseline)
        config = apply_overrides(config, BASELINES[baseline], source=f"baseline {baseline}")
        config = apply_overrides(config, overrides_adversarial or {}, source="adversarial-training overrides")
    return apply_overrides(config, {"seed": seed, "output": str(Path(output) / f"seed{seed}" / folder)})


def stage_two_config(
    preset: str, a_config: RunConfig, variant: str, output: str | Path, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """A stage-two variant's config: A's data, seed, threads and device; the variant's settings."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} ({', '.join(VARIANTS)})")
    config = apply_overrides(load_preset(preset), overrides or {}, source="stage-two overrides")
    config = apply_overrides(config, VARIANTS[variant], source=f"variant {variant}")
    return dataclasses.replace(
        apply_overrides(
            config,
            {
                "vaa": {"model_a": a_config.output},
                "seed": a_config.seed,
                "output": str(Path(output) / f"seed{a_config.seed}" / variant),
            },
        ),
        data=a_config.data,
        threads=a_config.threads,
        progress=a_config.progress,
        device=a_config.device,
    )


def link_run_folder(run: str | Path, link: str | Path) -> None:
    """Make ``link`` a relative link to the run folder ``run`` (nothing if it
    already is one): a linked run is only read, never trained or written
    through the link. A different folder at ``link`` is refused."""
    run, link = Path(run), Path(link)
    if link.exists() and link.resolve() == run.resolve():
        return  # already linked (a resumed reproduction), or the very same folder
    if link.exists() or link.is_symlink():
        raise RunError(f"{link} already exists and is not {run}: choose another --output")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(run.resolve(), link.parent.resolve()), target_is_directory=True)


def linked_model_a(reuse: str | Path, seed: int, output: str | Path, shared: dict[str, Any] | None = None) -> RunConfig:
    """The finished model A of another reproduction, ``reuse/seed<k>/a``,
    linked as ``output/seed<k>/a`` (relative link; nothing is written through
    it); returns its config with ``shared`` (threads, progress, device) applied,
    so that stage two runs where this reproduction runs."""
    a_dir = Path(reuse) / f"seed{seed}" / "a"
    if not (a_dir / "results.json").exists():
        raise RunError(f"{a_dir} holds no finished model A (--reuse-a DIR reads DIR/seed<k>/a for every seed)")
    link_run_folder(a_dir, Path(output) / f"seed{seed}" / "a")
    config = RunConfig.load(a_dir / "config.json")
    shared = {k: v for k, v in (shared or {}).items() if k in ("threads", "progress", "device")}
    return apply_overrides(dataclasses.replace(config, output=str(a_dir)), shared, source="shared run settings")


def model_a_config(
    preset: str, seed: int, output: Path, overrides_a: dict[str, Any] | None, reuse_a: str | Path | None
) -> RunConfig:
    """Model A's config for one seed: trained here, or reused (``reuse_a``)."""
    if reuse_a is not None:
        return linked_model_a(reuse_a, seed, output, overrides_a)
    return stage_one_config(preset, seed, output, overrides_a)


def _load_outputs(run: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(predicted, gold, probs or None) of a run on a split, or None."""
    path = run / "predictions" / f"{split}.npz"
    if not path.exists():
        return None
    data = np.load(path)
    probs = data["probs"].astype(np.float64) if "probs" in data.files else None
    return data["predicted"], data["gold"], probs


def _recalibrated(valid: tuple, target: tuple | None, split: str, seed: int) -> tuple | None:
    """A run's outputs after re-fitting its decision rule on validation.
    On the validation split itself the rule is cross-fitted (one half fits,
    the other half is scored, then swapped); on a test split the rule is fitted
    on the whole validation split. None without saved probabilities."""
    if valid[2] is None or target is None or target[2] is None:
        return None
    if split == "valid":
        probs, _ = cross_fit(valid[2], valid[1], seed=seed)
    else:
        probs = fit(valid[2], valid[1]).apply(target[2])
    return probs.argmax(1), target[1], probs


def summarize(
    output: str | Path,
    seeds: Sequence[int],
    variants: Sequence[str],
    title: str = "",
    recalibrate: bool = True,
    baselines: Sequence[str] = (),
) -> dict[str, Any]:
    """Table 3 from finished runs: accuracy mean ± std, log-loss and ECE,
    paired tests at the pair and at the seed level, and (``recalibrate``) the
    zero-training baseline: A (and +VAA) with the decision rule re-fitted on
    validation. ``baselines``: rows for the adversarially trained A's."""
    output = Path(output)
    splits, missing = _scored_splits(output, seeds)
    outputs, not_saved = _saved_outputs(output, seeds, ["baseline", *(baseline_folder(b) for b in baselines), *variants], splits)
    notes = _add_recalibrated(outputs, splits, seeds) if recalibrate else []
    rows, correct = _accuracy_rows(outputs)
    _add_tests_against_baseline(rows, correct, splits)
    return {
        "title": title,
        "seeds": list(seeds),
        "variants": list(variants),
        "baselines": list(baselines),
        "splits": splits,
        "rows": rows,
        "vaa_vs_controls": _vaa_vs_controls(rows, correct, splits),
        "recalibrated_vaa_vs_recalibrated_a": _recalibrated_vaa_vs_recalibrated_a(correct, splits),
        "missing": missing + not_saved,
        "notes": notes,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    }


# outputs[name][split] = one (predicted, gold, probs) per seed
Outputs = dict[str, dict[str, list[tuple]]]


def _scored_splits(output: Path, seeds: Sequence[int]) -> tuple[list[str], list[str]]:
    """The splits with saved, labelled predictions of A for every seed (an
    unlabelled test file is not scored), and A's missing validation files."""
    missing: list[str] = []
    splits: list[str] = []
    for split in ("valid", "test"):
        base = [_load_outputs(output / f"seed{k}" / "a", split) for k in seeds]
        if any(b is None for b in base):
            if split == "valid":
                missing += [f"seed{k}/a/predictions/valid.npz" for k, b in zip(seeds, base) if b is None]
            continue
        if (base[0][1] >= 0).any():
            splits.append(split)
    return splits, missing


def _saved_outputs(output: Path, seeds: Sequence[int], names: Sequence[str], splits: Sequence[str]) -> tuple[Outputs, list[str]]:
    """Each row's saved predictions per split (all seeds, or the row is left
    out of that split), and the files that were missing."""
    outputs: Outputs = {}
    missing: list[str] = []
    for name in names:
        folder = "a" if name == "baseline" else name
        for split in splits:
            loaded = [_load_outputs(output / f"seed{k}" / folder, split) for k in seeds]
            if any(x is None for x in loaded):
                missing += [f"seed{k}/{folder}/predictions/{split}.npz" for k, x in zip(seeds, loaded) if x is None]
                continue
            outputs.setdefault(name, {})[split] = loaded
    return outputs, missing


def _add_recalibrated(outputs: Outputs, splits: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """Add the zero-training rows (A and +VAA with the decision rule re-fitted
    on validation); returns notes on the rows that could not be made."""
    notes: list[str] = []
    for name in [n for n in ("baseline", "vaa") if n in outputs and "valid" in outputs[n]]:
        for split in splits:
            if split not in outputs[name]:
                continue
            recal = [_recalibrated(v, t, split, k) for v, t, k in zip(outputs[name]["valid"], outputs[name][split], seeds)]
            if any(r is None for r in recal):
                notes.append(f"no recalibrated row for {name} on {split}: a run saved no probabilities")
                continue
            outputs.setdefault(f"{name}_recal", {})[split] = recal
    return notes


def _accuracy_rows(outputs: Outputs) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Per row and split: accuracy per seed, mean ± std, log-loss and ECE;
    and the [seeds, pairs] correctness matrices the paired tests read."""
    rows: dict[str, Any] = {}
    correct: dict[str, dict[str, np.ndarray]] = {}
    for name, per_split in outputs.items():
        row: dict[str, Any] = {"label": LABELS.get(name, name)}
        for split, per_seed in per_split.items():
            labelled = [g >= 0 for _, g, _ in per_seed]
            matrix = np.stack([(p == g)[m] for (p, g, _), m in zip(per_seed, labelled)])
            correct.setdefault(name, {})[split] = matrix
            acc = matrix.mean(1)
            row[split] = {
                "per_seed": acc.tolist(),
                **mean_and_std(acc),
                "pairs": int(matrix.shape[1]),
            }
            if all(pr is not None for _, _, pr in per_seed):
                row[split]["log_loss"] = float(np.mean([log_loss(pr, g) for _, g, pr in per_seed]))
                row[split]["ece"] = float(np.mean([expected_calibration_error(pr, g) for _, g, pr in per_seed]))
        rows[name] = row
    return rows, correct


def _add_tests_against_baseline(rows: dict[str, Any], correct: dict[str, dict[str, np.ndarray]], splits: Sequence[str]) -> None:
    """Each row's difference from A and its paired tests, on the same pairs."""
    for name in rows:
        if name == "baseline":
            continue
        for split in splits:
            if split in correct.get(name, {}) and split in correct.get("baseline", {}):
                rows[name][split].update(paired_tests(correct["baseline"][split], correct[name][split], "delta_vs_baseline"))


def _vaa_vs_controls(rows: dict[str, Any], correct: dict[str, dict[str, np.ndarray]], splits: Sequence[str]) -> dict[str, Any]:
    """The questions the controls answer: does +VAA beat the same stage two
    without the attack's signal, and A whose decision rule was re-fitted on validation?"""
    versus: dict[str, Any] = {}
    for name in [n for n in rows if n not in ("baseline", "vaa", "vaa_recal")]:
        if "vaa" not in correct or name not in correct:
            continue
        for split in splits:
            if split in correct["vaa"] and split in correct[name]:
                versus.setdefault(name, {})[split] = paired_tests(correct[name][split], correct["vaa"][split], "delta")
    return versus


def _recalibrated_vaa_vs_recalibrated_a(correct: dict[str, dict[str, np.ndarray]], splits: Sequence[str]) -> dict[str, Any]:
    """Like for like: +VAA and A, both with re-fitted decision rules."""
    like_for_like: dict[str, Any] = {}
    if "vaa_recal" in correct and "baseline_recal" in correct:
        for split in splits:
            if split in correct["vaa_recal"] and split in correct["baseline_recal"]:
                like_for_like[split] = paired_tests(correct["baseline_recal"][split], correct["vaa_recal"][split], "delta")
    return like_for_like


def table_markdown(summary: dict[str, Any]) -> str:
    """The summary laid out like the paper's Table 3 (accuracy in %), then
    calibration, then +VAA against each control and the re-fitted baseline."""
    splits = summary["splits"]
    r_boot = summary.get("bootstrap_resamples", BOOTSTRAP_RESAMPLES)
    head = (
        "| model | "
        + " | ".join(
            f"{s} acc. (mean ± std, %) | Δ vs A | McNemar p per seed | bootstrap p (pairs) | "
            f"seed t-test p | bootstrap p (seeds × pairs)"
            for s in splits
        )
        + " |"
    )
    lines = [
        f"### {summary['title']}" if summary["title"] else "",
        f"Seeds {summary['seeds']}.",
        "",
        head,
        "|---|" + "---|---|---|---|---|---|" * len(splits),
    ]
    for row in summary["rows"].values():
        cells = []
        for s in splits:
            r = row.get(s)
            if r is None:
                cells += ["—"] * 6
                continue
            cells.append(f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}")
            if "delta_vs_baseline" in r:
                cells += [
                    f"{100 * r['delta_vs_baseline']:+.2f}",
                    ", ".join(f"{p:.3g}" for p in r["mcnemar_p_per_seed"]),
                    format_p(r["paired_bootstrap_p"], r_boot),
                    format_p(r["seed_t_test_p"]),
                    format_p(r["hierarchical_bootstrap_p"], r_boot),
                ]
            else:
                cells += ["", "", "", "", ""]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    calibrated = [(name, s, row[s]) for name, row in summary["rows"].items() for s in splits if s in row and "ece" in row[s]]
    if calibrated:
        lines += [
            "",
            "Calibration (mean over seeds; recalibrated rows cross-fitted on validation):",
            "",
            "| model | split | log-loss | ECE |",
            "|---|---|---|---|",
        ]
        lines += [f"| {summary['rows'][n]['label']} | {s} | {r['log_loss']:.4f} | {r['ece']:.4f} |" for n, s, r in calibrated]
    if summary.get("missing"):
        lines += ["", "Not in the table (no saved predictions): " + ", ".join(summary["missing"])]
    for note in summary.get("notes", []):
        lines += ["", note]
    comparisons = [
        (f"+VAA vs {LABELS.get(name, name)}", split, r)
        for name, per_split in summary.get("vaa_vs_controls", {}).items()
        for split, r in per_split.items()
    ]
    comparisons += [
        (f"{LABELS['vaa_recal']} vs {LABELS['baseline_recal']}", split, r)
        for split, r in summary.get("recalibrated_vaa_vs_recalibrated_a", {}).items()
    ]
    if comparisons:
        lines += [
            "",
            "+VAA against each control and the re-fitted baseline (same seeds, same pairs):",
            "",
            "| comparison | split | Δ (%) | Δ per seed | McNemar p per seed | bootstrap p (pairs) | seed t-test p | sign p | "
            "bootstrap p (seeds × pairs) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, split, r in comparisons:
            lines.append(
                f"| {label} | {split} | {100 * r['delta']:+.2f} | {', '.join(f'{100 * d:+.2f}' for d in r['delta_per_seed'])} | "
                f"{', '.join(f'{p:.3g}' for p in r['mcnemar_p_per_seed'])} | {format_p(r['paired_bootstrap_p'], r_boot)} | "
                f"{format_p(r['seed_t_test_p'])} | {format_p(r['sign_test_p'])} | "
                f"{format_p(r['hierarchical_bootstrap_p'], r_boot)} |"
            )
    return "\n".join(lines).strip() + "\n"


def plot_table(summary: dict[str, Any], path: Path) -> Path:
    """Accuracy per variant with the seeds' spread, one panel per split."""
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
            ax.scatter(
                [i] * len(summary["rows"][n][split]["per_seed"]),
                [100 * a for a in summary["rows"][n][split]["per_seed"]],
                color="black",
                s=10,
                zorder=3,
            )
        ax.set_xticks(range(len(names)), names)
        lo = min(m - s for m, s in zip(means, stds))
        hi = max(m + s for m, s in zip(means, stds))
        ax.set_ylim(lo - 1.0, hi + 1.0)
        ax.set_ylabel(f"{split} accuracy (%)")
        ax.set_title(f"{summary['title']} — {split} (bars: mean ± std; dots: seeds)")
    return save_figure(fig, path)


def plot_stage_losses(output: Path, seed: int, variants: Sequence[str]) -> Path | None:
    """Fig. 5 for one seed: A's loss, then each stage-two variant's."""
    a_dir = output / f"seed{seed}" / "a"
    steps, losses = loss_curve(a_dir / "loss.jsonl")
    if not len(steps):
        return None
    curves = [("stage one (model A)", steps, losses)]
    for v in variants:
        steps, losses = loss_curve(output / f"seed{seed}" / v / "loss.jsonl")
        if len(steps):
            curves.append((f"stage two: {LABELS.get(v, v)}", steps, losses))
    every = RunConfig.load(a_dir / "config.json").log_every if (a_dir / "config.json").exists() else None
    window = f"per {every} batches" if every else "per logged window"
    return plot_losses(
        curves,
        output / f"loss_seed{seed}.png",
        boundary=float(curves[0][1][-1]),
        title=f"Training loss {window}, both stages (seed {seed})",
    )


def reproduce(
    preset: str,
    output: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    stage_two_preset: str | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    overrides_a: dict[str, Any] | None = None,
    overrides_b: dict[str, Any] | None = None,
    title: str = "",
    jobs: int = 1,
    baselines: Sequence[str] = (),
    overrides_adversarial: dict[str, Any] | None = None,
    reuse_a: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or reuse) every run, then write table3.md/.json/.png and the
    loss plots into ``output``. ``stage_two_preset`` defaults to esim-vaa or
    hf-vaa after model A's family. ``jobs`` > 1 runs the independent runs as
    that many concurrent local processes (:mod:`vaa.jobs`). ``baselines``
    (fgm, pgd) adds adversarially trained A's; ``reuse_a`` takes another
    reproduction's model A's (module docstring)."""
    output = Path(output)
    for baseline in baselines:
        baseline_folder(baseline)  # an unknown name fails before anything is trained
    if jobs > 1:
        _run_concurrently(
            preset,
            output,
            seeds,
            stage_two_preset,
            variants,
            overrides_a,
            overrides_b,
            jobs,
            baselines,
            overrides_adversarial,
            reuse_a,
        )
    for seed in seeds if jobs <= 1 else ():
        a_config = model_a_config(preset, seed, output, overrides_a, reuse_a)
        if stage_two_preset is None:  # B is trained like its family's A
            stage_two_preset = "hf-vaa" if a_config.model.family == "hf" else "esim-vaa"
        if reuse_a is None:
            logger.info(f"== seed {seed}: model A ({a_config.output})")
            train(a_config)
        for baseline in baselines:
            adv_config = stage_one_config(preset, seed, output, overrides_a, baseline, overrides_adversarial)
            logger.info(f"== seed {seed}: {LABELS[baseline_folder(baseline)]} ({adv_config.output})")
            train(adv_config)
        for variant in variants:
            b_config = stage_two_config(stage_two_preset, a_config, variant, output, overrides_b)
            if Path(b_config.output).is_symlink():
                logger.info(f"== seed {seed}: {LABELS.get(variant, variant)}: {b_config.output} is a link, read as it is")
                continue
            logger.info(f"== seed {seed}: stage two, {LABELS.get(variant, variant)} ({b_config.output})")
            train_vaa(b_config)
    summary = summarize(output, seeds, variants, title or preset, baselines=baselines)
    logger.info(write_table(output, seeds, variants, title or preset, summary))
    return summary


def write_table(
    output: str | Path,
    seeds: Sequence[int],
    variants: Sequence[str],
    title: str = "",
    summary: dict[str, Any] | None = None,
    baselines: Sequence[str] = (),
) -> str:
    """table3.json/.md/.png and the first seed's loss plot from the finished
    runs' saved predictions (nothing is trained); returns the Markdown."""
    output = Path(output)
    summary = summary if summary is not None else summarize(output, seeds, variants, title, baselines=baselines)
    write_json(output / "table3.json", summary)
    markdown = table_markdown(summary)
    (output / "table3.md").write_text(markdown)
    if summary["splits"]:
        plot_table(summary, output / "table3.png")
    for seed in seeds[:1]:
        plot_stage_losses(output, seed, variants)
    return markdown


def reproduction_jobs(
    preset: str,
    output: Path,
    seeds: Sequence[int],
    stage_two_preset: str | None,
    variants: Sequence[str],
    overrides_a: dict[str, Any] | None,
    overrides_b: dict[str, Any] | None,
    baselines: Sequence[str] = (),
    overrides_adversarial: dict[str, Any] | None = None,
    reuse_a: str | Path | None = None,
) -> list[Job]:
    """Every run of a reproduction as a plain command over a config file
    (``output/jobs``); stage-two runs name their model A's job (none when
    A is reused); linked run folders are left out."""
    out: list[Job] = []
    folder = output / "jobs"
    for seed in seeds:
        a_config = model_a_config(preset, seed, output, overrides_a, reuse_a)
        two = stage_two_preset or ("hf-vaa" if a_config.model.family == "hf" else "esim-vaa")
        after = None
        if reuse_a is None:
            a_job = job_for(a_config, "stage1", f"seed{seed}-a", folder)
            out.append(a_job)
            after = a_job.name
        for baseline in baselines:
            adv_config = stage_one_config(preset, seed, output, overrides_a, baseline, overrides_adversarial)
            out.append(job_for(adv_config, "stage1", f"seed{seed}-{baseline_folder(baseline)}", folder))
        for variant in variants:
            b_config = stage_two_config(two, a_config, variant, output, overrides_b)
            if not Path(b_config.output).is_symlink():
                out.append(job_for(b_config, "stage2", f"seed{seed}-{variant}", folder, after=after))
    return out


def _run_concurrently(
    preset: str,
    output: Path,
    seeds: Sequence[int],
    stage_two_preset: str | None,
    variants: Sequence[str],
    overrides_a: dict[str, Any] | None,
    overrides_b: dict[str, Any] | None,
    jobs: int,
    baselines: Sequence[str] = (),
    overrides_adversarial: dict[str, Any] | None = None,
    reuse_a: str | Path | None = None,
) -> None:
    planned = reproduction_jobs(
        preset, output, seeds, stage_two_preset, variants, overrides_a, overrides_b, baselines, overrides_adversarial, reuse_a
    )
    device = str((overrides_a or {}).get("device", "auto"))
    failed = run_jobs(planned, jobs, gpu_slots(jobs, device))
    if failed:
        raise RunError("runs that failed or could not start: " + ", ".join(f"{j.name} (log {j.log})" for j in failed))


DEMO_EPS = (0.005, 0.02, 0.1, 0.5)


def demo(
    output: str | Path = "runs/demo",
    preset: str = "demo",
    stage_two_preset: str = "demo-vaa",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The main job end to end on the built-in synthetic data: model A, the
    vulnerability analyses of its validation pairs, stage two; returns the
    headline figures."""
    from .analysis.analyze import analyze

    output = Path(output)
    logger.info("vaa demo: the built-in SYNTHETIC paraphrase set (generated question pairs, not real data)")
    a_config = apply_overrides(load_preset(preset), {**(overrides or {}), "output": str(output / "a")})
    a = train(a_config)
    logger.info("== vulnerability of model A's validation pairs (FGSM, L2, eps 0.02; small sweep)")
    analysis = analyze(a["run"], None, output / "analysis", eps_list=DEMO_EPS, progress=a_config.progress, device=a_config.device)
    logger.info("== stage two: model B with the vulnerability vector")
    b_config = stage_two_config(stage_two_preset, a_config, "vaa", output, overrides)
    b_config = dataclasses.replace(b_config, output=str(output / "vaa"))
    b = train_vaa(b_config)
    f2 = next(r for r in analysis["roc"] if r["criterion"] == "F2")
    summary = {
        "valid_accuracy_a": a["scores"]["valid"]["accuracy"],
        "valid_accuracy_vaa": b["scores"]["valid"]["accuracy"],
        "test_accuracy_a": a["scores"].get("test", {}).get("accuracy"),
        "test_accuracy_vaa": b["scores"].get("test", {}).get("accuracy"),
        # the paper's orientation (higher F2 = class 1), never the direction picked after the fact
        "auc_f2": f2["auc"],
        "auc_a_probability": next(iter(analysis["a_probability_auc"].values()), None),
        "flip_rate": analysis["flip_rate"],
        "folder": str(output),
    }
    write_json(output / "summary.json", summary)
    return summary
