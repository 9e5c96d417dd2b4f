"""Accuracy under attack (``vaa robustness``): how much of each model's
accuracy survives an attack on its word embeddings, on an eps grid.

For every model (model A, an adversarially trained A, a stage-two +VAA
model) and every (method, norm, eps): FGSM (one step) or PGD-K (K projected
steps of ``step_ratio * eps / K``), L2 (per sentence over real tokens x dims)
or L-inf, *untargeted against the gold label* -- the attack of ``vaa.attack``
(``forward_with_gradient(labels=gold)``, ``perturbation``), not a second
implementation. Robust accuracy is the share of pairs still classified
correctly on the perturbed input. It uses the model's own output (no stored
calibration, like ``vaa evaluate --raw``).

eps = 0 is the model's clean accuracy exactly: the perturbation is then zero
and the attacked forward pass computes the same operations as the model's own
forward pass on the same batch (tested).

Threat model for a stage-two model (A frozen, W, B): the attacker adds one
perturbation delta to the word embeddings of the input, and it reaches the
whole system end to end -- A reads E_A + delta (so V1 = A^-(E_A + delta) and
V2 = A^-(E_A + delta + s) are recomputed from the perturbed input, s being
stage two's own vulnerability step taken at the perturbed input) and B reads
E_B + delta (E_A and E_B: A's and B's own lookups of the same words, which
differ once B is trained). The attacker's gradient flows through B, W, V1 and
V2; the vulnerability step s is held fixed inside that gradient (its own
derivative would need second-order gradients, and is zero almost everywhere
for L-inf's sign), a standard "straight-through" choice: the evaluation of
each perturbed input is exact, only the attacker's direction is approximate.
The eps ball is the same for every model, so rows compare directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .analysis.defaults import (
    ROBUSTNESS_L2_EPS,
    ROBUSTNESS_LINF_EPS,
    ROBUSTNESS_PGD_STEPS,
)
from .attack import embedded_pass, forward_embedded, forward_with_gradient, perturbation
from .config import NORMS, AttackConfig
from .data.batching import Batch, BatchIterator, Example
from .device import full_precision, to_device
from .features import feature_needs
from .metrics import mean_and_std
from .models.base import Embedded, PairModel
from .models.vaa import VAAModel
from .progress import bar as progress_bar
from .significance import BOOTSTRAP_RESAMPLES, format_p, paired_tests, seed_level_tests

METHODS = ("fgsm", "pgd")
logger = logging.getLogger(__name__)
DEFAULT_L2_EPS, DEFAULT_LINF_EPS, PGD_STEPS = ROBUSTNESS_L2_EPS, ROBUSTNESS_LINF_EPS, ROBUSTNESS_PGD_STEPS


@dataclass(frozen=True)
class AttackSetting:
    """One column of the robustness grid."""

    method: str  # fgsm | pgd
    norm: str  # l2 | linf
    eps: float
    steps: int = 1
    step_ratio: float = 2.5

    def config(self) -> AttackConfig:
        return AttackConfig(
            norm=self.norm, eps=self.eps, steps=self.steps if self.method == "pgd" else 1, step_ratio=self.step_ratio
        )

    @property
    def name(self) -> str:
        return f"FGSM {self.norm}" if self.method == "fgsm" else f"PGD-{self.steps} {self.norm}"


def attack_grid(
    l2_eps: Sequence[float] = DEFAULT_L2_EPS,
    linf_eps: Sequence[float] = DEFAULT_LINF_EPS,
    methods: Sequence[str] = METHODS,
    norms: Sequence[str] = NORMS,
    steps: int = PGD_STEPS,
    step_ratio: float = 2.5,
) -> list[AttackSetting]:
    """Every (method, norm, eps) of a robustness run; bad values are one-line ValueErrors."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown attack method {method!r} ({' | '.join(METHODS)})")
    for norm in norms:
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r} ({' | '.join(NORMS)})")
    if steps < 2:
        raise ValueError(f"PGD needs at least 2 steps, got {steps} (one step is FGSM)")
    if not (step_ratio > 0 and math.isfinite(step_ratio)):
        raise ValueError(f"the PGD step ratio must be a finite number > 0, got {step_ratio}")
    grids = {"l2": list(l2_eps), "linf": list(linf_eps)}
    for norm, grid in grids.items():
        bad = [e for e in grid if not (math.isfinite(e) and e >= 0)]
        if bad:
            raise ValueError(f"{norm} eps must be finite and >= 0, got {bad[0]}")
    return [
        AttackSetting(method, norm, float(eps), steps, step_ratio)
        for method in methods
        for norm in norms
        for eps in sorted(set(grids[norm]))
    ]


