"""A bidirectional one-layer LSTM with a hand-written input-gradient backward.

Why this exists: the FGSM attack needs dJ/dE through ESIM's BiLSTMs, with A's
weights frozen. On CPU, PyTorch's packed-sequence LSTM slices the packed input
once per time step and ``pad_packed_sequence`` copies once per step; the
backward of each of those clones or zero-fills a tensor the size of the whole
sequence, so the input-gradient backward is quadratic in the sentence length
(at batch 256 on QQP, over half of it was ``fill_`` and ``copy_``). Here
packing and unpacking are one gather and one scatter, the input-to-hidden
product is one matrix product over the real tokens, and the recurrence has a
custom backward that only computes what FGSM needs (the input gradient), each
step touching only the rows whose sentence is still running. Same parameters,
same function (forward and input gradient equal to PyTorch's up to float
rounding, tested); used only where it is needed, see
:func:`vaa.models.esim.run_lstm`. With it, A's forward + input-gradient
backward costs about 2x A's forward, instead of about 3x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fit_rows(state: torch.Tensor, rows: int) -> torch.Tensor:
    """The first ``rows`` rows of a state, padded with zero rows if it has
    fewer (a row whose sentence starts at this step starts from zero)."""
    have = state.size(0)
    if have >= rows:
        return state[:rows]
    return torch.cat([state, state.new_zeros(rows - have, state.size(1))])


class _Recurrence(torch.autograd.Function):
    """One direction of the LSTM over packed input gates, with a
    hand-written backward that returns the gradient of the input gates only
    (the recurrent weights are frozen here): a matrix product and a few
    element-wise operations per step, each touching only the running rows.

    ``gates_x`` is the packed [tokens, 4H] input-gate matrix in PackedSequence
    order (time-major, rows sorted longest first, ``batch_sizes[t]`` rows at
    step t); gates are ordered (i, f, o, g). ``reverse`` runs from the last
    step to the first, rows joining the state as their sentence starts.
    """

    @staticmethod
    def forward(ctx, gates_x: torch.Tensor, w_hh_t: torch.Tensor, batch_sizes: list[int], reverse: bool) -> torch.Tensor:  # type: ignore[override]
        hidden = w_hh_t.size(0)
        offsets = [0]
        for n in batch_sizes[:-1]:
            offsets.append(offsets[-1] + n)
        order = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
        out = gates_x.new_empty(gates_x.size(0), hidden)
        h = gates_x.new_zeros(0, hidden)
        c = gates_x.new_zeros(0, hidden)
        saved = []
        for t in order:
            n, start = batch_sizes[t], offsets[t]
            h_prev, c_prev = _fit_rows(h, n), _fit_rows(c, n)
            gates = torch.addmm(gates_x[start : start + n], h_prev, w_hh_t)
            sig = torch.sigmoid(gates[:, : 3 * hidden])
            g = torch.tanh(gates[:, 3 * hidden :])
            c = sig[:, hidden : 2 * hidden] * c_prev + sig[:, :hidden] * g
            tanh_c = torch.tanh(c)
            h = sig[:, 2 * hidden :] * tanh_c
            out[start : start + n] = h
            saved.append((t, n, sig, g, c_prev, tanh_c))
        ctx.saved = saved
        ctx.offsets = offsets
        ctx.w_hh_t = w_hh_t
        ctx.shape = gates_x.shape
        return out

    @staticmethod
    def backward(ctx, d_out: torch.Tensor):  # type: ignore[override]
        hidden = ctx.shape[1] // 4
        w_hh = ctx.w_hh_t.t()
        d_gates_x = d_out.new_empty(ctx.shape)
        dh = d_out.new_zeros(0, hidden)  # gradient reaching the state that the later-processed step read
        dc = d_out.new_zeros(0, hidden)
        for t, n, sig, g, c_prev, tanh_c in reversed(ctx.saved):
            start = ctx.offsets[t]
            i, f, o = sig[:, :hidden], sig[:, hidden : 2 * hidden], sig[:, 2 * hidden :]
            dh_t = d_out[start : start + n] + _fit_rows(dh, n)
            dc_t = _fit_rows(dc, n) + dh_t * o * (1 - tanh_c * tanh_c)
            d_sig = torch.cat([dc_t * g, dc_t * c_prev, dh_t * tanh_c], 1) * sig * (1 - sig)
            d_gates = torch.cat([d_sig, dc_t * i * (1 - g * g)], 1)
            d_gates_x[start : start + n] = d_gates
            dh = d_gates @ w_hh
            dc = dc_t * f
        ctx.saved = None
        return d_gates_x, None, None, None


def _reorder_gates(w: torch.Tensor) -> torch.Tensor:
    """PyTorch's gate order (i, f, g, o) -> (i, f, o, g): one sigmoid, one tanh."""
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, f, o, g])


def _direction(
    data: torch.Tensor, batch_sizes: list[int], reverse: bool, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """One direction over packed data; the input-to-hidden product is one
    matrix product over every real token."""
    gates_x = F.linear(data, _reorder_gates(w_ih), _reorder_gates(bias))
    return _Recurrence.apply(gates_x, _reorder_gates(w_hh).t().contiguous(), batch_sizes, reverse)


def packed_positions(mask: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Where each token of the packed layout sits in the flattened [B * L]
    padded batch, and the batch size of each step. Packed layout: time-major,
    rows sorted longest first (PyTorch's PackedSequence order)."""
    batch, steps = mask.shape
    lengths = mask.sum(1).clamp(min=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    batch_sizes = (lengths.unsqueeze(1) > torch.arange(steps, device=mask.device)).sum(0)
    batch_sizes = batch_sizes[batch_sizes > 0]
    time = torch.repeat_interleave(torch.arange(batch_sizes.numel(), device=mask.device), batch_sizes)
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes
    rank = torch.arange(time.numel(), device=mask.device) - starts[time]
    return order[rank] * steps + time, batch_sizes.tolist()


def unrolled_bilstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``lstm`` (one layer, bidirectional, batch first, with biases) over the
    real positions of ``x`` [B, L, D]; padding outputs are 0.

    Packing and unpacking are one index_select and one index_copy (each with
    a one-operation backward): PyTorch's pad_packed_sequence copies step by
    step, and the backward of each copy clones the whole output gradient."""
    if lstm.num_layers != 1 or not lstm.bidirectional or not lstm.batch_first or not lstm.bias or lstm.proj_size:
        raise ValueError("unrolled_bilstm supports one bidirectional batch-first layer with biases")
    if any(p.requires_grad for p in lstm.parameters()):
        raise ValueError("the unrolled LSTM computes no gradient for its input or recurrent weights; freeze them")
    batch, steps, _ = x.shape
    positions, batch_sizes = packed_positions(mask)
    data = x.reshape(batch * steps, -1).index_select(0, positions)
    forward = _direction(data, batch_sizes, False, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    backward = _direction(
        data,
        batch_sizes,
        True,
        lstm.weight_ih_l0_reverse,
        lstm.weight_hh_l0_reverse,
        lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse,
    )
    packed_out = torch.cat([forward, backward], 1)
    out = packed_out.new_zeros(batch * steps, packed_out.size(1)).index_copy(0, positions, packed_out)
    return out.view(batch, steps, -1)
