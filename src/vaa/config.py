"""Run configuration: one dataclass describes a whole stage-one or stage-two run.

Presets in ``configs/*.yaml`` fill these fields; command-line flags override
them; the resolved config is written to every run folder (``config.json``), so
a run can always be repeated or resumed exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class DataConfig:
    """Where the pairs come from. With no ``train`` the built-in synthetic demo
    set is used; with no ``valid`` a seeded split of ``train`` is."""

    train: str | None = None
    valid: str | None = None
    test: str | None = None
    format: str = "auto"
    columns: str | None = None  # generic/HF formats: "a=q1,b=q2,label=y,id=id"
    valid_fraction: float = 0.1
    split_seed: int = 0
    limit: int | None = None  # read at most this many pairs per file (quick runs)
    on_error: str = "raise"  # or "skip": skip malformed rows, counted in the report
    labels: str | None = None  # rename the file's labels to the model's: "0=not_duplicate,1=duplicate"


@dataclass
class ModelConfig:
    """Model family and its options (see each family's ``build``)."""

    family: str = "esim"
    hidden: int = 300
    dropout: float = 0.5
    vectors: str = "glove-6b-50d"  # or a path to a GloVe-format text file
    min_count: int = 1
    max_tokens: int = 0  # 0: never truncate ESIM inputs
    freeze_embeddings: bool = False
    path: str | None = None  # HF family: a local model folder (default: all-MiniLM-L6-v2 from its PyPI package)
    max_length: int = 128  # HF family: tokens per pair incl. [CLS]/[SEP]
    pooling: str = "cls"  # HF family: "cls" (BERT pooler) or "mean"


@dataclass
class OptimConfig:
    """Optimiser, schedule and stopping. Defaults are the paper's ESIM setting."""

    optimizer: str = "adam"  # adam | adamw
    lr: float = 4e-4
    weight_decay: float = 0.0
    batch_size: int = 64
    eval_batch_size: int = 256
    max_epochs: int = 64
    patience: int = 5  # early stopping on validation accuracy
    grad_clip: float = 10.0
    scheduler: str = "plateau"  # plateau | linear | none
    plateau_factor: float = 0.5
    plateau_patience: int = 0
    warmup_ratio: float = 0.0  # linear schedule only


@dataclass
class AttackConfig:
    """The FGSM attack that measures vulnerability (paper eq. 4/5)."""

    norm: str = "l2"  # l2 | linf
    eps: float = 0.02
    relative: bool = False  # eps as a fraction of the sentence's embedding scale
    scope: str = "sentence"  # sentence (the authors' per-sentence norm) | pair
    direction: str = "fgsm"  # fgsm | random (control: same norm, random direction)
    seed: int = 0  # for the random direction


@dataclass
class VAAConfig:
    """Stage two: how model B receives the vulnerability vector V."""

    injection: str = "token"  # token (paper) | classifier (authors' code) | add
    b_input: str = "normal"  # normal (paper) | adversarial (authors' ESIM reads E~)
    v3_order: str = "paper"  # paper [V1;V2;V1-V2] | authors [V1-V2;V1;V2]
    vulnerability: str = "attack"  # attack | zeros (control: extra training only)
    cache: bool = True  # compute V1/V2 once per pair and reuse them across epochs
    model_a: str | None = None  # checkpoint of the trained model A


@dataclass
class RunConfig:
    """Everything one run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    vaa: VAAConfig = field(default_factory=VAAConfig)
    seed: int = 0
    output: str = "runs/demo"
    log_every: int = 20  # batches between training-loss records (the paper's Fig. 5)
    checkpoint_every: int = 0  # batches between mid-epoch checkpoints (0: end of epoch only)
    threads: int = 0  # torch threads (0: torch's default)
    progress: bool = True
    device: str = "auto"  # auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps; under torchrun: cuda:LOCAL_RANK
    precision: str = "fp32"  # fp32 (paper) | bf16 | fp16 (CUDA only, with a gradient scaler); the FGSM step is always fp32

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "RunConfig":
        # "runtime" is a record of where the run computed (device, versions), not a setting
        return apply_overrides(cls(), {k: v for k, v in obj.items() if k != "runtime"})

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_json(json.loads(Path(path).read_text()))


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "attack": AttackConfig, "vaa": VAAConfig}


def apply_overrides(config: RunConfig, values: dict[str, Any], source: str = "config") -> RunConfig:
    """Return a copy of ``config`` with nested ``values`` applied; unknown keys
    are an error naming the key (a typo in a preset must not pass silently)."""
    out = dataclasses.replace(config, **{k: dataclasses.replace(getattr(config, k)) for k in _SECTIONS})
    for key, value in values.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{key}' must be a mapping")
            section = getattr(out, key)
            known = {f.name for f in dataclasses.fields(section)}
            for sub, sub_value in value.items():
                if sub not in known:
                    raise ValueError(f"{source}: unknown setting '{key}.{sub}' (known: {sorted(known)})")
                setattr(section, sub, sub_value)
        elif key in {f.name for f in dataclasses.fields(RunConfig)}:
            setattr(out, key, value)
        else:
            raise ValueError(f"{source}: unknown setting '{key}'")
    return out


def resolve_preset(name: str) -> Path:
    """A preset by file path or by name in the repository's ``configs/``."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (REPO_CONFIGS / name, REPO_CONFIGS / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in REPO_CONFIGS.glob("*.yaml")) if REPO_CONFIGS.exists() else []
    raise FileNotFoundError(f"no preset {name!r} (a YAML file, or one of: {', '.join(known)})")


def load_preset(name: str, base: RunConfig | None = None) -> RunConfig:
    """Apply a YAML preset to ``base``. A preset may name another with
    ``extends:`` (e.g. the stage-two preset extends the stage-one one)."""
    path = resolve_preset(name)
    values = yaml.safe_load(path.read_text()) or {}
    parent = values.pop("extends", None)
    config = load_preset(parent, base) if parent else (base or RunConfig())
    return apply_overrides(config, values, source=str(path))
