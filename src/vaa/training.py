"""One trainer for both stages.

It trains any ``nn.Module`` whose forward maps a batch to logits (model A in
stage one, the VAA model in stage two): seeded, with a progress bar, validation
accuracy every epoch, early stopping, the learning-rate schedule, the training
loss every ``log_every`` batches (the paper's Fig. 5), and best/last checkpoints
written atomically. A run interrupted at any point resumes from its last
checkpoint and replays the same batches, so the result does not depend on the
interruption.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .adversarial import AdversarialLoss, adversarial_loss
from .checkpoint import CheckpointInfo, load_training_state, load_weights, rng_state, save_checkpoint, set_rng_state
from .config import OptimConfig, RunConfig, TrainConfig
from .data.batching import Batch, BatchIterator, Example, collate, split_batch
from .device import autocast, grad_scaler, to_device
from .files import atomic_write_text, read_jsonl  # noqa: F401  (read_jsonl: re-exported)
from .guards import NonFiniteError, check_finite, is_finite
from .models.base import Embedded
from .prediction import Predictions, predict_examples  # noqa: F401  (Predictions: re-exported; the loop lives in prediction.py)
from .progress import bar as progress_bar
from .runtime import LOCAL, Runtime

logger = logging.getLogger(__name__)


_NON_FINITE_HINT = "lower optim.lr (or attack.eps in stage two) or check the data"


def set_seed(seed: int) -> None:
    """Seed every random source a run touches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(
    params: Sequence[tuple[str, nn.Parameter]], cfg: OptimConfig, learning_rates: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """Adam (the paper's ESIM) or AdamW (BERT fine-tuning; no decay on biases
    and norms, as usual). ``learning_rates`` gives some parameters (by name)
    their own lr, e.g. stage two's W, which at BERT's 2e-5 barely moves."""
    special = learning_rates or {}

    def groups(extra: dict[str, Any], chosen: Sequence[tuple[str, nn.Parameter]]) -> list[dict[str, Any]]:
        plain = [p for n, p in chosen if n not in special]
        out = [{"params": plain, **extra}] if plain or not special else []  # the usual groups, as before
        for lr in sorted(set(special.values())):
            own = [p for n, p in chosen if special.get(n) == lr]
            if own:
                out.append({"params": own, "lr": lr, **extra})
        return out

    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups({}, params), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        decay = [(n, p) for n, p in params if p.ndim >= 2]
        no_decay = [(n, p) for n, p in params if p.ndim < 2]
        return torch.optim.AdamW(
            groups({"weight_decay": cfg.weight_decay}, decay) + groups({"weight_decay": 0.0}, no_decay), lr=cfg.lr
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam | adamw)")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int) -> Any:
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "linear":
        total = max(1, cfg.max_epochs * steps_per_epoch)
        warmup = int(cfg.warmup_ratio * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {cfg.scheduler!r} (plateau | linear | none)")


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _keep_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop records written after the checkpoint we resume from."""
    records = [r for r in read_jsonl(path) if keep(r)]
    atomic_write_text("".join(json.dumps(r) + "\n" for r in records), path)


@dataclass
class TrainState:
    """Where training is; saved in ``checkpoints/last/`` for resuming."""

    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of ``epoch`` already done
    global_step: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    epoch_loss_sum: float = 0.0
    epoch_seen: int = 0
    finished: bool = False
    stop_reason: str = ""
    loss_window: list[float] = field(default_factory=list)  # losses since the last loss.jsonl record
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainerSettings:
    """How a :class:`Trainer` runs, besides the model and the data.
    ``TrainerSettings.for_run`` fills it from a run's configuration."""

    optim: OptimConfig
    run_dir: str | Path
    describe: Callable[[], CheckpointInfo]  # what a checkpoint says besides the weights
    seed: int = 0
    log_every: int = 20  # batches between loss.jsonl records
    checkpoint_every: int = 0  # batches between mid-epoch checkpoints (0: end of epoch only)
    progress: bool = True
    step_offset: int = 0  # where this stage's loss curve starts in Fig. 5
    stage: str = "stage1"
    runtime: Runtime = LOCAL
    learning_rates: dict[str, float] | None = None  # per-parameter learning rates (stage two's W)
    adversarial: TrainConfig | None = None  # adversarial training (stage one); None or "none": plain cross-entropy

    @classmethod
    def for_run(
        cls, config: RunConfig, run_dir: str | Path, describe: Callable[[], CheckpointInfo], **more: Any
    ) -> TrainerSettings:
        """The settings a run's configuration gives (optimiser, seed, logging,
        checkpoints, progress); ``more`` sets the rest (stage, runtime, ...)."""
        return cls(
            optim=config.optim,
            run_dir=run_dir,
            describe=describe,
            seed=config.seed,
            log_every=config.log_every,
            checkpoint_every=config.checkpoint_every,
            progress=config.progress,
            **more,
        )


class Trainer:
    """Trains ``model`` on labelled examples; see the module docstring.

    ``describe`` returns what the checkpoint says besides the weights (a
    ``CheckpointInfo``); the trainer adds the weights and, for ``last/``, the
    optimiser, scheduler, RNG and loop state.

    ``runtime`` says where: the model and every batch go to its device, the
    forward pass runs under its precision (fp16 with a gradient scaler), and
    under DDP (``world_size`` > 1) the model is wrapped in
    DistributedDataParallel. Each global batch (one length bucket of
    ``batch_size`` pairs, the same batches in the same order for any number
    of processes) is split across the ranks; each rank's loss is its summed
    cross-entropy times world/global batch, so DDP's gradient average is the
    single-process mean over the global batch. Validation is sharded and
    gathered; only rank 0 writes logs and checkpoints; ``last.pt`` holds
    every rank's RNG state.
    """

    def __init__(self, model: nn.Module, train: Sequence[Example], valid: Sequence[Example], settings: TrainerSettings):
        if not train:
            raise ValueError("no training examples")
        if any(e["label"] < 0 for e in train):  # type: ignore[operator]
            raise ValueError("every training pair needs a label")
        runtime = settings.runtime
        optim = settings.optim
        self.settings = settings
        self.runtime = runtime
        self.device = runtime.device
        self.model = model.to(self.device)
        self.train_examples = train
        self.valid_examples = valid
        self.cfg = optim
        self.run_dir = Path(settings.run_dir)
        self.describe = settings.describe
        self.seed = settings.seed
        self.log_every = max(1, settings.log_every)
        self.checkpoint_every = settings.checkpoint_every
        self.progress = settings.progress and runtime.is_main
        self.step_offset = settings.step_offset  # where this stage's loss curve starts in Fig. 5
        self.stage = settings.stage
        self.adversary = adversarial_loss(settings.adversarial)
        if self.adversary is not None:
            AdversarialLoss.check_model(model)
        self.batches = BatchIterator(train, optim.batch_size, shuffle=True, seed=settings.seed)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.trainable = [p for _, p in params]
        self.forward_model: nn.Module = model
        if runtime.distributed:
            # find_unused_parameters: stage two's classifier injection leaves B's own head unused,
            # mean pooling leaves BERT's pooler unused
            self.forward_model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None, find_unused_parameters=True
            )
        self.optimizer = make_optimizer(params, optim, settings.learning_rates)
        self.scheduler = make_scheduler(self.optimizer, optim, self.batches.num_batches())
        self.scaler = grad_scaler(self.device, runtime.precision)
        self.state = TrainState()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.loss_log = self.run_dir / "loss.jsonl"
        self.metrics_log = self.run_dir / "metrics.jsonl"
        # optional TensorBoard curves (vaa.tensorboard_log.TensorBoardLog), set by the stage on rank 0
        self.board: Any = None

    # -- checkpoints ------------------------------------------------------
    def _training_state(self) -> dict[str, Any]:
        """Loop, optimiser, scheduler, gradient-scaler and RNG state (every
        rank's, in rank order): tensors and plain containers only, so resuming
        reads it with ``weights_only=True``. Every rank takes part (the RNG
        states are gathered)."""
        rng = self.runtime.all_gather(rng_state(self.device))
        return {
            "state": json.loads(json.dumps(self.state.__dict__)),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng[0],
            "rng_per_rank": rng,
            "world_size": self.runtime.world_size,
        }

    def save_last(self) -> None:
        training_state = self._training_state()  # collective: every rank
        if self.runtime.is_main:
            save_checkpoint(self.ckpt_dir / "last", self.model, self.describe(), training_state)
        self.runtime.barrier()

    def save_best(self) -> None:
        if self.runtime.is_main:
            save_checkpoint(self.ckpt_dir / "best", self.model, self.describe())

    def try_resume(self) -> bool:
        """Continue from ``checkpoints/last/`` if there is one (every rank
        reads the same folder and takes its own RNG state from it; with a
        different number of processes, every rank takes rank 0's)."""
        folder = self.ckpt_dir / "last"
        if not all(self.runtime.all_gather(folder.exists())):
            return False
        training = load_training_state(folder)
        info = self.describe()
        fields = dict(info.base.shape_fields())
        if self.model is not info.base and hasattr(self.model, "shape_fields"):
            fields.update(self.model.shape_fields())  # the VAA model: W and B's head
        load_weights(self.model, folder, fields)
        self.optimizer.load_state_dict(training["optimizer"])
        if self.scheduler is not None and training["scheduler"] is not None:
            self.scheduler.load_state_dict(training["scheduler"])
        if training.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(training["scaler"])
        self.state = TrainState(**training["state"])
        per_rank = training.get("rng_per_rank")
        same_world = per_rank is not None and training.get("world_size") == self.runtime.world_size
        set_rng_state(per_rank[self.runtime.rank] if same_world else training["rng"], self.device)
        step, epoch = self.state.global_step, self.state.epoch
        if self.runtime.is_main:
            _keep_jsonl(self.loss_log, lambda r: r["stage"] != self.stage or r["stage_step"] <= step)
            _keep_jsonl(self.metrics_log, lambda r: r["stage"] != self.stage or r["epoch"] < epoch)
        return True

    # -- the loop ---------------------------------------------------------
    def _global_mean_loss(self, logits: torch.Tensor, labels: torch.Tensor, weight: float, global_size: int) -> torch.Tensor:
        """Mean cross-entropy over the global batch. Under DDP each rank sums
        its part, scaled so that DDP's averaging of the gradients gives the
        single-process gradient; ``weight`` 0 for a rank's stand-in pair."""
        if self.runtime.distributed:
            return F.cross_entropy(logits, labels, reduction="sum") * weight * (self.runtime.world_size / global_size)
        return F.cross_entropy(logits, labels)

    def _stop_together(self, error: str | None) -> None:
        """Raise NonFiniteError(error) on every rank when any rank has one:
        one rank's NaN stops them all (else the others would wait in
        backward's all-reduce)."""
        rt = self.runtime
        if rt.distributed:
            if rt.sum(0.0 if error is None else 1.0) > 0.0:
                raise NonFiniteError(rt.first_error(error))
        elif error is not None:
            raise NonFiniteError(error)

    def _adversarial_backward(
        self, batch: Batch, emb: Embedded, logits: torch.Tensor, weight: float, global_size: int
    ) -> torch.Tensor:
        """Adversarial training's second half: delta from the clean pass's
        gradient of E, then the backward pass of weight * CE(A(E + delta), y),
        which adds to the clean gradients (and, under DDP, exchanges the sum)."""
        assert self.adversary is not None
        delta = self.adversary.perturbation(self.model, batch, emb, logits)
        with autocast(self.device, self.runtime.precision):
            logits_adv = self.adversary.perturbed_forward(self.model, batch, delta, self.forward_model)
        adversarial = self.adversary.weight * self._global_mean_loss(logits_adv.float(), batch["label"], weight, global_size)
        finite = is_finite(adversarial.detach())
        self._stop_together(
            None
            if finite
            else f"non-finite adversarial training loss ({float(adversarial.detach())}); lower train.adversarial_eps or optim.lr"
        )
        self.scaler.scale(adversarial).backward()
        return adversarial.detach()

    def train_step(self, indices: Sequence[int]) -> float:
        """One optimiser step on one global batch; returns its mean loss. A
        non-finite loss or gradient norm raises before the step (on every
        rank alike), so the weights and checkpoints never hold NaN. Under
        fp16 the gradient scaler owns overflowing gradients: it skips that
        step and lowers its scale, as designed."""
        rt = self.runtime
        part = split_batch(indices, rt.rank, rt.world_size) if rt.distributed else list(indices)
        weight = 1.0
        if not part:  # fewer pairs than ranks: this rank joins the gradient exchange with a zero-weight pair
            part, weight = list(indices[:1]), 0.0
        batch = to_device(collate([self.train_examples[i] for i in part]), self.device)
        # with adversarial training the gradients are exchanged once, in the adversarial pass's backward
        clean_pass = self.forward_model.no_sync() if rt.distributed and self.adversary is not None else contextlib.nullcontext()
        with clean_pass:
            error: str | None = None  # also a NaN the forward pass itself refused (stage two's on-the-fly attack)
            try:
                with autocast(self.device, rt.precision):
                    if self.adversary is None:
                        logits = self.forward_model(batch)
                    else:  # the same forward pass, keeping the gradient of the looked-up embeddings for the attack
                        logits, emb = self.adversary.forward(self.model, batch, self.forward_model)
                logits = logits.float()
                loss = self._global_mean_loss(logits, batch["label"], weight, len(indices))
                if not is_finite(loss.detach()):
                    error = f"non-finite training loss ({float(loss.detach())}); {_NON_FINITE_HINT}"
            except NonFiniteError as exc:
                if not rt.distributed:
                    raise
                error = str(exc)
            self._stop_together(error)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        if self.adversary is not None:  # adds weight * CE(A(E + delta), y) to the gradients (vaa.adversarial)
            loss = loss + self._adversarial_backward(batch, emb, logits, weight, len(indices))
        if self.scaler.is_enabled():
            if self.cfg.grad_clip and self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.trainable, self.cfg.grad_clip)
        else:
            clip = self.cfg.grad_clip if self.cfg.grad_clip and self.cfg.grad_clip > 0 else float("inf")
            norm = nn.utils.clip_grad_norm_(self.trainable, clip)  # with an infinite clip: measures only
            check_finite(norm, f"gradient norm ({float(norm)})", _NON_FINITE_HINT)  # all-reduced: the same on every rank
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.cfg.scheduler == "linear":
            self.scheduler.step()
        if rt.distributed:  # each rank's loss is its share of the global mean, times world_size
            return rt.sum(float(loss.detach())) / rt.world_size
        return float(loss.detach())

    def _end_epoch(self, seconds: float, seen: int) -> None:
        st = self.state
        main = self.runtime.is_main
        try:
            preds = predict_examples(
                self.model, self.valid_examples, self.cfg.eval_batch_size, self.progress, desc="validate", runtime=self.runtime
            )
            if preds.loss is not None:
                check_finite(preds.loss, f"validation loss ({preds.loss})", _NON_FINITE_HINT)
        except NonFiniteError as exc:
            raise NonFiniteError(f"[{self.stage}] epoch {st.epoch + 1}, validation: {exc}; training stopped") from None
        accuracy = preds.accuracy if preds.accuracy is not None else 0.0  # gathered: the same on every rank
        if self.cfg.scheduler == "plateau":
            self.scheduler.step(accuracy)
        record = {
            "stage": self.stage,
            "epoch": st.epoch,
            "train_loss": st.epoch_loss_sum / max(1, st.epoch_seen),
            "valid_accuracy": accuracy,
            "valid_loss": preds.loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": round(seconds, 3),
            "train_pairs_per_s": round(seen / seconds, 2) if seconds > 0 else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        if self.runtime.distributed:
            record["world_size"] = self.runtime.world_size
        improved = accuracy > st.best_accuracy
        if improved:
            st.best_accuracy, st.best_epoch, st.bad_epochs = accuracy, st.epoch, 0
        else:
            st.bad_epochs += 1
        record["best"] = improved
        if main:
            _append_jsonl(self.metrics_log, record)
            if self.board is not None:
                self.board.epoch(st.global_step, record)
        st.history.append(record)
        if improved:
            self.save_best()
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_loss_sum, st.epoch_seen = 0.0, 0
        if st.bad_epochs >= self.cfg.patience:
            st.finished, st.stop_reason = True, f"early stop: no gain in validation accuracy for {self.cfg.patience} epochs"
        elif st.epoch >= self.cfg.max_epochs:
            st.finished, st.stop_reason = True, f"reached max_epochs={self.cfg.max_epochs}"
        self.save_last()
        if main:
            logger.info(
                f"[{self.stage}] epoch {record['epoch'] + 1}: train loss {record['train_loss']:.4f}, "
                f"validation accuracy {accuracy:.4f}{' (best)' if improved else ''} ({seconds:.0f} s)"
            )

    def fit(self, resume: bool = True, stop_after_batches: int | None = None) -> TrainState:
        """Train until early stopping or ``max_epochs``.

        ``stop_after_batches`` simulates an interruption (tests): the loop
        returns after that many batches of this call, leaving the checkpoint
        state as a crash at that point would."""
        main = self.runtime.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and self.try_resume()):
            set_seed(self.seed)
            if self.runtime.rank:  # under DDP each rank draws its own dropout masks (rank 0 keeps the seed)
                torch.manual_seed(self.seed + 1_000_003 * self.runtime.rank)
            if main:
                for log in (self.loss_log, self.metrics_log):
                    _keep_jsonl(log, lambda r: r.get("stage") != self.stage)
        st = self.state
        done_here = 0
        window = st.loss_window
        if main and self.board is not None:
            self.board.start(st.global_step)
        self.model.train()
        while not st.finished:
            start = time.perf_counter()
            seen_at_start = st.epoch_seen
            total = self.batches.num_batches()
            bar = progress_bar(
                None, self.progress, total=total, initial=st.batch_in_epoch, desc=f"{self.stage} epoch {st.epoch + 1}"
            )
            for indices in self.batches.global_batches(st.epoch, skip=st.batch_in_epoch):
                try:
                    loss = self.train_step(indices)
                except NonFiniteError as exc:
                    bar.close()
                    raise NonFiniteError(
                        f"[{self.stage}] epoch {st.epoch + 1}, batch {st.batch_in_epoch + 1}: {exc}; "
                        "training stopped (the last checkpoint is from before this batch)"
                    ) from None
                n = len(indices)
                st.epoch_loss_sum += loss * n
                st.epoch_seen += n
                st.batch_in_epoch += 1
                st.global_step += 1
                window.append(loss)
                bar.update(1)
                if st.global_step % self.log_every == 0:
                    if main:
                        _append_jsonl(
                            self.loss_log,
                            {
                                "stage": self.stage,
                                "stage_step": st.global_step,
                                "step": self.step_offset + st.global_step,
                                "epoch": st.epoch,
                                "loss": float(np.mean(window)),
                            },
                        )
                        if self.board is not None:
                            self.board.loss(st.global_step, float(np.mean(window)), self.optimizer.param_groups[0]["lr"])
                    bar.set_postfix(loss=f"{np.mean(window):.4f}")
                    window.clear()
                if self.checkpoint_every and st.global_step % self.checkpoint_every == 0:
                    self.save_last()
                done_here += 1
                if stop_after_batches is not None and done_here >= stop_after_batches:
                    bar.close()
                    self._close_board()
                    return st
            bar.close()
            elapsed = time.perf_counter() - start
            self._end_epoch(elapsed, st.epoch_seen - seen_at_start)
            self.model.train()
        self._close_board()
        return st

    def _close_board(self) -> None:
        if self.board is not None:
            self.board.close()


__all__ = ["NonFiniteError", "Trainer", "TrainerSettings", "TrainState", "set_seed", "read_jsonl"]
