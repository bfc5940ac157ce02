"""What every scriptable fake exchange server shares; an exchange module adds its wire format.

One aiohttp application serves REST and websockets on one loopback port. This module knows
nothing about any exchange's wire format. It owns:

- the lifecycle: bind ``127.0.0.1:0``, bounded shutdown, background tasks, a command line for
  benchmarks (``serve_main``);
- the REST request log and scripted REST failures (``fail_rest``: 429, 5xx, ...);
- API keys: the account registry, unknown and revoked keys (``revoke_key``) and bans (``ban``),
  each answered with the exchange's own error by ``_key_rejected``; the ban of the IP itself
  (``ban_ip``: every REST request, answered by ``_ip_ban_response``);
- the registry of websocket connections with one ordered outbound queue each, and their failure
  modes: abrupt drops (``drop_connections``), unanswered pings (``stop_answering_pings``, which
  an exchange's application-level ping handler also honours through ``answers_pings``),
  half-dead connections (``stall_connections``), slow handshakes (``handshake_delay_s``) and
  malformed frames (``send_malformed``, the frames themselves from ``_malformed_frames``);
- marks: validation, the periodic push (``mark_interval_s``, paused with ``marks_paused``) and
  the random walk of the command line.

An exchange module provides its wire format only: ``_routes()`` (REST paths and websocket
endpoints; its handlers raise ``Reject`` with the exchange's error body), ``_error_response()``
(scripted failures), ``_key_rejected()`` (unknown, revoked and banned keys), the account and
connection types (extending ``Credentials`` and ``WsConnection``), ``MALFORMED_JSON`` and
``_garbled_frame()`` (or ``_malformed_frames()`` where frames depend on the connection),
``_push_periodic_marks()``, ``_market_id()``, ``tick()``, ``set_mark()``, ``add_account()``,
``_open_position()`` (``open_position`` checks the arguments once, in ``position_order``),
``close_position()``, ``set_balance()`` and ``_urls()`` (what ``ccxt_urls()`` returns). A new
exchange is one module and one entry in ``tests/support/fakes.py``'s ``FAKES``.

Threading: scripting methods may be called from the loop that runs the server (the usual case in
tests, where the test and the server share one ``asyncio.run``) or from any other thread (a
server run on its own loop in a thread). Methods marked ``@scripted`` then run on the server's
loop while the caller waits, so that state never changes under a request being answered. Each
connection has its own outbound queue drained by one sender task, so frames scripted in order
arrive in order.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import enum
import functools
import json
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from aiohttp import WSMsgType, web

from tests.support.poll import eventually

LOOPBACK = "127.0.0.1"
SHUTDOWN_TIMEOUT_S = 2.0
SCRIPT_TIMEOUT_S = 10.0
MALFORMED_KINDS = ("json", "shape")

Num = str | int | float | Decimal
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="FakeExchangeServer[Any, Any]")


def peer(request: web.Request) -> str:
    """The client address a request or handshake came from: what an exchange's per-IP limits
    count by."""
    return request.remote or LOOPBACK


def now_ms() -> int:
    return int(time.time() * 1000)


def compact(data: Any) -> str:
    """JSON as exchanges send it: no spaces."""
    return json.dumps(data, separators=(",", ":"))


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, text=compact(data), content_type="application/json", headers=headers
    )


def json_object(text: str) -> dict[str, Any] | None:
    """A client's websocket request: a JSON object, or None for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def to_decimal(value: Num, what: str = "value") -> Decimal:
    """A finite Decimal from a scripted number (strings as written, floats by their repr)."""
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{what}: not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{what}: not a finite number: {value!r}")
    return result


def _text(value: Decimal) -> str:
    """A number as exchanges write it: plain, no exponent."""
    return format(value.normalize(), "f") if value else "0"


def positive(value: Num, what: str) -> Decimal:
    result = to_decimal(value, what)
    if result <= 0:
        raise ValueError(f"{what} must be positive")
    return result


