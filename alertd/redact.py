"""One redaction layer: what alertd writes (logs, stored errors, status) never holds a secret.

:func:`redact` masks, in any text:

- every secret this process has revealed (:meth:`alertd.config.Secret.reveal` registers the
  value, and for a URL its credential parts), wherever its literal value appears;
- URLs: credentials (``user:pass@``), every query value (signatures, ``listenKey=``), the
  fragment, and path segments that look like tokens (Telegram's ``bot<token>``, webhook
  tokens, Binance's ``/ws/<listenKey>``); a URL of any other scheme than http(s)/ws(s) is an
  apprise receiver URL, which is all credentials after ``://``;
- ``key=value`` / ``"key": "value"`` pairs whose key names a credential (``listenKey``,
  ``apiKey``, ``signature``, ``password``, ...), ``Bearer`` tokens, Telegram bot tokens;
- the path of an HTTP request line (urllib3 logs ``"POST /bot<token>/sendMessage HTTP/1.1"``).

:class:`RedactingFilter` applies it to every log record that reaches a handler it is
installed on (:func:`install` puts it on the root logger's handlers, so third-party loggers
that propagate, ccxt, aiohttp, urllib3, are covered), tracebacks included.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator

MASK = "***"
# Shorter registered values are not masked on their own: "alerts" or "main" would blank out
# ordinary words. A credential that short is not worth much anyway. A longer value that is an
# ordinary word is still masked (a revealed receiver URL "position", a typo `alertd check`
# refuses, masks that word from then on): the word can be the credential itself, an ntfy
# topic "is essentially a password" (https://docs.ntfy.sh/publish/), and an exchange
# passphrase is the user's choice; a garbled log line is the lesser harm than a leaked one.
MIN_SECRET_CHARS = 6
# A URL part must be this long to be registered: parts of receiver URLs are often words.
MIN_PART_CHARS = 8

_WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,15})://([^\s'\"<>`]*)")
_CREDENTIAL_KEYS = (
    r"listen_?key|api_?key|apikey|api_?secret|secret(?:_?key)?|password|passwd|passphrase"
    r"|token|access_?token|auth_?token|signature|sign|x-mbx-apikey"
    r"|ok-access-(?:key|sign|passphrase)|x-bapi-(?:api-key|sign)"
)
# every name in _CREDENTIAL_KEYS contains one of these
_KEY_HINTS = ("key", "secret", "pass", "token", "sign")
_KEY_VALUE = re.compile(
    rf"(?i)\b((?:{_CREDENTIAL_KEYS})\b[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)([^\s\"',&;}}\])]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]+")
# "Authorization: Basic dXNlcjpwYXNz": the scheme word is not the credential
_AUTHORIZATION = re.compile(
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?)(?!\*\*\*)[^\s\"',;}\])]+"
)
_TELEGRAM_TOKEN = re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}")
_REQUEST_LINE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S* (HTTP/\d)")
_TOKEN_SEGMENT = re.compile(r"[A-Za-z0-9_.~:=+-]{20,}")
_PARTS = re.compile(r"[/?&#@,;=]+")
_SPLIT = re.compile(r"([^/?#]*)([^?#]*)(?:\?([^#]*))?")
_HOSTNAME = re.compile(
    r"^(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}$|^\d{1,3}(?:\.\d{1,3}){3}$|^\[[0-9a-fA-F:]+\]$"
)

# A registered secret is found by its opening characters: each of its first ``_STEP`` offsets
# indexes the ``_GRAM`` characters there, and a text is read every ``_STEP`` characters, so
# every occurrence of a secret of ``MIN_SECRET_CHARS`` or more shows at exactly one of its
# offsets (``_GRAM + _STEP - 1`` characters fit in it). Before, one regex of every secret was
# compiled again at each registration and tried literal by literal at every character of every
# text: 1,000 accounts (2,000 keys) took 45 CPU s to register and 0.5 ms a log line to mask;
# the index costs the same at one secret or thousands.
_GRAM = 4
_STEP = MIN_SECRET_CHARS - _GRAM + 1


class SecretIndex:
    """Secrets to mask wherever they appear, leftmost first and, of those that start at one
    place, the longest whole (a secret that contains another is masked whole).

    Registration holds a lock; masking reads without one: a text masked in another thread
    while a secret is being added may find it at some offsets and not others, as a text
    masked just before the registration would not find it at all (nothing is promised about
    a secret until :meth:`add` returns)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        # the characters at one of a secret's first offsets -> (offset, secret) of each there
        self._index: dict[str, tuple[tuple[int, str], ...]] = {}

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def add(self, value: str) -> None:
        """Mask ``value`` from now on (it must be ``MIN_SECRET_CHARS`` long or more)."""
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"a secret to mask has {MIN_SECRET_CHARS} characters or more")
        with self._lock:
            if value in self._values:
                return
            for offset in range(_STEP):
                gram = value[offset : offset + _GRAM]
                self._index[gram] = (*self._index.get(gram, ()), (offset, value))
            self._values.add(value)

    @contextlib.contextmanager
    def scoped(self) -> Iterator[None]:
        """Forget, at the block's end, every secret added within it."""
        with self._lock:
            values, index = set(self._values), dict(self._index)
        try:
            yield
        finally:
            with self._lock:
                self._values, self._index = values, index

    def mask(self, text: str) -> str:
        """``text`` with every registered secret in it replaced by :data:`MASK`."""
        index = self._index
        if not index:
            return text
        found: list[tuple[int, int]] = []  # (start, -length) of every occurrence
        for at in range(0, len(text) - _GRAM + 1, _STEP):
            entries = index.get(text[at : at + _GRAM])
            if entries is not None:
                for offset, value in entries:
                    start = at - offset
                    if start >= 0 and text.startswith(value, start):
                        found.append((start, -len(value)))
        if not found:
            return text
        found.sort()  # leftmost first; of those at one start, the longest
        out: list[str] = []
        end = 0
        for start, minus_length in found:
            if start >= end:  # not inside one masked already
                out += (text[end:start], MASK)
                end = start - minus_length
        out.append(text[end:])
        return "".join(out)


