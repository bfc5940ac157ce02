"""What alertd knows about one exchange, as one frozen record: :class:`ExchangeSpec`.

Each exchange module (``alertd/exchanges/<exchange>.py``) builds its own spec from its margin
profile, its feed adapter, the ccxt options it needs, the credentials a user must give, the
markets an account reads and what the exchange can do (push a margin call, stream privately,
report a key's permissions). :mod:`alertd.exchanges.registry` lists the specs; config
validation, the feeds, the CLI and replay look exchanges up there and nowhere else.

This module imports neither ccxt nor any exchange module, so that a spec can be built (and
``alertd calc`` can start) without loading ccxt.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from alertd.engine.profiles import ExchangeProfile

if TYPE_CHECKING:
    from alertd.feeds.adapter import ExchangeAdapter


class Credential(enum.Enum):
    """A secret an account can reference (``<value>_env`` or ``<value>_file`` in the config)."""

    API_KEY = "api_key"
    SECRET = "secret"
    PASSWORD = "password"  # OKX calls it the passphrase

    @property
    def ccxt_param(self) -> str:
        """The name of the ccxt exchange constructor's parameter that takes it."""
        return {"api_key": "apiKey"}.get(self.value, self.value)


class TierSource(enum.Enum):
    """Where an account's margin tiers come from."""

    LEVERAGE_BRACKETS = "leverage brackets"  # Binance: notional brackets with their ``cum``
    RISK_LIMITS = "risk limits"  # Bybit, Gate: risk limit tiers with their deductions
    POSITION_TIERS = "position tiers"  # OKX: step tiers sized in contracts
    MAX_LEVERAGE = "max leverage"  # Hyperliquid: one tier from the market's max leverage
    SNAPSHOT = "snapshot"  # no live feed: the tiers come with the snapshot file


# Reads an API key's permissions through a ccxt exchange: what the key allows beyond reading
# (``["withdrawals", ...]``), empty for a read-only key.
KeyPermissionCheck = Callable[[Any], Awaitable[list[str]]]

RequestWeight = Callable[[str, str, str, Mapping[str, Any]], float | None]


@dataclass(frozen=True, slots=True)
class MarketFilter:
    """The markets one account reads: contracts settled in one currency (one margin pool)."""

    settle: str
    # other settle currencies whose contracts share the pool (Bybit's unified account: USDC
    # perpetuals), each a margin asset on an equity line of its own (the adapter's
    # ``margin_assets``)
    pooled: tuple[str, ...] = ()
    # the contracts of every settle currency the exchange lists, each a margin asset of its
    # own (Binance USDⓈ-M: a pool per margin asset in single-asset mode, one USD pool in
    # multi-assets mode; ccxt's ``settle`` is exchangeInfo's ``marginAsset``)
    every_settle: bool = False

    def accepts(self, market: Mapping[str, Any]) -> bool:
        """A ccxt market of this pool."""
        return bool(market.get("contract")) and self.same_pool(market.get("settle"))

    def same_pool(self, settle: object) -> bool:
        """A position's market settles in this pool (None: ccxt does not know the market)."""
        return settle is None or self.every_settle or settle == self.settle or settle in self.pooled

    def margin_assets(self, markets: Mapping[str, Mapping[str, Any]] | None) -> tuple[str, ...]:
        """The margin assets besides ``settle`` whose contracts the catalogue ``markets``
        lists among those accepted, sorted: ``pooled`` and, with ``every_settle``, each
        listed settle currency (none known before the catalogue is loaded). Found once per
        catalogue and filter: every snapshot of every account asks (a Binance account's
        pools), and a catalogue is a new dict when it loads (ccxt's ``set_markets``), never
        changed in place; a scan of 550 markets per snapshot was 3 of the 69 CPU s of a
        start of 1,000 Binance accounts under cProfile."""
        if not self.every_settle or not markets:
            return self._margin_assets(markets)
        kept = _MARGIN_ASSETS.get(self)
        if kept is None or kept[0] is not markets:
            kept = _MARGIN_ASSETS[self] = (markets, self._margin_assets(markets))
        return kept[1]

    def _margin_assets(self, markets: Mapping[str, Mapping[str, Any]] | None) -> tuple[str, ...]:
        assets = set(self.pooled)
        if self.every_settle:
            assets.update(
                str(m["settle"])
                for m in (markets or {}).values()
                if m.get("settle") and self.accepts(m)
            )
        assets.discard(self.settle)
        return tuple(sorted(assets))


# per market filter, the last catalogue it was asked about and its margin assets there (one
# catalogue kept alive per filter: the exchange's current one)
_MARGIN_ASSETS: dict[MarketFilter, tuple[Mapping[str, Mapping[str, Any]], tuple[str, ...]]] = {}


