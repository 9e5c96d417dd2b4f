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
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F

from vaa.config import AttackConfig, DataConfig, VAAConfig
from vaa.data.batching import BatchIterator
from vaa.data.sources import read_file
from vaa.framework import VAAModel
from vaa.inference import load_model
from vaa.stage_two import attach_vectors
from vaa.training import predict_examples
from vaa.vulnerability import vector_features


def train_epoch(model: torch.nn.Module, examples, batch_size: int) -> float:
    """Seconds for one training epoch (forward, backward, clip, Adam step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=4e-4)
    model.train()
    start = time.perf_counter()
    for batch in BatchIterator(examples, batch_size, shuffle=True, seed=0).epoch(0):
        loss = F.cross_entropy(model(batch), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
    return time.perf_counter() - start


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    loaded = load_model(args.model_a)
    a = loaded.base
    pairs = read_file(args.data, DataConfig(limit=args.pairs), require_labels=True).pairs
    examples = loaded.featurize(pairs)
    attack = AttackConfig()
    times: dict[str, list[float]] = {k: [] for k in ("stage1_epoch", "stage2_epoch_cached", "stage2_epoch_on_the_fly",
                                                       "cache_build", "infer_a", "infer_vaa")}
    for _ in range(args.rounds):
        times["stage1_epoch"].append(train_epoch(copy.deepcopy(a), examples, args.batch_size))
        start = time.perf_counter()
        v1, v2 = vector_features(a, examples, attack, batch_size=args.eval_batch_size)
        times["cache_build"].append(time.perf_counter() - start)
        vaa = VAAModel(copy.deepcopy(a), VAAConfig(injection=args.injection), attack)
        times["stage2_epoch_cached"].append(train_epoch(vaa, attach_vectors(examples, v1, v2), args.batch_size))
        vaa = VAAModel(copy.deepcopy(a), VAAConfig(injection=args.injection, cache=False), attack)
        times["stage2_epoch_on_the_fly"].append(train_epoch(vaa, examples, args.batch_size))
        times["infer_a"].append(timed(lambda: predict_examples(a, examples, args.eval_batch_size)))
        times["infer_vaa"].append(timed(lambda: predict_examples(vaa, examples, args.eval_batch_size)))
    best = {k: min(v) for k, v in times.items()}
    n = len(examples)
    figures = {
        "pairs": n, "batch_size": args.batch_size, "threads": args.threads, "rounds": args.rounds, "model_a": args.model_a,
        "family": a.family, "injection": args.injection, "seconds_best_of_rounds": best,
        "stage2_cached_over_stage1": best["stage2_epoch_cached"] / best["stage1_epoch"],
        "stage2_on_the_fly_over_stage1": best["stage2_epoch_on_the_fly"] / best["stage1_epoch"],
        "cache_build_over_stage1_epoch": best["cache_build"] / best["stage1_epoch"],
        "inference_vaa_over_a": best["infer_vaa"] / best["infer_a"],
        "ms_per_pair_inference_a": 1000 * best["infer_a"] / n, "ms_per_pair_inference_vaa": 1000 * best["infer_vaa"] / n,
        "stage1_pairs_per_s": n / best["stage1_epoch"], "vulnerability_pairs_per_s": n / best["cache_build"],
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