class EndToEnd(nn.Module):
    """A stage-two model as the attack core sees a model: ``embed`` gives
    A's word embeddings E_A (the space the attacker perturbs), ``encode``
    maps E_A + delta to the logits of the whole system with delta reaching A
    and B alike (module docstring), ``classify`` is the identity.

    ``encode`` without gradient performs exactly the operations of
    ``VAAModel.forward``, so delta = 0 reproduces its logits bit for bit."""

    def __init__(self, model: VAAModel):
        super().__init__()
        cfg = model.vaa_config
        if feature_needs(cfg) or cfg.vulnerability == "permuted":
            raise ValueError(
                "robustness of a stage-two model covers V built from V1 and V2 (and the zeros/v1-only controls); "
                "this model uses vaa.scalars, saliency, diff_scale or the permuted control"
            )
        self.vaa = model
        self.clean_a: list[torch.Tensor] = []
        self.emb_b: Embedded | None = None
        self.index: torch.Tensor | None = None
        self.seen: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None  # (A's input, B's input) per call, for tests

    def embed(self, batch: Batch) -> Embedded:
        emb_a = self.vaa.model_a.embed(batch)
        self.clean_a = [v.detach() for v in emb_a.values]
        self.emb_b = self.vaa.model_b.embed(batch)
        self.index = batch["index"] if "index" in batch else None
        return emb_a

    def encode(self, emb: Embedded) -> torch.Tensor:
        vaa, cfg = self.vaa, self.vaa.vaa_config
        assert self.emb_b is not None, "call embed(batch) first"
        delta = [v - c for v, c in zip(emb.values, self.clean_a)]
        grad = torch.is_grad_enabled()
        adversarial_input = cfg.b_input == "adversarial"
        steps = None
        if cfg.vulnerability == "zeros" and not adversarial_input:
            vector = torch.zeros(emb.values[0].shape[0], vaa.projection.out_features, device=vaa.projection.weight.device)
        elif cfg.vulnerability == "v1-only" and not adversarial_input:
            v1 = vaa.model_a.encode(emb) if grad else forward_embedded(vaa.model_a, emb)[1]
            vector = vaa.vulnerability_vector({"v1": v1, "v2": v1})
        else:
            base = embedded_pass(vaa.model_a, emb.with_values([v.detach() for v in emb.values]), index=self.index)
            steps = [s.detach() for s in perturbation(base, vaa.attack_config)]
            moved = emb.with_values([v + s for v, s in zip(emb.values, steps)])
            v1 = vaa.model_a.encode(emb) if grad else base.hidden
            v2 = vaa.model_a.encode(moved) if grad else forward_embedded(vaa.model_a, moved)[1]
            vector = vaa.vulnerability_vector({"v1": v1, "v2": v2})
        emb_b = self.emb_b.with_values([v + d for v, d in zip(self.emb_b.values, delta)])
        if adversarial_input and steps is not None:  # the authors' ESIM: B reads E~ (its own step, on top of delta)
            emb_b = emb_b.with_values([v + s for v, s in zip(emb_b.values, steps)])
        if self.seen is not None:
            self.seen.append(([v.detach() for v in emb.values], [v.detach() for v in emb_b.values]))
        return vaa.forward_embedded(emb_b, vector)

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


def attack_target(module: nn.Module) -> nn.Module:
    """What the attack perturbs and scores: model A itself, or a stage-two
    model end to end (:class:`EndToEnd`)."""
    if isinstance(module, VAAModel):
        return EndToEnd(module)
    if isinstance(module, PairModel):
        return module
    raise ValueError(f"cannot attack a {type(module).__name__}: expected a model A or a stage-two VAA model")


