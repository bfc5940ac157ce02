"""System messages: exchange pushes, the digest and the test message, without a rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from alertd.config import RouteConfig
from alertd.delivery.routing import route
from alertd.delivery.system import (
    SystemKind,
    digest,
    exchange_push,
    ip_ban_over,
    ip_banned,
    receiver_check,
)
from alertd.feeds.state import AccountEvent
from alertd.rules.model import Severity, Silence

from .receivers import HttpReceiver
from .support.aio import run
from .support.configs import write_config
from .support.process import alertd
from .support.service import NOON, make


def test_an_exchange_push_leads_with_severity_and_account() -> None:
    call = exchange_push(SystemKind.MARGIN_CALL, "main", "binanceusdm", "BTCUSDT", 1.0)
    assert call.title == "CRITICAL main: margin-call"
    assert call.body == "margin_call: BTCUSDT"
    assert call.severity is Severity.CRITICAL
    assert call.labels == {
        "alertname": "margin-call",
        "severity": "critical",
        "account": "main",
        "exchange": "binanceusdm",
    }
    warning = exchange_push(SystemKind.LIQUIDATION_WARNING, "main", "okx", "x" * 500, 1.0)
    assert warning.body.startswith("liquidation_warning: ") and len(warning.body) == 400
    assert "account" not in digest(1, 0, ["hl: fresh"], 1.0).labels
    check = receiver_check("mail", 1.0)
    assert (check.title, check.severity) == ("INFO alertd test message", Severity.INFO)


def test_a_margin_call_goes_through_the_outbox_unless_silenced(tmp_path: Path) -> None:
    service = make(tmp_path)
    assert service.alerting is not None and service.store is not None
    assert service.manager is not None
    feed = service.manager.feeds["hl"]
    push = AccountEvent("margin_call", NOON, "BTC margin ratio 0.9")
    service.store.add_silence(Silence("s", {"account": "hl"}, NOON + 50, NOON - 10))
    service.alerting.refresh_silences()
    assert service.alerting.event(feed, push) is None
    assert service.store.pending() == []
    service.store.expire_silence("s", NOON - 1)
    service.alerting.refresh_silences()
    sent = service.alerting.event(feed, push)
    assert sent is not None and sent.kind is SystemKind.MARGIN_CALL
    (row,) = service.store.pending()
    assert (row.receiver, row.severity, row.title) == (
        "hook",
        "critical",
        "CRITICAL hl: margin-call",
    )
    assert row.body == "margin_call: BTC margin ratio 0.9"
    assert row.payload["kind"] == "margin_call" and row.payload["rule"] == "margin-call"
    assert service.alerting.notifications == 1
    # other pushes are for the feed, not for the phone
    assert service.alerting.event(feed, AccountEvent("listen_key_expired", NOON, "")) is None
    service.store.close()


def test_margin_calls_can_be_turned_off(tmp_path: Path) -> None:
    service = make(tmp_path, builtin_rules={"margin_call": False})
    assert service.alerting is not None and service.manager is not None
    push = AccountEvent("liquidation_warning", NOON, "ETH")
    assert service.alerting.event(service.manager.feeds["hl"], push) is None
    assert service.store is not None and service.store.pending() == []
    service.store.close()


def test_system_messages_are_routed_by_their_labels(tmp_path: Path) -> None:
    service = make(tmp_path)
    deliverer = service.deliverer
    assert deliverer is not None and service.store is not None
    deliverer.routes = [
        RouteConfig(labels={"alertname": "margin-call"}, receivers=["hook"], fallback="hook"),
    ]
    call = exchange_push(SystemKind.MARGIN_CALL, "hl", "hyperliquid", "x", NOON)
    (row,) = deliverer.system_messages_for(call)
    assert row.receiver == "hook" and row.payload["fallback"] == "hook"
    assert deliverer.system_messages_for(digest(1, 0, [], NOON)) == []  # no route takes it
    service.store.close()


def test_the_heartbeat_goes_to_the_dead_mans_switch_while_fresh_unless_silenced(
    tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    url = f"http://127.0.0.1:{http_receiver.port}/ping"
    service = make(tmp_path, heartbeat={"deadman_url": url, "deadman_interval": 60})
    store, deliverer = service.store, service.deliverer
    assert store is not None and deliverer is not None and service.alerting is not None
    view = service.view()
    assert not view.feeds_fresh and service._send_heartbeat(view) is None  # not bootstrapped
    fresh = replace(view, accounts=tuple(replace(a, stale=()) for a in view.accounts))
    beat = service._send_heartbeat(fresh)
    assert beat is not None and beat.kind is SystemKind.HEARTBEAT
    assert beat.labels == {"alertname": "heartbeat", "severity": "info"}
    (row,) = store.pending()
    assert (row.receiver, row.title, row.payload["expires_at"]) == (
        "deadman",
        "INFO alertd heartbeat",
        NOON + 60,
    )
    assert run(deliverer.deliver_due()) == 1  # the real monitor got its GET; "hook" nothing
    assert len(http_receiver.pings) == 1 and http_receiver.posts == []
    store.add_silence(Silence("s", {"alertname": "heartbeat"}, NOON + 50, NOON - 10))
    service.alerting.refresh_silences()
    assert service._send_heartbeat(fresh) is None  # silenced: the monitor will notice
    assert [r.receiver for r in store.history(0)] == ["deadman"]  # the delivered one, kept
    store.close()


def test_the_dead_mans_switch_is_an_http_url_and_owns_its_receiver_name(tmp_path: Path) -> None:
    hook = {"name": "deadman", "url": "json://127.0.0.1:9/x"}
    path = write_config(
        tmp_path, receivers=[hook], heartbeat={"deadman_url": "http://127.0.0.1:9/ping"}
    )
    result = alertd("check", "-c", str(path))
    assert result.returncode == 2
    assert "receivers[0].name: 'deadman' is the dead-man's switch's receiver" in result.stderr
    path = write_config(tmp_path, heartbeat={"deadman_url": "ntfy://topic"})
    for command in ("check", "run"):
        result = alertd(command, "-c", str(path))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "heartbeat.deadman_url: an http:// or https:// URL" in result.stderr


BAN_AT = 1_765_100_000.0  # epoch seconds


def test_the_ip_ban_s_resolution_goes_where_the_ban_went() -> None:
    """A route by severity sends the ban's RESOLVED to the receivers it sent the ban to, as a
    rule alert's resolution keeps the alert's severity (the reviewer's finding on ban11)."""
    ban = ip_banned("binanceusdm", 418, BAN_AT + 7200, BAN_AT)
    over = ip_ban_over("binanceusdm", BAN_AT + 7200)
    assert over.labels == ban.labels and over.severity is ban.severity
    routes = [RouteConfig(severities=["critical"], receivers=["pager"])]
    assert route(routes, ["mail"], over.labels, over.severity.label) == [("pager", None)]
