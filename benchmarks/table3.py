"""Benchmark: the paper's Table 3 at reduced scale — baseline A vs +VAA vs
the two controls (V = 0; random direction of the same norm), seeds 0 1 2, on
one dataset of ../shared/data under the reduced-scale protocol.

    .venv/bin/python benchmarks/table3.py --dataset qqp --threads 1
    .venv/bin/python benchmarks/table3.py --dataset qqp --model minilm --seeds 0 --threads 1
    .venv/bin/python benchmarks/table3.py --dataset qqp --baselines fgm pgd --variants vaa v1only --threads 1

Equivalent to ``vaa reproduce --preset qqp-esim --output benchmarks/out/qqp
--set-a optim.max_epochs=10 --set-a optim.patience=3 --set-b optim.max_epochs=3
--set-b optim.patience=2`` for ESIM (protocol.py has MiniLM's settings).
Writes table3.md/.json/.png and the loss plot into benchmarks/out/<dataset>[-minilm]/.
``--baselines fgm pgd`` also trains model A adversarially trained (FGM, PGD) per
seed beside A, with A's protocol (same seeds, data, epochs and patience), in
seed<k>/a-fgm and seed<k>/a-pgd, and adds them to the table (``--set-adv`` for
their settings, e.g. ``train.adversarial_eps=0.5``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protocol import DATASETS, MODELS, OUT, SEEDS, with_threads
from vaa.experiments import BASELINES, DEFAULT_VARIANTS, VARIANTS, reproduce, write_table
from vaa.log_setup import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--model", choices=sorted(MODELS), default="esim")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(DEFAULT_VARIANTS),
        help="stage-two variants to run (e.g. one per process); the table covers these only",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=list(BASELINES),
        default=[],
        help="adversarially trained A's to train beside A and add to the table (fgm, pgd)",
    )
    parser.add_argument(
        "--set-adv",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="setting of the adversarially trained A's, e.g. train.adversarial_eps=0.5",
    )
    parser.add_argument("--test", help="a test file (reported separately)")
    parser.add_argument("--out", default=OUT)
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="rebuild table3.md/.json/.png from the finished runs' saved predictions; train nothing",
    )
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured
    stage_one, stage_two = MODELS[args.model]
    over_a = with_threads(stage_one, args.threads)
    if args.test:
        over_a = {**over_a, "data": {**over_a.get("data", {}), "test": args.test}}
    folder = args.dataset if args.model == "esim" else f"{args.dataset}-{args.model}"
    if args.summarize_only:
        print(
            write_table(
                Path(args.out) / folder,
                args.seeds,
                args.variants,
                f"{args.dataset.upper()}, {args.model}",
                baselines=args.baselines,
            )
        )
        return
    reproduce(
        f"{args.dataset}-{args.model}",
        Path(args.out) / folder,
        seeds=args.seeds,
        variants=args.variants,
        overrides_a=over_a,
        overrides_b=with_threads(stage_two, args.threads),
        title=f"{args.dataset.upper()}, {args.model}",
        baselines=args.baselines,
        overrides_adversarial=adversarial_overrides(args.set_adv),
    )


def adversarial_overrides(items: list[str]) -> dict:
    """--set-adv KEY=VALUE items as nested settings (the CLI's own parser of --set)."""
    from vaa.cli import _key_values

    return _key_values(items, "--set-adv")


if __name__ == "__main__":
    main()