@dataclass(frozen=True, slots=True)
class Capabilities:
    tier_source: TierSource
    # False where everything alertd reads is public (Hyperliquid, read by wallet address)
    private_streams: bool = True
    # The kind of the AccountEvent the adapter makes of the exchange's margin-call push
    # (Binance ``MARGIN_CALL``, OKX ``liquidation-warning``); None: the exchange pushes none.
    margin_call_push: str | None = None
    # The private stream's key expires unless renewed on a timer (Binance listen key).
    renews_listen_key: bool = False
    # How to read the API key's permissions, where the exchange reports them.
    key_permissions: KeyPermissionCheck | None = None
    # The exchange counts REST requests per IP, private ones too (Binance's request weight,
    # Hyperliquid's): every account from this host shares one budget, so its accounts share
    # one ccxt rate limiter. False where private limits are per account (Bybit, OKX, Gate).
    rest_limit_per_ip: bool = False
    # Where private limits are per account but the exchange also caps every request from one
    # IP (Bybit: 600 in 5 s): (requests, seconds); the accounts of one host are held within
    # it together, each still by its own ccxt limiter too. None: no such cap.
    requests_per_ip: tuple[int, float] | None = None
    # The exchange's documented per-IP budget in its own request weight per minute (Binance
    # USDⓈ-M: 2,400): the accounts sharing an IP are held to it by one rolling 60 s window.
    # None: ccxt's own pacing.
    rest_weight_per_minute: int | None = None
    # The exchange's documented cap on websocket openings from one IP: (openings, seconds).
    # The accounts' private openings take turns within it (IpBudget.openings), each before
    # ccxt signs its login. None: no cap documented.
    ws_openings_per_ip: tuple[int, float] | None = None
    # The documented weight of a request alertd sends where ccxt's cost understates it
    # (ccxt api name, HTTP method, path, params) -> weight; None: ccxt's own cost.
    request_weight: RequestWeight | None = None
    # The weight one account spends in that budget until it is live (its snapshot, its tier
    # brackets, its private stream's key): with many accounts on one IP they go live at the
    # budget's pace (FeedManager.live_after_s). None: not counted.
    live_weight: int | None = None
    # The weight of one account's snapshot (a reconcile) in that budget: with many accounts on
    # one IP, the reconciles are stretched to fit it (FeedManager.reconcile_interval_s).
    snapshot_weight: int | None = None
    # The weight in that budget of reading the open stop orders of an account that holds
    # ``n`` symbols (a reconcile reads them every ``feeds.stops_reconcile_every``-th time where
    # an order stream watches them, every time where none does); None: not counted.
    stops_weight: Callable[[int], int] | None = None
    # How many of its accounts bootstrap, resync or reconcile over REST at once by default
    # (``feeds.rest_concurrency`` unset). An account holds its slot while its own ccxt limiter
    # spaces its requests: where private limits are per account (OKX's per-UID limits: about
    # 0.9 s of pacing per bootstrap, Bybit's), 8 slots left 1,000 accounts live only after
    # minutes, so those exchanges take more (docs/benchmarks.md, tenth pass). Where one IP's
    # budget paces every account (Binance), more slots go faster nowhere and queue more live
    # accounts' work ahead of a retried bootstrap inside the shared limiter.
    rest_concurrency: int = 8
    # How the exchange answers a request from an IP it banned for a while (Binance's 418,
    # Bybit's 403 "access too frequent"): every account of that host then waits out the ban
    # (IpBudget), none is stopped. None: the exchange documents no such answer.
    ip_ban: IpBanAnswer | None = None
    # The header in which the exchange's 429 says when its limit resets, in epoch seconds or
    # milliseconds, where it sends no Retry-After (Gate's X-Gate-RateLimit-Reset-Timestamp):
    # the retry waits until then. None: none documented.
    rate_limit_reset_header: str | None = None
    # Where the exchange limits its public endpoints per IP while its private ones are per user
    # (OKX, Gate): the window of those public limits, seconds. A 429 on a public endpoint then
    # pauses every public request of the host for its wait (Retry-After, the reset header),
    # else this window; private requests go on. None: no such split.
    public_limit_window_s: float | None = None


@dataclass(frozen=True, slots=True)
class IpBanAnswer:
    """An exchange's answer to a banned IP, and how long the ban lasts where it does not say."""

    status: int  # the HTTP status
    lasts_s: float  # the ban's length where neither Retry-After nor the body gives its end
    text: str = ""  # what the body holds too (case-insensitive; "": the status alone)
    # where the body gives the ban's end, in epoch milliseconds: the regex's first group
    until_ms: str | None = None


def _no_options() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """One exchange: everything alertd needs to know about it. ``id`` is ccxt's id."""

    profile: ExchangeProfile
    # None for a profile-only exchange (alertd calc and replay, no live feed)
    adapter: type[ExchangeAdapter] | None
    capabilities: Capabilities
    markets: MarketFilter | None = None
    credentials: tuple[Credential, ...] = ()
    wallet_address: bool = False  # the account is read by its wallet address (Hyperliquid)
    # Options merged under the account's own ``options`` into the ccxt exchange
    ccxt_options: Mapping[str, Any] = field(default_factory=_no_options)
    # The spec whose profile models this exchange's coin-margined (inverse) markets, where a
    # separate ccxt id serves them (binanceusdm -> binancecoinm)
    inverse_spec: str | None = None
    # The key in ccxt's ``urls['api']`` its feed's REST requests go to, whose host stands for
    # the exchange's where the machine's route to it is read (alertd.feeds.route); None: the
    # host most of its URLs name (one for all but Binance's, whose sapi and spot URLs
    # outnumber the futures' own fapi)
    api_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ccxt_options", MappingProxyType(dict(self.ccxt_options)))
        if self.adapter is not None:
            if self.markets is None:
                raise ValueError(f"{self.id}: an exchange with a feed adapter needs markets")
            if self.adapter.market_filter != self.markets:
                raise ValueError(
                    f"{self.id}: {self.adapter.__name__}.market_filter is not the spec's markets"
                )

    @property
    def id(self) -> str:
        return self.profile.id

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def has_feed(self) -> bool:
        return self.adapter is not None

    def new_adapter(self) -> ExchangeAdapter:
        """A fresh adapter for one account (adapters keep per-account parsing state)."""
        if self.adapter is None:
            raise NotImplementedError(f"live feeds for {self.id} are not implemented yet")
        return self.adapter()
