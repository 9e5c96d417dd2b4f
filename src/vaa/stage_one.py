"""Stage one: train model A (``vaa train``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import header, load_pair_model
from .config import RunConfig, check_stage
from .data.batching import Example
from .data.example_cache import featurize_cached
from .data.sources import Splits, load_splits
from .device import runtime_record
from .model_card import write_run_card
from .models import build_model
from .runs import featurize_counted, final_scores, finished_results, open_run, report_data, write_json
from .runtime import LOCAL, Runtime, runtime_for
from .tensorboard_log import TensorBoardLog, require_tensorboard
from .training import Trainer, TrainerSettings

logger = logging.getLogger(__name__)


def model_options(config: RunConfig) -> dict[str, Any]:
    """The model section as keyword arguments for the family's ``build``."""
    import dataclasses

    options = dataclasses.asdict(config.model)
    options.pop("family")
    return options


def score_best(
    config: RunConfig, run_dir: Path, splits: Splits, valid_examples: Sequence[Example] | None = None, runtime: Runtime = LOCAL
) -> dict[str, Any]:
    """Scores of the run's best checkpoint on its validation (and test) split,
    predictions saved. Also used for finished runs made before predictions
    were saved: the paired tests of Table 3 need them. ``valid_examples``:
    the validation split already featurised by training (same featuriser)."""
    best, _, _ = load_pair_model(run_dir / "checkpoints" / "best")
    if valid_examples is None:
        valid_examples = featurize_cached(best, splits.valid.pairs, splits.label_map, run_dir / "features", runtime)
    examples = {"valid": valid_examples}
    if splits.test is not None:
        examples["test"] = featurize_cached(best, splits.test.pairs, splits.label_map, run_dir / "features", runtime)
    return final_scores(run_dir, best, examples, splits, config.optim.eval_batch_size, runtime)


def train(config: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Train model A as ``config`` says; returns the run's results.

    Re-running an interrupted run resumes it; a finished run returns its saved
    results without training again. The data are read (and checked) before
    the run folder is created or changed, so bad data leave nothing behind.
    Under ``torchrun`` every process calls this; they train one model with
    DDP and rank 0 writes."""
    check_stage(config, "stage1", refuse=False)
    runtime = runtime_for(config.device, config.precision)
    if config.tensorboard:
        require_tensorboard()
    splits = load_splits(config.data) if overwrite or finished_results(Path(config.output)) is None else None
    with open_run(config, overwrite, runtime=runtime) as (run_dir, done):
        return _train(config, run_dir, done, splits, runtime)


def _train(
    config: RunConfig, run_dir: Path, done: dict[str, Any] | None, splits: Splits | None, runtime: Runtime
) -> dict[str, Any]:
    if done is not None:
        if not (run_dir / "predictions" / "valid.npz").exists():
            logger.info(f"{run_dir} has no saved predictions; scoring its best checkpoint")
            score_best(config, run_dir, splits or load_splits(config.data), runtime=runtime)
        return done
    splits = splits or load_splits(config.data)
    report_data(splits)
    if runtime.is_main:
        splits.label_map.save(run_dir / "label_map.json")

    model = build_model(config.model.family, splits.train.pairs, splits.label_map, seed=config.seed, **model_options(config))
    info = getattr(model, "build_info", {})
    if info:
        logger.info("model: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    # cached in the run folder (features/): a resume, stage two and every DDP rank read them back
    truncated: dict[str, Any] = {}
    features = run_dir / "features"
    train_examples = featurize_counted(model, splits.train.pairs, splits.label_map, "train", truncated, features, runtime)
    valid_examples = featurize_counted(model, splits.valid.pairs, splits.label_map, "valid", truncated, features, runtime)
    if runtime.is_main:
        write_json(run_dir / "data.json", {**splits.reports(), "truncated": truncated})
    settings = TrainerSettings.for_run(
        config,
        run_dir,
        lambda: header(model, splits.label_map, kind="model", build_info=info),
        stage="stage1",
        runtime=runtime,
        adversarial=config.train,
    )
    trainer = Trainer(model, train_examples, valid_examples, settings)
    if config.tensorboard and runtime.is_main:
        trainer.board = TensorBoardLog(run_dir)
    started = time.perf_counter()
    if (run_dir / "checkpoints" / "last").exists():
        logger.info(f"resuming from {run_dir / 'checkpoints' / 'last'}")
    state = trainer.fit()
    logger.info(state.stop_reason)

    results = {
        "stage": "stage1",
        "run": str(run_dir),
        "family": config.model.family,
        "seed": config.seed,
        "best_epoch": state.best_epoch + 1,
        "epochs": state.epoch,
        "stop_reason": state.stop_reason,
        "train_seconds_this_call": round(time.perf_counter() - started, 1),
        "model_info": info,
        "history": state.history,
        "scores": score_best(config, run_dir, splits, valid_examples, runtime),
        "runtime": runtime_record(runtime.device, runtime.precision, runtime.world_size),
    }
    if runtime.is_main:
        write_json(run_dir / "results.json", results)
        write_run_card(run_dir)
    runtime.barrier()  # results.json exists for every rank once train() returns
    return results
