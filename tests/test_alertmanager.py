"""Alertmanager receivers, against a real Prometheus Alertmanager started by the test (Debian's
``prometheus-alertmanager``; ``.ci/run`` installs it) with a local webhook behind it.

End to end: two real ``alertd run`` processes watch the same account (a hot standby) and post
to one Alertmanager: one alert gives exactly one webhook notification; one instance killed,
the other keeps the alert firing past the time Alertmanager would have resolved it alone; the
recovery gives exactly one "resolved".
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertd.config import DeliverySettings, Secret
from alertd.daemon.store import NewMessage, Store
from alertd.delivery.deliverer import Deliverer
from alertd.delivery.routing import Receiver
from alertd.delivery.senders import Outgoing, Transport
from alertd.delivery.senders.alertmanager import (
    RESOLVED,
    AlertmanagerSender,
    alert_of,
    iso,
    label_name,
)
from alertd.delivery.system import SystemMessage, ip_ban_over, ip_banned
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.receivers import HttpReceiver
from tests.support.alertmanager import LocalAlertmanager, alertmanager_binary
from tests.support.configs import fake_account, write_config
from tests.support.fixtures import BTC, RULES, btc_long
from tests.support.poll import wait_for
from tests.support.process import Daemon, e2e_env

needs_alertmanager = pytest.mark.skipif(
    alertmanager_binary() is None,
    reason="prometheus-alertmanager is not installed (.ci/run installs Debian's package)",
)

LABELS = {
    "alertname": "ratio-warning",
    "severity": "warning",
    "metric": "worst_ratio",
    "account": "main",
    "exchange": "binanceusdm",
}


def firing(kind: str = "firing", at: float | None = None) -> Outgoing:
    now = time.time() if at is None else at
    payload = {"kind": kind, "labels": LABELS, "since": now - 60, "at": now, "value": "0.66"}
    return Outgoing("WARNING main: worst ratio 66.0%", "above 50.0%", "warning", payload)


@pytest.fixture
def alertmanager(tmp_path: Path, http_receiver: HttpReceiver) -> Iterator[LocalAlertmanager]:
    am = LocalAlertmanager(tmp_path / "am", f"http://127.0.0.1:{http_receiver.port}/am")
    am.start()
    try:
        yield am
    finally:
        am.stop()


def webhooks(http: HttpReceiver, status: str) -> list[dict[str, Any]]:
    """Alertmanager's webhook posts with this status (firing / resolved)."""
    return [p for p in http.posts if p.get("status") == status]


def test_alerts_are_what_alertmanager_takes() -> None:
    alert, is_firing = alert_of(firing())
    assert is_firing and alert["labels"] == LABELS
    assert alert["annotations"]["summary"] == "WARNING main: worst ratio 66.0%"
    assert alert["annotations"]["value"] == "0.66"
    assert alert["startsAt"].endswith("Z")
    # a rule's own label names with characters Alertmanager refuses
    odd = Outgoing("t", "b", "info", {"kind": "firing", "labels": {"team-a": "x", "9x": "y"}})
    assert alert_of(odd)[0]["labels"] == {"team_a": "x", "_9x": "y"}
    assert label_name("ok_name") == "ok_name"
    # a system message (a margin call) is not kept alive: it expires
    push = Outgoing("CRITICAL main: margin call", "x", "critical", {"kind": "margin_call"})
    assert alert_of(push)[1] is False


@needs_alertmanager
def test_sender_fires_refreshes_and_resolves(
    alertmanager: LocalAlertmanager, http_receiver: HttpReceiver
) -> None:
    url = Secret(alertmanager.url)
    sender = AlertmanagerSender()
    assert asyncio.run(sender.send(url, firing())).ok
    wait_for(lambda: webhooks(http_receiver, "firing"), what="firing webhook", timeout_s=30)
    held = alertmanager.alerts()
    assert [a["labels"]["alertname"] for a in held] == ["ratio-warning"]
    first_end = held[0]["endsAt"]
    time.sleep(0.05)
    assert asyncio.run(sender.refresh(url)).ok  # the same alert, valid for longer
    assert alertmanager.alerts()[0]["endsAt"] > first_end
    assert len(webhooks(http_receiver, "firing")) == 1  # a refresh notifies nobody
    assert asyncio.run(sender.send(url, firing("resolved"))).ok
    wait_for(lambda: webhooks(http_receiver, "resolved"), what="resolved webhook", timeout_s=30)
    assert sender.active[url.reveal()] == {}
    assert asyncio.run(sender.refresh(url)).ok  # nothing left to re-send


