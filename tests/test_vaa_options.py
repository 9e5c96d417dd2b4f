"""Stage-two feature options and the new controls: each on hand-computed
values, cached == on the fly, and each control differs from +VAA only where
it should."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim, toy_batch, write_tiny_presets
from vaa.config import AttackConfig, RunConfig, VAAConfig, apply_overrides
from vaa.data.batching import collate
from vaa.data.sources import load_splits
from vaa.features import attachable, batch_features, calibrate_eps, feature_needs, pair_features, permutation_for
from vaa.models.vaa import VAAModel
from vaa.stage_two import attach_features, stage_two_features
from vaa.vulnerability import FeatureCache, state_fingerprint

ALL_SCALARS = ["log_distance", "log_grad_norm", "F1", "F2", "flip", "log_flip_eps", "targeted_loss_drop"]


def run_config(attack: dict | None = None, **vaa) -> RunConfig:
    return apply_overrides(RunConfig(), {"vaa": vaa, "attack": {"eps": 0.3, **(attack or {})}})


def cached_batch(model: VAAModel, config: RunConfig, split: str = "valid"):
    examples = model.a.featurize_all(TOY_PAIRS, TOY_LABELS)
    raw = pair_features(
        model.a, examples, model.attack_config, [w for w in feature_needs(model.vaa_config) if w != "scalars"], batch_size=2
    )
    raw = {
        k: (torch.from_numpy(v) if v.dtype != object else [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in v])
        for k, v in raw.items()
    }
    return examples, raw, collate(attach_features(examples, stage_two_features(raw, config, split)))


def test_default_is_the_paper_and_computes_nothing_extra():
    model = VAAModel(tiny_esim(), VAAConfig(), AttackConfig())
    h = model.a.hidden_size
    assert model.projection.in_features == 3 * h
    assert model.part_norms is None and model.saliency_weight is None and not hasattr(model, "v3_mean")
    assert feature_needs(model.vaa_config) == [] and model.learning_rates() == {}


@pytest.mark.parametrize(
    "options",
    [
        {"scalars": ",".join(ALL_SCALARS)},
        {"scalars": "F2,log_flip_eps", "diff_scale": "step", "normalize": "layernorm"},
        {"saliency": True, "injection": "add"},
        {"saliency": True, "scalars": "flip", "injection": "token"},
        {"scalars": "log_flip_eps F2", "attack": {"target": 1, "steps": 3}},  # a targeted PGD V2
    ],
)
def test_cached_features_give_the_same_logits_as_on_the_fly(options):
    config = run_config(**options)
    model = VAAModel(tiny_esim(), config.vaa, config.attack).eval()
    if model.saliency_weight is not None:
        with torch.no_grad():
            model.saliency_weight.normal_()
    examples, _, batch = cached_batch(model, config)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(collate(examples)), rtol=1e-5, atol=1e-6)


def test_vulnerability_vector_on_hand_computed_inputs():
    config = run_config(scalars="F2,log_distance", diff_scale="step")
    model = VAAModel(tiny_esim(), config.vaa, config.attack).eval()
    h = model.a.hidden_size
    assert model.projection.in_features == 3 * h + 2
    v1, v2 = torch.randn(3, h), torch.randn(3, h)
    step, scalars = torch.tensor([0.5, 2.0, 4.0]), torch.randn(3, 2)
    got = model.vulnerability_vector({"v1": v1, "v2": v2, "step_norm": step, "scalars": scalars})
    x = torch.cat([v1, v2, (v1 - v2) / step.view(-1, 1), scalars], 1)
    torch.testing.assert_close(got, x @ model.projection.weight.T + model.projection.bias)
    # the scalars are the features' logs where the quantity is a scale
    out = batch_features(model.a, toy_batch(model.a), config.attack, [])
    cols = attachable(out, config.vaa)["scalars"]
    np.testing.assert_allclose(cols[:, 0], out["F2"], rtol=1e-6)
    np.testing.assert_allclose(cols[:, 1], np.log(out["distance"] + 1e-12), rtol=1e-6)


def test_layernorm_normalises_each_part():
    config = run_config(normalize="layernorm")
    model = VAAModel(tiny_esim(), config.vaa, config.attack).eval()
    h = model.a.hidden_size
    v1, v2 = 100 * torch.randn(4, h), torch.randn(4, h)
    x = model.v3_inputs({"v1": v1, "v2": v2})
    for k, part in enumerate([v1, v2, v1 - v2]):
        torch.testing.assert_close(x[:, k * h : (k + 1) * h], torch.nn.functional.layer_norm(part, (h,)), rtol=1e-4, atol=1e-5)


def test_standardisation_uses_training_statistics_and_is_saved_with_b(tiny_config, tmp_path):
    from vaa.inference import load_model
    from vaa.stage_one import train
    from vaa.stage_two import train_vaa

    train(tiny_config)
    config = apply_overrides(
        tiny_config,
        {
            "vaa": {
                "model_a": tiny_config.output,
                "normalize": "standardize",
                "scalars": "F2,flip",
                "calibrate_flip_rate": 0.25,
                "w_lr": 0.01,
                "cache_dir": str(tmp_path / "vcache"),
            },
            "optim": {"max_epochs": 1},
            "output": str(tmp_path / "b"),
            "data": {"train": None, "valid": None},
        },
    )
    results = train_vaa(config)
    calibration = json.loads((tmp_path / "b" / "eps_calibration.json").read_text())
    assert calibration["flip_rate"] >= 0.25 and results["info"]["eps_calibration"] == calibration
    assert results["attack"]["eps"] == calibration["eps"] != config.attack.eps
    loaded = load_model(tmp_path / "b")
    assert loaded.module.attack_config.eps == calibration["eps"]  # inference attacks with the calibrated eps
    mean, std = loaded.module.v3_mean, loaded.module.v3_std
    assert mean.shape == (3 * loaded.module.a.hidden_size + 2,) and not torch.allclose(std, torch.ones_like(std))
    # the statistics are the training pairs': standardised training inputs have mean 0 and std 1 per column
    splits = load_splits(
        dataclasses.replace(config.data, train=tiny_config.data.train, valid=tiny_config.data.valid), label_map=loaded.label_map
    )
    examples = loaded.base.featurize_all(splits.train, loaded.label_map)
    feats = pair_features(loaded.base, examples, loaded.module.attack_config, [])
    x = loaded.module.v3_inputs({k: torch.as_tensor(v) for k, v in attachable(feats, loaded.module.vaa_config).items()})
    z = (x - mean) / std
    varying = x.std(0) > 1e-6
    torch.testing.assert_close(z.mean(0)[varying], torch.zeros(int(varying.sum())), atol=1e-3, rtol=0)
    torch.testing.assert_close(z.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-3, rtol=0)
    # a resumed/repeated run reuses the stored calibration and the feature cache
    again = train_vaa(apply_overrides(config, {"output": str(tmp_path / "b2")}))
    assert again["info"]["cache"]["train"]["hit"] is True


def test_w_lr_gives_new_parameters_their_own_learning_rate():
    from vaa.config import OptimConfig
    from vaa.training import make_optimizer

    model = VAAModel(tiny_esim(), VAAConfig(w_lr=0.05, normalize="layernorm"), AttackConfig())
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for optimizer in ("adam", "adamw"):
        opt = make_optimizer(params, OptimConfig(lr=1e-4, optimizer=optimizer), model.learning_rates())
        lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        assert lr_of[id(model.projection.weight)] == 0.05 and lr_of[id(model.part_norms[0].weight)] == 0.05
        assert {lr_of[id(p)] for n, p in params if not n.startswith(("projection", "part_norms"))} == {1e-4}
    plain = make_optimizer(params, OptimConfig(lr=1e-4), VAAModel(tiny_esim(), VAAConfig(), AttackConfig()).learning_rates())
    assert len(plain.param_groups) == 1


def test_saliency_is_relative_per_sentence_and_starts_as_a(toy_model):
    # the toy's gradient is the same on every word of a sentence: relative saliency 1 on words, 0 on padding
    out = batch_features(toy_model, toy_batch(toy_model), AttackConfig(), ["saliency"])
    batch = toy_batch(toy_model)
    for t, key in enumerate(("a_ids_mask", "b_ids_mask")):
        np.testing.assert_allclose(out[f"saliency{t}"], batch[key].float().numpy(), rtol=1e-5)
    model = VAAModel(tiny_esim(), VAAConfig(saliency=True, injection="add"), AttackConfig()).eval()
    batch = toy_batch(model.a)
    zero_v = torch.zeros(len(TOY_PAIRS), model.a.embedding_dim)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, vector=zero_v), model.a(batch))  # u = 0: B is A
        model.saliency_weight.fill_(1.0)
        assert not torch.allclose(model(batch, vector=zero_v), model.a(batch))


def test_v1_only_control_reads_v1_and_never_attacks(monkeypatch):
    import vaa.models.vaa as fw

    model = VAAModel(tiny_esim(), VAAConfig(vulnerability="v1-only"), AttackConfig()).eval()
    assert model.projection.in_features == model.a.hidden_size
    monkeypatch.setattr(fw, "forward_with_gradient", lambda *a, **k: pytest.fail("attack ran"))
    batch = toy_batch(model.a)
    with torch.no_grad():
        v1 = model.a.encode(model.a.embed(batch))
        torch.testing.assert_close(model(batch), model(batch, vector=model.projection(v1)))
        cached = dict(batch, v1=v1, v2=torch.randn_like(v1))  # V2 is ignored
        torch.testing.assert_close(model(cached), model(batch))


def test_permuted_control_keeps_v1_and_moves_the_rest():
    config = run_config(scalars="F2,flip", diff_scale="step")
    permuted = dataclasses.replace(config, vaa=dataclasses.replace(config.vaa, vulnerability="permuted"))
    model = VAAModel(tiny_esim(), config.vaa, config.attack).eval()
    _, raw, batch = cached_batch(model, config)
    _, _, batch_p = cached_batch(model, permuted)
    perm = permutation_for(len(TOY_PAIRS), permuted.seed + sum(map(ord, "valid")))
    assert sorted(perm.tolist()) == list(range(len(TOY_PAIRS))) and (perm != np.arange(len(TOY_PAIRS))).any()
    torch.testing.assert_close(batch_p["v1"], batch["v1"])
    torch.testing.assert_close(batch_p["v1"] - batch_p["v2"], (batch["v1"] - batch["v2"])[perm])
    torch.testing.assert_close(batch_p["scalars"], batch["scalars"][perm])
    torch.testing.assert_close(batch_p["step_norm"], batch["step_norm"][perm])


def test_each_control_variant_differs_from_vaa_only_where_it_should():
    from vaa.experiments import stage_one_config, stage_two_config

    a = stage_one_config("demo", 0, "runs/x")
    over = {"vaa": {"scalars": "F2", "normalize": "layernorm"}}
    vaa = stage_two_config("demo-vaa", a, "vaa", "runs/x", over)

    def diff(variant):
        other = stage_two_config("demo-vaa", a, variant, "runs/x", over)
        out = {}
        for section in ("attack", "vaa", "optim", "data", "model"):
            x, y = dataclasses.asdict(getattr(vaa, section)), dataclasses.asdict(getattr(other, section))
            out.update({f"{section}.{k}": y[k] for k in x if x[k] != y[k] and k != "model_a"})
        return out

    assert diff("v1only") == {"vaa.vulnerability": "v1-only"}
    assert diff("random_matched") == {"attack.direction": "random-matched"}
    assert diff("permuted") == {"vaa.vulnerability": "permuted"}
    assert diff("random") == {"attack.direction": "random"}


def test_cache_key_covers_every_new_setting(tmp_path):
    a = tiny_esim().eval()
    examples = a.featurize_all(TOY_PAIRS, TOY_LABELS)
    cache = FeatureCache(tmp_path)
    fp = state_fingerprint(a)
    cfg = AttackConfig()
    base_key = cache.key(fp, cfg, examples)
    assert cache.key(fp, cfg, examples, ()) == base_key  # the paper's setting keeps its old key
    keys = {
        base_key,
        cache.key(fp, cfg, examples, ["grad_norm"]),
        cache.key(fp, cfg, examples, ["saliency"]),
        cache.key(fp, dataclasses.replace(cfg, steps=3), examples),
        cache.key(fp, dataclasses.replace(cfg, target=1), examples),
        cache.key(fp, dataclasses.replace(cfg, step_ratio=1.0), examples),
        cache.key(fp, dataclasses.replace(cfg, direction="random-matched"), examples),
    }
    assert len(keys) == 7
    feats, info = cache.features(a, examples, cfg, ["flip_eps", "saliency"])
    again, info2 = cache.features(a, examples, cfg, ["saliency", "flip_eps"])
    assert not info["hit"] and info2["hit"]
    torch.testing.assert_close(again["flip_eps"], feats["flip_eps"])
    assert len(again["saliency0"]) == len(examples)


def test_calibrated_eps_reaches_the_target_flip_rate(toy_model):
    examples = toy_model.featurize_all(TOY_PAIRS * 4, TOY_LABELS)
    for target in (0.2, 0.5):
        found = calibrate_eps(toy_model, examples, AttackConfig(norm="l2", eps=0.01), target, batch_size=3)
        assert found["flip_rate"] >= target

        def rate(eps):
            v = pair_features(toy_model, examples, AttackConfig(norm="l2", eps=eps), [])
            return float(v["flip"].mean())

        assert rate(found["eps"]) == pytest.approx(found["flip_rate"])
        assert rate(found["eps"] * 0.999) < target  # the smallest such eps (to the bisection's precision)
    with pytest.raises(ValueError, match="flip rate"):
        calibrate_eps(toy_model, examples, AttackConfig(), 1.5)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"normalize": "zscore"}, "normalize"),
        ({"scalars": "F2,volume"}, "unknown vulnerability scalar"),
        ({"calibrate_flip_rate": 1.0}, "calibrate_flip_rate"),
        ({"w_lr": -1.0}, "w_lr"),
        ({"vulnerability": "permuted", "saliency": True}, "permuted"),
        ({"b_input": "adversarial", "scalars": "F1"}, "b_input normal"),
    ],
)
def test_bad_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        VAAModel(tiny_esim(), VAAConfig(**bad), AttackConfig())


def test_reproduce_runs_the_new_controls_with_a_feature_option(tmp_path):
    from vaa.cli import main

    preset, stage_two = write_tiny_presets(tmp_path)
    out = tmp_path / "repro"
    assert (
        main(
            [
                "reproduce",
                "--preset",
                str(preset),
                "--stage-two-preset",
                str(stage_two),
                "--seeds",
                "0",
                "--output",
                str(out),
                "--variants",
                "vaa",
                "v1only",
                "random_matched",
                "permuted",
                "--set-b",
                "vaa.scalars=F2",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "table3.json").read_text())
    assert {"baseline", "vaa", "v1only", "random_matched", "permuted"} <= set(summary["rows"])
    assert {"v1only", "random_matched", "permuted"} <= set(summary["vaa_vs_controls"])
    for variant, vulnerability, direction in (
        ("vaa", "attack", "fgsm"),
        ("v1only", "v1-only", "fgsm"),
        ("random_matched", "attack", "random-matched"),
        ("permuted", "permuted", "fgsm"),
    ):
        results = json.loads((out / "seed0" / variant / "results.json").read_text())
        assert results["vaa"]["scalars"] == "F2"  # every control carries the same feature option
        assert (results["vaa"]["vulnerability"], results["attack"]["direction"]) == (vulnerability, direction)
