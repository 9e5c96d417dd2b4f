"""The generated command line: every setting of the config dataclasses is a
flag (name, type, aliases, bools, lists) with no table in cli.py; what was
given is recorded, so stage two keeps an explicit value equal to the default;
settings a stage never reads are refused; the parser is split per command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from vaa import cli
from vaa.cli import build_config, build_parser, main
from vaa.config import (
    UNREAD_SECTIONS,
    ConfigError,
    DataConfig,
    RunConfig,
    Settings,
    apply_overrides,
    load_preset,
    setting,
    stage_settings,
)
from vaa.config_flags import Setting, add_setting_flags, all_settings, given_values, select


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _flags_of(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {name for action in sub._actions for name in action.option_strings}


# -- the generator ------------------------------------------------------------


def test_every_setting_is_a_flag_of_the_stage_that_reads_it():
    train, train_vaa = _flags_of("train"), _flags_of("train-vaa")
    for s in all_settings():
        stages = [flags for stage, flags in (("stage1", train), ("stage2", train_vaa)) if s.section not in UNREAD_SECTIONS[stage]]
        assert stages, s.key
        for flags in stages:
            assert set(s.flags) <= flags, f"{s.key}: {s.flags}"
    assert "--hidden" not in train_vaa and "--eps" not in train  # a stage's unread settings are not offered


def test_a_new_setting_gets_its_flag_without_a_line_in_the_cli():
    @dataclass
    class Toy(Settings):
        SECTION: ClassVar[str] = "toy"
        rate: float = setting(0.5, help="a rate", gt=0, lt=1)
        mode: str = setting("a", help="a mode", choices=("a", "b"))
        on: bool = setting(True, help="a switch")
        names: str = setting("", help="names", many=True)
        count: int = setting(3, help="a count", ge=1, flags=("--n", "--count"))

    parser = argparse.ArgumentParser()
    add_setting_flags(parser, [Setting(f"toy.{f.name}", Toy, f) for f in dataclasses.fields(Toy)])
    args = parser.parse_args(["--rate", "1e-1", "--mode", "b", "--no-on", "--names", "x", "y", "--count", "7"])
    assert given_values(args) == {"toy": {"rate": 0.1, "mode": "b", "on": False, "names": "x,y", "count": 7}}
    assert given_values(parser.parse_args(["--n", "2"])) == {"toy": {"count": 2}}  # the alias
    assert given_values(parser.parse_args([])) == {}  # nothing given: nothing overrides a preset
    help_text = parser.format_help()
    assert "a rate [toy.rate; a finite number > 0 and < 1; default: 0.5]" in " ".join(help_text.split())
    assert "{a,b}" in help_text and "--on, --no-on" in help_text


def test_flags_convert_to_the_setting_type_and_keep_the_documented_names():
    args = _parse(
        "train-vaa",
        "--model-a",
        "runs/a",
        "--lr",
        "1e-3",
        "--epochs",
        "3",
        "--relative",
        "--no-cache",
        "--scalars",
        "F2",
        "log_flip_eps",
        "--saliency",
        "--attack-seed",
        "4",
        "--limit",
        "10",
        "--no-progress",
    )
    values = given_values(args)
    assert values["optim"] == {"lr": 0.001, "max_epochs": 3} and isinstance(values["optim"]["lr"], float)
    assert values["attack"] == {"relative": True, "seed": 4}
    assert values["vaa"] == {"model_a": "runs/a", "cache": False, "scalars": "F2,log_flip_eps", "saliency": True}
    assert values["data"] == {"limit": 10} and values["progress"] is False
    assert given_values(_parse("train", "--max-epochs", "3")) == given_values(_parse("train", "--epochs", "3"))
    assert given_values(_parse("train", "--model", "m", "--family", "hf")) == {"model": {"path": "m", "family": "hf"}}


def test_a_flag_of_the_wrong_type_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        _parse("train", "--lr", "fast")
    assert "argument --lr: expected a finite number > 0, got 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["vulnerability", "ckpt", "--pair", "a", "b", "--norm", "l3"], "attack.norm='l3'"),
        (
            ["vulnerability", "ckpt", "--pair", "a", "b", "--steps", "3", "--direction", "random"],
            "attack.steps=3 needs attack.direction fgsm",
        ),
        (["evaluate", "ckpt", "file.tsv", "--limit", "0"], "data.limit=0"),
        (["evaluate", "ckpt", "file.tsv", "--on-error", "ignore"], "data.on_error='ignore'"),
        (["predict", "ckpt", "--pair", "a", "b", "--precision", "fp8"], "precision='fp8'"),
    ],
)
def test_the_other_commands_check_their_settings_with_the_config(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaa: error: command line:") and fragment in err and "\n" not in err


def test_analysis_commands_default_to_the_attack_config():
    from vaa.config import AttackConfig
    from vaa.config_flags import settings_from_args

    assert settings_from_args(_parse("vulnerability", "ckpt", "--pair", "a", "b")).attack == AttackConfig()
    given = settings_from_args(_parse("analyze", "ckpt", "--output", "o", "--eps", "0.1", "--norm", "linf")).attack
    assert given == AttackConfig(eps=0.1, norm="linf")


# -- what was given -------------------------------------------------------------


def test_given_keys_come_from_preset_flags_and_set():
    config = build_config(_parse("train", "--preset", "demo", "--lr", "4e-4", "--set", "data.on_error=raise"))
    assert {"optim.lr", "data.on_error", "model.hidden", "optim.max_epochs", "output"} <= config.given
    assert "optim.weight_decay" not in config.given and "seed" not in config.given
    assert config.optim.lr == 4e-4  # the flag beats the preset's 1e-3, though it equals the default
    assert RunConfig().given == frozenset()  # defaults are not given
    assert apply_overrides(RunConfig(), {"seed": 0}).given == {"seed"}


def test_a_saved_config_is_not_what_someone_gave(tmp_path):
    apply_overrides(RunConfig(), {"seed": 3}).save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json").given == frozenset()
    assert "given" not in json.loads((tmp_path / "c.json").read_text())


def _fake_a_run(folder: Path, **data: object) -> Path:
    """A stage-one run folder as far as resolve_config reads it."""
    (folder / "checkpoints").mkdir(parents=True)
    apply_overrides(RunConfig(), {"data": data, "model": {"hidden": 24}}).save(folder / "config.json")
    return folder


def test_stage_two_keeps_an_explicit_value_equal_to_the_default(tmp_path):
    from vaa.stage_two import resolve_config

    a = _fake_a_run(tmp_path / "a", train="a.tsv", valid="v.tsv", on_error="skip", valid_fraction=0.2, limit=50)
    base = apply_overrides(load_preset("esim-vaa"), {"vaa": {"model_a": str(a)}})
    inherited = resolve_config(base).data
    assert (inherited.train, inherited.on_error, inherited.valid_fraction, inherited.limit) == ("a.tsv", "skip", 0.2, 50)
    # given on the command line, equal to the defaults: they win over A's (they were ignored before)
    args = _parse("train-vaa", "--model-a", str(a), "--on-error", "raise", "--set", "data.valid_fraction=0.1")
    data = resolve_config(build_config(args, default_preset="esim-vaa", stage="stage2")).data
    assert (data.train, data.on_error, data.valid_fraction, data.limit) == ("a.tsv", "raise", 0.1, 50)
    # a preset that sets a data value is explicit too
    preset = tmp_path / "b.yaml"
    preset.write_text("extends: esim-vaa\ndata:\n  on_error: raise\n")
    assert resolve_config(apply_overrides(load_preset(str(preset)), {"vaa": {"model_a": str(a)}})).data.on_error == "raise"
    # B is a copy of A: its config says so
    assert resolve_config(base).model.hidden == 24


# -- settings a stage never reads -------------------------------------------------


@pytest.mark.parametrize(
    "argv,key",
    [
        (["train-vaa", "--model-a", "a", "--set", "model.hidden=100"], "model.hidden"),
        (["train", "--set", "attack.eps=0.1"], "attack.eps"),
        (["train", "--set", "vaa.injection=add"], "vaa.injection"),
        (["reproduce", "--preset", "demo", "--set-b", "model.hidden=8"], "model.hidden"),
        (["reproduce", "--preset", "demo", "--set-a", "attack.eps=0.1"], "attack.eps"),
    ],
)
def test_a_setting_the_stage_never_reads_is_refused_in_one_line(argv, key, capsys, tmp_path):
    print_config = ["--print-config"] if argv[0] != "reproduce" else []
    assert main([*argv, "--output", str(tmp_path / "run"), *print_config]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaa: error:") and f"never reads {key}" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_a_stage_two_preset_with_model_settings_is_refused(tmp_path, capsys):
    preset = tmp_path / "b.yaml"
    preset.write_text("extends: esim-vaa\nmodel:\n  dropout: 0.1\n")
    assert main(["train-vaa", "--preset", str(preset), "--model-a", "a", "--print-config"]) == 2
    assert "never reads model.dropout" in capsys.readouterr().err


def test_no_shipped_stage_two_preset_sets_model_settings():
    for name in ("esim-vaa", "hf-vaa", "demo-vaa"):
        assert not {k for k in load_preset(name).given if k.startswith("model.")}, name


def test_python_users_deriving_b_from_a_are_warned_not_refused(tmp_path, caplog):
    from vaa.stage_two import resolve_config

    a = _fake_a_run(tmp_path / "a", train="a.tsv")
    a_config = apply_overrides(RunConfig(), {"model": {"hidden": 8}})
    with caplog.at_level(logging.WARNING, logger="vaa.config"):
        resolve_config(apply_overrides(a_config, {"vaa": {"model_a": str(a)}}))
    assert any("train-vaa ignores model.hidden" in r.getMessage() for r in caplog.records)


def test_unread_settings_are_neither_compared_on_resume_nor_in_job_files(tmp_path):
    from vaa.runs import RunError, prepare_run

    config = apply_overrides(RunConfig(), {"vaa": {"model_a": "a"}, "output": str(tmp_path / "b")})
    with prepare_run(config):
        pass
    changed_model = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden=17))
    with prepare_run(changed_model):  # stage two never reads it: the same run
        pass
    with pytest.raises(RunError, match="optim.lr"):
        with prepare_run(apply_overrides(config, {"optim": {"lr": 1e-3}})):
            pass
    assert "model" not in stage_settings(config, "stage2") and "attack" not in stage_settings(config, "stage1")


# -- the parser -------------------------------------------------------------------


def test_the_parser_is_one_small_function_per_command():
    import ast
    import inspect
    import textwrap

    def statements(function) -> int:  # counted in the syntax tree, so the formatter's line breaks do not matter
        return len(ast.parse(textwrap.dedent(inspect.getsource(function))).body[0].body)

    assert statements(build_parser) <= 6
    for add in cli.COMMANDS:
        assert statements(add) <= 16, add.__name__
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {
        "train",
        "train-vaa",
        "reproduce",
        "demo",
        "evaluate",
        "predict",
        "calibrate",
        "vulnerability",
        "analyze",
        "convert",
        "probe",
        "theorem",
        "robustness",
    }


def test_read_settings_are_the_data_settings():
    assert {s.key for s in cli.READ_SETTINGS} <= {f"data.{f.name}" for f in dataclasses.fields(DataConfig)}
    assert [s.key for s in select(["attack.eps", "device"])] == ["attack.eps", "device"]


def test_the_scalar_names_agree_with_the_features_that_compute_them():
    from vaa.config import SCALAR_NAMES
    from vaa.features import SCALARS

    assert tuple(SCALARS) == SCALAR_NAMES
    with pytest.raises(ConfigError, match="unknown vulnerability scalar 'volume'"):
        apply_overrides(RunConfig(), {"vaa": {"scalars": "F2,volume"}})


def test_bad_set_syntax_is_a_config_error():
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        build_config(_parse("train", "--set", "optim.lr"))


@pytest.mark.parametrize(
    "argv, code",
    [(["theorem", "--samples", "50"], 0), (["evaluate", "no-such-checkpoint", "file.tsv"], 2)],
)
def test_a_command_leaves_the_process_group_it_ran_in(argv, code, tmp_path, capsys):
    # under torchrun the group must be shut down by us, not by interpreter finalisation
    import torch.distributed as dist

    from vaa.runtime import leave_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(argv) == code
        assert not dist.is_initialized()
        assert leave_process_group() is False  # nothing left to leave
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
