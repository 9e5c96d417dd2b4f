"""Optional TensorBoard curves of a training run (``tensorboard: true``, ``--tensorboard``).

Written into the run folder's ``tensorboard/`` by rank 0, beside the
always-on JSON lines (``loss.jsonl``, ``metrics.jsonl``), which stay the
record that reports and plots are made from; TensorBoard is for watching a
run. Every scalar is on one step axis, the global training step (the
``step`` of ``loss.jsonl``: stage two continues stage one's count; per-epoch
scalars at the epoch's last step), so that a resumed run drops what the
interrupted one wrote after its last checkpoint (``purge_step``) instead of
drawing it twice:

    train/loss, train/lr             every ``log_every`` batches (mean loss of the window)
    valid/accuracy, valid/loss       per epoch
    epoch/train_loss, epoch/lr       per epoch
    V/norm_mean, V/norm_std          stage two, per epoch, over the validation pairs:
    V/v1_minus_v2_norm_mean, ..._std   ||V|| (V = W V3 + b, as B receives it) and ||V1 - V2||

The ``tensorboard`` package is optional: it is imported only when asked for,
and a missing one is a one-line error before anything is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .run_folder import RunError

FOLDER = "tensorboard"
INSTALL = "pip install tensorboard==2.21.0 (or the vaa[tensorboard] extra)"


def require_tensorboard() -> None:
    """Fail in one line when ``tensorboard`` is asked for but not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise RunError(
            f"tensorboard: true (--tensorboard) needs the tensorboard package ({exc}); {INSTALL}, or leave the option off"
        ) from None


class TensorBoardLog:
    """The scalars of one stage of one run. ``epoch_extras`` returns more
    per-epoch scalars (stage two's V statistics); it is called only here, so
    nothing is computed for them when TensorBoard is off."""

    def __init__(self, run_dir: str | Path, step_offset: int = 0, epoch_extras: Callable[[], dict[str, float]] | None = None):
        self.folder = Path(run_dir) / FOLDER
        self.step_offset = step_offset
        self.epoch_extras = epoch_extras
        self.writer: Any = None

    def start(self, stage_step: int) -> None:
        """Open the writer where training (re)starts, at the step of the
        checkpoint it resumes from: what an interrupted call wrote after that
        step is dropped (what it wrote up to it is kept: the checkpoint came
        after it)."""
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        self.writer = SummaryWriter(str(self.folder), purge_step=self.step_offset + stage_step + 1)

    def loss(self, stage_step: int, loss: float, lr: float) -> None:
        step = self.step_offset + stage_step
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, stage_step: int, record: dict[str, Any]) -> None:
        step = self.step_offset + stage_step
        scalars = {
            "valid/accuracy": record["valid_accuracy"],
            "valid/loss": record.get("valid_loss"),
            "epoch/train_loss": record["train_loss"],
            "epoch/lr": record["lr"],
        }
        if self.epoch_extras is not None:
            scalars.update(self.epoch_extras())
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()  # an epoch's curves are on disk before the next epoch (a kill loses at most one epoch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def v_statistics(model: Any, examples: Sequence[Any], batch_size: int) -> dict[str, float]:
    """Mean and std over ``examples`` of ||V|| (the projected vector B
    receives) and of ||V1 - V2|| (the attack's block of V3), with the
    model's current W. Empty for the zeros control (V is 0 by construction)."""
    from .data.batching import BatchIterator
    from .device import to_device

    if model.vaa_config.vulnerability == "zeros" or not examples:
        return {}
    was_training = model.training
    model.eval()
    device = model.projection.weight.device
    v_norms, diff_norms = [], []
    for batch in BatchIterator(examples, batch_size, shuffle=False).epoch():
        batch = to_device(batch, device)
        feats, _ = model.features(batch)
        with torch.no_grad():
            v_norms.append(model.vulnerability_vector(feats).float().norm(dim=-1).cpu().numpy())
            diff_norms.append((feats["v1"] - feats["v2"]).float().norm(dim=-1).cpu().numpy())
    model.train(was_training)
    v, d = np.concatenate(v_norms), np.concatenate(diff_norms)
    return {
        "V/norm_mean": float(v.mean()),
        "V/norm_std": float(v.std()),
        "V/v1_minus_v2_norm_mean": float(d.mean()),
        "V/v1_minus_v2_norm_std": float(d.std()),
    }


__all__ = ["FOLDER", "TensorBoardLog", "require_tensorboard", "v_statistics"]