@needs_alertmanager
def test_an_account_removed_from_one_instance_lapses_there_and_stays_firing_from_another(
    alertmanager: LocalAlertmanager, http_receiver: HttpReceiver
) -> None:
    """Sharding by config, an account moved from one instance to another: the first, started
    without it, ends its alert with "account removed from the config" (reason ``removed``).
    To Alertmanager that is no resolution: the first stops re-sending it (it lapses at its
    ``endsAt`` unless watched elsewhere), and the instance that watches the account now keeps
    it firing, no "resolved" webhook. A resolution for any other reason ends it."""
    url = Secret(alertmanager.url)
    moved_from, moved_to = AlertmanagerSender(), AlertmanagerSender()
    assert asyncio.run(moved_from.send(url, firing())).ok
    assert asyncio.run(moved_to.send(url, firing())).ok
    wait_for(lambda: webhooks(http_receiver, "firing"), what="firing webhook", timeout_s=30)
    removed = firing("resolved")
    removed = Outgoing(removed.title, removed.body, removed.severity,
                       {**removed.payload, "reason": "removed"})  # fmt: skip
    assert asyncio.run(moved_from.send(url, removed)).ok
    assert moved_from.active[url.reveal()] == {}  # not re-sent by the first any more
    assert [a["labels"]["alertname"] for a in alertmanager.alerts()] == ["ratio-warning"]
    assert asyncio.run(moved_to.refresh(url)).ok
    assert [a["labels"]["alertname"] for a in alertmanager.alerts()] == ["ratio-warning"]
    cleared = firing("resolved")
    cleared = Outgoing(cleared.title, cleared.body, cleared.severity,
                       {**cleared.payload, "reason": "cleared"})  # fmt: skip
    assert asyncio.run(moved_to.send(url, cleared)).ok
    wait_for(lambda: alertmanager.alerts() == [], what="the alert ended", timeout_s=30)


@needs_alertmanager
def test_refused_alerts_and_an_unreachable_alertmanager_are_failures(
    alertmanager: LocalAlertmanager,
) -> None:
    sender = AlertmanagerSender()
    now = time.time()  # an alert that ends an hour before it started
    bad = Outgoing("t", "b", "info", {"kind": "resolved", "labels": LABELS, "since": now})
    bad = Outgoing("t", "b", "info", {**bad.payload, "at": now - 3600})
    refused = asyncio.run(sender.send(Secret(alertmanager.url), bad))
    assert not refused.ok and "HTTP 400" in refused.error
    # loopback where nothing listens (127.0.0.2: a revealed URL is masked in every later log
    # line of the process, and "http://127.0.0.1:9" begins many)
    closed = asyncio.run(sender.send(Secret("http://127.0.0.2:9"), firing()))
    assert not closed.ok and closed.error == "Alertmanager was not reached: ClientConnectorError"


def restarted_refresh(store: Store, alertmanager: LocalAlertmanager) -> None:
    """A new process's first refresh of receiver 'am' (Alertmanager, re-sent every 0.5 s):
    seeded from what the outbox delivered to it."""
    receiver = Receiver(
        "am", Secret(alertmanager.url), 0.0, "http", (), Transport.ALERTMANAGER, 0.5
    )
    sender = AlertmanagerSender()
    deliverer = Deliverer(
        store, {"am": receiver}, [], DeliverySettings(), {Transport.ALERTMANAGER: sender}
    )
    asyncio.run(deliverer.refresh_due())


@needs_alertmanager
def test_after_a_restart_what_still_fires_is_re_sent(
    tmp_path: Path, alertmanager: LocalAlertmanager
) -> None:
    """The outbox's history says what this receiver was last told is firing: a new process
    re-sends it (Alertmanager would otherwise resolve it after four missed re-sends)."""
    store = Store(tmp_path / "state.sqlite")
    now = time.time()
    other = {**LABELS, "alertname": "ratio-critical", "severity": "critical"}
    rows = [
        NewMessage("am", "warning", "w", "b", {"kind": "firing", "labels": LABELS, "since": now}),
        NewMessage("am", "critical", "c", "b", {"kind": "firing", "labels": other, "since": now}),
        NewMessage("am", "critical", "c", "b", {"kind": "resolved", "labels": other, "at": now}),
    ]
    for row_id in store.enqueue(rows, now):
        store.mark_delivered(row_id, now)
    restarted_refresh(store, alertmanager)
    held = alertmanager.alerts()
    assert [a["labels"]["alertname"] for a in held] == ["ratio-warning"]
    store.close()


