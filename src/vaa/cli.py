"""The ``vaa`` command: argument parsing and printing over the library.

Each command turns its arguments into the library's config (or plain
arguments) and calls the function a Python user would import
(``stage_one.train``, ``inference.predict`` ...); nothing is computed here.
The per-setting flags (``--lr``, ``--eps``, ``--format`` ...) are generated
from the config dataclasses (``config_flags.py``): their names, types,
defaults, allowed values and help live with the settings in ``config.py``.
The flags written here are the commands' own (paths, ``--preset``, ``--set``,
``--output`` of the analysis commands ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .analysis.defaults import DEFAULT_EPS, ROBUSTNESS_L2_EPS, ROBUSTNESS_LINF_EPS, ROBUSTNESS_PGD_STEPS
from .config import (
    UNREAD_SECTIONS,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_overrides,
    check_stage,
    load_preset,
    merge_settings,
)
from .config_flags import DEST_PREFIX, add_setting_flags, flag_value, given_values, select, settings_from_args

# The settings each command takes as flags, besides its own arguments.
TRAIN_SETTINGS = select(["*"], exclude=UNREAD_SECTIONS["stage1"])
TRAIN_VAA_SETTINGS = select(["*"], exclude=UNREAD_SECTIONS["stage2"])
READ_SETTINGS = select(["data.format", "data.columns", "data.limit", "data.on_error", "data.labels"])  # reading a data file
ATTACK_SETTINGS = select(["attack"])
SHARED_RUN_SETTINGS = select(["threads", "progress", "device"])  # reproduce and demo pass these to every run


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size of 0 is a mistake)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _nested(key: str, value: Any) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value)} if rest else {head: value}


def _parse_value(raw: str) -> Any:
    """A ``--set`` value as YAML reads it (numbers, true/false, null); text
    that is not valid YAML stays text. The config converts it to the field's
    type, so "1e-3" (a string to YAML) still becomes a float."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _key_values(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE (e.g. optim.lr=1e-3), got {item!r}")
        merge_settings(values, _nested(key.strip(), _parse_value(raw)))
    return values


def build_config(
    args: argparse.Namespace, default_preset: str | Callable[[], str | None] | None = None, stage: str | None = None
) -> RunConfig:
    """Preset, then flags, then ``--set key=value`` overrides; every key given
    is recorded in ``config.given`` (stage two inherits model A's data except
    those). The flags are checked first, so a bad value is reported before
    the preset's choice (which may read model A's checkpoint) or anything else
    happens; settings ``stage`` never reads are refused."""
    values = given_values(args)
    merge_settings(values, _key_values(args.set, "--set"))
    check_overrides(values, source="command line")
    if stage:  # the command line's own keys, before a default preset may read model A's checkpoint
        check_stage(apply_overrides(RunConfig(), values, source="command line"), stage)
    preset = args.preset or (default_preset() if callable(default_preset) else default_preset)
    config = load_preset(preset) if preset else RunConfig()
    config = apply_overrides(config, values, source="command line")
    if stage:
        check_stage(config, stage)
    return config


def _common_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="a shipped preset name (e.g. qqp-esim; see vaa/configs/) or a YAML file")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config setting, e.g. optim.lr=1e-3 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder instead of resuming it")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=float))


# -- commands ---------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .stage_one import train

    # a family given on the command line brings its own defaults (BERT is not fine-tuned like ESIM)
    config = build_config(args, default_preset="hf" if flag_value(args, "model.family") == "hf" else None, stage="stage1")
    if args.print_config:
        _print(config.to_json())
        return 0
    results = train(config, overwrite=args.overwrite)
    valid = results["scores"].get("valid")
    if valid:
        print(f"validation accuracy: {valid['accuracy']:.4f}")
    print(f"run folder: {results['run']}")
    return 0


def _stage_two_preset(model_a: str | None) -> str:
    """esim-vaa or hf-vaa, after model A's family (read from its metadata only)."""
    from .checkpoint import read_metadata

    if not model_a:
        return "esim-vaa"
    family = read_metadata(model_a)[1]["model"]["family"]
    return "hf-vaa" if family == "hf" else "esim-vaa"


