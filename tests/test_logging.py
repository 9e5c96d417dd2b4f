"""Logging: the library logs through ``logging`` (one logger per module) and
prints nothing by itself; the CLI shows INFO lines plainly on stderr, and
``--quiet`` / ``--log-level`` change what is shown."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_config, tiny_train_argv
from vaa.cli import main
from vaa.config import apply_overrides
from vaa.log_setup import configure_logging

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _train_args(config, *more: str) -> list[str]:
    """``vaa train`` for ``config``'s toy run, with the progress bar left as the CLI sets it."""
    return tiny_train_argv(config.data, config.output, "--set", "optim.eval_batch_size=16", *more, no_progress=False)


def test_the_library_prints_nothing_without_a_logging_configuration(tmp_path):
    """In a fresh interpreter (pytest's own log handlers would hide a missing
    NullHandler): a warning, a training and a prediction write nothing to
    stdout or stderr, though they log at INFO and WARNING."""
    config = make_tiny_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    code = f"""
import logging
import vaa
from vaa.config import RunConfig, apply_overrides
apply_overrides(RunConfig(), {{"optim": {{"lr": 1e30}}}})  # logs a WARNING (vaa.config)
config = RunConfig.load({str(tmp_path / "config.json")!r})
vaa.train(config)
rows = vaa.predict(config.output, pairs=[("the cat is here", "where is the cat")])
assert rows and logging.getLogger("vaa").handlers[0].__class__ is logging.NullHandler
"""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "" and proc.stderr == ""
    assert (Path(config.output) / "results.json").exists()  # it did train


def test_messages_are_logged_at_their_level_by_their_module(tiny_config, caplog):
    from vaa.stage_one import train

    with caplog.at_level(logging.DEBUG, logger="vaa"):
        train(tiny_config)
    records = {(r.name, r.levelname, r.getMessage().split(":")[0]) for r in caplog.records}
    assert ("vaa.training", "INFO", "[stage1] epoch 1") in records  # the epoch summary
    assert any(name == "vaa.runs" and level == "INFO" and "valid.tsv (generic)" in text for name, level, text in records)
    assert all(r.levelno == logging.INFO for r in caplog.records)  # a clean run warns about nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaa"):
        apply_overrides(tiny_config, {"optim": {"lr": 1e30}})
    assert [(r.name, r.levelno) for r in caplog.records] == [("vaa.config", logging.WARNING)]


def test_cli_shows_info_plainly_on_stderr_and_quiet_hides_it(tmp_path, capsys):
    config = make_tiny_config(tmp_path)
    assert main(_train_args(config, "--no-progress")) == 0
    out, err = capsys.readouterr()
    assert "run folder:" in out and "epoch" not in out  # stdout: the command's result only
    lines = err.splitlines()
    assert any(line.startswith("[stage1] epoch 1: train loss ") for line in lines)  # as print showed it: no prefix
    assert any(line.endswith("valid.tsv (generic): 16 pairs kept of 16 rows") for line in lines)

    config = apply_overrides(config, {"output": str(tmp_path / "quiet")})
    assert main(_train_args(config, "--quiet")) == 0
    out, err = capsys.readouterr()
    assert err == "" and "run folder:" in out
    for flags in (["--log-level", "WARNING"], ["--log-level", "error"]):  # either place, any case
        assert main([*flags, *_train_args(config)]) == 0  # a finished run: "already finished" is INFO
        assert capsys.readouterr().err == ""
    assert main(_train_args(config, "--log-level", "INFO")) == 0
    assert "already finished" in capsys.readouterr().err


def test_quiet_keeps_warnings_with_their_level_and_turns_off_progress_bars(capsys):
    assert main(["train", "--quiet", "--lr", "1e30", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("WARNING vaa.config: ") and "optim.lr=1e+30" in err
    assert json.loads(out)["progress"] is False
    assert main(["train", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["progress"] is True


def test_a_bad_log_level_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["--log-level", "LOUD", "theorem"])
    assert "--log-level" in capsys.readouterr().err


def test_ranks_other_than_0_log_warnings_only(monkeypatch, caplog):
    monkeypatch.setenv("RANK", "1")
    configure_logging("DEBUG")
    assert logging.getLogger("vaa").getEffectiveLevel() == logging.WARNING
    monkeypatch.setenv("RANK", "0")
    configure_logging("DEBUG")
    assert logging.getLogger("vaa").getEffectiveLevel() == logging.DEBUG
