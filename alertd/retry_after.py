"""How long a server asked alertd to wait: HTTP ``Retry-After`` (RFC 9110, section 10.2.3),
read alike for the receivers alertd delivers to and the exchanges it reads."""

from __future__ import annotations

import re
from collections.abc import Mapping

# RFC 9110's ``delay-seconds = 1*DIGIT``, DIGIT being ASCII 0-9 (RFC 5234, appendix B.1):
# str.isdigit() also takes "²" and "٣", which int() refuses or reads as 3
_DELAY_SECONDS = re.compile(r"[0-9]+")


def retry_after_s(header: str | None, cap_s: int) -> float | None:
    """An HTTP ``Retry-After`` in seconds, at most ``cap_s`` (the caller's: how long it would
    rather wait than retry); the HTTP-date form, or anything else than ASCII digits, is
    ignored (the caller's backoff applies). Never raises: a number of more digits than the
    cap's is the cap, not handed to int() (which refuses over 4,300 digits)."""
    text = "" if header is None else header.strip()
    if _DELAY_SECONDS.fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(cap_s)):
        return float(cap_s)
    return float(min(int(digits), cap_s))


def reset_in(headers: Mapping[object, object], name: str, now_s: float, cap_s: int) -> float | None:
    """How long until the epoch time in header ``name`` (seconds, or milliseconds where it has
    the digits of one: past the year 5138 in seconds), from ``now_s``, at most ``cap_s``; None
    where it is missing, not digits, or already past. Never raises."""
    found = next(
        (v for k, v in headers.items() if isinstance(k, str) and k.lower() == name.lower()),
        None,
    )
    text = found.strip() if isinstance(found, str) else ""
    if _DELAY_SECONDS.fullmatch(text) is None or len(text) > 16:
        return None
    at = int(text) / (1000 if len(text) >= 12 else 1)
    left = at - now_s
    return min(left, float(cap_s)) if left > 0 else None


def retry_after_in(headers: Mapping[object, object], cap_s: int) -> float | None:
    """:func:`retry_after_s` of ``headers``, whose names are as the server wrote them (HTTP
    names are case-insensitive); None where it is not text."""
    found = next(
        (v for k, v in headers.items() if isinstance(k, str) and k.lower() == "retry-after"),
        None,
    )
    return retry_after_s(found, cap_s) if isinstance(found, str) else None
