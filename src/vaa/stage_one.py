"""Stage one: train model A (``vaa train``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import header, load_pair_model
from .config import RunConfig
from .data.sources import Splits, load_splits
from .inference import score_examples
from .models import build_model
from .runs import finished_results, prepare_run, write_json
from .training import Trainer, set_seed


def apply_threads(config: RunConfig) -> None:
    if config.threads and config.threads > 0:
        torch.set_num_threads(config.threads)


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


def final_scores(run_dir: Path, splits: Splits, model: torch.nn.Module, base_featurize: Any, config: RunConfig,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Scores of the best checkpoint on validation (and test if given)."""
    scores = {}
    for name, part in (("valid", splits.valid), ("test", splits.test)):
        if part is None:
            continue
        examples = base_featurize(part.pairs, splits.label_map)
        report = score_examples(model, examples, splits.label_map, config.optim.eval_batch_size)
        if report is not None:
            scores[name] = report
            log(f"{name} accuracy of the best checkpoint: {report['accuracy']:.4f} ({report['pairs']} pairs, {part.report.path})")
    return scores


def train(config: RunConfig, overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train model A as ``config`` says; returns the run's results.

    Re-running an interrupted run resumes it; a finished run returns its saved
    results without training again."""
    run_dir = prepare_run(config, overwrite)
    done = finished_results(run_dir)
    if done is not None:
        log(f"{run_dir} is already finished; its results are in {run_dir / 'results.json'}")
        return done
    apply_threads(config)
    set_seed(config.seed)
    splits = load_splits(config.data)
    report_data(splits, log)
    splits.label_map.save(run_dir / "label_map.json")
    write_json(run_dir / "data.json", splits.reports())

    model = build_model(config.model.family, splits.train.pairs, splits.label_map, seed=config.seed, **model_options(config))
    info = getattr(model, "build_info", {})
    if info:
        log("model: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    train_examples = model.featurize_all(splits.train.pairs, splits.label_map)
    valid_examples = model.featurize_all(splits.valid.pairs, splits.label_map)
    trainer = Trainer(
        model, train_examples, valid_examples, config.optim, run_dir,
        describe=lambda: header(model, splits.label_map, kind="model", build_info=info),
        seed=config.seed, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        progress=config.progress, stage="stage1",
    )
    started = time.perf_counter()
    if (run_dir / "checkpoints" / "last.pt").exists():
        log(f"resuming from {run_dir / 'checkpoints' / 'last.pt'}")
    state = trainer.fit()
    log(state.stop_reason)

    best, _, _ = load_pair_model(run_dir / "checkpoints" / "best.pt")
    results = {
        "stage": "stage1", "run": str(run_dir), "family": config.model.family, "seed": config.seed,
        "best_epoch": state.best_epoch + 1, "epochs": state.epoch, "stop_reason": state.stop_reason,
        "train_seconds_this_call": round(time.perf_counter() - started, 1), "model_info": info,
        "history": state.history, "scores": final_scores(run_dir, splits, best, best.featurize_all, config, log),
    }
    write_json(run_dir / "results.json", results)
    return results
