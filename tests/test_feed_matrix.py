"""One feed suite for every exchange alertd streams from, end to end.

Each test runs for Binance USDⓈ-M, Bybit, OKX, Gate and Hyperliquid: the exchange is its local
server (``tests/fake_exchange/``) speaking its real REST and websocket protocol; ccxt's own
client code talks to it, configured only through the account's ``urls:`` and ``options:`` as a
user writes them; alertd's ``FeedManager`` runs the accounts' ``AccountFeed``s as the daemon
does. Where an exchange lacks a capability the matrix says so in its own parametrize entry,
with the reason, and ``test_the_matrix_states_what_alertd_declares`` holds that to alertd's
exchange registry.

Robust on a loaded machine: nothing depends on how fast a frame arrives. Staleness is read
from a clock the test moves (``SkewClock``: monotonic time plus an offset) with a 30 s limit,
so load never makes a feed stale and a silent exchange is made stale by moving the clock past
the limit; every wait is ``eventually`` with a generous bound; a push that a subscription
being set up could miss is repeated until it is seen, as a live exchange's ticking marks are.
The periodic REST reconcile is an hour away, so a change made while disconnected can only come
back through the resync after the reconnect.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from alertd.config import Config, Secret
from alertd.engine.model import MarginMode, Side
from alertd.exchanges.registry import get_spec, specs
from alertd.feeds.backoff import Backoff
from alertd.feeds.feed import AccountFeed, Change
from alertd.feeds.manager import FeedManager
from alertd.feeds.options import FeedOptions
from alertd.feeds.state import Stream
from tests.fake_exchange.base import FakeExchangeServer
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import async_test, background
from tests.support.fakes import make_fake, started
from tests.support.poll import eventually

D = Decimal
Fake = FakeExchangeServer[Any, Any]

TEST_TIMEOUT_S = 90.0
WAIT_S = 30.0  # a bound for each wait: generous, a loaded machine only makes it slower
REPUSH_S = 0.2  # how often a repeated push is repeated
MARK_INTERVAL_S = 0.25  # the fakes push marks on their own, as live exchanges do
STALE_AFTER_S = 30.0

# The feeds' settings, as a user writes them under ``feeds:``.
FEEDS = {
    # only the resync after a reconnect can bring back what changed while disconnected
    "reconcile_interval_s": 3600,
    "tier_refresh_interval_s": 3600,
    "listen_key_renew_interval_s": 1800,
    "stale_after_s": STALE_AFTER_S,
    "request_timeout_s": 10,
    "backoff": {"initial_s": 0.05, "max_s": 0.4, "multiplier": 2, "jitter": 0, "reset_after_s": 5},
}


# ---- the exchanges -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Venue:
    """What differs between exchanges, for this suite: everything else is the same test."""

    exchange: str  # ccxt's id
    settle: str
    key: str  # the account's API key, or its wallet address on Hyperliquid
    secrets: Mapping[str, str]  # credential -> value, as the user's *_env variables hold them
    # the second account, which the exchange refuses for good: its secrets or its config
    bad_secrets: Mapping[str, str]
    bad_config: Mapping[str, Any]
    bad_reason: str  # what alertd's stop reason names
    # the account's private streams are subscribed on the exchange
    private_ready: Callable[[Fake, str], bool]
    margin_call: Callable[[Fake, str], None] | None = None
    wallet: bool = False  # read by wallet address (no keys)
    fake_options: Mapping[str, Any] = field(default_factory=dict)

    def symbol(self, coin: str) -> str:
        return f"{coin}/{self.settle}:{self.settle}"

    @property
    def btc(self) -> str:
        return self.symbol("BTC")

    @property
    def eth(self) -> str:
        return self.symbol("ETH")


KEYS = {"api_key": "key-m", "secret": "secret-m"}
WALLET = "0x" + "5e" * 20


def _subscribed(*streams: str) -> Callable[[Fake, str], bool]:
    return lambda fake, _key: set(streams) <= fake.subscriptions()


def _binance_user_stream(fake: Fake, key: str) -> bool:
    assert isinstance(fake, FakeBinanceUSDM)
    return fake.has_user_stream(key)


def _okx_warning(fake: Fake, key: str) -> None:
    assert isinstance(fake, FakeOKX)
    fake.push_liquidation_warning(key)


def _binance_margin_call(fake: Fake, key: str) -> None:
    assert isinstance(fake, FakeBinanceUSDM)
    fake.push_margin_call(key)


BAD_KEYS = {"api_key": "key-unknown", "secret": "nope"}

VENUES = {
    "binanceusdm": Venue(
        "binanceusdm",
        "USDT",
        KEYS["api_key"],
        KEYS,
        BAD_KEYS,
        {},
        "AuthenticationError",
        _binance_user_stream,
        margin_call=_binance_margin_call,
    ),
    "bybit": Venue(
        "bybit",
        "USDT",
        KEYS["api_key"],
        KEYS,
        BAD_KEYS,
        {},
        "AuthenticationError",
        _subscribed("position", "wallet"),
    ),
    "okx": Venue(
        "okx",
        "USDT",
        KEYS["api_key"],
        {**KEYS, "password": FakeOKX.PASSPHRASE},
        {**BAD_KEYS, "password": FakeOKX.PASSPHRASE},
        {},
        "50111",
        _subscribed("positions", "account", "liquidation-warning"),
        margin_call=_okx_warning,
    ),
    "gate": Venue(
        "gate",
        "USDT",
        KEYS["api_key"],
        KEYS,
        BAD_KEYS,
        {},
        "INVALID_KEY",
        _subscribed("futures.positions", "futures.balances"),
    ),
    "hyperliquid": Venue(
        "hyperliquid",
        "USDC",
        WALLET,
        {},
        {},
        # Hyperliquid has no keys: its fatal account error is an address that is not one
        # (the API answers 422 "Failed to deserialize"; retrying cannot change that)
        {"wallet_address": "0xnot-an-address"},
        "wallet address",
        lambda fake, key: f"clearinghouseState:{key}" in fake.subscriptions(),
        wallet=True,
    ),
}

# ccxt cannot unsubscribe a mark stream here: the subscription stays (its frames are ignored)
# until the connection ends; alertd stops streaming the symbol all the same
KEEPS_MARK_SUBSCRIPTIONS = {
    "okx": "ccxt okx has no un_watch_mark_price (alertd/exchanges/okx.py unwatch_mark)",
    "gate": "ccxt gate has no unWatchTicker (has['unWatchTicker'] is False)",
}

# What an exchange cannot do, and why: these entries stay in the matrix, skipped with the reason.
NO_MARGIN_CALL_PUSH = {
    "bybit": "Bybit v5 pushes no margin call: its private topics (position, wallet, order, "
    "execution, greeks) carry none",
    "gate": "Gate futures pushes no margin call: futures.liquidates and futures.auto_deleverages "
    "come after the fact, not before",
    "hyperliquid": "Hyperliquid pushes no margin call: its user channels carry state and fills, "
    "no warning",
}


def every_exchange() -> list[Any]:
    return [pytest.param(venue, id=name) for name, venue in VENUES.items()]


def margin_call_entries() -> list[Any]:
    return [
        pytest.param(
            venue,
            id=name,
            marks=[pytest.mark.skip(reason=NO_MARGIN_CALL_PUSH[name])]
            if name in NO_MARGIN_CALL_PUSH
            else [],
        )
        for name, venue in VENUES.items()
    ]


# ---- running alertd's feeds against one ----------------------------------------------------------


class SkewClock:
    """The feeds' monotonic clock: real time plus an offset the test moves forward, so that a
    silent stream becomes stale when the test says, never because the machine is slow."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RecordingBackoff(Backoff):
    """The configured backoff, remembering each delay it hands out."""

    def __init__(self, delays: list[float]) -> None:
        backoff = FEEDS["backoff"]
        assert isinstance(backoff, dict)
        super().__init__(**backoff)
        self._delays = delays

    def next_delay(self) -> float:
        delay = super().next_delay()
        self._delays.append(delay)
        return delay


