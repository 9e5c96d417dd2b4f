"""From a ``DataConfig`` to train/valid/test pair sets and the label map.

This is the one place that decides where a run's data comes from: the files a
user names, a seeded split of the training file when no validation file is
given, or the built-in synthetic demo set when no file is given at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..demo import DEMO_LABELS, demo_splits
from .pairs import DataError, LabelMap, PairDataset, ReadReport
from .readers import ColumnSpec, preferred_labels, read_pairs
from .split import train_valid_split


@dataclass
class Splits:
    """The run's three parts, the label map, and ``files``: the read report
    of each file as read (rows, kept, skipped by reason). With no validation
    file, train and valid are parts of one file, whose report is the only one
    that knows what was skipped."""

    train: PairDataset
    valid: PairDataset
    test: PairDataset | None
    label_map: LabelMap
    notes: list[str]
    files: dict[str, ReadReport] = field(default_factory=dict)

    def reports(self) -> dict[str, Any]:
        out: dict[str, Any] = {"train": self.train.report.to_json(), "valid": self.valid.report.to_json(), "notes": self.notes}
        if self.test is not None:
            out["test"] = self.test.report.to_json()
        out["files"] = {name: report.to_json() for name, report in self.files.items()}
        out["skipped"] = sum(sum(r.skipped.values()) for r in self.files.values())
        return out

    def summary_lines(self) -> list[str]:
        """What to tell the user: each file as read (with its skip counts),
        the notes, and the parts that are not a whole file."""
        lines = [report.summary() for report in self.files.values()] + list(self.notes)
        whole = {id(r) for r in self.files.values()}
        for name in ("train", "valid", "test"):
            part = getattr(self, name)
            if part is not None and id(part.report) not in whole:
                lines.append(f"{name}: {len(part)} pairs ({part.report.path})")
        return lines


def _head(data: PairDataset, limit: int) -> PairDataset:
    return data if len(data) <= limit else data.subset(range(limit), f"first {limit}")


def read_file(path: str, cfg: DataConfig, require_labels: bool = False) -> PairDataset:
    """Read one file with the run's format, column, error and label settings."""
    columns = ColumnSpec.parse(cfg.columns) if cfg.columns else None
    data = read_pairs(
        path, format=cfg.format, columns=columns, on_error=cfg.on_error, limit=cfg.limit, require_labels=require_labels
    )
    return relabel(data, parse_label_mapping(cfg.labels)) if cfg.labels else data


def parse_label_mapping(text: str) -> dict[str, str]:
    """``"0=not_duplicate,1=duplicate"`` -> {"0": "not_duplicate", "1": "duplicate"}:
    how a file spells each label, and the model's name for it."""
    mapping: dict[str, str] = {}
    for item in text.split(","):
        source, sep, target = (part.strip() for part in item.partition("="))
        if not sep or not source or not target:
            raise DataError(f"label mapping {text!r}: expected FILE_LABEL=MODEL_LABEL[,...], got {item.strip()!r}")
        if source in mapping:
            raise DataError(f"label mapping {text!r}: {source!r} is mapped twice")
        mapping[source] = target
    return mapping


def relabel(data: PairDataset, mapping: dict[str, str]) -> PairDataset:
    """The pairs with their labels renamed by ``mapping`` (labels it does not
    name are kept, so a label the model does not know is still caught)."""
    pairs = [dataclasses.replace(p, label=mapping.get(p.label, p.label)) if p.label is not None else p for p in data.pairs]
    return PairDataset(pairs, data.report)


def check_labels(label_map: LabelMap, data: PairDataset) -> None:
    """Every gold label of ``data`` must be one the model knows."""
    unknown = sorted({p.label for p in data if p.label is not None and p.label not in label_map})
    if unknown:
        raise DataError(f"labels {unknown} do not occur in the training data (known: {label_map.names})", data.report.path)


def load_splits(cfg: DataConfig, label_map: LabelMap | None = None) -> Splits:
    """The run's data. ``label_map`` (from a checkpoint) fixes the label order;
    otherwise it is built from the training labels."""
    notes: list[str] = []
    files: dict[str, ReadReport] = {}
    if cfg.train is None:
        demo = demo_splits(seed=cfg.split_seed)
        train, valid, test = demo["train"], demo["valid"], demo["test"]
        if cfg.limit:
            train, valid = (_head(part, cfg.limit) for part in (train, valid))
        notes.append("no data given: using the built-in SYNTHETIC demo set (generated paraphrase pairs, not real data)")
        preferred: tuple[str, ...] | None = DEMO_LABELS
    else:
        if cfg.valid:
            train = read_file(cfg.train, cfg, require_labels=True)
            valid = read_file(cfg.valid, cfg, require_labels=True)
            files.update(train=train.report, valid=valid.report)
        else:
            # split the whole file first and cut to the limit afterwards, so that
            # a quick run (--limit) never moves training pairs into validation
            whole = read_file(cfg.train, dataclasses.replace(cfg, limit=None), require_labels=True)
            files["train"] = whole.report
            train, valid = train_valid_split(whole, cfg.valid_fraction, seed=cfg.split_seed)
            if cfg.limit:
                train, valid = (_head(part, cfg.limit) for part in (train, valid))
            notes.append(f"no validation file: held out {cfg.valid_fraction:.0%} of the training file (seed {cfg.split_seed})")
        preferred = preferred_labels(train.report.format)
        test = read_file(cfg.test, cfg) if cfg.test else None
        if test is not None:
            files["test"] = test.report
    if label_map is None:
        label_map = LabelMap.from_labels(train.labels(), preferred)
        if len(label_map) < 2:
            raise DataError(
                f"the training pairs have only one class ({', '.join(label_map.names)}): a classifier needs at "
                "least two; check the label column (--columns ...,label=...)",
                files.get("train", train.report).path,
            )
    for part in (train, valid, test):
        if part is not None:
            check_labels(label_map, part)
    return Splits(train, valid, test, label_map, notes, files)
