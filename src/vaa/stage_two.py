"""Stage two: train model B with the vulnerability vector (``vaa train-vaa``).

Model A comes from a stage-one checkpoint and stays frozen. Unless told
otherwise, stage two reads the same data as A's run (its ``config.json``), with
A's label map. V1/V2 are computed once per pair and cached in stage two's own
run folder (``vcache/``) or in ``vaa.cache_dir`` (see
``vulnerability.FeatureCache``) — never in model A's folder, which stage two
only reads (it may be read-only, or shared). ``cache: false`` computes them
on the fly in every batch, as the authors' code does. Stage two's output may
not be, contain or lie inside model A's folder.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import checkpoint_folder, header, load_pair_model
from .config import RunConfig, check_stage
from .data.batching import Example
from .data.pairs import LabelMap
from .data.sources import Splits, load_splits
from .device import runtime_record, to_numpy
from .features import attachable, calibrate_eps, feature_needs, pair_features, permutation_for, permute
from .figures import plot_losses
from .inference import load_model
from .model_card import write_run_card
from .models.base import PairModel
from .models.vaa import VAAModel
from .run_folder import check_apart
from .runs import (
    RunError,
    a_run_folder,
    featurize_counted,
    final_scores,
    finished_results,
    loss_curve,
    open_run,
    read_json,
    report_data,
    steps_in_log,
    write_json,
)
from .runtime import Runtime, runtime_for
from .tensorboard_log import TensorBoardLog, require_tensorboard, v_statistics
from .training import Trainer, TrainerSettings
from .vulnerability import FeatureCache, state_fingerprint

logger = logging.getLogger(__name__)


def a_folders(model_a: str | Path) -> list[Path]:
    """The folders stage two reads model A from and must never write into."""
    folders = [checkpoint_folder(model_a)]
    run = a_run_folder(model_a)
    if run is not None:
        folders.append(run)
    return folders


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill what stage two inherits from A's run: its data, and its model
    settings (B is a copy of A: ``config.json`` then says what B is). Data
    settings given for stage two (``config.given``: preset, flag, ``--set``,
    Python overrides) win over A's, even a given value equal to the default (a
    given None, e.g. ``train: null``, leaves A's); given settings stage two
    never reads (``model.*``) are warned about (the command line refuses them)."""
    check_stage(config, "stage2", refuse=False)
    if not config.vaa.model_a:
        raise RunError("stage two needs model A: pass --model-a RUN_FOLDER_OR_CHECKPOINT")
    folder = a_run_folder(config.vaa.model_a)
    a_config = RunConfig.load(folder / "config.json") if folder is not None else None
    if a_config is not None:
        config = dataclasses.replace(config, model=a_config.model)
    if config.data.train is not None:
        return config
    if a_config is None:
        raise RunError(f"{config.vaa.model_a} is not inside a run folder, so its data are unknown: pass --train (and --valid)")
    # a given None (no file, no limit) means "not set here": A's value stays
    given = {name: getattr(config.data, name) for name in config.given_in("data") if getattr(config.data, name) is not None}
    return dataclasses.replace(config, data=dataclasses.replace(a_config.data, **given))


def attach_vectors(examples: Sequence[Example], v1: torch.Tensor, v2: torch.Tensor) -> list[Example]:
    """Copies of the examples carrying their cached V1/V2."""
    return [{**e, "v1": v1[i], "v2": v2[i]} for i, e in enumerate(examples)]


def attach_features(examples: Sequence[Example], features: dict[str, Any]) -> list[Example]:
    """Copies of the examples carrying their cached features (V1, V2 and
    what the feature options need), one row each."""
    out = []
    for i, e in enumerate(examples):
        extra = {
            k: (v[i] if not isinstance(v, np.ndarray) else torch.from_numpy(np.asarray(v[i], dtype=np.float32)))
            for k, v in features.items()
        }
        out.append({**e, **extra})
    return out


