"""Typed configuration: every value that reaches a config (preset, flag,
--set, config.json, Python) is converted to its field's type and checked, and
a bad one is a single line naming the key, the value and what is allowed,
before anything is written."""

from __future__ import annotations

import dataclasses
import json
import logging
import typing

import pytest

from conftest import tiny_train_argv
from vaa.cli import main
from vaa.config import (
    AttackConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    VAAConfig,
    apply_overrides,
    load_preset,
    shipped_presets,
)
from vaa.data.readers import FORMATS
from vaa.models import FAMILIES
from vaa.training import read_jsonl

SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "attack": AttackConfig,
    "vaa": VAAConfig,
    "train": TrainConfig,
}


def _fields():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield section, cls, f
    for f in dataclasses.fields(RunConfig):
        if f.name not in SECTIONS and f.name != "given":  # `given` records what was set; it is not a setting
            yield None, RunConfig, f


def _override(section, name, value):
    return {section: {name: value}} if section else {name: value}


def test_every_setting_documents_itself_for_the_generated_cli():
    for section, _, f in _fields():
        assert f.metadata.get("help"), f"{section}.{f.name} has no help text"


def test_choices_agree_with_the_modules_that_act_on_them():
    assert ModelConfig.__dataclass_fields__["family"].metadata["choices"] == tuple(FAMILIES)
    assert DataConfig.__dataclass_fields__["format"].metadata["choices"] == FORMATS


@pytest.mark.parametrize(
    "section,cls,f", [t for t in _fields() if "choices" in t[2].metadata], ids=lambda v: getattr(v, "name", None) or str(v)
)
def test_an_unknown_enum_value_names_key_value_and_choices(section, cls, f):
    key = f"{section}.{f.name}" if section else f.name
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), _override(section, f.name, "bogus"), source="command line")
    text = str(err.value)
    assert "\n" not in text and key in text and "'bogus'" in text
    assert all(choice in text for choice in f.metadata["choices"])


def _outside(meta):
    """A value just outside each bound of a field."""
    if "ge" in meta:
        yield meta["ge"] - 1
    if "gt" in meta:
        yield meta["gt"]
    if "lt" in meta:
        yield meta["lt"]
    if "le" in meta:
        yield meta["le"] + 1


@pytest.mark.parametrize(
    "section,cls,f",
    [t for t in _fields() if set(t[2].metadata) & {"ge", "gt", "lt", "le"}],
    ids=lambda v: getattr(v, "name", None) or str(v),
)
def test_a_value_out_of_bounds_is_refused(section, cls, f):
    kind = typing.get_type_hints(cls)[f.name]
    number = int if int in typing.get_args(kind) or kind is int else float
    for value in _outside(f.metadata):
        with pytest.raises(ConfigError, match="is not allowed: expected"):
            apply_overrides(RunConfig(), _override(section, f.name, number(value)))


@pytest.mark.parametrize(
    "key,value",
    [
        ("optim.lr", float("nan")),
        ("optim.lr", "inf"),
        ("attack.eps", float("inf")),
        ("attack.eps", "nan"),
        ("optim.grad_clip", "-inf"),
        ("model.dropout", "nan"),
    ],
)
def test_non_finite_numbers_are_refused(key, value):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=f"{key}=.*finite"):
        apply_overrides(RunConfig(), {section: {name: value}})


def test_values_are_converted_to_the_field_type():
    config = apply_overrides(
        RunConfig(),
        {
            "optim": {"lr": "1e-3", "batch_size": "32", "max_epochs": 3.0},
            "attack": {"eps": 1, "relative": "true"},
            "vaa": {"cache": "no"},
            "data": {"limit": None},
            "seed": "7",
        },
    )
    assert config.optim.lr == 0.001 and isinstance(config.optim.lr, float)
    assert config.optim.batch_size == 32 and config.optim.max_epochs == 3 and isinstance(config.optim.max_epochs, int)
    assert config.attack.eps == 1.0 and isinstance(config.attack.eps, float)
    assert config.attack.relative is True and config.vaa.cache is False and config.seed == 7 and config.data.limit is None


