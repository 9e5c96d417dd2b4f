"""Per-pair vulnerability features beyond F1/F2: what the probe scores and
what stage two's feature options feed to W, all from the attack code of
``vaa.attack`` (no second implementation).

- ``batch_features``/``pair_features``: V1, V2, A's log-probabilities, F1, F2,
  ||V1 - V2|| (raw and over ||V1||), cos(V1, V2), the step norm, the flip, the
  input-gradient norm per sentence, the smallest flipping eps on a geometric
  grid, and per class the loss drop of a targeted step and the smallest eps
  that makes A predict that class; per-word gradient saliency.
- ``scalar_columns``: the non-linear scalars stage two can append to V3.
- ``calibrate_eps``: the eps at which the attack flips a target share of pairs.
- ``feature_needs``/``attachable``/``permute``: which features stage two's
  options need, and how they reach the VAA model (``vaa.models.vaa``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .attack import (
    BasePass,
    forward_embedded,
    forward_with_gradient,
    gradient_norms,
    perturb,
    perturbation,
    retarget,
    token_saliency,
)
from .config import AttackConfig, VAAConfig
from .data.batching import BatchIterator, Example
from .device import model_device, to_device
from .models.base import PairModel
from .progress import bar
from .vulnerability import _assemble, criteria

FLIP_GRID_POINTS = 12  # eps/4 * 2^k, k = 0..11: from a quarter of eps to ~500x eps
FLIP_GRID_RATIO = 2.0
TINY = 1e-12  # floor under logs of non-negative quantities (a zero distance is possible)

# Scalars stage two can append to V3 (``vaa.scalars``), with the number of
# columns each adds ("n": one per class; "g": one per sentence group).
SCALARS: dict[str, str] = {
    "log_distance": "1",
    "log_grad_norm": "g",
    "F1": "1",
    "F2": "1",
    "flip": "1",
    "log_flip_eps": "1",
    "targeted_loss_drop": "n",
}


def flip_grid(cfg: AttackConfig, points: int = FLIP_GRID_POINTS, ratio: float = FLIP_GRID_RATIO) -> np.ndarray:
    """The geometric grid of eps on which the smallest flipping eps is read:
    eps/4 * ratio^k. A pair no grid point flips gets the next point (censored)."""
    return cfg.eps / 4 * ratio ** np.arange(points)


def _smallest_eps(base: BasePass, cfg: AttackConfig, grid: np.ndarray, goal: torch.Tensor | None) -> torch.Tensor:
    """Per pair, the smallest grid eps at which the step (cfg's direction,
    with eps scaled along the grid) makes A predict ``goal`` (or anything but
    y_pred when ``goal`` is None); censored at the next grid point."""
    assert base.model is not None
    result = torch.full_like(base.predicted, float(grid[-1] * FLIP_GRID_RATIO), dtype=torch.float64)
    done = torch.zeros_like(base.predicted, dtype=torch.bool)
    for eps in grid:
        logits, _ = forward_embedded(
            base.model,
            base.emb.with_values(
                [v + s for v, s in zip(base.emb.values, perturbation(base, dataclasses.replace(cfg, eps=float(eps))))]
            ),
        )
        predicted = logits.argmax(-1)
        hit = (predicted != base.predicted) if goal is None else (predicted == goal)
        result = torch.where(hit & ~done, torch.full_like(result, float(eps)), result)
        done |= hit
        if bool(done.all()):
            break
    return result


def batch_features(
    model: PairModel, batch: Any, cfg: AttackConfig, want: Sequence[str], grid: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The per-pair features named in ``want`` for one batch, from the same
    attack code as everything else:

    v1, v2, log_probs (A's), F1, F2, distance ||V1-V2||, relative_distance
    (/||V1||), cosine (V1, V2), step_norm (||E~ - E|| over the pair),
    grad_norm (||dJ/dE|| per sentence), flip, flip_eps (smallest flipping
    eps on ``grid``), targeted_loss_drop (per class c: CE(O, c) - CE(O~_c, c)
    after a targeted step toward c), targeted_flip_eps (per class: smallest
    grid eps at which A predicts c; the grid's floor/2 for the predicted class)."""
    want = set(want)
    grid = flip_grid(cfg) if grid is None else grid
    base = forward_with_gradient(model, batch)
    attacked = retarget(base, cfg.target) if cfg.target >= 0 else base  # one backward for a targeted V2, not one per eps
    steps = perturbation(attacked, cfg)
    logits_adv, hidden_adv = forward_embedded(model, base.emb.with_values([v + s for v, s in zip(base.emb.values, steps)]))
    f1, f2 = criteria(base.logits, logits_adv)
    v1, v2 = base.hidden, hidden_adv
    distance = (v1 - v2).norm(dim=-1)
    out: dict[str, torch.Tensor] = {
        "v1": v1,
        "v2": v2,
        "log_probs": torch.log_softmax(base.logits, -1),
        "F1": f1,
        "F2": f2,
        "distance": distance,
        "relative_distance": distance / v1.norm(dim=-1).clamp(min=TINY),
        "cosine": torch.nn.functional.cosine_similarity(v1, v2, dim=-1),
        "step_norm": torch.stack([s.pow(2).flatten(1).sum(1) for s in steps]).sum(0).sqrt(),
        "flip": (logits_adv.argmax(-1) != base.predicted).to(v1.dtype),
        "predicted": base.predicted,
    }
    if "grad_norm" in want:
        out["grad_norm"] = gradient_norms(base)
    if "saliency" in want:  # per word: ||dJ/dE_t|| relative to its sentence's largest (scale-free; the scale is grad_norm's)
        raw = token_saliency(base)
        for t in range(len(raw)):
            out[f"saliency{t}"] = torch.zeros_like(raw[t])
            out[f"length{t}"] = base.emb.masks[t].sum(1)
        for t, mask in base.emb.groups:
            part = raw[t] * mask.to(raw[t].dtype)
            out[f"saliency{t}"] = out[f"saliency{t}"] + part / part.amax(1, keepdim=True).clamp(min=TINY)
    if "flip_eps" in want:
        out["flip_eps"] = _smallest_eps(attacked, cfg, grid, None)
    if "targeted_loss_drop" in want or "targeted_flip_eps" in want:
        drops, flips = [], []
        for c in range(base.logits.shape[-1]):
            toward = retarget(base, c)
            labels = toward.labels
            assert labels is not None
            targeted_cfg = dataclasses.replace(cfg, target=c)
            if "targeted_loss_drop" in want:
                adv, _ = forward_embedded(
                    model, base.emb.with_values([v + s for v, s in zip(base.emb.values, perturbation(toward, targeted_cfg))])
                )
                drops.append(
                    torch.nn.functional.cross_entropy(base.logits, labels, reduction="none")
                    - torch.nn.functional.cross_entropy(adv, labels, reduction="none")
                )
            if "targeted_flip_eps" in want:
                smallest = _smallest_eps(toward, targeted_cfg, grid, labels)
                flips.append(torch.where(base.predicted == c, torch.full_like(smallest, float(grid[0] / 2)), smallest))
        if drops:
            out["targeted_loss_drop"] = torch.stack(drops, 1)
        if flips:
            out["targeted_flip_eps"] = torch.stack(flips, 1)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def pair_features(
    model: PairModel,
    examples: Sequence[Example],
    cfg: AttackConfig,
    want: Sequence[str] = (),
    batch_size: int = 128,
    progress: bool = False,
    grid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``batch_features`` for every example, in example order."""
    iterator = BatchIterator(examples, batch_size, shuffle=False)
    parts: list[dict[str, np.ndarray]] = []
    order: list[int] = []
    device = model_device(model)
    for batch in bar(iterator.epoch(), progress, total=iterator.num_batches(), desc="features"):
        part = batch_features(model, to_device(batch, device), cfg, want, grid)
        for key in [k for k in part if k.startswith("saliency")]:  # batches differ in length: one array per pair
            lengths = part[f"length{key[len('saliency') :]}"]
            ragged = np.empty(len(lengths), dtype=object)
            ragged[:] = [row[:n] for row, n in zip(part[key], lengths)]
            part[key] = ragged
        parts.append(part)
        order.extend(batch["index"].tolist())
    return _assemble(parts, order, parts[0].keys()) if parts else {}


# derived features: the log of a non-negative scale quantity (floored where it can be 0)
_LOGS = {
    "log_distance": ("distance", TINY),
    "log_grad_norm": ("grad_norm", TINY),
    "log_flip_eps": ("flip_eps", 0.0),
    "targeted_log_flip_eps": ("targeted_flip_eps", 0.0),
}


def feature_values(features: dict[str, np.ndarray], name: str) -> np.ndarray:
    """One named feature from the measured ones: a log where the name says
    so (one definition for stage two's scalars and for the probe)."""
    if name in _LOGS:
        source, floor = _LOGS[name]
        return np.log(features[source] + floor)
    return features[name]


def scalar_columns(features: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Stage two's appended scalars [N, k], in the order of ``names``:
    logs of the non-negative scale quantities, the criteria as they are."""
    columns = []
    for name in names:
        if name not in SCALARS:
            raise ValueError(f"unknown vulnerability scalar {name!r} ({' | '.join(SCALARS)})")
        col = feature_values(features, name)
        columns.append(np.asarray(col, dtype=np.float32).reshape(len(col), -1))
    return np.concatenate(columns, 1) if columns else np.zeros((len(next(iter(features.values()))), 0), dtype=np.float32)


def scalar_needs(names: Sequence[str]) -> list[str]:
    """The ``batch_features`` a list of scalars needs."""
    need = {"log_grad_norm": "grad_norm", "log_flip_eps": "flip_eps", "targeted_loss_drop": "targeted_loss_drop"}
    return sorted({need[n] for n in names if n in need})


def calibrate_eps(
    model: PairModel,
    examples: Sequence[Example],
    cfg: AttackConfig,
    target_rate: float,
    batch_size: int = 128,
    max_pairs: int = 2000,
    iterations: int = 20,
    progress: bool = False,
) -> dict[str, float]:
    """The smallest eps (to a relative precision of ~1e-4) at which the attack
    flips at least ``target_rate`` of the pairs (the first ``max_pairs``).

    A's pass and input gradient are computed once per batch; each trial eps
    costs one adversarial forward pass. eps doubles from ``cfg.eps`` until the
    rate is reached, then a bisection in log-space closes in on the threshold."""
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"the target flip rate must be in (0, 1), got {target_rate}")
    iterator = BatchIterator(list(examples[:max_pairs]), batch_size, shuffle=False)
    target = cfg.target if cfg.target >= 0 else None  # a targeted attack's gradient, once per batch
    device = model_device(model)
    bases = [
        forward_with_gradient(model, to_device(b, device), target=target)
        for b in bar(iterator.epoch(), progress, total=iterator.num_batches(), desc="calibrate eps")
    ]
    count = sum(int(b.predicted.shape[0]) for b in bases)

    def rate(eps: float) -> float:
        cfg_e = dataclasses.replace(cfg, eps=eps)
        flips = 0
        for base in bases:
            logits, _ = forward_embedded(model, perturb(base, cfg_e))
            flips += int((logits.argmax(-1) != base.predicted).sum())
        return flips / count

    lo, hi = 0.0, max(cfg.eps, 1e-6)
    hi_rate = rate(hi)
    doublings = 0
    while hi_rate < target_rate:
        lo, hi = hi, hi * 2
        hi_rate = rate(hi)
        doublings += 1
        if doublings > 40:
            raise ValueError(
                f"no eps up to {hi:.3g} flips {target_rate:.1%} of the pairs (the most: {hi_rate:.1%}): choose a lower target"
            )
    for _ in range(iterations):
        mid = (lo * hi) ** 0.5 if lo > 0 else hi / 2
        mid_rate = rate(mid)
        if mid_rate >= target_rate:
            hi, hi_rate = mid, mid_rate
        else:
            lo = mid
    return {"eps": float(hi), "flip_rate": float(hi_rate), "target": float(target_rate), "pairs": count}


# -- what stage two's V is built from (the VAA model and stage two's cache share these) --

SENTENCE_GROUPS = 2  # every family's attack groups: the two sentences


def scalar_names(value: str | Sequence[str]) -> list[str]:
    """``vaa.scalars`` as a list: "F2,log_flip_eps" (or a list, from Python/YAML)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    return [str(x) for x in items]


def scalar_width(names: list[str], num_labels: int) -> int:
    """Columns the scalars add to V3 (per class or per sentence for some)."""
    width = 0
    for name in names:
        if name not in SCALARS:
            raise ValueError(f"unknown vulnerability scalar {name!r} ({' | '.join(SCALARS)})")
        width += {"1": 1, "g": SENTENCE_GROUPS, "n": num_labels}[SCALARS[name]]
    return width


def feature_needs(vaa: VAAConfig) -> list[str]:
    """What ``batch_features`` must compute beyond V1/V2 for these options
    (empty for the paper's setting: then nothing but V1/V2 is computed)."""
    if vaa.vulnerability in ("zeros", "v1-only"):
        return []
    want = scalar_needs(scalar_names(vaa.scalars))
    if vaa.saliency:
        want.append("saliency")
    if scalar_names(vaa.scalars) or vaa.diff_scale != "none":
        want.append("scalars")  # F1, F2, distance, flip, step norm come with every batch_features pass
    return want


def permutation_for(size: int, seed: int) -> np.ndarray:
    """The permuted control's fixed, label-agnostic permutation of ``size`` pairs."""
    return np.random.default_rng([seed, 12]).permutation(size)


def attachable(raw: dict[str, Any], vaa: VAAConfig) -> dict[str, Any]:
    """From ``batch_features``/``pair_features`` output to what V is built
    from: v1, v2, and per option step_norm, scalars [N, k], saliency<t>."""
    out: dict[str, Any] = {"v1": raw["v1"], "v2": raw["v2"]}
    if vaa.diff_scale == "step":
        out["step_norm"] = raw["step_norm"]
    names = scalar_names(vaa.scalars)
    if names and vaa.vulnerability != "v1-only":
        out["scalars"] = scalar_columns(raw, names)
    if vaa.saliency:
        out.update({k: v for k, v in raw.items() if k.startswith("saliency")})
    return out


def permute(feats: dict[str, Any], perm: Any) -> dict[str, Any]:
    """The permuted control: V1 stays the pair's own; the vulnerability part
    (V1 - V2, step norm, scalars) comes from pair ``perm[i]``."""
    out = dict(feats)
    v1, v2 = feats["v1"], feats["v2"]
    out["v2"] = v1 + (v2 - v1)[perm]
    for key in ("step_norm", "scalars"):
        if key in feats:
            out[key] = feats[key][perm]
    return out
