"""Run folders: one folder per run that explains itself, and the helpers the
stages share to open one, report into it and read it back.

    <run>/.vaa-run             marker: a folder vaa made (written first; see run_folder.py)
    <run>/.vaa-lock            advisory lock while a command uses the folder
    <run>/config.json          the resolved configuration, with a "runtime" record
                               (device, precision, world size, versions)
    <run>/label_map.json       label names in class-index order
    <run>/data.json            what was read (files, formats, kept/skipped rows, truncated pairs)
    <run>/features/            featurised splits (data/example_cache.py), read back on resume,
                               by stage two and by every DDP rank
    <run>/metrics.jsonl        one line per epoch (validation accuracy, loss, lr, speed)
    <run>/loss.jsonl           training loss every ``log_every`` batches
    <run>/tensorboard/         with ``tensorboard: true``: the same curves for TensorBoard (tensorboard_log.py)
    <run>/checkpoints/         best/ (best validation accuracy), last/ (resume): folders
                               with model.safetensors + vaa.json (see checkpoint.py)
    <run>/predictions/         <split>.npz of the best checkpoint (the paired tests read them)
    <run>/results.json         final scores of the best checkpoint; its presence marks a finished run
    <run>/README.md            the model card (model_card.py), written from the files above
    stage two only:
    <run>/vcache/              the V1/V2 (and feature) cache (vulnerability.FeatureCache)
    <run>/eps_calibration.json eps chosen for ``vaa.calibrate_flip_rate``
    <run>/loss_both_stages.png Fig. 5: A's loss curve followed by B's
    written later, by other commands:
    <run>/calibration.json     ``vaa calibrate``: the re-fitted decision rule
    <run>/calibration.png      its reliability diagram
    <run>/analysis/            the README's ``vaa analyze --output RUN/analysis``

``run_folder.KNOWN_ENTRIES`` lists these names: ``--overwrite`` deletes
nothing else. Re-running the same command resumes an interrupted run, and
returns the saved results of a finished one. A different configuration in an
existing folder is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import RunConfig, stage_of, stage_settings
from .data.batching import Example
from .data.example_cache import featurize_cached
from .device import runtime_record
from .files import atomic_write, atomic_write_text, read_json, read_jsonl, write_json
from .metrics import classification_report
from .model_card import CARD, write_run_card
from .prediction import predict_examples
from .run_folder import RunError, use_run_folder
from .runtime import LOCAL, Runtime
from .training import set_seed

if TYPE_CHECKING:
    from .data.sources import Splits

logger = logging.getLogger(__name__)

__all__ = [
    "RunError",
    "prepare_run",
    "write_json",
    "read_json",
    "finished_results",
    "a_run_folder",
    "open_run",
    "report_data",
    "featurize_counted",
    "final_scores",
    "write_npz",
    "steps_in_log",
    "loss_curve",
]

# Settings that do not change what a run computes (device and precision change
# it only by float rounding: a run may be resumed on another device or precision).
_IGNORED = {"progress", "threads", "output", "device", "precision", "runtime", "tensorboard"}


def _comparable(config: RunConfig, stage: str) -> dict[str, Any]:
    # settings the stage never reads (model.* in stage two) change nothing either
    settings = {k: v for k, v in stage_settings(config, stage).items() if k not in _IGNORED}
    train = settings.get("train")
    if isinstance(train, dict) and train.get("adversarial_training", "none") == "none":
        # plain training never reads the adversarial radius, norm or steps (and runs made
        # before these settings existed hold none of them): they cannot make a run differ
        settings["train"] = {"adversarial_training": "none"}
    return settings


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


@contextlib.contextmanager
def prepare_run(
    config: RunConfig, overwrite: bool = False, protected: Sequence[str | Path] = (), runtime: dict[str, Any] | None = None
) -> Iterator[Path]:
    """Open (or create) the run folder, locked for the ``with`` block, and
    save the config in it, with ``runtime`` (device, precision, world size,
    versions of this call) as a record beside the settings; a different
    configuration already there is refused."""
    with use_run_folder(config.output, overwrite, protected) as out:
        saved = out / "config.json"
        if saved.exists():
            stage = stage_of(config)
            diff = _differences(_comparable(RunConfig.load(saved), stage), _comparable(config, stage))
            if diff:
                raise RunError(
                    f"{out} holds a run with a different configuration ({'; '.join(diff[:6])}); "
                    "pass --overwrite to replace it or choose another --output"
                )
        record = config.to_json()
        if runtime is not None:
            record["runtime"] = runtime
        atomic_write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", saved)
        yield out


def finished_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The results of a finished run, or None."""
    path = Path(run_dir) / "results.json"
    return read_json(path) if path.exists() else None


