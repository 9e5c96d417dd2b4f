"""One rank of the 2-process DDP tests (tests/test_distributed.py), started by
``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py WORKDIR``.

Runs, through the library's own entry points, every scenario the tests check:
stage one (plain, and adversarially trained with FGM and PGD), stage two (with
the V1/V2 cache built in parallel), a stage-one run
interrupted after 5 batches and resumed, the parallel cache and sharded
evaluation on their own, and a NaN in rank 1's on-the-fly attack. Each rank records every file-system write it makes
under WORKDIR/ddp (an audit hook sees them all, whoever makes them) and what
it computed, in WORKDIR/reports/rank<N>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
WORKDIR = Path(sys.argv[1]).resolve()
WATCHED = str(WORKDIR / "ddp")
WRITES: list[str] = []


def _audit(event: str, args: tuple) -> None:
    """Record writes under WATCHED: opens for writing, mkdir, rename/replace, remove."""
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing and str(path).startswith(WATCHED):
            WRITES.append(f"open {path}")
    elif event in ("os.mkdir", "os.rename", "os.remove", "shutil.rmtree"):
        if any(str(a).startswith(WATCHED) for a in args if isinstance(a, (str, os.PathLike))):
            WRITES.append(f"{event} {args[0]}")


class Interrupted(Exception):
    pass


def main() -> None:
    import numpy as np

    from vaa.checkpoint import load_pair_model
    from vaa.config import RunConfig
    from vaa.data.sources import load_splits
    from vaa.prediction import predict_examples
    from vaa.runtime import leave_process_group, runtime_for
    from vaa.stage_one import train
    from vaa.stage_two import train_vaa
    from vaa.training import Trainer
    from vaa.vulnerability import FeatureCache

    sys.addaudithook(_audit)
    import time

    started = time.perf_counter()
    report: dict = {"seconds": {}}

    def lap(name: str) -> None:
        report["seconds"][name] = round(time.perf_counter() - started, 2)

    lap("imports")
    a_config = RunConfig.load(WORKDIR / "a.json")
    a = train(a_config)
    report["a"] = {
        "epochs": a["epochs"],
        "best_epoch": a["best_epoch"],
        "lrs": [h["lr"] for h in a["history"]],
        "accuracies": [h["valid_accuracy"] for h in a["history"]],
        "losses": [h["train_loss"] for h in a["history"]],
    }
    lap("stage one")
    for method in ("fgm", "pgd"):
        adv = train(RunConfig.load(WORKDIR / f"a-{method}.json"))
        report[method] = {"losses": [h["train_loss"] for h in adv["history"]]}
    lap("adversarial training")
    b = train_vaa(RunConfig.load(WORKDIR / "b.json"))
    report["b"] = {"epochs": b["epochs"], "cache_hit": b["info"]["cache"]["train"]["hit"]}

    b2 = train_vaa(RunConfig.load(WORKDIR / "b2.json"))
    report["b2"] = {"epochs": b2["epochs"]}
    lap("stage two")
    # interrupted after 5 batches (mid-epoch, mid loss window), then the same command again
    original = Trainer.fit

    def interrupted_fit(self, resume=True, stop_after_batches=None):
        original(self, resume, stop_after_batches=5)
        raise Interrupted()

    Trainer.fit = interrupted_fit
    resume_config = RunConfig.load(WORKDIR / "resume.json")
    try:
        train(resume_config)
    except Interrupted:
        pass
    Trainer.fit = original
    r = train(resume_config)
    report["resume"] = {
        "epochs": r["epochs"],
        "best_epoch": r["best_epoch"],
        "accuracies": [h["valid_accuracy"] for h in r["history"]],
    }

    lap("interrupted and resumed")
    # the parallel cache and sharded evaluation, on A's best checkpoint
    runtime = runtime_for("cpu")
    model, label_map, _ = load_pair_model(WORKDIR / "ddp" / "a")
    splits = load_splits(a_config.data)
    examples = model.featurize_all(splits.valid.pairs, label_map)
    v1, v2, info = FeatureCache(WORKDIR / "ddp" / "cache").get_or_compute(
        model, examples, RunConfig().attack, batch_size=5, runtime=runtime
    )
    preds = predict_examples(model, examples, batch_size=5, runtime=runtime)
    report["cache"] = {"hit": info["hit"], "v1_sum": float(v1.double().sum()), "v2_sum": float(v2.double().sum())}
    report["eval"] = {"accuracy": preds.accuracy, "loss": preds.loss, "probs": np.round(preds.probs, 12).tolist()}
    lap("cache and evaluation")
    # a NaN on rank 1 only, inside the on-the-fly attack of stage two (training) and of a
    # stage-two model's prediction: every rank must stop with rank 1's error, at once
    import vaa.models.vaa as vaa_module
    from vaa.guards import NonFiniteError
    from vaa.inference import load_model

    vaa_b2 = load_model(WORKDIR / "ddp" / "b2").module
    if runtime.rank == 1:
        real = vaa_module.perturbation
        vaa_module.perturbation = lambda base, cfg: [torch.full_like(s, float("nan")) for s in real(base, cfg)]
    report["nan"] = {}
    nan_config = RunConfig.load(WORKDIR / "nan.json")
    for what, call in (
        ("train", lambda: train_vaa(nan_config)),
        ("predict", lambda: predict_examples(vaa_b2, examples, batch_size=5, runtime=runtime)),
    ):
        try:
            call()
            report["nan"][what] = "finished"
        except NonFiniteError as exc:
            report["nan"][what] = str(exc)
    lap("NaN on one rank")
    report["writes"] = WRITES
    report["rank"] = runtime.rank
    out = WORKDIR / "reports"
    out.mkdir(exist_ok=True)
    (out / f"rank{runtime.rank}.json").write_text(json.dumps(report))
    leave_process_group()


if __name__ == "__main__":
    main()