def robust_accuracy(
    module: nn.Module,
    examples: Sequence[Example],
    settings: Sequence[AttackSetting],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "robustness",
) -> dict[str, Any]:
    """Clean accuracy and accuracy under each attack setting on labelled
    ``examples``. One input-gradient pass per batch serves every FGSM
    setting; PGD adds its steps per setting. Each row also keeps which pairs
    stayed right (``outcomes``, see ``encode_outcomes``), so two models
    attacked on the same pairs can be compared pair by pair."""
    if not examples:
        raise ValueError("no pairs to attack")
    if any(e["label"] < 0 for e in examples):  # type: ignore[operator]
        raise ValueError("robust accuracy needs the gold label of every pair")
    module.eval()
    target = attack_target(module)
    outcomes: list[list[np.ndarray]] = [[] for _ in settings]
    clean_outcomes: list[np.ndarray] = []
    iterator = BatchIterator(examples, batch_size, shuffle=False)
    work = iterator.num_batches()
    with progress_bar(None, progress, total=work, desc=desc) as bar:
        for batch in iterator.epoch(0):
            batch = to_device(batch, device)
            gold = batch["label"]
            with torch.no_grad(), full_precision(gold.device):
                right = (module(batch).argmax(-1) == gold).cpu().numpy()
            clean_outcomes.append(right)
            base = forward_with_gradient(target, batch, labels=gold)
            for k, setting in enumerate(settings):
                if setting.eps == 0:  # no perturbation: the clean pass itself (a second pass with input
                    outcomes[k].append(right)  # gradients may pick other kernels and flip a pair on the boundary)
                    continue
                delta = perturbation(base, setting.config())
                logits, _ = forward_embedded(target, base.emb.with_values([v + d for v, d in zip(base.emb.values, delta)]))
                outcomes[k].append((logits.argmax(-1) == gold).cpu().numpy())
            bar.update(1)
    n = len(examples)
    per_setting = [np.concatenate(o) for o in outcomes]
    clean = np.concatenate(clean_outcomes)
    rows = [
        {
            "method": s.method,
            "norm": s.norm,
            "eps": s.eps,
            "steps": s.steps if s.method == "pgd" else 1,
            "attack": s.name,
            "accuracy": float(o.sum() / n),
            "correct": int(o.sum()),
            "outcomes": encode_outcomes(o),
        }
        for s, o in zip(settings, per_setting)
    ]
    return {
        "pairs": n,
        "clean_accuracy": float(clean.sum() / n),
        "clean_correct": int(clean.sum()),
        "clean_outcomes": encode_outcomes(clean),
        "results": rows,
    }


def encode_outcomes(right: np.ndarray) -> str:
    """Per-pair correctness as a string of 0/1 in file order: plain JSON that
    a reader can check by eye, 1 byte a pair (2,000 pairs x 8 attacks is 16 kB)."""
    return "".join("1" if r else "0" for r in np.asarray(right, dtype=bool))


def decode_outcomes(text: str) -> np.ndarray:
    """The boolean array ``encode_outcomes`` wrote."""
    if set(text) - {"0", "1"}:
        raise ValueError("outcomes must be a string of 0 and 1")
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")


