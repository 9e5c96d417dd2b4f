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


# MiniLM (BERT family) costs ~10 training pairs/s on one CPU core, so its
# protocol is cut further: the first 4,000 pairs of the training sample and of
# the dev file (both random orders already; dev's first 4,000 are 2,000 per
# class), the preset's 3 fine-tuning epochs for A, 2 for stage two.
MINILM_STAGE_ONE = {"data": {"limit": 4000}, "progress": False}
MINILM_STAGE_TWO = {"optim": {"max_epochs": 2}, "progress": False}
MODELS = {"esim": (STAGE_ONE, STAGE_TWO), "minilm": (MINILM_STAGE_ONE, MINILM_STAGE_TWO)}
