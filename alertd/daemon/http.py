"""The local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus) and ``/status`` (JSON).

Bound to 127.0.0.1 by default. A non-loopback address is refused by the config unless a
bearer token is configured, and then every request must carry it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.engine.margin import compute
from alertd.views.format import decimal_str as dec
from alertd.views.status import account_figures

if TYPE_CHECKING:
    from alertd.daemon.service import Service

log = logging.getLogger(__name__)

# An undelivered message older than this means delivery is stuck, not just busy.
OUTBOX_STUCK_AFTER_S = 300.0


def _f(value: Decimal | None) -> float:
    if value is None:
        return float("nan")
    return float(value) if value.is_finite() else float("inf")


def health_report(service: Service) -> tuple[bool, list[str]]:
    """(healthy, reasons): healthy only when every enabled feed is fresh and the outbox drains."""
    reasons = []
    report = service.health()
    if not report:
        reasons.append("no accounts")
    for h in report:
        if h.fatal:
            reasons.append(f"{h.name}: stopped: {h.fatal}")
        elif h.stale:
            reasons.append(f"{h.name}: stale: {', '.join(h.stale)}")
    if service.store is not None:
        now = service._wall()
        stuck = [r for r in service.store.pending() if now - r.created_at > OUTBOX_STUCK_AFTER_S]
        if stuck:
            reasons.append(f"outbox: {len(stuck)} messages undelivered for over 5 minutes")
    return not reasons, reasons


def status_json(service: Service) -> dict[str, Any]:
    """What ``alertd status`` prints: accounts, positions, feeds, alerts, the outbox."""
    accounts = []
    manager = service.manager
    for h in service.health():
        entry: dict[str, Any] = {
            "name": h.name,
            "bootstrapped": h.bootstrapped,
            "connected": h.connected,
            "fatal": h.fatal,
            "stale": list(h.stale),
            "margin_ratio": None,
            "buffer": None,
            "crash_distance": None,
            "settle": None,
            "positions": [],
        }
        feed = manager.feeds.get(h.name) if manager else None
        if feed is not None and feed.state.bootstrapped and not feed.state.missing():
            entry.update(account_figures(compute(feed.state.to_account())))
        accounts.append(entry)
    firing = []
    if service.alerting is not None:
        for state in service.alerting.engine.firing():
            rule = service.alerting.engine.rules.get(state.rule)
            firing.append(
                {
                    "rule": state.rule,
                    "severity": rule.severity.label if rule else None,
                    "subject": state.subject.key,
                    "since": state.since,
                    "value": dec(state.value),
                    "notified": state.notified,
                }
            )
    undelivered = []
    if service.store is not None:
        undelivered = [
            {
                "id": r.id,
                "receiver": r.receiver,
                "title": r.title,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "created_at": r.created_at,
            }
            for r in service.store.pending()
        ]
    healthy, reasons = health_report(service)
    return {
        "healthy": healthy,
        "reasons": reasons,
        "accounts": accounts,
        "firing": firing,
        "undelivered": undelivered,
    }


class ServiceCollector(Collector):
    """Reads the service's state at each scrape: no bookkeeping on the hot path."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        s = self.service
        ratio = GaugeMetricFamily(
            "alertd_margin_ratio", "Worst margin ratio (1 = liquidation)", labels=["account"]
        )
        pool = GaugeMetricFamily(
            "alertd_cross_margin_ratio", "Cross pool margin ratio", labels=["account"]
        )
        buffer = GaugeMetricFamily(
            "alertd_buffer",
            "Cross margin balance minus maintenance margin",
            labels=["account", "settle"],
        )
        crash = GaugeMetricFamily(
            "alertd_crash_distance",
            "Uniform move of all marks that liquidates something",
            labels=["account"],
        )
        dist = GaugeMetricFamily(
            "alertd_position_liquidation_distance",
            "Distance from mark to liquidation price, fraction of mark",
            labels=["account", "symbol", "side"],
        )
        pratio = GaugeMetricFamily(
            "alertd_position_margin_ratio",
            "Position margin ratio",
            labels=["account", "symbol", "side"],
        )
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
        manager = s.manager
        now = s._clock()
        for name, feed in manager.feeds.items() if manager else []:
            state = feed.state
            up.add_metric([name], 1.0 if state.connected else 0.0)
            reconnects.add_metric([name], float(feed.reconnects))
            for (stream, key), seen in state.last_seen.items():
                age.add_metric([name, stream.value, key], now - seen)
            for figure, value in feed.drift.items():
                drift.add_metric([name, figure], float(value))
            if not state.bootstrapped or state.missing():
                continue
            m = compute(state.to_account())
            ratio.add_metric([name], _f(m.worst_ratio))
            pool.add_metric([name], _f(m.pool.margin_ratio))
            buffer.add_metric([name, m.account.settle], _f(m.pool.buffer))
            crash.add_metric([name], _f(m.crash_distance))
            for pm in m.positions:
                labels = [name, pm.position.symbol, pm.position.side.label]
                dist.add_metric(labels, _f(pm.liquidation_distance))
                pratio.add_metric(labels, _f(pm.margin_ratio))
        firing = GaugeMetricFamily("alertd_alerts_firing", "Alerts firing", labels=["severity"])
        counts = {"info": 0, "warning": 0, "critical": 0}
        if s.alerting is not None:
            for alert in s.alerting.engine.firing():
                rule = s.alerting.engine.rules.get(alert.rule)
                if rule is not None:
                    counts[rule.severity.label] += 1
        for severity, count in counts.items():
            firing.add_metric([severity], float(count))
        sent = CounterMetricFamily("alertd_notifications_sent", "Messages delivered")
        failed = CounterMetricFamily("alertd_notifications_failed", "Delivery attempts that failed")
        queued = GaugeMetricFamily("alertd_notifications_queued", "Messages in the outbox")
        sent.add_metric([], float(s.deliverer.sent if s.deliverer else 0))
        failed.add_metric([], float(s.deliverer.failed if s.deliverer else 0))
        queued.add_metric([], float(len(s.store.pending()) if s.store else 0))
        ticks = CounterMetricFamily("alertd_engine_updates", "Engine updates applied")
        ticks.add_metric([], float(s.ticks))
        yield from (
            ratio,
            pool,
            buffer,
            crash,
            dist,
            pratio,
            age,
            up,
            reconnects,
            drift,
            firing,
            sent,
            failed,
            queued,
            ticks,
        )


def make_app(service: Service, token: str | None) -> web.Application:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def healthz(request: web.Request) -> web.Response:
        healthy, reasons = health_report(service)
        return web.json_response(
            {"status": "ok" if healthy else "unhealthy", "reasons": reasons},
            status=200 if healthy else 503,
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    async def status(request: web.Request) -> web.Response:
        return web.json_response(status_json(service))

    app = web.Application(middlewares=[auth])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


async def serve_http(service: Service, host: str, port: int, token: str | None) -> web.AppRunner:
    runner = web.AppRunner(make_app(service, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("HTTP endpoint on http://%s:%d (/healthz, /metrics, /status)", host, port)
    return runner
