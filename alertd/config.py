"""The configuration file: YAML, validated whole, then one frozen, typed object.

Every problem is reported at once with its dotted path
(``accounts[1].exchange: unknown exchange 'bianance' (did you mean binanceusdm?)``). Secrets
never sit in the YAML: the file names environment variables or files that hold them, and they
are read into :class:`Secret` values that do not print.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alertd import safe_yaml
from alertd.errors import InputError
from alertd.exchanges.registry import SPECS, UnknownExchangeError, get_spec
from alertd.exchanges.spec import Credential
from alertd.limits import (
    MAX_CONFIG_BYTES,
    MAX_DURATION_S,
    MAX_NUMBER_CHARS,
    MAX_RULE_CONDITIONS,
    MAX_SECRET_BYTES,
    ReadError,
    read_input,
    read_text,
)
from alertd.redact import register_secret
from alertd.validation import decimal_value, short
from alertd.validation import problems as validation_problems

CONFIG_VERSION = 1

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(InputError):
    """A config file that cannot be used; one ``path: reason`` line per problem."""


class Secret:
    """A credential. ``str()`` and ``repr()`` never show it; :meth:`reveal` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        # from now on the value may sit in an exception, a URL or a reply: mask it everywhere
        register_secret(self._value)
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PositiveSeconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
# The shortest interval a loop may be configured to wait: zero would spin.
MIN_INTERVAL_S = 0.1