_registered = SecretIndex()


def scoped_secrets() -> contextlib.AbstractContextManager[None]:
    """Secrets revealed within the block are forgotten at its end: for one process that runs
    one configuration after another (the test suite, where a receiver URL's part one test
    revealed masked that word in every later test's output), never for the daemon, whose
    secrets are masked for as long as it runs."""
    return _registered.scoped()


def register(value: str, min_chars: int = MIN_SECRET_CHARS) -> None:
    """Mask ``value`` wherever it appears from now on (if it is at least ``min_chars`` long,
    and never one shorter than ``MIN_SECRET_CHARS``)."""
    value = value.strip()
    if len(value) < max(min_chars, MIN_SECRET_CHARS) or value in _registered:
        return
    _registered.add(value)


def register_secret(value: str) -> None:
    """A revealed secret: its value, and for a URL each part that can be a credential."""
    if value in _registered:
        return
    register(value)
    if "://" in value:
        # an apprise URL is credentials and targets after the scheme; of a web URL (a
        # webhook, the dead-man's switch) only what looks like a token
        web = value.partition("://")[0].lower() in _WEB_SCHEMES
        for part in url_parts(value):
            if not web or _looks_like_token(part):
                register(part, MIN_PART_CHARS)


def url_parts(url: str) -> list[str]:
    """The parts of a URL that can be credentials: user, password, an apprise URL's host
    (often a token), path segments, query values. Hostnames and query keys are left out."""
    scheme, _, rest = url.partition("://")
    split = _SPLIT.match(rest)
    assert split is not None  # every part of the pattern is optional
    authority, path, query = split.group(1), split.group(2), split.group(3) or ""
    parts: list[str] = []
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        parts.extend(p for p in userinfo.split(":") if p)
    host = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    if scheme.lower() not in _WEB_SCHEMES and not _HOSTNAME.match(host):
        parts.append(authority)  # tgram://<bot token>, discord://<webhook id>, ntfy://<topic>
        parts.extend(p for p in authority.split(":") if p)
    parts.extend(p for p in _PARTS.split(path) if p)
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        parts.extend(p for p in _PARTS.split(value if eq else key) if p)
    return [p for p in dict.fromkeys(parts) if not _HOSTNAME.match(p)]


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret masked; ``extra`` adds values to mask in this text only
    (the parts of the receiver URL an apprise failure message is about, say)."""
    if not text:
        return text
    for value in sorted({e for e in extra if len(e) >= 3}, key=len, reverse=True):
        if len(value) >= MIN_PART_CHARS:
            text = text.replace(value, MASK)
        else:  # a short part ("alerts", "on") only as a word of its own, not inside others
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", MASK, text)
    return mask_shapes(_registered.mask(text))


def mask_shapes(text: str) -> str:
    """``text`` with what looks like a credential masked (URLs' credential parts, request
    paths, bot tokens, ``key=value`` pairs, ``Bearer`` and ``Authorization`` values), whether
    or not this process revealed it: :func:`redact` without the registered secrets."""
    if "HTTP/" in text:
        text = _REQUEST_LINE.sub(rf"\1 /{MASK} \2", text)
    if "://" in text:
        text = _URL.sub(_url, text)
    if ":" in text:
        text = _TELEGRAM_TOKEN.sub(MASK, text)
    # the patterns below scan every word: a plain substring test first is much cheaper
    lower = text.lower()
    if "authorization" in lower:
        text = _AUTHORIZATION.sub(rf"\1{MASK}", text)
    if "bearer" in lower:
        text = _BEARER.sub(rf"\1 {MASK}", text)
    if any(hint in lower for hint in _KEY_HINTS):
        text = _KEY_VALUE.sub(rf"\1{MASK}", text)
    return text


def _url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    if scheme.lower() not in _WEB_SCHEMES:
        return f"{scheme}://{MASK}" if rest else match.group(0)
    rest, hash_, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    segments = [MASK if _looks_like_token(s) else s for s in path.split("/")]
    out = f"{scheme}://{authority}{slash}{'/'.join(segments)}"
    if question:
        pairs = []
        for pair in query.split("&"):
            key, eq, _ = pair.partition("=")
            pairs.append(f"{key}={MASK}" if eq else (MASK if key else ""))
        out += "?" + "&".join(pairs)
    if hash_:
        out += "#" + (MASK if fragment else "")
    return out


def _looks_like_token(segment: str) -> bool:
    if segment.lower().startswith("bot") and ":" in segment:
        return True  # Telegram: /bot<id>:<secret>/sendMessage
    if len(segment) >= 32:
        return True
    digits = sum(c.isdigit() for c in segment)
    if digits == len(segment.lstrip("-")) and digits >= 8:
        return True  # a chat or webhook id
    return bool(_TOKEN_SEGMENT.fullmatch(segment)) and 0 < digits < len(segment)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, traceback and stack; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it, with the raw arguments
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on each handler of ``logger`` (the root by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
