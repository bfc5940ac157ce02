"""Accounts alertd cannot serve as they are stop at once, with a reason; they never retry forever.

- Gate's private channels subscribe with the user id: ccxt raises ``ArgumentsRequired`` without
  ``exchange.uid``. alertd reads it at bootstrap from GET /api/v4/account/detail.
- Hyperliquid's unified abstractions keep the margin in the spot state: refused, naming the mode.
- Bybit classic accounts have no ``accountType=UNIFIED`` wallet: refused, naming the mode.
- Errors no retry can change are fatal; an expired Binance listen key stays transient.

ccxt's own code runs where it matters (request signing and URLs, response parsing, building the
subscribe frames), against a few REST answers served on 127.0.0.1. Recorded answers, cited:
- Gate "Get account detail": the real answer in ccxt's gate.py (``is_unified_enabled``).
- Hyperliquid ``userAbstraction``: a bare JSON string (Hyperliquid docs, "Info endpoint: Query a
  user's abstraction state"; the values listed in ccxt's hyperliquid.py ``is_unified_enabled``);
  the ``spotState`` push from ccxt's pro/hyperliquid.py ``handle_balance``.
- Bybit "Get Account Info": the real answer in ccxt's bybit.py (``is_unified_enabled``),
  ``unifiedMarginStatus`` 4; Bybit docs v5 "Different Account Modes" for the other values.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import ccxt
import pytest
from aiohttp import web

from alertd.config import AccountConfig, Secret
from alertd.errors import AccountRefused
from alertd.exchanges.bybit import account_mode as bybit_mode
from alertd.exchanges.gate import GateAdapter
from alertd.exchanges.hyperliquid import HyperliquidAdapter, abstraction_mode
from alertd.exchanges.registry import get_spec
from alertd.feeds.adapter import FrameError
from alertd.feeds.ccxt_exchange import ErrorKind, classify, make_exchange
from alertd.feeds.feed import AccountFeed, Change
from alertd.feeds.state import AccountMode, Coverage

from .fake_exchange.bybit import ACCOUNT_INFO_EXAMPLE, FakeBybit
from .support.aio import run
from .support.fakes import started
from .support.feeds import FAST, account_config, make_feed
from .support.poll import eventually
from .test_adapters_more import ADDRESS, HL_CROSS, GateStandIn, HLStandIn

BTC = "BTC/USDT:USDT"

# ccxt gate.py, is_unified_enabled: a real "Get account detail" answer
GATE_DETAIL = {
    "user_id": 10406147, "ip_whitelist": [], "currency_pairs": [], "key": {"mode": 1},
    "tier": 0, "tier_expire_time": "0001-01-01T00:00:00Z", "copy_trading_role": 0,
}  # fmt: skip
# ccxt pro/hyperliquid.py, handle_balance: a spotState push (the unified modes' balance)
HL_SPOT_PUSH = {
    "channel": "spotState",
    "data": {
        "user": "0xeeeeexxxxeeeee",
        "spotState": {
            "balances": [{"coin": "USDH", "token": 360, "total": "0.0", "hold": "0.0",
                          "entryNtl": "0.0"}],
            "tokenToAvailableAfterMaintenance": [[0, "56.1"]],
        },
    },
}  # fmt: skip


# --- a few REST answers on 127.0.0.1 -------------------------------------------------------


class Answers:
    """Answers one JSON body per path; records (method, path, headers) of every request."""

    def __init__(self, routes: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        body = await request.json() if request.can_read_body else {}
        answer = self.routes.get(request.path)
        if answer is None:
            return web.json_response({"label": "NOT_FOUND"}, status=404)
        return web.Response(text=json.dumps(answer(body)), content_type="application/json")

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Callable[[dict[str, Any]], Any]]) -> AsyncIterator[Answers]:
    answers = Answers(routes)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answers.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    answers.url = f"http://127.0.0.1:{port}"
    try:
        yield answers
    finally:
        await runner.cleanup()


class Captured(Exception):
    """Raised by a stand-in ``watch``: the subscribe frame ccxt built, never sent."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__("captured")
        self.message = message