def robustness(
    checkpoints: Sequence[str | Path],
    data: str | Path,
    settings: Sequence[AttackSetting] | None = None,
    output: str | Path | None = None,
    batch_size: int = 64,
    format: str = "auto",
    columns: str | None = None,
    labels: str | None = None,
    limit: int | None = None,
    on_error: str = "raise",
    device: str = "auto",
    progress: bool = True,
    versus: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """``vaa robustness``: robust accuracy of every checkpoint on the
    labelled file ``data`` (each model reads it with its own featuriser and
    label map). With ``output``: robustness.json, robustness.md and
    robustness.png (accuracy against eps, one line per model) there.
    ``versus``: (model, reference) pairs of run-folder names to compare pair
    by pair under each attack (``compare_under_attack``), checked before
    any attack runs."""
    from .inference import load_model

    if not checkpoints:
        raise ValueError("give at least one checkpoint (run folder or checkpoint folder) and a labelled file")
    roles = {run_role_and_seed(path)[0] for path in checkpoints}
    unknown = sorted({name for pair in versus for name in pair} - roles)
    if unknown:
        raise ValueError(
            f"--versus names {', '.join(unknown)}, not among the checkpoints' run folders ({', '.join(sorted(roles))})"
        )
    settings = list(settings) if settings is not None else attack_grid()
    models = []
    for path in checkpoints:
        loaded = load_model(path, raw=True, device=device)
        dataset = loaded.read(data, format, columns, labels, limit, on_error, require_labels=True)
        result = robust_accuracy(
            loaded.module,
            loaded.featurize(dataset.pairs),
            settings,
            batch_size,
            loaded.runtime.device,
            progress,
            desc=f"robustness {Path(str(path)).name}",
        )
        models.append(
            {"checkpoint": str(path), "name": model_name(path), "kind": loaded.kind, "family": loaded.base.family, **result}
        )
        logger.info(f"{path}: clean accuracy {result['clean_accuracy']:.4f} on {result['pairs']} pairs")
    report = {
        "data": str(data),
        "models": models,
        "threat_model": THREAT_MODEL,
        "settings": [
            {"method": s.method, "norm": s.norm, "eps": s.eps, "steps": s.steps, "step_ratio": s.step_ratio} for s in settings
        ],
    }
    if versus:
        report["paired_tests"] = compare_under_attack([report], versus)
    if output is not None:
        write_report(report, Path(output))
    return report


def parse_versus(items: Sequence[str]) -> list[tuple[str, str]]:
    """``["vaa:a", "vaa:a-pgd"]`` -> ``[("vaa", "a"), ("vaa", "a-pgd")]``."""
    pairs = []
    for item in items:
        model, sep, reference = item.partition(":")
        if not (sep and model and reference):
            raise ValueError(f"--versus takes MODEL:REFERENCE (run folder names, e.g. vaa:a), not {item!r}")
        pairs.append((model, reference))
    return pairs


THREAT_MODEL = (
    "untargeted attack on the word embeddings against the gold label; for a stage-two model the same perturbation "
    "reaches A (V1, V2 recomputed) and B, end to end"
)


def model_name(path: str | Path) -> str:
    """A short label for a checkpoint: its run folder's name (``.../seed0/a``
    -> ``seed0/a``)."""
    parts = run_parts(path)
    return "/".join(parts[-2:]) if parts else str(path)


def run_parts(path: str | Path) -> list[str]:
    """A checkpoint path's parts up to its run folder (``checkpoints/best`` dropped)."""
    return [p for p in Path(str(path)).parts if p not in ("checkpoints", "best", "last")]


def table_markdown(report: dict[str, Any]) -> str:
    """One row per model, one column per (attack, eps); accuracy in %."""
    settings = [(r["attack"], r["eps"]) for r in report["models"][0]["results"]] if report["models"] else []
    head = "| model | clean | " + " | ".join(f"{a} ε={e:g}" for a, e in settings) + " |"
    lines = [
        f"Accuracy (%) under attack on {report['data']} ({report['threat_model']}).",
        "",
        head,
        "|---|---|" + "---|" * len(settings),
    ]
    for m in report["models"]:
        cells = [f"{100 * r['accuracy']:.2f}" for r in m["results"]]
        lines.append(f"| {m['name']} ({m['kind']}) | {100 * m['clean_accuracy']:.2f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    return table + ("\n" + comparison_markdown(report["paired_tests"]) if report.get("paired_tests") else "")


def write_report(report: dict[str, Any], folder: Path) -> None:
    """robustness.json, robustness.md and robustness.png in ``folder``."""
    import json

    from .analysis.plots import plot_robustness
    from .files import atomic_write_text, ensure_folder

    ensure_folder(folder)
    atomic_write_text(json.dumps(report, indent=2) + "\n", folder / "robustness.json")
    atomic_write_text(table_markdown(report), folder / "robustness.md")
    plot_robustness(report, folder / "robustness.png")


def run_role_and_seed(checkpoint: str | Path) -> tuple[str, int | None]:
    """``.../seed2/a-fgm/checkpoints/best`` -> ``("a-fgm", 2)``: which model of
    a reproduction a checkpoint is, and its seed (None outside ``seed<k>``)."""
    parts = run_parts(checkpoint)
    role = parts[-1] if parts else str(checkpoint)
    seeds = [int(p[4:]) for p in parts[:-1] if p.startswith("seed") and p[4:].isdigit()]
    return role, (seeds[-1] if seeds else None)


Columns = list[tuple[str, float]]


def _reports_by_role(reports: Sequence[dict[str, Any]]) -> tuple[Columns, str, int, dict[str, dict[int | None, dict[str, Any]]]]:
    """The attack columns, data and pair count the reports share, and their
    models by role and seed. Refuses reports that attacked different data,
    pair counts or grids, and a (role, seed) given twice, since putting those
    together would mix unlike figures."""
    if not any(report["models"] for report in reports):
        raise ValueError("no robustness reports to summarize")

    def grid_and_data(report: dict[str, Any], model: dict[str, Any]) -> tuple[Columns, str, int]:
        return [(r["attack"], float(r["eps"])) for r in model["results"]], str(report["data"]), int(model["pairs"])

    first = next(r for r in reports if r["models"])
    columns, data, pairs = grid_and_data(first, first["models"][0])
    per_role: dict[str, dict[int | None, dict[str, Any]]] = {}
    for report in reports:
        for model in report["models"]:
            if grid_and_data(report, model) != (columns, data, pairs):
                raise ValueError(
                    f"{model['checkpoint']}: attacked on another grid or file than {pairs} pairs of {data}; "
                    "summarize like with like"
                )
            role, seed = run_role_and_seed(model["checkpoint"])
            if seed in per_role.setdefault(role, {}):
                raise ValueError(f"{model['checkpoint']}: {role} of seed {seed} appears twice")
            per_role[role][seed] = model
    return columns, data, pairs, per_role


def _seed_order(seeds: Any) -> list[int | None]:
    return sorted(seeds, key=lambda s: -1 if s is None else s)


def summarize_over_seeds(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Robust accuracy per model role (``a``, ``a-fgm``, ``vaa`` ...) as mean
    and standard deviation over seeds, from robustness reports written one
    model or one seed at a time (e.g. in different sessions, each right after
    its model was trained); like-with-like checks in ``_reports_by_role``."""
    columns, data, pairs, per_role = _reports_by_role(reports)

    def spread(values: list[float]) -> dict[str, Any]:
        return {**mean_and_std(values), "per_seed": values}

    models = []
    for role, by_seed in per_role.items():
        seeds = _seed_order(by_seed)
        runs = [by_seed[s] for s in seeds]
        models.append(
            {
                "name": role,
                "seeds": seeds,
                "clean": spread([float(m["clean_accuracy"]) for m in runs]),
                "results": [
                    {"attack": a, "eps": e, **spread([float(m["results"][k]["accuracy"]) for m in runs])}
                    for k, (a, e) in enumerate(columns)
                ],
            }
        )
    return {"data": data, "pairs": pairs, "models": models}


def default_comparisons(roles: Sequence[str]) -> list[tuple[str, str]]:
    """Every model against plain A, and +VAA against each adversarially
    trained A (``a-fgm``, ``a-pgd``): the questions of issue 14."""
    pairs = [(role, "a") for role in roles if role != "a"] if "a" in roles else []
    if "vaa" in roles:
        pairs += [("vaa", role) for role in roles if role.startswith("a-")]
    return pairs


def compare_under_attack(
    reports: Sequence[dict[str, Any]],
    versus: Sequence[tuple[str, str]] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[dict[str, Any]]:
    """Paired tests of robust accuracy: for each (model, reference) pair of
    roles and each column (clean, then every attack), model minus reference
    on the same pairs -- the mean and per-seed difference, an exact McNemar
    test per seed, a bootstrap over pairs, and with two seeds or more a
    bootstrap over seeds and pairs and a t-test and sign test over seeds, as
    in Table 3. The pair-level tests use the seeds where both models were
    attacked and whose reports kept per-pair outcomes; the others are listed.
    When some seeds were attacked on the same pairs but without outcomes (a
    report written before outcomes were kept), each row also carries
    ``all_seeds``: the per-seed accuracy differences over every shared seed
    and the t and sign tests over them, since a seed-level test needs no more
    than the accuracies."""
    columns, _, _, per_role = _reports_by_role(reports)
    versus = list(versus) if versus is not None else default_comparisons(list(per_role))
    comparisons = []
    for model, reference in versus:
        for role in (model, reference):
            if role not in per_role:
                raise ValueError(f"no robustness report for {role!r} (have: {', '.join(sorted(per_role))})")
        shared = _seed_order(set(per_role[model]) & set(per_role[reference]))
        usable = [s for s in shared if all("clean_outcomes" in per_role[r][s] for r in (model, reference))]
        rows = []
        for k, (attack, eps) in enumerate([("clean", 0.0), *columns] if shared else []):
            row: dict[str, Any] = {"attack": attack, "eps": eps}
            if usable:
                ref = np.stack([_column_outcomes(per_role[reference][s], k) for s in usable])
                other = np.stack([_column_outcomes(per_role[model][s], k) for s in usable])
                row.update(paired_tests(ref, other, resamples=resamples))
            if len(shared) > len(usable):
                deltas = [_column_accuracy(per_role[model][s], k) - _column_accuracy(per_role[reference][s], k) for s in shared]
                row["all_seeds"] = {
                    "seeds": shared,
                    "delta": float(np.mean(deltas)),
                    "delta_per_seed": deltas,
                    **seed_level_tests(deltas),
                }
            rows.append(row)
        comparisons.append(
            {
                "model": model,
                "reference": reference,
                "seeds": usable,
                "left_out": [s for s in _seed_order(set(per_role[model]) | set(per_role[reference])) if s not in usable],
                "rows": rows,
            }
        )
    return comparisons


def _column_outcomes(model: dict[str, Any], column: int) -> np.ndarray:
    """Per-pair correctness of one attacked model: column 0 is clean, column
    k the k-th attack of its grid."""
    return decode_outcomes(model["clean_outcomes"] if column == 0 else model["results"][column - 1]["outcomes"])


def _column_accuracy(model: dict[str, Any], column: int) -> float:
    """Accuracy of one attacked model in one column (0 is clean), as the
    report stores it (the exact rate), for reports without outcomes too."""
    return float(model["clean_accuracy"] if column == 0 else model["results"][column - 1]["accuracy"])


def _seed_list(seeds: Sequence[int | None]) -> str:
    return ", ".join("—" if s is None else str(s) for s in seeds)


def comparison_markdown(comparisons: Sequence[dict[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES) -> str:
    """The paired tests as one table (differences in points)."""
    lines = [
        "Model minus reference on the same pairs, points; McNemar p per seed; "
        "p of the bootstrap over pairs, over seeds and pairs, and of the t-test over seeds; "
        "rows marked (accuracies only) add the seeds whose reports kept no per-pair outcomes, at the seed level.",
        "",
        "| model − reference | seeds | attack | Δ | Δ per seed | McNemar p | pairs p | seeds and pairs p | seed t p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        pair = f"{c['model']} − {c['reference']}"
        attacks = ["clean" if r["attack"] == "clean" else f"{r['attack']} ε={r['eps']:g}" for r in c["rows"]]
        seeds = _seed_list(c["seeds"]) or "none with outcomes"
        for attack, r in zip(attacks, c["rows"]):
            if "delta" in r:
                lines.append(
                    f"| {pair} | {seeds} | {attack} | {100 * r['delta']:+.2f} | "
                    + ", ".join(f"{100 * d:+.2f}" for d in r["delta_per_seed"])
                    + " | "
                    + ", ".join(format_p(p) for p in r["mcnemar_p_per_seed"])
                    + f" | {format_p(r['paired_bootstrap_p'], resamples)} | {format_p(r['hierarchical_bootstrap_p'], resamples)} | "
                    f"{format_p(r['seed_t_test_p'])} |"
                )
        for attack, r in zip(attacks, c["rows"]):
            if "all_seeds" in r:
                every = r["all_seeds"]
                lines.append(
                    f"| {pair} | {_seed_list(every['seeds'])} (accuracies only) | {attack} | {100 * every['delta']:+.2f} | "
                    + ", ".join(f"{100 * d:+.2f}" for d in every["delta_per_seed"])
                    + f" | | | | {format_p(every['seed_t_test_p'])} |"
                )
        if c["left_out"]:
            lines.append(
                f"| {pair} | left out: {_seed_list(c['left_out'])}"
                " of the pair-level tests (one model missing, or a report without per-pair outcomes) | | | | | | | |"
            )
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The seed summary as a table: mean ± std (%) per model and attack."""
    columns = [(r["attack"], r["eps"]) for r in summary["models"][0]["results"]]
    lines = [
        f"Accuracy (%) under attack, mean ± std over seeds, {summary['pairs']} pairs of {summary['data']}.",
        "",
        "| model | seeds | clean | " + " | ".join(f"{a} ε={e:g}" for a, e in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for m in summary["models"]:
        cells = [f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}" for c in [m["clean"], *m["results"]]]
        seeds = _seed_list(m["seeds"])
        lines.append(f"| {m['name']} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
