"""Run folders: one folder per run that explains itself.

    <run>/config.json        the resolved configuration
    <run>/label_map.json     label names in class-index order
    <run>/data.json          what was read (files, formats, kept/skipped rows)
    <run>/metrics.jsonl      one line per epoch (validation accuracy, loss, speed)
    <run>/loss.jsonl         training loss every ``log_every`` batches
    <run>/checkpoints/       best.pt (best validation accuracy), last.pt (resume)
    <run>/results.json       final scores of the best checkpoint
    <run>/*.png              plots

Re-running the same command resumes an interrupted run, and returns the saved
results of a finished one. A different configuration in an existing folder is
refused rather than mixed in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .config import RunConfig

# Settings that do not change what a run computes (device and precision change
# it only by float rounding: a run may be resumed on another device or precision).
_IGNORED = {"progress", "threads", "output", "device", "precision", "runtime"}


class RunError(RuntimeError):
    """A run folder cannot be used as asked."""


def _comparable(config: RunConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_json().items() if k not in _IGNORED}


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def prepare_run(config: RunConfig, overwrite: bool = False, runtime: dict[str, Any] | None = None) -> Path:
    """Create (or reopen) the run folder and save the config in it, with
    ``runtime`` (device, precision, world size, versions of this call) as a
    record beside the settings."""
    out = Path(config.output)
    saved = out / "config.json"
    if out.exists() and overwrite:
        if any(out.iterdir()) and not saved.exists():
            raise RunError(f"{out} exists and is not a vaa run folder; refusing to delete it")
        shutil.rmtree(out)
    elif saved.exists():
        diff = _differences(_comparable(RunConfig.load(saved)), _comparable(config))
        if diff:
            raise RunError(f"{out} holds a run with a different configuration ({'; '.join(diff[:6])}); "
                           "pass --overwrite to replace it or choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    record = config.to_json()
    if runtime is not None:
        record["runtime"] = runtime
    write_json(saved, record)
    return out


def write_json(path: str | Path, obj: Any) -> None:
    from .checkpoint import atomic_write_text

    atomic_write_text(json.dumps(obj, indent=2, default=float) + "\n", path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def finished_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The results of a finished run, or None."""
    path = Path(run_dir) / "results.json"
    return read_json(path) if path.exists() else None
