"""Benchmark: is data loading a bottleneck at full scale? Tokenisation and
featurisation of a full-size SNLI training set (550,152 pairs, built by
repeating the real 8,160-pair sample), for ESIM (GloVe-style tokenizer,
vocabulary, ids) and for the BERT family (MiniLM's fast WordPiece tokenizer).

    .venv/bin/python benchmarks/featurize.py --pairs 550152 --out benchmarks/out/featurize.json

The first featurisation is cached with the run (``features/``); the time to
read it back is measured too (what a resume, stage two and DDP ranks pay).

Wall and CPU seconds are both recorded: on a shared machine the wall time
says how busy it was, the CPU time what the work costs (the wall time on an
idle core, tokenizer threads included).

Caveat: a repeated sample has far fewer distinct sentences than the real
split; nothing here caches per sentence, so every pair is tokenised anyway and
the time is that of 550k real pairs (the vocabulary is smaller, which does not
change the per-token cost of a dict lookup).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from vaa.config import DataConfig
from vaa.data.batching import BatchIterator
from vaa.data.example_cache import featurize_cached
from vaa.data.sources import read_file
from vaa.log_setup import configure_logging

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "snli" / "snli_1.0_train_sample.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SAMPLE), help="a real SNLI sample to repeat")
    parser.add_argument("--pairs", type=int, default=550152, help="pairs to featurise (SNLI 1.0 train: 550,152)")
    parser.add_argument("--families", nargs="+", default=["esim", "hf"], choices=["esim", "hf"])
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured

    start = time.perf_counter()
    dataset = read_file(args.data, DataConfig())
    read_seconds = time.perf_counter() - start
    sample = dataset.pairs
    pairs = [sample[i % len(sample)] for i in range(args.pairs)]
    from vaa.data.pairs import LabelMap

    label_map = LabelMap(sorted({p.label for p in sample}))
    result = {
        "pairs": len(pairs),
        "sample": args.data,
        "sample_pairs": len(sample),
        "read_sample_seconds": round(read_seconds, 2),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "families": {},
    }
    for family in args.families:
        timings = {}
        cpu_start = time.process_time()
        start = time.perf_counter()
        if family == "esim":
            from vaa.models.esim import ESIM

            model = ESIM.build(pairs, label_map, hidden=8)  # vocabulary over all pairs + the GloVe matrix
        else:
            from vaa.models.hf import HFPairModel

            model = HFPairModel.build(pairs[:1], label_map)
        timings["build_seconds"] = round(time.perf_counter() - start, 2)
        timings["build_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        with tempfile.TemporaryDirectory() as cache:
            cpu_start = time.process_time()
            start = time.perf_counter()
            examples = featurize_cached(model, pairs, label_map, cache)  # featurised, then written to the cache
            timings["featurize_and_write_seconds"] = round(time.perf_counter() - start, 2)
            timings["featurize_and_write_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
            start = time.perf_counter()
            BatchIterator(examples, 64, shuffle=True).global_batches(0)
            timings["bucketing_seconds"] = round(time.perf_counter() - start, 2)
            del examples
            cpu_start = time.process_time()
            start = time.perf_counter()
            examples = featurize_cached(model, pairs, label_map, cache)  # what a resume, stage two, a DDP rank pay
            timings["cached_read_seconds"] = round(time.perf_counter() - start, 2)
            timings["cached_read_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        timings["first_time_total_seconds"] = round(
            timings["build_seconds"] + timings["featurize_and_write_seconds"] + timings["bucketing_seconds"], 2
        )
        timings["first_time_pairs_per_s"] = round(len(pairs) / timings["first_time_total_seconds"], 0)
        result["families"][family] = timings
        print(family, json.dumps(timings), flush=True)
        del examples, model
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
