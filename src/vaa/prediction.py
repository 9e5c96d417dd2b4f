"""The one prediction loop: a model over a list of examples, in eval mode,
batched, in the runtime's precision, order restored.

Everything that scores examples uses it -- the trainer's validation, a run's
final scores, ``LoadedModel.predict`` -- so validation accuracy, the saved
predictions and ``vaa predict`` can never disagree on how a model is run. It
sits below the trainer (which validates with it) and below ``inference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.batching import BatchIterator, Example
from .device import autocast, model_device, to_device, to_numpy
from .guards import NonFiniteError, check_finite, is_finite
from .progress import bar as progress_bar
from .runtime import LOCAL, Runtime


@dataclass
class Predictions:
    """Model outputs on a list of examples, in the examples' order."""

    probs: np.ndarray  # [N, num_labels]
    labels: np.ndarray  # [N], -1 where unknown
    loss: float | None  # mean cross-entropy over labelled examples

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def accuracy(self) -> float | None:
        known = self.labels >= 0
        return float((self.predicted[known] == self.labels[known]).mean()) if known.any() else None


def predict_examples(
    model: nn.Module,
    examples: Sequence[Example],
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "predict",
    runtime: Runtime = LOCAL,
) -> Predictions:
    """Run ``model`` in eval mode over ``examples`` and restore their order.

    Batches go to the model's device and run under the runtime's precision;
    probabilities come back to the CPU once per batch. Under DDP each rank
    scores every world-th batch of the single-process order and every rank
    gets all of them back, so the result (accuracy, probabilities, loss) is
    exactly a single process's. Non-finite logits raise ``NonFiniteError``."""
    if not examples:
        raise ValueError("no examples to predict")
    was_training = model.training
    model.eval()
    error: str | None = None
    pieces: list[Piece] = []
    try:
        pieces = _score_shard(model, examples, batch_size, progress, desc, runtime)
    except NonFiniteError as exc:  # e.g. an on-the-fly attack's NaN: raised on every rank alike, below
        if not runtime.distributed:
            raise
        error = str(exc)
    finally:
        model.train(was_training)
    error = runtime.first_error(error)
    if error is not None:
        raise NonFiniteError(error)
    gathered = sorted((p for part in runtime.all_gather(pieces) for p in part), key=lambda p: p[0])
    probs: list[np.ndarray] = [None] * len(examples)  # type: ignore[list-item]
    total, count = 0.0, 0
    for _, indices, p, batch_total, batch_count, finite in gathered:  # summed in batch order, as one process would
        check_finite(0.0 if finite else float("nan"), f"{desc} output (logits)", "the model's weights or inputs hold NaN or inf")
        for row, i in zip(p, indices):
            probs[i] = row
        total += batch_total
        count += batch_count
    return Predictions(np.stack(probs), np.asarray([e["label"] for e in examples]), total / count if count else None)


# (batch number, indices, probs, loss sum, labelled, logits finite)
Piece = tuple[int, list[int], np.ndarray, float, int, bool]


def _score_shard(
    model: nn.Module, examples: Sequence[Example], batch_size: int, progress: bool, desc: str, runtime: Runtime
) -> list[Piece]:
    """This rank's share of the batches of the single-process order, scored
    (the caller sets eval mode)."""
    device = model_device(model)
    iterator = BatchIterator(examples, batch_size, shuffle=False)
    shard = (runtime.rank, runtime.world_size)
    pieces: list[Piece] = []
    with torch.no_grad():
        for k, batch in enumerate(
            progress_bar(iterator.epoch(shard=shard), progress and runtime.is_main, total=iterator.shard_size(shard), desc=desc)
        ):
            batch = to_device(batch, device)
            with autocast(device, runtime.precision):
                logits = model(batch)
            logits = logits.float()
            labels = batch["label"]
            known = labels >= 0
            total, count = 0.0, 0
            if known.any():
                total = float(F.cross_entropy(logits[known], labels[known], reduction="sum"))
                count = int(known.sum())
            pieces.append(
                (
                    k * runtime.world_size + runtime.rank,
                    batch["index"].tolist(),
                    to_numpy(torch.softmax(logits, -1)),
                    total,
                    count,
                    is_finite(logits),
                )
            )
    return pieces


__all__ = ["Predictions", "predict_examples"]
