"""Benchmark: what stage two and VAA inference cost, as ratios measured in one
process on the same data and batch size (issue: cost of the framework).

    .venv/bin/python benchmarks/cost.py --model-a benchmarks/out/qqp/seed0/a \
        --data ../shared/data/qqp/train_sample.tsv --pairs 2000 --threads 1

Measured, each as the best of ``--rounds`` interleaved repetitions:
- stage-one epoch: model A's structure trained for one epoch on the pairs;
- stage-two epoch with the V1/V2 cache (this library's default);
- stage-two epoch computing V1/V2 in every batch (the authors' way: A runs
  three times per batch);
- the one-off cache build (V1/V2 for every pair);
- inference per pair: VAA (attack on the fly: A forward + input-gradient
  backward + adversarial forward, then B) against A alone.
- with ``--options``: for each set of stage-two feature options (issue 12),
  the one-off feature build and a stage-two epoch with those features cached,
  both as ratios to the stage-one epoch, e.g.
  ``--options "scalars=log_distance,F2" "normalize=layernorm" "saliency=true" "attack.steps=5"``
  (``;`` joins several settings into one set; ``attack.`` settings go to the attack;
  with ``calibrate_flip_rate=r`` the build includes stage two's eps search).
- with ``--epochs-only``: only the stage-two (cached) / stage-one epoch ratio,
  for the default and each ``--options`` set, all timed in every round (order
  rotating, so none always runs first), reported as the median of the
  per-round ratios with quartiles and range instead of the best of rounds. On
  a shared machine the best-of-rounds ratio takes its numerator and
  denominator from different moments; a per-round ratio compares two timings
  taken side by side, and many rounds show how far it spreads.

    .venv/bin/python benchmarks/cost.py --model-a benchmarks/out/qqp/seed2/a \
        --data ../shared/data/qqp/train_sample.tsv --pairs 1000 --rounds 9 --epochs-only --clock cpu
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time

import torch
import yaml

from vaa.config import AttackConfig, DataConfig, OptimConfig, RunConfig, TrainConfig, VAAConfig
from vaa.data.sources import read_file
from vaa.features import calibrate_eps, feature_needs, pair_features
from vaa.inference import load_model
from vaa.log_setup import configure_logging
from vaa.models.vaa import VAAModel
from vaa.stage_two import attach_features, attach_vectors, stage_two_features
from vaa.training import Trainer, TrainerSettings, predict_examples
from vaa.vulnerability import vector_features

# The clock every timing reads: wall time (perf_counter, the default), or with
# --clock cpu this process's CPU time (process_time), which a single-thread run
# on a shared machine keeps while other processes take the cores.
clock = time.perf_counter


def train_epoch(
    model: torch.nn.Module, examples, batch_size: int, adversarial: TrainConfig | None = None, max_batches: int | None = None
) -> float:
    """Seconds for one training epoch (or its first ``max_batches``) of the
    library's own step, ``Trainer.train_step``: forward, loss (with
    ``adversarial``: plus the adversarial loss), backward, clip, Adam (lr 4e-4,
    clip 10). Nothing is written: no validation, no checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainerSettings(
            OptimConfig(batch_size=batch_size, scheduler="none"), tmp, lambda: {}, progress=False, adversarial=adversarial
        )
        trainer = Trainer(model, examples, examples[:1], settings)
        batches = trainer.batches.global_batches(0)[:max_batches]
        model.train()
        start = clock()
        for indices in batches:
            trainer.train_step(indices)
        return clock() - start


def option_set(text: str, injection: str, attack: AttackConfig) -> tuple[VAAConfig, AttackConfig]:
    """'scalars=F2;attack.steps=5' -> (VAAConfig, AttackConfig)."""
    vaa_values: dict = {"injection": injection}
    attack_values: dict = {}
    for item in filter(None, (x.strip() for x in text.split(";"))):
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw)
        if key.startswith("attack."):
            attack_values[key[len("attack.") :]] = value
        else:
            vaa_values[key] = value
    return VAAConfig(**vaa_values), dataclasses.replace(attack, **attack_values)


