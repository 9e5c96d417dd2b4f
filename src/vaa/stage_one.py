"""Stage one: train model A (``vaa train``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .checkpoint import header, load_pair_model
from .config import RunConfig
from .data.batching import Example
from .data.example_cache import featurize_cached
from .data.sources import Splits, load_splits
from .device import runtime_record
from .metrics import classification_report
from .models import build_model
from .runs import RunError, finished_results, prepare_run, write_json
from .runtime import LOCAL, Runtime, runtime_for
from .training import Trainer, predict_examples, set_seed


def open_run(config: RunConfig, overwrite: bool, log: Callable[[str], None],
             runtime: Runtime = LOCAL) -> tuple[Path, dict[str, Any] | None]:
    """Open the run folder; return the saved results if the run is finished,
    else set threads and seeds for the work ahead. Under DDP rank 0 opens the
    folder (and reports a refusal to every rank), the others wait for it."""
    error = None
    if runtime.is_main:
        try:
            prepare_run(config, overwrite, runtime_record(runtime.device, runtime.precision, runtime.world_size))
        except RunError as exc:
            error = str(exc)
    error = runtime.broadcast(error)
    if error is not None:
        raise RunError(error)
    run_dir = Path(config.output)
    done = finished_results(run_dir)
    if done is not None:
        log(f"{run_dir} is already finished; its results are in {run_dir / 'results.json'}")
        return run_dir, done
    if config.threads and config.threads > 0:
        torch.set_num_threads(config.threads)
    set_seed(config.seed)
    return run_dir, None


def model_options(config: RunConfig) -> dict[str, Any]:
    """The model section as keyword arguments for the family's ``build``."""
    import dataclasses

    options = dataclasses.asdict(config.model)
    options.pop("family")
    return options


def report_data(splits: Splits, log: Callable[[str], None]) -> None:
    for note in splits.notes:
        log(note)
    for part in (splits.train, splits.valid, splits.test):
        if part is not None:
            log(part.report.summary())


def final_scores(run_dir: Path, model: torch.nn.Module, examples: dict[str, Sequence[Example]], splits: Splits,
                 batch_size: int, log: Callable[[str], None], runtime: Runtime = LOCAL) -> dict[str, Any]:
    """Scores of the best checkpoint on each labelled split; the predictions
    go to ``predictions/<split>.npz`` (paired significance tests read them).
    Under DDP scoring is sharded and gathered; rank 0 writes."""
    scores = {}
    model.to(runtime.device)
    for name, part in examples.items():
        preds = predict_examples(model, part, batch_size, runtime=runtime)
        if runtime.is_main:
            out = run_dir / "predictions"
            out.mkdir(exist_ok=True)
            np.savez_compressed(out / f"{name}.npz", predicted=preds.predicted, gold=preds.labels, probs=preds.probs)
        if (preds.labels >= 0).any():
            report = classification_report(preds.labels, preds.predicted, splits.label_map.names, probs=preds.probs)
            scores[name] = report
            source = getattr(splits, name).report.path
            log(f"{name} accuracy of the best checkpoint: {report['accuracy']:.4f} ({report['pairs']} pairs, {source})")
    return scores


def score_best(config: RunConfig, run_dir: Path, splits: Splits, log: Callable[[str], None] = print,
               valid_examples: Sequence[Example] | None = None, runtime: Runtime = LOCAL) -> dict[str, Any]:
    """Scores of the run's best checkpoint on its validation (and test) split,
    predictions saved. Also used for finished runs made before predictions
    were saved: the paired tests of Table 3 need them. ``valid_examples``:
    the validation split already featurised by training (same featuriser)."""
    best, _, _ = load_pair_model(run_dir / "checkpoints" / "best.pt")
    if valid_examples is None:
        valid_examples = featurize_cached(best, splits.valid.pairs, splits.label_map, run_dir / "features", runtime)
    examples = {"valid": valid_examples}
    if splits.test is not None:
        examples["test"] = featurize_cached(best, splits.test.pairs, splits.label_map, run_dir / "features", runtime)
    return final_scores(run_dir, best, examples, splits, config.optim.eval_batch_size, log, runtime)


def train(config: RunConfig, overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train model A as ``config`` says; returns the run's results.

    Re-running an interrupted run resumes it; a finished run returns its saved
    results without training again. Under ``torchrun`` every process calls
    this; they train one model with DDP and rank 0 writes."""
    runtime = runtime_for(config.device, config.precision)
    if not runtime.is_main:
        log = _quiet
    run_dir, done = open_run(config, overwrite, log, runtime)
    if done is not None:
        if not (run_dir / "predictions" / "valid.npz").exists():
            log(f"{run_dir} has no saved predictions; scoring its best checkpoint")
            score_best(config, run_dir, load_splits(config.data), log, runtime=runtime)
        return done
    splits = load_splits(config.data)
    report_data(splits, log)
    if runtime.is_main:
        splits.label_map.save(run_dir / "label_map.json")
        write_json(run_dir / "data.json", splits.reports())

    model = build_model(config.model.family, splits.train.pairs, splits.label_map, seed=config.seed, **model_options(config))
    info = getattr(model, "build_info", {})
    if info:
        log("model: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    # cached in the run folder: a resume, stage two and every DDP rank read them back
    train_examples = featurize_cached(model, splits.train.pairs, splits.label_map, run_dir / "features", runtime)
    valid_examples = featurize_cached(model, splits.valid.pairs, splits.label_map, run_dir / "features", runtime)
    trainer = Trainer(
        model, train_examples, valid_examples, config.optim, run_dir,
        describe=lambda: header(model, splits.label_map, kind="model", build_info=info),
        seed=config.seed, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        progress=config.progress, stage="stage1", runtime=runtime,
    )
    started = time.perf_counter()
    if (run_dir / "checkpoints" / "last.pt").exists():
        log(f"resuming from {run_dir / 'checkpoints' / 'last.pt'}")
    state = trainer.fit()
    log(state.stop_reason)

    results = {
        "stage": "stage1", "run": str(run_dir), "family": config.model.family, "seed": config.seed,
        "best_epoch": state.best_epoch + 1, "epochs": state.epoch, "stop_reason": state.stop_reason,
        "train_seconds_this_call": round(time.perf_counter() - started, 1), "model_info": info,
        "history": state.history, "scores": score_best(config, run_dir, splits, log, valid_examples, runtime),
        "runtime": runtime_record(runtime.device, runtime.precision, runtime.world_size),
    }
    if runtime.is_main:
        write_json(run_dir / "results.json", results)
    runtime.barrier()  # results.json exists for every rank once train() returns
    return results


def _quiet(message: str) -> None:
    """The log of ranks other than 0: they compute, rank 0 speaks."""
