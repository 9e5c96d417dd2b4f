"""Writing files so that a failure leaves nothing half-written.

Every file vaa writes goes through :func:`atomic_write`: the content goes to a
``*.tmp`` name in the same folder and is renamed into place only once complete.
A crash, a full disk or a read-only folder therefore leaves either the old file
or the new one, never a truncated mix; a ``*.tmp`` left by a ``kill -9`` is
removed when the run folder is opened next (see :mod:`vaa.run_folder`).

:class:`OutputError` turns the operating system's errors into one line that
says what failed, where, and what to do about it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


class OutputError(RuntimeError):
    """An output could not be written (read-only folder, full disk, a file
    where a folder is needed). The message is one line for the user."""


_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or choose another output location",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another output location",
    errno.EACCES: "no permission to write there: choose a writable output location",
    errno.EPERM: "no permission to write there: choose a writable output location",
    errno.EROFS: "the file system is read-only: choose a writable output location",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another output path",
    errno.EEXIST: "a file stands where a folder is needed: choose another output path",
    errno.EISDIR: "a folder stands where a file is needed: choose another output path",
}


def describe_os_error(exc: OSError, what: str = "write") -> str:
    """One line: what failed, where, what to do."""
    where = exc.filename if exc.filename is not None else "?"
    reason = exc.strerror or str(exc)
    advice = _ADVICE.get(exc.errno or 0, "check the path and try again")
    return f"cannot {what} {where}: {reason}; {advice}"


def output_error(exc: OSError, path: str | Path, what: str = "write") -> OutputError:
    """``exc`` as an :class:`OutputError` naming ``path`` (what the user asked
    for, rather than the temporary name the OS saw)."""
    exc.filename = str(path)
    return OutputError(describe_os_error(exc, what))


def ensure_folder(path: str | Path) -> Path:
    """Create ``path`` (and parents); a clear error when that is impossible."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "it is a file" if folder == path else f"{folder} is a file"
                raise OutputError(f"cannot use {path} as a folder: {where}; choose another output path")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path, "create folder") from None
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it
    to ``path``. On any failure the temporary file is removed and an OS error
    becomes an :class:`OutputError`."""
    path = Path(path)
    ensure_folder(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise output_error(exc, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def replace_folder(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a whole folder atomically enough for a ``kill -9``.

    ``write(tmp)`` fills ``<name>.tmp/``; then the old folder (if any) moves
    to ``<name>.old.tmp/``, the new one takes its name, and the old one is
    deleted. Whatever moment a crash hits, either ``<name>/`` is complete or
    :func:`recover_folder` restores the previous complete one."""
    path = Path(path)
    ensure_folder(path.parent)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    old = path.with_name(path.name + ".old" + TMP_SUFFIX)
    try:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)
        tmp.mkdir()
        write(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    except BaseException as exc:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise
    return path


def recover_folder(parent: str | Path) -> list[Path]:
    """Undo what an interrupted :func:`atomic_write` or :func:`replace_folder`
    left in ``parent`` (recursively): a previous folder whose replacement never
    arrived is put back, every other ``*.tmp`` is removed. Returns what was
    removed or restored."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    touched: list[Path] = []
    for item in sorted(parent.rglob("*" + TMP_SUFFIX), key=lambda p: len(p.parts)):
        if not item.exists() and not item.is_symlink():
            continue  # inside a folder already handled
        if item.name.endswith(".old" + TMP_SUFFIX) and item.is_dir():
            target = item.with_name(item.name[: -len(".old" + TMP_SUFFIX)])
            if not target.exists():
                os.replace(item, target)
                touched.append(target)
                continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
        touched.append(item)
    return touched


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically (numpy scalars as floats)."""
    atomic_write_text(json.dumps(obj, indent=2, default=float) + "\n", path)


def read_json(path: str | Path) -> Any:
    """The JSON value stored in ``path``."""
    return json.loads(Path(path).read_text())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines log. A last line cut short by a ``kill -9``
    in the middle of an append (no final newline) is dropped, not an error."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return [json.loads(line) for line in lines]
