"""System messages: exchange pushes, the digest and the test message, without a rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alertd.config import RouteConfig
from alertd.delivery.system import SystemKind, digest, exchange_push, receiver_check
from alertd.feeds.state import AccountEvent
from alertd.rules.model import Severity, Silence

from .test_service import make

NOON = dt.datetime(2026, 11, 25, 7, 59, 30, tzinfo=dt.UTC).timestamp()  # make()'s wall clock


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
