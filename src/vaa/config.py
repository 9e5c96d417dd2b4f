"""Run configuration: one dataclass describes a whole stage-one or stage-two run.

Presets (``vaa/configs/*.yaml``, shipped inside the package) fill these fields; command-line flags override
them; the resolved config is written to every run folder (``config.json``), so
a run can always be repeated or resumed exactly.

Each field carries its help text, allowed values and bounds in its metadata
(:func:`setting`). Every value that reaches a config object -- from a preset,
a flag, ``--set``, ``config.json`` or Python -- is converted to the field's
type and checked against them when the object is built (``__post_init__``), so
``--set optim.lr=1e-3`` (YAML reads the text ``"1e-3"``) becomes the float
0.001, and ``--batch-size 0`` or ``--eps nan`` stop with one line naming the
key, the value and what is allowed, before anything is written to disk. Rules
between the settings of a section (``check_combination``) are checked there too.

The command line's flags are generated from these fields (``config_flags.py``).
A config records which settings were given (``RunConfig.given``), as opposed
to left at their defaults: stage two inherits model A's data settings except
the given ones, and a given setting the stage never reads (``UNREAD_SECTIONS``)
is refused on the command line and warned about in Python.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .data.readers import FORMATS, ON_ERROR

PRESETS_PACKAGE = "vaa.configs"  # the presets are package data: an installed vaa finds them too
log = logging.getLogger(__name__)

# Allowed values of the enumerated settings. The modules that act on them
# (attack, models, training) import these instead of keeping lists.
FAMILIES = ("esim", "hf")
POOLINGS = ("cls", "mean")
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("plateau", "linear", "none")
NORMS = ("l2", "linf")
SCOPES = ("sentence", "pair")
DIRECTIONS = ("fgsm", "random", "random-matched")
INJECTIONS = ("token", "classifier", "add")
B_INPUTS = ("normal", "adversarial")
V3_ORDERS = ("paper", "authors")
PRECISIONS = ("fp32", "bf16", "fp16")
VULNERABILITY_SOURCES = ("attack", "zeros", "v1-only", "permuted")
NORMALIZATIONS = ("none", "layernorm", "standardize")
DIFF_SCALES = ("none", "step")
ADVERSARIAL_TRAINING = ("none", "fgm", "pgd")
# the per-pair scalars stage two can append to V3 (their widths are in features.SCALARS)
SCALAR_NAMES = ("log_distance", "log_grad_norm", "F1", "F2", "flip", "log_flip_eps", "targeted_loss_drop")
# A learning rate above this is almost surely a typo (1e30 for 1e-3): allowed, but warned about.
LR_WARN_ABOVE = 1.0
# ESIM's default cap on tokens per sentence: about twice the longest sentence
# of the shared QQP/SNLI/MultiNLI files (260 tokens, MultiNLI train sample;
# QQP 183, SNLI 82), so none is truncated, while a pasted 20,000-token
# "sentence" cannot cost minutes per pair. Truncations are counted and reported.
ESIM_MAX_TOKENS = 512


class ConfigError(ValueError):
    """A setting that does not exist or a value it cannot take."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    flags: tuple[str, ...] | None = None,
    many: bool = False,
) -> Any:
    """A dataclass field with its help text, allowed values and bounds in the
    metadata, where validation reads them and the command line is generated
    from them (``config_flags.py``). ``flags`` names the command-line flag
    when ``--<name-with-dashes>`` will not do (the first is shown, the rest
    are aliases kept for older commands); ``many`` lets the flag take several
    words, stored comma-separated (``--scalars F2 flip``)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "flags": flags, "many": many or None}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


def describe_allowed(f: dataclasses.Field, kind: Any) -> str:
    """What a field accepts, in words, for error messages and help."""
    meta = f.metadata
    if "choices" in meta:
        text = "one of " + ", ".join(meta["choices"])
    else:
        base = _base_type(kind)
        text = {int: "an integer", float: "a finite number", bool: "true or false", str: "text"}.get(base, str(base))
        bounds = [f"{op} {meta[key]:g}" for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if key in meta]
        if bounds:
            text += " " + " and ".join(bounds)
    return text + (" (or null)" if _optional(kind) else "")


def _optional(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def _base_type(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(value: Any, base: Any) -> Any:
    """``value`` as ``base`` (int, float, bool or str), or raise ValueError.
    Text is parsed (YAML and argparse may hand over "1e-3"); bool is never
    taken for a number, nor a fractional number for an integer."""
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if isinstance(value, bool):
        raise ValueError
    if base is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError
    if base is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise ValueError
    if base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        raise ValueError
    return value


def _in_bounds(value: Any, meta: Any) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    checks = {"ge": lambda b: value >= b, "gt": lambda b: value > b, "le": lambda b: value <= b, "lt": lambda b: value < b}
    return all(check(meta[key]) for key, check in checks.items() if key in meta)


def check_value(section: type, name: str, value: Any, key: str | None = None) -> Any:
    """The value of field ``name`` of the dataclass ``section``, converted to
    the field's type; ConfigError naming the key, the value and what is allowed."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    f = fields[name]
    kind = typing.get_type_hints(section)[name]
    key = key or f"{getattr(section, 'SECTION', '')}.{name}".lstrip(".")
    if value is None and _optional(kind):
        return None
    try:
        converted = _convert(value, _base_type(kind))
    except (ValueError, TypeError, OverflowError):
        converted = dataclasses.MISSING
    ok = converted is not dataclasses.MISSING
    if ok and "choices" in f.metadata:
        ok = converted in f.metadata["choices"]
    elif ok and isinstance(converted, (int, float)) and not isinstance(converted, bool):
        ok = _in_bounds(converted, f.metadata)
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {describe_allowed(f, kind)}")
    return converted