class BackoffSettings(_Model):
    """Reconnect delays: exponential with jitter, capped, reset after a healthy period."""

    initial_s: PositiveSeconds = 1.0
    max_s: PositiveSeconds = 60.0
    multiplier: Annotated[float, Field(ge=1, le=100)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    reset_after_s: PositiveSeconds = 60.0

    @model_validator(mode="after")
    def _order(self) -> BackoffSettings:
        if self.initial_s > self.max_s:
            raise ValueError(f"initial_s {self.initial_s} is above max_s {self.max_s}")
        return self


class OrderBookSettings(_Model):
    """The exchange's order books the gap-risk metrics read (``close_slippage``, ``gap_risk``):
    only for held symbols a rule on them covers, shared by every account; streamed where
    alertd can, else fetched over REST, one request per symbol per exchange every
    ``interval_s``."""

    depth: Annotated[int, Field(ge=5, le=400)] = 100  # levels a side (each exchange's limit)
    interval_s: PositiveSeconds = 10.0
    # where alertd streams the exchange's books (docs/exchanges.md, "Order books"): watched
    # over its websocket, REST only while a stream has not delivered within interval_s
    stream: bool = True
    # a streamed book replaces the one the metrics read at most this often (each new book
    # means every position in the symbol walked again)
    stream_every_s: PositiveSeconds = 1.0
    # a book older than this (the exchange not answering) is dropped: no figure, not an old one
    max_age_s: PositiveSeconds = 60.0

    @model_validator(mode="after")
    def _age(self) -> OrderBookSettings:
        if self.max_age_s < self.interval_s:
            raise ValueError(
                f"max_age_s {self.max_age_s:g} is below interval_s {self.interval_s:g}: every "
                "book would be dropped before the next one arrives"
            )
        return self


# more source addresses than this is a list gone wrong (an IPv6 /64 written out)
MAX_SOURCE_ADDRESSES = 256


def ip_literal(value: str) -> str:
    """An IPv4 or IPv6 address as written in a config (``203.0.113.7``, ``2001:db8::7``), in
    its canonical form; a host name, a network or anything else is refused."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(
            f"{short(value)} is not an IP address (an IPv4 or IPv6 literal this machine owns)"
        ) from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{address} is not an address a connection can be sent from")
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None:
        # it binds, but an AF_INET6 socket bound to it reaches no IPv4 host (and no IPv6
        # one): every request would fail, retried forever
        raise ValueError(
            f"{address} is an IPv4-mapped IPv6 address, which reaches no host: write {mapped}"
        )
    return str(address)


def _rank(account: str, address: str) -> bytes:
    return hashlib.sha256(f"{account}\0{address}".encode()).digest()


def source_address(account: AccountConfig, addresses: list[str]) -> str | None:
    """The address ``account``'s requests and websockets leave from: its own
    ``source_address``, else one of ``feeds.source_addresses`` by rendezvous hashing (the
    address ranking highest for the account's name), else None (the system's choice).

    Rendezvous hashing, not round-robin in config order: an account keeps its address
    whatever is done to the other accounts (added, removed, reordered, renamed) and across
    restarts, and an address added to the list takes about 1/n of the accounts from the
    others (each from its own old address), an address removed hands only its own on. Each
    address keeps what the exchange knows of it (its bans, the weight it spent this minute):
    an account moved between addresses would carry its load into the other's budget. The
    price is balance: the accounts split as by chance (acct0..acct999 over 8 addresses: 125
    each on average, the fullest 146), and the start's pace line names each address's count."""
    if account.source_address is not None:
        return account.source_address
    if not addresses:
        return None
    return max(addresses, key=lambda address: _rank(account.name, address))


def source_address_problems(config: Config) -> list[str]:
    """One line per configured source address this machine does not have: one that cannot be
    bound (``EADDRNOTAVAIL``), found by binding a socket to it (port 0, no connection)."""
    problems = []
    listed = config.feeds.source_addresses
    places = [(f"feeds.source_addresses[{i}]", a) for i, a in enumerate(listed)]
    places += [
        (f"accounts[{i}].source_address", a.source_address)
        for i, a in enumerate(config.accounts)
        if a.source_address is not None and a.enabled
    ]
    for where, address in places:
        problem = unbindable(address)
        if problem is not None:
            problems.append(f"{where}: {address} {problem}")
    return problems


def unbindable(address: str) -> str | None:
    """Why connections cannot be sent from ``address`` on this machine; None: they can."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"is not an address of this machine ({reason}): add it to an interface or remove it"
    return None


class FeedSettings(_Model):
    reconcile_interval_s: PositiveSeconds = 60.0
    tier_refresh_interval_s: PositiveSeconds = 86_400.0
    listen_key_renew_interval_s: PositiveSeconds = 1_800.0
    stale_after_s: PositiveSeconds = 30.0
    # a periodic reconcile that finds a position changed which no private push told since the
    # snapshot before it gives the push this long to come before calling it missed (a push
    # in flight as the REST answer was read): then the private stream is dead though open
    missed_push_grace_s: PositiveSeconds = 5.0
    # false: no reconcile judges what the private stream missed (nothing said, nothing
    # reopened); ``builtin_rules.private_stream_missed: false`` silences only the alert
    detect_missed_pushes: bool = True
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    # at most this many accounts per exchange bootstrap or resync over REST at once; None:
    # the exchange's own default (Capabilities.rest_concurrency: 8, Bybit 32, OKX 64)
    rest_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    # while an account's order stream is up (it pushes every change of a stop, and each push
    # reads the stops again), its open orders are also read over REST at every n-th
    # reconcile, as a net for a missed push; 1: at every reconcile. Each read is one or two
    # requests per held symbol on Binance: at 50 accounts, every reconcile doubles alertd's
    # CPU (docs/benchmarks.md). The same n-th reconcile reads what else a push or another
    # answer tells between: Bybit's positions of a settle coin none is held of (USDC), OKX's
    # account configuration (ExchangeAdapter.snapshot_begins)
    stops_reconcile_every: Annotated[int, Field(ge=1, le=1000)] = 5
    # the account's fee rates (Bybit's GET /v5/account/fee-rate, OKX's GET
    # /api/v5/account/trade-fee) follow its VIP level, which both exchanges set once a day
    # (Bybit: "VIP levels are refreshed daily at 7:00 AM UTC", help center article
    # 000001634; OKX: "Tiers are updated daily", www.okx.com/help/360002550331): read at the
    # bootstrap, whenever the held symbols change, and again at every n-th reconcile; 1: at
    # every reconcile. Bybit's answer lists every linear symbol (550 at 550 markets): it
    # was the largest part of a calm reconcile's CPU (docs/benchmarks.md, calm13)
    fee_rates_reconcile_every: Annotated[int, Field(ge=1, le=1000)] = 10
    backoff: BackoffSettings = BackoffSettings()
    order_books: OrderBookSettings = OrderBookSettings()
    # the machine's own addresses the accounts' requests and websockets are sent from, the
    # accounts spread over them (:func:`source_address`): each address has the exchanges'
    # per-IP limits of its own (docs/scaling.md, "Several source addresses")
    source_addresses: Annotated[list[str], Field(max_length=MAX_SOURCE_ADDRESSES)] = Field(
        default_factory=list
    )

    @field_validator("source_addresses")
    @classmethod
    def _source_addresses(cls, value: list[str]) -> list[str]:
        addresses = [ip_literal(address) for address in value]
        for i, address in enumerate(addresses):
            if address in addresses[:i]:
                raise ValueError(f"{address} is listed twice (item {i})")
        return addresses


class AccountConfig(_Model):
    name: str
    exchange: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None
    wallet_address: str | None = None
    # the machine's own address this account's requests and websockets leave from (an IP
    # literal); None: feeds.source_addresses assigns one, or the system's default route
    source_address: str | None = None
    sandbox: bool = False
    symbols: list[str] | None = None
    # Merged over ccxt's exchange.urls['api'] with the same keys: for proxies and for tests.
    urls: dict[str, Any] = Field(default_factory=dict)
    # Advanced: merged over the ccxt exchange's options.
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{short(value)} is not a usable name: letters, digits, '_', '.', '-' only"
            )
        return value

    @field_validator("api_key_env", "secret_env", "password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                f"{short(value)} is not an environment variable name (letters, digits, '_')"
            )
        return value

    @field_validator("source_address")
    @classmethod
    def _source_address(cls, value: str | None) -> str | None:
        return None if value is None else ip_literal(value)

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        try:
            get_spec(value, live=True)
        except UnknownExchangeError as exc:
            raise ValueError(str(exc)) from None
        return value

    def secret_refs(self) -> dict[str, tuple[str, str]]:
        """``{secret: ('env' | 'file', name)}`` for the secrets this account references."""
        refs = {}
        for credential in Credential:
            secret = credential.value
            env, file = getattr(self, f"{secret}_env"), getattr(self, f"{secret}_file")
            if env is not None:
                refs[secret] = ("env", env)
            elif file is not None:
                refs[secret] = ("file", str(file))
        return refs


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"1w"``, ``"250ms"``.

    Finite, not negative, and at most ``MAX_DURATION_S`` (ten years): a time that far ahead
    is still a date every clock and every ``datetime`` can show.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif (
        isinstance(value, str)
        and len(value) <= MAX_NUMBER_CHARS
        and (m := _DURATION.fullmatch(value))
    ):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"not a duration: {short(value)} (use seconds, or 30s, 5m, 1h, 1d, 1w)")
    if math.isnan(seconds):
        raise ValueError("not a duration: NaN (use seconds, or 30s, 5m, 1h, 1d, 1w)")
    if seconds < 0:
        raise ValueError(f"must not be negative (got {short(value)})")
    if seconds > MAX_DURATION_S:
        raise ValueError(
            f"longer than {MAX_DURATION_S / 86400:.0f} days, alertd's limit (got {short(value)})"
        )
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), Field(ge=MIN_INTERVAL_S)]
Threshold = Annotated[Decimal, BeforeValidator(decimal_value)]


