"""How long a server asked alertd to wait: HTTP ``Retry-After`` (RFC 9110, section 10.2.3),
read alike for the receivers alertd delivers to and the exchanges it reads."""

from __future__ import annotations

from collections.abc import Mapping

# a longer wait asked (Binance bans an IP for up to three days with 418) is read as this
MAX_RETRY_AFTER_S = 3600


def retry_after_s(header: str | None) -> float | None:
    """An HTTP ``Retry-After`` in seconds, at most :data:`MAX_RETRY_AFTER_S`; the HTTP-date
    form is ignored (the caller's backoff applies)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(min(int(header.strip()), MAX_RETRY_AFTER_S))


def retry_after_in(headers: Mapping[str, str]) -> float | None:
    """:func:`retry_after_s` of ``headers``, whose names are as the server wrote them (HTTP
    names are case-insensitive)."""
    return retry_after_s(next((v for k, v in headers.items() if k.lower() == "retry-after"), None))
