"""The README stays true: every `vaa ...` command it shows parses (and its
settings pass the config's checks), its `vaa train --help` excerpt is the
generated help, and its Python snippets run, in order, on the demo data."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vaa.cli import build_config, build_parser
from vaa.config_flags import settings_from_args

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


def readme_commands() -> list[list[str]]:
    """The argument lists of every `vaa ...` command (and `python -m vaa` /
    `torchrun ... -m vaa`) in the README's bash blocks; continuations joined,
    comments dropped."""
    commands = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["vaa"]:
                commands.append(words[1:])
            elif "-m" in words and words[words.index("-m") + 1 :][:1] == ["vaa"]:
                commands.append(words[words.index("-m") + 2 :])
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands():
    shown = {argv[0] for argv in COMMANDS}
    assert {
        "train",
        "train-vaa",
        "evaluate",
        "predict",
        "calibrate",
        "vulnerability",
        "analyze",
        "theorem",
        "probe",
        "reproduce",
        "convert",
    } <= shown
    assert len(COMMANDS) >= 20  # the extraction found the blocks


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv)[:60])
def test_every_readme_command_parses(argv):
    # paths need not exist to parse; the stage-two preset is named here, as the default one reads model A's checkpoint
    args = build_parser().parse_args(argv)
    if argv[0] == "train":
        config = build_config(args, stage="stage1")
        assert config.output == args.__dict__["cfg:output"]
    elif argv[0] == "train-vaa":
        config = build_config(args, default_preset="esim-vaa", stage="stage2")
        assert config.vaa.model_a
    elif argv[0] in ("evaluate", "predict", "calibrate", "vulnerability", "analyze", "probe", "reproduce", "demo"):
        settings_from_args(args)  # the settings it was given pass the config's checks


def test_the_help_excerpt_is_the_generated_help(monkeypatch, capsys):
    excerpt = next(body for body in blocks("text") if body.startswith("$ vaa train --help"))
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for entry in re.split(r"\n(?=  --|\S)", excerpt.split("\n", 1)[1].rstrip()):
        assert " ".join(entry.split()) in help_text, entry


def test_the_python_snippets_run_on_the_demo_data(tmp_path, monkeypatch):
    snippets = blocks("python")
    assert len(snippets) >= 4 and any("vaa.load(" in s for s in snippets)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for snippet in snippets:  # in order, sharing names, as a reader would type them
        exec(compile(snippet, f"README.md python block {snippets.index(snippet) + 1}", "exec"), namespace)
    model, pairs = namespace["model"], namespace["pairs"]
    assert model.labels == ["not_duplicate", "duplicate"]
    assert namespace["probs"].shape == (2, 2) and namespace["report"]["pairs"] == 2
    assert (tmp_path / "models" / "demo-a" / "model.safetensors").exists()
    assert namespace["model_b"].predict(pairs).shape == (2, 2)
    assert (tmp_path / "runs" / "demo-a" / "analysis" / "report.md").exists()
