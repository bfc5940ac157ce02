"""Running it as a service: sd_notify, /healthz, /metrics, /status, status and history, schema."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from alertd.config import ConfigError, parse_config

from .support.endpoint import free_port, get
from .support.fixtures import BTC, started
from .support.poll import wait_for
from .support.process import alertd


def test_endpoint_sd_notify_status_and_history(world: dict[str, Any], tmp_path: Path) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    port = free_port()
    path.write_text(
        json.dumps(
            {**config, "http": {"enabled": True, "port": port, "token_env": "E2E_HTTP_TOKEN"}}
        )
    )
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(0.2)
    daemon.env.update(
        NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="600000", E2E_HTTP_TOKEN="t0ken-e2e"
    )
    received: list[str] = []

    def drain() -> list[str]:
        try:
            while True:
                received.append(sock.recv(4096).decode())
        except TimeoutError:
            return received

    try:
        started(daemon)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(f"{base}/healthz", "t0ken-e2e")[0] == 200, what="healthy")
        assert get(f"{base}/healthz")[0] == 401  # the token is required
        wait_for(lambda: any("READY=1" in m for m in drain()), what="READY")
        ready = next(m for m in received if "READY=1" in m)
        assert "STATUS=1 account, 0 firing, feeds fresh" in ready
        wait_for(lambda: sum("WATCHDOG=1" in m for m in drain()) >= 3, what="watchdog pings")

        fake.set_mark(BTC, "58350")
        wait_for(lambda: len(http.posts) == 1, what="warning")
        status, text = get(f"{base}/metrics", "t0ken-e2e")
        assert status == 200
        assert 'alertd_margin_ratio{account="main"} 0.66' in text
        assert 'alertd_alerts_firing{severity="warning"} 1.0' in text
        assert 'alertd_feed_up{account="main"} 1.0' in text
        assert (
            "alertd_notifications_sent_total 2.0" in text
            or "alertd_notifications_sent_total 1.0" in text
        )
        assert (
            'alertd_position_liquidation_distance{account="main",side="long",symbol="BTC/USDT:USDT"}'
            in text
        )

        result = alertd("status", "-c", str(path), "--json", env=daemon.env)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["source"] == "daemon" and data["healthy"] is True
        assert data["firing"][0]["rule"] == "ratio-warning"
        assert data["accounts"][0]["positions"][0]["symbol"] == BTC
        table = alertd("status", "-c", str(path), env=daemon.env)
        assert "Firing alerts (1)" in table.stdout and "ratio-warning" in table.stdout
        for output in (result.stdout, table.stdout, get(f"{base}/metrics", "t0ken-e2e")[1]):
            assert "t0ken-e2e" not in output and "secret-e2e" not in output

        fake.marks_paused = True  # stale: the endpoint says why
        wait_for(
            lambda: get(f"{base}/healthz", "t0ken-e2e")[0] == 503, what="unhealthy", timeout_s=30
        )
        body = json.loads(get(f"{base}/healthz", "t0ken-e2e")[1])
        assert body["status"] == "unhealthy" and "stale" in body["reasons"][0]
        drain()  # a reader that keeps up (systemd does): room for STOPPING
        received.clear()
        assert daemon.stop() == 0
        assert any("STOPPING=1" in m for m in drain())
    finally:
        if daemon.proc is not None:
            daemon.stop()
        sock.close()

    # with the daemon stopped, status reads the state file
    offline = alertd("status", "-c", str(path), "--json", env=daemon.env)
    data = json.loads(offline.stdout)
    assert data["source"] == "state file"
    assert data["firing"][0]["rule"] == "ratio-warning"
    assert data["firing"][0]["severity"] == "warning"  # the rule's, from the config
    (main,) = data["accounts"]
    assert main["mode"] == "single-asset (multiAssetsMargin false)"  # the mode as last read
    assert main["coverage"] == "computed by alertd" and main["margin_ratio_source"] == "alertd"
    history = alertd("history", "-c", str(path), "--since", "1h", "--json")
    rows = json.loads(history.stdout)
    assert {r["receiver"] for r in rows} == {"mail", "hook"}
    assert all(r["delivered_at"] for r in rows if r["kind"] == "firing")


def test_http_bind_rules() -> None:
    base = "version: 1\naccounts: [{name: h, exchange: hyperliquid, wallet_address: '0x1'}]\n"
    with pytest.raises(ConfigError) as info:
        parse_config(base + "http: {enabled: true, host: 0.0.0.0}")
    assert "reachable from other machines: set token_env" in info.value.problems[0]
    config = parse_config(base + "http: {enabled: true, host: 0.0.0.0, token_env: TOKEN}")
    assert config.http.token_env == "TOKEN"
    assert parse_config(base).http.host == "127.0.0.1" and not parse_config(base).http.enabled


def test_schema_is_json_schema_of_the_config() -> None:
    result = alertd("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "Config"
    assert {"accounts", "rules", "receivers", "routes", "http"} <= set(schema["properties"])


def test_notify_never_blocks_on_a_reader_that_does_not_read(tmp_path: Path) -> None:
    from alertd.daemon.sdnotify import Notifier

    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval_s == 2.0
        # a blocking send would hang here once the queue is full; alertd drops instead
        results = [notifier.watchdog() for _ in range(500)]
        assert results[0] and not all(results)
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()
    assert Notifier({}).ready("x") is False  # outside systemd: a no-op


def test_notify_keeps_a_bounded_record_of_what_it_sent(tmp_path: Path) -> None:
    from alertd.daemon.sdnotify import SENT_KEPT, Notifier

    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        # a STATUS every 5 s for a day is 17,280 datagrams: the record must not keep them all
        for i in range(SENT_KEPT * 10):
            assert notifier.status(f"{i} accounts")
            sock.recv(100)  # a reader that keeps up, as systemd does
        assert len(notifier.sent) == SENT_KEPT
        assert notifier.sent[-1] == f"STATUS={SENT_KEPT * 10 - 1} accounts"
    finally:
        sock.close()
