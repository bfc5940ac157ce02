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


def longs_running(
    tmp_path: Path,
    fake: FakeExchangeServer[Any, Any],
    exchange: str,
    name: str,
    long: tuple[str, str, Any],
    reconcile_interval_s: float,
    http_receiver: HttpReceiver,
    make_daemon: Callable[[Path, dict[str, str]], Daemon],
    count: int = 3,
) -> Daemon:
    """``alertd run`` started on ``count`` accounts of ``fake`` (``exchange``'s; ``name``
    numbered), each
    holding one long (symbol, contracts, the wallet), the default rules, the receiver."""
    symbol, contracts, wallet = long
    accounts, env = [], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for i in range(count):
        key = f"key-{name}{i}"
        account, secrets = exchange_account(fake, f"{name}{i}", exchange, key, f"secret-{name}")
        fake.add_account(key, f"secret-{name}", wallet_balance=wallet)
        fake.open_position(key, symbol, "long", contracts, fake.mark(symbol))
        accounts.append(account)
        env.update(secrets)
    config = write_config(
        tmp_path,
        accounts,
        feeds={
            "stale_after_s": 30,
            "reconcile_interval_s": reconcile_interval_s,
            "backoff": {"max_s": 1},
        },
        receivers=[{"name": "hook", "url": http_receiver.url()}],
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    daemon = make_daemon(config, env)
    daemon.start()
    return daemon


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
    btc = "BTC/USDT:USDT"
    daemon = longs_running(
        tmp_path, fake, "binanceusdm", "ban", (btc, "0.1", "100000"), 2.0, http_receiver, daemon_for
    )
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
