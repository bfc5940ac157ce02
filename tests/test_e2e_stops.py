"""End to end, stop-loss coverage: the real ``alertd run`` against each local exchange serving
open conditional orders in its own format, with the stop rules on.

One cross long of one BTC at about 10x. No stop: "no stop-loss". A stop placed far below the
liquidation price: the missing-stop alert resolves and "stop ... is beyond liq ..." fires,
naming both prices. The stop replaced by one between the liquidation price and the mark:
that alert resolves. Through each exchange's order stream (the reconcile an hour away, so
only the stream can carry the changes), and, with the pushes missed, through the reconcile.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fake_exchange.base import FakeExchangeServer
from tests.receivers import HttpReceiver
from tests.support.configs import exchange_account, write_config
from tests.support.endpoint import free_port
from tests.support.process import Daemon, alertd
from tests.test_e2e_exchanges import MARKETS, QUIET_S, _await, daemon_for  # noqa: F401

CASES = [(exchange, "stream") for exchange in sorted(MARKETS)] + [
    ("bybit", "reconcile"),  # Bybit: also the position's own stopLoss field
    ("okx", "reconcile"),
    # a portfolio margin account: no figures of alertd's, the stop rules on the exchange's
    # own liquidation price (Bybit's liqPrice, OKX's liqPx) and its stops as read
    ("bybit", "portfolio"),
    ("okx", "portfolio"),
]
# how each local exchange is told the account is in portfolio margin (Bybit "Get Account
# Info" marginMode, OKX "Get account configuration" acctLv 4)
PORTFOLIO: dict[str, Callable[[Any, str], None]] = {
    "bybit": lambda fake, key: fake.set_margin_mode(key, "PORTFOLIO_MARGIN"),
    "okx": lambda fake, key: fake.set_account_level(key, "4"),
}
BEYOND = re.compile(r"stop ([\d,.]+) is beyond liq ([\d,.]+)")


def _number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _titles(http: HttpReceiver) -> list[str]:
    return [post["title"] for post in http.posts]


@pytest.mark.parametrize(("exchange", "via"), CASES)
def test_no_stop_then_a_stop_beyond_liquidation_then_a_good_stop(
    exchange: str,
    via: str,
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],  # noqa: F811
) -> None:
    market = MARKETS[exchange]
    fake = fake_in_thread(exchange, mark_interval_s=0.3)
    fake.push_stop_orders = via == "stream"
    entry = fake.mark(market.symbol)
    tick = fake.tick(market.symbol)
    wallet = (entry / 10).quantize(Decimal(1))
    key = "0x" + "5f" * 20 if exchange == "hyperliquid" else "key-stops"
    account, env = exchange_account(fake, "main", exchange, key, "secret-stops")
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    fake.add_account(key, "secret-stops", wallet_balance=wallet)
    fake.open_position(key, market.symbol, "long", market.contracts, entry)
    portfolio = via == "portfolio"
    if portfolio:
        PORTFOLIO[exchange](fake, key)
    config = write_config(
        tmp_path,
        [account],
        feeds={
            "stale_after_s": 30,
            "reconcile_interval_s": 3600 if via == "stream" else 1,
            # the net for a missed push read at every reconcile, not every 5th (its cadence is
            # test_shared_exchange's): each step's stops in 1 s, not up to 5
            "stops_reconcile_every": 1,
            "backoff": {"initial_s": 0.1, "max_s": 1},
        },
        # the account-mode warning (a portfolio margin account is not computed) aside: the
        # stop alerts are counted here
        builtin_rules={"stops": {"missing": True, "missing_for": "0s"}, "account_mode": False},
        receivers=[{"name": "hook", "url": http_receiver.url()}],
        http={"enabled": True, "port": free_port()},
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    daemon = daemon_for(config, env)
    daemon.start()

    def arrived(n: int) -> Callable[[], bool]:
        return lambda: len(http_receiver.posts) >= n

    _await(daemon, arrived(1), "no stop-loss")
    [first] = _titles(http_receiver)
    assert first.startswith("WARNING main") and first.endswith("long: no stop-loss"), first
    assert "set a reduce-only stop above liq" in http_receiver.posts[0]["message"]

    # half the entry: far below a 10x long's liquidation price (about 90% of entry)
    far = (entry / 2).quantize(tick)
    order = fake.add_stop(key, market.symbol, "long", far)
    _await(daemon, arrived(3), "stop-missing resolved and stop-beyond-liquidation firing")
    titles = _titles(http_receiver)[1:]
    assert any(t.startswith("RESOLVED") and "stop-loss set" in t for t in titles), titles
    [beyond] = [t for t in titles if BEYOND.search(t)]
    found = BEYOND.search(beyond)
    assert found is not None and beyond.startswith("WARNING main")
    stop_price, liq = _number(found[1]), _number(found[2])
    assert stop_price == far and far < liq < entry, beyond
    body = next(p["message"] for p in http_receiver.posts if BEYOND.search(p["title"]))
    assert "can never trigger" in body and "move the stop above" in body, body
    # where the exchange's ratio stands in, the price is the exchange's and said so
    assert beyond.endswith("(exchange's)") is portfolio, beyond
    assert ("liquidation price is" in body and "own (alertd does not compute" in body) is (
        portfolio
    ), body

    # a stop between the liquidation price and the mark (placed before the far one is
    # cancelled, as a trader moves a stop): resolved
    good = ((liq + entry) / 2).quantize(tick)
    fake.add_stop(key, market.symbol, "long", good)
    fake.cancel_stop(key, order)
    _await(daemon, arrived(4), "stop-beyond-liquidation resolved")
    last = _titles(http_receiver)[3]
    assert last.startswith("RESOLVED") and "fires before liquidation" in last, last
    time.sleep(QUIET_S)  # the cancel of the far stop changes nothing
    assert len(http_receiver.posts) == 4, _titles(http_receiver)

    # status (the daemon's /status, through the real CLI) shows the stop
    status = alertd("status", "--json", "-c", str(config), env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["source"] == "daemon", data
    [position] = data["accounts"][0]["positions"]
    assert (position.get("liquidation_price_source") == "exchange") is portfolio, position
    assert Decimal(position["stop_loss_price"]) == good, position
    assert Decimal(position["stop_coverage"]) == 1, position
    assert Decimal(position["stop_beyond_liquidation"]) < 0, position
    table = alertd("status", "-c", str(config), env={**env, "COLUMNS": "200"})
    assert f"{good:,.2f} (100%)" in table.stdout, table.stdout

    assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.text(), daemon.text()[-3000:]
