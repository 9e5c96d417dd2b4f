"""Benchmark: the paper's Table 3 at reduced scale — baseline ESIM vs +VAA vs
the two controls (V = 0; random direction of the same norm), seeds 0 1 2, on
one dataset of ../shared/data under the reduced-scale protocol.

    .venv/bin/python benchmarks/table3.py --dataset qqp --threads 1

Equivalent to ``vaa reproduce --preset qqp-esim --output benchmarks/out/qqp
--set-a optim.max_epochs=10 --set-a optim.patience=3 --set-b optim.max_epochs=3
--set-b optim.patience=2``. Writes table3.md/.json/.png and the loss plot
into benchmarks/out/<dataset>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protocol import DATASETS, OUT, SEEDS, STAGE_ONE, STAGE_TWO, with_threads
from vaa.experiments import reproduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test", help="a test file (reported separately)")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    over_a = with_threads(STAGE_ONE, args.threads)
    if args.test:
        over_a = {**over_a, "data": {"test": args.test}}
    reproduce(f"{args.dataset}-esim", Path(args.out) / args.dataset, seeds=args.seeds, stage_two_preset="esim-vaa",
              overrides_a=over_a, overrides_b=with_threads(STAGE_TWO, args.threads), title=f"{args.dataset.upper()}, ESIM")


if __name__ == "__main__":
    main()