@dataclass
class World:
    venue: Venue
    fake: Fake
    manager: FeedManager
    clock: SkewClock
    delays: list[float]  # every backoff delay any stream or bootstrap waited
    changes: list[tuple[str, Change]]  # (account, what changed) as listeners were told

    @property
    def feed(self) -> AccountFeed:
        return self.manager.feeds["main"]

    def record(self, feed: AccountFeed, change: Change, _symbol: str | None) -> None:
        """A feed listener, as the daemon's: what each account's feed said changed."""
        self.changes.append((feed.config.name, change))

    def contracts(self, symbol: str, coins: str) -> Decimal:
        """``coins`` of the base currency in the exchange's contracts."""
        return D(coins) / self.fake.contract_size(symbol)

    def open(self, symbol: str, side: str, coins: str, entry: str, **kwargs: Any) -> Decimal:
        contracts = self.contracts(symbol, coins)
        self.fake.open_position(self.venue.key, symbol, side, contracts, entry, **kwargs)
        return contracts

    async def mark_reaches(self, price: str, feed: AccountFeed | None = None) -> None:
        """Move BTC's mark (again on every poll, as marks tick) until ``feed`` has it."""
        feed = feed or self.feed
        btc = self.venue.btc

        def arrived() -> bool:
            self.fake.set_mark(btc, price)
            return feed.state.marks.get(btc) == D(price)

        await eventually(arrived, WAIT_S, f"{btc} mark {price}", interval_s=REPUSH_S)

    async def until(self, check: Callable[[], Any], what: str) -> Any:
        return await eventually(check, WAIT_S, what)

    async def private_ready(self) -> None:
        await self.until(
            lambda: self.venue.private_ready(self.fake, self.venue.key), "private streams"
        )

    def mark_stale(self, feed: AccountFeed | None = None) -> bool:
        """The account's BTC mark is stale, as the daemon's view and watchdog judge it."""
        feed = feed or self.feed
        report = feed.state.freshness(self.clock(), STALE_AFTER_S, float("inf"))
        return any(f.stream is Stream.MARK and f.key == self.venue.btc and f.stale for f in report)


