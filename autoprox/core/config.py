"""The one config loader: frozen dataclasses from YAML/dicts, unknown keys rejected."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from autoprox.core.errors import AutoproxError
from autoprox.core.io import atomic_write_text, read_regular_text

T = TypeVar("T")


class ConfigError(ValueError, AutoproxError):
    """A config that does not match its dataclass."""


def check_ranges(obj: Any, where: str, ranges: dict[str, tuple], error: type[ValueError] | None = None) -> None:
    """``ConfigError`` naming the first field of ``obj`` outside its range. ``ranges`` maps a
    field to ``(lo, hi)`` (None: open) or ``(lo, hi, "[)")`` for which ends are inclusive
    (default ``"[]"``); ``None`` values (optional fields) are skipped."""
    for name, spec in ranges.items():
        lo, hi = spec[0], spec[1]
        ends = spec[2] if len(spec) > 2 else "[]"
        v = getattr(obj, name)
        if v is None:
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # never NaN or inf
        if ok and lo is not None:
            ok = v >= lo if ends[0] == "[" else v > lo
        if ok and hi is not None:
            ok = v <= hi if ends[1] == "]" else v < hi
        if not ok:
            if lo is not None and hi is not None:
                allowed = f"in {ends[0]}{lo:g}, {hi:g}{ends[1]}"
            elif lo is not None:
                allowed = f"{'>=' if ends[0] == '[' else '>'} {lo:g}"
            else:
                allowed = f"{'<=' if ends[1] == ']' else '<'} {hi:g}"
            raise (error or ConfigError)(f"{where}.{name} must be {allowed}, got {v!r}")


def unknown_keys(data: dict, allowed: Any) -> list:
    """The keys of ``data`` not in ``allowed``, in a stable order whatever their types (YAML keys
    may be numbers, strings or dates at once, which ``sorted`` alone cannot compare)."""
    return sorted(set(data) - set(allowed), key=lambda k: (type(k).__name__, repr(k)))


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and simple types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = unknown_keys(data, fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required keys
        raise ConfigError(f"{where}: {e}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is Any:
        return value
    if tp in (int, str, bool) and not (type(value) is tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def to_dict(obj: Any) -> Any:
    """Plain-data form of a (nested) dataclass, tuples as lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def config_diff(cls: type[T], saved: Any, cfg: T, free: tuple[str, ...] = ()) -> list[str]:
    """How a checkpoint's config ``saved`` differs from ``cfg``, one "key: saved vs now" line per dotted
    key; keys added to ``cls`` since the checkpoint was written take their defaults, and the ``free``
    keys (those that may change on resume without changing results) are not compared."""
    try:
        old = _flat(to_dict(from_dict(cls, saved, "checkpoint")))
    except ConfigError as e:
        return [f"the saved config no longer loads ({e})"]
    now = _flat(to_dict(cfg))
    return [f"{k}: {old.get(k)!r} (saved) vs {now.get(k)!r} (now)" for k in sorted(set(old) | set(now))
            if k not in free and old.get(k) != now.get(k)]


MAX_DEPTH = 64  # nesting of any document autoprox reads (YAML, JSON): its configs and files need under 10
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deep ``text``'s arrays and objects nest, counted without parsing (nor recursing)."""
    brackets = re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def load_json_text(text: str, where: str, error: type[Exception] = ConfigError) -> Any:
    """``json.loads(text)``, refusing (``error`` naming ``where``) text nested deeper than ``MAX_DEPTH``
    before the recursive parser sees it, and text that is no JSON."""
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise error(f"{where}: JSON nested too deep ({depth} levels; at most {MAX_DEPTH} are accepted)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON: {e}") from None


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing documents no config needs: more than ``MAX_ALIASES`` aliases (an
    alias bomb expands exponentially when read) or nesting deeper than ``MAX_DEPTH``."""

    MAX_ALIASES = 20  # 20 aliases expand a bomb at most ~2^10-fold
    MAX_DEPTH = MAX_DEPTH

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.aliases, self.depth = 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.MAX_ALIASES:
                raise yaml.YAMLError(f"more than {self.MAX_ALIASES} aliases")
        self.depth += 1
        try:
            if self.depth > self.MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {self.MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` with ``BoundedLoader``'s limits."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str, error: type[Exception] = ConfigError) -> Any:
    """The YAML document in ``path``; ``error`` naming the file when it is missing or no YAML text."""
    p = Path(path)
    try:
        text = read_regular_text(p, what)  # a FIFO, device, socket or link loop is refused unopened
    except FileNotFoundError as e:
        raise (FileNotFoundError if error is not ConfigError else error)(str(e)) from None
    except UnicodeDecodeError as e:
        raise error(f"{p}: not a YAML {what}: {e}") from None
    try:
        return load_yaml_text(text)
    except yaml.YAMLError as e:
        raise error(f"{p}: not a YAML {what}: {e}") from None


def load_config(cls: type[T], path: str | Path) -> T:
    """Load ``cls`` from a YAML file; a clear error for a missing, malformed or empty file."""
    p = Path(path)
    data = read_yaml(p, "config file")
    if data is None:
        raise ConfigError(f"{p} is empty: write the settings you want (every key has a default, "
                          f"so an empty file would silently run all defaults)")
    return from_dict(cls, data, where=p.name)


def config_yaml(obj: Any) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, config_yaml(obj))