class ConditionConfig(_Model):
    """A metric on one side of a threshold: a rule's own test, and each of its ``while``
    conditions (docs/rules.md, "Rules of several conditions")."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    metric: str
    above: Threshold | None = None
    below: Threshold | None = None
    clear_above: Threshold | None = None
    clear_below: Threshold | None = None
    # the price-dynamics metrics' parameters (docs/rules.md, "Predictive metrics")
    horizon: Duration | None = None
    window: Duration | None = None

    def _scope_name(self) -> str | None:
        """The scope the condition's metric is read in, where it says (a rule's ``scope``)."""
        return None

    @model_validator(mode="after")
    def _thresholds(self) -> Self:
        from alertd.rules.metrics import ACCOUNT_METRICS, POSITION_METRICS

        known = {**ACCOUNT_METRICS, **POSITION_METRICS}
        if self.metric not in known:
            close = difflib.get_close_matches(self.metric, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else "see docs/rules.md"
            raise ValueError(f"unknown metric {short(self.metric)} ({hint})")
        scope = self._scope_name()
        if scope == "account" and self.metric not in ACCOUNT_METRICS:
            raise ValueError(f"{self.metric} is a position metric")
        if scope == "position" and self.metric not in POSITION_METRICS:
            raise ValueError(f"{self.metric} is an account metric")
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        self._probability_threshold()
        if self.above is not None and self.clear_above is not None:
            raise ValueError("an 'above' rule clears below: use clear_below")
        if self.below is not None and self.clear_below is not None:
            raise ValueError("a 'below' rule clears above: use clear_above")
        if (
            self.above is not None
            and self.clear_below is not None
            and self.clear_below > self.above
        ):
            raise ValueError(f"clear_below {self.clear_below} is above the threshold {self.above}")
        if (
            self.below is not None
            and self.clear_above is not None
            and self.clear_above < self.below
        ):
            raise ValueError(f"clear_above {self.clear_above} is below the threshold {self.below}")
        return self

    @field_validator("horizon", "window")
    @classmethod
    def _dynamics_parameter(cls, value: float | None, info: ValidationInfo) -> float | None:
        """``horizon`` and ``window`` only where the metric reads them, within bounds."""
        from alertd.rules.metrics import lookup

        name = info.field_name or ""
        metric = lookup(info.data.get("metric", ""), _scope(info.data.get("scope")))
        if value is None or metric is None:
            return value  # an unknown metric is reported on its own line
        takes = {"horizon": metric.horizon_s, "window": metric.window_s}
        if takes[name] is None:
            taken = [n for n, default in takes.items() if default is not None]
            raise ValueError(
                f"{metric.name} takes no {name}"
                + (f" (it takes {' and '.join(taken)})" if taken else "")
            )
        low, high = DYNAMICS_BOUNDS_S[name]
        if not low <= value <= high:
            raise ValueError(f"{value:g}s is outside {low:g}s..{high:g}s ({_SPAN_REASON[name]})")
        return value

    def _probability_threshold(self) -> None:
        from alertd.rules.metrics import Unit, lookup

        metric = lookup(self.metric, _scope(self._scope_name()))
        threshold = self.above if self.above is not None else self.below
        what = (
            {
                Unit.PROBABILITY: "a probability",
                Unit.RANK: "a queue position (0 last, 1 first in line)",
            }.get(metric.unit)
            if metric is not None
            else None
        )
        if what and threshold is not None and not 0 <= threshold < 1:
            raise ValueError(
                f"{self.metric} is {what}: a threshold of {threshold} can never be "
                "crossed (use a value from 0 to 1, e.g. 0.05 for 5%)"
            )


class RuleConfig(ConditionConfig):
    name: str
    scope: Literal["account", "position"] | None = None
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Literal["info", "warning", "critical"] = "warning"
    repeat: Duration | None = None
    accounts: list[str] | None = None
    exchanges: list[str] | None = None
    symbols: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    message: str | None = None
    # more conditions on the same subject that must hold at the same time (each a metric
    # past a threshold): the rule fires only while all of them do
    while_: (
        Annotated[list[ConditionConfig], Field(min_length=1, max_length=MAX_RULE_CONDITIONS)] | None
    ) = Field(None, alias="while")

    def _scope_name(self) -> str | None:
        return self.scope

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        from alertd.rules.messages import template_problem

        problem = None if value is None else template_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _conditions_in_scope(self) -> RuleConfig:
        """Each ``while`` condition reads the rule's own subject: a metric of its scope."""
        from alertd.rules.metrics import lookup, metric_scope

        scope = self.scope or (s.value if (s := metric_scope(self.metric)) else None)
        for k, c in enumerate(self.while_ or ()):
            if scope is not None and lookup(c.metric, _scope(scope)) is None:
                other = "a position" if scope == "account" else "an account"
                raise ValueError(
                    f"while[{k}]: {c.metric} is {other} metric, and this rule reads "
                    f"{scope} metrics (a condition is about the rule's own subject)"
                )
        return self


