"""Run folders: a marker says what vaa may replace, --overwrite never deletes
what is not ours nor model A's folder, a lock keeps a second process out,
interrupted writes are cleaned up; the V1/V2 cache lives beside B and is
rebuilt when damaged; output errors are one line and leave no partial files."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim, tiny_train_argv
from vaa.cli import main
from vaa.config import AttackConfig, apply_overrides
from vaa.files import OutputError, recover_folder, replace_folder
from vaa.run_folder import LOCK, MARKER, RunLock, use_run_folder
from vaa.runs import RunError
from vaa.stage_one import train
from vaa.stage_two import train_vaa
from vaa.vulnerability import FeatureCache, vector_features


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def predict_args(config, output) -> list[str]:
    """``vaa predict`` with the run of ``config`` on its validation file, into ``output``."""
    d = config.data
    return ["predict", config.output, d.valid, "--format", "generic", "--columns", d.columns, "--output", str(output)]


@pytest.fixture(scope="module")
def shared_a(tmp_path_factory):
    """A trained model A for the tests that only read it (each checks it stays unchanged)."""
    from conftest import make_tiny_config

    config = apply_overrides(make_tiny_config(tmp_path_factory.mktemp("shared")), {"optim": {"max_epochs": 1}})
    train(config)
    return config


@pytest.fixture
def trained_a(tiny_config):
    config = apply_overrides(tiny_config, {"optim": {"max_epochs": 1}})
    train(config)
    return config


def stage_two(config, output, **vaa):
    return apply_overrides(
        config, {"vaa": {"model_a": config.output, **vaa}, "output": str(output), "data": {"train": None, "valid": None}}
    )


# -- marker and --overwrite --------------------------------------------------------


def test_a_run_folder_is_marked_and_locked_only_while_in_use(trained_a):
    run = Path(trained_a.output)
    assert (run / MARKER).is_file()
    with RunLock(run):  # free again after the run
        pass


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_folder_is_never_written_nor_deleted(tiny_config, tmp_path, capsys, overwrite):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")  # the case that used to be deleted
    (foreign / "thesis.tex").write_text("years of work")
    before = snapshot(foreign)
    code = main(tiny_train_argv(tiny_config.data, foreign, *(["--overwrite"] if overwrite else [])))
    err = capsys.readouterr().err
    assert code == 2 and "no .vaa-run marker" in err and len(err.strip().splitlines()) == 1
    assert snapshot(foreign) == before


def test_overwrite_refuses_a_run_folder_holding_files_vaa_did_not_write(trained_a, capsys):
    run = Path(trained_a.output)
    (run / "notes.txt").write_text("mine")
    (run / "my-plots").mkdir()
    before = snapshot(run)
    code = main(tiny_train_argv(trained_a.data, run, "--overwrite", "--set", "optim.lr=0.1"))
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite refused" in err and "my-plots, notes.txt" in err
    assert snapshot(run) == before


def test_overwrite_replaces_a_run_folder_of_ours(trained_a):
    run = Path(trained_a.output)
    changed = apply_overrides(trained_a, {"optim": {"lr": 0.1}})
    with pytest.raises(RunError, match="different configuration"):
        train(changed)
    train(changed, overwrite=True)
    assert "0.1" in (run / "config.json").read_text() and (run / MARKER).is_file()


def test_adversarial_radius_is_no_difference_for_a_plainly_trained_run(trained_a):
    """Plain training never reads train.adversarial_eps (the hf presets changed
    its default): a finished plain run stays finished, not refused; turning
    adversarial training on is a different run."""
    run = Path(trained_a.output)
    before = (run / "results.json").read_text()
    train(apply_overrides(trained_a, {"train": {"adversarial_eps": 0.125, "adversarial_steps": 5}}))
    assert (run / "results.json").read_text() == before
    with pytest.raises(RunError, match="train.adversarial_training: 'none' -> 'fgm'"):
        train(apply_overrides(trained_a, {"train": {"adversarial_training": "fgm"}}))


@pytest.mark.parametrize("where", ["same", "inside", "around", "checkpoint"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_stage_two_never_writes_into_model_a(shared_a, where, overwrite):
    trained_a = shared_a
    a = Path(trained_a.output)
    before = snapshot(a)
    output = {"same": a, "inside": a / "b", "around": a.parent, "checkpoint": a / "checkpoints" / "best"}[where]
    config = stage_two(trained_a, output)
    if where == "checkpoint":  # A given as its checkpoint folder, B pointed at A's run folder
        config = apply_overrides(
            config,
            {
                "vaa": {"model_a": str(a / "checkpoints" / "best")},
                "output": str(a),
                "data": {"train": trained_a.data.train, "valid": trained_a.data.valid},
            },
        )
    with pytest.raises(RunError, match="overlaps model A's folder"):
        train_vaa(config, overwrite=overwrite)
    assert snapshot(a) == before


# -- the lock ------------------------------------------------------------------------

HOLDER = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
f.seek(0); f.truncate(); f.write(f"pid {os.getpid()} on host testhost since now\\n"); f.flush()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_kept_out_and_a_dead_holder_is_a_stale_lock(trained_a, capsys, caplog):
    run = Path(trained_a.output)
    (run / "results.json").unlink()  # unfinished: a second command would resume it
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(tiny_train_argv(trained_a.data, run))
        err = capsys.readouterr().err
        assert code == 2 and f"is in use by pid {holder.pid} on host testhost" in err
        assert not (run / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.INFO, logger="vaa"), use_run_folder(run):
        assert f"pid {os.getpid()}" in (run / LOCK).read_text()
    assert [r.levelno for r in caplog.records if f"stale lock (pid {holder.pid} on host testhost" in r.getMessage()] == [
        logging.WARNING
    ]


# -- interrupted writes ---------------------------------------------------------------


def test_interrupted_writes_are_cleaned_up_and_a_half_replaced_checkpoint_restored(tmp_path):
    ckpts = tmp_path / "checkpoints"
    replace_folder(ckpts / "last", lambda d: (d / "x").write_text("1"))
    replace_folder(ckpts / "last", lambda d: (d / "x").write_text("2"))
    assert (ckpts / "last" / "x").read_text() == "2" and sorted(p.name for p in ckpts.iterdir()) == ["last"]
    # a kill after the old folder moved aside, before the new one took its name
    os.replace(ckpts / "last", ckpts / "last.old.tmp")
    (ckpts / "last.tmp").mkdir()
    (ckpts / "last.tmp" / "x").write_text("half")
    (tmp_path / "config.json.abc123.tmp").write_text("{")
    touched = recover_folder(tmp_path)
    assert len(touched) == 3
    assert (ckpts / "last" / "x").read_text() == "2"
    assert not list(tmp_path.rglob("*.tmp"))


def test_opening_a_run_folder_removes_tmp_files(trained_a, caplog):
    run = Path(trained_a.output)
    (run / "loss.jsonl.x1.tmp").write_text("partial")
    (run / "checkpoints" / "best.tmp").mkdir()
    (run / "results.json").unlink()
    (run / "mine").mkdir()
    (run / "mine" / "draft.tmp").write_text("a user's file: not ours to delete")
    with caplog.at_level(logging.INFO, logger="vaa"):
        train(trained_a)
    assert [p.name for p in run.rglob("*.tmp")] == ["draft.tmp"]
    assert any("cleaned up 2 temporary file(s)" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


# -- the V1/V2 cache ---------------------------------------------------------------------


def test_stage_two_works_from_a_read_only_model_a_and_writes_nothing_there(trained_a, tmp_path):
    a = Path(trained_a.output)
    before = snapshot(a)
    modes = {p: p.stat().st_mode for p in [a, *a.rglob("*")]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        results = train_vaa(stage_two(trained_a, tmp_path / "b"))
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert results["info"]["cache"]["train"]["hit"] is False
    assert snapshot(a) == before  # as root the chmod does not bind: this is the real check
    assert list((tmp_path / "b" / "vcache").glob("*.safetensors"))


def _damage(kind: str, path: Path, cache: FeatureCache, key: str) -> None:
    from safetensors.torch import save_file

    if kind == "garbage":
        path.write_bytes(os.urandom(300))
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "wrong shape":
        v1, v2 = torch.zeros(3, 5), torch.zeros(3, 5)
        save_file({"v1": v1, "v2": v2}, str(path), metadata={"key": key, "sha256": cache.checksum(v1, v2)})
    elif kind == "wrong key":
        v1, v2 = torch.ones(5, 5), torch.ones(5, 5)
        save_file({"v1": v1, "v2": v2}, str(path), metadata={"key": "0" * 32, "sha256": cache.checksum(v1, v2)})
    elif kind == "changed values":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta, v1, v2 = f.metadata(), f.get_tensor("v1"), f.get_tensor("v2")
        v1[0, 0] += 1.0
        save_file({"v1": v1, "v2": v2}, str(path), metadata=meta)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong shape", "wrong key", "changed values"])
def test_a_damaged_cache_is_reported_in_one_line_and_rebuilt(tmp_path, kind, caplog):
    a = tiny_esim().eval()
    examples = a.featurize_all(TOY_PAIRS, TOY_LABELS)
    cfg = AttackConfig(eps=0.2)
    cache = FeatureCache(tmp_path)
    v1, v2, info = cache.get_or_compute(a, examples, cfg)
    path = cache.path(info["key"])
    _damage(kind, path, cache, info["key"])
    with caplog.at_level(logging.INFO, logger="vaa"):
        again1, again2, info = cache.get_or_compute(a, examples, cfg)
    assert info["hit"] is False and info["rebuilt"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "rebuilding" in messages[0] and str(path) in messages[0]
    assert caplog.records[0].levelno == logging.WARNING
    fresh1, fresh2 = vector_features(a, examples, cfg)
    torch.testing.assert_close(again1, fresh1)
    torch.testing.assert_close(again2, fresh2)
    assert cache.get_or_compute(a, examples, cfg)[2]["hit"] is True  # the rebuilt file is good
    assert not list(tmp_path.glob("*.tmp"))


# -- output errors -----------------------------------------------------------------------


def _one_line_error(capsys, *needles: str) -> str:
    """The command's error: its last line on stderr, after what it logged."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    err = lines[-1]
    assert err.startswith("vaa: error: ") and sum(line.startswith("vaa: error") for line in lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in err, err
    return err


def test_an_output_path_that_is_a_file_is_one_line(tiny_config, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert main(tiny_train_argv(tiny_config.data, target)) == 2
    _one_line_error(capsys, str(target), "is a file")
    assert target.read_text() == "keep me"
    assert main(tiny_train_argv(tiny_config.data, target / "run")) == 2
    _one_line_error(capsys, f"{target} is a file")


def _read_only(monkeypatch, folder: Path) -> None:
    """A read-only folder. Tests run as root here, where chmod does not bind,
    so the refusal the kernel would give is simulated at the same call."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    import tempfile

    real_mkstemp, real_mkdir = tempfile.mkstemp, Path.mkdir

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(self, *args, **kwargs):
        if self.resolve().is_relative_to(folder.resolve()) and not self.exists():
            raise PermissionError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_read_only_output_is_one_line_and_leaves_nothing(shared_a, tmp_path, monkeypatch, capsys):
    trained_a = shared_a
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    assert main(tiny_train_argv(trained_a.data, ro / "run")) == 2
    _one_line_error(capsys, str(ro / "run"), "writable")
    assert main(predict_args(trained_a, ro / "p.csv")) == 2
    _one_line_error(capsys, "p.csv", "writable")
    assert list(ro.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(shared_a, tmp_path, monkeypatch, capsys):
    trained_a = shared_a
    import pandas as pd
    import safetensors.torch

    def full(*args, **kwargs):
        path = Path(args[1] if len(args) > 1 else kwargs.get("filename", args[0]))
        path.write_bytes(b"\x00" * 64)  # what got out before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    run = tmp_path / "run-full"
    assert main(tiny_train_argv(trained_a.data, run)) == 2
    _one_line_error(capsys, "disk is full")
    assert not (run / "checkpoints" / "best").exists() and not list(run.rglob("*.tmp"))

    def full_csv(self, path, *args, **kwargs):
        Path(path).write_text("id,a,b\n1,partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_csv)
    out = tmp_path / "preds"
    out.mkdir()
    assert main(predict_args(trained_a, out / "p.csv")) == 2
    _one_line_error(capsys, "disk is full")
    assert list(out.iterdir()) == []


def test_output_error_type_is_what_the_library_raises(tmp_path):
    from vaa.files import atomic_write_text

    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        atomic_write_text("y", tmp_path / "f" / "g.json")