async def capture(url: str, hash: str, message: Any = None, *args: Any) -> Any:
    raise Captured(message)


def gate_exchange(answers: Answers, **options: Any) -> Any:
    """ccxt's own gate, its account endpoint on 127.0.0.1, no markets (nothing else is asked)."""
    account = AccountConfig(
        name="g",
        exchange="gate",
        urls={"private": {"account": f"{answers.url}/api/v4"}},
        options=options,
    )
    secrets = {"api_key": Secret("gate-key"), "secret": Secret("gate-secret")}
    exchange = make_exchange(account, secrets, FAST)
    exchange.set_markets([])
    return exchange


def watched(feed: AccountFeed) -> list[Change]:
    """The changes the feed tells its listeners (the daemon alerts on ``FATAL``)."""
    changes: list[Change] = []
    feed.listeners.append(lambda _feed, change, _symbol: changes.append(change))
    return changes


async def subscribe_frame(exchange: Any, watch: str) -> dict[str, Any]:
    """The frame ccxt's own ``watch_<watch>`` would send."""
    exchange.watch = capture
    with pytest.raises(Captured) as caught:
        await getattr(exchange, f"watch_{watch}")()
    return caught.value.message


# --- the error classes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        # ccxt pro/gate.py subscribe_private, without exchange.uid
        (ccxt.ArgumentsRequired("gate requires uid to subscribe"), ErrorKind.FATAL),
        # Bybit: a UNIFIED request on the wrong account type (ccxt maps 10001 to BadRequest)
        (
            ccxt.BadRequest('bybit {"retCode":10001,"retMsg":"accountType only support UNIFIED."}'),
            ErrorKind.FATAL,
        ),
        (ccxt.BadSymbol("okx 51001 Instrument ID does not exist"), ErrorKind.FATAL),
        (ccxt.NotSupported("bybit watchPositions() is not supported yet"), ErrorKind.FATAL),
        (ccxt.AccountNotEnabled("okx 60029"), ErrorKind.FATAL),
        (AccountRefused("bybit: a classic (non-UTA) account"), ErrorKind.FATAL),
        # the listen key stays transient, whatever ccxt calls it
        (ccxt.BadRequest('binanceusdm {"code":-1125,"msg":"This listenKey does not exist."}'),
         ErrorKind.TRANSIENT),
        (ccxt.AuthenticationError("binanceusdm listenKeyExpired"), ErrorKind.TRANSIENT),
        # Bybit's empty 404 (a classic account asked for UNIFIED) cannot be told from an outage:
        # the account type is checked before it is asked
        (ccxt.ExchangeNotAvailable("bybit GET /v5/account/wallet-balance 404 Not Found"),
         ErrorKind.TRANSIENT),
        (ccxt.ExchangeError('bybit {"retCode":10016,"retMsg":"System error."}'),
         ErrorKind.TRANSIENT),
        (FrameError("size: missing"), ErrorKind.TRANSIENT),
        (RuntimeError("a bug of alertd's"), ErrorKind.TRANSIENT),
    ],
)  # fmt: skip
def test_what_no_retry_can_change_is_fatal(exc: Exception, kind: ErrorKind) -> None:
    assert classify(exc) is kind


# --- Gate: the user id ---------------------------------------------------------------------


def test_gate_reads_the_uid_from_the_account_endpoint_before_subscribing() -> None:
    async def body() -> None:
        async with serving({"/api/v4/account/detail": lambda _: GATE_DETAIL}) as answers:
            exchange = gate_exchange(answers)
            try:
                # the live failure: ccxt will not subscribe without a uid, and no retry helps
                with pytest.raises(ccxt.ArgumentsRequired) as caught:
                    await exchange.watch_balance()
                assert classify(caught.value) is ErrorKind.FATAL

                adapter = GateAdapter()
                await adapter.prepare(exchange)
                assert exchange.uid == "10406147"
                ((method, path, headers),) = answers.requests
                assert (method, path) == ("GET", "/api/v4/account/detail")
                assert headers["KEY"] == "gate-key" and headers["SIGN"]  # ccxt signed it

                # ccxt's own frames now carry the uid (futures.balances, futures.positions)
                frame = await subscribe_frame(exchange, "balance")
                assert (frame["channel"], frame["payload"]) == ("futures.balances", ["10406147"])
                exchange.options["watchPositions"] = {"fetchPositionsSnapshot": False}
                frame = await subscribe_frame(exchange, "positions")
                assert frame["channel"] == "futures.positions"
                assert frame["payload"] == ["10406147", "!all"]

                await adapter.prepare(exchange)  # a bootstrap retry: read once
                assert len(answers.requests) == 1
            finally:
                await exchange.close()

    run(body())


