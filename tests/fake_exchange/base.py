"""Machinery shared by the scriptable fake exchange servers (Binance now, Bybit later).

One aiohttp application serves REST and websockets on one loopback port. This module knows
nothing about any exchange's wire format: it owns the lifecycle (bind ``127.0.0.1:0``, bounded
shutdown), the REST request log, scripted REST failures, and the registry of websocket
connections with their failure modes (abrupt drop, unanswered pings, ordered outbound queues).

Threading: scripting methods may be called from the loop that runs the server (the usual case in
tests, where the test and the server share one ``asyncio.run``) or from any other thread (a
server run on its own loop in a thread). Methods marked ``@scripted`` then run on the server's
loop while the caller waits, so that state never changes under a request being answered. Each
connection has its own outbound queue drained by one sender task, so frames scripted in order
arrive in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from aiohttp import WSMsgType, web

LOOPBACK = "127.0.0.1"
SHUTDOWN_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.005
SCRIPT_TIMEOUT_S = 10.0

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="FakeExchangeServer")


def now_ms() -> int:
    return int(time.time() * 1000)


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


@dataclass
class RestFailure:
    """A scripted failure: the next ``remaining`` REST requests under ``path_prefix`` fail."""

    status: int
    remaining: int
    path_prefix: str | None
    retry_after_s: int | None


class WsConnection:
    """One accepted websocket: its streams, its owner and an ordered outbound queue."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        self.request = request
        self.ws = ws
        self.kind = kind  # "public" or "private"
        self.streams: set[str] = set()
        self.combined = False  # /stream endpoints wrap payloads as {"stream": ..., "data": ...}
        self.owner: str | None = None  # API key of a private connection
        self.listen_key: str | None = None
        self.live = True  # False once a private stream's listen key expired: no more events
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def post(self, text: str) -> None:
        """Queue a text frame. Loop thread only (the server wraps it for other threads)."""
        if not self.ws.closed:
            self._queue.put_nowait(text)

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

    async def close(self, code: int) -> None:
        self._sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code), SHUTDOWN_TIMEOUT_S)

    async def finish(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender


class FakeExchangeServer:
    """Lifecycle, REST log, scripted failures and websocket registry for one fake exchange.

    Subclasses provide ``_routes()`` and ``_error_response()`` and may extend ``_on_started()``.
    """

    def __init__(self) -> None:
        self.port: int = 0
        self.base_url: str = ""
        self.requests: list[tuple[str, str]] = []
        self.ws_connections: int = 0
        self._connections: set[WsConnection] = set()
        self._failures: list[RestFailure] = []
        self._answer_pings = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # ---- to be provided by an exchange ----------------------------------------------------------

    def _routes(self) -> Iterable[web.RouteDef]:
        raise NotImplementedError

    def _error_response(self, status: int, retry_after_s: int | None) -> web.StreamResponse:
        raise NotImplementedError

    async def _on_started(self) -> None:
        """Hook: start periodic tasks with ``self._spawn``."""

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

    async def __aenter__(self) -> FakeExchangeServer:
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
        if self._loop is None:
            return  # not started: nobody is connected, nothing to deliver
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # ---- REST ------------------------------------------------------------------------------------

    @web.middleware
    async def _rest_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        self.requests.append((request.method, request.path))
        failure = self._take_failure(request.path)
        if failure is not None:
            return self._error_response(failure.status, failure.retry_after_s)
        return await handler(request)

    @scripted
    def fail_rest(
        self,
        status: int,
        count: int = 1,
        *,
        path_prefix: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        """Make the next ``count`` REST requests (under ``path_prefix``) fail with ``status``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._failures.append(RestFailure(status, count, path_prefix, retry_after_s))

    def _take_failure(self, path: str) -> RestFailure | None:
        for failure in self._failures:
            if failure.path_prefix is None or path.startswith(failure.path_prefix):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    # ---- websockets ------------------------------------------------------------------------------

    async def _serve_ws(
        self,
        request: web.Request,
        kind: str,
        on_open: Callable[[WsConnection], None],
        on_text: Callable[[WsConnection, str], None],
    ) -> web.WebSocketResponse:
        # autoping off: pings reach this loop, so that answering them can be switched off
        ws = web.WebSocketResponse(autoping=False, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = WsConnection(request, ws, kind)
        self.ws_connections += 1
        self._connections.add(conn)
        on_open(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    on_text(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    if self._answer_pings:
                        await ws.pong(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, RuntimeError):
            pass  # the peer vanished: same as a close
        finally:
            self._connections.discard(conn)
            await conn.finish()
        return ws

    def _connections_of(self, kind: str | None = None) -> list[WsConnection]:
        return [c for c in self._connections if kind is None or c.kind == kind]

    def _post(self, conn: WsConnection, text: str) -> None:
        self._on_loop(conn.post, text)

    async def drop_connections(self, *, code: int | None = None) -> None:
        """Close every websocket. By default abruptly (TCP abort, no closing handshake, as a
        network failure); with ``code`` a server-initiated close frame is sent instead (Binance
        sends one when it ends a connection at the 24-hour mark)."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            future = asyncio.run_coroutine_threadsafe(self._drop(code), loop)
            await asyncio.wrap_future(future)
        else:
            await self._drop(code)

    async def _drop(self, code: int | None) -> None:
        conns = list(self._connections)
        for conn in conns:
            if code is None:
                conn.abort()
            else:
                await conn.close(code)
        # let the handlers observe the closed sockets before the caller carries on
        await asyncio.sleep(0)

    @scripted
    def stop_answering_pings(self, stop: bool = True) -> None:
        """Protocol-level pings from clients are no longer answered with pongs (or again, with
        ``stop=False``): a client's keepalive then times out on an otherwise open socket."""
        self._answer_pings = not stop

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
        """Poll ``predicate`` until true; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(POLL_INTERVAL_S)
