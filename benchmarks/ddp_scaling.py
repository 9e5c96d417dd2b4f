"""Benchmark: DDP scaling on this machine, 1 process against N processes
(torchrun, gloo backend, one thread each), ESIM stage one (the paper's
hidden 300, batch 64 global) on a subset of the QQP sample, one epoch.

    .venv/bin/python benchmarks/ddp_scaling.py --pairs 2000 --nproc 2 --out benchmarks/out/ddp_scaling.json

Both runs are launched by this one invocation, back to back; the figure is
the training throughput of the epoch (validation excluded) from each run's
metrics.jsonl, and the speed-up their ratio. The load average and the other
Python processes at the start are recorded: on a shared machine the ratio is
only as good as the cores that were free.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaa.log_setup import configure_logging

REPO = Path(__file__).resolve().parents[1]
QQP = REPO.parent / "shared" / "data" / "qqp"


def other_processes() -> list[str]:
    """Other busy Python processes (what shares the cores)."""
    out = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()
    mine = str(os.getpid())
    return [line.strip()[:160] for line in out[1:] if "python" in line and not line.strip().startswith(mine)][:8]


def run(nproc: int, args: argparse.Namespace, folder: Path) -> dict:
    output = folder / f"nproc{nproc}"
    vaa = [
        "train",
        "--preset",
        "qqp-esim",
        "--train",
        str(QQP / "train_sample.tsv"),
        "--valid",
        str(QQP / "dev.tsv"),
        "--limit",
        str(args.pairs),
        "--epochs",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--seed",
        str(args.seed),
        "--output",
        str(output),
        "--no-progress",
    ]
    if nproc == 1:
        command = [sys.executable, "-m", "vaa", *vaa]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            "-m",
            "vaa",
            *vaa,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    epoch = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()][0]
    return {
        "nproc": nproc,
        "command": " ".join(command),
        "train_pairs_per_s": epoch["train_pairs_per_s"],
        "epoch_seconds": epoch["epoch_seconds"],
        "valid_accuracy": epoch["valid_accuracy"],
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="first pairs of the QQP sample (and of dev.tsv for validation)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "other_python_processes_at_start": other_processes(),
        "pairs": args.pairs,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(1, args, Path(tmp)), run(args.nproc, args, Path(tmp))]
    report["runs"] = runs
    report["speedup"] = round(runs[1]["train_pairs_per_s"] / runs[0]["train_pairs_per_s"], 2)
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
