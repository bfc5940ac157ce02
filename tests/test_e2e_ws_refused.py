"""``alertd run`` against the local OKX refusing websocket openings past its cap with HTTP 429
at the handshake (issue 14): nothing lost, no account stopped, no feed-down."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fake_exchange.base import FakeExchangeServer
from tests.receivers import HttpReceiver
from tests.support.process import Daemon
from tests.test_e2e_exchanges import MARKETS, QUIET_S, _alerts, _await, daemon_for  # noqa: F401
from tests.test_e2e_ip_ban import longs_running

ACCOUNTS = 3
# one opening a second from the IP: half of alertd's pace at OKX (2 of its documented 3), so
# that openings are refused at the handshake as a stricter cap, or another tool's openings
# from the same IP, would have them refused
CAP = (1, 1.0)


def opened(fake: Any) -> int:
    return sum(len(at) for at in fake.ws_openings.values())


def test_openings_refused_at_the_handshake_lose_nothing_and_stop_no_account(
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],  # noqa: F811
) -> None:
    """Three OKX accounts streaming (a private and a business connection each, the mark hub's
    public one); every connection drops, and the reopenings meet the cap: some refused with
    429 at the handshake. Meanwhile one account's wallet falls to a ratio of 0.4 (its push
    sent to no socket): once its connections reopen its resync reads it, and the default
    rules send its liquidation-distance critical, and nothing else: no feed-down, no
    account-error, no account stopped; every connection open again."""
    market = MARKETS["okx"]
    fake = fake_in_thread("okx", mark_interval_s=0.3)
    fake.cap_ws_openings(*CAP)
    entry = fake.mark(market.symbol)
    wallet = (entry / 10).quantize(Decimal(1))
    long = (market.symbol, market.contracts, wallet)
    daemon = longs_running(
        tmp_path, fake, "okx", "cap", long, 60.0, http_receiver, daemon_for, ACCOUNTS
    )
    every = 2 * ACCOUNTS + 1
    _await(daemon, lambda: opened(fake) >= every, "every connection open")
    time.sleep(1.0)
    assert http_receiver.posts == [], http_receiver.titles()
    refused = fake.ws_refused
    asyncio.run(fake.drop_connections())  # from this thread, on the server's loop
    # at a ratio of 0.4 (its mark unchanged): past the liquidation distance's critical,
    # short of the ratio's warning (0.65)
    fake.set_balance("key-cap1", (market.rate * entry / Decimal("0.4")).quantize(Decimal(1)))
    _await(daemon, lambda: opened(fake) >= 2 * every, "every connection open again")
    _await(daemon, lambda: len(http_receiver.posts) >= 1, "the fallen account's critical")
    time.sleep(QUIET_S)
    assert fake.ws_refused > refused, "no opening refused: the test proves nothing"
    assert _alerts(http_receiver) == [("liquidation-distance-critical", "firing")]
    assert "cap1" in http_receiver.posts[0]["title"], http_receiver.titles()
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.text()
    assert "feed stopped" not in log and "Traceback" not in log, log[-3000:]