def _as_numpy(features: dict[str, Any]) -> dict[str, Any]:
    """Cached tensors (and per-pair lists) as the arrays ``attachable`` reads."""
    out: dict[str, Any] = {}
    for k, v in features.items():
        if isinstance(v, list):
            ragged = np.empty(len(v), dtype=object)
            ragged[:] = [x.numpy() for x in v]
            out[k] = ragged
        else:
            out[k] = v.numpy()
    return out


def stage_two_features(raw: dict[str, Any], config: RunConfig, split: str) -> dict[str, Any]:
    """What the examples of one split carry: ``attachable`` features as
    tensors, permuted over the split for the permuted control."""
    feats = attachable(_as_numpy(raw), config.vaa)
    if config.vaa.vulnerability == "permuted":
        feats = permute(feats, permutation_for(len(feats["v1"]), config.seed + sum(map(ord, split))))
    return {
        k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) and v.dtype != object else v)
        for k, v in feats.items()
    }


EPS_CALIBRATION = "eps_calibration.json"  # not calibration.json: that is `vaa calibrate`'s decision rule


def calibrated_attack(
    config: RunConfig, run_dir: Path, model_a: Any, train_examples: Sequence[Example], runtime: Runtime | None = None
) -> RunConfig:
    """With ``vaa.calibrate_flip_rate``, eps is chosen once on the training
    pairs and stored in the run folder (eps_calibration.json): a resumed run reuses
    it, and B's checkpoint carries the calibrated attack. Under DDP rank 0
    calibrates and writes; the other ranks read its result."""
    target = config.vaa.calibrate_flip_rate
    if not target:
        return config
    path = run_dir / EPS_CALIBRATION
    main = runtime is None or runtime.is_main
    if runtime is not None:
        runtime.barrier()  # every rank sees the same folder state
    exists = path.exists() if runtime is None else all(runtime.all_gather(path.exists()))
    if exists:
        found = read_json(path)
    else:
        found = None
        if main:
            found = calibrate_eps(
                model_a, train_examples, config.attack, target, batch_size=config.optim.eval_batch_size, progress=config.progress
            )
            write_json(path, found)
        if runtime is not None:
            found = runtime.broadcast(found)
    logger.info(
        f"eps calibrated to {found['eps']:.4g}: the attack flips {found['flip_rate']:.2%} of {found['pairs']} training pairs (target {target:.2%})"
    )
    return dataclasses.replace(config, attack=dataclasses.replace(config.attack, eps=found["eps"]))


def signal_statistics(v1: torch.Tensor, v2: torch.Tensor) -> dict[str, float]:
    """How big ||V1 - V2|| is: a vanishing signal means B learns nothing from V."""
    d = to_numpy((v1 - v2).norm(dim=-1))
    scale = to_numpy(v1.norm(dim=-1))
    return {
        "mean": float(d.mean()),
        "median": float(np.median(d)),
        "p90": float(np.quantile(d, 0.9)),
        "max": float(d.max()),
        "zero_share": float((d == 0).mean()),
        "mean_relative_to_V1": float((d / np.maximum(scale, 1e-12)).mean()),
    }


def plot_both_stages(a_dir: Path | None, run_dir: Path, label: str = "stage two") -> Path | None:
    """Fig. 5: A's loss curve followed by this run's."""
    curves = []
    boundary = None
    if a_dir is not None:
        steps, losses = loss_curve(a_dir / "loss.jsonl")
        if len(steps):
            curves.append(("stage one (model A)", steps, losses))
            boundary = float(steps[-1])
    steps, losses = loss_curve(run_dir / "loss.jsonl")
    if len(steps):
        curves.append((label, steps, losses))
    return plot_losses(curves, run_dir / "loss_both_stages.png", boundary) if curves else None


