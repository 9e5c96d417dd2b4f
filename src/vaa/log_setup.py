"""Logging for the ``vaa`` command (the library itself only logs; see below).

Every module logs to its own ``logging.getLogger(__name__)`` under the
``vaa`` package logger, which carries a ``NullHandler`` (``vaa/__init__.py``):
used from Python without any logging configured, the library prints
nothing, and an application configures ``logging`` as it does for any other
library. The CLI calls :func:`configure_logging` once per command, so that a
user sees what ``print`` used to show: INFO lines as plain text on stderr
(stdout stays for a command's own output, e.g. predictions), WARNING and
above with their level and logger name. The lines go through ``tqdm.write``
so an active progress bar is not broken by them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from tqdm.auto import tqdm

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# third-party loggers that chatter at INFO/WARNING about things a vaa user cannot act on
NOISY = ("transformers", "httpx", "huggingface_hub", "sentence_transformers", "datasets", "filelock")


class _PlainFormatter(logging.Formatter):
    """INFO as the bare message (what ``print`` showed); other levels prefixed
    with the level and the logger, so a warning stands out."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname} {record.name}: {message}"


class _TqdmHandler(logging.Handler):
    """Writes each record with ``tqdm.write`` to ``stream`` (default: the
    current ``sys.stderr``, looked up per record so a redirected stream is
    honoured), keeping any active progress bar intact."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream or sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise into the caller
            self.handleError(record)


def _is_replica() -> bool:
    """True in a ``torchrun`` process other than rank 0 (``RANK`` set and not 0)."""
    return os.environ.get("RANK", "0") not in ("", "0")


def configure_logging(level: str = "INFO", quiet: bool = False, stream: TextIO | None = None) -> None:
    """Send the ``vaa`` loggers' records at ``level`` and above (WARNING with
    ``quiet``) to ``stream`` (default stderr) in the plain format; third-party
    libraries log warnings only (the noisiest errors only). Calling it again
    replaces the earlier configuration. Under ``torchrun`` ranks other than 0
    log warnings and errors only: rank 0 speaks for the run (as Hugging Face's
    ``log_level_replica`` does)."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, got {level!r}")
    chosen = logging.WARNING if quiet or _is_replica() else logging.getLevelName(name)
    chosen = max(chosen, logging.getLevelName(name))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TqdmHandler)]:
        root.removeHandler(old)
    handler = _TqdmHandler(stream)
    handler.setFormatter(_PlainFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("vaa").setLevel(chosen)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (tests: each starts unconfigured)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TqdmHandler)]:
        root.removeHandler(old)
    logging.getLogger("vaa").setLevel(logging.NOTSET)


__all__ = ["LEVELS", "configure_logging", "reset_logging"]
