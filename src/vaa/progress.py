"""Progress bars: shown on a terminal, silent in logs and pipes (where a bar
redraw per batch would bury the epoch summaries)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def bar(iterable: Any = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, disabled when ``enabled`` is False or stderr is not a terminal."""
    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), leave=False, dynamic_ncols=True, **kwargs)
