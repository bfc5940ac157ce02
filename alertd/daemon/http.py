"""The local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus) and ``/status`` (JSON).

Each request renders the daemon's latest published :class:`~alertd.daemon.view.DaemonView`,
taken from a callable: the endpoint knows nothing of the service and computes nothing.

Bound to 127.0.0.1 by default. A non-loopback address is refused by the config unless a
bearer token is configured, and then every request must carry it: the token is checked
before anything else (an unknown path or method without it is a 401 too).

What a client can hold is bounded (:class:`ConnectionGuard`): at most ``max_connections``
at once, the oldest dropped to make room (the oldest still sending its headers first), and a
request's headers must arrive within ``header_timeout_s``, so half-open connections cannot
exhaust the daemon's file descriptors. Malformed headers get a 4xx from aiohttp's parser;
the token is compared as bytes, so non-UTF-8 bytes in ``Authorization`` are a plain 401.
Every response body goes through :func:`alertd.redact.redact`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

from alertd.daemon.view import DaemonView
from alertd.redact import redact
from alertd.rules.metrics import PUBLISHED, Metric, Needs, Unit
from alertd.rules.model import Scope
from alertd.views.status import status_json

log = logging.getLogger(__name__)

# The daemon's latest published view; reading it costs nothing (no computation per scrape).
ViewSource = Callable[[], DaemonView]
# A scraper sends its request in one packet; a client that takes longer is not one.
HEADER_TIMEOUT_S = 5.0
# Prometheus, `alertd status` and a person with curl: a few at a time.
MAX_CONNECTIONS = 32
# An idle kept-alive connection is closed after this (aiohttp's default is an hour).
KEEPALIVE_TIMEOUT_S = 15.0


def _f(value: Decimal) -> float:
    return float(value)  # an infinite ratio (no margin balance) is +Inf on /metrics too


def _labels(metric: Metric) -> list[str]:
    """A position's gauges carry the position; an account's money, its settle currency (a
    pool's figure, of an account of several margin pools: the pool's asset, one per pool)."""
    if metric.scope is Scope.POSITION:
        return ["account", "symbol", "side"]
    return ["account", "settle"] if metric.unit is Unit.MONEY or metric.per_pool else ["account"]


class ViewCollector(Collector):
    """Renders the published view at each scrape: no bookkeeping on the hot path.

    The figures' gauges are the metric registry's published metrics (``PUBLISHED``: one
    family each, named by :attr:`~alertd.rules.metrics.Metric.gauge_name`, described by the
    registry): a metric added there appears here."""

    def __init__(self, view: ViewSource) -> None:
        self.view = view

    def collect(self) -> Iterator[Family]:
        view = self.view()
        gauges = {
            scope: [
                (m, GaugeMetricFamily(m.gauge_name, m.description, labels=_labels(m)))
                for m in metrics
            ]
            for scope, metrics in PUBLISHED.items()
        }
        age = GaugeMetricFamily(
            "alertd_feed_age_seconds",
            "Seconds since a stream's last message",
            labels=["account", "stream", "key"],
        )
        up = GaugeMetricFamily(
            "alertd_feed_up", "1 when the account's streams are connected", labels=["account"]
        )
        reconnects = CounterMetricFamily(
            "alertd_reconnects", "Stream outages recovered", labels=["account"]
        )
        drift = GaugeMetricFamily(
            "alertd_exchange_drift_ratio",
            "Relative difference from the exchange's own figure",
            labels=["account", "figure"],
        )
        for a in view.accounts:
            name = a.name
            up.add_metric([name], 1.0 if a.connected else 0.0)
            reconnects.add_metric([name], float(a.reconnects))
            for seen in a.ages:
                age.add_metric([name, seen.stream, seen.key], seen.age_s)
            for figure, value in a.drift:
                drift.add_metric([name, figure], float(value))
            f = a.figures
            if f is None:
                continue
            for m, family in gauges[Scope.ACCOUNT]:
                if m.per_pool and f.pools:
                    # an account of several margin pools: each pool's, labelled with its asset
                    for pool in f.pools:
                        of_pool = pool.values.get(m.name)
                        if of_pool is not None:
                            family.add_metric([name, pool.asset], _f(of_pool))
                    continue
                of_account = f.values.get(m.name)
                if of_account is not None:
                    labels = [name, f.settle] if m.unit is Unit.MONEY else [name]
                    # the crash distance is solved at most once a second: its time goes along
                    at = f.crash_at if m.needs is Needs.CRASH else None
                    family.add_metric(labels, _f(of_account), timestamp=at)
            for p in f.positions:
                for m, family in gauges[Scope.POSITION]:
                    of_position = p.values.get(m.name)
                    if of_position is not None:
                        family.add_metric([name, p.symbol, p.side], _f(of_position))
        funds = GaugeMetricFamily(
            "alertd_insurance_fund_balance",
            "Balance of the exchange's insurance fund behind a held symbol, in the settle "
            "currency (where builtin_rules.insurance_fund watches it)",
            labels=["exchange", "symbol"],
        )
        for fund in view.funds:
            funds.add_metric([fund.exchange, fund.symbol], _f(fund.balance))
        firing = GaugeMetricFamily("alertd_alerts_firing", "Alerts firing", labels=["severity"])
        for severity, count in view.firing_by_severity().items():
            firing.add_metric([severity], float(count))
        sent = CounterMetricFamily("alertd_notifications_sent", "Messages delivered")
        failed = CounterMetricFamily("alertd_notifications_failed", "Delivery attempts that failed")
        queued = GaugeMetricFamily("alertd_notifications_queued", "Messages in the outbox")
        sent.add_metric([], float(view.counters.sent))
        failed.add_metric([], float(view.counters.failed))
        queued.add_metric([], float(len(view.undelivered)))
        ticks = CounterMetricFamily("alertd_engine_updates", "Engine updates applied")
        ticks.add_metric([], float(view.counters.engine_updates))
        for scope in gauges.values():
            yield from (family for _, family in scope)
        yield from (age, up, reconnects, drift, funds, firing, sent, failed, queued, ticks)


def make_app(view: ViewSource, token: str | None) -> web.Application:
    registry = CollectorRegistry()
    registry.register(ViewCollector(view))

    expected = f"Bearer {token}".encode() if token is not None else None

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        # the outermost middleware: nothing (routing, a handler) runs for a request without
        # the token; raw bytes, since a header need not be valid UTF-8
        if expected is not None:
            given = [v for k, v in request.raw_headers if k.lower() == b"authorization"]
            if len(given) != 1 or not hmac.compare_digest(given[0], expected):
                return web.json_response(
                    {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def redacted(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            charset = response.charset or "utf-8"
            text = response.body.decode(charset, errors="replace")
            clean = redact(text)
            if clean != text:
                response.body = clean.encode(charset)
        return response

    async def healthz(request: web.Request) -> web.Response:
        current = view()
        return web.json_response(
            {"status": "ok" if current.healthy else "unhealthy", "reasons": list(current.reasons)},
            status=200 if current.healthy else 503,
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    async def status(request: web.Request) -> web.Response:
        return web.json_response(status_json(view()))

    app = web.Application(middlewares=[auth, redacted])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


async def serve_http(
    view: ViewSource,
    host: str,
    port: int,
    token: str | None,
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> web.AppRunner:
    runner = web.AppRunner(
        make_app(view, token),
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        logger=_ServerLog(logging.getLogger("aiohttp.server"), {}),
    )
    await runner.setup()
    site = GuardedSite(runner, host, port, guard=ConnectionGuard(max_connections, header_timeout_s))
    await site.start()
    log.info("HTTP endpoint on http://%s:%d (/healthz, /metrics, /status)", host, site.port)
    return runner


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log: a client's malformed request (aiohttp answers it with a 4xx) is
    one DEBUG line, not an ERROR with a traceback that quotes the client's bytes."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 500) < 500:
            level, msg = logging.DEBUG, "refused a malformed request: %s (%d)"
            args, kwargs = (type(exc).__name__, exc.code), {}
        super().log(level, msg, *args, **kwargs)


class ConnectionGuard:
    """What the endpoint's clients can hold: ``max_connections`` at once, headers in time."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: dict[_GuardedConnection, None] = {}  # oldest first
        self.dropped = 0  # to make room for a newer connection
        self.timed_out = 0  # headers not complete in time

    def admit(self, connection: _GuardedConnection) -> None:
        while len(self.open) >= self.max_connections:
            waiting = (c for c in self.open if c.awaiting_headers)
            oldest = next(waiting, None) or next(iter(self.open))
            self.dropped += 1
            oldest.abort()
        self.open[connection] = None


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard's bounds."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.awaiting_headers = True
        self.transport: asyncio.Transport | None = None
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.guard.admit(self)
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.awaiting_headers:
            # the next request on a kept-alive connection: its headers are timed too
            self.awaiting_headers, self._tail = True, b""
            self._arm()
        seen = self._tail + data
        if b"\r\n\r\n" in seen:
            self.awaiting_headers, self._tail = False, b""
            self._disarm()
        else:
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.open.pop(self, None)
        self.inner.connection_lost(exc)

    def abort(self) -> None:
        self.guard.open.pop(self, None)
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.header_timeout_s, self._timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        self.guard.timed_out += 1
        self.abort()


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, each connection behind a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner, host, port)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _GuardedConnection(server(), self.guard),
            self._host,
            self._port,
            backlog=self._backlog,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]


def bound_port(runner: web.AppRunner) -> int | None:
    """The port the endpoint listens on (the configured one, or the system's pick for 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