def cmd_train_vaa(args: argparse.Namespace) -> int:
    from .stage_two import train_vaa

    config = build_config(args, default_preset=lambda: _stage_two_preset(flag_value(args, "vaa.model_a")), stage="stage2")
    if args.print_config:
        _print(config.to_json())
        return 0
    results = train_vaa(config, overwrite=args.overwrite)
    valid, base = results["scores"].get("valid"), results["model_a_scores"].get("valid")
    if valid:
        print(f"validation accuracy: {valid['accuracy']:.4f}" + (f" (model A: {base['accuracy']:.4f})" if base else ""))
    print(f"run folder: {results['run']}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import reproduce

    if not args.preset and (not args.reuse_a or args.baselines):
        raise ValueError(
            "vaa reproduce needs --preset (model A's settings)"
            + (": --baselines trains adversarially trained A's from it" if args.reuse_a else ", or --reuse-a DIR")
        )

    over_a = _key_values(args.set_a, "--set-a")
    over_b = _key_values(args.set_b, "--set-b")
    over_adv = _key_values(args.set_adv, "--set-adv")
    for values, flag, stage in ((over_a, "--set-a", "stage1"), (over_b, "--set-b", "stage2"), (over_adv, "--set-adv", "stage1")):
        check_stage(apply_overrides(RunConfig(), values, source=flag), stage)  # checked, and nothing a stage ignores
    shared = given_values(args)  # --threads, --no-progress, --device: the same for every run
    if args.test:
        merge_settings(over_a, {"data": {"test": args.test}})
    merge_settings(over_a, dict(shared))
    merge_settings(over_b, dict(shared))
    reproduce(
        args.preset or "",
        args.output,
        seeds=args.seeds,
        stage_two_preset=args.stage_two_preset,
        variants=args.variants,
        overrides_a=over_a,
        overrides_b=over_b,
        title=args.title or args.preset or f"model A's of {args.reuse_a}",
        jobs=args.jobs,
        baselines=args.baselines,
        overrides_adversarial=over_adv,
        reuse_a=args.reuse_a,
    )
    print(f"Table 3 written to {args.output}/table3.md (and .json, .png)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job on the built-in synthetic data."""
    from .experiments import demo

    summary = demo(args.output, overrides=given_values(args))
    print(
        f"\nvalidation accuracy: model A {summary['valid_accuracy_a']:.4f}, A+VAA {summary['valid_accuracy_vaa']:.4f}; "
        f"AUC of F2 (L2, eps 0.02; higher F2 = duplicate) {summary['auc_f2']:.4f}, "
        f"of A's own probability without attack {summary['auc_a_probability']:.4f}"
    )
    print("(A+VAA also trained longer: `vaa reproduce` separates the vulnerability from extra training with controls)")
    print(f"everything is in {summary['folder']} (a/, analysis/report.md, vaa/, summary.json)")
    return 0


def _reading(config: RunConfig, labels: bool = True) -> dict[str, Any]:
    """The keyword arguments for reading a data file, from the data settings."""
    data = config.data
    out = {"format": data.format, "columns": data.columns, "limit": data.limit, "on_error": data.on_error}
    return {**out, "labels": data.labels} if labels else out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .inference import evaluate
    from .metrics import format_report

    settings = settings_from_args(args)
    report = evaluate(
        args.checkpoint, args.data, **_reading(settings), raw=args.raw, device=settings.device, precision=settings.precision
    )
    print(format_report(report, title=f"{args.checkpoint} on {args.data}"))
    if args.json:
        from .files import atomic_write_text

        atomic_write_text(json.dumps(report, indent=2) + "\n", args.json)
    return 0


def _write_table(rows: list[dict[str, Any]], path: str) -> None:
    """CSV, TSV, JSONL or Parquet by the file's extension, written atomically."""
    import pandas as pd

    from .files import atomic_write

    frame = pd.DataFrame(rows)
    suffix = Path(path).suffix.lower()

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")

    atomic_write(path, write)


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict

    settings = settings_from_args(args)
    rows = predict(
        args.checkpoint,
        data=args.data,
        pairs=[tuple(args.pair)] if args.pair else None,
        **_reading(settings),
        raw=args.raw,
        device=settings.device,
        precision=settings.precision,
    )
    if args.output:
        _write_table(rows, args.output)
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        for row in rows:
            probs = " ".join(f"{k[2:]}={v:.4f}" for k, v in row.items() if k.startswith("p_"))
            print(f"{row['id']}\t{row['predicted']}\t{probs}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from .robustness import attack_grid, parse_versus, robustness, table_markdown

    if len(args.paths) < 2:
        raise ValueError("vaa robustness needs CHECKPOINT [CHECKPOINT ...] FILE: at least one checkpoint and a labelled file")
    *checkpoints, data = args.paths
    settings = settings_from_args(args)
    grid = attack_grid(args.eps, args.linf_eps, args.methods, args.norms, args.pgd_steps, args.step_ratio)
    report = robustness(
        checkpoints,
        data,
        grid,
        output=args.output,
        batch_size=args.batch_size,
        **_reading(settings),
        device=settings.device,
        progress=settings.progress,
        versus=parse_versus(args.versus),
    )
    print(table_markdown(report))
    if args.output:
        print(f"written to {args.output} (robustness.json, robustness.md, robustness.png)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .inference import calibrate

    settings = settings_from_args(args)
    calibrate(args.checkpoint, args.data, method=args.method, **_reading(settings), device=settings.device)
    return 0


def cmd_vulnerability(args: argparse.Namespace) -> int:
    from .inference import vulnerability_rows

    settings = settings_from_args(args)
    rows = vulnerability_rows(
        args.checkpoint,
        data=args.data,
        pairs=[tuple(args.pair)] if args.pair else None,
        attack=settings.attack,
        **_reading(settings),
        batch_size=args.batch_size,
        progress=settings.progress,
        device=settings.device,
    )
    if args.output:
        _write_table(rows, args.output)
        print(f"wrote {len(rows)} rows to {args.output}")
    else:
        for row in rows:
            print("  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis.analyze import analyze

    settings = settings_from_args(args)
    result = analyze(
        args.checkpoint,
        args.data,
        args.output,
        attack=settings.attack,
        eps_list=args.eps_list,
        norms=args.norms,
        run_sweep=not args.no_sweep,
        **_reading(settings),
        batch_size=args.batch_size,
        progress=settings.progress,
        device=settings.device,
    )
    print(f"analysis of {result['pairs']} pairs written to {args.output} (report.md, analysis.json, *.png)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import convert

    print(
        f"vaa convert: loading {args.old} with pickle: this EXECUTES any code the file carries; "
        "use it only on checkpoints you made yourself",
        file=sys.stderr,
    )
    written = convert(args.old, args.new)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .analysis.probe import FEATURES, probe, probe_markdown

    settings = settings_from_args(args)
    result = probe(
        args.checkpoint,
        args.data,
        args.output,
        attack=settings.attack,
        folds=args.folds,
        seed=args.seed,
        c=args.C,
        names=args.features or tuple(FEATURES),
        random_control=not args.no_random,
        control_direction=args.control,
        **_reading(settings, labels=False),
        batch_size=args.batch_size,
        progress=settings.progress,
    )
    print(probe_markdown(result))
    if args.output:
        print(f"probe written to {args.output} (probe.md, probe.json, features.npz)")
    return 0


def cmd_theorem(args: argparse.Namespace) -> int:
    from .analysis.theorem_report import theorem_text

    print(
        theorem_text(
            n=args.n, d=args.d, sigma=args.sigma, samples=args.samples, seed=args.seed, analysis=args.analysis, plot=args.plot
        )
    )
    return 0


# -- the parser: one small function per command ------------------------------------------------


def _add_data_args(parser: argparse.ArgumentParser, optional: bool = False, allow_pair: bool = False) -> None:
    """The data file (or one --pair) and the settings that say how to read it."""
    if optional:
        parser.add_argument("data", nargs="?", help="a labelled file of pairs (default: the validation split of A's run)")
    elif allow_pair:
        parser.add_argument("data", nargs="?", help="a file of pairs")
        parser.add_argument("--pair", nargs=2, metavar=("SENTENCE_A", "SENTENCE_B"), help="one pair instead of a file")
    else:
        parser.add_argument("data", help="a labelled file of pairs")
    add_setting_flags(parser, READ_SETTINGS)


def _add_attack_args(parser: argparse.ArgumentParser) -> None:
    """The attack's settings (defaults: AttackConfig's) and the attack batch."""
    add_setting_flags(parser, ATTACK_SETTINGS)
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="pairs per attack batch (default 128)")


def _add_checkpoint_arg(parser: argparse.ArgumentParser, which: str = "either stage") -> None:
    parser.add_argument("checkpoint", help=f"run folder or checkpoint folder ({which})")


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="stage one: train model A",
        description="Train model A (ESIM or a Hugging Face encoder). The defaults shown are the settings' own; "
        "a preset changes them, a flag or --set overrides both.",
    )
    _common_run_args(p)
    add_setting_flags(p, TRAIN_SETTINGS)
    p.set_defaults(func=cmd_train)


def _add_train_vaa(sub: Any) -> None:
    p = sub.add_parser(
        "train-vaa",
        help="stage two: train model B with the vulnerability vector from a frozen model A",
        description="Stage two. Data default to model A's run; the preset defaults to esim-vaa or hf-vaa "
        "after model A's family. Model B is a copy of model A: no model settings. The defaults shown are the "
        "settings' own; a preset changes them, a flag or --set overrides both.",
    )
    _common_run_args(p)
    add_setting_flags(p, TRAIN_VAA_SETTINGS)
    p.set_defaults(func=cmd_train_vaa)


def _add_reproduce(sub: Any) -> None:
    p = sub.add_parser("reproduce", help="Table 3: baseline vs +VAA vs two controls over seeds, with paired tests")
    p.add_argument("--preset", help="stage-one preset, e.g. qqp-esim (required unless --reuse-a)")
    p.add_argument(
        "--reuse-a",
        metavar="DIR",
        help="take the finished model A's of another reproduction (DIR/seed<k>/a, linked, never written) "
        "instead of training them: compare a stage-two setting with its controls on the same A's",
    )
    p.add_argument("--stage-two-preset", help="stage-two preset (default: esim-vaa or hf-vaa after model A's family)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default 0 1 2)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["vaa", "zeros", "random"],
        choices=["vaa", "zeros", "random", "v1only", "random_matched", "permuted"],
        help="stage-two variants (default: vaa zeros random); the controls v1only, random_matched and permuted "
        "take the same --set-b feature options as vaa",
    )
    p.add_argument("--output", required=True, help="folder for all runs and the table")
    p.add_argument("--test", help="a test file, reported separately (never used for selection)")
    p.add_argument("--set-a", action="append", metavar="KEY=VALUE", help="stage-one setting, e.g. optim.max_epochs=10")
    p.add_argument("--set-b", action="append", metavar="KEY=VALUE", help="stage-two setting, e.g. vaa.injection=classifier")
    p.add_argument(
        "--baselines",
        nargs="+",
        default=[],
        choices=["fgm", "pgd"],
        help="also train adversarially trained A's per seed (same seeds, data, budget caps) and add them to Table 3",
    )
    p.add_argument(
        "--set-adv",
        action="append",
        metavar="KEY=VALUE",
        help="setting of the adversarially trained A's only, e.g. train.adversarial_eps=0.5",
    )
    p.add_argument("--title", help="title of the table (default: the preset)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="independent runs at once, each a local `vaa` process (one GPU each when there are several)",
    )
    add_setting_flags(p, SHARED_RUN_SETTINGS, grouped=False)
    p.set_defaults(func=cmd_reproduce)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job on the built-in synthetic demo data",
        description="Model A, its vulnerability analyses and stage two on the built-in SYNTHETIC demo set.",
    )
    p.add_argument("--output", default="runs/demo", help="folder for the demo's runs (default runs/demo)")
    add_setting_flags(p, SHARED_RUN_SETTINGS, grouped=False)
    p.set_defaults(func=cmd_demo)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="accuracy, per-class P/R/F1 and confusion matrix on a labelled file")
    _add_checkpoint_arg(p)
    _add_data_args(p)
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--raw", action="store_true", help="ignore a stored calibration (`vaa calibrate`): the model's own output")
    add_setting_flags(p, select(["device", "precision"]), grouped=False)
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="labels and probabilities for a file or one pair")
    _add_checkpoint_arg(p)
    _add_data_args(p, allow_pair=True)
    p.add_argument("--output", help="write predictions to .csv/.tsv/.jsonl/.parquet instead of printing")
    p.add_argument("--raw", action="store_true", help="ignore a stored calibration (`vaa calibrate`): the model's own output")
    add_setting_flags(p, select(["device", "precision"]), grouped=False)
    p.set_defaults(func=cmd_predict)


def _add_calibrate(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="re-fit a model's decision rule on validation (temperature + per-class bias)",
        description="Fit temperature scaling plus a per-class bias (or a multinomial logistic regression on "
        "log-probabilities) on validation data; store it in the run folder, where predict and "
        "evaluate apply it. Reports accuracy, log-loss and ECE before, after and cross-fitted.",
    )
    _add_checkpoint_arg(p)
    _add_data_args(p, optional=True)
    p.add_argument(
        "--method",
        default="temperature-bias",
        choices=["temperature-bias", "logistic"],
        help="temperature-bias (n+1 parameters, default) | logistic (n^2+n)",
    )
    add_setting_flags(p, select(["device"]), grouped=False)
    p.set_defaults(func=cmd_calibrate)


def _add_vulnerability(sub: Any) -> None:
    p = sub.add_parser("vulnerability", help="per-pair F1, F2, ||V1-V2|| from an FGSM attack on model A")
    _add_checkpoint_arg(p, "model A is used")
    _add_data_args(p, allow_pair=True)
    _add_attack_args(p)
    p.add_argument("--output", help="write rows to .csv/.tsv/.jsonl/.parquet instead of printing")
    add_setting_flags(p, select(["progress", "device"]), grouped=False)
    p.set_defaults(func=cmd_vulnerability)


def _add_robustness(sub: Any) -> None:
    p = sub.add_parser(
        "robustness",
        help="accuracy under attack (FGSM, PGD; L2, L-inf; gold label) on an eps grid, per model",
        description="Accuracy under an untargeted attack on the word embeddings against the gold label, for "
        "each checkpoint (model A, an adversarially trained A, a stage-two model: there the same "
        "perturbation reaches A, so V1/V2 change, and B, end to end). eps 0 is clean accuracy.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="CHECKPOINT [CHECKPOINT ...] FILE",
        help="run folders or checkpoint folders (either stage), then a labelled file of pairs",
    )
    add_setting_flags(p, READ_SETTINGS)
    p.add_argument(
        "--eps", type=float, nargs="+", default=list(ROBUSTNESS_L2_EPS), help="L2 eps grid (per sentence; default %(default)s)"
    )
    p.add_argument(
        "--linf-eps", type=float, nargs="+", default=list(ROBUSTNESS_LINF_EPS), help="L-inf eps grid (default %(default)s)"
    )
    p.add_argument("--norms", nargs="+", default=["l2", "linf"], choices=["l2", "linf"], help="norms (default: both)")
    p.add_argument("--methods", nargs="+", default=["fgsm", "pgd"], choices=["fgsm", "pgd"], help="attacks (default: both)")
    p.add_argument("--pgd-steps", type=_positive_int, default=ROBUSTNESS_PGD_STEPS, help="PGD steps (default %(default)s)")
    p.add_argument("--step-ratio", type=float, default=2.5, help="PGD step size as step_ratio * eps / steps (default 2.5)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="pairs per attack batch")
    p.add_argument("--output", help="folder for robustness.json, robustness.md and robustness.png")
    p.add_argument(
        "--versus",
        nargs="+",
        default=[],
        metavar="MODEL:REFERENCE",
        help="paired tests under each attack between run folders, e.g. vaa:a (McNemar, bootstrap over pairs)",
    )
    add_setting_flags(p, select(["progress", "device"]), grouped=False)
    p.set_defaults(func=cmd_robustness)


def _add_analyze(sub: Any) -> None:
    p = sub.add_parser("analyze", help="Fig. 2, Fig. 3a/3b and Theorem 1 for model A on a labelled file")
    _add_checkpoint_arg(p, "model A is used")
    _add_data_args(p, optional=True)
    _add_attack_args(p)
    p.add_argument("--output", required=True, help="folder for the report, tables and plots")
    p.add_argument("--eps-list", type=float, nargs="+", default=list(DEFAULT_EPS), help="eps values of the sweep")
    p.add_argument("--norms", nargs="+", default=["l2", "linf"], choices=["l2", "linf"], help="norms of the sweep")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep (Fig. 3b)")
    add_setting_flags(p, select(["progress", "device"]), grouped=False)
    p.set_defaults(func=cmd_analyze)


def _add_convert(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an old .pt checkpoint (or run folder) you made yourself to the safe format",
        description="Convert an old-format (pickle) checkpoint file or run folder to checkpoint folders "
        "(safetensors + JSON). WARNING: reading the old file EXECUTES any code it carries: "
        "use this only on files you made yourself or otherwise trust.",
    )
    p.add_argument("old", help="old checkpoint file (best.pt/last.pt) or an old run folder")
    p.add_argument("new", help="new checkpoint folder, or new run folder when OLD is a run folder (must not exist)")
    p.set_defaults(func=cmd_convert)


def _add_probe(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="does a vulnerability feature predict the gold label beyond A's own output? (cross-validated)",
        description="Per-pair vulnerability features of model A, then k-fold cross-validated logistic regression "
        "of the gold label on A's log-probabilities or V1, with and without each feature "
        "(and its random-direction version).",
    )
    _add_checkpoint_arg(p, "model A is used")
    _add_data_args(p)
    _add_attack_args(p)
    p.add_argument("--output", help="folder for probe.md, probe.json and features.npz")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation of the logistic regression")
    p.add_argument("--features", nargs="+", help="probe only these features (default: all)")
    p.add_argument("--no-random", action="store_true", help="skip the random-direction versions")
    p.add_argument(
        "--control",
        default="random",
        choices=["random", "random-matched"],
        help="the control's step: random (same norm as FGSM) or random-matched (same ||V1-V2|| as FGSM)",
    )
    add_setting_flags(p, select(["progress"]), grouped=False)
    p.set_defaults(func=cmd_probe)


def _add_theorem(sub: Any) -> None:
    p = sub.add_parser("theorem", help="Theorem 1: closed form, corollaries, Monte-Carlo check, measured criteria")
    p.add_argument("--n", type=int, default=2, help="number of classes")
    p.add_argument("--d", type=float, default=1.0, help="distance between adjacent class means")
    p.add_argument("--sigma", type=float, default=1.0, help="within-class standard deviation")
    p.add_argument("--samples", type=int, default=20000, help="Monte-Carlo draws per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--analysis", help="a folder written by `vaa analyze`: fit the theorem to its measured criteria")
    p.add_argument("--plot", help="write P against d/sigma and n to this PNG")
    p.set_defaults(func=cmd_theorem)


COMMANDS = (
    _add_train,
    _add_train_vaa,
    _add_reproduce,
    _add_demo,
    _add_evaluate,
    _add_predict,
    _add_calibrate,
    _add_vulnerability,
    _add_robustness,
    _add_analyze,
    _add_convert,
    _add_probe,
    _add_theorem,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaa", description="Sentence matching with vulnerability via adversarial attack (Zhang et al., COLING 2020)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    _add_logging_args(parser, sub)
    return parser


def _add_logging_args(parser: argparse.ArgumentParser, sub: Any) -> None:
    """``--log-level`` and ``--quiet`` on the top level and on every command
    (``vaa --quiet train ...`` and ``vaa train --quiet ...`` both work): a
    command's copy is SUPPRESSed when not given, so it does not overwrite the
    top-level value."""
    from .log_setup import LEVELS

    for target, default in [(parser, False)] + [(p, True) for p in sub.choices.values()]:
        keep = {"default": argparse.SUPPRESS} if default else {}
        target.add_argument(
            "--log-level",
            type=str.upper,
            choices=LEVELS,
            **({"default": "INFO"} | keep),
            help="how much the command logs to stderr (default INFO)",
        )
        target.add_argument("--quiet", action="store_true", **keep, help="warnings and errors only, and no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    from .calibration import CalibrationError
    from .data.pairs import DataError
    from .files import OutputError, describe_os_error
    from .guards import NonFiniteError
    from .log_setup import configure_logging
    from .run_folder import RunError
    from .runtime import leave_process_group

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.quiet)
    if args.quiet and hasattr(args, DEST_PREFIX + "progress"):  # no progress bars either
        setattr(args, DEST_PREFIX + "progress", False)
    if getattr(args, "pair", None) is None and hasattr(args, "pair") and not args.data:
        parser.error("give a data file or --pair SENTENCE_A SENTENCE_B")
    try:
        code = args.func(args)
    except (DataError, RunError, CalibrationError, NonFiniteError, OutputError, FileNotFoundError, ValueError) as exc:
        print(f"vaa: error: {exc}", file=sys.stderr)
        code = 2
    except OSError as exc:  # disk full, read-only, a file where a folder goes: one line, no traceback
        print(f"vaa: error: {describe_os_error(exc)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("vaa: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    leave_process_group()  # under torchrun: shut the group down before the interpreter does
    return code


if __name__ == "__main__":
    sys.exit(main())
