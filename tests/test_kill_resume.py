"""kill -9 at random moments, then resume: the same weights as a run that
was never interrupted, for stage one and for stage two.

Each interrupted attempt is a child process (``os.fork``: it starts with
everything imported, so the seeded kill moments fall inside the work itself
rather than in Python's start-up) killed with SIGKILL; the last call runs to
the end. The kills hit checkpoint writes, log appends and the cache
as they come; whatever they leave, the next start must clean up and resume.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaa.config import apply_overrides
from vaa.stage_one import train
from vaa.stage_two import train_vaa
from vaa.training import read_jsonl

KILLS = 4
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _progress(log: Path) -> int:
    return len(read_jsonl(log))


def killed_then_finished(run: Callable[[], object], output: Path, duration: float, seed: int) -> list[str]:
    """Start ``run`` in a child, ``KILLS`` times, and SIGKILL it at a seeded
    random moment: the first right after a random delay (it may fall in the
    set-up: data, model, stage two's V1/V2 cache), the others once the child
    has logged new training progress, after a random delay of up to 30% of an
    uninterrupted run's training time (``duration``), so they fall anywhere in
    training, checkpoint writes included. Then run it to the end here.
    Returns what each child did, and whether the last call resumed from a
    checkpoint a killed child left."""
    rng = random.Random(seed)
    log = output / "loss.jsonl"
    outcomes = []
    for attempt in range(KILLS):
        delay = rng.uniform(0.0, 0.3 * duration)
        before = _progress(log)
        pid = os.fork()
        if pid == 0:  # the child: train until killed
            code = 0
            try:
                run()
            except BaseException:  # noqa: BLE001 - reported to the parent by the exit code
                code = 1
            os._exit(code)
        deadline = time.monotonic() + 60
        status = None
        while attempt > 0 and status is None and _progress(log) <= before and time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            status = st if done else None
            time.sleep(0.002)
        if status is None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        outcomes.append("killed" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
    outcomes.append("resumed" if (output / "checkpoints" / "last").exists() else "fresh")
    run()
    return outcomes


def training_seconds(run: str | Path) -> float:
    """Time the uninterrupted run spent in its epochs (from metrics.jsonl)."""
    return sum(r["epoch_seconds"] for r in read_jsonl(Path(run) / "metrics.jsonl"))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_run(a: Path, b: Path) -> None:
    for which in ("best", "last"):
        wa, wb = weights(a / "checkpoints" / which), weights(b / "checkpoints" / which)
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{which}: {name}"
    assert read_jsonl(a / "loss.jsonl") == read_jsonl(b / "loss.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k in ("epoch", "train_loss", "valid_accuracy", "best")} for r in rows]  # noqa: E731
    assert strip(read_jsonl(a / "metrics.jsonl")) == strip(read_jsonl(b / "metrics.jsonl"))
    assert not list(b.rglob("*.tmp"))


@pytest.fixture
def kill_config(tiny_config):
    return apply_overrides(tiny_config, {"optim": {"max_epochs": 3, "patience": 10}, "checkpoint_every": 1})


def test_stage_one_killed_at_random_moments_resumes_to_the_same_weights(kill_config, tmp_path):
    train(kill_config)  # uninterrupted
    duration = training_seconds(kill_config.output)
    interrupted = apply_overrides(kill_config, {"output": str(tmp_path / "interrupted")})
    outcomes = killed_then_finished(lambda: train(interrupted), tmp_path / "interrupted", duration, seed=0)
    assert outcomes.count("killed") >= 2 and outcomes[-1] == "resumed" and "exit 1" not in outcomes, outcomes
    assert_same_run(Path(kill_config.output), tmp_path / "interrupted")


def test_stage_two_killed_at_random_moments_resumes_to_the_same_weights(kill_config, tmp_path):
    a_config = apply_overrides(kill_config, {"optim": {"max_epochs": 1}, "checkpoint_every": 0})
    train(a_config)
    b = apply_overrides(
        kill_config,
        {
            "vaa": {"model_a": a_config.output},
            "data": {"train": None, "valid": None},
            "optim": {"max_epochs": 2},
            "output": str(tmp_path / "b"),
        },
    )
    train_vaa(b)
    duration = training_seconds(tmp_path / "b")
    interrupted = apply_overrides(b, {"output": str(tmp_path / "b-interrupted")})
    outcomes = killed_then_finished(lambda: train_vaa(interrupted), tmp_path / "b-interrupted", duration, seed=1)
    assert outcomes.count("killed") >= 2 and outcomes[-1] == "resumed" and "exit 1" not in outcomes, outcomes
    assert_same_run(tmp_path / "b", tmp_path / "b-interrupted")
