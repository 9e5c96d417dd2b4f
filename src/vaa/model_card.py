"""Model cards: a ``README.md`` that says what a trained model is and how far
its figures can be trusted, for readers who never open the JSON files.

The card is written from the run's own records -- ``results.json`` (stage,
epochs, scores), ``config.json`` (settings), ``data.json`` (files and pair
counts) and ``calibration.json`` if a decision rule was stored -- so it cannot
say anything the run did not record. It is written into every run folder at
the end of training (both stages), refreshed by ``vaa calibrate``, and copied
into every folder ``LoadedModel.save_pretrained`` writes.

The caveats are part of the card, not an afterthought: figures of the
reduced-scale protocol (training on the shared samples) are below the paper's
full-data ones, and all-MiniLM-L6-v2 was contrastively pre-trained on SNLI,
MultiNLI and Quora pairs, so its scores on those data sets are optimistic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "README.md"
_SHARED_SAMPLES = ("shared/data/",)  # where the reduced-scale protocol's samples live (see ../shared/data/README.md)


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON record of the run, or None when it is missing or unreadable
    (a card describes what is there; it never stops a training)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _score_line(name: str, report: dict[str, Any]) -> str:
    line = f"- {name}: accuracy **{_fmt(report.get('accuracy'))}** on {report.get('pairs', '?')} pairs"
    extra = [
        f"{label} {_fmt(report[key])}"
        for key, label in (("macro_f1", "macro-F1"), ("log_loss", "log-loss"), ("ece", "ECE"))
        if isinstance(report.get(key), (int, float))
    ]
    return line + (f" ({', '.join(extra)})" if extra else "")


def _uses_shared_samples(data: dict[str, Any] | None) -> bool:
    """True when a training file is one of the shared samples of the
    reduced-scale protocol (a path under ``shared/data/`` or a ``*_sample*`` file)."""
    if not data:
        return False
    train = data.get("train") or {}
    paths = [str(train.get("path") or "")] + [str((r or {}).get("path") or "") for r in (data.get("files") or {}).values()]
    for path in filter(None, paths):
        resolved = Path(path).resolve().as_posix() + ("/" if Path(path).is_dir() else "")
        if any(part in resolved for part in _SHARED_SAMPLES) or "_sample" in Path(path).name:
            return True
    return False


def _encoder_path(config: dict[str, Any] | None, meta: dict[str, Any] | None) -> str | None:
    """The BERT-family encoder the model was built from: the checkpoint's own
    record first (a stage-two run's config.json may not name A's encoder),
    then the run's ``model.path`` (None: the default all-MiniLM-L6-v2)."""
    spec = ((meta or {}).get("model") or {}).get("spec") or {}
    return spec.get("model_path") or ((config or {}).get("model") or {}).get("path")


def _is_minilm(family: str | None, config: dict[str, Any] | None, meta: dict[str, Any] | None = None) -> bool:
    if family != "hf":
        return False
    path = _encoder_path(config, meta)
    return path is None or "minilm" in str(path).lower()


def _what(results: dict[str, Any] | None, config: dict[str, Any] | None, meta: dict[str, Any] | None) -> list[str]:
    family = (results or {}).get("family") or ((meta or {}).get("model") or {}).get("family")
    kind = (meta or {}).get("kind") or ("vaa" if (results or {}).get("stage") == "stage2" else "model")
    name = {
        "esim": "ESIM (GloVe word vectors)",
        "hf": f"BERT-family encoder ({_encoder_path(config, meta) or 'all-MiniLM-L6-v2'})",
    }
    lines = [f"- family: {name.get(str(family), family or 'unknown')}"]
    if kind == "vaa":
        vaa = (results or {}).get("vaa") or (meta or {}).get("vaa") or {}
        attack = (results or {}).get("attack") or (meta or {}).get("attack") or {}
        a_path = (
            ((results or {}).get("info") or {}).get("model_a") or vaa.get("model_a") or (meta or {}).get("model_a_checkpoint")
        )
        lines += [
            "- stage two: model B, trained with the vulnerability vector V of a frozen model A (Zhang et al., COLING 2020)",
            f"- model A: {a_path or 'unknown'}",
            f"- V injected as: {vaa.get('injection', '?')}; B reads: {vaa.get('b_input', '?')} input; "
            f"V from: {vaa.get('vulnerability', '?')}; attack: {attack.get('norm', '?')} FGSM, eps {attack.get('eps', '?')}",
        ]
    else:
        lines.append("- stage one: model A, a sentence-matching classifier")
    labels = ((meta or {}).get("model") or {}).get("label_map", {}).get("names")
    if labels:
        lines.append(f"- labels (probability columns in this order): {', '.join(map(str, labels))}")
    return lines


