"""pydantic's validation errors as alertd's one-line problems: ``path: reason``; and the
checks every number from outside goes through."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from alertd.limits import MAX_DIGITS, MAX_EXPONENT, MAX_NUMBER_CHARS

if TYPE_CHECKING:  # pydantic is imported by the models, not by every command's start
    from pydantic import ValidationError

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def short(value: Any) -> str:
    """``repr(value)`` cut to a line: an error message never formats a whole huge value."""
    return _SHORT.repr(value)


class NotANumber(ValueError):
    """Text that is no number at all (as opposed to one out of range)."""


def decimal_value(value: Any) -> Decimal:
    """A number from a user's file or command line as an exact Decimal within alertd's range.

    Refuses bools, NaN, infinities, more than ``MAX_DIGITS`` digits and magnitudes beyond
    ``1e±MAX_EXPONENT`` (so no later arithmetic can overflow); :class:`ValueError` says why.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, int) and not -(10**MAX_DIGITS) < value < 10**MAX_DIGITS:
        raise ValueError(f"more than {MAX_DIGITS} digits")
    if not isinstance(value, int | str | Decimal):
        raise NotANumber(f"not a decimal number: {short(value)}")
    if isinstance(value, str):
        value = value.strip()
        if len(value) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise NotANumber(f"not a decimal number: {short(value)}") from None
    if not d.is_finite():
        raise ValueError(f"must be a finite number (got {short(value)})")
    if d.is_zero():
        return Decimal(0) if d.adjusted() > MAX_EXPONENT or d.adjusted() < -MAX_EXPONENT else d
    if len(d.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"more than {MAX_DIGITS} digits (got {short(value)})")
    if not -MAX_EXPONENT <= d.adjusted() <= MAX_EXPONENT:
        raise ValueError(
            f"out of range (got {short(value)}; alertd reads numbers from "
            f"1e-{MAX_EXPONENT} to 1e{MAX_EXPONENT})"
        )
    return d


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
    raw = err.get("input")
    got = short(raw)
    plain = raw if isinstance(raw, str) and len(raw) <= 60 else got  # as the user wrote it
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and indentation)"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']} (got {plain})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']} (got {plain})"
    if kind == "less_than":
        return f"must be less than {ctx['lt']} (got {plain})"
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {got})"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "too_short":
        return "must not be empty"
    message: str = err["msg"]
    return f"{message[0].lower()}{message[1:]} (got {got})"


def problems(exc: ValidationError, aliases: Mapping[str, str] | None = None) -> list[str]:
    return [f"{error_path(tuple(e['loc']), aliases)}: {describe_error(e)}" for e in exc.errors()]
