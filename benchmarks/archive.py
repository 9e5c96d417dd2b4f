"""Keep the compact outcome of finished benchmark runs in the repository, and
bring it back as run folders that ``table3.py --summarize-only``,
``screen.py --summarize-only`` and ``collect.py`` read.

Run folders under benchmarks/out/ do not outlive the machine they ran on, and
one session's CPU time holds about two seeds of a reduced-scale Table 3. The
archive lets seeds trained on different days be summarised together, with
their per-pair paired tests, without re-training the older ones.

    .venv/bin/python benchmarks/archive.py save mnli          # benchmarks/out/mnli -> benchmarks/archive/mnli
    .venv/bin/python benchmarks/archive.py restore mnli       # benchmarks/archive/mnli -> benchmarks/out/mnli
    .venv/bin/python benchmarks/archive.py list

Kept per run (a folder with config.json and saved predictions): the small
text files (config.json, label_map.json, data.json, results.json, loss.jsonl,
metrics.jsonl, and any other JSON the run or a benchmark wrote beside them)
and predictions/<split>.npz *without the gold labels*: the labels belong to
the data set, which is never committed. ``restore`` re-reads them from the
file named in the run's config.json (the same reader and settings) and
refuses a run whose labels do not match the SHA-256 stored at save time.
Weights, caches and features are not kept: a restored run can be summarised,
not resumed or attacked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from protocol import OUT
from vaa.config import RunConfig
from vaa.data.pairs import LabelMap
from vaa.data.sources import load_splits
from vaa.runs import write_npz

ARCHIVE = "benchmarks/archive"
# text files of a run folder worth keeping (the rest is weights and caches)
KEPT_SUFFIXES = (".json", ".jsonl", ".md")
MAX_KEPT_BYTES = 2_000_000
GOLD_KEY = "gold_sha256"
NOT_SEARCHED = frozenset({"checkpoints", "vcache", "features", "predictions", "tensorboard", "jobs", "analysis"})


class ArchiveError(Exception):
    """An archived run that cannot be restored as it was saved."""


def gold_hash(gold: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(gold, dtype=np.int64).tobytes()).hexdigest()


def run_folders(root: Path) -> list[Path]:
    """Every run folder under ``root`` (config.json plus saved predictions),
    in a fixed order; linked runs (reused model A's) are followed."""
    found = []
    for folder, _, files in os.walk(root, followlinks=True):
        if "config.json" in files and (Path(folder) / "predictions").is_dir():
            found.append(Path(folder))
    return sorted(found)


def _kept(f: Path) -> bool:
    return f.is_file() and f.suffix in KEPT_SUFFIXES and f.stat().st_size <= MAX_KEPT_BYTES


def loose_files(root: Path) -> list[Path]:
    """Small text files under ``root`` outside every run folder: what a
    benchmark wrote beside the runs (e.g. a robustness JSON, a screening
    summary); weights, caches and job folders are not searched."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        if "config.json" in files and (here / "predictions").is_dir():
            dirs[:] = []  # a run folder: save_run keeps its files
            continue
        dirs[:] = sorted(d for d in dirs if d not in NOT_SEARCHED)
        found += [here / f for f in files if _kept(here / f)]
    return sorted(found)


def save_run(run: Path, target: Path) -> list[str]:
    """Copy one run's compact outcome to ``target``; returns what was kept."""
    kept = []
    target.mkdir(parents=True, exist_ok=True)
    for f in sorted(run.iterdir()):
        if _kept(f):
            shutil.copyfile(f, target / f.name)
            kept.append(f.name)
    for npz in sorted((run / "predictions").glob("*.npz")):
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files if k != "gold"}
            arrays[GOLD_KEY] = np.array(gold_hash(data["gold"]))
        write_npz(target / "predictions" / npz.name, **arrays)
        kept.append(f"predictions/{npz.name}")
    return kept


