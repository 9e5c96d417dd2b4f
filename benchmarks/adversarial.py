"""Benchmark: adversarial training of model A (issue 14) -- what it costs and
what it buys in robustness.

(a) Cost: the stage-one training step (``Trainer.train_step``) with
    ``train.adversarial_training`` none, fgm and pgd, on the same fresh model,
    data and batches, in ONE process, interleaved over ``--rounds`` and the
    best round kept; reported as seconds and as ratios to plain training:

    .venv/bin/python benchmarks/adversarial.py --preset qqp-esim \
        --data ../shared/data/qqp/train_sample.tsv --pairs 2000 --batches 30 --threads 1

(b) Robustness: ``vaa robustness`` over given run folders (e.g. A, A + FGM,
    A + PGD, +VAA of one seed of ``benchmarks/table3.py --baselines fgm pgd``)
    at three eps values per norm (FGSM and PGD-K, against the gold label):

    .venv/bin/python benchmarks/adversarial.py --runs benchmarks/out/qqp/seed0/{a,a-fgm,a-pgd,vaa} \
        --robust-data ../shared/data/qqp/dev.tsv --limit 2000 --threads 1

(c) Seeds together: robust accuracy per model as mean ± std over seeds, from
    robustness.json files written one model or one seed at a time (each right
    after its model was trained, possibly in different sessions):

    .venv/bin/python benchmarks/adversarial.py --summarize benchmarks/out/qqp/robust-s*/robustness.json --plot benchmarks/out/qqp/robustness.png

    with paired tests under attack on the same pairs (McNemar per seed,
    bootstraps over pairs and over seeds and pairs, t-test over seeds; reports
    written since per-pair outcomes are kept), by default every model against
    A and +VAA against each adversarially trained A, or ``--versus vaa:a ...``.

Both parts can run in one call; figures are printed and written as JSON
(``--json``). With no ``--data`` the built-in synthetic demo set is used.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from cost import train_epoch
from vaa.analysis.plots import plot_robustness
from vaa.config import TrainConfig, apply_overrides, load_preset
from vaa.data.sources import load_splits
from vaa.log_setup import configure_logging
from vaa.models import build_model
from vaa.robustness import (
    attack_grid,
    compare_under_attack,
    comparison_markdown,
    parse_versus,
    robustness,
    summarize_over_seeds,
    summary_markdown,
    table_markdown,
)
from vaa.stage_one import model_options

METHODS = ("none", "fgm", "pgd")


def training_cost(
    preset: str, data: str | None, pairs: int, batches: int, batch_size: int | None, rounds: int, adversarial: dict
) -> dict:
    """Seconds of ``batches`` training steps with each method (best of
    ``rounds``, interleaved), and their ratios to plain training."""
    config = load_preset(preset)
    config = apply_overrides(config, {"data": {"train": data, "valid": None, "limit": pairs}, "progress": False})
    splits = load_splits(config.data)
    torch.manual_seed(config.seed)
    fresh = build_model(config.model.family, splits.train.pairs, splits.label_map, seed=config.seed, **model_options(config))
    examples = fresh.featurize_all(splits.train.pairs, splits.label_map)
    size = batch_size or config.optim.batch_size
    settings = {m: (None if m == "none" else TrainConfig(adversarial_training=m, **adversarial)) for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(rounds):
        for method in METHODS:
            torch.manual_seed(0)
            seconds[method].append(train_epoch(copy.deepcopy(fresh), examples, size, settings[method], max_batches=batches))
    best = {m: min(v) for m, v in seconds.items()}
    return {
        "preset": preset,
        "data": data or "built-in demo set",
        "family": config.model.family,
        "pairs": len(examples),
        "batch_size": size,
        "batches": min(batches, -(-len(examples) // size)),
        "rounds": rounds,
        "adversarial_settings": {m: (vars(s) if s else None) for m, s in settings.items()},
        "seconds_best_of_rounds": best,
        "seconds_all_rounds": seconds,
        "fgm_over_none": best["fgm"] / best["none"],
        "pgd_over_none": best["pgd"] / best["none"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cost = parser.add_argument_group("(a) training cost")
    cost.add_argument("--preset", help="stage-one preset whose model is timed, e.g. qqp-esim, snli-esim, qqp-minilm, demo")
    cost.add_argument("--data", help="labelled training file (default: the built-in demo set)")
    cost.add_argument("--pairs", type=int, default=2000, help="pairs read from --data (default 2000)")
    cost.add_argument("--batches", type=int, default=30, help="training steps timed per method (default 30)")
    cost.add_argument("--batch-size", type=int, help="default: the preset's")
    cost.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best is kept (default 2)")
    cost.add_argument("--adv-eps", type=float, default=TrainConfig.adversarial_eps)
    cost.add_argument("--adv-norm", default=TrainConfig.adversarial_norm, choices=["l2", "linf"])
    cost.add_argument("--adv-steps", type=int, default=TrainConfig.adversarial_steps, help="PGD steps")
    rob = parser.add_argument_group("(b) robustness")
    rob.add_argument("--runs", nargs="+", default=[], help="run or checkpoint folders to attack")
    rob.add_argument("--robust-data", help="labelled file to attack (e.g. the dev file)")
    rob.add_argument("--limit", type=int, help="attack only the first N pairs")
    rob.add_argument("--eps", type=float, nargs=3, default=[0.5, 1.0, 2.0], help="three L2 eps (default 0.5 1 2)")
    rob.add_argument(
        "--linf-eps", type=float, nargs=3, default=[0.01, 0.02, 0.05], help="three L-inf eps (default 0.01 0.02 0.05)"
    )
    rob.add_argument("--pgd-steps", type=int, default=10)
    rob.add_argument("--format", default="auto")
    rob.add_argument("--columns")
    parser.add_argument(
        "--summarize", nargs="+", default=[], metavar="JSON", help="(c) robustness.json files to put together over seeds"
    )
    parser.add_argument(
        "--versus",
        nargs="+",
        metavar="MODEL:REFERENCE",
        help="(c) paired tests under attack, e.g. vaa:a vaa:a-pgd (default: every model against a, +VAA against a-fgm, a-pgd)",
    )
    parser.add_argument("--plot", metavar="PNG", help="(c) accuracy against eps over seeds (mean ± std), one line per model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="robustness: cpu (default) | cuda | auto ...")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if not args.preset and not args.runs and not args.summarize:
        parser.error("give --preset (training cost), --runs with --robust-data (robustness) and/or --summarize JSON ...")
    if args.runs and not args.robust_data:
        parser.error("--runs needs --robust-data FILE")
    configure_logging("INFO")  # the library's lines (files read, clean accuracy) on stderr
    torch.set_num_threads(args.threads)
    figures: dict = {"threads": args.threads, "torch": torch.__version__}
    if args.preset:
        adversarial = {"adversarial_eps": args.adv_eps, "adversarial_norm": args.adv_norm, "adversarial_steps": args.adv_steps}
        figures["training_cost"] = training_cost(
            args.preset, args.data, args.pairs, args.batches, args.batch_size, args.rounds, adversarial
        )
        c = figures["training_cost"]
        print(
            f"training step cost ({c['batches']} batches of {c['batch_size']}, best of {c['rounds']}): "
            f"none {c['seconds_best_of_rounds']['none']:.2f} s, FGM x{c['fgm_over_none']:.2f}, PGD-{args.adv_steps} x{c['pgd_over_none']:.2f}"
        )
    if args.runs:
        grid = attack_grid([0.0, *args.eps], [0.0, *args.linf_eps], steps=args.pgd_steps)
        report = robustness(
            args.runs,
            args.robust_data,
            grid,
            limit=args.limit,
            format=args.format,
            columns=args.columns,
            device=args.device,
            progress=sys.stderr.isatty(),
        )
        figures["robustness"] = report
        print(table_markdown(report))
    if args.summarize:
        try:
            versus = parse_versus(args.versus) if args.versus else None
            reports = [json.loads(Path(f).read_text()) for f in args.summarize]
            figures["robustness_over_seeds"] = summarize_over_seeds(reports)
            figures["paired_tests_under_attack"] = compare_under_attack(reports, versus)
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"--summarize: {err}")
        print(summary_markdown(figures["robustness_over_seeds"]))
        if args.plot:
            print(f"plot: {plot_robustness(figures['robustness_over_seeds'], args.plot)}")
        print(comparison_markdown(figures["paired_tests_under_attack"]))
    shown = ("robustness", "robustness_over_seeds", "paired_tests_under_attack")
    print(json.dumps({k: v for k, v in figures.items() if k not in shown}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
