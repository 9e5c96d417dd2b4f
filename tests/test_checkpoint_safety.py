"""Checkpoints load without running code from them, and are checked against
their weights: a pickle payload is never executed, tampered metadata or
weights are one-line errors naming the field, old .pt files are refused with
the way to convert them."""

from __future__ import annotations

import json
import logging
import random
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim, tiny_train_argv
from vaa.checkpoint import METADATA, WEIGHTS, CheckpointError, load_checkpoint, save_model
from vaa.cli import main
from vaa.config import apply_overrides
from vaa.data.batching import collate
from vaa.inference import load_model
from vaa.stage_one import train
from vaa.stage_two import train_vaa


class Payload:
    """Unpickling this creates ``marker``: the side effect of code run from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def old_format(model, label_map, kind="model", **extra):
    """A version-1 (pickle) checkpoint payload, as vaa wrote them before."""
    return {
        "format": "vaa-checkpoint",
        "version": 1,
        "kind": kind,
        "model": {
            "family": model.family,
            "spec": model.spec(),
            "featurizer": model.featurizer_state(),
            "label_map": label_map.to_json(),
        },
        **extra,
        "state_dict": model.state_dict(),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished stage-one run and a stage-two run on it (tiny)."""
    from conftest import make_tiny_config

    tmp = tmp_path_factory.mktemp("runs")
    config = apply_overrides(make_tiny_config(tmp), {"optim": {"max_epochs": 1}, "output": str(tmp / "a")})
    train(config)
    b = apply_overrides(
        config, {"vaa": {"model_a": str(tmp / "a")}, "output": str(tmp / "b"), "data": {"train": None, "valid": None}}
    )
    train_vaa(b)
    return tmp, config


def saved_esim(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    save_model(tiny_esim().eval(), TOY_LABELS, folder)
    return folder


def is_pickle(path: Path) -> bool:
    return zipfile.is_zipfile(path) or path.read_bytes()[:1] == b"\x80"


# -- the format ----------------------------------------------------------------


def test_checkpoint_folder_holds_no_pickle_and_round_trips(tmp_path):
    folder = saved_esim(tmp_path)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [WEIGHTS, METADATA, "vocab.json"]
    assert not any(is_pickle(folder / n) for n in names)
    model = tiny_esim().eval()
    loaded = load_model(folder)
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(batch), model(batch))


def test_run_checkpoints_of_both_stages_are_folders_without_pickle_except_weights_only_state(runs):
    tmp, _ = runs
    for run in ("a", "b"):
        for which in ("best", "last"):
            folder = tmp / run / "checkpoints" / which
            assert (folder / WEIGHTS).is_file() and (folder / METADATA).is_file()
            for f in folder.rglob("*"):
                if f.is_file() and f.name != "training_state.pt":
                    assert not is_pickle(f), f
        assert (tmp / run / "checkpoints" / "last" / "training_state.pt").is_file()
        assert not (tmp / run / "checkpoints" / "best" / "training_state.pt").exists()
    # stage two's checkpoint carries the frozen A, W and B
    keys = load_file(str(tmp / "b" / "checkpoints" / "best" / WEIGHTS)).keys()
    assert any(k.startswith("a.") for k in keys) and any(k.startswith("b.") for k in keys)
    assert any(k.startswith("projection.") for k in keys)
    assert json.loads((tmp / "b" / "checkpoints" / "best" / METADATA).read_text())["kind"] == "vaa"


# -- tampering -------------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _edit_weights(folder: Path, edit) -> None:
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(folder / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS), metadata=meta)


def _shuffle_vocab(folder: Path) -> None:
    words = json.loads((folder / "vocab.json").read_text())
    rest = words[2:]
    random.Random(0).shuffle(rest)
    (folder / "vocab.json").write_text(json.dumps(words[:2] + rest))