def _scope(value: object) -> Any:
    from alertd.rules.model import Scope

    return Scope(value) if value in ("account", "position") else None


# bounds of the price-dynamics parameters, in seconds (a mark window's memory grows with the
# longest window)
DYNAMICS_BOUNDS_S = {"horizon": (60.0, 7 * 86_400.0), "window": (60.0, 86_400.0)}
_SPAN_REASON = {
    "horizon": "from a minute to a week ahead",
    "window": "from a minute to a day of mark prices kept per symbol",
}


class ReceiverConfig(_Model):
    """A notification target: an apprise URL; ``${VAR}`` takes a secret from the environment.
    ``type: alertmanager``: a Prometheus Alertmanager (its base URL, http or https), sent
    structured alerts through its v2 API and kept firing by re-sending every
    ``resend_interval``."""

    name: str
    url: str | None = None  # apprise and alertmanager receivers
    type: Literal["apprise", "alertmanager", "telegram"] = "apprise"
    chat: int | None = None  # telegram: the chat id the bot writes to (one of telegram.chats)
    tags: list[str] = Field(default_factory=list)
    # at most this many messages a minute (Telegram allows about 20 a minute into one chat)
    rate_per_min: Annotated[float, Field(gt=0)] | None = None
    # alertmanager: how often firing alerts are re-sent (Prometheus' own default is 1m); each
    # is valid for 4 intervals, so Alertmanager resolves it only after 4 missed re-sends
    resend_interval: Interval | None = None

    @model_validator(mode="after")
    def _by_type(self) -> ReceiverConfig:
        if self.type == "telegram":
            if self.chat is None or self.url is not None:
                raise ValueError(
                    "a telegram receiver names the chat the bot writes to (chat: 123456789), "
                    "not a url; the bot's token is in the telegram: section"
                )
            return self
        if self.chat is not None:
            raise ValueError("chat is for type: telegram only")
        if self.url is None:
            raise ValueError("url: required (an apprise URL, or Alertmanager's address)")
        if self.type == "alertmanager":
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            if scheme not in ("http", "https"):
                raise ValueError(
                    "an alertmanager receiver's url is Alertmanager's http:// or https:// "
                    "address, e.g. http://127.0.0.1:9093"
                )
        elif self.resend_interval is not None:
            raise ValueError("resend_interval is for type: alertmanager only")
        return self


class RouteConfig(_Model):
    severities: list[Literal["info", "warning", "critical"]] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # receivers by name, and every receiver carrying one of ``tags``
    receivers: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    fallback: str | None = None

    @model_validator(mode="after")
    def _targets(self) -> RouteConfig:
        if not self.receivers and not self.tags:
            raise ValueError("a route needs receivers or tags")
        return self


_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _clock(value: str) -> str:
    """A time of day, ``HH:MM`` exactly (``"23:00\\n"`` is not one)."""
    if not _CLOCK.fullmatch(value):
        raise ValueError(f"{short(value)} is not a time of day like 23:00")
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo

    # ZoneInfo reads the file a key names: a folder ("Europe"), an over-long name or a NUL
    # raise OSError or ValueError; an unknown key raises ZoneInfoNotFoundError (a KeyError).
    try:
        if len(value) > 64:
            raise ValueError(value)
        ZoneInfo(value)
    except (OSError, ValueError, KeyError):
        raise ValueError(f"unknown time zone {short(value)} (e.g. Europe/Berlin, UTC)") from None
    return value


class QuietHoursConfig(_Model):
    start: Annotated[str, AfterValidator(_clock)]
    end: Annotated[str, AfterValidator(_clock)]
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"


