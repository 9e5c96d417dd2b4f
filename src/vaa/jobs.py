"""Independent runs at once: ``vaa reproduce --jobs N``.

A reproduction is many ordinary runs (model A per seed, then its stage-two
variants). Each is written out as a plain command over a config file,
``python -m vaa train --preset <output>/jobs/<name>.json``, that a cluster
scheduler could launch just as well; here up to N of them run as local
processes, a stage-two run starting once its model A has finished. With
several GPUs each process sees one (``CUDA_VISIBLE_DEVICES``), taken from a
pool of slots so no two running jobs share one while others are idle.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, stage_settings
from .runs import write_json

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One run as a command; ``after`` names the job it needs finished."""

    name: str
    command: list[str]
    log: Path
    after: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def job_for(config: RunConfig, stage: str, name: str, folder: Path, after: str | None = None) -> Job:
    """Write ``config`` to ``folder/<name>.json`` and return the command that runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    write_json(path, stage_settings(config, stage))  # only what the stage reads: the file is its preset
    command = [sys.executable, "-m", "vaa", "train" if stage == "stage1" else "train-vaa", "--preset", str(path)]
    return Job(name, command, folder / f"{name}.log", after)


def run_process(job: Job, slot_env: dict[str, str]) -> int:
    """Run a job's command, its output in its log file; the exit status."""
    env = {**os.environ, **job.env, **slot_env}
    with job.log.open("w") as out:
        return subprocess.run(job.command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def gpu_slots(jobs: int, device: str) -> list[dict[str, str]]:
    """Per slot, the environment that pins it to one GPU (empty without several)."""
    try:
        import torch

        count = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    except Exception:  # pragma: no cover - no usable torch.cuda
        count = 0
    if count < 2:
        return [{} for _ in range(jobs)]
    return [{"CUDA_VISIBLE_DEVICES": str(k % count)} for k in range(jobs)]


def run_jobs(
    jobs: Sequence[Job],
    parallel: int,
    slots: Sequence[dict[str, str]] | None = None,
    runner: Callable[[Job, dict[str, str]], int] = run_process,
) -> list[Job]:
    """Run ``jobs`` with at most ``parallel`` at once, each after its
    ``after``; returns the jobs that failed (and those that never ran
    because what they need failed)."""
    if parallel < 1:
        raise ValueError(f"--jobs must be >= 1, got {parallel}")
    free: queue.Queue[dict[str, str]] = queue.Queue()
    for slot in (slots if slots is not None else [{} for _ in range(parallel)])[:parallel]:
        free.put(slot)
    pending = list(jobs)
    done: set[str] = set()
    failed: list[Job] = []
    lock = threading.Lock()

    def start(job: Job) -> int:
        slot = free.get()
        try:
            return runner(job, slot)
        finally:
            free.put(slot)

    running: dict[Future[int], Job] = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while pending or running:
            failed_names = {j.name for j in failed}
            for job in [j for j in pending if j.after in failed_names]:
                pending.remove(job)
                failed.append(job)
            ready = [j for j in pending if j.after is None or j.after in done]
            for job in ready[: max(0, parallel - len(running))]:
                pending.remove(job)
                logger.info(f"start {job.name}: {' '.join(job.command)} (log {job.log})")
                running[pool.submit(start, job)] = job
            if not running:  # what is left waits on a job that never ran
                failed.extend(pending)
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                code = future.result()
                with lock:
                    if code == 0:
                        done.add(job.name)
                        logger.info(f"done  {job.name}")
                    else:
                        failed.append(job)
                        logger.warning(f"FAILED {job.name} (exit {code}); see {job.log}")
    return failed


__all__ = ["Job", "job_for", "run_jobs", "run_process", "gpu_slots"]
