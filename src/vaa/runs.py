"""Run folders: one folder per run that explains itself.

    <run>/.vaa-run           marker: a folder vaa made (written first; see run_folder.py)
    <run>/.vaa-lock          advisory lock while a command uses the folder
    <run>/config.json        the resolved configuration
    <run>/label_map.json     label names in class-index order
    <run>/data.json          what was read (files, formats, kept/skipped rows)
    <run>/metrics.jsonl      one line per epoch (validation accuracy, loss, speed)
    <run>/loss.jsonl         training loss every ``log_every`` batches
    <run>/tensorboard/       with ``tensorboard: true``: the same curves for TensorBoard (tensorboard_log.py)
    <run>/checkpoints/       best/ (best validation accuracy), last/ (resume): folders
                             with model.safetensors + vaa.json (see checkpoint.py)
    <run>/predictions/       <split>.npz of the best checkpoint
    <run>/vcache/            stage two: the V1/V2 cache
    <run>/results.json       final scores of the best checkpoint
    <run>/README.md          the model card (model_card.py), written from the files above
    <run>/*.png              plots

Re-running the same command resumes an interrupted run, and returns the saved
results of a finished one. A different configuration in an existing folder is
refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from .config import RunConfig, stage_of, stage_settings
from .run_folder import RunError, use_run_folder

# Settings that do not change what a run computes (device and precision change
# it only by float rounding: a run may be resumed on another device or precision).
_IGNORED = {"progress", "threads", "output", "device", "precision", "runtime", "tensorboard"}


def _comparable(config: RunConfig, stage: str) -> dict[str, Any]:
    # settings the stage never reads (model.* in stage two) change nothing either
    return {k: v for k, v in stage_settings(config, stage).items() if k not in _IGNORED}


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
def prepare_run(config: RunConfig, overwrite: bool = False, protected: Sequence[str | Path] = (),
                runtime: dict[str, Any] | None = None) -> Iterator[Path]:
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
                raise RunError(f"{out} holds a run with a different configuration ({'; '.join(diff[:6])}); "
                               "pass --overwrite to replace it or choose another --output")
        from .files import atomic_write_text

        record = config.to_json()
        if runtime is not None:
            record["runtime"] = runtime
        atomic_write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", saved)
        yield out


def write_json(path: str | Path, obj: Any) -> None:
    from .files import atomic_write_text

    atomic_write_text(json.dumps(obj, indent=2, default=float) + "\n", path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def finished_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The results of a finished run, or None."""
    path = Path(run_dir) / "results.json"
    return read_json(path) if path.exists() else None