class StopRules(_Model):
    """The stop-loss warnings (docs/rules.md, "Stop-loss coverage"), per position, on the
    accounts named in ``accounts`` (default: every account)."""

    accounts: list[str] | None = None
    # a position with no protective stop for missing_for (off by default: many traders exit
    # by other means, and a warning on every position would be noise for them)
    missing: bool = False
    missing_for: Duration = 60.0
    # a stop beyond the liquidation price: it can never trigger (on: never intended)
    beyond_liquidation: bool = True
    # a stop whose loss from entry exceeds this much of the settle currency, or this share
    # of the account's equity (either or both; off while unset)
    max_loss: Annotated[Threshold, Field(gt=0)] | None = None
    max_loss_share: Annotated[Threshold, Field(gt=0, le=1)] | None = None


class BuiltinRules(_Model):
    """Rules that are on unless turned off: alertd watching itself and the exchange's pushes."""

    feed_stale: bool = True  # no mark price for feeds.stale_after_s while positions are open
    feed_down: bool = True  # streams disconnected for longer than feed_down_after_s
    feed_down_after_s: Duration = 60.0
    # a reconcile found a position change no private push told (the stream open but dead):
    # the stream is reopened; resolved at the next push, or a reconcile missing nothing
    private_stream_missed: bool = True
    account_error: bool = True  # a feed stopped for good (bad key, banned IP)
    # an account in a mode alertd does not compute (its figures withheld, the exchange's ratio
    # shown where it reports one)
    account_mode: bool = True
    # alertd's margin ratio differs from the exchange's own by more than ratio_drift_above
    # (relative) at every reconcile for ratio_drift_for: alertd's numbers need checking
    ratio_drift: bool = True
    ratio_drift_above: Annotated[Threshold, Field(gt=0)] = Decimal("0.1")
    ratio_drift_for: Duration = 600.0
    # something held cannot be computed (unknown market, missing tier table or price) for
    # incomplete_data_for: the account's figures are missing, never silently
    incomplete_data: bool = True
    incomplete_data_for: Duration = 30.0
    # a part of the fee rates in the requirement no read could tell (Bybit: the GST an
    # India-KYC account pays on the fee to close): alertd's maintenance margin is low by it
    fee_gap: bool = True
    margin_call: bool = True  # Binance MARGIN_CALL, OKX liquidation-warning pushes
    stops: StopRules = StopRules()
    # --- the guide's defences: leverage, concentration, ADL (docs/rules.md) ---
    # the cross pool's effective leverage (notional / margin balance) above leverage_above
    leverage: bool = True
    leverage_above: Annotated[Threshold, Field(gt=1)] = Decimal(10)
    # the largest position's share of the account's notional above concentration_above
    # (accounts with two or more positions)
    concentration: bool = True
    concentration_above: Annotated[Threshold, Field(gt=0, lt=1)] = Decimal("0.8")
    # a position in profit at the front of the exchange's ADL queue (adl_rank above
    # adl_rank_above) while its mark's volatility over adl_window is fast (1% an hour)
    adl: bool = True
    adl_rank_above: Annotated[Threshold, Field(ge=0, lt=1)] = Decimal("0.7")
    adl_window: Annotated[Duration, Field(ge=60.0, le=86_400.0)] = 900.0
    # how long a leverage or concentration breach must last: they describe how the account
    # is built, not an emergency (the ratio and distance rules are), and marks wobble
    defences_for: Duration = 300.0
    # the insurance fund behind a held symbol (where the exchange publishes it: Binance)
    # fell by more than insurance_fund_drop_above of its high over insurance_fund_window;
    # off by default: one public request per held symbol every insurance_fund_interval
    insurance_fund: bool = False
    insurance_fund_drop_above: Annotated[Threshold, Field(gt=0, lt=1)] = Decimal("0.2")
    insurance_fund_window: Annotated[Duration, Field(ge=60.0, le=7 * 86_400.0)] = 21_600.0
    insurance_fund_interval: Annotated[Interval, Field(le=86_400.0)] = 600.0
    # gap (negative-balance) risk: a position too large for the order book near its
    # liquidation price, i.e. closing it there would lose more than gap_risk_above (settle
    # currency) past its bankruptcy price (feeds.order_books: what is fetched)
    gap_risk: bool = True
    gap_risk_above: Annotated[Threshold, Field(ge=0)] = Decimal(0)
    gap_risk_for: Duration = 60.0  # books flicker: only a shortfall that lasts is news


# the receiver ``heartbeat.deadman_url`` becomes (delivery/routing.py); no other may take it
DEADMAN = "deadman"


class HeartbeatConfig(_Model):
    # e.g. "08:00": a daily summary, in quiet_hours' time zone
    digest_at: Annotated[str, AfterValidator(_clock)] | None = None
    # pinged (HTTP GET, the receiver "deadman") while alertd is healthy; ${VAR} allowed
    deadman_url: str | None = None
    deadman_interval: Interval = 60.0


