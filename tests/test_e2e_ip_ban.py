"""``alertd run`` through an IP ban of the local Binance: one message for the host, none per
account, nothing stopped, and its resolution when the ban ends (issue 11/14)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fake_exchange.base import FakeExchangeServer
from tests.receivers import HttpReceiver
from tests.support.configs import exchange_account, write_config
from tests.support.process import Daemon
from tests.test_e2e_exchanges import QUIET_S, _await, daemon_for  # noqa: F401


def test_an_ip_ban_is_one_message_for_the_host_and_every_account_resumes(
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],  # noqa: F811
) -> None:
    """Three accounts reconciling every 2 s; the local Binance bans the IP for 5 s (418 with
    Retry-After, as Binance answers). The receiver gets "CRITICAL binanceusdm: this IP is
    banned until ..." once and "RESOLVED binanceusdm: the IP ban is over" once; no
    account-error (each account stopped for good with one before), all reconcile after."""
    fake = fake_in_thread("binanceusdm", mark_interval_s=0.3)
    accounts, env = [], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for i in range(3):
        key = f"key-ban{i}"
        account, secrets = exchange_account(fake, f"ban{i}", "binanceusdm", key, "secret-ban")
        fake.add_account(key, "secret-ban", wallet_balance="100000")
        fake.open_position(key, "BTC/USDT:USDT", "long", "0.1", fake.mark("BTC/USDT:USDT"))
        accounts.append(account)
        env.update(secrets)
    config = write_config(
        tmp_path,
        accounts,
        feeds={"stale_after_s": 30, "reconcile_interval_s": 2, "backoff": {"max_s": 1}},
        receivers=[{"name": "hook", "url": http_receiver.url()}],
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    daemon = daemon_for(config, env)
    daemon.start()
    _await(daemon, lambda: daemon.text().count("bootstrapped") == 3, "three accounts live")
    time.sleep(1.0)
    assert http_receiver.posts == [], http_receiver.titles()
    fake.ban_ip(5.0)
    _await(daemon, lambda: len(http_receiver.posts) >= 2, "the ban told, then its end")
    time.sleep(QUIET_S)
    titles = http_receiver.titles()
    assert len(titles) == 2, titles
    assert titles[0].startswith("CRITICAL binanceusdm: this IP is banned until "), titles
    assert titles[0].endswith(" UTC (418)"), titles
    assert titles[1] == "RESOLVED binanceusdm: the IP ban is over", titles
    reconciled = fake.requests.count(("GET", "/fapi/v3/positionRisk"))
    _await(
        daemon,
        lambda: fake.requests.count(("GET", "/fapi/v3/positionRisk")) >= reconciled + 3,
        "every account reconciling again",
    )
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.text()
    assert "feed stopped" not in log and "Traceback" not in log, log[-3000:]