def option_features(a: torch.nn.Module, examples, text: str, args: argparse.Namespace) -> tuple[VAAConfig, AttackConfig, dict]:
    """Everything stage two computes before its first epoch for one option set
    (with ``calibrate_flip_rate``, the eps search too): its configs and features."""
    vaa_cfg, attack_cfg = option_set(text, args.injection, AttackConfig())
    if vaa_cfg.calibrate_flip_rate:  # stage two's one-off eps search on the training pairs, part of the build
        found = calibrate_eps(a, examples, attack_cfg, vaa_cfg.calibrate_flip_rate, batch_size=args.eval_batch_size)
        attack_cfg = dataclasses.replace(attack_cfg, eps=found["eps"])
    want = [w for w in feature_needs(vaa_cfg) if w != "scalars"]
    raw = pair_features(a, examples, attack_cfg, want, batch_size=args.eval_batch_size)
    raw = {
        k: (torch.from_numpy(v) if v.dtype != object else [torch.from_numpy(x.astype("float32")) for x in v])
        for k, v in raw.items()
        if not k.startswith("length")
    }
    return vaa_cfg, attack_cfg, stage_two_features(raw, dataclasses.replace(RunConfig(), vaa=vaa_cfg), "train")


def option_model(a: torch.nn.Module, vaa_cfg: VAAConfig, attack_cfg: AttackConfig, feats: dict) -> VAAModel:
    """A fresh stage-two model from A for one option set (standardisation
    statistics from ``feats``, as stage two takes them from the training pairs)."""
    vaa = VAAModel(copy.deepcopy(a), vaa_cfg, attack_cfg)
    if vaa_cfg.normalize == "standardize":
        with torch.no_grad():
            x = vaa.v3_inputs({k: v for k, v in feats.items() if isinstance(v, torch.Tensor)})
        vaa.set_standardization(x.mean(0), x.std(0))
    return vaa


def timed(fn) -> float:
    start = clock()
    fn()
    return clock() - start