def _outgoing(message: SystemMessage) -> Outgoing:
    return Outgoing(message.title, message.body, message.severity.label, message.payload())


@needs_alertmanager
def test_an_ip_ban_fires_until_its_end_and_its_end_resolves_the_same_alert(
    alertmanager: LocalAlertmanager, http_receiver: HttpReceiver
) -> None:
    """A two-hour ban stays firing in Alertmanager (re-sent, valid until the ban's end, not
    four re-send intervals) and its end resolves that alert, not a new one."""
    url = Secret(alertmanager.url)
    sender = AlertmanagerSender()
    now = time.time()
    ban = _outgoing(ip_banned("binanceusdm", 418, now + 7200, now))
    over = _outgoing(ip_ban_over("binanceusdm", now))
    assert alert_of(ban)[1] is True  # kept alive by refresh
    assert over.payload["kind"] == RESOLVED and over.payload["labels"] == ban.payload["labels"]
    assert asyncio.run(sender.send(url, ban)).ok
    wait_for(lambda: webhooks(http_receiver, "firing"), what="firing webhook", timeout_s=30)
    (held,) = alertmanager.alerts()
    assert held["endsAt"][:19] == iso(now + 7200)[:19]  # the ban's end
    assert asyncio.run(sender.refresh(url)).ok
    (held,) = alertmanager.alerts()
    assert held["endsAt"][:19] == iso(now + 7200)[:19]
    assert asyncio.run(sender.send(url, over)).ok
    assert sender.active[url.reveal()] == {}
    wait_for(lambda: webhooks(http_receiver, "resolved"), what="resolved webhook", timeout_s=30)
    (resolved,) = webhooks(http_receiver, "resolved")
    assert [a["labels"]["alertname"] for a in resolved["alerts"]] == ["ip-banned"]
    assert all(a["status"]["state"] != "active" for a in alertmanager.alerts())


def _legacy_ban(kind: str, severity: str, at: float) -> dict[str, Any]:
    """An IP ban's row as alertd before session 11 (409469e) wrote it: no ``ends_at``, its end
    of kind ``ip_ban_over`` and severity info (neither a resolution nor the ban's labels)."""
    labels = {"alertname": "ip-banned", "severity": severity, "exchange": "binanceusdm"}
    return {"kind": kind, "rule": "ip-banned", "severity": severity, "labels": labels,
            "value": None, "threshold": None, "at": at, "since": at, "title": "t", "body": "b",
            "expires_at": None}  # fmt: skip


@needs_alertmanager
def test_after_an_upgrade_no_ip_ban_is_re_sent_past_its_end(
    tmp_path: Path, alertmanager: LocalAlertmanager
) -> None:
    """The outbox keeps every delivered row: a restart seeds Alertmanager from them. A ban the
    older code delivered and ended (its end of kind ip_ban_over, severity info) and one it
    delivered without its end (no ``ends_at``: when it ends is unknown) are not re-sent as
    firing criticals at every refresh (they were, for ever: reviewer's probe_am_old_ban_A/B);
    a rule's alert and a ban still on are."""
    store = Store(tmp_path / "state.sqlite")
    now = time.time()
    old = now - 86_400
    bybit = ip_banned("bybit", 403, now + 3600, now - 60)
    rows = [
        NewMessage("am", "critical", "t", "b", _legacy_ban("ip_banned", "critical", old)),
        NewMessage("am", "info", "t", "b", _legacy_ban("ip_ban_over", "info", old + 600)),
        # a ban of the older code not followed by its end (it ended while alertd was down)
        NewMessage("am", "critical", "t", "b", _legacy_ban("ip_banned", "critical", old + 900)),
        NewMessage("am", "warning", "w", "b", {"kind": "firing", "labels": LABELS, "since": now}),
        NewMessage("am", "critical", "t", "b", _outgoing(bybit).payload),
    ]
    for row_id in store.enqueue(rows[:2], old):
        store.mark_delivered(row_id, old + 600)
    for row_id in store.enqueue(rows[2:], now):
        store.mark_delivered(row_id, now)
    restarted_refresh(store, alertmanager)
    held = sorted(
        (a["labels"]["alertname"], a["labels"]["exchange"]) for a in alertmanager.alerts()
    )
    assert held == [("ip-banned", "bybit"), ("ratio-warning", "binanceusdm")]
    store.close()