def a_run_folder(model_a: str | Path) -> Path | None:
    """The stage-one run folder of a run folder or of a checkpoint folder
    inside one (``<run>/checkpoints/best``), if any."""
    path = Path(model_a)
    if path.is_file():
        path = path.parent
    for folder in (path, path.parent.parent):
        if (folder / "config.json").exists() and (folder / "checkpoints").is_dir():
            return folder
    return None


@contextlib.contextmanager
def open_run(
    config: RunConfig, overwrite: bool, protected: Sequence[str | Path] = (), runtime: Runtime = LOCAL
) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Open the run folder (locked while the ``with`` block runs); yield the
    saved results if the run is finished, else set threads and seeds for the
    work ahead. ``protected``: folders the run must not overlap (model A's).
    Under DDP only rank 0 opens the folder (and so holds the lock, and
    records the runtime in config.json); a refusal is broadcast so every rank
    stops with it, and the others wait for the folder."""
    if config.threads and config.threads > 0:  # before the runtime record, which keeps the thread count
        torch.set_num_threads(config.threads)
    with contextlib.ExitStack() as stack:
        error: Exception | None = None
        if runtime.is_main:
            try:
                stack.enter_context(
                    prepare_run(
                        config,
                        overwrite,
                        protected,
                        runtime=runtime_record(runtime.device, runtime.precision, runtime.world_size),
                    )
                )
            except Exception as exc:  # a refusal (RunError), an unwritable folder (OutputError), ...
                error = exc
        message = runtime.broadcast(str(error) if error is not None else None)
        if error is not None:
            raise error
        if message is not None:
            raise RunError(message)
        run_dir = Path(config.output)
        done = finished_results(run_dir)
        if done is not None:
            logger.info(f"{run_dir} is already finished; its results are in {run_dir / 'results.json'}")
            if runtime.is_main and not (run_dir / CARD).exists():  # finished before model cards existed (or killed just before)
                write_run_card(run_dir)
            yield run_dir, done
            return
        set_seed(config.seed)
        yield run_dir, None


def report_data(splits: Splits) -> None:
    """Tell the user what was read: each file's kept and skipped rows."""
    for line in splits.summary_lines():
        logger.info(line)


def featurize_counted(
    model: Any,
    pairs: Sequence[Any],
    label_map: Any,
    name: str,
    truncated: dict[str, Any],
    directory: Path | None = None,
    runtime: Runtime = LOCAL,
    read_only: Sequence[Path] = (),
) -> list[Example]:
    """Featurise one split (read back from ``directory``, or from a
    ``read_only`` folder, when cached there), recording in ``truncated`` how
    many pairs the model's length cap cut (ESIM's ``max_tokens``, the HF
    ``max_length``)."""
    examples = featurize_cached(model, pairs, label_map, directory, runtime, read_only)
    cut = getattr(model, "last_truncated", None)
    if cut is not None:
        truncated[name] = {"pairs_truncated": int(cut[0]), "pairs": int(cut[1])}
        if cut[0]:
            logger.warning(f"{name}: {cut[0]} of {cut[1]} pairs truncated by the model's length cap")
    return examples


def final_scores(
    run_dir: Path,
    model: torch.nn.Module,
    examples: dict[str, Sequence[Example]],
    splits: Splits,
    batch_size: int,
    runtime: Runtime = LOCAL,
) -> dict[str, Any]:
    """Scores of the best checkpoint on each labelled split; the predictions
    go to ``predictions/<split>.npz`` (paired significance tests read them).
    Under DDP scoring is sharded and gathered; rank 0 writes."""
    scores = {}
    model.to(runtime.device)
    for name, part in examples.items():
        preds = predict_examples(model, part, batch_size, runtime=runtime)
        if runtime.is_main:
            write_npz(run_dir / "predictions" / f"{name}.npz", predicted=preds.predicted, gold=preds.labels, probs=preds.probs)
        if (preds.labels >= 0).any():
            report = classification_report(preds.labels, preds.predicted, splits.label_map.names, probs=preds.probs)
            scores[name] = report
            source = getattr(splits, name).report.path
            logger.info(f"{name} accuracy of the best checkpoint: {report['accuracy']:.4f} ({report['pairs']} pairs, {source})")
    return scores


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` written atomically (no half-written file)."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def steps_in_log(path: str | Path) -> int:
    """Largest global step recorded in a loss log (where stage two starts)."""
    records = read_jsonl(path)
    return max((r["step"] for r in records), default=0)


def loss_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(global steps, losses) of a run's ``loss.jsonl`` (empty when absent):
    the curve of Fig. 5."""
    records = read_jsonl(path)
    return np.array([r["step"] for r in records]), np.array([r["loss"] for r in records])
