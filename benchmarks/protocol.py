"""The reduced-scale protocol of ../shared/data/README.md as used by every
benchmark here: one place, so stage-one runs of train_esim.py are reused by
table3.py. Caps make the protocol fit a 2-core machine (the paper trains up
to 64 epochs with patience 5); RESULTS.md records them with every figure."""

from __future__ import annotations

DATASETS = ("qqp", "snli", "mnli")
SEEDS = (0, 1, 2)
OUT = "benchmarks/out"

# stage one: at most 10 epochs, early stopping after 3 without gain
STAGE_ONE = {"optim": {"max_epochs": 10, "patience": 3}, "progress": False}
# stage two (authors: batch 32, lr 4e-4 from the esim-vaa preset): at most 3 epochs
STAGE_TWO = {"optim": {"max_epochs": 3, "patience": 2}, "progress": False}


def with_threads(overrides: dict, threads: int) -> dict:
    return {**overrides, "threads": threads}