def test_gate_a_configured_uid_wins() -> None:
    async def body() -> None:
        async with serving({"/api/v4/account/detail": lambda _: GATE_DETAIL}) as answers:
            exchange = gate_exchange(answers, uid=20000001)
            try:
                await GateAdapter().prepare(exchange)
                assert exchange.uid == "20000001"
                assert answers.requests == []
                bad = gate_exchange(answers, uid="my-uid")
                with pytest.raises(AccountRefused, match=r"options\.uid is 'my-uid'"):
                    await GateAdapter().prepare(bad)
                await bad.close()
            finally:
                await exchange.close()

    run(body())


@pytest.mark.parametrize(
    "detail",
    [
        {k: v for k, v in GATE_DETAIL.items() if k != "user_id"},  # derived: no user_id
        dict(GATE_DETAIL, user_id=0),  # derived
        dict(GATE_DETAIL, user_id=None),  # derived
    ],
)
def test_gate_without_a_user_id_the_account_is_refused(detail: dict[str, Any]) -> None:
    async def body() -> None:
        async with serving({"/api/v4/account/detail": lambda _: detail}) as answers:
            exchange = gate_exchange(answers)
            try:
                with pytest.raises(AccountRefused) as caught:
                    await GateAdapter().prepare(exchange)
                text = str(caught.value)
                assert "no user id" in text and "user_id" in text and "options.uid" in text
                assert classify(caught.value) is ErrorKind.FATAL
                assert exchange.uid in (None, "")
            finally:
                await exchange.close()

    run(body())


class StillHub:
    """A mark hub that streams nothing: these tests are about the private side."""

    rates = None  # no asset index stream either

    def subscribe(self, symbol: str, subscriber: Any) -> None:
        pass

    def unsubscribe(self, symbol: str, subscriber: Any) -> None:
        pass

    async def force_reconnect(self, reason: str) -> None:
        pass


class GateLike(GateStandIn):
    """Gate's real REST answers; watches that fail as ccxt's do without a uid."""

    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__()
        self.detail = detail
        self.options: dict[str, Any] = {}
        self.uid: str | None = None
        self.subscribed_with: list[str | None] = []

    async def load_markets(self) -> Any:
        return self.markets

    async def privateAccountGetDetail(self, params: Any = None) -> Any:
        return self.answer("detail", params, self.detail)

    async def _private(self) -> None:
        self.subscribed_with.append(self.uid)
        if not self.uid:
            raise ccxt.ArgumentsRequired("gate requires uid to subscribe")
        await asyncio.Event().wait()  # subscribed: nothing more to say

    async def watch_positions(self) -> Any:
        await self._private()

    async def watch_balance(self) -> Any:
        await self._private()

    async def close(self) -> None:
        pass


def gate_feed(exchange: GateLike) -> tuple[AccountFeed, list[Change]]:
    config = AccountConfig(name="g", exchange="gate")
    feed = AccountFeed(config, {}, FAST, hub=StillHub())  # type: ignore[arg-type]
    feed.exchange = exchange
    return feed, watched(feed)


def test_gate_feed_sets_the_uid_at_bootstrap_and_its_streams_connect() -> None:
    async def body() -> None:
        exchange = GateLike(GATE_DETAIL)
        feed, _ = gate_feed(exchange)
        task = asyncio.create_task(feed.run(watchdog=False))
        try:
            await eventually(lambda: len(exchange.subscribed_with) == 2, what="both watches")
            assert exchange.subscribed_with == ["10406147", "10406147"]
            assert [name for name, _ in exchange.calls[:1]] == ["detail"]  # before the snapshot
            assert feed.state.fatal is None and feed.state.bootstrapped
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run(body())


