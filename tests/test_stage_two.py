"""Stage two: frozen A, B started from A, the injections, the V1/V2 cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim
from vaa.config import AttackConfig, VAAConfig, apply_overrides
from vaa.data.batching import collate
from vaa.inference import load_model
from vaa.models.vaa import VAAModel
from vaa.stage_one import train
from vaa.stage_two import attach_vectors, train_vaa
from vaa.training import read_jsonl
from vaa.vulnerability import FeatureCache, vector_features


def batch_of(model, pairs=TOY_PAIRS):
    return collate(model.featurize_all(pairs, TOY_LABELS))


def test_b_starts_as_a_copy_and_a_is_frozen():
    a = tiny_esim()
    vaa = VAAModel(a, VAAConfig(), AttackConfig())
    for (name, pa), (_, pb) in zip(a.named_parameters(), vaa.b.named_parameters()):
        torch.testing.assert_close(pa, pb, msg=name)
        assert pb.data_ptr() != pa.data_ptr()
    assert not any(p.requires_grad for p in vaa.a.parameters())
    vaa.train()
    assert vaa.training and vaa.b.training and not vaa.a.training


@pytest.mark.parametrize("injection", ["token", "classifier", "add"])
def test_injection_uses_v_and_nothing_else_changes(injection):
    model = VAAModel(tiny_esim(), VAAConfig(injection=injection), AttackConfig()).eval()
    if injection == "classifier":  # the V columns start at zero (B = A); give them weight as training would
        with torch.no_grad():
            model.b_head[1].weight[:, model.a.hidden_size :].normal_()
    batch = batch_of(model.a)
    inputs = {k: t.clone() for k, t in batch.items() if isinstance(t, torch.Tensor)}
    a_weights = {k: t.clone() for k, t in model.a.state_dict().items()}
    b_weights = {k: t.clone() for k, t in model.state_dict().items()}
    v = torch.randn(len(TOY_PAIRS), model.a.embedding_dim)
    with torch.no_grad():
        base = model(batch, vector=v)
        torch.testing.assert_close(model(batch, vector=v.clone()), base)
        moved = v.clone()
        moved[0] += 0.5  # only the first pair's V
        changed = model(batch, vector=moved)
        a_output = model.a(batch)
    # V is used: the first pair's output moves with its V ...
    assert not torch.allclose(changed[0], base[0])
    # ... and nothing else changes: the other pairs' outputs, A's output and weights, B's weights, the inputs
    torch.testing.assert_close(changed[1:], base[1:], rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model.a(batch), a_output, rtol=0, atol=0)
    for name, tensor in model.a.state_dict().items():
        torch.testing.assert_close(tensor, a_weights[name], rtol=0, atol=0, msg=name)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, b_weights[name], rtol=0, atol=0, msg=name)
    for name, tensor in inputs.items():
        torch.testing.assert_close(batch[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("injection", ["classifier", "add"])
def test_b_computes_a_exactly_before_training_when_v_is_zero(injection):
    model = VAAModel(tiny_esim(), VAAConfig(injection=injection), AttackConfig()).eval()
    batch = batch_of(model.a)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, vector=torch.zeros(len(TOY_PAIRS), model.a.embedding_dim)), model.a(batch))


@pytest.mark.parametrize("direction", ["fgsm", "random"])
def test_cached_vectors_give_the_same_logits_as_the_attack_on_the_fly(direction):
    model = VAAModel(tiny_esim(), VAAConfig(), AttackConfig(eps=0.3, direction=direction)).eval()
    examples = model.a.featurize_all(TOY_PAIRS, TOY_LABELS)
    v1, v2 = vector_features(model.a, examples, model.attack_config, batch_size=2)
    with torch.no_grad():
        on_the_fly = model(collate(examples))
        cached = model(collate(attach_vectors(examples, v1, v2)))
    torch.testing.assert_close(cached, on_the_fly, rtol=1e-5, atol=1e-6)


def test_zero_control_feeds_zeros_and_never_runs_the_attack(monkeypatch):
    import vaa.models.vaa as fw

    model = VAAModel(tiny_esim(), VAAConfig(vulnerability="zeros"), AttackConfig()).eval()
    monkeypatch.setattr(fw, "forward_with_gradient", lambda *a: pytest.fail("attack ran"))
    batch = batch_of(model.a)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(batch, vector=torch.zeros(len(TOY_PAIRS), model.a.embedding_dim)))


def test_cache_hit_and_invalidation(tmp_path):
    a = tiny_esim().eval()
    examples = a.featurize_all(TOY_PAIRS, TOY_LABELS)
    cache = FeatureCache(tmp_path)
    cfg = AttackConfig(eps=0.2)
    v1, v2, info = cache.get_or_compute(a, examples, cfg)
    assert not info["hit"]
    again1, again2, info = cache.get_or_compute(a, examples, cfg)
    assert info["hit"]
    torch.testing.assert_close(again1, v1)
    torch.testing.assert_close(again2, v2)
    fresh1, fresh2 = vector_features(a, examples, cfg)
    torch.testing.assert_close(fresh2, v2)
    # any change of attack, data or A's weights misses
    assert not cache.get_or_compute(a, examples, dataclasses.replace(cfg, eps=0.3))[2]["hit"]
    assert not cache.get_or_compute(a, examples, dataclasses.replace(cfg, direction="random"))[2]["hit"]
    assert not cache.get_or_compute(a, examples[:-1], cfg)[2]["hit"]
    with torch.no_grad():
        a.hidden_layer[1].weight.add_(0.05)
    changed1, _, info = cache.get_or_compute(a, examples, cfg)
    assert not info["hit"] and not torch.allclose(changed1, v1)


def test_stage_two_end_to_end_leaves_a_unchanged(tiny_config, tmp_path):
    train(tiny_config)
    a_before = load_model(tiny_config.output).module.state_dict()
    config = apply_overrides(
        tiny_config,
        {
            "vaa": {"model_a": tiny_config.output},
            "optim": {"max_epochs": 1},
            "output": str(tmp_path / "b"),
            "data": {"train": None, "valid": None},
        },
    )
    results = train_vaa(config)
    assert results["scores"]["valid"]["pairs"] == 16
    assert results["info"]["cache"]["train"]["hit"] is False
    loaded = load_model(tmp_path / "b")
    assert loaded.kind == "vaa"
    for name, tensor in a_before.items():
        torch.testing.assert_close(loaded.module.a.state_dict()[name], tensor, msg=name)
    b_changed = any(not torch.equal(loaded.module.b.state_dict()[n], t) for n, t in a_before.items())
    assert b_changed
    steps_a = [r["step"] for r in read_jsonl(f"{tiny_config.output}/loss.jsonl")]
    steps_b = [r["step"] for r in read_jsonl(tmp_path / "b" / "loss.jsonl")]
    assert min(steps_b) > max(steps_a)  # Fig. 5: stage two continues A's curve
    assert (tmp_path / "b" / "loss_both_stages.png").exists()
    # the cache lives in B's run folder, never in A's
    assert list((tmp_path / "b" / "vcache").glob("v1v2-*.safetensors"))
    assert not list(tmp_path.joinpath("run").rglob("v1v2-*"))
    # a configured cache folder is shared: the same stage two in another run folder hits it
    shared = {"vaa": {"cache_dir": str(tmp_path / "cache")}}
    assert (
        train_vaa(apply_overrides(config, {**shared, "output": str(tmp_path / "b2")}))["info"]["cache"]["train"]["hit"] is False
    )
    assert train_vaa(apply_overrides(config, {**shared, "output": str(tmp_path / "b3")}))["info"]["cache"]["train"]["hit"] is True


def test_stage_two_inherits_a_data_but_keeps_what_it_is_given(tiny_config, tmp_path):
    from vaa.runs import RunError
    from vaa.stage_two import resolve_config

    train(tiny_config)
    given = apply_overrides(
        tiny_config,
        {"vaa": {"model_a": tiny_config.output}, "data": {"train": None, "valid": None, "test": "extra.tsv", "limit": 7}},
    )
    data = resolve_config(given).data
    assert (data.train, data.valid) == (tiny_config.data.train, tiny_config.data.valid)
    assert (data.test, data.limit, data.format) == ("extra.tsv", 7, "generic")
    import shutil

    loose = tmp_path / "loose"
    shutil.copytree(tmp_path / "run" / "checkpoints" / "best", loose)
    with pytest.raises(RunError, match="--train"):
        resolve_config(apply_overrides(given, {"vaa": {"model_a": str(loose)}}))


def test_limit_never_moves_training_pairs_into_validation(tmp_path):
    from conftest import write_pairs
    from vaa.config import DataConfig
    from vaa.data.sources import load_splits

    path = write_pairs(tmp_path / "all.tsv", 200, 0)
    cfg = DataConfig(train=str(path), format="generic", columns="a=a,b=b,label=y", valid_fraction=0.2)
    full = load_splits(cfg)
    small = load_splits(dataclasses.replace(cfg, limit=10))
    full_valid = {p.id for p in full.valid}
    assert {p.id for p in small.valid} <= full_valid
    assert not {p.id for p in small.train} & full_valid
    assert len(small.train) == len(small.valid) == 10


def test_train_vaa_refuses_model_flags(capsys):
    from vaa.cli import main

    with pytest.raises(SystemExit):
        main(["train-vaa", "--model-a", "x", "--hidden", "17"])
    assert "unrecognized arguments: --hidden" in capsys.readouterr().err