@pytest.mark.parametrize(
    "override,fragment",
    [
        ({"optim": {"batch_size": "abc"}}, "optim.batch_size='abc'"),
        ({"optim": {"batch_size": 2.5}}, "optim.batch_size=2.5"),
        ({"optim": {"batch_size": True}}, "optim.batch_size=True"),
        ({"attack": {"relative": "maybe"}}, "attack.relative='maybe'"),
        ({"data": {"train": ["a", "b"]}}, "data.train=['a', 'b']"),
        ({"model": {"hidden": None}}, "model.hidden=None"),
    ],
)
def test_wrong_types_are_one_line_errors(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), override, source="command line")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_keys_and_bad_sections():
    with pytest.raises(ConfigError, match=r"unknown setting 'optim.learning_rate' \(known: .*lr"):
        apply_overrides(RunConfig(), {"optim": {"learning_rate": 1}})
    with pytest.raises(ConfigError, match="unknown setting 'epochs'"):
        apply_overrides(RunConfig(), {"epochs": 1})
    with pytest.raises(ConfigError, match="'optim' must be a mapping"):
        apply_overrides(RunConfig(), {"optim": 3})


def test_config_objects_built_in_python_are_checked_too():
    with pytest.raises(ConfigError, match="attack.norm='l3'"):
        AttackConfig(norm="l3")
    with pytest.raises(ConfigError, match="attack.eps=-0.1"):
        AttackConfig(eps=-0.1)
    with pytest.raises(ConfigError, match="vaa.injection"):
        dataclasses.replace(VAAConfig(), injection="concat")


def test_every_shipped_preset_is_valid():
    presets = shipped_presets()
    assert len(presets) >= 10
    for name in presets:
        load_preset(name)


def test_a_bad_preset_value_names_the_file(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("extends: esim\noptim:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=rf"{preset}: optim.batch_size=0"):
        load_preset(str(preset))


def test_config_json_round_trip_keeps_types(tmp_path):
    config = apply_overrides(RunConfig(), {"optim": {"lr": "2e-4"}})
    config.save(tmp_path / "c.json")
    again = RunConfig.load(tmp_path / "c.json")
    assert again == config and again.optim.lr == 2e-4


def test_absurd_but_finite_lr_is_allowed_with_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="vaa.config"):
        config = apply_overrides(RunConfig(), {"optim": {"lr": 1e30}}, source="command line")
    assert config.optim.lr == 1e30
    assert any("optim.lr=1e+30" in r.getMessage() and "diverge" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vaa.config"):
        apply_overrides(RunConfig(), {"optim": {"lr": 1e-3}})
    assert not caplog.records


# -- the command line ---------------------------------------------------------


def test_readme_set_lr_trains_with_lr_0_001(tiny_config, tmp_path):
    run = tmp_path / "run"
    code = main(tiny_train_argv(tiny_config.data, run, "--set", "optim.lr=1e-3", "--set", "optim.scheduler=none"))
    assert code == 0
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 0.001
    assert [m["lr"] for m in read_jsonl(run / "metrics.jsonl")] == [0.001]


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--set", "optim.batch_size=abc"], "optim.batch_size='abc'"),
        (["--batch-size", "0"], "optim.batch_size=0"),
        (["--epochs", "0"], "optim.max_epochs=0"),
        (["--lr", "inf"], "optim.lr=inf"),
        (["--lr", "-1"], "optim.lr=-1.0"),
        (["--set", "model.pooling=max"], "model.pooling='max'"),
        (["--set", "optim.batch_size"], "--set expects KEY=VALUE"),
        (["--set", "nosuch.key=1"], "unknown setting 'nosuch'"),
    ],
)
def test_cli_bad_values_are_one_line_and_nothing_is_written(tmp_path, capsys, flags, fragment):
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaa: error:") and fragment in err and "\n" not in err
    assert not run.exists()


@pytest.mark.parametrize("eps", ["inf", "nan", "-0.5"])
def test_cli_bad_eps_for_both_stages_and_the_attack_commands(tmp_path, capsys, eps):
    run = tmp_path / "b"
    assert main(
        ["train-vaa", "--model-a", str(tmp_path / "missing"), "--train", "x.tsv", "--eps", eps, "--output", str(run)]
    ) in (2,)
    assert "attack.eps" in capsys.readouterr().err
    assert not run.exists()
    assert main(["vulnerability", str(tmp_path / "missing.pt"), "--pair", "a b", "c d", "--eps", eps]) == 2
    assert "attack.eps" in capsys.readouterr().err


def test_cli_lr_1e30_warns_loudly(capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="vaa.config"):
        assert main(["train", "--lr", "1e30", "--print-config"]) == 0
    assert any("optim.lr=1e+30" in r.getMessage() for r in caplog.records)
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 1e30