def test_gate_feed_without_a_user_id_stops_with_the_reason() -> None:
    async def body() -> None:
        exchange = GateLike({k: v for k, v in GATE_DETAIL.items() if k != "user_id"})
        feed, changes = gate_feed(exchange)
        await asyncio.wait_for(feed.run(watchdog=False), 5)  # returns: no retry loop
        assert feed.state.fatal is not None
        assert feed.state.fatal.startswith("AccountRefused: gate: no user id")
        assert changes == [Change.FATAL]  # the account-error alert's signal
        assert exchange.subscribed_with == []  # no private watch was tried
        assert [name for name, _ in exchange.calls] == ["detail"]

    run(body())


# --- Hyperliquid: the account's abstraction ------------------------------------------------


def hyperliquid_exchange(answers: Answers) -> Any:
    account = AccountConfig(
        name="h",
        exchange="hyperliquid",
        wallet_address=ADDRESS,
        urls={"public": answers.url, "private": answers.url},
    )
    exchange = make_exchange(account, {}, FAST)
    exchange.set_markets([])
    return exchange


@pytest.mark.parametrize("mode", ["someNewMode", "UnifiedAccount", ""])
def test_hyperliquid_unknown_abstractions_are_refused_naming_the_value(mode: str) -> None:
    def info(request: dict[str, Any]) -> Any:
        return mode if request.get("type") == "userAbstraction" else HL_CROSS

    async def body() -> None:
        async with serving({"/info": info}) as answers:
            exchange = hyperliquid_exchange(answers)
            try:
                reading = await HyperliquidAdapter().fetch_mode(exchange)
            finally:
                await exchange.close()
        assert reading.coverage is Coverage.REFUSED
        text = reading.limits
        assert ADDRESS in text and mode in text and "standard" in text
        assert classify(AccountRefused(text)) is ErrorKind.FATAL
        assert reading.mode is AccountMode.UNKNOWN
        # asked with ccxt's own request alone; the perpetuals state was never read
        assert answers.paths() == ["/info"]

    run(body())


@pytest.mark.parametrize("mode", ["disabled", "default", "dexAbstraction"])
def test_hyperliquid_standard_abstractions_pass_through_ccxts_parsing(mode: str) -> None:
    async def body() -> None:
        async with serving({"/info": lambda _: mode}) as answers:
            exchange = hyperliquid_exchange(answers)
            try:
                answer = await exchange.publicPostInfo({"type": "userAbstraction", "user": ADDRESS})
            finally:
                await exchange.close()
        assert answer == f'"{mode}"'  # ccxt hands the bare JSON string back as text
        reading = abstraction_mode(ADDRESS, answer)
        assert reading.mode is AccountMode.SINGLE_ASSET
        assert reading.coverage is Coverage.COMPUTED and reading.detail == f"userAbstraction {mode}"

    run(body())


def test_hyperliquid_balance_stream_never_yields_none_for_a_spot_state() -> None:
    async def body() -> None:
        # ccxt's own handler turns the spotState push into the balance watch_balance returns
        pro = make_exchange(AccountConfig(name="h", exchange="hyperliquid"), {}, FAST)
        resolved: list[Any] = []

        class Client:
            def resolve(self, result: Any, message_hash: str) -> None:
                resolved.append(copy.deepcopy(result))

        try:
            pro.handle_balance(Client(), copy.deepcopy(HL_SPOT_PUSH))
        finally:
            await pro.close()
        (spot_balance,) = resolved

        exchange = HLStandIn(HL_CROSS)

        async def watch_balance() -> Any:
            return spot_balance

        exchange.watch_balance = watch_balance  # type: ignore[attr-defined]
        with pytest.raises(AccountRefused, match="spot clearinghouse state"):
            await HyperliquidAdapter().watch_balance(exchange)

    run(body())


