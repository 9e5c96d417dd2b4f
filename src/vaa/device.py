"""Where a run computes: the device, the numeric precision, and what a run
records about both.

``device`` is ``auto`` (CUDA if available, else Apple's MPS, else the CPU),
``cpu``, ``cuda``, ``cuda:N`` or ``mps``. The model, every batch, stage two's
V1/V2 cache and every tensor the library creates live there; outputs are moved
to the CPU once, where they are written (``to_numpy``).

``precision`` is ``fp32`` (default, the paper's), ``bf16`` or ``fp16``: mixed
precision through ``torch.autocast`` for training and inference; ``fp16`` also
scales the loss (``torch.amp.GradScaler``) so small gradients do not underflow.
The FGSM attack always runs in fp32 (see :func:`full_precision`): the input
gradient of a bf16 forward pass carries about three significant digits, too
coarse for an L2 step of 0.02 on embeddings whose entries are ~0.3, and V1/V2
would then change with the precision setting instead of with the input.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import PRECISIONS

DEVICES = "auto | cpu | cuda | cuda:N | mps"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` a setting names; a clear error for a device this
    machine does not have (asking for CUDA on a CPU-only machine must fail,
    not silently train on the CPU)."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r} ({DEVICES})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} asked for, but this torch has no CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use --device cpu, "
                "or install a CUDA build of torch (README, 'Training at full scale')"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} asked for, but MPS is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r} ({DEVICES})")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` if this device can run it, else a one-line error."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({' | '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (its gradient scaler is CUDA's); use bf16 or fp32 here")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def full_precision(device: torch.device | str) -> Iterator[None]:
    """Switch off any enclosing autocast: the attack's gradient and step are
    computed in fp32 (module docstring)."""
    kind = device.type if isinstance(device, torch.device) else str(device)
    with torch.autocast(device_type=kind, enabled=False):
        yield


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, active only for fp16 (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch with every tensor on ``device`` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's weights (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A result on the CPU as numpy (fp32 where autocast left a half type)."""
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def runtime_record(device: torch.device, precision: str, world_size: int = 1) -> dict[str, Any]:
    """What a run records about where it ran (config.json, results.json).
    The CPU's model, the instruction set torch's kernels dispatch to (AVX2,
    AVX512 ...) and the thread count are kept too: each can change the order
    of float sums, so the same seed, code and data can train a slightly
    different model on another machine or thread count, and a reader of two
    runs needs to see whether they ran alike."""
    record: dict[str, Any] = {
        "device": str(device),
        "precision": precision,
        "world_size": world_size,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(device)
    return record


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), else what
    ``platform`` says, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


__all__ = [
    "DEVICES",
    "PRECISIONS",
    "resolve_device",
    "check_precision",
    "autocast",
    "full_precision",
    "grad_scaler",
    "to_device",
    "to_numpy",
    "model_device",
    "runtime_record",
]
