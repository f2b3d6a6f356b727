"""Option rules: the valid range of every option, checked before any heavy import or any work.

A rule is a short string; "|null" at its end also admits null.

    int>=K, int>K      an integer at least / above K
    float>=X, float>X  a number (int or float) at least / above X
    fraction           a number in (0, 1]
    unit               a number in [0, 1]
    bool               true or false
    size               a count >= 1 or a fraction in (0, 1]
    in:a,b,c           one of the listed values (ints where they parse as ints)
    ints>=K            a non-empty list of integers >= K (or one, or a comma-separated string of them)
    floats             a non-empty list of numbers (or a comma-separated string)
    fractions          a non-empty list of fractions in (0, 1]
    range:LO..HI       a number in [LO, HI]
    devices            Lightning's devices: a count >= 1, -1 or "auto" (all), or a list of device indices
    class              a class index >= 0 or a class name
"""
from __future__ import annotations

import re

from diffrep.errors import UserError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _items(value) -> list | None:
    if isinstance(value, str):
        try:
            return [_parse_scalar(part) for part in value.split(",") if part.strip()]
        except ValueError:
            return None
    if _is_number(value):
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else None


def _parse_scalar(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def _choices(spec: str) -> list:
    out = []
    for part in spec.split(","):
        try:
            out.append(int(part))
        except ValueError:
            out.append(part)
    return out


def describe(rule: str) -> str:
    """The rule in words, for error messages."""
    rule, nullable = (rule[:-5], True) if rule.endswith("|null") else (rule, False)
    words = {"fraction": "a fraction in (0, 1]", "unit": "a number in [0, 1]", "bool": "true or false",
             "size": "a count >= 1 or a fraction in (0, 1]", "floats": "a list of numbers",
             "fractions": "a list of fractions in (0, 1]",
             "devices": "a count >= 1, -1 or auto, or a list of device indices",
             "class": "a class index >= 0 or a class name"}
    if rule in words:
        text = words[rule]
    elif rule.startswith("in:"):
        text = "one of " + ", ".join(map(str, _choices(rule[3:])))
    elif rule.startswith("range:"):
        low, high = rule[6:].split("..")
        text = f"a number in [{low}, {high}]"
    else:
        kind, op, bound = re.fullmatch(r"(ints|int|float)(>=|>)(-?[\d.e+-]+)", rule).groups()
        noun = {"ints": "a list of integers", "int": "an integer", "float": "a number"}[kind]
        text = f"{noun} {op} {bound}" if kind != "ints" else f"{noun} each {op} {bound}"
    return text + (" (or null)" if nullable else "")


def valid(rule: str, value) -> bool:
    if rule.endswith("|null"):
        return value is None or valid(rule[:-5], value)
    if rule == "fraction":
        return _is_number(value) and 0 < value <= 1
    if rule == "unit":
        return _is_number(value) and 0 <= value <= 1
    if rule == "bool":
        return isinstance(value, bool)
    if rule == "devices":
        items = _items(value) if not isinstance(value, int) else None
        return value in ("auto", -1) or (_is_int(value) and value >= 1) or (
            bool(items) and all(_is_int(v) and v >= 0 for v in items))
    if rule == "class":
        return (_is_int(value) and value >= 0) or (isinstance(value, str) and bool(value))
    if rule == "size":
        return (_is_int(value) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
    if rule.startswith("in:"):
        return not isinstance(value, bool) and value in _choices(rule[3:])
    if rule.startswith("range:"):
        low, high = map(float, rule[6:].split(".."))
        return _is_number(value) and low <= value <= high
    if rule in ("floats", "fractions"):
        items = _items(value)
        return bool(items) and all(valid("fraction" if rule == "fractions" else "float>=-1e300", v) for v in items)
    kind, op, bound = re.fullmatch(r"(ints|int|float)(>=|>)(-?[\d.e+-]+)", rule).groups()
    bound = float(bound)
    if kind == "ints":
        items = _items(value)
        return bool(items) and all(valid(f"int{op}{bound:g}", v) for v in items)
    ok_type = _is_int(value) if kind == "int" else _is_number(value)
    return ok_type and (value >= bound if op == ">=" else value > bound)


def lookup(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def check(cfg: dict, rules: dict[str, str]) -> dict:
    """Raise a UserError naming the first option outside its range; return cfg unchanged otherwise."""
    for key, rule in rules.items():
        try:
            value = lookup(cfg, key)
        except KeyError:
            continue  # a block the command replaced wholesale (e.g. a variant's distill: null)
        if not valid(rule, value):
            raise UserError(f"--{key} must be {describe(rule)}, got {value!r}")
    return cfg
