"""The service object without the network: startup, the daily digest, health and reload."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from alertd.config import load_config
from alertd.daemon.service import Service


def make(tmp_path: Path, **extra: object) -> Service:
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "state_path": str(tmp_path / "state.sqlite"),
                "accounts": [{"name": "hl", "exchange": "hyperliquid", "wallet_address": "0x1"}],
                "receivers": [{"name": "hook", "url": "json://127.0.0.1:9/x", "tags": ["all"]}],
                **extra,
            }
        )
    )
    noon = dt.datetime(2026, 11, 25, 7, 59, 30, tzinfo=dt.UTC).timestamp()
    service = Service(
        load_config(path), config_path=path, secrets={"hl": {}}, wall_clock=lambda: noon
    )
    service._startup()
    return service


def test_daily_digest_is_scheduled_and_queued(tmp_path: Path) -> None:
    service = make(tmp_path, heartbeat={"digest_at": "08:00"})
    assert service.store is not None
    expected = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC).timestamp()
    assert service._next_digest() == expected
    service._send_digest()
    (row,) = service.store.pending()
    assert row.title == "INFO alertd daily: 1 accounts, 0 firing"
    assert row.body.splitlines() == ["hl: not connected", "0 alerts firing"]
    assert row.receiver == "hook"
    service.store.close()


def test_health_before_bootstrap_is_not_healthy(tmp_path: Path) -> None:
    service = make(tmp_path)
    (health,) = service.health()
    assert health.stale == ("not bootstrapped",)
    assert not service.healthy()
    assert service.store is not None
    service.store.close()


def test_reload_keeps_the_old_config_when_the_new_one_is_bad(tmp_path: Path) -> None:
    service = make(tmp_path)
    assert service.config_path is not None
    service.config_path.write_text("version: 1\naccounts: [")
    assert service.reload() is False
    assert service.alerting is not None and len(service.alerting.rules) == 7
    assert service.store is not None
    service.store.close()
