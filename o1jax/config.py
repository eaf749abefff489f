"""Typed run configs: dataclass sections, TOML files (configs/*.toml) and `section.key=value` overrides.

Every subcommand owns one top-level dataclass whose fields are section dataclasses. Values are checked against the
field types; an unknown key, a wrong type or a bad value raises UserError naming it. The resolved config is written
beside a run's outputs (`config.json`) so the run can be reproduced.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from typing import Any

from o1jax.errors import UserError


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, where: str):
    """Convert `value` (a TOML value or an override string) to field type `tp`, or raise UserError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        last = None
        for a in args:
            try:
                return _coerce(value, a, where)
            except UserError as e:
                last = e
        raise last  # type: ignore[misc]
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise UserError(f"config {where}={value!r}: must be one of {', '.join(map(str, allowed))}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {where}={value!r}: expected a list")
        out = [_coerce(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise UserError(f"config {where}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"config {where}={value!r}: expected an integer")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise UserError(f"config {where}={value!r}: expected an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"config {where}={value!r}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"config {where}={value!r}: expected a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"config {where}={value!r}: expected a string")
        return value
    raise UserError(f"config {where}: unsupported field type {_type_name(tp)}")


def _set(cfg, dotted: str, raw: Any):
    parts = dotted.split(".")
    obj = cfg
    for i, name in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise UserError(f"unknown config key {dotted!r}: {'.'.join(parts[:i])} has no sub-keys")
        fields = {f.name: f for f in dataclasses.fields(obj)}
        if name not in fields:
            raise UserError(
                f"unknown config key {dotted!r} (known under {'.'.join(parts[:i]) or 'top level'}: "
                f"{', '.join(sorted(fields))})"
            )
        if i == len(parts) - 1:
            hints = typing.get_type_hints(type(obj))
            tp = hints[name]
            if dataclasses.is_dataclass(tp):
                if not isinstance(raw, dict):
                    raise UserError(f"config {dotted}: is a section; set its keys as {dotted}.KEY=VALUE")
                for k, v in raw.items():
                    _set(cfg, f"{dotted}.{k}", v)
                return
            value = _coerce(raw, tp, dotted)
            check = getattr(type(obj), "_check_" + name, None)
            if check is not None:
                msg = check(value)
                if msg:
                    raise UserError(f"config {dotted}={value!r}: {msg}")
            setattr(obj, name, value)
        else:
            obj = getattr(obj, name)


def apply_overrides(cfg, overrides: list[str]):
    """Apply `section.key=value` strings to dataclass `cfg` in place (checked), and return it."""
    for ov in overrides:
        if "=" not in ov:
            raise UserError(f"bad override {ov!r}: expected section.key=value")
        key, _, value = ov.partition("=")
        _set(cfg, key.strip(), value.strip())
    return cfg


def load_toml(cfg, path: str):
    """Merge a TOML file's sections into `cfg` (checked the same way as overrides)."""
    if not os.path.exists(path):
        raise UserError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path}: not valid TOML ({e})") from None

    def walk(prefix, d):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(key, v)
            else:
                _set(cfg, key, v)

    walk("", data)
    return cfg


def resolve(cfg, config_path: str | None, overrides: list[str]):
    """Defaults <- TOML file <- command-line overrides."""
    if config_path:
        load_toml(cfg, config_path)
    apply_overrides(cfg, overrides)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def write_resolved(cfg, out_dir: str, name: str = "config.json") -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump(to_dict(cfg), f, indent=2, sort_keys=True)
        f.write("\n")
    return path
