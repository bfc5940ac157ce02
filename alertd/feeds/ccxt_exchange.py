"""Making ccxt.pro exchange objects, guarding them, and classifying their errors.

This is the only module that builds ccxt exchanges. Two of ccxt's behaviours are closed here
(see shared design notes, ccxt.md):

- A frame that is not valid JSON, or one that makes ccxt's own handler raise, escapes from a
  done-callback in ccxt's receive loop and silently ends that loop: the connection stays open
  and nothing more is read. The guard catches both, reports them, and the loop goes on.
- Frames ccxt has no handler for (Binance ``MARGIN_CALL``, ``listenKeyExpired``; OKX
  ``liquidation-warning``) are dropped by ccxt. The guard shows every decoded frame to a sink
  first, so the feed can capture them.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any, Protocol

import ccxt
import ccxt.pro as ccxtpro

from alertd.config import AccountConfig, FeedSettings, Secret
from alertd.errors import AccountRefused
from alertd.exchanges.registry import get_spec
from alertd.exchanges.spec import Credential
from alertd.redact import redact


class FrameSink(Protocol):
    def on_frame(self, message: Any) -> None: ...

    def on_malformed(self, kind: str, detail: str) -> None: ...


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_classes: dict[str, type] = {}


def _guarded_class(exchange_id: str) -> type:
    if exchange_id in _classes:
        return _classes[exchange_id]
    base = getattr(ccxtpro, exchange_id)

    class Guarded(base):  # type: ignore[misc, valid-type]
        alertd_sink: FrameSink | None = None

        def handle_message(self, client: Any, message: Any) -> None:
            sink = self.alertd_sink
            if sink is not None:
                sink.on_frame(message)
            try:
                super().handle_message(client, message)
            except Exception as exc:  # ccxt's handler choked on a garbled frame: skip it
                if sink is None:
                    raise
                sink.on_malformed("unparsable frame", f"{type(exc).__name__}: {exc}")

        def client(self, url: str) -> Any:
            client = super().client(url)
            if not getattr(client, "alertd_guarded", False):
                decode = client.handle_text_or_binary_message
                exchange = self

                def guarded_decode(data: Any) -> None:
                    try:
                        decode(data)
                    except ValueError as exc:  # not JSON: json.JSONDecodeError is a ValueError
                        sink = exchange.alertd_sink
                        if sink is None:
                            raise
                        sink.on_malformed("invalid JSON", f"{exc}: {str(data)[:80]!r}")

                client.handle_text_or_binary_message = guarded_decode
                client.alertd_guarded = True
            return client

    Guarded.__name__ = f"Guarded_{exchange_id}"
    _classes[exchange_id] = Guarded
    return Guarded


def make_exchange(
    account: AccountConfig,
    secrets: Mapping[str, Secret],
    settings: FeedSettings,
    sink: FrameSink | None = None,
) -> Any:
    """A ccxt.pro exchange for ``account``, guarded, with its url and option overrides."""
    # the spec's options are futures-only settings (its own comments say why); a deep copy,
    # so that ccxt cannot change the spec's nested values
    options = copy.deepcopy(deep_merge(get_spec(account.exchange).ccxt_options, account.options))
    params: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(settings.request_timeout_s * 1000),
        "options": options,
    }
    for credential in Credential:
        if credential.value in secrets:
            params[credential.ccxt_param] = secrets[credential.value].reveal()
    if account.wallet_address:
        params["walletAddress"] = account.wallet_address
    exchange = _guarded_class(account.exchange)(params)
    exchange.alertd_sink = sink
    if account.sandbox:
        exchange.set_sandbox_mode(True)
    if account.urls:
        exchange.urls["api"] = deep_merge(exchange.urls["api"], account.urls)
    return exchange


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"  # retry with backoff, then resync
    FATAL = "fatal"  # stop this account's feed and report it


def classify(exc: BaseException) -> ErrorKind:
    """Fatal: what no retry can change; the rest retry with backoff.

    - a bad key, a missing permission, a suspended account, a banned IP;
    - an account alertd refuses as it is (:class:`~alertd.errors.AccountRefused`: a mode it
      does not model, a user id it cannot get);
    - a request the exchange rejects as malformed (``BadRequest``: a wrong account type, a bad
      parameter) or that ccxt will not send (``ArgumentsRequired``: Gate's private streams
      without a user id; ``NotSupported``): the same request gets the same answer.

    An expired Binance listen key stays transient (the next watch fetches a fresh key), as do
    network errors, timeouts, rate limits, 5xx answers and errors of alertd's own.
    """
    if isinstance(exc, AccountRefused):
        return ErrorKind.FATAL
    if not isinstance(exc, ccxt.BaseError):
        return ErrorKind.TRANSIENT
    text = str(exc)
    if "listenKey" in text or "-1125" in text:
        # an expired Binance listen key: ccxt fails the private watches with it (as a
        # BadRequest, sometimes as an AuthenticationError) and the next watch fetches a new key
        return ErrorKind.TRANSIENT
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return ErrorKind.FATAL
    if isinstance(exc, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return ErrorKind.FATAL
    # Binance answers 418 once an IP keeps going after 429s: banned until the ban expires
    banned = " 418 " in text or "banned" in text.lower()
    if isinstance(exc, ccxt.DDoSProtection) and banned:
        return ErrorKind.FATAL
    return ErrorKind.TRANSIENT


def describe(exc: BaseException) -> str:
    """A one-line reason for a log or an alert, with no request details (they can hold keys)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # ccxt prefixes "<id> <METHOD> <url> <status> ..."; query strings carry signatures
    words = [w.split("?", 1)[0] if w.startswith("http") else w for w in text.split()]
    # and ws URLs carry Binance's listen key (url='wss://...?listenKey=...', or in the path)
    return redact(f"{type(exc).__name__}: {' '.join(words)[:300]}")