def test_a_firing_alert_is_never_re_sent_past_its_own_end() -> None:
    """A ban whose end passes while no resolution reaches the receiver (the outbox gave up on
    it, a restart after its end) leaves the re-sent alerts: an ended ban seeded is not kept,
    and one that ends while kept is dropped at the refresh past its end (nothing posted:
    nothing listens at the URL)."""
    clock = [1_800_000_000.0]
    sender = AlertmanagerSender(clock=lambda: clock[0])
    url = Secret("http://127.0.0.2:9")
    ended = _outgoing(ip_banned("okx", 418, clock[0] - 1, clock[0] - 600))
    on = _outgoing(ip_banned("binanceusdm", 418, clock[0] + 100, clock[0]))
    sender.seed(url, [ended, on], 60.0)
    assert [a["labels"]["exchange"] for a in sender.active[url.reveal()].values()] == [
        "binanceusdm"
    ]
    clock[0] += 101
    assert asyncio.run(sender.refresh(url)).ok
    assert sender.active[url.reveal()] == {}


def _instance(tmp_path: Path, name: str, fake: FakeBinanceUSDM, am: LocalAlertmanager) -> Daemon:
    folder = tmp_path / name
    folder.mkdir()
    path = write_config(
        folder,
        [fake_account(fake, "main", "binanceusdm", "E2E_KEY", "E2E_SECRET")],
        feeds={"stale_after_s": 5, "reconcile_interval_s": 5, "backoff": {"max_s": 1}},
        rules=RULES,
        receivers=[{"name": "am", "type": "alertmanager", "url": am.url, "resend_interval": "1s"}],
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    return Daemon(path, e2e_env(), folder / "alertd.log")


@needs_alertmanager
def test_two_instances_one_notification_and_a_survivor_keeps_it_firing(
    tmp_path: Path,
    fake_in_thread: Any,
    http_receiver: HttpReceiver,
    alertmanager: LocalAlertmanager,
) -> None:
    fake = btc_long(fake_in_thread)
    first = _instance(tmp_path, "a", fake, alertmanager)
    second = _instance(tmp_path, "b", fake, alertmanager)
    try:
        for daemon in (first, second):
            daemon.start()
        for daemon in (first, second):
            wait_for(lambda d=daemon: "bootstrapped" in d.text(), what="bootstrap", timeout_s=60)

        fake.set_mark(BTC, "58350")  # ratio about 0.67: the warning, in both instances
        wait_for(
            lambda: "delivered" in first.text() and "delivered" in second.text(),
            what="both instances delivered the warning to Alertmanager",
            timeout_s=60,
        )
        wait_for(lambda: webhooks(http_receiver, "firing"), what="firing webhook", timeout_s=30)
        held = alertmanager.alerts()
        assert [a["labels"]["alertname"] for a in held] == ["ratio-warning"]
        assert held[0]["labels"]["account"] == "main"

        assert first.stop(signal.SIGKILL) != 0  # one instance dies without a word
        # Alertmanager would resolve an alert no one re-sends after 4 intervals (4 s): the
        # survivor's re-sends keep it firing through twice that
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert not webhooks(http_receiver, "resolved"), "resolved while still firing"
            assert [a["status"]["state"] for a in alertmanager.alerts()] == ["active"]
            time.sleep(0.5)

        fake.set_mark(BTC, "60000")  # recovered: the survivor resolves it
        wait_for(lambda: webhooks(http_receiver, "resolved"), what="resolved", timeout_s=60)
        time.sleep(3)  # room for a duplicate to show up (group_interval is 1 s)
        firing_alerts = [a for p in webhooks(http_receiver, "firing") for a in p["alerts"]]
        resolved_alerts = [a for p in webhooks(http_receiver, "resolved") for a in p["alerts"]]
        assert [a["labels"]["alertname"] for a in firing_alerts] == ["ratio-warning"]
        assert [a["labels"]["alertname"] for a in resolved_alerts] == ["ratio-warning"]
        assert second.stop() == 0
    finally:
        for daemon in (first, second):
            daemon.kill()
