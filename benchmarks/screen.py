"""Benchmark: the screening grid of issue 12 (part 4) — stage-two feature
settings on one dataset and seed, each +VAA against its own matched controls,
all from the same trained model A, ranked on validation only.

    .venv/bin/python benchmarks/screen.py --dataset qqp --seeds 2 --threads 1
    .venv/bin/python benchmarks/screen.py --dataset qqp --seeds 2 --summarize-only
    .venv/bin/python benchmarks/screen.py --dataset snli --seeds 0 1 2 --settings layernorm scalars --threads 1

Model A is the Table 3 run's, ``benchmarks/out/<dataset>/seed<k>/a`` (train it
first with table3.py); it is read, never written. Each setting is one
``vaa reproduce --reuse-a benchmarks/out/<dataset>`` into
``benchmarks/out/<dataset>-screen/<setting>/`` (its own table3.md too); runs
that attack alike share one V1/V2 cache (``vcache/``). The paper setting links
the finished runs of table3.py (same A, same training) instead of training
them again.

A setting's controls get the same setting (a control differs from +VAA only in
where the vulnerability comes from): ``permuted`` (every pair keeps its own V1,
the vulnerability part is another pair's) answers "does this pair's
vulnerability matter?"; ``v1only`` (V = W[V1], no attack) answers "does the
attack add anything to A's own vector?". A setting with per-word saliency
cannot be permuted across pairs of different lengths, so it uses
``random_matched`` (a random direction with FGSM's ||V1 - V2||) instead.

The ranking rule is fixed here, before any run: a setting's margin is +VAA's
validation accuracy minus the best of its controls' (the smallest gain); the
settings are ranked by that margin, and the 2-3 with the largest margins go on
to the 3-seed runs: the same script with ``--seeds 0 1 2 --settings ...``,
which adds the seed-level tests (paired t and sign over seeds, bootstrap over
seeds and pairs). Only validation predictions are read; a test file is never
used to choose.
Writes screen-seeds<k…>.md/.json into ``benchmarks/out/<dataset>-screen/``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from protocol import DATASETS, MODELS, OUT, with_threads
from vaa.config import merge_settings
from vaa.experiments import format_p, link_run_folder, reproduce, summarize
from vaa.log_setup import configure_logging

# The grid: name -> stage-two settings (applied to +VAA and to its controls alike).
CHEAP_SCALARS = "log_distance,log_grad_norm,F1,F2,flip"
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {},
    "layernorm": {"vaa": {"normalize": "layernorm"}},
    "standardize": {"vaa": {"normalize": "standardize"}},
    "diff-step": {"vaa": {"diff_scale": "step"}},
    "scalars": {"vaa": {"scalars": CHEAP_SCALARS}},
    "layernorm-scalars": {"vaa": {"normalize": "layernorm", "scalars": CHEAP_SCALARS}},
    "flip-eps": {"vaa": {"scalars": "log_flip_eps,targeted_loss_drop"}},
    "saliency": {"vaa": {"saliency": True}},
    "pgd5": {"attack": {"steps": 5}},
    "calibrated-10": {"vaa": {"calibrate_flip_rate": 0.1}},
}
DEFAULT_CONTROLS = ("permuted", "v1only")
# The rule fixed before the first run: a setting qualifies if its margin is
# positive and +VAA beats the control that gives the margin with an exact
# McNemar p below ALPHA in every seed screened; at most GOING_ON qualifying
# settings, the largest margins first, go on to the 3-seed runs.
ALPHA = 0.05
GOING_ON = 3


def controls_for(setting: dict[str, Any], controls: list[str]) -> list[str]:
    """The controls a setting can have: saliency cannot be permuted across pairs."""
    if setting.get("vaa", {}).get("saliency"):
        return [("random_matched" if c == "permuted" else c) for c in controls]
    return list(controls)


def run_setting(name: str, a_root: Path, out: Path, seeds: list[int], controls: list[str], threads: int, stage_two: dict) -> None:
    """+VAA and the setting's controls from the model A's in ``a_root``
    (``vaa reproduce --reuse-a``); finished runs are reused."""
    variants = ["vaa", *controls_for(SETTINGS[name], controls)]
    if not SETTINGS[name]:  # the paper setting: table3.py's finished runs are the same training
        for seed in seeds:
            for variant in variants:
                table3_run, here = a_root / f"seed{seed}" / variant, out / name / f"seed{seed}" / variant
                if (table3_run / "results.json").exists() and not here.exists():  # a run screened here stays
                    link_run_folder(table3_run, here)
    # one V1/V2 cache folder: its files are keyed by A's weights, the attack and the
    # features, so settings and controls that attack alike share one build
    shared_cache = {"vaa": {"cache_dir": str(out / "vcache")}}
    reproduce(
        "",
        out / name,
        seeds=seeds,
        variants=variants,
        overrides_a=with_threads({"progress": False}, threads),
        overrides_b=merge_settings(merge_settings(copy.deepcopy(with_threads(stage_two, threads)), shared_cache), SETTINGS[name]),
        title=name,
        reuse_a=a_root,
    )


def screen_rows(out: Path, seeds: list[int], names: list[str], controls: list[str]) -> list[dict[str, Any]]:
    """Per setting: validation accuracy (mean over seeds) of A, +VAA and each
    control; +VAA minus each control with McNemar p per seed, the pair-bootstrap
    p and the seed-level t-test p; the margin (smallest mean gain)."""
    rows = []
    for name in names:
        variants = ["vaa", *controls_for(SETTINGS[name], controls)]
        summary = summarize(out / name, seeds, variants, name, recalibrate=False)
        accuracy = {k: v["valid"]["mean"] for k, v in summary["rows"].items() if "valid" in v}
        versus = {k: v["valid"] for k, v in summary["vaa_vs_controls"].items() if "valid" in v}
        done = "vaa" in accuracy and all(c in versus for c in variants[1:])
        rows.append(
            {
                "setting": name,
                "settings": SETTINGS[name],
                "accuracy": accuracy,
                "vs_controls": {
                    k: {
                        "delta": v["delta"],
                        "delta_per_seed": v["delta_per_seed"],
                        "mcnemar_p_per_seed": v["mcnemar_p_per_seed"],
                        "paired_bootstrap_p": v["paired_bootstrap_p"],
                        "seed_t_test_p": v["seed_t_test_p"],
                    }
                    for k, v in versus.items()
                },
                "margin": min(v["delta"] for v in versus.values()) if done else None,
                "missing": summary["missing"],
            }
        )
    return sorted(rows, key=lambda r: -r["margin"] if r["margin"] is not None else float("inf"))


def goes_on(rows: list[dict[str, Any]], alpha: float = ALPHA, at_most: int = GOING_ON) -> list[str]:
    """The settings the protocol sends to the 3-seed runs, largest margin
    first: a positive margin, and McNemar p < ``alpha`` in every seed against
    the control that gives it (+VAA's closest control). Unfinished settings
    never qualify."""
    qualifying = []
    for row in rows:
        if row["margin"] is None or row["margin"] <= 0:
            continue
        closest = min(row["vs_controls"].values(), key=lambda v: v["delta"])
        if all(p < alpha for p in closest["mcnemar_p_per_seed"]):
            qualifying.append(row)
    qualifying.sort(key=lambda r: -r["margin"])
    return [r["setting"] for r in qualifying[:at_most]]


def verdict_line(rows: list[dict[str, Any]]) -> str:
    """The protocol's reading of the table, in one sentence."""
    chosen = goes_on(rows)
    unfinished = [r["setting"] for r in rows if r["margin"] is None]
    rule = f"positive margin with McNemar p < {ALPHA:g} against the closest control"
    head = (
        f"Goes on to the 3-seed runs ({rule}): {', '.join(chosen)}."
        if chosen
        else f"No setting goes on to the 3-seed runs: none has a {rule}."
    )
    return head + (f" Not finished: {', '.join(unfinished)}." if unfinished else "")


def screen_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The ranking as a table (accuracy in %, differences in points)."""
    lines = [
        f"## Screening: {title} (validation; ranked by +VAA minus its best control)",
        "",
        "| rank | setting | A | +VAA | +VAA − control (McNemar p per seed; pair bootstrap p; seed t-test p) | margin |",
        "|---|---|---|---|---|---|",
    ]
    for rank, row in enumerate(rows, 1):
        acc = row["accuracy"]
        versus = "; ".join(
            f"{k}: {100 * v['delta']:+.2f} ({', '.join(format_p(p) for p in v['mcnemar_p_per_seed'])}; "
            f"{format_p(v['paired_bootstrap_p'])}; {format_p(v['seed_t_test_p'])})"
            for k, v in row["vs_controls"].items()
        )
        margin = "not finished" if row["margin"] is None else f"{100 * row['margin']:+.2f}"
        a = f"{100 * acc['baseline']:.2f}" if "baseline" in acc else "—"
        vaa = f"{100 * acc['vaa']:.2f}" if "vaa" in acc else "—"
        lines.append(f"| {rank} | {row['setting']} | {a} | {vaa} | {versus or '—'} | {margin} |")
    lines += ["", verdict_line(rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--model", choices=sorted(MODELS), default="esim")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--controls", nargs="+", choices=["permuted", "v1only", "random_matched"], default=list(DEFAULT_CONTROLS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--summarize-only", action="store_true", help="rank the finished runs; train nothing")
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured
    folder = args.dataset if args.model == "esim" else f"{args.dataset}-{args.model}"
    out = Path(args.out) / f"{folder}-screen"
    a_dirs = [Path(args.out) / folder / f"seed{k}" / "a" for k in args.seeds]
    for k, a_dir in zip(args.seeds, a_dirs):
        if not (a_dir / "results.json").exists():
            raise SystemExit(f"{a_dir} holds no finished model A: run table3.py --dataset {args.dataset} --seeds {k} first")
    if not args.summarize_only:
        _, stage_two = MODELS[args.model]
        for name in args.settings:
            run_setting(name, Path(args.out) / folder, out, args.seeds, args.controls, args.threads, stage_two)
    rows = screen_rows(out, args.seeds, args.settings, args.controls)
    seeds = " ".join(map(str, args.seeds))
    markdown = screen_markdown(rows, f"{args.dataset.upper()}, {args.model}, seeds {seeds}")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"screen-seeds{'-'.join(map(str, args.seeds))}"
    (out / f"{stem}.md").write_text(markdown)
    (out / f"{stem}.json").write_text(json.dumps({"rows": rows, "goes_on": goes_on(rows)}, indent=2) + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