def ratio_summary(numerators: list[float], denominators: list[float]) -> dict[str, float | list[float]]:
    """Per-round ratios and their median, quartiles and range: what a target
    such as "stage two <= 1.15 x stage one" is read against."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "median": statistics.median(ratios),
        "q1": quartiles[0],
        "q3": quartiles[2],
        "min": min(ratios),
        "max": max(ratios),
        "per_round": ratios,
    }


def epoch_ratio(a: torch.nn.Module, examples, args: argparse.Namespace) -> dict:
    """Stage-one epoch and stage-two epochs with cached features (the default,
    and each ``--options`` set), timed side by side in every round, the order
    rotated each round so that none always runs first; features are built once
    (their one-off cost is the other mode's question)."""
    sets = {"default": option_features(a, examples, "", args)}
    sets.update({text: option_features(a, examples, text, args) for text in args.options})
    data = {name: attach_features(examples, feats) for name, (_, _, feats) in sets.items()}
    seconds: dict[str, list[float]] = {"stage1": [], **{name: [] for name in sets}}

    def time_one(name: str) -> None:
        if name == "stage1":
            seconds[name].append(train_epoch(copy.deepcopy(a), examples, args.batch_size))
        else:
            seconds[name].append(train_epoch(option_model(a, *sets[name]), data[name], args.batch_size))

    order = list(seconds)
    for round_ in range(args.rounds):
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            time_one(name)
    return {
        "epoch_seconds": seconds,
        "stage2_cached_over_stage1": {name: ratio_summary(seconds[name], seconds["stage1"]) for name in sets},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-a", required=True)
    parser.add_argument("--data", required=True, help="labelled pairs (the first --pairs are used)")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32, help="the same for both stages")
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--injection", default="token")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or this process's CPU time (single thread on a loaded machine: "
        "what the work costs, not how long it waited for a core)",
    )
    parser.add_argument(
        "--options", nargs="*", default=[], help="stage-two option sets to time, e.g. 'scalars=F2;normalize=layernorm'"
    )
    parser.add_argument(
        "--epochs-only",
        action="store_true",
        help="time only the stage-two (cached) and stage-one epochs, side by side in every round; "
        "report the median of the per-round ratios",
    )
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    loaded = load_model(args.model_a)
    a = loaded.base
    pairs = read_file(args.data, DataConfig(limit=args.pairs), require_labels=True).pairs
    examples = loaded.featurize(pairs)
    what = {  # the measurement's settings, written with its figures
        "pairs": len(examples),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "clock": args.clock,
        "model_a": args.model_a,
        "family": a.family,
        "injection": args.injection,
    }
    if args.epochs_only:
        write_figures({**what, **epoch_ratio(a, examples, args)}, args.json)
        return
    attack = AttackConfig()
    times: dict[str, list[float]] = {
        k: [] for k in ("stage1_epoch", "stage2_epoch_cached", "stage2_epoch_on_the_fly", "cache_build", "infer_a", "infer_vaa")
    }
    for _ in range(args.rounds):
        times["stage1_epoch"].append(train_epoch(copy.deepcopy(a), examples, args.batch_size))
        start = clock()
        v1, v2 = vector_features(a, examples, attack, batch_size=args.eval_batch_size)
        times["cache_build"].append(clock() - start)
        vaa = VAAModel(copy.deepcopy(a), VAAConfig(injection=args.injection), attack)
        times["stage2_epoch_cached"].append(train_epoch(vaa, attach_vectors(examples, v1, v2), args.batch_size))
        vaa = VAAModel(copy.deepcopy(a), VAAConfig(injection=args.injection, cache=False), attack)
        times["stage2_epoch_on_the_fly"].append(train_epoch(vaa, examples, args.batch_size))
        times["infer_a"].append(timed(lambda: predict_examples(a, examples, args.eval_batch_size)))
        times["infer_vaa"].append(timed(lambda: predict_examples(vaa, examples, args.eval_batch_size)))  # noqa: B023 - called at once
        for text in args.options:
            start = clock()
            vaa_cfg, attack_cfg, feats = option_features(a, examples, text, args)
            times.setdefault(f"build[{text}]", []).append(clock() - start)
            vaa = option_model(a, vaa_cfg, attack_cfg, feats)
            times.setdefault(f"stage2[{text}]", []).append(train_epoch(vaa, attach_features(examples, feats), args.batch_size))
    best = {k: min(v) for k, v in times.items()}
    n = len(examples)
    figures = {
        **what,
        "seconds_best_of_rounds": best,
        "stage2_cached_over_stage1": best["stage2_epoch_cached"] / best["stage1_epoch"],
        "stage2_on_the_fly_over_stage1": best["stage2_epoch_on_the_fly"] / best["stage1_epoch"],
        "cache_build_over_stage1_epoch": best["cache_build"] / best["stage1_epoch"],
        "inference_vaa_over_a": best["infer_vaa"] / best["infer_a"],
        "ms_per_pair_inference_a": 1000 * best["infer_a"] / n,
        "ms_per_pair_inference_vaa": 1000 * best["infer_vaa"] / n,
        "stage1_pairs_per_s": n / best["stage1_epoch"],
        "vulnerability_pairs_per_s": n / best["cache_build"],
    }
    for text in args.options:
        figures[f"options[{text}]"] = {
            "stage2_cached_over_stage1": best[f"stage2[{text}]"] / best["stage1_epoch"],
            "feature_build_over_stage1_epoch": best[f"build[{text}]"] / best["stage1_epoch"],
        }
    write_figures(figures, args.json)


def write_figures(figures: dict, path: str | None) -> None:
    print(json.dumps(figures, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