def test_hyperliquid_ccxt_keeps_the_balance_stream_on_the_perpetuals_state() -> None:
    """alertd checks the abstraction itself: ccxt must not switch to ``spotState`` on its own."""

    async def body() -> None:
        assert get_spec("hyperliquid").ccxt_options["enableUnifiedMargin"] is False
        async with serving({"/info": lambda _: "unifiedAccount"}) as answers:
            exchange = hyperliquid_exchange(answers)
            try:
                frame = await subscribe_frame(exchange, "balance")
            finally:
                await exchange.close()
        assert frame["subscription"] == {"type": "clearinghouseState", "user": ADDRESS}
        assert answers.requests == []  # ccxt did not probe the abstraction itself

    run(body())


class HLLike(HLStandIn):
    def __init__(self, abstraction: str) -> None:
        super().__init__(HL_CROSS)
        self.abstraction = f'"{abstraction}"'
        self.watched: list[str] = []

    async def load_markets(self) -> Any:
        return self.markets

    async def watch_balance(self) -> Any:
        self.watched.append("balance")
        await asyncio.Event().wait()

    async def watch_positions(self) -> Any:
        self.watched.append("positions")
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


def test_hyperliquid_unknown_abstraction_stops_the_feed_naming_it() -> None:
    async def body() -> None:
        exchange = HLLike("someNewMode")
        config = AccountConfig(name="h", exchange="hyperliquid", wallet_address=ADDRESS)
        feed = AccountFeed(config, {}, FAST, hub=StillHub())  # type: ignore[arg-type]
        feed.exchange = exchange
        changes = watched(feed)
        await asyncio.wait_for(feed.run(watchdog=False), 5)
        assert feed.state.fatal is not None and "someNewMode" in feed.state.fatal
        assert changes == [Change.FATAL]
        assert exchange.watched == []  # no balance stream, so no None from it
        assert not feed.state.bootstrapped

    run(body())


# --- Bybit: the account type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (4, None),  # the recorded answer: UTA 1.0 pro
        (3, None), (5, None), (6, None), ("5", None),  # derived: other UTA versions
        (1, "a classic (non-UTA) account (unifiedMarginStatus 1)"),  # derived
        (2, "a unified margin account (UMA, not UTA)"),  # derived
        (None, "an account of unknown type (unifiedMarginStatus None)"),  # derived
        ("abc", "an account of unknown type"),  # derived
    ],
)  # fmt: skip
def test_bybit_account_types(status: Any, refused: str | None) -> None:
    info = dict(ACCOUNT_INFO_EXAMPLE, unifiedMarginStatus=status)
    reading = bybit_mode(info)
    if refused is None:
        assert reading.mode is AccountMode.UNIFIED_CROSS  # the recorded marginMode
        assert reading.coverage is Coverage.COMPUTED
        return
    assert reading.coverage is Coverage.REFUSED
    assert refused in reading.limits and "Unified Trading Accounts only" in reading.limits


def test_bybit_classic_account_stops_with_the_mode_named() -> None:
    async def body() -> None:
        async with started(FakeBybit(), [("key-c", "secret-c", "500")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-c", BTC, "long", "0.1", "61000")
            fake.set_unified_margin_status("key-c", 1)
            feed = make_feed(account_config("c", "bybit", fake), "key-c", "secret-c")
            changes = watched(feed)
            try:
                await asyncio.wait_for(feed.run(), 10)  # returns: no retry loop
            finally:
                await feed.close()
            assert feed.state.fatal is not None
            assert "classic (non-UTA) account (unifiedMarginStatus 1)" in feed.state.fatal
            assert changes == [Change.FATAL]
            paths = [path for _, path in fake.requests]
            assert paths.count("/v5/account/info") == 1
            assert "/v5/account/wallet-balance" not in paths

    run(body())


def test_bybit_account_turned_classic_stops_at_the_next_reconcile() -> None:
    async def body() -> None:
        async with started(FakeBybit(), [("key-u", "secret-u", "500")]) as fake:
            feed = make_feed(account_config("u", "bybit", fake), "key-u", "secret-u")
            changes = watched(feed)
            try:
                await feed.bootstrap()
                assert feed.state.fatal is None
                fake.set_unified_margin_status("key-u", 1)
                await feed.reconcile()
            finally:
                await feed.close()
            assert feed.state.fatal is not None and "classic" in feed.state.fatal
            assert changes[-1] is Change.FATAL

    run(body())