class TelegramConfig(_Model):
    """alertd's own Telegram bot (receivers of ``type: telegram``): the bot's token by
    reference, and the chats it may write to and answer (everything else is ignored)."""

    token_env: str | None = None
    token_file: Path | None = None
    chats: Annotated[list[int], Field(min_length=1)]
    # the Bot API's address: Telegram's, or a local Bot API server (the tests run one)
    api_url: str = "https://api.telegram.org"

    @field_validator("token_env")
    @classmethod
    def _token_variable(cls, value: str | None) -> str | None:
        if value is not None and not _VARIABLE.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> TelegramConfig:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give the bot's token as exactly one of token_env or token_file")
        scheme = self.api_url.split("://", 1)[0].lower() if "://" in self.api_url else ""
        if scheme not in ("http", "https"):
            raise ValueError(f"api_url: an http:// or https:// address (got {short(self.api_url)})")
        return self

    def read_token(self, environ: Mapping[str, str] | None = None) -> Secret:
        """The bot's token, from the environment or its file; missing or empty is a problem."""
        env = os.environ if environ is None else environ
        if self.token_env is not None:
            value = env.get(self.token_env, "")
            if not value:
                raise ConfigError(
                    [f"telegram.token_env: environment variable {self.token_env} is not set"]
                )
            return Secret(value)
        assert self.token_file is not None
        try:
            value = read_text(str(self.token_file), MAX_SECRET_BYTES).strip()
        except ReadError as exc:
            raise ConfigError(
                [f"telegram.token_file: cannot read {self.token_file}: {exc.reason}"]
            ) from None
        if not value:
            raise ConfigError([f"telegram.token_file: {self.token_file} is empty"])
        return Secret(value)


class DeliverySettings(_Model):
    retry_initial: Interval = 2.0
    retry_max: Interval = 300.0
    drain_on_shutdown: Duration = 10.0  # SIGTERM: time allowed to flush the outbox

    @model_validator(mode="after")
    def _order(self) -> DeliverySettings:
        if self.retry_initial > self.retry_max:
            raise ValueError(
                f"retry_initial {self.retry_initial:g}s is above retry_max {self.retry_max:g}s"
            )
        return self


