"""Settings of an operation: one declaration of its options (type, bounds, default, help).

An operation's `Spec` (they are declared in `unravel.operations`) builds its command line
parser, parses a Pd job's `key value ...` arguments, lists its options for the help patch and
writes the command line that makes the same result. All three entry points give a `Settings`:
one attribute per option (`s.latent_length`), checked against the same bounds.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from unravel.errors import UnravelError

KINDS = ("int", "float", "flag", "str", "choice", "path", "paths", "strs", "ints", "array")
LISTS = {"paths": "path", "strs": "str", "ints": "int"}   # a list kind -> the kind of one item
WHERE = ("both", "cli", "pd")


@dataclass(frozen=True)
class Option:
    """One option. `kind`: int, float, flag (a switch; `key 0|1` in Pd), str, choice, path,
    paths (one or more files), strs (one or more words), ints (one or more integers), array
    (a Pd array set's name, Pd only). `group`: options of one group exclude each other. `where`: both, cli or pd.
    `pd_name`: its key in Pd when that differs (a positional argument's `input`)."""
    name: str
    kind: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple = ()
    metavar: str | None = None
    short: str | None = None
    positional: bool = False
    required: bool = False
    group: str | None = None
    where: str = "both"
    pd_name: str | None = None

    def __post_init__(self) -> None:
        assert self.kind in KINDS and self.where in WHERE, self

    @property
    def attr(self) -> str:
        """Its attribute in `Settings` (`latent_length`)."""
        return self.name.replace("-", "_")

    @property
    def key(self) -> str:
        """Its key in a Pd job (`latent-length`)."""
        return self.pd_name or self.name

    @property
    def flag(self) -> str:
        """Its command-line spelling (`--latent-length`)."""
        return self.name if self.positional else "--" + self.name

    def convert(self, value: Any) -> Any:
        """`value` (Python, a Pd atom or command-line text) as this option's type within its
        bounds; ValueError saying why not."""
        if self.kind in ("int", "float"):
            return self._number(value)
        if self.kind == "flag":
            if isinstance(value, str):
                if value not in ("0", "1"):
                    raise ValueError(f"must be 0 or 1, got '{value}'")
                return value == "1"
            return bool(self._finite(value))
        if self.kind in LISTS:
            values = [value] if isinstance(value, (str, os.PathLike, int, float)) else list(value)
            one = self.item()
            return [one.convert(v) for v in values]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        text = value if isinstance(value, (str, os.PathLike)) else f"{value:g}"
        if self.kind in ("path", "paths"):
            return pathlib.Path(os.path.expanduser(text))
        text = str(text)
        if self.kind == "array" and not isinstance(value, str):
            raise ValueError(f"must be a symbol, got {text}")
        if self.kind == "choice" and text not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got '{text}'")
        return text

    @staticmethod
    def _finite(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            if not hasattr(value, "__float__"):
                raise ValueError(f"must be a number, got '{value}'")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got '{value}'") from None
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {_word(value)}")
        return v

    def _number(self, value: Any) -> int | float:
        whole = self.kind == "int"
        try:
            v = self._finite(value)
        except ValueError:
            if whole:
                raise ValueError(f"must be an integer, got '{value}'") from None
            raise
        if whole:
            if v != int(v) or (isinstance(value, str) and not value.strip().lstrip("+-").isdigit()):
                raise ValueError(f"must be an integer, got {_word(value)}")
            v = int(v)
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if v < low or v > high or (self.open_low and v == low):
            raise ValueError(f"must be {self.bounds()}, got {_word(value)}")
        return v

    def item(self) -> Option:
        """One item of a list option (the option itself otherwise)."""
        return Option(self.name, LISTS.get(self.kind, self.kind), low=self.low, high=self.high,
                      open_low=self.open_low, choices=self.choices)

    def argtype(self):
        """An argparse type that converts one word and bounds it at parse time, so that a bad
        number is one usage line (`argument --seed: must be between 0 and ...`)."""
        one = self.item()

        def parse(text: str) -> Any:
            try:
                return one.convert(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        parse.__name__ = {"int": "int", "float": "float"}.get(self.kind, "str")
        return parse

    def bounds(self) -> str:
        """Its range in words (`between 1 and 10000`, `above 0 and at most 1000`)."""
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if self.kind == "int" and math.isfinite(low) and math.isfinite(high):
            return f"between {int(low)} and {int(high)}"
        lo = f"above {low:g}" if self.open_low else f"at least {low:g}"
        if math.isinf(high):
            return lo
        if math.isinf(low):
            return f"at most {high:g}"
        return f"{lo} and at most {high:g}"

    def described(self) -> str:
        """Its help, with its default unless the help says it."""
        if self.default in (None, False, [], ()) or "default" in self.help:
            return self.help
        shown = " ".join(map(str, self.default)) if isinstance(self.default, (list, tuple)) else self.default
        return f"{self.help} (default {shown})" if self.help else f"default {shown}"

    def pd_value(self) -> str:
        """What a Pd job takes after its key, for the help patch (`1..10000`, `0|1`, `<file>`)."""
        if self.kind in ("int", "float"):
            show = (lambda v: str(int(v))) if self.kind == "int" else (lambda v: f"{v:g}")
            lo = "" if self.low is None else show(self.low)
            hi = "" if self.high is None else show(self.high)
            return f"{lo}..{hi}"
        return {"flag": "0|1", "choice": " | ".join(self.choices), "path": "<path>",
                "paths": "<file>...", "strs": "<word>...", "ints": "<int>...", "array": "<set>",
                "str": f"<{(self.metavar or 'text').lower()}>"}[self.kind]


class Settings:
    """An operation's checked settings: `s.<option>` for each option of its spec (the default
    where none was given); `s.given(name)` tells whether it was given."""

    def __init__(self, spec: Spec, values: Mapping[str, Any], given: Iterable[str]):
        self._spec, self._values, self._given = spec, dict(values), frozenset(given)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.__dict__["_values"][attr]
        except KeyError:
            raise AttributeError(f"{self.__dict__.get('_spec', '?')} settings have no '{attr}'") from None

    def given(self, name: str) -> bool:
        return name.replace("-", "_") in self._given

    @property
    def spec(self) -> Spec:
        return self._spec

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (checked) given too."""
        values = {a: v for a, v in self._values.items() if a in self._given}
        return self._spec.settings(**{**values, **changes})

    def __repr__(self) -> str:
        given = ", ".join(f"{a}={self._values[a]!r}" for a in sorted(self._given))
        return f"<{self._spec.name} settings: {given}>"


@dataclass(frozen=True)
class Spec:
    """An operation's options. `command`: its command-line name (default: `name`)."""
    name: str
    help: str
    options: tuple[Option, ...]
    command: str = ""
    examples: tuple[str, ...] = ()     # command lines shown at the end of its --help

    def __str__(self) -> str:
        return self.name

    def option(self, name: str) -> Option:
        attr = name.replace("-", "_")
        for o in self.options:
            if o.attr == attr or o.key.replace("-", "_") == attr:
                return o
        raise KeyError(name)

    def on(self, where: str) -> list[Option]:
        """The options the command line ('cli') or a Pd job ('pd') takes."""
        return [o for o in self.options if o.where in ("both", where)]

    # ------------------------------------------------------------- building Settings

    def _make(self, values: dict[str, Any], given: set[str]) -> Settings:
        for group in {o.group for o in self.options if o.group}:
            both = [o for o in self.options if o.group == group and o.attr in given]
            if len(both) > 1:
                raise UnravelError(f"{self.name}: give {both[0].key} or {both[1].key}, not both")
        full = {o.attr: o.default for o in self.options}
        full.update(values)
        return Settings(self, full, given)

    def settings(self, **values: Any) -> Settings:
        """Settings from Python values (numbers may be floats or text, as Pd or a form gives
        them); UnravelError naming the option for a bad value. None means the default."""
        checked, given = {}, set()
        for attr, v in values.items():
            try:
                o = self.option(attr)
            except KeyError:
                raise UnravelError(f"{self.name}: no option '{attr}'") from None
            if v is None:
                continue
            try:
                checked[o.attr] = o.convert(v)
            except ValueError as e:
                raise UnravelError(f"{self.name}: {o.attr} {e}") from None
            given.add(o.attr)
        return self._make(checked, given)

    def from_pd(self, args: Sequence[Any], base: str = "") -> Settings:
        """Settings from a Pd job's `key value key value ...` (the long options without
        dashes, `-` and `_` alike; repeat a list's key for more; flags take 0 or 1; relative
        paths start at `base`, the patch's folder)."""
        opts = self.on("pd")
        keys = {o.key: o for o in opts}
        names = " ".join(keys)
        values: dict[str, Any] = {}
        i = 0
        while i < len(args):
            k = args[i]
            if not isinstance(k, str):
                raise UnravelError(f"{self.name}: expected an option name, got {k:g} (options: {names})")
            key = k.lstrip("-").replace("_", "-")
            o = keys.get(key)
            if o is None:
                raise UnravelError(f"{self.name}: unknown option '{k}' (options: {names})")
            if i + 1 >= len(args):
                raise UnravelError(f"{self.name}: option '{key}' needs a value")
            try:
                v = o.convert(args[i + 1])
            except ValueError as e:
                raise UnravelError(f"{self.name}: {key} {e}") from None
            if o.kind in ("path", "paths") and base:
                v = [pathlib.Path(base) / p for p in v] if o.kind == "paths" else pathlib.Path(base) / v
            values[o.attr] = values.get(o.attr, []) + v if o.kind in LISTS else v
            i += 2
        return self._make(values, set(values))

    def from_cli(self, ns: argparse.Namespace) -> Settings:
        """Settings from a parsed command line (`add_to`'s options)."""
        values, given = {}, set()
        for o in self.on("cli"):
            v = getattr(ns, o.attr, None)
            values[o.attr] = o.default if v is None else v
            if v is not None and v != o.default:
                given.add(o.attr)
        return self._make(values, given)

    # ------------------------------------------------------------- the command line

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the command line's options to `parser` (`func` and shared options aside)."""
        groups: dict[str, Any] = {}
        for o in self.on("cli"):
            target = parser
            if o.group:
                if o.group not in groups:
                    groups[o.group] = parser.add_mutually_exclusive_group()
                target = groups[o.group]
            names = [o.name] if o.positional else [o.flag] + ([o.short] if o.short else [])
            kw: dict[str, Any] = {"help": _help(o)}
            if o.kind == "flag":
                kw["action"] = "store_true"
            else:
                kw["type"] = o.argtype()
                kw["metavar"] = o.metavar
                if o.kind in LISTS:
                    kw["nargs"] = "+"
                if o.kind == "choice":
                    kw["choices"] = o.choices
                    kw["type"] = str
            if o.positional:
                kw["metavar"] = o.metavar or o.name.upper()
            else:
                kw["dest"] = o.attr
                kw["default"] = None
                if o.required:
                    kw["required"] = True
            target.add_argument(*names, **kw)

    def argv(self, s: Settings, also: Sequence[str] = ()) -> list[str]:
        """The command line's words (after `unravel`) that give `s`: the options given and
        those named in `also`, in the spec's order (short names where they have one)."""
        words = [self.command or self.name]
        for o in self.on("cli"):
            if not (s.given(o.attr) or o.attr in also):
                continue
            v = getattr(s, o.attr)
            if o.kind == "flag":
                words += [o.flag] if v else []
            elif o.positional:
                words += [str(x) for x in v] if isinstance(v, list) else [str(v)]
            elif v is not None:
                words += [o.short or o.flag] + ([str(x) for x in v] if isinstance(v, list) else [_word(v)])
        return words

    def command_line(self, s: Settings, also: Sequence[str] = ()) -> str:
        """`unravel <argv>` as one shell line."""
        return "unravel " + shlex.join(self.argv(s, also))

    def in_pd_words(self, text: str) -> str:
        """`text` (an error line) with each command-line option it names spelled as a Pd
        job's key: `--force` -> `force 1`, `--latent-length` -> `latent-length`."""
        for o in sorted(self.on("pd"), key=lambda o: -len(o.name)):
            if not o.positional:
                text = re.sub(rf"(?<![\w-]){re.escape(o.flag)}(?![\w-])",
                              f"{o.key} 1" if o.kind == "flag" else o.key, text)
        return text

    def parser_args(self) -> dict[str, Any]:
        """`add_parser` keywords of its command: its name, help and examples."""
        return {"name": self.command or self.name, "help": self.help, **epilog(self.examples)}

    def pd_rows(self) -> list[tuple[str, str]]:
        """(`key value`, help) for each option of the Pd job: the help patch's rows."""
        return [(f"{o.key} {o.pd_value()}", o.described()) for o in self.on("pd")]


def epilog(examples: Sequence[str]) -> dict[str, Any]:
    """`add_parser` keywords that end a command's --help with its example lines, as written."""
    text = "examples:\n" + "\n".join("  " + e for e in examples)
    return {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _word(v: Any) -> str:
    """A value as a command-line word; a float as short as it reads back exactly (1.0: '1')."""
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)
    return str(v)


def _help(o: Option) -> str:
    return o.described().replace("%", "%%")   # argparse formats help with %
