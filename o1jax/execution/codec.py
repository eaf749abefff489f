"""How values cross the sandbox wall, and how the service judges them.

A program's return value is encoded inside the sandbox into tagged JSON (exact builtin types only) and decoded by a
trusted process into fresh builtin objects, so a returned object's own `__eq__` never takes part in a verdict.
stdio outputs are compared token-wise, whitespace-insensitive, with TACO's float tolerance.
"""
from __future__ import annotations

import json
import math

# Tags for containers JSON lacks. Every JSON object on the wire is a tag; plain dicts travel as {"d": pairs}.
_TAGS = {tuple: "t", set: "s", frozenset: "f"}


def encode(v, depth: int = 0):
    """Value -> JSON-able tagged form. Runs inside the sandbox; a liar only hurts itself."""
    if depth > 200:
        raise ValueError("value nested too deeply")
    t = type(v)
    if v is None or t is bool or t is int or t is str or t is float:
        return v
    if t is list:
        return [encode(x, depth + 1) for x in v]
    if t in _TAGS:
        return {_TAGS[t]: [encode(x, depth + 1) for x in v]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in v.items()]}
    if t is bytes:
        return {"b": v.hex()}
    if t is complex:
        return {"c": [v.real, v.imag]}
    if hasattr(v, "tolist") and callable(v.tolist) and depth < 200:  # numpy scalars and arrays
        return encode(v.tolist(), depth + 1)
    raise TypeError(f"cannot send a {t.__name__} across the sandbox (only builtin data types)")


def decode(x):
    """Tagged form -> fresh builtin objects. Runs in trusted processes on untrusted input: builds nothing else."""
    t = type(x)
    if x is None or t is bool or t is int or t is str or t is float:
        return x
    if t is list:
        return [decode(e) for e in x]
    if t is dict and len(x) == 1:
        (tag, val), = x.items()
        if tag == "t":
            return tuple(decode(e) for e in val)
        if tag == "s":
            return {decode(e) for e in val}
        if tag == "f":
            return frozenset(decode(e) for e in val)
        if tag == "d":
            return {decode(k): decode(e) for k, e in val}
        if tag == "b":
            return bytes.fromhex(val)
        if tag == "c":
            return complex(float(val[0]), float(val[1]))
    raise ValueError("malformed value on the wire")


def to_plain(v):
    """Decoded value -> plain JSON value (tuples and sets become lists), as TACO compares call outputs."""
    t = type(v)
    if t in (list, tuple):
        return [to_plain(e) for e in v]
    if t in (set, frozenset):
        items = [to_plain(e) for e in v]
        try:
            return sorted(items)
        except TypeError:
            return items
    if t is dict:
        return {k if type(k) is str else json.dumps(to_plain(k)): to_plain(e) for k, e in v.items()}
    if t is bytes:
        return v.decode("latin-1")
    if t is complex:
        return [v.real, v.imag]
    return v


def dumps(v) -> str:
    return json.dumps(v, separators=(",", ":"))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-8 + 1e-5 * abs(b)  # numpy.allclose defaults, as TACO's testing_util uses


def values_match(out, expected) -> bool:
    """Plain JSON values. Exact for ints/strings/bools; floats within TACO's tolerance; structure must agree."""
    if type(out) is bool or type(expected) is bool:
        return type(out) is type(expected) and out == expected
    if isinstance(out, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(out, float) or isinstance(expected, float):
            if math.isnan(out) or math.isnan(expected):
                return math.isnan(out) and math.isnan(expected)
            return out == expected or _close(float(out), float(expected))
        return out == expected
    if type(out) is list and type(expected) is list:
        return len(out) == len(expected) and all(values_match(a, b) for a, b in zip(out, expected))
    if type(out) is dict and type(expected) is dict:
        return out.keys() == expected.keys() and all(values_match(out[k], expected[k]) for k in out)
    return type(out) is type(expected) and out == expected


def call_output_matches(out, expected) -> bool:
    """TACO's call-based rule: equal, or equal to the single element when the expected output is wrapped in a list."""
    if values_match(out, expected):
        return True
    return type(expected) is list and len(expected) == 1 and values_match(out, expected[0])


def _as_float(tok: str):
    try:
        f = float(tok)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def stdio_matches(out: str, expected: str) -> bool:
    """Token-wise, whitespace-insensitive; numeric tokens equal within TACO's float tolerance."""
    a, b = out.split(), expected.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        fx, fy = _as_float(x), _as_float(y)
        if fx is None or fy is None or not _close(fx, fy):
            return False
    return True