class HttpConfig(_Model):
    """The local endpoint: /healthz, /metrics, /status. Off unless enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    token_env: str | None = None  # required for a non-loopback host: "Authorization: Bearer"

    @field_validator("token_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        # the server would otherwise take the literal "${MY-TOKEN}" as the token, or none
        if value is not None and not _VARIABLE.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (letters, digits and '_', "
                "not starting with a digit), e.g. ALERTD_HTTP_TOKEN"
            )
        return value

    @property
    def loopback(self) -> bool:
        import ipaddress

        try:
            return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @model_validator(mode="after")
    def _loopback_or_token(self) -> HttpConfig:
        if not self.loopback and self.token_env is None:
            raise ValueError(
                f"host {self.host} is reachable from other machines: set token_env "
                "(a bearer token every request must carry), or keep 127.0.0.1"
            )
        return self


# (name, metric, severity, levels): each level a Decimal in text, as a user writes it in YAML
_DEFAULT_RULE_TABLE = (
    ("margin-ratio-warning", "worst_ratio", "warning", {"above": "0.5", "clear_below": "0.45"}),
    ("margin-ratio-critical", "worst_ratio", "critical", {"above": "0.8", "clear_below": "0.75"}),
    (
        "liquidation-distance-critical",
        "liquidation_distance",
        "critical",
        {"below": "0.03", "clear_above": "0.04"},
    ),
)
DEFAULT_RULES = [
    RuleConfig(
        name=name,
        metric=metric,
        severity=severity,
        **{level: Decimal(value) for level, value in levels.items()},
    )
    for name, metric, severity, levels in _DEFAULT_RULE_TABLE
]


class Config(_Model):
    version: Literal[1]
    accounts: Annotated[list[AccountConfig], Field(min_length=1)]
    feeds: FeedSettings = FeedSettings()
    state_path: Path = Path("alertd.sqlite")
    rules: list[RuleConfig] = Field(default_factory=lambda: list(DEFAULT_RULES))
    builtin_rules: BuiltinRules = BuiltinRules()
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    quiet_hours: QuietHoursConfig | None = None
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    delivery: DeliverySettings = DeliverySettings()
    http: HttpConfig = HttpConfig()
    telegram: TelegramConfig | None = None

    @field_validator("state_path")
    @classmethod
    def _state_path(cls, value: Path) -> Path:
        text = str(value)
        if text in ("", ".", ":memory:") or text.startswith("file:"):
            raise ValueError(
                f"{short(text)} is not a file: silences, alert states and the outbox must "
                "survive a restart (e.g. /var/lib/alertd/alertd.sqlite)"
            )
        if "\0" in text:
            raise ValueError("a file name cannot hold a NUL character")
        return value

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        known = [a.name for a in self.accounts]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else f" (configured: {', '.join(known)})"
        raise InputError(f"no account named {short(name)}{hint}")


# account -> (the addresses its connections may leave from when it names none, one per family
# its exchange's host resolves to, () where none can be told; why not):
# alertd.feeds.route.default_route_address, passed in (config reads no exchange's URLs)
DefaultRoute = Callable[["AccountConfig"], tuple[tuple[str, ...], str]]


def config_warnings(config: Config, default_route: DefaultRoute | None = None) -> list[str]:
    """What is valid but cannot be meant: rule filters that match no configured account; one
    IP that may get two budgets (``default_route``: None, not resolved)."""
    names = [a.name for a in config.accounts]
    exchanges = sorted({a.exchange for a in config.accounts})
    out = []
    for i, rule in enumerate(config.rules):
        for field, wanted, known, what in (
            ("accounts", rule.accounts, names, "no account named"),
            ("exchanges", rule.exchanges, exchanges, "no account is on"),
        ):
            if wanted is None:
                continue
            if not wanted:
                out.append(f"rules[{i}].{field}: an empty list: this rule applies to nothing")
            for k, name in enumerate(wanted):
                if name not in known:
                    out.append(
                        f"rules[{i}].{field}[{k}]: {what} {short(name)}{did_you_mean(name, known)}"
                        ": the filter matches nothing there"
                    )
    for k, name in enumerate(config.builtin_rules.stops.accounts or ()):
        if name not in names:
            out.append(
                f"builtin_rules.stops.accounts[{k}]: no account named {short(name)}"
                f"{did_you_mean(name, names)}: the stop rules watch nothing there"
            )
    return out + _default_route_warnings(config, default_route)


def _default_route_warnings(config: Config, default_route: DefaultRoute | None) -> list[str]:
    """One line per exchange whose enabled accounts mix a ``source_address`` with none (and
    no ``feeds.source_addresses``) where the default route's address to the exchange cannot
    be resolved: those without one leave from it, and where a named one is that very address
    (a key whitelisted for the VPS's only IP), one IP gets two per-IP budgets, together twice
    the exchange's limit: a ban (docs/scaling.md, "Several source addresses"). Resolved, the
    feeds share one budget where it is named (FeedManager): nothing to warn of, unless the
    host's families route from two named addresses (a dual-stack host: the connections leave
    over either), which one budget cannot both be."""
    if config.feeds.source_addresses:
        return []
    out = []
    enabled = [(i, a) for i, a in enumerate(config.accounts) if a.enabled]
    for exchange in sorted({a.exchange for _, a in enabled}):
        mine = [(i, a) for i, a in enabled if a.exchange == exchange]
        bound = [(i, a.source_address) for i, a in mine if a.source_address is not None]
        unbound = [i for i, a in mine if a.source_address is None]
        if not (bound and unbound):
            continue
        head = (
            f"accounts[{bound[0][0]}].source_address: {bound[0][1]}, while {len(unbound)} "
            f"{exchange} account(s) have none (accounts[{unbound[0]}] first) and "
            "feeds.source_addresses is empty: those leave from the machine's default address"
        )
        advice = (
            f"twice the exchange's limit (a ban): give every {exchange} account a "
            "source_address, or list the addresses in feeds.source_addresses"
        )
        why = "alertd was not asked to resolve it"
        routes: tuple[str, ...] = ()
        if default_route is not None:
            routes, why = default_route(config.accounts[unbound[0]])
        if not routes:
            out.append(
                f"{head}, which alertd cannot resolve ({why[:200]}), counted as another IP; "
                f"if it is one of the named addresses, that IP gets two request budgets, {advice}"
            )
            continue
        named = [address for address in routes if address in {a for _, a in bound}]
        if len(named) > 1:
            # FeedManager shares the first's budget: connections over the other family leave
            # from an address with a budget of its own as well
            out.append(
                f"{head}, which is {' or '.join(named)} (the host's address families route "
                "from different addresses and alertd's connections try them all at once, the "
                f"first to connect kept), each named by an account: they share {named[0]}'s "
                f"request budget, and {', '.join(named[1:])} gets two, {advice}"
            )
    return out


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean x?)`` or `` (known: a, b)``, for a name that matches nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if len(name) < 100 else []
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (known: {', '.join(known)})" if known else ""


def _cross_checks(data: dict[str, Any]) -> list[str]:
    """Rules across fields, run on the raw data so they are reported beside field errors."""
    problems: list[str] = []
    accounts = data.get("accounts")
    seen: dict[str, int] = {}
    if not isinstance(accounts, list):
        accounts = []
    for i, account in enumerate(accounts):
        if not isinstance(account, dict):
            continue
        name = account.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"accounts[{i}].name: {name!r} is already used by accounts[{seen[name]}]"
                )
            seen.setdefault(name, i)
        exchange = account.get("exchange")
        spec = SPECS.get(exchange) if isinstance(exchange, str) else None
        needed = spec.credentials if spec is not None else ()
        for credential in Credential:
            secret = credential.value
            env, file = account.get(f"{secret}_env"), account.get(f"{secret}_file")
            if env is not None and file is not None:
                problems.append(f"accounts[{i}]: give {secret}_env or {secret}_file, not both")
            elif credential in needed and env is None and file is None:
                problems.append(f"accounts[{i}]: {exchange} needs {secret}_env or {secret}_file")
        if spec is not None and spec.wallet_address and not account.get("wallet_address"):
            problems.append(f"accounts[{i}]: {exchange} needs wallet_address")
    problems += _unique(data, "rules")
    problems += _unique(data, "receivers")
    receivers = _dicts(data.get("receivers"))
    names = {r["name"] for r in receivers if isinstance(r.get("name"), str)}
    heartbeat = data.get("heartbeat")
    if isinstance(heartbeat, dict) and heartbeat.get("deadman_url") and DEADMAN in names:
        i = next(i for i, r in enumerate(receivers) if r.get("name") == DEADMAN)
        problems.append(
            f"receivers[{i}].name: {DEADMAN!r} is the dead-man's switch's receiver "
            "(heartbeat.deadman_url): pick another name"
        )
    telegram = data.get("telegram")
    allowed = telegram.get("chats") if isinstance(telegram, dict) else None
    for i, receiver in enumerate(receivers):
        if receiver.get("type") != "telegram":
            continue
        if not isinstance(telegram, dict):
            problems.append(f"receivers[{i}]: a telegram receiver needs the telegram: section")
        elif isinstance(allowed, list) and receiver.get("chat") not in allowed:
            problems.append(
                f"receivers[{i}].chat: {short(receiver.get('chat'))} is not in telegram.chats "
                "(the chats the bot may write to)"
            )
    tags = {t for r in receivers for _, t in _strings(r.get("tags"))}
    routes = data.get("routes")
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        for k, name in _strings(route.get("receivers")):
            if name not in names:
                problems.append(f"routes[{i}].receivers[{k}]: no receiver named {short(name)}")
        for k, tag in _strings(route.get("tags")):
            if tag not in tags:
                problems.append(f"routes[{i}].tags[{k}]: no receiver has the tag {short(tag)}")
        fallback = route.get("fallback")
        if isinstance(fallback, str) and fallback not in names:
            problems.append(f"routes[{i}].fallback: no receiver named {short(fallback)}")
    return problems


def _dicts(value: Any) -> list[dict[Any, Any]]:
    """The mappings in a list from the raw file (anything else is a field error already)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[tuple[int, str]]:
    """``(index, item)`` for the strings in a list from the raw file."""
    if not isinstance(value, list):
        return []
    return [(k, v) for k, v in enumerate(value) if isinstance(v, str)]