def scripted(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run a synchronous scripting method on the server's loop thread.

    Called on that thread (or before ``start()``), it runs at once. Called from another thread
    while the loop runs, it is handed to the loop and the caller waits for its result, so that a
    request handler never sees half-changed state and exceptions reach the caller."""

    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = self._loop
        if loop is None or not loop.is_running() or threading.get_ident() == self._loop_thread:
            return method(self, *args, **kwargs)
        done: concurrent.futures.Future[R] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(method(self, *args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=SCRIPT_TIMEOUT_S)

    functools.update_wrapper(run, method)
    return run


class Reject(Exception):
    """Raised by a REST handler's checks (key, signature, parameters): the request is answered
    with ``response``, the exchange's error, instead."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class HeldAnswer:
    """A scripted slow answer: the next REST request whose path ends with ``path_suffix`` is
    answered as of its arrival, but sent only once ``released`` is set; with ``body``, the next
    one whose body holds it (Hyperliquid's info requests share one path); ``skip`` such
    requests answered at once before it."""

    path_suffix: str
    body: str | None = None
    skip: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: bool = False


@dataclass
class RestFailure:
    """A scripted failure: the next ``remaining`` REST requests under ``path_prefix`` fail."""

    status: int
    remaining: int
    path_prefix: str | None
    retry_after_s: float | None


# ---- positions -------------------------------------------------------------------------------

_SIDES = {"long": True, "buy": True, "short": False, "sell": False}


def parse_side(side: str) -> bool:
    """True for a long ('long' / 'buy'), False for a short ('short' / 'sell')."""
    try:
        return _SIDES[side.lower()]
    except KeyError:
        raise ValueError(f"side must be 'long' or 'short', not {side!r}") from None


@dataclass(frozen=True)
class StopOrderSpec:
    """An open conditional order on a fake exchange, as the scripting API places it; each
    exchange serves it in its own wire format (its open-orders REST answer and order push).

    ``side`` is the position it closes ("long": a sell); ``kind`` "stop" fires on a move
    against that position, "take_profit" on a move for it; ``contracts`` None closes the
    whole position (close-position / position TP/SL)."""

    order_id: str
    market: Any  # the exchange's market type
    side: str
    kind: str
    trigger: Decimal
    contracts: Decimal | None
    hedge: bool
    created_ms: int

    @property
    def sell(self) -> bool:
        return self.side == "long"

    @property
    def falls(self) -> bool:
        """Triggered by a falling price (a long's stop, a short's take-profit)."""
        return (self.kind == "stop") == self.sell


@dataclass(frozen=True)
class PositionOrder:
    """The checked arguments of ``open_position``."""

    long: bool
    size: Decimal
    entry: Decimal
    isolated: bool
    isolated_margin: Decimal  # the isolated position's own margin; 0 for cross
    leverage: Decimal


def position_order(
    side: str,
    contracts: Num,
    entry_price: Num,
    margin_mode: str,
    isolated_margin: Num | None,
    leverage: Num,
    contract_size: Decimal = Decimal(1),
) -> PositionOrder:
    """Validate ``open_position``'s arguments. Isolated margin defaults to the initial margin
    at entry (``contracts * contract_size * entry_price / leverage``)."""
    is_long = parse_side(side)
    if margin_mode not in ("cross", "isolated"):
        raise ValueError(f"margin_mode must be 'cross' or 'isolated', not {margin_mode!r}")
    size = positive(contracts, "contracts")
    entry = positive(entry_price, "entry_price")
    lev = positive(leverage, "leverage")
    isolated = margin_mode == "isolated"
    margin = Decimal(0)
    if isolated:
        margin = (
            to_decimal(isolated_margin, "isolated_margin")
            if isolated_margin is not None
            else size * contract_size * entry / lev
        )
    elif isolated_margin is not None:
        raise ValueError("isolated_margin is only for margin_mode='isolated'")
    return PositionOrder(is_long, size, entry, isolated, margin, lev)


# ---- API keys --------------------------------------------------------------------------------


@dataclass
class Credentials:
    """An API key pair and what was scripted about it; an exchange's account extends it."""

    api_key: str
    secret: str
    banned_until_ms: int | None = field(default=None, kw_only=True)
    revoked: bool = field(default=False, kw_only=True)


class KeyProblem(enum.Enum):
    MISSING = "no API key sent"
    UNKNOWN = "unknown or revoked API key"
    BANNED = "banned"


@dataclass(frozen=True)
class KeyRejection:
    problem: KeyProblem
    banned_until_ms: int | None = None


A = TypeVar("A", bound=Credentials)


# ---- websocket connections -------------------------------------------------------------------


class WsConnection:
    """One accepted websocket: its streams, its owner and an ordered outbound queue.

    An exchange subclasses it for what its protocol adds (a listen key, a connection id)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        self.request = request
        self.ws = ws
        self.kind = kind  # "public" or "private"
        self.streams: set[str] = set()  # stream names or topics, in the exchange's spelling
        self.owner: str | None = None  # API key of an authenticated private connection
        self.live = True  # False once the exchange stopped sending on it (an expired key)
        # its private pushes silently stop, the socket open and answering (:meth:`mute_pushes`):
        # all of them, or those of the channels named
        self.muted = False
        self.muted_channels: frozenset[str] = frozenset()
        self.stalled = False  # half-dead (:meth:`stall`)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def post(self, text: str) -> None:
        """Queue a text frame. Loop thread only (the server wraps it for other threads)."""
        if not self.ws.closed:
            self._queue.put_nowait(text)

    def send(self, data: Any) -> None:
        """Queue a JSON frame. Loop thread only."""
        self.post(compact(data))

    async def _send_loop(self) -> None:
        while True:
            text = await self._queue.get()
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, as a network failure does."""
        self._sender.cancel()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def stall(self) -> None:
        """Half-dead, the TCP connection left open: nothing more is read from it (the client's
        frames, pings and CLOSE go unanswered) and nothing sent, as when a path between the
        two fails without either end closing."""
        self._sender.cancel()
        self.stalled = True
        transport = self.request.transport
        if transport is not None:
            transport.pause_reading()

    def unstall(self) -> None:
        """Reading again (sending nothing still): a CLOSE the client sent meanwhile is read and
        answered, as when the path comes back."""
        self.stalled = False
        transport = self.request.transport
        if transport is not None:
            transport.resume_reading()

    async def close(self, code: int) -> None:
        self._sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code), SHUTDOWN_TIMEOUT_S)

    async def finish(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender


C = TypeVar("C", bound=WsConnection)
Candle = tuple[int, str, str, str, str]  # open time ms, open, high, low, close
BookSides = tuple[list[tuple[str, str]], list[tuple[str, str]]]  # bids, asks: (price, size)


# ---- the server ------------------------------------------------------------------------------


class FakeExchangeServer(Generic[A, C]):
    """Lifecycle, REST log and failures, keys, websocket registry and marks of one fake exchange.

    See the module docstring for what a subclass provides."""

    NAME: ClassVar[str] = ""  # what the command line calls it
    BAN_DURATION_S: ClassVar[float] = 120.0
    DEFAULT_LEVERAGE: ClassVar[int] = 10
    # options alertd must pass to ccxt for this exchange's server (``ccxt_options``)
    CCXT_OPTIONS: ClassVar[dict[str, Any]] = {}
    # the exchange's documented cap on websocket openings per IP (openings, seconds), which
    # ``cap_ws_openings()`` enforces; None: it documents none
    WS_OPENINGS_PER_IP: ClassVar[tuple[int, float] | None] = None

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        if mark_interval_s is not None and mark_interval_s <= 0:
            raise ValueError("mark_interval_s must be positive")
        self.mark_interval_s = mark_interval_s
        self.marks_paused = False  # the periodic mark push goes quiet (a silent feed)
        self.port: int = 0
        self.base_url: str = ""
        self.requests: list[tuple[str, str]] = []
        # (monotonic time, method, path, query) of every REST request, when kept (benchmarks:
        # what a client spent on the exchange's request weight, and when)
        self.timed_requests: list[tuple[float, str, str, str]] | None = None
        self.timed_peers: list[str] = []  # the client address of each of those, in order
        # the client port of each of those, in order: its TCP connection, with the address
        self.timed_ports: list[int] = []
        self.ws_connections: int = 0
        # the per-IP opening cap enforced (``cap_ws_openings``; None: every opening accepted),
        # the monotonic times of the openings accepted by remote address, and those refused
        self.ws_openings_cap: tuple[int, float] | None = None
        self.ws_openings: dict[str, list[float]] = {}
        self.ws_refused: int = 0
        # each websocket upgrade answered this late: a slow handshake, the client still dialling
        self.handshake_delay_s = 0.0
        self.ccxt_options: dict[str, Any] = dict(self.CCXT_OPTIONS)
        self._accounts: dict[str, A] = {}
        self._markets: dict[str, Any] = {}  # by exchange id; an exchange's market type
        self._connections: set[C] = set()
        self._failures: list[RestFailure] = []
        self._holds: list[HeldAnswer] = []
        # each account's private pushes held back (delay_pushes): how to send each, in order
        self._held_pushes: dict[str, list[Callable[[], None]]] = {}
        self._answer_pings = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # 1-minute mark-price candles by market id (open time ms, open, high, low, close)
        self._mark_candles: dict[str, list[Candle]] = {}
        # open conditional orders by account key, by order id (``add_stop``)
        self._stops: dict[str, dict[str, StopOrderSpec]] = {}
        self._stop_seq = 0
        self.push_stop_orders = True  # False: order changes are missed by the stream (REST only)
        # order books by market id: bids best first, asks best first, (price, size) as text
        self._books: dict[str, BookSides] = {}
        self.book_requests: list[str] = []  # the market ids whose order book was asked for
        # the IP bans (``ban_ip``): until when (epoch ms) by client address (None: whatever
        # the address), and the REST requests they refused
        self._ip_bans: dict[str | None, int] = {}
        self.refused_while_banned: int = 0
        # the REST requests by client address (the peer of the request: 127.0.0.2, 127.0.0.3,
        # ... are other IPs to the server, as they are to an exchange), the per-IP limits'
        # unit: a client sending from several addresses has each one's budget
        self.rest_peers: collections.Counter[str] = collections.Counter()

    # ---- to be provided by an exchange ----------------------------------------------------------

    def _routes(self) -> Iterable[web.RouteDef]:
        raise NotImplementedError

    def _error_response(self, status: int, retry_after_s: float | None) -> web.StreamResponse:
        """The exchange's answer to a scripted failure (``fail_rest``)."""
        raise NotImplementedError

    def _ip_ban_response(self, until_ms: int) -> web.StreamResponse:
        """The exchange's answer to every REST request from an IP it banned (``ban_ip``)."""
        raise NotImplementedError

    def _count_request(self, request: web.Request) -> None:
        """A REST request as it arrives, before any scripted failure: what the exchange counts
        of it against its limits (Binance's request weight); nothing by default."""

    # the truncated event ``send_malformed("json")`` sends: text that starts like JSON
    MALFORMED_JSON: ClassVar[str] = ""

    def _malformed_frames(self, conn: C, kind: str) -> list[str]:
        """The broken frames ``send_malformed(kind)`` sends on ``conn``: ``MALFORMED_JSON``, or
        for each stream ``conn`` subscribes (in order) the exchange's push on it with garbled
        values (``_garbled_frame``)."""
        if kind == "json":
            return [self.MALFORMED_JSON]
        frames = (self._garbled_frame(stream) for stream in sorted(conn.streams))
        return [compact(frame) for frame in frames if frame is not None]

    def _garbled_frame(self, stream: str) -> dict[str, Any] | None:
        """The exchange's push on ``stream`` with "abc" where numbers belong (None: nothing
        is sent on that stream)."""
        raise NotImplementedError

    def _push_periodic_marks(self) -> None:
        """Loop thread: push the current marks to their subscribers (every ``mark_interval_s``)."""
        raise NotImplementedError

    def ccxt_urls(self) -> dict[str, Any]:
        """Deep-merge this over ``exchange.urls['api']``."""
        if not self.port:
            raise RuntimeError("start() the server first")
        return self._urls(self.base_url, f"ws://{LOOPBACK}:{self.port}")

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        """``ccxt_urls`` of the running server (``http://`` and ``ws://`` host and port)."""
        raise NotImplementedError

    def _market_id(self, symbol: str) -> str:
        """The exchange's id of a unified symbol ('BTC/USDT:USDT') or of an id."""
        raise NotImplementedError

    def tick(self, symbol: str) -> Decimal:
        """The symbol's price tick (an exchange's market type keeps it as ``.tick``)."""
        tick: Decimal = self._market(symbol).tick
        return tick

    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        """Move the mark; its subscribers get the exchange's mark event (unless ``push=False``:
        the periodic push carries it later)."""
        raise NotImplementedError

    def _open_position(self, account: A, market: Any, order: PositionOrder, hedge: bool) -> None:
        """Loop thread: store the checked position and push what the exchange pushes."""
        raise NotImplementedError

    def add_symbol(self, symbol: str, mark: Num) -> None:
        """Add (or replace) a perpetual 'BASE/QUOTE:SETTLE' with the exchange's generic tiers."""
        raise NotImplementedError

    # the scripting API of accounts, the same on every exchange (extra keywords allowed)

    def add_account(self, api_key: str, secret: str, wallet_balance: Num = "1000") -> None:
        raise NotImplementedError

    @scripted
    def open_position(
        self,
        api_key: str,
        symbol: str,
        side: str,
        contracts: Num,
        entry_price: Num,
        *,
        margin_mode: str = "cross",
        isolated_margin: Num | None = None,
        leverage: Num | None = None,
        hedge: bool = False,
    ) -> None:
        """Set (not add to) a position and push the account event a fill would cause. ``side``
        'long' / 'short'; ``hedge`` picks a hedge-mode leg; ``leverage`` defaults to the
        exchange's ``DEFAULT_LEVERAGE``; isolated margin to the initial margin at entry (or the
        exchange's own ``_opening_margin``)."""
        if leverage is None:
            leverage = self.DEFAULT_LEVERAGE
        market = self._market(symbol)
        if margin_mode == "isolated" and isolated_margin is None:
            isolated_margin = self._opening_margin(api_key, side, contracts, entry_price, leverage)
        order = position_order(
            side,
            contracts,
            entry_price,
            margin_mode,
            isolated_margin,
            leverage,
            self._contract_size(market),
        )
        self._open_position(self._account(api_key), market, order, hedge)

    def _contract_size(self, market: Any) -> Decimal:
        """Base units per contract, where an exchange counts positions in contracts."""
        return Decimal(1)

    def _opening_margin(
        self, api_key: str, side: str, contracts: Num, entry_price: Num, leverage: Num
    ) -> Decimal | None:
        """An isolated position's margin when none is given, where the exchange holds more
        than the initial margin at entry (None: that initial margin)."""
        return None

    @scripted
    def contract_size(self, symbol: str) -> Decimal:
        """Base units per contract of ``symbol`` (OKX's ctVal, Gate's quanto; 1 elsewhere)."""
        return self._contract_size(self._market(symbol))

    def close_position(self, api_key: str, symbol: str, side: str | None = None) -> None:
        """Close the symbol's position(s) (``side`` picks one hedge leg) and push the close."""
        raise NotImplementedError

    # ---- open stop orders (served by each exchange in its own format) ---------------------------

    # the kinds of conditional order :meth:`add_stop` places (an exchange serving more adds them)
    STOP_KINDS: ClassVar[tuple[str, ...]] = ("stop", "take_profit")

    @scripted
    def add_stop(
        self,
        api_key: str,
        symbol: str,
        side: str,
        trigger: Num,
        contracts: Num | None = None,
        *,
        kind: str = "stop",
        hedge: bool = False,
    ) -> str:
        """Place a conditional order closing ``contracts`` (None: the whole position) of the
        ``side`` position in ``symbol`` when the price reaches ``trigger``; its id. The
        exchange's order stream pushes it where the exchange has one."""
        if side not in ("long", "short") or kind not in self.STOP_KINDS:
            kinds = "/".join(self.STOP_KINDS)
            raise ValueError(f"side long/short and kind {kinds}, not {side}/{kind}")
        if api_key not in self._accounts:
            raise KeyError(f"no account {api_key!r}")
        self._stop_seq += 1
        stop = StopOrderSpec(
            str(4_000_000 + self._stop_seq),
            self._market(symbol),
            side,
            kind,
            Decimal(str(trigger)),
            None if contracts is None else Decimal(str(contracts)),
            hedge,
            int(time.time() * 1000),
        )
        self._stops.setdefault(api_key, {})[stop.order_id] = stop
        if self.push_stop_orders:
            self._push_stop(api_key, stop, "new")
        return stop.order_id

    @scripted
    def cancel_stop(self, api_key: str, order_id: str) -> None:
        """Cancel an open conditional order (and push the cancel where the exchange does)."""
        stop = self._stops.get(api_key, {}).pop(order_id)
        if self.push_stop_orders:
            self._push_stop(api_key, stop, "canceled")

    def stops(self, api_key: str) -> list[StopOrderSpec]:
        """Loop thread: the account's open conditional orders, oldest first."""
        return list(self._stops.get(api_key, {}).values())

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """Loop thread: push an order event ("new", "canceled") on the account's private
        stream, in the exchange's format; exchanges without an order push send nothing."""

    def set_balance(self, api_key: str, wallet_balance: Num) -> None:
        """Set the wallet balance and push the balance event of a deposit or withdrawal."""
        raise NotImplementedError

    async def _on_started(self) -> None:
        """Hook: start an exchange's own periodic tasks with ``self._spawn``."""

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Bind 127.0.0.1 (port 0 = ephemeral) and serve until ``stop()``."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        app = web.Application(middlewares=[self._rest_middleware])
        app.add_routes(list(self._routes()))
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        if self.mark_interval_s is not None:
            self._spawn(self._mark_loop(self.mark_interval_s))
        await self._on_started()

    async def stop(self) -> None:
        """Close every connection and the listener; bounded by a few seconds in all cases."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._background):
            task.cancel()
        for conn in list(self._connections):
            conn.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*self._background, return_exceptions=True), SHUTDOWN_TIMEOUT_S
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT_S * 2)
        self._background.clear()
        self._connections.clear()

    async def __aenter__(self: S) -> S:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the server's loop: now if we are on it, else thread-safely."""
        if self._loop is None or self._loop.is_closed():
            return  # not started: nobody is connected, nothing to deliver
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def apply_to(self, exchange: Any) -> None:
        """Point a ccxt (pro) instance at this server: URLs and options."""
        exchange.urls["api"] = exchange.deep_extend(exchange.urls["api"], self.ccxt_urls())
        exchange.options = exchange.deep_extend(exchange.options, self.ccxt_options)

    # ---- REST ------------------------------------------------------------------------------------

    @web.middleware
    async def _rest_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.requests.append((request.method, request.path))
            if self.timed_requests is not None:
                self.timed_requests.append(
                    (time.monotonic(), request.method, request.path, request.query_string)
                )
                self.timed_peers.append(peer(request))
                peername = (
                    request.transport.get_extra_info("peername") if request.transport else None
                )
                self.timed_ports.append(int(peername[1]) if peername else 0)
            self.rest_peers[peer(request)] += 1
            self._count_request(request)
            until = max(self._ip_bans.get(None, 0), self._ip_bans.get(peer(request), 0))
            if until > now_ms():
                self.refused_while_banned += 1
                return self._ip_ban_response(until)
            failure = self._take_failure(request.path)
            if failure is not None:
                return self._error_response(failure.status, failure.retry_after_s)
        try:
            response = await handler(request)
        except Reject as rejected:
            return rejected.response
        hold = None
        for held in self._holds:
            # the body as the handler read it (aiohttp keeps it)
            matches = held.body is None or held.body in await request.text()
            if request.path.endswith(held.path_suffix) and matches:
                hold = held
                break
        if hold is not None and not hold.waiting and hold.skip:
            hold.skip -= 1
        elif hold is not None and not hold.waiting:
            hold.waiting = True
            await hold.released.wait()
            self._holds.remove(hold)
        return response

    @scripted
    def hold_rest(self, path_suffix: str, body: str | None = None, skip: int = 0) -> None:
        """Answer the next REST request whose path ends with ``path_suffix`` (and whose body
        holds ``body``, where given; after ``skip`` of them) as the state is when it arrives,
        but send that answer only at :meth:`release_rest`: a slow answer that later requests
        overtake."""
        self._holds.append(HeldAnswer(path_suffix, body, skip))

    @scripted
    def held_answers(self) -> int:
        """How many held answers are waiting to be sent."""
        return sum(h.waiting for h in self._holds)

    @scripted
    def release_rest(self) -> None:
        for hold in self._holds:
            hold.released.set()

    @scripted
    def delay_pushes(self, api_key: str) -> None:
        """Hold the account's private pushes from now on, each made (and stamped by the
        exchange) as it happens: a slow delivery, the frames arriving late and in order, at
        :meth:`release_pushes`. An exchange module sends its private pushes through
        :meth:`_held_push`."""
        self._held_pushes.setdefault(api_key, [])

    @scripted
    def release_pushes(self, api_key: str, count: int | None = None) -> None:
        """Send the first ``count`` pushes held, in order (None: all of them, and pushes are
        sent at once again)."""
        held = self._held_pushes.get(api_key, [])
        sent = held if count is None else held[:count]
        if count is None:
            self._held_pushes.pop(api_key, None)
        else:
            del held[:count]
        for send in sent:
            send()

    @scripted
    def mute_pushes(self, api_key: str, channels: Iterable[str] | None = None) -> None:
        """The account's private pushes stop on its connections open now, which stay open,
        answer pings and subscriptions: a private stream dead while its socket lives (session
        14: an OKX login refused, the watches pending for ever). ``channels``: those alone
        (where the exchange module honours ``muted_channels``: OKX). A connection opened after
        this pushes again. An exchange module's private pushes skip a ``muted`` connection."""
        key = api_key.lower()
        for conn in self._connections:
            if conn.owner == api_key or any(key in stream.lower() for stream in conn.streams):
                if channels is None:
                    conn.muted = True
                else:
                    conn.muted_channels = frozenset(channels)

    def _held_push(self, api_key: str, send: Callable[[], None]) -> bool:
        """Whether the account's pushes are held (:meth:`delay_pushes`): ``send`` then waits
        its turn; else the caller sends it now."""
        held = self._held_pushes.get(api_key)
        if held is not None:
            held.append(send)
        return held is not None

    @scripted
    def fail_rest(
        self,
        status: int,
        count: int = 1,
        *,
        path_prefix: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Make the next ``count`` REST requests (under ``path_prefix``) fail with ``status``,
        answered as the exchange answers it (``_error_response``)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._failures.append(RestFailure(status, count, path_prefix, retry_after_s))

    @scripted
    def stop_failing(self) -> None:
        """Drop the scripted failures not yet answered: requests are served again."""
        self._failures.clear()

    def _take_failure(self, path: str) -> RestFailure | None:
        for failure in self._failures:
            if failure.path_prefix is None or path.startswith(failure.path_prefix):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    # ---- markets and API keys --------------------------------------------------------------------

    def _market(self, symbol: str) -> Any:
        try:
            return self._markets[self._market_id(symbol)]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}: add_symbol() it first") from None

    @scripted
    def list_markets(self, count: int, quote: str = "USDT") -> None:
        """Serve ``count`` markets in all, as a real exchange lists hundreds (Binance USDⓈ-M
        about 550): the scripted ones plus generic perpetuals XAAA, XAAB, ... (marks spread
        from 0.01 to about 1,000), so that market loading costs what it costs live."""
        for i in range(max(0, count - len(self._markets))):
            letters = "".join(chr(65 + i // 26**k % 26) for k in (2, 1, 0))
            mark = Decimal(10 + i * 7919 % 100_000).scaleb(-2)
            self.add_symbol(f"X{letters}/{quote}:{quote}", mark)

    @scripted
    def symbols(self) -> list[str]:
        """The exchange ids of the markets served."""
        return list(self._markets)

    @scripted
    def mark(self, symbol: str) -> Decimal:
        mark: Decimal = self._market(symbol).mark
        return mark

    # ---- order books (issue 15 item 4: gap risk) -------------------------------------------

    @scripted
    def set_order_book(
        self, symbol: str, bids: list[tuple[Num, Num]], asks: list[tuple[Num, Num]]
    ) -> None:
        """The symbol's visible order book, served by the exchange's order book endpoint:
        ``bids`` best (highest) first, ``asks`` best (lowest) first, each ``(price, size)``
        with the size in the exchange's own unit (contracts on OKX and Gate, the coin on
        Binance USDⓈ-M, Bybit and Hyperliquid). A market with none set has an empty book."""
        sides = []
        for name, levels in (("bids", bids), ("asks", asks)):
            checked = [
                (positive(p, f"{name} price"), to_decimal(s, f"{name} size")) for p, s in levels
            ]
            prices = [p for p, _ in checked]
            if prices != sorted(prices, reverse=name == "bids") or len(set(prices)) < len(prices):
                raise ValueError(f"{name}: best first, one level per price")
            sides.append([(_text(p), _text(s)) for p, s in checked])
        market_id = self._market_id(symbol)
        before = self._books.get(market_id, ([], []))
        self._books[market_id] = (sides[0], sides[1])
        self._book_changed(market_id, before, self._books[market_id])

    def _book_changed(self, market_id: str, before: BookSides, after: BookSides) -> None:
        """A book changed (on the loop thread, or before the start): an exchange whose local
        server streams order books pushes the change to its subscribers."""

    def seed_order_books(self, levels: int) -> None:
        """Every market: ``levels`` a side, one tick apart from the mark out, 1 each (for
        benchmarks: the size of a real book, not its shape)."""
        for market_id in self.symbols():
            mark, tick = self.mark(market_id), self.tick(market_id)
            bids = [(mark - tick * (k + 1), 1) for k in range(levels) if mark > tick * (k + 1)]
            asks = [(mark + tick * (k + 1), 1) for k in range(levels)]
            self.set_order_book(market_id, bids, asks)

    def order_book(self, market_id: str, limit: int | None) -> BookSides:
        """The ``limit`` best levels a side of ``market_id``'s book (all for None)."""
        self.book_requests.append(market_id)
        bids, asks = self._books.get(market_id, ([], []))
        if limit is None:
            return list(bids), list(asks)
        return bids[:limit], asks[:limit]

    @scripted
    def set_mark_candles(self, symbol: str, candles: list[Candle]) -> None:
        """1-minute mark-price candles ``(open time ms, open, high, low, close)`` that the
        exchange's mark-price candle endpoint serves for ``symbol`` (a market with none set
        has no history: an empty answer, as for a new listing)."""
        self._mark_candles[self._market_id(symbol)] = sorted(candles)

    def mark_candles(
        self,
        market_id: str,
        interval_ms: int,
        start_ms: int,
        end_ms: int,
        limit: int,
        *,
        first: bool = False,
    ) -> list[Candle]:
        """The set candles of ``market_id`` merged into ``interval_ms`` candles (open of the
        first minute, highest high, lowest low, close of the last), those opening within
        ``start_ms..end_ms``, oldest first, at most the ``limit`` latest of them (the
        ``limit`` first with ``first``)."""
        merged: dict[int, list[str]] = {}
        for t, o, h, low, c in self._mark_candles.get(market_id, []):
            key = t - t % interval_ms
            row = merged.get(key)
            if row is None:
                merged[key] = [o, h, low, c]
            else:
                row[1] = max(row[1], h, key=Decimal)
                row[2] = min(row[2], low, key=Decimal)
                row[3] = c
        rows: list[Candle] = [
            (t, o, h, low, c)
            for t, (o, h, low, c) in sorted(merged.items())
            if start_ms <= t <= end_ms
        ]
        return rows[:limit] if first else rows[-limit:] if limit > 0 else []

    def _account(self, api_key: str) -> A:
        try:
            return self._accounts[api_key]
        except KeyError:
            raise KeyError(f"unknown account {api_key!r}: add_account() it first") from None

    def _authorize(self, api_key: str | None) -> A | KeyRejection:
        """The account of a key a request carries, or why the exchange refuses it."""
        if not api_key:
            return KeyRejection(KeyProblem.MISSING)
        account = self._accounts.get(api_key)
        if account is None or account.revoked:
            return KeyRejection(KeyProblem.UNKNOWN)
        until = account.banned_until_ms
        if until is not None and until > now_ms():
            return KeyRejection(KeyProblem.BANNED, until)
        return account

    def _key_rejected(self, rejection: KeyRejection) -> web.Response:
        """The exchange's REST answer to a refused key."""
        raise NotImplementedError

    def _authorized(self, api_key: str | None) -> A:
        """REST: the account of the key a request carries; else the exchange's refusal is
        raised (``Reject``)."""
        checked = self._authorize(api_key)
        if isinstance(checked, KeyRejection):
            raise Reject(self._key_rejected(checked))
        return checked

    @scripted
    def ban(self, api_key: str, duration_s: float | None = None) -> None:
        """Every later request carrying this API key (REST and websocket logins) is refused as
        the exchange refuses a banned client, for ``duration_s`` (the exchange's usual ban by
        default); ``unban`` lifts it. Per key rather than per IP, so that accounts sharing the
        loopback address can be banned one at a time."""
        seconds = self.BAN_DURATION_S if duration_s is None else duration_s
        self._account(api_key).banned_until_ms = now_ms() + int(seconds * 1000)

    @scripted
    def ban_ip(self, duration_s: float | None = None, address: str | None = None) -> None:
        """Every REST request, whatever its key (public ones too), is refused as the exchange
        refuses a banned IP for ``duration_s`` (the exchange's usual ban by default): the ban
        the exchange lifts by itself, of every account sending from ``address`` at once (None:
        from any address)."""
        seconds = self.BAN_DURATION_S if duration_s is None else duration_s
        self._ip_bans[address] = now_ms() + int(seconds * 1000)

    @scripted
    def unban(self, api_key: str) -> None:
        self._account(api_key).banned_until_ms = None

    @scripted
    def revoke_key(self, api_key: str, revoked: bool = True) -> None:
        """The key stops working (deleted or expired on the exchange): requests with it get the
        exchange's invalid-key error, as an unknown key does; ``revoked=False`` restores it."""
        self._account(api_key).revoked = revoked

    # ---- websockets ------------------------------------------------------------------------------

    def cap_ws_openings(self, count: int | None = None, window_s: float | None = None) -> None:
        """Refuse a websocket opening past ``count`` in any ``window_s`` from one IP (by
        default the exchange's documented cap, ``WS_OPENINGS_PER_IP``), answered as
        :meth:`_ws_over_cap` says. Off unless asked: OKX's 3 a second would refuse the start of
        a two-account test (a mark hub and two connections each), and a cap counted over a
        server's life would make unrelated tests' reconnects depend on how many came before."""
        cap = self.WS_OPENINGS_PER_IP
        if count is not None and window_s is not None:
            cap = (count, window_s)
        if cap is None:
            raise ValueError(f"{self.NAME} documents no websocket opening cap: give one")
        self.ws_openings_cap = cap

    def _ws_over_cap(self) -> web.StreamResponse:
        """The answer to an opening over the per-IP cap. None of OKX, Binance and Bybit says
        what it answers there (their rate-limit pages name the cap only); HTTP 429 at the
        handshake is what Binance answers any request over its rate limits ("Requests fail
        with status 429", developers.binance.com, WebSocket API, Rate limits) and what their
        gateways answer a refused upgrade; the client sees a failed handshake either way."""
        return web.Response(status=429, text="Too Many Requests")

    def _refuses_opening(self, request: web.Request) -> bool:
        """Whether this opening is over the per-IP cap; an accepted one is counted."""
        now = time.monotonic()
        opened = self.ws_openings.setdefault(peer(request), [])
        if self.ws_openings_cap is not None:
            count, window_s = self.ws_openings_cap
            recent = sum(1 for at in reversed(opened[-count:]) if at > now - window_s)
            if recent >= count:
                self.ws_refused += 1
                return True
        opened.append(now)
        return False

    def most_openings_in(self, window_s: float) -> int:
        """The most websocket openings accepted from one IP within any ``window_s``."""
        most = 0
        for opened in self.ws_openings.values():
            first = 0
            for last, at in enumerate(opened):
                while opened[first] <= at - window_s:
                    first += 1
                most = max(most, last - first + 1)
        return most

    async def _serve_ws(
        self,
        request: web.Request,
        conn: Callable[[web.Request, web.WebSocketResponse], C],
        on_text: Callable[[C, str], None],
    ) -> web.StreamResponse:
        """Accept a websocket, register ``conn(request, ws)`` and feed its text frames to
        ``on_text`` until it closes."""
        if self._refuses_opening(request):
            return self._ws_over_cap()
        if self.handshake_delay_s:
            await asyncio.sleep(self.handshake_delay_s)
        # autoping off: pings reach this loop, so that answering them can be switched off
        ws = web.WebSocketResponse(autoping=False, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        connection = conn(request, ws)
        self.ws_connections += 1
        self._connections.add(connection)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    on_text(connection, msg.data)
                elif msg.type == WSMsgType.PING:
                    if self._answer_pings:
                        await ws.pong(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, RuntimeError):
            pass  # the peer vanished: same as a close
        finally:
            self._connections.discard(connection)
            await connection.finish()
        return ws

    def _connections_of(self, kind: str | None = None) -> list[C]:
        return [c for c in self._connections if kind is None or c.kind == kind]

    def _subscribers(self, stream: str) -> list[C]:
        return [c for c in self._connections if stream in c.streams]

    @scripted
    def subscriptions(self) -> set[str]:
        """Streams (topics) currently subscribed on any connection."""
        return {s for conn in self._connections for s in conn.streams}

    async def wait_for_subscription(self, stream: str, timeout_s: float = 2.0) -> None:
        """Wait until some connection subscribed ``stream``: pushes before that are not seen."""
        await self.wait_until(lambda: stream in self.subscriptions(), timeout_s)

    async def drop_connections(self, *, code: int | None = None, kind: str | None = None) -> None:
        """Close every websocket (``kind``: of that kind only, OKX's ``business``). By default
        abruptly (TCP abort, no closing handshake, as a network failure); with ``code`` a
        server-initiated close frame is sent instead (Binance sends one when it ends a
        connection at the 24-hour mark)."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            future = asyncio.run_coroutine_threadsafe(self._drop(code, kind), loop)
            await asyncio.wrap_future(future)
        else:
            await self._drop(code, kind)

    async def _drop(self, code: int | None, kind: str | None = None) -> None:
        for conn in self._connections_of(kind):
            if code is None:
                conn.abort()
            else:
                await conn.close(code)
        # let the handlers observe the closed sockets before the caller carries on
        await asyncio.sleep(0)

    @scripted
    def stall_connections(self, stream: str) -> None:
        """Every connection subscribing ``stream`` goes half-dead (``WsConnection.stall``): a
        client that closes it waits for a CLOSE reply that never comes."""
        for conn in self._subscribers(stream):
            conn.stall()

    @scripted
    def unstall_connections(self) -> None:
        """Every half-dead connection reads again (``WsConnection.unstall``): a client still
        waiting for its CLOSE reply gets it."""
        for conn in self._connections:
            if conn.stalled:
                conn.unstall()

    @scripted
    def stop_answering_pings(self, stop: bool = True) -> None:
        """Client pings are no longer answered (or again, with ``stop=False``): protocol-level
        pings here, JSON ones by the exchange's handler through ``answers_pings``. A client's
        keepalive then times out on an otherwise open socket."""
        self._answer_pings = not stop

    @property
    def answers_pings(self) -> bool:
        return self._answer_pings

    @scripted
    def send_malformed(self, kind: str = "json") -> None:
        """Send broken frames on every websocket: ``"json"`` text that is not valid JSON (a
        truncated event), ``"shape"`` valid JSON of a garbled shape (the exchange's mark and
        account events with non-numeric fields)."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind must be one of {MALFORMED_KINDS}")
        for conn in self._connections_of():
            for text in self._malformed_frames(conn, kind):
                conn.post(text)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
        """Poll ``predicate`` until true; fails after ``timeout_s``."""
        await eventually(predicate, timeout_s, "the fake exchange's condition", interval_s=0.005)

    # ---- marks -----------------------------------------------------------------------------------

    async def _mark_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not self.marks_paused:
                self._push_periodic_marks()

    async def churn_books(self, per_s: float, seed: int | None, levels: int = 20) -> None:
        """Change the sizes of ``levels`` levels of every book ``per_s`` times a second (a busy
        book's diff stream, for benchmarks; where the exchange streams books, each change is
        pushed)."""
        rng = random.Random(seed)
        while True:
            await asyncio.sleep(1 / per_s)
            for market_id, sides in list(self._books.items()):
                changed = [list(side) for side in sides]
                for _ in range(levels):
                    side = changed[rng.randrange(2)]
                    if side:
                        k = rng.randrange(len(side))
                        side[k] = (side[k][0], str(rng.randint(1, 20)))
                self.set_order_book(market_id, changed[0], changed[1])

    async def walk_marks(self, interval_s: float, seed: int | None, max_step: float) -> None:
        """Random-walk every mark by up to ``max_step`` (a fraction) per tick, rounded to the
        tick; the periodic push carries them (a live exchange's mark stream, for benchmarks)."""
        rng = random.Random(seed)
        while True:
            await asyncio.sleep(interval_s)
            for symbol in self.symbols():
                step = Decimal(str(round(rng.uniform(-max_step, max_step), 6)))
                price = (self.mark(symbol) * (1 + step)).quantize(self.tick(symbol))
                self.set_mark(symbol, price, push=False)


# ---- command line: a server for benchmarks ---------------------------------------------------


@dataclass(frozen=True)
class ServeOptions:
    port: int
    accounts: int
    mark_interval_s: float
    seed: int | None
    markets: int = 0
    book_levels: int = 0
    book_updates: float = 0.0
    requests_out: str | None = None
    # (path suffix, after how many such requests, seconds): that request's answer held so long
    slow_request: tuple[str, int, float] | None = None
    ws_cap: bool = False  # websocket openings past the exchange's documented cap refused
    openings_out: str | None = None
    late_logins: int = 0  # accounts whose first websocket login arrives expired (late_login)


def slow_request(text: str) -> tuple[str, int, float]:
    """``SUFFIX:AFTER:SECONDS`` (``--slow-request``)."""
    suffix, after, seconds = text.rsplit(":", 2)
    if not suffix or int(after) < 0 or float(seconds) <= 0:
        raise ValueError(text)
    return suffix, int(after), float(seconds)


F = TypeVar("F", bound=FakeExchangeServer[Any, Any])


def serve_main(
    fake_class: type[F],
    seed_accounts: Callable[[F, int], None],
    argv: list[str] | None = None,
    *,
    max_step: float,
) -> int:
    """``python -m tests.fake_exchange.X``: a fake with accounts key0..keyN-1 / secret0.. on
    127.0.0.1 (``seed_accounts``); prints its ccxt ``urls['api']`` override as one JSON line;
    marks walk randomly by up to ``max_step`` and are pushed every interval; stops on SIGINT or
    SIGTERM."""
    module = fake_class.__module__
    if module == "__main__":  # run as python -m: the module's own name
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=f"Fake {fake_class.NAME} server on 127.0.0.1 for benchmarks. Prints the ccxt "
        "urls['api'] override as one JSON line, stops on SIGINT/SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral (default)")
    parser.add_argument("--accounts", type=int, default=1, help="accounts key0..keyN-1")
    parser.add_argument("--mark-interval-s", "--interval", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1, help="seed of the mark random walk")
    parser.add_argument(
        "--markets", type=int, default=0, help="list this many markets in all (0: the seeded ones)"
    )
    parser.add_argument(
        "--book-levels", type=int, default=0, help="order book levels a side per market (0: none)"
    )
    parser.add_argument(
        "--book-updates",
        type=float,
        default=0.0,
        help="changes of every book a second, 20 levels each (0: books stand still)",
    )
    parser.add_argument(
        "--requests-out",
        metavar="FILE",
        help="at stop, write every REST request here: monotonic time, method, path, query "
        "(tab-separated)",
    )
    parser.add_argument(
        "--ws-cap",
        action="store_true",
        help="refuse websocket openings past the exchange's documented per-IP cap",
    )
    parser.add_argument(
        "--openings-out",
        metavar="FILE",
        help="at stop, write the monotonic time of every websocket opening accepted, one a "
        "line, then 'refused N'",
    )
    parser.add_argument(
        "--slow-request",
        type=slow_request,
        metavar="SUFFIX:AFTER:SECONDS",
        help="once AFTER REST requests whose path ends with SUFFIX were answered, hold the "
        "next one's answer SECONDS (past a client's timeout: a request timing out)",
    )
    parser.add_argument(
        "--late-logins",
        type=int,
        default=0,
        metavar="N",
        help="the first websocket login of N accounts, spread evenly over them, arrives past "
        "its expiry and is refused as expired (a starved client in a crowded start; Bybit and "
        "OKX: late_login)",
    )
    args = parser.parse_args(argv)
    if min(args.accounts, args.markets, args.book_levels, args.book_updates) < 0 or (
        args.mark_interval_s <= 0
    ):
        parser.error(
            "--accounts, --markets, --book-levels, --book-updates >= 0 and --mark-interval-s > 0"
        )
    if not 0 <= args.late_logins <= args.accounts:
        parser.error("--late-logins: from 0 to --accounts")
    if args.late_logins and not hasattr(fake_class, "late_login"):
        parser.error(f"--late-logins: {fake_class.NAME} refuses no login as expired")
    options = ServeOptions(
        args.port,
        args.accounts,
        args.mark_interval_s,
        args.seed,
        args.markets,
        args.book_levels,
        args.book_updates,
        args.requests_out,
        args.slow_request,
        args.ws_cap,
        args.openings_out,
        args.late_logins,
    )
    return asyncio.run(_serve(options, fake_class, seed_accounts, max_step))


async def _serve(
    options: ServeOptions,
    fake_class: type[F],
    seed_accounts: Callable[[F, int], None],
    max_step: float,
) -> int:
    fake = fake_class(mark_interval_s=options.mark_interval_s)
    if options.requests_out:
        fake.timed_requests = []
    if options.ws_cap:
        fake.cap_ws_openings()
    seed_accounts(fake, options.accounts)
    fake.list_markets(options.markets)
    if options.book_levels:
        fake.seed_order_books(options.book_levels)
    for i in range(options.late_logins):
        fake.late_login(f"key{i * options.accounts // options.late_logins}")  # type: ignore[attr-defined]
    try:
        await fake.start(options.port)
    except OSError as exc:
        print(f"cannot listen on {LOOPBACK}:{options.port}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(compact(fake.ccxt_urls()), flush=True)
    walker = asyncio.ensure_future(fake.walk_marks(options.mark_interval_s, options.seed, max_step))
    churn = [asyncio.ensure_future(fake.churn_books(options.book_updates, options.seed))]
    if not options.book_updates:
        churn[0].cancel()
    if options.slow_request is not None:
        churn.append(asyncio.ensure_future(_slow_one(fake, *options.slow_request)))
    try:
        await stop.wait()
    finally:
        for task in (walker, *churn):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await fake.stop()
        if options.requests_out and fake.timed_requests is not None:
            lines = (
                f"{t:.3f}\t{m}\t{p}\t{q}\t{ip}\t{port}\n"
                for (t, m, p, q), ip, port in zip(
                    fake.timed_requests, fake.timed_peers, fake.timed_ports, strict=True
                )
            )
            Path(options.requests_out).write_text("".join(lines))
        if options.openings_out:
            opened = sorted((at, ip) for ip, times in fake.ws_openings.items() for at in times)
            text = "".join(f"{at:.3f}\t{ip}\n" for at, ip in opened)
            text += f"refused {fake.ws_refused}\n"
            Path(options.openings_out).write_text(text)
    return 0


async def _slow_one(
    fake: FakeExchangeServer[Any, Any], suffix: str, after: int, hold_s: float
) -> None:
    """Hold the answer of the request after the ``after``-th whose path ends with ``suffix``
    for ``hold_s`` seconds (``--slow-request``)."""
    while sum(path.endswith(suffix) for _, path in fake.requests) < after:
        await asyncio.sleep(0.05)
    fake.hold_rest(suffix)
    while not fake.held_answers():
        await asyncio.sleep(0.05)
    await asyncio.sleep(hold_s)
    fake.release_rest()


def random_id(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))