def _data(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return ["- not recorded (no data.json)"]
    lines = []
    for split in ("train", "valid", "test"):
        report = data.get(split)
        if isinstance(report, dict):
            lines.append(
                f"- {split}: {report.get('path', '?')} ({report.get('kept', '?')} pairs, format {report.get('format', '?')})"
            )
    lines += [f"- note: {note}" for note in data.get("notes") or []]
    return lines


def _protocol(results: dict[str, Any] | None, config: dict[str, Any] | None) -> list[str]:
    if not results:
        return ["- not recorded (no results.json)"]
    optim = (config or {}).get("optim") or {}
    lines = [
        f"- epochs run: {results.get('epochs', '?')} (best validation epoch: {results.get('best_epoch', '?')}; "
        f"{results.get('stop_reason', 'stop reason not recorded')})",
        f"- seed: {results.get('seed', '?')}",
    ]
    if optim:
        lines.append(
            f"- optimiser: {optim.get('optimizer', '?')}, lr {optim.get('lr', '?')}, batch {optim.get('batch_size', '?')}, "
            f"schedule {optim.get('scheduler', '?')}, patience {optim.get('patience', '?')}"
        )
    adversarial = (config or {}).get("train") or {}
    if adversarial.get("adversarial_training", "none") != "none":
        steps = f", {adversarial.get('adversarial_steps')} steps" if adversarial["adversarial_training"] == "pgd" else ""
        lines.append(
            f"- adversarial training: {adversarial['adversarial_training']} on the word embeddings (gold label), "
            f"{adversarial.get('adversarial_norm')} eps {adversarial.get('adversarial_eps')}{steps}, "
            f"loss = clean + {adversarial.get('adversarial_weight')} x adversarial"
        )
    return lines


def _results(results: dict[str, Any] | None) -> list[str]:
    scores = (results or {}).get("scores") or {}
    lines = [_score_line(name, scores[name]) for name in ("valid", "test") if isinstance(scores.get(name), dict)]
    a_scores = (results or {}).get("model_a_scores") or {}
    lines += [
        _score_line(f"model A, {name}", a_scores[name]) for name in ("valid", "test") if isinstance(a_scores.get(name), dict)
    ]
    return lines or ["- no scores recorded"]


def _calibration(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return ["- none stored: predictions are the model's own probabilities"]
    from .calibration import Calibration, CalibrationError

    try:
        rule = Calibration.from_json(calibration.get("calibration", {}))
    except CalibrationError as exc:
        return [f"- calibration.json is unreadable ({exc})"]
    lines = [f"- {rule.describe()}; `predict`/`evaluate` apply it (`--raw` / `raw=True` for the model's own output)"]
    cross = (calibration.get("report") or {}).get("after_cross_fitted")
    if isinstance(cross, dict):
        lines.append(
            f"- cross-fitted on validation: accuracy {_fmt(cross.get('accuracy'))}, log-loss {_fmt(cross.get('log_loss'))}, "
            f"ECE {_fmt(cross.get('ece'))}"
        )
    return lines


def _caveats(
    results: dict[str, Any] | None,
    config: dict[str, Any] | None,
    data: dict[str, Any] | None,
    family: str | None,
    meta: dict[str, Any] | None,
) -> list[str]:
    lines = []
    if _uses_shared_samples(data):
        lines.append(
            "- Reduced-scale protocol: trained on a random sample of the training split (thousands of pairs, not the "
            "paper's 384k-550k), so accuracy is below the paper's Table 3."
        )
    if _is_minilm(family, config, meta):
        lines.append(
            "- all-MiniLM-L6-v2 was contrastively pre-trained on sentence pairs that include SNLI, MultiNLI and Quora "
            "(QQP): its scores on these data sets are optimistic compared with an encoder that never saw them."
        )
    lines.append("- Validation accuracy selected the best epoch, so it is an optimistic estimate; a separate test file is not.")
    return lines


def render(
    results: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    source: str | None = None,
) -> str:
    """The card's Markdown from the run's records (any may be missing) and
    the checkpoint's ``vaa.json`` (``meta``)."""
    family = (results or {}).get("family") or ((meta or {}).get("model") or {}).get("family")
    stage = "stage two (VAA)" if (results or {}).get("stage") == "stage2" or (meta or {}).get("kind") == "vaa" else "stage one"
    sections = [
        (
            None,
            [
                f"# vaa model: {family or 'unknown family'}, {stage}",
                "",
                "Written by vaa from the run's records (results.json, config.json, data.json, calibration.json)."
                + (f" Source: `{source}`." if source else ""),
                'Load it with `vaa.load("<this folder>")`.',
            ],
        ),
        ("Model", _what(results, config, meta)),
        ("Data", _data(data)),
        ("Protocol", _protocol(results, config)),
        ("Results (best checkpoint)", _results(results)),
        ("Calibration", _calibration(calibration)),
        ("Caveats", _caveats(results, config, data, family, meta)),
    ]
    out: list[str] = []
    for title, lines in sections:
        if title:
            out += ["", f"## {title}", ""]
        out += lines
    return "\n".join(out) + "\n"


def run_card(run_dir: str | Path, meta: dict[str, Any] | None = None) -> str:
    """The card of a run folder, from the records in it."""
    run_dir = Path(run_dir)
    if meta is None:
        meta = _read(run_dir / "checkpoints" / "best" / "vaa.json")
    return render(
        _read(run_dir / "results.json"),
        _read(run_dir / "config.json"),
        _read(run_dir / "data.json"),
        _read(run_dir / "calibration.json"),
        meta,
        source=str(run_dir),
    )


def write_run_card(run_dir: str | Path) -> Path:
    """Write (or refresh) ``<run>/README.md``, atomically."""
    from .files import atomic_write_text

    return atomic_write_text(run_card(run_dir), Path(run_dir) / CARD)
