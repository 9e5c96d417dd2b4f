"""benchmarks/screen.py: the screening rule fixed before any run decides
which settings go on to the 3-seed runs, from the table's own figures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import screen  # noqa: E402


def row(name: str, **controls: tuple[float, list[float]]) -> dict:
    """A screening row: control -> (+VAA minus control, McNemar p per seed)."""
    versus = {k: {"delta": d, "mcnemar_p_per_seed": p} for k, (d, p) in controls.items()}
    return {"setting": name, "vs_controls": versus, "margin": min(d for d, _ in controls.values()) if controls else None}


def test_only_a_positive_margin_significant_against_the_closest_control_goes_on():
    rows = [
        row("big-but-noisy", permuted=(0.004, [0.2])),
        row("small-and-sure", permuted=(0.002, [0.01])),
        # significant against v1only, but its margin comes from permuted, where p is 0.3
        row("wrong-control", permuted=(0.001, [0.3]), v1only=(0.009, [0.001])),
        row("negative", permuted=(-0.003, [0.001])),
        row("unfinished"),
    ]
    assert screen.goes_on(rows) == ["small-and-sure"]
    line = screen.verdict_line(rows)
    assert line.startswith("Goes on to the 3-seed runs") and "small-and-sure" in line
    assert line.endswith("Not finished: unfinished.")


def test_every_seed_must_pass_and_at_most_three_go_on_largest_first():
    rows = [row(f"s{k}", permuted=(0.001 * k, [0.01, 0.02])) for k in range(1, 6)]
    rows.append(row("one-seed-fails", permuted=(0.01, [0.01, 0.06])))
    assert screen.goes_on(rows) == ["s5", "s4", "s3"]


def test_no_qualifying_setting_is_said_plainly():
    rows = [row("paper", permuted=(0.0013, [0.165]), v1only=(0.001, [0.358]))]
    assert screen.goes_on(rows) == []
    assert screen.verdict_line(rows).startswith("No setting goes on to the 3-seed runs")