TAMPERING = {
    "label count": (
        lambda f: _edit_json(f / METADATA, lambda m: m["model"]["label_map"]["names"].append("maybe")),
        "label count 3",
    ),
    "vocabulary size": (
        lambda f: (f / "vocab.json").write_text(json.dumps(json.loads((f / "vocab.json").read_text()) + ["zebra"])),
        "vocabulary size",
    ),
    "hidden size": (lambda f: _edit_json(f / METADATA, lambda m: m["model"]["spec"].update(hidden=7)), "hidden size 7"),
    "embedding size": (
        lambda f: _edit_json(f / METADATA, lambda m: m["model"]["spec"].update(embedding_dim=9)),
        "embedding size 9",
    ),
    "missing key": (lambda f: _edit_json(f / METADATA, lambda m: m["model"].pop("label_map")), "missing field 'model.label_map'"),
    "family": (lambda f: _edit_json(f / METADATA, lambda m: m["model"].update(family="hf")), "'model.family'"),
    "unknown family": (lambda f: _edit_json(f / METADATA, lambda m: m["model"].update(family="rnn")), "'model.family'"),
    "swapped labels": (
        lambda f: _edit_json(f / METADATA, lambda m: m["model"]["label_map"]["names"].reverse()),
        "model.label_map",
    ),
    "shuffled vocabulary": (_shuffle_vocab, "featuriser files"),
    "missing tensor": (lambda f: _edit_weights(f, lambda t: t.pop("hidden_layer.1.bias")), "missing from model.safetensors"),
    "extra tensor": (lambda f: _edit_weights(f, lambda t: t.update(extra=torch.zeros(2))), "unexpected tensor"),
    "NaN weight": (
        lambda f: _edit_weights(f, lambda t: t["head.1.weight"].__setitem__((0, 0), float("nan"))),
        "head.1.weight holds 1 non-finite",
    ),
    "inf weight": (
        lambda f: _edit_weights(f, lambda t: t["embedding.weight"].__setitem__((3, 1), float("inf"))),
        "embedding.weight holds",
    ),
    "truncated weights": (lambda f: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes()[:200]), "damaged weights file"),
    "weights replaced by junk": (lambda f: (f / WEIGHTS).write_bytes(b"\x00junk" * 50), "damaged weights file"),
    "metadata not JSON": (lambda f: (f / METADATA).write_text("{oops"), "not readable JSON"),
    "vocabulary file missing": (lambda f: (f / "vocab.json").unlink(), "vocab.json is missing"),
    "newer version": (lambda f: _edit_json(f / METADATA, lambda m: m.update(version=99)), "newer than this vaa"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_checkpoint_is_a_one_line_error_naming_the_field(case, tmp_path, capsys):
    folder = saved_esim(tmp_path)
    tamper, expected = TAMPERING[case]
    tamper(folder)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert main(["predict", str(folder), "--pair", "the cat sat", "a cat sat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaa: error: ") and expected in err and len(err.strip().splitlines()) == 1


def test_stage_two_checkpoint_is_checked_too(runs, tmp_path):
    tmp, _ = runs
    folder = tmp_path / "b-best"
    shutil.copytree(tmp / "b" / "checkpoints" / "best", folder)
    load_checkpoint(folder)  # intact: loads
    _edit_json(folder / METADATA, lambda m: m["model"]["label_map"]["names"].append("x"))
    with pytest.raises(CheckpointError, match="label count 3"):
        load_checkpoint(folder)
    shutil.rmtree(folder)
    shutil.copytree(tmp / "b" / "checkpoints" / "best", folder)
    _edit_weights(folder, lambda t: t["projection.weight"].__setitem__((0, 0), float("nan")))
    with pytest.raises(CheckpointError, match="projection.weight holds"):
        load_checkpoint(folder)


# -- pickle payloads are never executed -------------------------------------------


def test_old_pt_with_a_payload_is_refused_by_every_command_and_never_executed(runs, tmp_path, capsys):
    tmp, config = runs
    marker = tmp_path / "PWNED"
    model = load_model(tmp / "a").base
    evil = {**old_format(model, TOY_LABELS.__class__(["0", "1"])), "payload": Payload(marker)}
    loose = tmp_path / "best.pt"
    torch.save(evil, loose)
    old_run = tmp_path / "old-run"  # an old run folder: config.json + checkpoints/best.pt
    (old_run / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp / "a" / "config.json", old_run / "config.json")
    shutil.copy(loose, old_run / "checkpoints" / "best.pt")
    shutil.copy(loose, old_run / "checkpoints" / "last.pt")
    valid = config.data.valid
    data_args = [valid, "--format", "generic", "--columns", config.data.columns]
    for target in (loose, old_run):
        commands = [
            ["predict", str(target), "--pair", "the cat is here", "where is the cat"],
            ["evaluate", str(target), *data_args],
            ["vulnerability", str(target), "--pair", "the cat is here", "where is the cat", "--no-progress"],
            ["train-vaa", "--model-a", str(target), "--print-config"],
            [
                "train-vaa",
                "--model-a",
                str(target),
                "--output",
                str(tmp_path / "b-new"),
                "--no-progress",
                "--train",
                valid,
                "--valid",
                valid,
                "--format",
                "generic",
                "--columns",
                config.data.columns,
            ],
        ]
        for argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "old-format checkpoint" in err and "vaa convert" in err, argv
            assert not marker.exists(), argv
    # resuming the old run folder is refused before anything is loaded
    resume = apply_overrides(config, {"output": str(old_run)})
    from vaa.runs import RunError

    with pytest.raises(RunError, match="vaa convert"):
        train(resume)
    assert not marker.exists()


def test_tampered_training_state_is_refused_on_resume_and_never_executed(runs, tmp_path, capsys):
    tmp, config = runs
    marker = tmp_path / "PWNED"
    run = tmp_path / "interrupted"
    shutil.copytree(tmp / "a", run)
    (run / "results.json").unlink()  # unfinished: the next call resumes from checkpoints/last
    state_file = run / "checkpoints" / "last" / "training_state.pt"
    state = torch.load(state_file, weights_only=True)
    state["payload"] = Payload(marker)
    torch.save(state, state_file)
    code = main(tiny_train_argv(config.data, run, "--set", "optim.eval_batch_size=16", "--set", "log_every=2", "--quiet"))
    err = capsys.readouterr().err
    assert code == 2 and "training_state.pt" in err and "refused" in err
    assert len(err.strip().splitlines()) == 1  # --quiet: the error line alone, no INFO log lines before it
    assert not marker.exists()


def test_convert_turns_an_old_checkpoint_into_a_working_folder(runs, tmp_path, capsys):
    tmp, config = runs
    loaded = load_model(tmp / "a")
    old = tmp_path / "best.pt"
    torch.save(old_format(loaded.base, loaded.label_map), old)
    assert main(["convert", str(old), str(tmp_path / "new")]) == 0
    err = capsys.readouterr().err
    assert "EXECUTES" in err and "yourself" in err
    converted = load_model(tmp_path / "new")
    for name, tensor in loaded.module.state_dict().items():
        assert torch.equal(converted.module.state_dict()[name], tensor), name
    # the help says it, too
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "EXECUTES" in capsys.readouterr().out


def test_convert_an_old_run_folder_resumes_and_predicts(runs, tmp_path, caplog):
    """An old run folder (best.pt, last.pt with tuple RNG states) becomes a new
    run folder whose training resumes and whose model predicts."""
    import numpy as np

    tmp, config = runs
    loaded = load_model(tmp / "a")
    old = tmp_path / "old"
    shutil.copytree(tmp / "a", old, ignore=shutil.ignore_patterns("checkpoints", ".vaa-*"))
    (old / "checkpoints").mkdir()
    torch.save(old_format(loaded.base, loaded.label_map), old / "checkpoints" / "best.pt")
    import random as pyrandom

    from vaa.checkpoint import load_training_state

    state = load_training_state(tmp / "a" / "checkpoints" / "last")
    training = {
        "state": state["state"],
        "optimizer": state["optimizer"],
        "scheduler": state["scheduler"],
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": pyrandom.getstate()},
    }
    torch.save({**old_format(loaded.base, loaded.label_map), "training": training}, old / "checkpoints" / "last.pt")
    new = tmp_path / "new"
    assert main(["convert", str(old), str(new)]) == 0
    assert (new / ".vaa-run").is_file() and (new / "checkpoints" / "last" / "training_state.pt").is_file()
    assert not list(new.rglob("*.pt")) or [p.name for p in new.rglob("*.pt")] == ["training_state.pt"]
    assert load_model(new).kind == "model"
    assert load_training_state(new / "checkpoints" / "last")["rng"]["numpy"]["keys"].dtype == torch.int64
    (new / "results.json").unlink()  # the same command again resumes from the converted last/
    with caplog.at_level(logging.INFO, logger="vaa"):
        results = train(apply_overrides(config, {"output": str(new)}))
    assert "resuming from" in caplog.text and results["scores"]["valid"]["pairs"] == 16


def test_convert_a_stage_two_checkpoint_keeps_a_w_and_b(runs, tmp_path):
    tmp, _ = runs
    loaded = load_model(tmp / "b")
    meta = json.loads((tmp / "b" / "checkpoints" / "best" / METADATA).read_text())
    old = tmp_path / "b.pt"
    torch.save(
        {
            **old_format(loaded.base, loaded.label_map, kind="vaa", vaa=meta["vaa"], attack=meta["attack"]),
            "state_dict": loaded.module.state_dict(),
        },
        old,
    )
    assert main(["convert", str(old), str(tmp_path / "b-new")]) == 0
    converted = load_model(tmp_path / "b-new")
    assert converted.kind == "vaa"
    for name, tensor in loaded.module.state_dict().items():
        assert torch.equal(converted.module.state_dict()[name], tensor), name