def _unique(data: dict[str, Any], section: str) -> list[str]:
    items = data.get(section)
    if not isinstance(items, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            name = item["name"]
            if name in seen:
                problems.append(
                    f"{section}[{i}].name: {name!r} is already used by {section}[{seen[name]}]"
                )
            seen.setdefault(name, i)
    return problems


def parse_config(text: str, source: str = "config") -> Config:
    """The config in ``text``, or :class:`ConfigError` listing every problem.

    YAML is read with aliases, nesting and numbers bounded (:mod:`alertd.safe_yaml`), so a
    hostile file costs milliseconds, here and at a SIGHUP reload alike.
    """
    try:
        data, duplicates = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        kind = "" if isinstance(exc, safe_yaml.Refused) else "malformed YAML: "
        raise ConfigError(f"{where}: {kind}{problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config file is a YAML mapping (with version: 1)")
    if "version" in data and data["version"] != CONFIG_VERSION:
        raise ConfigError(
            f"version: this alertd reads config version {CONFIG_VERSION} "
            f"(got {short(data['version'])})"
        )
    problems = list(duplicates)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += validation_problems(exc)
    problems += _cross_checks(data)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    return parse_config(read_input(path, MAX_CONFIG_BYTES, ConfigError), str(path))


def read_secrets(
    account: AccountConfig, environ: Mapping[str, str] | None = None, where: str | None = None
) -> dict[str, Secret]:
    """Read the account's secrets from the environment or files; every missing one is listed."""
    env = os.environ if environ is None else environ
    found: dict[str, Secret] = {}
    problems = []
    for secret, (kind, name) in account.secret_refs().items():
        path = f"{where or 'account ' + account.name}.{secret}_{kind}"
        if kind == "env":
            value = env.get(name)
            if not value:
                problems.append(f"{path}: environment variable {name} is not set")
                continue
        else:
            try:
                value = read_text(name, MAX_SECRET_BYTES).strip()
            except ReadError as exc:
                problems.append(f"{path}: cannot read {name}: {exc.reason}")
                continue
            if not value:
                problems.append(f"{path}: {name} is empty")
                continue
        found[secret] = Secret(value)
    if problems:
        raise ConfigError(problems)
    return found


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, where: str, environ: Mapping[str, str] | None = None) -> Secret:
    """``text`` with every ``${VAR}`` replaced from the environment, as a :class:`Secret`.

    Receiver URLs carry tokens (Telegram's bot token, a webhook key): the YAML names the
    variable, the value only ever lives in memory.
    """
    env = os.environ if environ is None else environ
    missing = [name for name in _ENV_REF.findall(text) if not env.get(name)]
    if missing:
        raise ConfigError(
            [f"{where}: environment variable {name} is not set" for name in dict.fromkeys(missing)]
        )
    return Secret(_ENV_REF.sub(lambda m: env[m.group(1)], text))