def featurize_splits(
    run_dir: Path, model_a: PairModel, label_map: LabelMap, a_dir: Path | None, splits: Splits, runtime: Runtime
) -> dict[str, list[Example]]:
    """Every split featurised by A's featuriser (data.json records what was
    read and truncated). The examples A's run cached (stage one wrote train
    and valid there) are read from A's folder, never written there; what is
    missing is featurised and cached in this run's features/."""
    parts = {"train": splits.train, "valid": splits.valid}
    if splits.test is not None:
        parts["test"] = splits.test
    truncated: dict[str, Any] = {}
    features = run_dir / "features"
    elsewhere = [a_dir / "features"] if a_dir is not None else []
    examples = {
        name: featurize_counted(model_a, d.pairs, label_map, name, truncated, features, runtime, elsewhere)
        for name, d in parts.items()
    }
    if runtime.is_main:
        write_json(run_dir / "data.json", {**splits.reports(), "truncated": truncated})
    return examples


def attach_cached_features(
    config: RunConfig,
    run_dir: Path,
    model_a: PairModel,
    examples: dict[str, list[Example]],
    want: Sequence[str],
    info: dict[str, Any],
    runtime: Runtime,
) -> dict[str, Any] | None:
    """V1/V2 (and the feature options' features) of every split from the
    cache, computed on a miss, attached to the examples in place; the cache
    hits and the size of the signal go to ``info``. Returns the training
    split's features (the standardisation statistics read them)."""
    cache = FeatureCache(Path(config.vaa.cache_dir) if config.vaa.cache_dir else run_dir / "vcache")
    fingerprint = state_fingerprint(model_a)
    info["cache"] = {}
    train_features = None
    for name in examples:
        raw, hit = cache.features(
            model_a,
            examples[name],
            config.attack,
            want,
            fingerprint,
            batch_size=config.optim.eval_batch_size,
            progress=config.progress,
            runtime=runtime,
        )
        features = stage_two_features(raw, config, name)
        if name == "train":
            train_features = features
        examples[name] = attach_features(examples[name], features)
        v1, v2 = raw["v1"], raw["v2"]
        stats = signal_statistics(v1, v2)
        info["cache"][name] = hit
        info[f"signal_{name}"] = stats
        how = "cache hit" if hit["hit"] else f"computed in {hit['seconds']:.1f} s"
        logger.info(
            f"V1/V2 for {len(v1)} {name} pairs: {how}; "
            f"||V1-V2|| mean {stats['mean']:.4g}, median {stats['median']:.4g} ({stats['mean_relative_to_V1']:.2%} of ||V1||)"
        )
    return train_features


def standardize(
    model: VAAModel,
    config: RunConfig,
    train_examples: Sequence[Example],
    want: Sequence[str],
    train_features: dict[str, Any] | None,
) -> dict[str, int]:
    """``normalize: standardize``: store the training pairs' V3 mean and std
    in the model (computed once from every training pair when nothing is
    cached); returns what the statistics cover."""
    if train_features is None:  # no cache: the statistics still come from every training pair, once
        raw = pair_features(
            model.model_a,
            train_examples,
            config.attack,
            [w for w in want if w != "scalars"] or ["scalars"],
            config.optim.eval_batch_size,
            config.progress,
        )
        train_features = stage_two_features(
            {k: (torch.from_numpy(v) if v.dtype != object else list(v)) for k, v in raw.items()}, config, "train"
        )
    with torch.no_grad():
        device = model.projection.weight.device
        x = model.v3_inputs({k: v.to(device) for k, v in train_features.items() if isinstance(v, torch.Tensor)})
    model.set_standardization(x.mean(0), x.std(0))
    return {"features": int(x.shape[1]), "pairs": int(x.shape[0])}


