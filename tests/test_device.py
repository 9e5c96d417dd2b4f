"""Device and precision plumbing.

The device tests run on ``VAA_TEST_DEVICE`` (default cpu; benchmarks/gpu_check.py
sets it to cuda on a GPU machine). The key check: every stage runs while
``torch.set_default_device('meta')`` is active, so a tensor that library code
creates without ``device=`` lands on the meta device and the next operation
that mixes it with the model's tensors fails."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, write_tiny_bert
from vaa.attack import attack, forward_with_gradient, perturbation
from vaa.config import AttackConfig, OptimConfig, VAAConfig, apply_overrides
from vaa.data.batching import collate
from vaa.device import autocast, check_precision, resolve_device, to_device
from vaa.features import pair_features
from vaa.models import build_model
from vaa.models.esim import lstm_path
from vaa.models.vaa import VAAModel
from vaa.prediction import predict_examples
from vaa.runs import RunConfig
from vaa.stage_one import train
from vaa.training import Trainer, TrainerSettings
from vaa.vulnerability import measure

DEVICE = resolve_device(os.environ.get("VAA_TEST_DEVICE", "cpu"))


def test_device_settings_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device.*--device cpu"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision"):
        check_precision("fp8", torch.device("cpu"))


@pytest.fixture(params=["esim", "bert"])
def model_a(request):
    torch.manual_seed(0)
    if request.param == "esim":
        model = build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=6, dropout=0.0)
    else:
        model = request.getfixturevalue("tiny_bert")
    return model.to(DEVICE)


@pytest.fixture
def tiny_bert(tmp_path_factory):
    from test_hf import HFPairModel

    folder = write_tiny_bert(tmp_path_factory.mktemp("bert"), hidden_size=8, intermediate_size=16, max_positions=32, seed=None)
    return HFPairModel.build(TOY_PAIRS, TOY_LABELS, path=str(folder), max_length=16)


class default_device_meta:
    """Make the meta device the default for tensors created without ``device=``."""

    def __enter__(self):
        torch.set_default_device("meta")

    def __exit__(self, *exc):
        torch.set_default_device(None)


def _trainer(model, examples, tmp_path, name):
    return Trainer(
        model,
        examples,
        examples,
        TrainerSettings(
            OptimConfig(batch_size=3, eval_batch_size=2), tmp_path / name, lambda: {}, progress=False, runtime=_runtime()
        ),
    )


def _runtime():
    from vaa.runtime import Runtime

    return Runtime(DEVICE)


def test_no_library_tensor_is_created_on_a_default_device(model_a, tmp_path):
    examples = model_a.featurize_all(TOY_PAIRS, TOY_LABELS)
    indices = [0, 1, 2]
    # the optimisers' state is created on the first step (inside torch); take it outside the meta region
    stage_one = _trainer(model_a, examples, tmp_path, "a")
    stage_one.train_step(indices)
    stage_two_models = {
        name: VAAModel(
            copy.deepcopy(model_a),
            VAAConfig(injection=injection, vulnerability=source),
            AttackConfig(direction=direction, relative=True),
        )
        for name, injection, source, direction in [
            ("token", "token", "attack", "fgsm"),
            ("classifier", "classifier", "attack", "random"),
            ("add", "add", "attack", "fgsm"),
            ("zeros", "token", "zeros", "fgsm"),
        ]
    }
    # main's feature options, computed on the fly in every forward pass (no cache)
    stage_two_models["features"] = VAAModel(
        copy.deepcopy(model_a),
        VAAConfig(diff_scale="step", scalars="log_distance,F1,flip", saliency=True, normalize="layernorm"),
        AttackConfig(),
    )
    stage_two_models["permuted"] = VAAModel(copy.deepcopy(model_a), VAAConfig(vulnerability="permuted"), AttackConfig())
    stage_two_models["v1-only"] = VAAModel(copy.deepcopy(model_a), VAAConfig(vulnerability="v1-only"), AttackConfig())
    stage_two = {name: _trainer(m, examples, tmp_path, name) for name, m in stage_two_models.items()}
    for t in stage_two.values():
        t.train_step(indices)
    batch = to_device(collate(examples), DEVICE)
    with default_device_meta():
        loss = stage_one.train_step(indices)
        for t in stage_two.values():
            t.train_step(indices)
        for cfg in (
            AttackConfig(),
            AttackConfig(norm="linf", relative=True),
            AttackConfig(direction="random", scope="pair", relative=True),
        ):
            _, _, logits_adv, hidden_adv = attack(model_a, batch, cfg)
            assert logits_adv.device.type == DEVICE.type and hidden_adv.device.type == DEVICE.type
        preds = predict_examples(model_a, examples, 2, runtime=_runtime())
        vaa_preds = predict_examples(stage_two_models["token"], examples, 2, runtime=_runtime())
        v = measure(model_a, examples, AttackConfig(), batch_size=2, keep_vectors=True)
        targeted = pair_features(model_a, examples, AttackConfig(target=1, steps=2), ["saliency", "scalars"], batch_size=2)
    assert loss == loss  # a number, not NaN from a meta tensor
    assert preds.probs.shape == (5, 2) and vaa_preds.probs.shape == (5, 2)
    assert v.v1.shape[0] == 5 and (v.distance >= 0).all()
    assert targeted["v1"].shape[0] == 5


def test_the_check_catches_a_tensor_created_without_device(model_a):
    """The meta trick really fails when a factory call lacks ``device=``."""
    examples = model_a.featurize_all(TOY_PAIRS, TOY_LABELS)
    batch = to_device(collate(examples), DEVICE)
    base = forward_with_gradient(model_a, batch)
    with default_device_meta(), pytest.raises((RuntimeError, NotImplementedError)):
        base.grads[0] * torch.ones(base.grads[0].shape[-1])


def test_fgsm_step_is_fp32_inside_a_bf16_autocast_region():
    """The attack ignores an enclosing bf16 autocast: the step equals the fp32
    step to 1e-5 relative (bf16 matrix products would differ by ~1e-2)."""
    torch.manual_seed(0)
    model = build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=16, dropout=0.0)
    batch = collate(model.featurize_all(TOY_PAIRS, TOY_LABELS))
    cfg = AttackConfig(norm="l2", eps=0.02)
    fp32 = perturbation(forward_with_gradient(model, batch), cfg)
    with autocast(torch.device("cpu"), "bf16"):
        bf16 = perturbation(forward_with_gradient(model, batch), cfg)
        vaa = VAAModel(model, VAAConfig(), cfg)
        _, _, steps = vaa.a_features(batch, need_adversarial=True)
    for a, b, c in zip(fp32, bf16, steps):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-7)


def test_precision_setting_reaches_the_forward_pass():
    torch.manual_seed(0)
    model = build_model("esim", TOY_PAIRS, TOY_LABELS, hidden=6, dropout=0.0)
    examples = model.featurize_all(TOY_PAIRS, TOY_LABELS)
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    from vaa.runtime import Runtime

    predict_examples(model, examples, 8, runtime=Runtime(torch.device("cpu"), "bf16"))
    predict_examples(model, examples, 8, runtime=Runtime(torch.device("cpu"), "fp32"))
    assert seen == [torch.bfloat16, torch.float32]


def test_attack_lstm_dispatch():
    """The unrolled LSTM is the CPU path of the attack; elsewhere PyTorch's
    (cuDNN on CUDA); training always uses PyTorch's."""
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True).requires_grad_(False)
    x_cpu = torch.zeros(2, 5, 3, requires_grad=True)
    x_gpu = torch.zeros(2, 5, 3, device="meta", requires_grad=True)
    assert lstm_path(lstm, x_cpu) == "unrolled"
    assert lstm_path(lstm, x_gpu) == "cudnn-input-gradient"
    with torch.no_grad():
        assert lstm_path(lstm, x_cpu) == "pytorch"
    lstm.requires_grad_(True)
    assert lstm_path(lstm, x_cpu) == "pytorch"


def test_run_records_where_it_ran_and_resumes_on_another_precision(tiny_config):
    config = apply_overrides(tiny_config, {"device": "cpu", "threads": 1, "optim": {"max_epochs": 1}})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        results = train(config)
    finally:
        torch.set_num_threads(before)
    saved = json.loads((Path(config.output) / "config.json").read_text())
    for record in (saved["runtime"], results["runtime"]):
        assert record["device"] == "cpu" and record["precision"] == "fp32" and record["world_size"] == 1
        assert record["torch"] == torch.__version__ and "cuda" in record
        # what can change float sums between machines: the CPU, its kernel dispatch, the thread count
        assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and record["cpu"]
        assert record["threads"] == 1  # the run's own setting, in config.json too
    assert RunConfig.load(Path(config.output) / "config.json").device == "cpu"
    # device and precision do not make a resume refuse
    again = train(apply_overrides(config, {"precision": "bf16"}))
    assert again["best_epoch"] == results["best_epoch"]
