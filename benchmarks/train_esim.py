"""Benchmark: stage-one ESIM under the reduced-scale protocol of
../shared/data/README.md (train on the sample, select on the dev file).

Prints validation accuracy, training throughput (pairs/s, mean over epochs)
and peak resident memory; writes the same as JSON next to the run.

    .venv/bin/python benchmarks/train_esim.py --dataset qqp --seed 0 --threads 1

The run folder is the one ``benchmarks/table3.py`` (``vaa reproduce``) uses
for its baseline, so the reproduction reuses this model A.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from protocol import DATASETS, OUT, STAGE_ONE, with_threads
from vaa.experiments import stage_one_config
from vaa.log_setup import configure_logging
from vaa.stage_one import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured

    config = stage_one_config(
        f"{args.dataset}-esim", args.seed, Path(args.out) / args.dataset, with_threads(STAGE_ONE, args.threads)
    )
    start = time.perf_counter()
    results = train(config)
    wall = time.perf_counter() - start
    history = results["history"]
    summary = {
        "dataset": args.dataset,
        "seed": args.seed,
        "threads": args.threads,
        "valid_accuracy": results["scores"]["valid"]["accuracy"],
        "best_epoch": results["best_epoch"],
        "epochs": results["epochs"],
        "stop_reason": results["stop_reason"],
        "train_pairs_per_s": round(sum(h["train_pairs_per_s"] for h in history) / len(history), 1),
        "epoch_seconds": round(sum(h["epoch_seconds"] for h in history) / len(history), 1),
        # the process's peak resident memory, as recorded at each epoch's end (survives resuming)
        "peak_rss_mb": max((h.get("peak_rss_mb") or 0 for h in history), default=None)
        or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_seconds_this_call": round(wall, 1),
        "run": results["run"],
    }
    Path(results["run"], "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
