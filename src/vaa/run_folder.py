"""Run folders that vaa may write into, replace and lock — and no others.

- A run folder carries a marker file, ``.vaa-run``, written before anything
  else: it is what says "vaa made this folder". An existing non-empty folder
  without it is never written into, and ``--overwrite`` never deletes it.
- ``--overwrite`` empties a marked folder only when every entry in it is one
  vaa writes (``KNOWN_ENTRIES``); anything else is listed and the overwrite
  refused, so a user's files are never deleted.
- ``.vaa-lock`` holds an advisory lock (``fcntl.flock``) while a command uses
  the folder, with the holder's pid and host in it: a second process is kept
  out with a message naming the holder. The kernel drops the lock when its
  holder dies (even by ``kill -9``), so a lock left behind is stale by
  construction; it is reported and taken over.
- Temporary files of an interrupted write (``*.tmp``) are cleaned up when the
  folder is opened again (see :func:`vaa.files.recover_folder`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .files import OutputError, ensure_folder, output_error, recover_folder

logger = logging.getLogger(__name__)

MARKER = ".vaa-run"
LOCK = ".vaa-lock"
# every entry a training run writes into its folder
KNOWN_ENTRIES = frozenset(
    {
        MARKER,
        LOCK,
        "config.json",
        "label_map.json",
        "data.json",
        "metrics.jsonl",
        "loss.jsonl",
        "results.json",
        "checkpoints",
        "predictions",
        "vcache",
        "loss_both_stages.png",
        "calibration.json",
        "calibration.png",
        "eps_calibration.json",
        "README.md",  # README.md: the model card
        "analysis",
        "features",
        "tensorboard",
    }
)  # analysis/: the README's `vaa analyze --output RUN/analysis`


class RunError(RuntimeError):
    """A run folder cannot be used as asked."""


def is_run_folder(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def foreign_entries(folder: str | Path) -> list[str]:
    """Entries of ``folder`` that vaa does not write (sorted names)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in KNOWN_ENTRIES and not p.name.endswith(".tmp"))


def _write_marker(folder: Path) -> None:
    try:
        (folder / MARKER).write_text(json.dumps({"vaa_run": True, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    except OSError as exc:
        raise output_error(exc, folder / MARKER) from None


def claim_new_folder(path: str | Path) -> Path:
    """Create ``path`` as a run folder (or adopt it when empty): marker first."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as a run folder: it is a file; choose another --output")
    ensure_folder(path)
    if not is_run_folder(path):
        if any(path.iterdir()):
            raise RunError(f"{path} is not empty and not a vaa run folder (no {MARKER}); choose another --output")
        _write_marker(path)
    return path


def check_apart(output: str | Path, protected: Sequence[str | Path], what: str = "model A's folder") -> None:
    """``output`` may not be, contain, or lie inside any ``protected`` folder."""
    out = Path(output).resolve()
    for item in protected:
        other = Path(item).resolve()
        if out == other or other in out.parents or out in other.parents:
            raise RunError(
                f"--output {output} overlaps {what} {item}: stage two never writes into (or deletes) "
                "the model it reads; choose another --output"
            )


class RunLock:
    """An exclusive advisory lock on ``<folder>/.vaa-lock`` (see the module
    docstring). Use as a context manager or call ``acquire``/``release``."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK
        self._file = None
        self.stale: str | None = None  # the holder a stale lock named, if any

    def acquire(self) -> RunLock:
        import fcntl

        try:
            f = open(self.path, "a+")
        except OSError as exc:
            raise output_error(exc, self.path) from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunError(
                f"{self.path.parent} is in use by {holder}; wait for it to finish (or stop it) before using this folder"
            ) from None
        f.seek(0)
        previous = f.read().strip()
        if previous:
            self.stale = previous  # its holder is gone: the kernel released its lock
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            try:
                self._file.seek(0)
                self._file.truncate()
            except OSError:
                pass
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# sub-folders whose every file vaa writes: interrupted writes inside are cleaned up
_OWN_FOLDERS = ("checkpoints", "predictions", "vcache", "features")


def clean_interrupted_writes(folder: Path) -> list[Path]:
    """Remove the ``*.tmp`` leftovers of vaa's own writes in a run folder (and
    put back a checkpoint folder whose replacement never arrived). A user's
    own ``*.tmp`` files elsewhere in the folder are left alone."""
    touched = []
    for item in folder.iterdir():
        if item.is_file() and item.name.endswith(".tmp") and any(item.name.startswith(k + ".") for k in KNOWN_ENTRIES):
            item.unlink()
            touched.append(item)
    for name in _OWN_FOLDERS:
        touched += recover_folder(folder / name)
    return touched


def _empty_for_overwrite(folder: Path) -> None:
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise RunError(
            f"--overwrite refused: {folder} holds files vaa did not write ({shown}); move them away or choose another --output"
        )
    for item in folder.iterdir():
        if item.name in (MARKER, LOCK):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()


@contextmanager
def use_run_folder(path: str | Path, overwrite: bool = False, protected: Sequence[str | Path] = ()) -> Iterator[Path]:
    """Open ``path`` as a run folder for the duration of the ``with`` block:
    checks and marker, lock, clean-up of interrupted writes, ``--overwrite``."""
    path = Path(path)
    check_apart(path, protected)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as a run folder: it is a file; choose another --output")
    if path.is_dir() and any(path.iterdir()) and not is_run_folder(path):
        if (path / "config.json").exists():
            raise RunError(
                f"{path} has no {MARKER} marker: a run of an older vaa or not a vaa run; convert an old run "
                "with `vaa convert OLD NEW`, or choose another --output"
            )
        raise RunError(
            f"{path} is not empty and not a vaa run folder (no {MARKER}); "
            f"vaa writes only into its own run folders: choose another --output"
        )
    claim_new_folder(path)
    lock = RunLock(path).acquire()
    try:
        if lock.stale:
            logger.warning(f"{path}: took over a stale lock ({lock.stale}; that process is gone)")
        cleaned = clean_interrupted_writes(path)
        if cleaned:
            logger.warning(f"{path}: cleaned up {len(cleaned)} temporary file(s) of an interrupted write")
        if overwrite:
            _empty_for_overwrite(path)
        yield path
    finally:
        lock.release()
