"""pydantic's validation errors as alertd's one-line problems: ``path: reason``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


def error_path(loc: tuple[int | str, ...], aliases: Mapping[str, str] | None = None) -> str:
    """``("positions", 1, "entry_price")`` -> ``positions[1].entry_price``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = (aliases or {}).get(part, part)
            out += ("." if out else "") + name
    return out or "(top level)"


def describe_error(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and indentation)"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']} (got {got})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {got})"
    if kind == "less_than":
        return f"must be less than {ctx['lt']} (got {got})"
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {got!r})"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "too_short":
        return "must not be empty"
    message: str = err["msg"]
    return f"{message[0].lower()}{message[1:]} (got {got!r})"


def problems(exc: ValidationError, aliases: Mapping[str, str] | None = None) -> list[str]:
    return [f"{error_path(tuple(e['loc']), aliases)}: {describe_error(e)}" for e in exc.errors()]