def train_vaa(config: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Train model B (with W) from the frozen model A in ``config.vaa.model_a``."""
    if config.train.adversarial_training != "none":
        raise RunError(
            f"train.adversarial_training={config.train.adversarial_training} is a stage-one option (it trains model A); "
            "stage two trains B with V instead: drop it, or train an adversarial A with `vaa train`"
        )
    config = resolve_config(config)
    runtime = runtime_for(config.device, config.precision)
    if config.tensorboard:
        require_tensorboard()
    assert config.vaa.model_a is not None
    protected = a_folders(config.vaa.model_a)
    check_apart(config.output, protected)
    if not overwrite and finished_results(Path(config.output)) is not None:
        with open_run(config, overwrite, protected, runtime) as (run_dir, done):
            if done is not None:
                return done
    # model A and the data are read (and checked) before the run folder is created or changed
    model_a, label_map, payload_a = load_pair_model(config.vaa.model_a)
    model_a.to(runtime.device)
    a_dir = a_run_folder(config.vaa.model_a)
    splits = load_splits(config.data, label_map=label_map)
    with open_run(config, overwrite, protected, runtime) as (run_dir, done):
        if done is not None:
            return done
        return _train_vaa(config, run_dir, model_a, label_map, payload_a, a_dir, splits, runtime)


def _train_vaa(
    config: RunConfig,
    run_dir: Path,
    model_a: PairModel,
    label_map: LabelMap,
    payload_a: dict[str, Any],
    a_dir: Path | None,
    splits: Splits,
    runtime: Runtime,
) -> dict[str, Any]:
    report_data(splits)
    if runtime.is_main:
        label_map.save(run_dir / "label_map.json")

    examples = featurize_splits(run_dir, model_a, label_map, a_dir, splits, runtime)
    info: dict[str, Any] = {"model_a": payload_a["path"]}
    config = calibrated_attack(config, run_dir, model_a, examples["train"], runtime)
    if config.vaa.calibrate_flip_rate:
        info["eps_calibration"] = read_json(run_dir / EPS_CALIBRATION)
    want = feature_needs(config.vaa)
    cached = config.vaa.cache and config.vaa.b_input == "normal" and config.vaa.vulnerability != "zeros"
    model = VAAModel(model_a, config.vaa, config.attack)
    train_features: dict[str, Any] | None = None
    if cached:
        train_features = attach_cached_features(config, run_dir, model_a, examples, want, info, runtime)
    else:
        logger.info(
            "V1/V2 computed on the fly in every batch (no cache)"
            if config.vaa.vulnerability != "zeros"
            else "control: V replaced by zeros"
        )
    if config.vaa.normalize == "standardize":
        info["standardization"] = standardize(model, config, examples["train"], want, train_features)

    settings = TrainerSettings.for_run(
        config,
        run_dir,
        lambda: header(model_a, label_map, kind="vaa", **model.describe(), model_a_checkpoint=payload_a["path"]),
        learning_rates=model.learning_rates(),
        step_offset=steps_in_log(a_dir / "loss.jsonl") if a_dir else 0,
        stage="stage2",
        runtime=runtime,
    )
    trainer = Trainer(model, examples["train"], examples["valid"], settings)
    if config.tensorboard and runtime.is_main:
        trainer.board = TensorBoardLog(
            run_dir,
            trainer.step_offset,
            epoch_extras=lambda: v_statistics(model, examples["valid"], config.optim.eval_batch_size),
        )
    started = time.perf_counter()
    state = trainer.fit()
    logger.info(state.stop_reason)
    best = load_model(run_dir / "checkpoints" / "best")
    scored = {name: ex for name, ex in examples.items() if name != "train"}
    a_results = read_json(a_dir / "results.json") if a_dir and (a_dir / "results.json").exists() else {}
    results = {
        "stage": "stage2",
        "run": str(run_dir),
        "family": payload_a["model"]["family"],
        "seed": config.seed,
        "vaa": dataclasses.asdict(config.vaa),
        "attack": dataclasses.asdict(config.attack),
        "best_epoch": state.best_epoch + 1,
        "epochs": state.epoch,
        "stop_reason": state.stop_reason,
        "train_seconds_this_call": round(time.perf_counter() - started, 1),
        "info": info,
        "history": state.history,
        "scores": final_scores(run_dir, best.module, scored, splits, config.optim.eval_batch_size, runtime),
        "model_a_scores": a_results.get("scores", {}),
        "runtime": runtime_record(runtime.device, runtime.precision, runtime.world_size),
    }
    if runtime.is_main:
        plot = plot_both_stages(a_dir, run_dir)
        if plot:
            logger.info(f"loss across both stages: {plot}")
        write_json(run_dir / "results.json", results)
        write_run_card(run_dir)
    runtime.barrier()
    return results
