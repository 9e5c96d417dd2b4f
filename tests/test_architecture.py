"""The layering of docs/architecture.md, checked: a module imports only
modules of its own layer or of layers below it (imports inside functions
count too). A new module must be given a layer here and in the document."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; keep in step with docs/architecture.md
LAYERS: list[tuple[str, list[str]]] = [
    ("basics", ["vaa.files", "vaa.guards", "vaa.progress", "vaa.log_setup", "vaa.figures", "vaa.run_folder"]),
    (
        "data: pairs and formats",
        [
            "vaa.data",
            "vaa.data.pairs",
            "vaa.data.names",
            "vaa.data.text",
            "vaa.data.batching",
            "vaa.data.readers",
            "vaa.data.split",
            "vaa.data.embeddings",
            "vaa.demo",
        ],
    ),
    (
        "configuration, devices, scores",
        [
            "vaa.config",
            "vaa.config_flags",
            "vaa.configs",
            "vaa.device",
            "vaa.runtime",
            "vaa.calibration",
            "vaa.metrics",
            "vaa.significance",
            "vaa.model_card",
        ],
    ),
    ("data loading", ["vaa.data.sources", "vaa.data.example_cache"]),
    ("models", ["vaa.models", "vaa.models.base", "vaa.models.esim", "vaa.models.hf", "vaa.models.unrolled_lstm"]),
    ("attack and vulnerability", ["vaa.attack", "vaa.vulnerability", "vaa.features", "vaa.adversarial"]),
    ("the VAA model", ["vaa.models.vaa"]),
    ("checkpoints and prediction", ["vaa.checkpoint", "vaa.prediction"]),
    ("training", ["vaa.training"]),
    ("run folders", ["vaa.runs", "vaa.tensorboard_log"]),
    ("stages and inference", ["vaa.stage_one", "vaa.stage_two", "vaa.inference", "vaa.pretrained", "vaa.jobs"]),
    (
        "analysis and experiments",
        [
            "vaa.analysis",
            "vaa.analysis.analyze",
            "vaa.analysis.defaults",
            "vaa.analysis.plots",
            "vaa.analysis.probe",
            "vaa.analysis.roc",
            "vaa.analysis.theorem",
            "vaa.analysis.theorem_report",
            "vaa.experiments",
            "vaa.robustness",
        ],
    ),
    ("command line", ["vaa.cli", "vaa.__main__", "vaa"]),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere in the file
    (``from .x import y`` resolves to ``x.y`` when that is a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.split(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(name)
    return found


def violations(root: Path, layers: list[tuple[str, list[str]]]) -> list[str]:
    """Every import of a higher layer by a lower one, and every module with no layer."""
    rank = {module: k for k, (_, modules) in enumerate(layers) for module in modules}
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    problems = [
        f"{m} has no layer: add it to LAYERS (tests/test_architecture.py) and docs/architecture.md"
        for m in files
        if m not in rank
    ]
    for module, path in files.items():
        for target in sorted(imported_modules(path, root, set(files))):
            if module in rank and target in rank and rank[target] > rank[module]:
                problems.append(
                    f"{module} (layer '{layers[rank[module]][0]}') imports {target} (layer '{layers[rank[target]][0]}', higher)"
                )
    return problems


def test_no_module_imports_a_higher_layer():
    assert violations(SRC, LAYERS) == []


def test_every_layered_module_exists():
    files = {module_name(p, SRC) for p in SRC.rglob("*.py")}
    assert sorted(m for _, modules in LAYERS for m in modules if m not in files) == []


def test_the_checker_catches_upward_imports_of_every_form(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("from . import mid\n")  # up by a relative `from . import`
    (pkg / "mid.py").write_text("def f():\n    from .sub import high\n    return high\n")  # up, lazily inside a function
    (pkg / "sub" / "high.py").write_text("import toy.low\nfrom ..mid import f\n")  # down: allowed
    (pkg / "stray.py").write_text("")
    layers = [("low", ["toy", "toy.low"]), ("mid", ["toy.mid", "toy.sub"]), ("high", ["toy.sub.high"])]
    found = violations(tmp_path, layers)
    assert "toy.low (layer 'low') imports toy.mid (layer 'mid', higher)" in found
    assert "toy.mid (layer 'mid') imports toy.sub.high (layer 'high', higher)" in found
    assert any(line.startswith("toy.stray has no layer") for line in found)
    assert len(found) == 3
