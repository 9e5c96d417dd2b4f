"""`vaa reproduce --jobs N`: independent runs as concurrent local processes,
each a plain command over a config file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from vaa.cli import build_config, build_parser
from vaa.config import RunConfig
from vaa.experiments import reproduction_jobs, stage_one_config, stage_two_config
from vaa.jobs import Job, gpu_slots, run_jobs, run_process


def _job(name, after=None):
    return Job(name, ["true"], Path(f"/nonexistent/{name}.log"), after)


def test_runs_at_most_n_at_once_and_each_after_what_it_needs():
    events, lock, running, peak = [], threading.Lock(), [0], [0]

    def runner(job, slot):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            events.append(("start", job.name, slot["slot"]))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
            events.append(("end", job.name, slot["slot"]))
        return 0

    jobs = [_job("a0"), _job("a1"), _job("b0", "a0"), _job("c0", "a0"), _job("b1", "a1")]
    failed = run_jobs(jobs, 2, [{"slot": "0"}, {"slot": "1"}], runner=runner)
    assert failed == []
    assert peak[0] == 2
    position = {(kind, name): k for k, (kind, name, _) in enumerate(events)}
    for child, parent in (("b0", "a0"), ("c0", "a0"), ("b1", "a1")):
        assert position[("start", child)] > position[("end", parent)]
    # no slot (GPU) is used by two running jobs at once
    busy: set[str] = set()
    for kind, _, slot in events:
        if kind == "start":
            assert slot not in busy
            busy.add(slot)
        else:
            busy.remove(slot)


def test_a_failed_run_stops_only_what_needs_it():
    ran = []

    def runner(job, slot):
        ran.append(job.name)
        return 1 if job.name == "a0" else 0

    jobs = [_job("a0"), _job("a1"), _job("b0", "a0"), _job("b1", "a1")]
    failed = run_jobs(jobs, 1, runner=runner)
    assert sorted(j.name for j in failed) == ["a0", "b0"]
    assert "b0" not in ran and "b1" in ran


def test_each_job_is_a_plain_command_that_rebuilds_its_config(tmp_path):
    overrides = {"optim": {"max_epochs": 1}, "threads": 1}
    jobs = reproduction_jobs("demo", tmp_path, [0, 1], "demo-vaa", ["vaa", "zeros"], overrides, {"optim": {"max_epochs": 1}})
    assert [j.name for j in jobs] == ["seed0-a", "seed0-vaa", "seed0-zeros", "seed1-a", "seed1-vaa", "seed1-zeros"]
    assert [j.after for j in jobs] == [None, "seed0-a", "seed0-a", None, "seed1-a", "seed1-a"]
    a1 = stage_one_config("demo", 1, tmp_path, overrides)
    expected = {"seed1-a": a1, "seed1-zeros": stage_two_config("demo-vaa", a1, "zeros", tmp_path, {"optim": {"max_epochs": 1}})}
    for job in jobs:
        if job.name in expected:
            assert job.command[1:3] == ["-m", "vaa"]
            args = build_parser().parse_args(job.command[3:])
            assert build_config(args) == expected[job.name]


def test_one_gpu_per_slot_when_there_are_several(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert gpu_slots(3, "auto") == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}, {"CUDA_VISIBLE_DEVICES": "0"}]
    assert gpu_slots(2, "cpu") == [{}, {}]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_slots(2, "cuda") == [{}, {}]


def test_a_job_runs_as_its_own_process(tiny_config, tmp_path, monkeypatch):
    import os

    from vaa.config import apply_overrides
    from vaa.jobs import job_for

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    config = apply_overrides(tiny_config, {"optim": {"max_epochs": 1}, "threads": 1, "device": "cpu"})
    job = job_for(config, "stage1", "seed0-a", tmp_path / "jobs")
    assert run_process(job, {}) == 0, job.log.read_text()[-2000:]
    assert RunConfig.load(Path(config.output) / "config.json") == config
    assert (Path(config.output) / "results.json").exists()


def test_adversarial_baselines_are_stage_one_jobs_of_their_own(tmp_path):
    overrides = {"optim": {"max_epochs": 1}}
    jobs = reproduction_jobs("demo", tmp_path, [0], "demo-vaa", ["vaa"], overrides, {}, baselines=["fgm", "pgd"])
    assert [(j.name, j.after) for j in jobs] == [
        ("seed0-a", None),
        ("seed0-a-fgm", None),
        ("seed0-a-pgd", None),
        ("seed0-vaa", "seed0-a"),
    ]
    job = jobs[1]
    config = build_config(build_parser().parse_args(job.command[3:]))
    assert job.command[3] == "train"
    assert config == stage_one_config("demo", 0, tmp_path, overrides, baseline="fgm")
    assert config.train.adversarial_training == "fgm" and config.output == str(tmp_path / "seed0" / "a-fgm")
