"""Command-line flags generated from the config dataclasses (``vaa.config``).

Each setting declares its type, default, allowed values, bounds and help text
once, in ``config.py``; this module turns it into an ``argparse`` flag, so a
new setting is on the command line without a line here:

- the flag is ``--name-with-dashes``, unless the setting's metadata names
  others (``flags=``: the first is shown, the rest are aliases kept for older
  commands, e.g. ``--epochs`` and ``--max-epochs`` for ``optim.max_epochs``);
- a bool is a pair, ``--relative`` / ``--no-relative``;
- a ``many`` setting takes several words, stored comma-separated
  (``--scalars F2 flip`` is ``vaa.scalars="F2,flip"``);
- argparse only turns the text into the setting's type (``--lr abc`` is a
  usage error, as for any argparse flag); bounds and allowed values are checked
  by the config, so a flag, ``--set``, a preset and Python meet the same rules
  and the same one-line errors;
- a flag left out sets nothing (``None``), so it never overrides a preset; the
  help shows the setting's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import _SECTIONS, RunConfig, _base_type, _convert, apply_overrides, describe_allowed

DEST_PREFIX = "cfg:"  # argparse dest of a generated flag: "cfg:optim.lr"


@dataclass(frozen=True)
class Setting:
    """One setting of :class:`RunConfig` as the command line sees it."""

    key: str  # dotted: "optim.lr"; a top-level setting has no dot ("seed")
    owner: type  # the dataclass that declares it
    field: dataclasses.Field

    @property
    def section(self) -> str:
        return self.key.partition(".")[0] if "." in self.key else ""

    @property
    def kind(self) -> Any:
        return typing.get_type_hints(self.owner)[self.field.name]

    @property
    def flags(self) -> tuple[str, ...]:
        return self.field.metadata.get("flags") or ("--" + self.field.name.replace("_", "-"),)

    @property
    def dest(self) -> str:
        return DEST_PREFIX + self.key


def all_settings() -> Iterator[Setting]:
    """Every setting, section by section, then the top-level ones."""
    for name, section in _SECTIONS.items():
        for f in dataclasses.fields(section):
            yield Setting(f"{name}.{f.name}", section, f)
    for f in dataclasses.fields(RunConfig):
        if f.name not in _SECTIONS and f.metadata:  # `given` has no metadata: it is not a setting
            yield Setting(f.name, RunConfig, f)


def select(include: Sequence[str], exclude: Sequence[str] = ()) -> list[Setting]:
    """The settings named by ``include`` (a section such as ``data``, a key such
    as ``data.format`` or ``device``; ``*`` for all) less those in ``exclude``."""

    def matches(key: str, patterns: Sequence[str]) -> bool:
        return any(p == "*" or key == p or key.startswith(p + ".") for p in patterns)

    return [s for s in all_settings() if matches(s.key, include) and not matches(s.key, exclude)]


def _text_to(setting: Setting) -> Callable[[str], Any]:
    """argparse ``type``: the text as the setting's type (bounds are the config's)."""
    base = _base_type(setting.kind)

    def convert(text: str) -> Any:
        try:
            return _convert(text, base)
        except (ValueError, TypeError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {describe_allowed(setting.field, setting.kind)}, got {text!r}") from None

    convert.__name__ = getattr(base, "__name__", "value")  # argparse names the type in its messages
    return convert


def _help(setting: Setting) -> str:
    default = setting.field.default
    if default is dataclasses.MISSING:  # a setting with a factory default
        default = setting.field.default_factory()  # type: ignore[misc]
    shown = "none" if default is None or default == "" else str(default).lower() if isinstance(default, bool) else default
    bounded = set(setting.field.metadata) & {"ge", "gt", "le", "lt"}  # choices are in the metavar, types in the metavar
    allowed = f"; {describe_allowed(setting.field, setting.kind)}" if bounded else ""
    return f"{setting.field.metadata['help']} [{setting.key}{allowed}; default: {shown!s}]".replace("%", "%%")


def add_setting_flags(parser: argparse.ArgumentParser, settings: Sequence[Setting], grouped: bool = True) -> None:
    """One flag per setting; with ``grouped``, under a heading per section.
    The help shows each setting's own default; a preset may change it."""
    groups: dict[str, Any] = {}
    for s in settings:
        target: Any = parser
        if grouped:
            title = f"{s.section} settings" if s.section else "run settings"
            target = groups.setdefault(title, parser.add_argument_group(title))
        meta = s.field.metadata
        common = {"dest": s.dest, "default": None, "help": _help(s)}
        if _base_type(s.kind) is bool:
            target.add_argument(*s.flags, action=argparse.BooleanOptionalAction, **common)
        elif meta.get("many"):
            target.add_argument(*s.flags, nargs="+", metavar="NAME", **common)
        elif "choices" in meta:
            target.add_argument(*s.flags, metavar="{" + ",".join(meta["choices"]) + "}", **common)
        else:
            base = _base_type(s.kind)
            metavar = {int: "INT", float: "FLOAT"}.get(base, "TEXT")
            target.add_argument(*s.flags, type=_text_to(s), metavar=metavar, **common)


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags that were given, nested as in a preset
    (``{"optim": {"lr": 0.001}}``); flags left out are not there."""
    out: dict[str, Any] = {}
    for name, value in vars(args).items():
        if not name.startswith(DEST_PREFIX) or value is None:
            continue
        key = name[len(DEST_PREFIX) :]
        if isinstance(value, list):  # a `many` setting
            value = ",".join(value)
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[head] = value
    return out


def flag_value(args: argparse.Namespace, key: str) -> Any:
    """The raw value of one generated flag (None when left out)."""
    return getattr(args, DEST_PREFIX + key, None)


def settings_from_args(args: argparse.Namespace) -> RunConfig:
    """The defaults with the given flags applied: what a command that takes a
    few settings (``--format``, ``--eps``, ``--device`` ...) but no preset
    reads them from, checked like any override."""
    return apply_overrides(RunConfig(), given_values(args), source="command line")


__all__ = ["Setting", "all_settings", "select", "add_setting_flags", "given_values", "flag_value", "settings_from_args"]
