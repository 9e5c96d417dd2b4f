"""The VAA model's construction: sizes checked up front, A and B named
model_a/model_b, and the checkpoint's tensor names (a./b.) unchanged."""

from __future__ import annotations

import pytest
import torch

from conftest import TOY_LABELS, TOY_PAIRS, tiny_esim
from vaa.config import AttackConfig, VAAConfig
from vaa.data.batching import collate
from vaa.models.vaa import DimensionError, VAAModel


@pytest.mark.parametrize(
    "attribute, declared, names",
    [
        ("hidden_size", 7, ("hidden size (hidden_size)", "final layer")),
        ("embedding_dim", 5, ("embedding size (embedding_dim)", "word embeddings")),
    ],
)
def test_a_model_whose_declared_size_disagrees_with_its_layers_is_refused_at_construction(attribute, declared, names):
    a = tiny_esim()
    actual = getattr(a, attribute)
    assert actual != declared
    setattr(a, attribute, declared)
    with pytest.raises(DimensionError) as err:
        VAAModel(a, VAAConfig(), AttackConfig())
    message = str(err.value)
    assert "\n" not in message
    assert f"but got {declared} and {actual} instead" in message
    assert all(name in message for name in names)


def test_model_a_and_model_b_are_the_submodules_saved_under_a_and_b():
    model = VAAModel(tiny_esim(), VAAConfig(injection="classifier"), AttackConfig())
    assert model.model_a is model.get_submodule("a") and model.model_b is model.get_submodule("b")
    assert model.model_a is not model.model_b
    prefixes = {key.split(".")[0] for key in model.state_dict()}
    assert prefixes == {"a", "b", "projection", "b_head"}  # the tensor names of every VAA checkpoint so far


def test_a_state_dict_in_the_checkpoint_key_format_loads_into_a_new_model():
    torch.manual_seed(0)
    first = VAAModel(tiny_esim(), VAAConfig(), AttackConfig()).eval()
    with torch.no_grad():
        for p in first.model_b.parameters():
            p.add_(0.01)  # B moved away from A, as after training
    saved = {k: v.clone() for k, v in first.state_dict().items()}
    assert any(k.startswith("a.") for k in saved) and any(k.startswith("b.") for k in saved)
    second = VAAModel(tiny_esim(), VAAConfig(), AttackConfig()).eval()
    second.load_state_dict(saved, strict=True)
    batch = collate(first.model_a.featurize_all(TOY_PAIRS, TOY_LABELS))
    with torch.no_grad():
        torch.testing.assert_close(second(batch), first(batch))