def gold_labels(run: Path, split: str) -> np.ndarray:
    """The gold label indices of a split as the run read it: its data
    settings from config.json, its label order from label_map.json."""
    config = RunConfig.load(run / "config.json")
    label_map = LabelMap.from_json(json.loads((run / "label_map.json").read_text()))
    part = getattr(load_splits(config.data, label_map), split)
    if part is None:
        raise ArchiveError(f"{run}: config.json names no {split} file")
    return np.array([label_map.index(p.label) if p.label is not None else -1 for p in part], dtype=np.int64)


def rebuilt_predictions(archived: Path) -> dict[str, dict[str, np.ndarray]]:
    """An archived run's prediction files with their gold labels re-read from
    the data and checked against the hash stored at save time."""
    rebuilt: dict[str, dict[str, np.ndarray]] = {}
    for npz in sorted((archived / "predictions").glob("*.npz")):
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files if k != GOLD_KEY}
            expected = str(data[GOLD_KEY])
        gold = gold_labels(archived, npz.stem)
        if len(gold) != len(arrays["predicted"]) or gold_hash(gold) != expected:
            raise ArchiveError(
                f"{archived}: the gold labels of {npz.stem} read from the data now ({len(gold)} pairs) are not the "
                f"ones the run was scored on ({len(arrays['predicted'])} pairs); was the data file changed?"
            )
        rebuilt[npz.name] = {"predicted": arrays.pop("predicted"), "gold": gold, **arrays}
    return rebuilt


def write_run(archived: Path, rebuilt: dict[str, dict[str, np.ndarray]], target: Path) -> list[str]:
    """One run folder from its archived files and rebuilt predictions."""
    target.mkdir(parents=True, exist_ok=True)
    restored = []
    for f in sorted(archived.iterdir()):
        if f.is_file():
            shutil.copyfile(f, target / f.name)
            restored.append(f.name)
    for name, arrays in rebuilt.items():
        write_npz(target / "predictions" / name, **arrays)
        restored.append(f"predictions/{name}")
    return restored


def save(folder: str, out: Path, archive: Path) -> int:
    runs = run_folders(out / folder)
    for run in runs:
        rel = run.relative_to(out)
        print(f"{rel}: {len(save_run(run, archive / rel))} files kept")
    for f in loose_files(out / folder):
        (archive / f.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, archive / f.relative_to(out))
        print(f"{f.relative_to(out)}: kept")
    return len(runs)


def restore(folder: str, out: Path, archive: Path, replace: bool = False) -> int:
    """Restore every archived run of ``folder``. Every run's labels are
    checked before anything is written, so a mismatch leaves nothing behind;
    a run folder that already has predictions (a real run, or an earlier
    restore), and a file that is already there, are left alone unless
    ``replace``."""
    todo = []
    for archived in run_folders(archive / folder):
        rel = archived.relative_to(archive)
        if (out / rel / "predictions").is_dir() and not replace:
            print(f"{rel}: already there, left alone")
            continue
        todo.append((archived, rel, rebuilt_predictions(archived)))
    for archived, rel, rebuilt in todo:
        print(f"{rel}: {len(write_run(archived, rebuilt, out / rel))} files restored")
    for f in loose_files(archive / folder):
        target = out / f.relative_to(archive)
        if replace or not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            print(f"{f.relative_to(archive)}: restored")
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "restore", "list"])
    parser.add_argument("folders", nargs="*", help="result folders under --out, e.g. mnli qqp-minilm qqp-screen")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--archive", default=ARCHIVE)
    parser.add_argument("--replace", action="store_true", help="restore: overwrite runs that are already there")
    args = parser.parse_args(argv)
    out, archive = Path(args.out), Path(args.archive)
    if args.action == "list":
        for run in run_folders(archive) if archive.exists() else []:
            print(run.relative_to(archive))
        return 0
    if not args.folders:
        parser.error(f"{args.action}: name at least one result folder")
    try:
        for folder in args.folders:
            source = out / folder if args.action == "save" else archive / folder
            if not source.is_dir():
                raise ArchiveError(f"{source}: no such folder")
            if args.action == "save":
                save(folder, out, archive)
            else:
                restore(folder, out, archive, args.replace)
    except ArchiveError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