def account_entry(venue: Venue, fake: Fake, name: str, **extra: Any) -> dict[str, Any]:
    """An account as a user writes it: the exchange reached through ``urls:``/``options:``."""
    entry: dict[str, Any] = {
        "name": name,
        "exchange": venue.exchange,
        "urls": fake.ccxt_urls(),
        "options": dict(fake.ccxt_options),
    }
    if venue.wallet:
        entry["wallet_address"] = venue.key
    for credential in venue.secrets:
        entry[f"{credential}_env"] = f"{name.upper()}_{credential.upper()}"
    entry.update(extra)
    return entry


def as_secrets(values: Mapping[str, str]) -> dict[str, Secret]:
    return {name: Secret(value) for name, value in values.items()}


@contextlib.asynccontextmanager
async def world(
    venue: Venue,
    *,
    with_bad_account: bool = False,
    setup: Callable[[World], None] | None = None,
    feeds: Mapping[str, Any] = FEEDS,
) -> AsyncIterator[World]:
    """The venue's fake with account ``main`` (10,000 in the settle currency, 0.5 BTC long at
    62,000, the mark at 60,000), ``setup(world)`` applied, and a running ``FeedManager`` for
    ``main`` (and ``bad``, which the exchange refuses for good), with ``feeds:`` settings."""
    fake = make_fake(venue.exchange, mark_interval_s=MARK_INTERVAL_S, **venue.fake_options)
    async with started(fake, [(venue.key, venue.secrets.get("secret", ""), "10000")]):
        accounts = [account_entry(venue, fake, "main")]
        secrets = {"main": as_secrets(venue.secrets)}
        if with_bad_account:
            accounts.append(account_entry(venue, fake, "bad", **venue.bad_config))
            secrets["bad"] = as_secrets(venue.bad_secrets)
        config = Config.model_validate({"version": 1, "accounts": accounts, "feeds": feeds})
        clock, delays = SkewClock(), list[float]()
        options = FeedOptions(backoff=lambda: RecordingBackoff(delays), clock=clock)
        manager = FeedManager(config, secrets, options)
        the_world = World(venue, fake, manager, clock, delays, [])
        fake.set_mark(venue.btc, "60000")
        the_world.open(venue.btc, "long", "0.5", "62000")
        if setup is not None:
            setup(the_world)
        for feed in manager.feeds.values():
            feed.listeners.append(the_world.record)
        async with background(manager.run()):
            yield the_world


@contextlib.asynccontextmanager
async def streaming(venue: Venue, **kwargs: Any) -> AsyncIterator[World]:
    """``world`` once ``main`` is bootstrapped, its streams up and its BTC mark streaming
    (a price the REST snapshot did not give it)."""
    async with world(venue, **kwargs) as w:
        await w.until(lambda: w.feed.state.connected, "streams up")
        await w.mark_reaches("60100")
        yield w


# ---- the matrix ----------------------------------------------------------------------------------


