"""GPU check: run it on a machine with a GPU; writes one JSON with everything.

    .venv/bin/python benchmarks/gpu_check.py --device cuda --out benchmarks/out/gpu_check.json
    .venv/bin/python benchmarks/gpu_check.py --device cpu --pairs 64 --train-steps 2   # exercises every part on a CPU

1. the test suite's device tests (tests/test_device.py) with ``VAA_TEST_DEVICE``
   set to the device: every stage with no tensor created on a default device;
2. equality with the CPU: V1/V2 (the CPU path is the unrolled LSTM, the
   device path PyTorch's/cuDNN's) and the weights after one training step
   from the same initial weights, for ESIM and MiniLM (max abs differences
   and whether they are within the stated tolerance);
3. throughput in fp32 and bf16 on the QQP sample: training pairs/s of ESIM
   (the paper's hidden 300, batch 64) and MiniLM (batch 32), and inference
   pairs/s of A alone and of VAA with the attack on the fly (A forward +
   input-gradient backward + adversarial forward, then B).

Every figure is measured after warm-up steps, with the device synchronised.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaa.log_setup import configure_logging

REPO = Path(__file__).resolve().parents[1]
QQP = REPO.parent / "shared" / "data" / "qqp" / "train_sample.tsv"
# CUDA vs CPU: different kernels and summation orders; fp32 rounding over a few layers stays far below these
TOLERANCE = {"v1v2_abs": 1e-3, "step_abs": 1e-4}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def device_tests(device: str) -> dict[str, Any]:
    """tests/test_device.py on ``device`` in a subprocess."""
    env = {**os.environ, "VAA_TEST_DEVICE": device, "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_device.py")],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    return {
        "exit_code": proc.returncode,
        "summary": tail[0] if tail else "",
        "seconds": round(time.perf_counter() - start, 1),
        "output_tail": proc.stdout[-2000:] if proc.returncode else "",
    }


def build(family: str, pairs, label_map, model_path: str | None):
    from vaa.models import build_model

    torch.manual_seed(0)
    if family == "esim":
        return build_model("esim", pairs, label_map, hidden=300, dropout=0.5)
    return build_model("hf", pairs, label_map, path=model_path, max_length=128)


def equality(model, examples, device: torch.device, batch_size: int) -> dict[str, Any]:
    """Max abs differences device vs CPU: V1/V2, and weights after one step."""
    from vaa.config import AttackConfig, OptimConfig
    from vaa.runtime import Runtime
    from vaa.training import Trainer, TrainerSettings
    from vaa.vulnerability import vector_features

    cpu_model = copy.deepcopy(model).cpu()
    dev_model = copy.deepcopy(model).to(device)
    part = examples[: min(len(examples), 4 * batch_size)]
    v1c, v2c = vector_features(cpu_model, part, AttackConfig(), batch_size)
    v1d, v2d = vector_features(dev_model, part, AttackConfig(), batch_size)
    out: dict[str, Any] = {
        "pairs": len(part),
        "v1_max_abs": float((v1c - v1d).abs().max()),
        "v2_max_abs": float((v2c - v2d).abs().max()),
        "v1_minus_v2_max_abs": float(((v1c - v2c) - (v1d - v2d)).abs().max()),
    }
    weights = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m, dev in (("cpu", copy.deepcopy(model).cpu(), torch.device("cpu")), ("device", copy.deepcopy(model), device)):
            m.eval()  # no dropout: the two steps must see the same function
            trainer = Trainer(
                m,
                part,
                part,
                TrainerSettings(
                    OptimConfig(batch_size=batch_size), Path(tmp) / name, lambda: {}, progress=False, runtime=Runtime(dev)
                ),
            )
            m.eval()
            # one optimiser step of the library's own training step (forward, loss, backward, clip, Adam)
            trainer.train_step(list(range(min(batch_size, len(part)))))
            weights[name] = {k: v.detach().cpu() for k, v in m.state_dict().items()}
    out["step_max_abs"] = max(float((weights["cpu"][k] - weights["device"][k]).abs().max()) for k in weights["cpu"])
    out["within_tolerance"] = (
        max(out["v1_max_abs"], out["v2_max_abs"]) <= TOLERANCE["v1v2_abs"] and out["step_max_abs"] <= TOLERANCE["step_abs"]
    )
    return out


def throughput(
    model, examples, device: torch.device, precision: str, batch_size: int, eval_batch_size: int, train_steps: int
) -> dict[str, Any]:
    """Training and inference pairs/s of A, and inference pairs/s of VAA."""
    from vaa.config import AttackConfig, OptimConfig, VAAConfig
    from vaa.models.vaa import VAAModel
    from vaa.prediction import predict_examples
    from vaa.runtime import Runtime
    from vaa.training import Trainer, TrainerSettings

    runtime = Runtime(device, precision)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        a = copy.deepcopy(model).to(device)
        trainer = Trainer(
            a,
            examples,
            examples[:batch_size],
            TrainerSettings(OptimConfig(batch_size=batch_size), tmp, lambda: {}, progress=False, runtime=runtime),
        )
        batches = trainer.batches.global_batches(0)
        warm = min(2, len(batches) - 1)
        for indices in batches[:warm]:
            trainer.train_step(indices)
        steps = batches[warm : warm + train_steps]
        seconds = timed(device, lambda: [trainer.train_step(ix) for ix in steps])
        out["train_pairs_per_s"] = round(sum(map(len, steps)) / seconds, 1)
        out["train_steps_timed"] = len(steps)
    a.eval()
    predict_examples(a, examples[:eval_batch_size], eval_batch_size, runtime=runtime)  # warm-up
    seconds = timed(device, lambda: predict_examples(a, examples, eval_batch_size, runtime=runtime))
    out["infer_a_pairs_per_s"] = round(len(examples) / seconds, 1)
    vaa = VAAModel(copy.deepcopy(model), VAAConfig(cache=False), AttackConfig()).to(device).eval()
    predict_examples(vaa, examples[:eval_batch_size], eval_batch_size, runtime=runtime)
    seconds = timed(device, lambda: predict_examples(vaa, examples, eval_batch_size, runtime=runtime))
    out["infer_vaa_pairs_per_s"] = round(len(examples) / seconds, 1)
    out["vaa_over_a_inference_time"] = round(out["infer_a_pairs_per_s"] / out["infer_vaa_pairs_per_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (to exercise the script without a GPU)")
    parser.add_argument("--data", default=str(QQP), help="labelled pairs (QQP sample)")
    parser.add_argument("--pairs", type=int, default=4096, help="pairs for throughput (the first of --data)")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per setting")
    parser.add_argument("--families", nargs="+", default=["esim", "hf"], choices=["esim", "hf"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--model", help="HF family: a local model folder (default: all-MiniLM-L6-v2 from PyPI)")
    parser.add_argument("--skip-tests", action="store_true", help="skip the device tests")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", default="benchmarks/out/gpu_check.json")
    args = parser.parse_args()
    configure_logging("INFO")  # the library logs (files read, epochs) only when configured
    if args.threads:
        torch.set_num_threads(args.threads)

    from vaa.config import DataConfig
    from vaa.data.sources import read_file
    from vaa.device import resolve_device, runtime_record

    device = resolve_device(args.device)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.node(),
        "runtime": runtime_record(device, "fp32"),
        "cpu_count": os.cpu_count(),
        "data": args.data,
        "pairs": args.pairs,
        "tolerance": TOLERANCE,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
    if not args.skip_tests:
        report["device_tests"] = device_tests(str(device))
        print("device tests:", report["device_tests"]["summary"], flush=True)
    dataset = read_file(args.data, DataConfig(limit=args.pairs), require_labels=True)
    from vaa.data.pairs import LabelMap

    label_map = LabelMap(sorted({p.label for p in dataset.pairs}))
    report["families"] = {}
    for family in args.families:
        model = build(family, dataset.pairs, label_map, args.model)
        examples = model.featurize_all(dataset.pairs, label_map)
        batch_size, eval_batch_size = (64, 256) if family == "esim" else (32, 128)
        entry: dict[str, Any] = {
            "batch_size": batch_size,
            "eval_batch_size": eval_batch_size,
            "equality_with_cpu": equality(model, examples, device, batch_size),
        }
        print(family, "equality:", json.dumps(entry["equality_with_cpu"]), flush=True)
        for precision in args.precisions:
            try:
                entry[precision] = throughput(model, examples, device, precision, batch_size, eval_batch_size, args.train_steps)
            except (RuntimeError, ValueError) as exc:  # e.g. fp16 on a CPU
                entry[precision] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            print(family, precision, json.dumps(entry[precision]), flush=True)
        report["families"][family] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
