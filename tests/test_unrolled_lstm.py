"""The unrolled BiLSTM used for the attack's input gradient must compute
exactly what PyTorch's packed LSTM computes, forward and backward."""

import pytest
import torch
from torch import nn

from vaa.models import esim
from vaa.models.unrolled_lstm import packed_positions, unrolled_bilstm


def packed_reference(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PyTorch's own packed-sequence LSTM (what ESIM uses everywhere else)."""
    lengths = mask.sum(1).clamp(min=1)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]


def setup(lengths=(5, 1, 3, 5, 2, 4), dim=6, hidden=7, seed=0):
    torch.manual_seed(seed)
    lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
    lstm.requires_grad_(False)
    steps = max(lengths)
    mask = torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    x = torch.randn(len(lengths), steps, dim)
    return lstm, x, mask


def test_packed_positions_follow_pytorch_packing():
    _, x, mask = setup()
    positions, batch_sizes = packed_positions(mask)
    packed = nn.utils.rnn.pack_padded_sequence(x, mask.sum(1), batch_first=True, enforce_sorted=False)
    assert batch_sizes == packed.batch_sizes.tolist()
    assert torch.equal(x.reshape(-1, x.size(-1))[positions], packed.data)


def test_outputs_equal_pytorch_lstm_and_padding_is_zero():
    lstm, x, mask = setup()
    ours = unrolled_bilstm(lstm, x, mask)
    torch.testing.assert_close(ours, packed_reference(lstm, x, mask), rtol=1e-5, atol=1e-6)
    assert (ours[~mask] == 0).all()


def test_input_gradient_equals_pytorch_lstm():
    lstm, x, mask = setup(lengths=(4, 4, 1, 2, 3))
    upstream = torch.randn(x.shape[0], x.shape[1], 2 * lstm.hidden_size)
    grads = []
    for run in (unrolled_bilstm, packed_reference):
        leaf = x.clone().requires_grad_(True)
        (run(lstm, leaf, mask) * upstream).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert (grads[0][~mask] == 0).all()  # padding gets no gradient
    assert grads[0][mask].abs().sum() > 0


def test_trainable_weights_are_refused():
    lstm, x, mask = setup()
    lstm.requires_grad_(True)
    with pytest.raises(ValueError, match="recurrent weights"):
        unrolled_bilstm(lstm, x, mask)


def test_esim_takes_the_unrolled_path_only_for_input_gradients_of_frozen_weights(monkeypatch):
    lstm, x, mask = setup()
    calls = []
    monkeypatch.setattr(esim, "unrolled_bilstm", lambda *args: calls.append(1) or unrolled_bilstm(*args))
    esim.run_lstm(lstm, x.clone().requires_grad_(True), mask)  # the attack's case
    assert len(calls) == 1
    esim.run_lstm(lstm, x, mask)  # no gradient wanted
    with torch.no_grad():
        esim.run_lstm(lstm, x.clone().requires_grad_(True), mask)
    lstm.requires_grad_(True)
    esim.run_lstm(lstm, x.clone().requires_grad_(True), mask)  # training
    assert len(calls) == 1