def test_the_matrix_states_what_alertd_declares() -> None:
    """Every exchange with a live feed is in the matrix, and an exchange is skipped for a margin
    call exactly when alertd's registry says it pushes none."""
    live = {spec.id for spec in specs(live=True)}
    assert live == set(VENUES)
    for name, venue in VENUES.items():
        pushes = get_spec(name).capabilities.margin_call_push is not None
        assert pushes == (venue.margin_call is not None), name
        assert pushes == (name not in NO_MARGIN_CALL_PUSH), name


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_bootstrap_reads_the_whole_account(venue: Venue) -> None:
    expected: dict[str, Decimal] = {}

    def setup(w: World) -> None:
        w.fake.set_mark(venue.eth, "3000")
        expected["eth"] = w.open(
            venue.eth, "short", "2", "3100", margin_mode="isolated", isolated_margin="600"
        )
        expected["btc"] = w.contracts(venue.btc, "0.5")

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.bootstrapped, "bootstrap")
        assert set(state.positions) == {(venue.btc, Side.LONG), (venue.eth, Side.SHORT)}
        btc = state.positions[(venue.btc, Side.LONG)]
        eth = state.positions[(venue.eth, Side.SHORT)]
        assert (btc.contracts, btc.margin_mode) == (expected["btc"], MarginMode.CROSS)
        assert (eth.contracts, eth.margin_mode) == (expected["eth"], MarginMode.ISOLATED)
        assert eth.isolated_margin == D(600)
        assert state.marks[venue.btc] == D(60000) and state.marks[venue.eth] == D(3000)
        assert state.wallet_balance is not None
        assert state.missing() == []  # markets, marks and tier tables of what is held
        # alertd's figures agree with the exchange's own: nothing to report as a mismatch
        assert w.feed.comparison is not None
        assert w.feed.comparison.mismatches == (), w.feed.comparison.mismatches
        assert state.fatal is None


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_marks_positions_and_balance_stream_into_the_state(venue: Venue) -> None:
    async with streaming(venue) as w:
        state = w.feed.state
        await w.mark_reaches("59000")
        assert ("main", Change.MARK) in w.changes
        await w.private_ready()
        # a position opened on the exchange arrives over the private stream, with its mark
        w.fake.set_mark(venue.eth, "3000")
        eth = w.open(venue.eth, "long", "2", "3000")
        await w.until(lambda: (venue.eth, Side.LONG) in state.positions, "ETH opened")
        assert state.positions[(venue.eth, Side.LONG)].contracts == eth
        await w.until(lambda: state.marks.get(venue.eth) == D(3000), "ETH mark")
        w.fake.close_position(venue.key, venue.eth)
        await w.until(lambda: (venue.eth, Side.LONG) not in state.positions, "ETH closed")
        # and its mark stream is given up: alertd stops streaming it, and unsubscribes on the
        # exchange where ccxt can (elsewhere the subscription ends with the connection)
        await w.until(lambda: venue.eth not in w.feed.hub.subscribers, "ETH mark given up")
        if venue.exchange not in KEEPS_MARK_SUBSCRIPTIONS:
            await w.until(
                lambda: not any("eth" in s.lower() for s in w.fake.subscriptions()),
                "ETH mark unsubscribed",
            )
        assert venue.eth not in state.marks
        w.fake.set_balance(venue.key, "12345")
        await w.until(lambda: state.wallet_balance == D(12345), "balance update")
        assert state.positions[(venue.btc, Side.LONG)].contracts == w.contracts(venue.btc, "0.5")
        assert w.feed.reconnects == 0 and state.fatal is None


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_a_drop_mid_stream_resyncs_what_changed_while_disconnected(venue: Venue) -> None:
    async with streaming(venue) as w:
        state = w.feed.state
        await w.private_ready()
        connections = w.fake.ws_connections
        await w.fake.drop_connections()
        # changes while alertd is disconnected: their pushes reach nobody
        w.fake.set_mark(venue.eth, "3000")
        eth = w.open(venue.eth, "short", "3", "3100")
        w.fake.set_balance(venue.key, "9000")
        await w.until(lambda: (venue.eth, Side.SHORT) in state.positions, "resynced ETH")
        assert state.positions[(venue.eth, Side.SHORT)].contracts == eth
        await w.until(lambda: state.wallet_balance == D(9000), "resynced balance")
        assert w.feed.reconnects >= 1
        assert w.fake.ws_connections > connections
        # the streams are subscribed again: marks and private pushes flow
        await w.mark_reaches("58000")
        await w.private_ready()
        w.fake.set_balance(venue.key, "9500")
        await w.until(lambda: state.wallet_balance == D(9500), "balance pushed")
        # closing the short: a one-way close names no side (Binance "pa": "0", "ps": "BOTH")
        w.fake.close_position(venue.key, venue.eth)
        await w.until(lambda: (venue.eth, Side.SHORT) not in state.positions, "ETH closed")
        assert state.fatal is None


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_a_silent_exchange_makes_the_feed_stale_until_marks_return(venue: Venue) -> None:
    async with streaming(venue) as w:
        assert not w.mark_stale()
        connections = w.fake.ws_connections
        # the exchange goes silent; time passes beyond the limit (again if a mark that was
        # already on its way arrives after the clock moved)
        w.fake.marks_paused = True
        seen_stale = []

        def silent_past_the_limit_then_reconnected() -> bool:
            if not w.mark_stale():
                w.clock.advance(STALE_AFTER_S + 1)
            seen_stale.append(w.mark_stale())
            # alertd notices on its own (the watchdog) and reconnects the mark stream
            return w.fake.ws_connections > connections

        await eventually(
            silent_past_the_limit_then_reconnected,
            WAIT_S,
            "stale marks, then a forced reconnect",
            interval_s=REPUSH_S,
        )
        assert any(seen_stale)
        w.fake.marks_paused = False
        await w.until(lambda: not w.mark_stale(), "fresh again")
        await w.mark_reaches("61000")
        assert w.feed.state.fatal is None


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_a_fatal_account_error_stops_only_that_account(venue: Venue) -> None:
    async with world(venue, with_bad_account=True) as w:
        bad, good = w.manager.feeds["bad"], w.feed
        reason = await w.until(lambda: bad.state.fatal, "the refused account stopped")
        assert venue.bad_reason in reason, reason
        assert ("bad", Change.FATAL) in w.changes
        assert not bad.state.connected and not bad.state.bootstrapped
        for credential in ("secret", "password"):  # never in a stop reason
            assert venue.bad_secrets.get(credential, "\0") not in reason
        # the other account on the same exchange keeps streaming
        await w.until(lambda: good.state.connected, "the good account streaming")
        await w.mark_reaches("59500", good)
        await w.private_ready()
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "short", "1", "3000")
        await w.until(lambda: (venue.eth, Side.SHORT) in good.state.positions, "ETH")
        assert good.state.fatal is None
        assert ("good", Change.FATAL) not in w.changes


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_malformed_frames_are_logged_and_skipped(
    venue: Venue, caplog: pytest.LogCaptureFixture
) -> None:
    async with streaming(venue) as w:
        state, feed = w.feed.state, w.feed
        await w.private_ready()
        positions, wallet = dict(state.positions), state.wallet_balance
        connections = w.fake.ws_connections
        w.fake.send_malformed("json")
        await w.until(lambda: "invalid JSON" in feed.malformed, "the broken frame counted")
        w.fake.send_malformed("shape")
        await w.until(lambda: len(feed.malformed) >= 2, "the garbled frames counted")
        # skipped: the state is what it was, the streams go on, nothing reconnected
        await w.mark_reaches("57000")
        assert state.positions == positions
        assert state.wallet_balance == wallet
        assert w.fake.ws_connections == connections and feed.reconnects == 0
        assert state.fatal is None
        logged = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert any("invalid JSON" in line for line in logged), logged


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_rate_limits_and_server_errors_are_retried_with_backoff(venue: Venue) -> None:
    def setup(w: World) -> None:
        # the bootstrap's first requests are answered 429 (with Retry-After), then 503
        w.fake.fail_rest(429, count=2, retry_after_s=1)
        w.fake.fail_rest(503, count=1)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.bootstrapped, "bootstrap after the errors")
        assert not w.fake._failures  # every scripted error was answered
        # a backoff per failed attempt; one attempt may meet several of the errors (ccxt loads
        # the shared market catalogue with concurrent requests, one per market type)
        assert w.delays, "the bootstrap was retried after a backoff"
        assert state.fatal is None
        await w.until(lambda: state.connected, "streams up")
        await w.private_ready()
        # a reconnect whose resync is answered 429 and 502: retried until it succeeds
        before = len(w.delays)
        await w.fake.drop_connections()
        w.fake.fail_rest(429, count=2)
        w.fake.fail_rest(502, count=2)
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "1", "3000")
        await w.until(lambda: (venue.eth, Side.LONG) in state.positions, "resynced ETH")
        assert len(w.delays) > before
        assert state.fatal is None
        await w.mark_reaches("59000")


@pytest.mark.parametrize("venue", margin_call_entries())
@async_test(TEST_TIMEOUT_S)
async def test_the_exchanges_margin_call_push_reaches_alertd_as_an_event(venue: Venue) -> None:
    assert venue.margin_call is not None
    kind = get_spec(venue.exchange).capabilities.margin_call_push
    push = venue.margin_call

    async with streaming(venue) as w:
        await w.private_ready()
        events = w.feed.state.events

        def pushed() -> bool:
            push(w.fake, venue.key)  # again until seen: one sent mid-subscribe is lost
            return any(e.kind == kind for e in events)

        await eventually(pushed, WAIT_S, f"{kind} event", interval_s=REPUSH_S)
        event = next(e for e in events if e.kind == kind)
        assert "BTC" in event.detail, event.detail
        assert ("main", Change.EVENT) in w.changes
        assert w.feed.state.fatal is None