class Settings:
    """Base of the config sections: every field is converted and checked
    when the object is built (including by ``dataclasses.replace``)."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata:
                object.__setattr__(self, f.name, check_value(type(self), f.name, getattr(self, f.name)))
        self.check_combination()

    def check_combination(self) -> None:
        """Rules between the settings of one section (each alone is checked
        by its field's metadata); a ConfigError naming the keys."""


@dataclass
class DataConfig(Settings):
    """Where the pairs come from. With no ``train`` the built-in synthetic demo
    set is used; with no ``valid`` a seeded split of ``train`` is."""

    SECTION: ClassVar[str] = "data"
    train: str | None = setting(None, help="training file (default: the built-in synthetic demo set)")
    valid: str | None = setting(None, help="validation file for model selection (default: a seeded split of train)")
    test: str | None = setting(None, help="test file, reported separately, never used for selection")
    format: str = setting("auto", help="file format (auto: detected)", choices=FORMATS)
    columns: str | None = setting(None, help='generic/HF formats: which columns, e.g. "a=q1,b=q2,label=y,id=id"')
    valid_fraction: float = setting(0.1, help="share of train held out when no valid file is given", gt=0, lt=1)
    split_seed: int = setting(0, help="seed of the train/validation split", ge=0)
    limit: int | None = setting(None, help="read at most this many pairs per file (quick runs)", ge=1)
    on_error: str = setting("raise", help="raise on a malformed row, or skip it and count it in the report", choices=ON_ERROR)
    labels: str | None = setting(None, help="rename the files' labels to the model's, e.g. \"0=not_duplicate,1=duplicate\"")


@dataclass
class ModelConfig(Settings):
    """Model family and its options (see each family's ``build``)."""

    SECTION: ClassVar[str] = "model"
    family: str = setting("esim", help="model family", choices=FAMILIES)
    hidden: int = setting(300, help="ESIM hidden size (paper: 300)", ge=1)
    dropout: float = setting(0.5, help="dropout rate", ge=0, lt=1)
    vectors: str = setting("glove-6b-50d", help="ESIM word vectors: glove-6b-50d or a GloVe-format text file")
    min_count: int = setting(1, help="ESIM: words seen fewer times in training are unknown", ge=1)
    max_tokens: int = setting(
        ESIM_MAX_TOKENS, help="ESIM: tokens kept per sentence (longer ones are truncated and counted; 0: no cap)", ge=0
    )
    freeze_embeddings: bool = setting(False, help="ESIM: keep the word vectors fixed")
    path: str | None = setting(
        None,
        help="HF family: a local model folder (default: all-MiniLM-L6-v2 from its PyPI package)",
        flags=("--model", "--model-path"),
    )
    max_length: int = setting(128, help="HF family: tokens per pair incl. [CLS]/[SEP]", ge=8)
    pooling: str = setting("cls", help="HF family: cls (the model's pooler) or mean", choices=POOLINGS)


@dataclass
class OptimConfig(Settings):
    """Optimiser, schedule and stopping. Defaults are the paper's ESIM setting."""

    SECTION: ClassVar[str] = "optim"
    optimizer: str = setting("adam", help="optimiser", choices=OPTIMIZERS)
    lr: float = setting(4e-4, help="learning rate", gt=0)
    weight_decay: float = setting(0.0, help="weight decay", ge=0)
    batch_size: int = setting(64, help="training batch size", ge=1)
    eval_batch_size: int = setting(256, help="batch size for validation and prediction", ge=1)
    max_epochs: int = setting(64, help="maximum epochs", ge=1, flags=("--epochs", "--max-epochs"))
    patience: int = setting(5, help="early stopping: epochs without a gain in validation accuracy", ge=1)
    grad_clip: float = setting(10.0, help="gradient-norm clip (0: none)", ge=0)
    scheduler: str = setting("plateau", help="learning-rate schedule", choices=SCHEDULERS)
    plateau_factor: float = setting(0.5, help="plateau schedule: factor applied to the lr", gt=0, lt=1)
    plateau_patience: int = setting(0, help="plateau schedule: epochs without gain before the lr drops", ge=0)
    warmup_ratio: float = setting(0.0, help="linear schedule: share of the steps spent warming up", ge=0, lt=1)


@dataclass
class AttackConfig(Settings):
    """The FGSM attack that measures vulnerability (paper eq. 4/5)."""

    SECTION: ClassVar[str] = "attack"
    norm: str = setting("l2", help="FGSM norm: l2 (eq. 5) or linf (eq. 4)", choices=NORMS)
    eps: float = setting(0.02, help="attack strength (absolute unless relative)", ge=0)
    relative: bool = setting(False, help="eps as a fraction of the sentence's embedding scale")
    scope: str = setting("sentence", help="L2 norm per sentence (the authors') or over the pair", choices=SCOPES)
    direction: str = setting(
        "fgsm",
        help="fgsm, random (control: same norm, random direction) or random-matched "
        "(control: random direction rescaled per pair to FGSM's ||V1 - V2||)",
        choices=DIRECTIONS,
    )
    seed: int = setting(0, help="seed of the random direction", ge=0, flags=("--attack-seed",))
    steps: int = setting(1, help="1: FGSM (paper); k > 1: PGD with k steps, each projected back into the eps ball", ge=1)
    step_ratio: float = setting(2.5, help="PGD: each step is step_ratio * eps / steps (Madry et al.'s 2.5)", gt=0)
    target: int = setting(
        -1, help="-1: untargeted, away from A's prediction (paper); c >= 0: a targeted step toward class c", ge=-1
    )

    def check_combination(self) -> None:
        # PGD and targeted steps follow the gradient: a random direction has none to follow
        if self.steps > 1 and self.direction != "fgsm":
            raise ConfigError(
                f"attack.steps={self.steps} needs attack.direction fgsm (multi-step attacks follow the gradient), "
                f"not {self.direction!r}"
            )
        if self.target >= 0 and self.direction != "fgsm":
            raise ConfigError(
                f"attack.target={self.target} needs attack.direction fgsm (a targeted step follows the gradient), "
                f"not {self.direction!r}"
            )


@dataclass
class VAAConfig(Settings):
    """Stage two: how model B receives the vulnerability vector V."""

    SECTION: ClassVar[str] = "vaa"
    injection: str = setting("token", help="token (paper), classifier (authors' code) or add", choices=INJECTIONS)
    b_input: str = setting("normal", help="normal (paper), or adversarial (authors' ESIM reads E~)", choices=B_INPUTS)
    v3_order: str = setting("paper", help="paper [V1;V2;V1-V2] or authors [V1-V2;V1;V2]", choices=V3_ORDERS)
    vulnerability: str = setting(
        "attack",
        help="attack, or a control: zeros (extra training only), v1-only (V = W[V1], no attack), "
        "permuted (V1 the pair's own, the vulnerability part another pair's)",
        choices=VULNERABILITY_SOURCES,
    )
    cache: bool = setting(True, help="compute V1/V2 once per pair and reuse them across epochs")
    model_a: str | None = setting(None, help="the trained model A: run folder or checkpoint folder")
    cache_dir: str | None = setting(None, help="folder of the V1/V2 cache (default: vcache/ in stage two's run folder)")
    # Feature options (issue 12); the defaults are the paper's V = W[V1; V2; V1 - V2] + b.
    normalize: str = setting(
        "none",
        help="none (paper), layernorm (a LayerNorm per part of V3) or standardize "
        "(training-set mean/std per column, saved with B)",
        choices=NORMALIZATIONS,
    )
    diff_scale: str = setting(
        "none", help="none (paper), or step: V1 - V2 divided by the pair's attack step norm", choices=DIFF_SCALES
    )
    scalars: str = setting(
        "",
        help="comma-separated scalars appended to V3: log_distance, log_grad_norm, F1, F2, flip, "
        "log_flip_eps, targeted_loss_drop",
        many=True,
    )
    saliency: bool = setting(
        False, help="add each word's gradient saliency (relative to its sentence's largest) times a learned vector"
    )
    calibrate_flip_rate: float = setting(
        0.0, help="0: eps as given (paper); r: eps set once so the attack flips a share r of the training pairs", ge=0, lt=1
    )
    w_lr: float = setting(0.0, help="learning rate of W and the other new parameters (0: the optimiser's)", ge=0)

    def scalar_list(self) -> list[str]:
        """``scalars`` as a list: "F2,log_flip_eps" (commas or spaces)."""
        return self.scalars.replace(",", " ").split()

    def check_combination(self) -> None:
        unknown = [name for name in self.scalar_list() if name not in SCALAR_NAMES]
        if unknown:
            raise ConfigError(
                f"vaa.scalars={self.scalars!r}: unknown vulnerability scalar {unknown[0]!r} (known: {', '.join(SCALAR_NAMES)})"
            )
        if (self.scalars.strip() or self.saliency or self.diff_scale != "none") and self.b_input == "adversarial":
            raise ConfigError(
                "vaa.scalars, vaa.saliency and vaa.diff_scale need vaa.b_input normal "
                "(the authors' adversarial B input takes the plain attack only)"
            )
        if self.vulnerability == "permuted" and self.saliency:
            raise ConfigError(
                "vaa.vulnerability=permuted cannot move per-word saliency between pairs of different lengths: drop vaa.saliency"
            )


@dataclass
class TrainConfig(Settings):
    """Stage one's training objective: plain cross-entropy (the paper), or
    adversarial training on the word embeddings (a baseline practitioners use
    instead of VAA; see ``vaa.adversarial``). The attack is ``vaa.attack``'s,
    driven by the gold label."""

    SECTION: ClassVar[str] = "train"
    adversarial_training: str = setting(
        "none",
        help="none (paper), fgm (Miyato et al.: one normalised gradient step on the "
        "embeddings) or pgd (adversarial_steps projected steps)",
        choices=ADVERSARIAL_TRAINING,
    )
    adversarial_norm: str = setting(
        "l2",
        help="norm of the training perturbation: l2 (per sentence) or linf",
        choices=NORMS,
        flags=("--adv-norm", "--adversarial-norm"),
    )
    adversarial_eps: float = setting(
        1.0,
        help="radius of the training perturbation (absolute, on the looked-up embeddings)",
        gt=0,
        flags=("--adv-eps", "--adversarial-eps"),
    )
    adversarial_steps: int = setting(
        3, help="pgd: projected steps per batch (fgm: always one)", ge=2, flags=("--adv-steps", "--adversarial-steps")
    )
    adversarial_step_ratio: float = setting(
        2.5, help="pgd: each step is step_ratio * eps / steps", gt=0, flags=("--adv-step-ratio", "--adversarial-step-ratio")
    )
    adversarial_weight: float = setting(
        1.0, help="loss = clean + weight * adversarial", gt=0, flags=("--adv-weight", "--adversarial-weight")
    )


@dataclass
class RunConfig(Settings):
    """Everything one run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    vaa: VAAConfig = field(default_factory=VAAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = setting(0, help="random seed", ge=0)
    output: str = setting("runs/demo", help="run folder")
    log_every: int = setting(20, help="batches between training-loss records (the paper's Fig. 5)", ge=1)
    checkpoint_every: int = setting(0, help="batches between mid-epoch checkpoints (0: end of epoch only)", ge=0)
    threads: int = setting(0, help="torch CPU threads (0: torch's default)", ge=0)
    progress: bool = setting(True, help="show progress bars")
    tensorboard: bool = setting(
        False, help="also write TensorBoard curves into the run folder's tensorboard/ (needs the tensorboard package)"
    )
    device: str = setting(
        "auto", help="auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps; under torchrun: cuda:LOCAL_RANK"
    )
    precision: str = setting(
        "fp32",
        help="fp32 (paper) | bf16 | fp16 (CUDA only, with a gradient scaler); the FGSM step is always fp32",
        choices=PRECISIONS,
    )
    # The dotted keys someone gave (preset, flag, --set, Python overrides), as opposed to defaults: stage two
    # inherits model A's data settings except those given, even when a given value equals the default; settings
    # a stage never reads are refused when given (check_stage). Not a setting: not saved, not compared.
    given: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("given")
        return out

    def given_in(self, section: str) -> set[str]:
        """The names of the settings of ``section`` that were given."""
        return {key.partition(".")[2] for key in self.given if key.startswith(section + ".")}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunConfig:
        # "runtime" is a record of where the run computed (device, versions), not a setting;
        # a saved record is a resolved configuration, not what someone gave
        config = apply_overrides(cls(), {k: v for k, v in obj.items() if k != "runtime"})
        return dataclasses.replace(config, given=frozenset())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_json(json.loads(Path(path).read_text()))


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "attack": AttackConfig,
    "vaa": VAAConfig,
    "train": TrainConfig,
}

# The sections each stage never reads: stage one trains model A (no attack, no
# model B); stage two copies model A, whose architecture (and training
# objective) come from A's checkpoint. Given there, they would be ignored while looking applied, and a
# resumed run would be refused over a setting that changes nothing: so they are
# refused (check_stage), left out of job files and of resume comparisons.
# One place to change when a stage starts reading a section.
UNREAD_SECTIONS: dict[str, tuple[str, ...]] = {"stage1": ("attack", "vaa"), "stage2": ("model", "train")}
_WHY_UNREAD = {
    "attack": "stage one trains model A only",
    "vaa": "stage one trains model A only",
    "model": "model B is a copy of model A, whose settings come from its checkpoint",
    "train": "a stage-one option: it trains model A",
}


def stage_of(config: RunConfig) -> str:
    """stage2 for a config that names a model A, else stage1."""
    return "stage2" if config.vaa.model_a else "stage1"


def check_stage(config: RunConfig, stage: str, refuse: bool = True) -> None:
    """Settings given to ``config`` that ``stage`` never reads (e.g. ``--set
    model.hidden=100`` to train-vaa, or ``model:`` in a stage-two preset): a
    ConfigError with ``refuse``, else a warning. The command line refuses;
    the library warns, since a Python user naturally derives model B's config
    from model A's (``apply_overrides(a_config, {"vaa": {"model_a": ...}})``)."""
    unread = sorted(key for key in config.given if key.partition(".")[0] in UNREAD_SECTIONS[stage])
    if not unread:
        return
    command = "train-vaa" if stage == "stage2" else "train"
    why = "; ".join(dict.fromkeys(_WHY_UNREAD[key.partition(".")[0]] for key in unread))
    if refuse:
        raise ConfigError(
            f"{command} never reads {', '.join(unread)} ({why}): remove "
            f"{'it' if len(unread) == 1 else 'them'} from the command line or the preset"
        )
    log.warning("%s ignores %s (%s)", command, ", ".join(unread), why)


def stage_settings(config: RunConfig, stage: str) -> dict[str, Any]:
    """``config.to_json()`` without the sections ``stage`` never reads: what a
    job file holds, and what resuming a run compares."""
    return {k: v for k, v in config.to_json().items() if k not in UNREAD_SECTIONS[stage]}


def check_overrides(values: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """``values`` (nested, as in a preset) with each value converted to its
    field's type; ConfigError for an unknown key or a bad value. Needs no
    base config, so the command line is checked before anything is read."""
    top_fields = {f.name for f in dataclasses.fields(RunConfig)} - set(_SECTIONS)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a mapping of settings, not {value!r}")
            cls = _SECTIONS[key]
            known = {f.name for f in dataclasses.fields(cls)}
            for sub in value:
                if sub not in known:
                    raise ConfigError(f"{source}: unknown setting '{key}.{sub}' (known: {', '.join(sorted(known))})")
            out[key] = {sub: _checked(cls, sub, v, f"{key}.{sub}", source) for sub, v in value.items()}
        elif key in top_fields:
            out[key] = _checked(RunConfig, key, value, key, source)
        else:
            known = sorted(top_fields | set(_SECTIONS))
            raise ConfigError(f"{source}: unknown setting '{key}' (known: {', '.join(known)})")
    return out


def merge_settings(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Merge nested settings ``more`` into ``into`` key by key (``more`` wins);
    returns ``into``. The one way overrides from several places are combined
    before ``apply_overrides``."""
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge_settings(into[k], v)
        else:
            into[k] = v
    return into


def apply_overrides(config: RunConfig, values: dict[str, Any], source: str = "config") -> RunConfig:
    """Return a copy of ``config`` with nested ``values`` applied, each
    converted to its field's type and checked (:func:`check_overrides`); an
    unknown key or a bad value is a ConfigError naming the key (a typo in a
    preset must not pass silently). An absurd learning rate is warned about."""
    checked = check_overrides(values, source)
    sections = {name: _replaced(getattr(config, name), checked.get(name, {}), source) for name in _SECTIONS}
    given = set(config.given)
    for key, value in checked.items():
        given |= {f"{key}.{sub}" for sub in value} if key in _SECTIONS else {key}
    out = dataclasses.replace(
        config, **sections, **{k: v for k, v in checked.items() if k not in _SECTIONS}, given=frozenset(given)
    )
    if "lr" in checked.get("optim", {}) and out.optim.lr > LR_WARN_ABOVE:
        log.warning(
            "%s: optim.lr=%g is far above any usual learning rate (1e-5 to 1e-2): training will most likely "
            "diverge (a lost minus sign in the exponent?)",
            source,
            out.optim.lr,
        )
    return out


def _replaced(section: Any, values: dict[str, Any], source: str) -> Any:
    """``section`` with ``values``; a broken rule between settings names the source."""
    try:
        return dataclasses.replace(section, **values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _checked(cls: type, name: str, value: Any, key: str, source: str) -> Any:
    try:
        return check_value(cls, name, value, key)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def shipped_presets() -> dict[str, Traversable]:
    """The presets that ship inside the package (name -> file), found with
    ``importlib.resources`` so that a regular (non-editable) install, a wheel
    or a zip import finds them as well as a source checkout."""
    folder = resources.files(PRESETS_PACKAGE)
    return {item.name[: -len(".yaml")]: item for item in folder.iterdir() if item.name.endswith(".yaml") and item.is_file()}


def resolve_preset(name: str) -> Path | Traversable:
    """A preset by file path, or by name (``qqp-esim`` or ``qqp-esim.yaml``)
    among the shipped presets. A file path wins over a shipped name."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_presets()
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem in shipped:
        return shipped[stem]
    raise FileNotFoundError(f"no preset {name!r} (a YAML file, or one of: {', '.join(sorted(shipped))})")


def load_preset(name: str, base: RunConfig | None = None) -> RunConfig:
    """Apply a YAML preset to ``base``. A preset may name another with
    ``extends:`` (e.g. the stage-two preset extends the stage-one one)."""
    path = resolve_preset(name)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of settings")
    parent = values.pop("extends", None)
    config = load_preset(parent, base) if parent else (base or RunConfig())
    return apply_overrides(config, values, source=str(path))
