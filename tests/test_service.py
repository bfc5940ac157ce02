"""The service object without the network: startup, the daily digest, health and reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alertd.config import BackoffSettings, load_config
from alertd.daemon.service import SWEEP_S, Service
from alertd.delivery.deliverer import Deliverer
from alertd.errors import StartupError
from alertd.feeds.backoff import Backoff
from alertd.feeds.feed import AccountFeed
from alertd.feeds.options import PRODUCTION, FeedOptions
from alertd.rules.model import Silence

from .support.configs import write_config
from .support.service import NOON, make

ROOT = Path(__file__).resolve().parent.parent


def test_daily_digest_is_scheduled_and_queued(tmp_path: Path) -> None:
    service = make(tmp_path, heartbeat={"digest_at": "08:00"})
    assert service.store is not None
    expected = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC).timestamp()
    assert service._next_digest() == expected
    service._send_digest()
    (row,) = service.store.pending()
    assert row.title == "INFO alertd daily: 1 account, 0 firing"
    assert row.body.splitlines() == ["hl: not connected", "0 alerts firing"]
    assert row.receiver == "hook"
    # silenced like any message
    service.store.add_silence(Silence("d", {"alertname": "daily-digest"}, NOON + 60, NOON - 60))
    assert service.alerting is not None
    service.alerting.refresh_silences()
    service._send_digest()
    assert len(service.store.pending()) == 1
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
    # still the running config: 3 default rules and 13 built-in ones (feed-stale, feed-down,
    # private-stream-missed, account-error, account-mode, ratio-drift, incomplete-data,
    # fee-gap, stop-beyond-liquidation, leverage-high, concentrated, adl-front, gap-risk), with
    # margin calls on (they are system messages, not rules)
    assert service.alerting is not None and len(service.alerting.rules) == 16
    assert service.alerting.margin_calls
    assert service.store is not None
    service.store.close()


def test_the_sweep_evaluates_an_account_a_second_after_its_last_evaluation(
    tmp_path: Path,
) -> None:
    """Every account is evaluated at least once a second without ticks (time-based rules
    advance), and an account evaluated for a change is not swept again within that second
    (with marks ticking every second, it was evaluated twice a second)."""
    service = make(tmp_path)
    assert service._due(100.0) == ["hl"]  # never evaluated: at once
    service._dirty.update(service._due(100.0))
    assert service._evaluate_dirty(100.0) == {"hl"}
    assert service._due(100.5) == []
    assert service._due(100.0 + SWEEP_S) == ["hl"]
    service._dirty.add("hl")  # a tick, before the sweep was due
    assert service._evaluate_dirty(100.6) == {"hl"}
    assert service._due(100.0 + SWEEP_S) == []  # evaluated 0.4 s ago: not swept again
    assert service._due(100.6 + SWEEP_S) == ["hl"]
    assert service.store is not None
    service.store.close()


# --- a task that dies ------------------------------------------------------------------


class CrashingFeed(AccountFeed):
    """A feed with a bug: its task raises instead of streaming."""

    async def run(self, watchdog: bool = True) -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom in the feed")


class IdleFeed(AccountFeed):
    async def run(self, watchdog: bool = True) -> None:
        await asyncio.Event().wait()


def unstarted(tmp_path: Path, **extra: Any) -> Service:
    path = write_config(tmp_path, **extra)
    return Service(
        load_config(path),
        config_path=path,
        secrets={"hl": {}},
        feed_factory=CrashingFeed,
        shutdown_timeout_s=2,
    )


def serve(service: Service) -> int:
    return asyncio.run(asyncio.wait_for(service.serve(install_signals=False), 20))


def test_a_feed_task_that_dies_stops_the_service_in_order_and_exits_non_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = unstarted(tmp_path)
    with caplog.at_level(logging.INFO):
        code = serve(service)
    assert code != 0  # systemd's Restart=on-failure restarts it
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # the reason, once
    assert "feeds" in errors[0].getMessage() and "boom in the feed" in errors[0].getMessage()
    messages = [r.getMessage() for r in caplog.records]
    # the ordered shutdown ran after it (its one summary line), and the state file is closed
    assert messages.index(errors[0].getMessage()) < next(
        i for i, m in enumerate(messages) if m.startswith("stopped in")
    )
    assert service.store is not None
    with pytest.raises(sqlite3.ProgrammingError):
        service.store.db.execute("SELECT 1")
    # one account is "1 account" in the start and stop lines
    starting = next(m for m in messages if m.startswith("starting: "))
    assert starting.startswith("starting: 1 account, "), starting
    stopped = next(m for m in messages if m.startswith("stopped in"))
    assert ": 1 account, " in stopped and "0 notifications" in stopped, stopped
    # the evaluations done beside those skipped: what a firing daemon's CPU is (firing14)
    counts = re.search(
        r"\d+ engine updates?, (\d+) evaluations? \(0 skipped within bands\)", stopped
    )
    assert counts is not None and int(counts[1]) == service.alerting.evaluations, stopped


def test_a_delivery_task_that_dies_exits_non_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Deliverer) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Deliverer, "run", broken)
    monkeypatch.setattr(CrashingFeed, "run", IdleFeed.run)
    service = unstarted(tmp_path)
    with caplog.at_level(logging.INFO):
        assert serve(service) != 0
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "delivery" in error.getMessage() and "disk I/O error" in error.getMessage()


def test_a_task_that_dies_as_sigterm_arrives_still_exits_non_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = unstarted(tmp_path)
    service.eval_interval_s = 0.3  # the feed dies while the loop sleeps

    async def die_with_sigterm(self: AccountFeed, watchdog: bool = True) -> None:
        service.should_exit = True
        raise RuntimeError("boom as it stops")

    monkeypatch.setattr(CrashingFeed, "run", die_with_sigterm)
    with caplog.at_level(logging.INFO):
        assert serve(service) != 0
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "boom as it stops" in error.getMessage()


def test_http_that_cannot_start_still_shuts_the_started_tasks_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = unstarted(tmp_path, http={"enabled": True, "port": port})
        with caplog.at_level(logging.INFO), pytest.raises(StartupError, match="cannot listen"):
            serve(service)
    assert any(r.getMessage().startswith("stopped in") for r in caplog.records)
    assert service.manager is not None and service.manager._scheduler is None


def test_a_digest_that_cannot_be_scheduled_still_shuts_down_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Service) -> float:
        raise ValueError("no such time")

    monkeypatch.setattr(Service, "_next_digest", broken)
    service = unstarted(tmp_path)
    with caplog.at_level(logging.INFO), pytest.raises(ValueError, match="no such time"):
        serve(service)
    assert any(r.getMessage().startswith("stopped in") for r in caplog.records)


def test_the_real_run_process_exits_non_zero_when_a_feed_task_dies(tmp_path: Path) -> None:
    service = unstarted(tmp_path)
    assert service.config_path is not None
    # the real CLI in its own process, with one bug planted: the feed task raises
    program = (
        "import sys\n"
        "import alertd.feeds.feed as feed\n"
        "async def run(self, watchdog=True):\n"
        "    raise RuntimeError('boom in the feed')\n"
        "feed.AccountFeed.run = run\n"
        "from alertd.cli.main import main\n"
        f"sys.exit(main(['run', '-c', {str(service.config_path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode not in (0, 2), result.stderr  # 2 would stop systemd restarting
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "boom in the feed" in errors[0], result.stderr
    assert "stopped in" in result.stderr


def test_feed_options_are_one_typed_seam(tmp_path: Path) -> None:
    service = make(tmp_path)
    assert service.manager is not None and service.manager.options is PRODUCTION
    settings = BackoffSettings(initial_s=0.5, max_s=4, multiplier=2, jitter=0, reset_after_s=1)
    configured = PRODUCTION.backoff_factory(settings)()
    assert (configured.initial_s, configured.max_s) == (0.5, 4)

    def tiny() -> Backoff:
        return Backoff(0.01, 0.02)

    assert FeedOptions(backoff=tiny).backoff_factory(settings) is tiny
    assert service.store is not None
    service.store.close()
