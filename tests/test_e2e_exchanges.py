"""End to end on every exchange: the real ``alertd run`` process against each local exchange,
with the default rules, a real HTTP receiver, and SIGTERM at the end.

One cross long of one BTC at about 10x leverage; the exchange's mark then falls in steps, each
step held until its message arrives: inside 3% of the liquidation price (the default
``liquidation-distance-critical``), into the warning band of the margin ratio (0.5 to 0.8),
into its critical band (0.8 to 1), and back to the entry price. Each of the three alerts must
fire once and resolve once, and nothing else may arrive.

The marks of each step come from the exchange's own margin rule for a first-tier position
(``MM = notional * rate``): with wallet ``W``, one BTC entered at ``e`` and ``rate`` = the
tier's maintenance rate plus the fee the exchange adds, the margin ratio ``MM / (W + p - e)``
equals ``r`` at ``p = r * (e - W) / (r - rate)``.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fake_exchange.base import FakeExchangeServer
from tests.receivers import HttpReceiver
from tests.support.configs import exchange_account, write_config
from tests.support.poll import wait_for
from tests.support.process import Daemon

# generous for a loaded 2-core machine; every wait is still bounded
STEP_TIMEOUT_S = 60.0
QUIET_S = 2.0  # after the last message: nothing more may arrive


@dataclass(frozen=True)
class Market:
    """Where the position is opened on one exchange's local server."""

    symbol: str
    contracts: str  # the exchange's contracts for one BTC (ctVal, quanto_multiplier)
    rate: Decimal  # first-tier maintenance rate plus the fee the exchange adds to it
    # a requirement that does not move with the price (Bybit's fee to close at bankruptcy)
    fixed: Decimal = Decimal(0)


MARKETS: dict[str, Market] = {
    # BTCUSDT's first bracket: 0.4% (Binance's published brackets, in the local server's data)
    "binanceusdm": Market("BTC/USDT:USDT", "1", Decimal("0.004")),
    # Bybit's first BTCUSDT risk limit on the local server: 0.5%, plus the fee to close one
    # BTC at its bankruptcy price (10x: 0.9 x the entry, 0.055%)
    "bybit": Market("BTC/USDT:USDT", "1", Decimal("0.005"), Decimal("0.9") * Decimal("0.00055")),
    # OKX: tier 1 mmr 0.4% plus the 0.05% liquidation fee; ctVal 0.01 BTC
    "okx": Market("BTC/USDT:USDT", "100", Decimal("0.0045")),
    # Gate: 0.4% plus the 0.075% taker fee; quanto_multiplier 0.0001 BTC
    "gate": Market("BTC/USDT:USDT", "10000", Decimal("0.00475")),
    # Hyperliquid: half the initial rate at BTC's 40x maximum leverage
    "hyperliquid": Market("BTC/USDC:USDC", "1", Decimal(1) / 80),
}

RULE = re.compile(r"\(([a-z-]+)\)")
EXPECTED = [
    ("liquidation-distance-critical", "firing"),
    ("margin-ratio-warning", "firing"),
    ("margin-ratio-critical", "firing"),
]


def _mark_at_ratio(ratio: Decimal, wallet: Decimal, entry: Decimal, market: Market) -> Decimal:
    """The mark at which one BTC long entered at ``entry`` has this margin ratio (``fixed``
    is per unit of the entry price)."""
    return (ratio * (entry - wallet) + market.fixed * entry) / (ratio - market.rate)


def _alerts(http: HttpReceiver) -> list[tuple[str, str]]:
    """(rule, firing or resolved) of every message received, in order."""
    out = []
    for post in http.posts:
        rule = RULE.findall(post["message"])
        assert rule, post
        out.append((rule[-1], "resolved" if post["title"].startswith("RESOLVED") else "firing"))
    return out


def _await(daemon: Daemon, check: Callable[[], bool], what: str) -> None:
    """``wait_for`` with the step's bound; on timeout the daemon's log tail is in the error."""
    try:
        wait_for(check, timeout_s=STEP_TIMEOUT_S, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- alertd log ---\n{daemon.text()[-4000:]}") from None


def _silent_daemon(
    tmp_path: Path,
    account: dict[str, Any],
    env: dict[str, str],
    http: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],
    reconcile_interval_s: float = 10,
) -> Daemon:
    """``alertd run`` on ``account`` with the default rules, bootstrapped, and silent (a
    healthy account sends nothing)."""
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    config = write_config(
        tmp_path,
        [account],  # no rules: the defaults
        feeds={
            "stale_after_s": 30,
            "reconcile_interval_s": reconcile_interval_s,
            "backoff": {"initial_s": 0.1, "max_s": 1},
        },
        receivers=[{"name": "hook", "url": http.url()}],
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    daemon = daemon_for(config, env)
    daemon.start()
    _await(daemon, lambda: "bootstrapped" in daemon.text(), "bootstrap")
    time.sleep(1.0)
    assert http.posts == [], http.titles()  # healthy: silence
    return daemon


def _escalate(
    daemon: Daemon, fake: Any, symbol: str, http: HttpReceiver, marks: list[Decimal]
) -> None:
    """Set each mark in turn; each must bring the next of ``EXPECTED``, nothing else."""
    for step, mark in enumerate(marks, start=1):
        fake.set_mark(symbol, mark)
        _await(
            daemon,
            lambda step=step: len(http.posts) >= step,  # type: ignore[misc]
            f"{EXPECTED[step - 1]} at mark {mark}",
        )
        assert _alerts(http) == EXPECTED[:step], http.titles()


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Callable[[Path, dict[str, str]], Daemon]]:
    daemons: list[Daemon] = []

    def make(config: Path, env: dict[str, str]) -> Daemon:
        daemon = Daemon(config, env, tmp_path / "alertd.log")
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.kill()


@pytest.mark.parametrize("exchange", sorted(MARKETS))
def test_default_rules_warn_escalate_and_resolve_once_each(
    exchange: str,
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    market = MARKETS[exchange]
    fake = fake_in_thread(exchange, mark_interval_s=0.3)
    entry = fake.mark(market.symbol)
    tick = fake.tick(market.symbol)
    wallet = (entry / 10).quantize(Decimal(1))  # one BTC at about 10x
    key = "0x" + "5e" * 20 if exchange == "hyperliquid" else "key-e2e"
    account, env = exchange_account(fake, "main", exchange, key, "secret-e2e")
    fake.add_account(key, "secret-e2e", wallet_balance=wallet)
    fake.open_position(key, market.symbol, "long", market.contracts, entry)
    daemon = _silent_daemon(tmp_path, account, env, http_receiver, daemon_for)
    marks = [
        _mark_at_ratio(ratio, wallet, entry, market).quantize(tick)
        for ratio in (Decimal("0.35"), Decimal("0.65"), Decimal("0.9"))
    ]
    _escalate(daemon, fake, market.symbol, http_receiver, marks)

    fake.set_mark(market.symbol, entry)
    _await(daemon, lambda: len(http_receiver.posts) >= 6, "three resolved messages")
    time.sleep(QUIET_S)
    alerts = _alerts(http_receiver)
    assert alerts[:3] == EXPECTED, http_receiver.titles()
    assert sorted(alerts[3:]) == sorted((rule, "resolved") for rule, _ in EXPECTED), alerts
    assert len(alerts) == 6, http_receiver.titles()

    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.text()
    assert "Traceback" not in log, log[-3000:]


def test_bybit_btc_collateral_falls_with_a_btc_long(
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """A Bybit unified cross account backed by BTC: 0.5 BTC of collateral (Bybit's tiered
    collateral value ratio: 95% of the first 0.2 BTC, 90% above; its index 0.1% under the
    mark), 2,000 USDT borrowed, a 0.3 BTC long at 60,000. No alert at bootstrap (the USDT
    wallet alone is negative: "liquidated"); as BTC falls, the coin falls with the long and
    the default rules fire at the marks that only a moving coin gives."""
    fake = fake_in_thread("bybit", mark_interval_s=0.3)
    btc = "BTC/USDT:USDT"
    fake.set_mark(btc, "60000")
    account, env = exchange_account(fake, "main", "bybit", "key-e2e", "secret-e2e")
    fake.add_account("key-e2e", "secret-e2e", wallet_balance="-2000")
    fake.set_collateral_tiers("BTC", [("0.2", "0.95"), (None, "0.9")])
    fake.set_collateral("key-e2e", "BTC", "0.5", "59940", None, follows=btc)
    fake.open_position("key-e2e", btc, "long", "0.3", "60000")
    # no reconcile during the test: alertd moves the coin with the marks itself; at
    # bootstrap the ratio is 0.35%: silence
    daemon = _silent_daemon(
        tmp_path, account, env, http_receiver, daemon_for, reconcile_interval_s=3600
    )
    # equity(p) = -2000 + (0.2 x 0.95 + 0.3 x 0.9) x 0.999 p + 0.3 (p - 60000), MM = 0.3 p
    # 0.5% (tier 1) + 8.91 (the fee to close at the bankruptcy price, 0.3 x 54,000 x 0.055%):
    # the ratio is r at p = (20000 r + 8.91) / (0.75954 r - 0.0015). Held at its value, the
    # coin would give 0.31% at each of these marks (26,514.9 to 26,402.7): no alert at all.
    marks = [
        ((20000 * r + Decimal("8.91")) / (Decimal("0.75954") * r - Decimal("0.0015"))).quantize(
            Decimal("0.1")
        )
        for r in (Decimal("0.35"), Decimal("0.65"), Decimal("0.9"))
    ]
    _escalate(daemon, fake, btc, http_receiver, marks)
    assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.text()


@pytest.mark.parametrize("usdc_usd", ["0.999", "0.99"])
def test_bybit_usdc_perpetual_in_the_unified_pool(
    usdc_usd: str,
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    http_receiver: HttpReceiver,
    daemon_for: Callable[[Path, dict[str, str]], Daemon],
) -> None:
    """A unified account holding a USDC perpetual (``BTCPERP``, settleCoin USDC) against its
    USDT wallet and 500 USDC, USDC's USD index at 0.999 and in a depeg at 0.99: one pool,
    computed by alertd, USDC's equity (its wallet and the long's PnL) and the long's MM on
    USDC's own line at its USD value, as the local Bybit computes its own figures. The
    default rules fire at the marks that value gives; at a mark where the ratio is 79.7%
    nothing more fires, where counting USDC at par (alertd before) gives 80% or more: a
    critical alert early."""
    fake = fake_in_thread("bybit", mark_interval_s=0.3)
    usdc = "BTC/USDC:USDC"
    fake.add_symbol(usdc, "60000")  # the local server's generic table: 1% in the first tier
    fake.set_usd_price("USDC", usdc_usd)
    market = Market(usdc, "1", Decimal("0.01"), Decimal("0.9") * Decimal("0.00055"))
    account, env = exchange_account(fake, "main", "bybit", "key-e2e", "secret-e2e")
    fake.add_account("key-e2e", "secret-e2e", wallet_balance="6000")
    fake.set_balance("key-e2e", "500", coin="USDC")
    fake.open_position("key-e2e", usdc, "long", "1", "60000")
    daemon = _silent_daemon(tmp_path, account, env, http_receiver, daemon_for)
    p, wallet, usdc_wallet, entry = Decimal(usdc_usd), Decimal(6000), Decimal(500), Decimal(60000)
    fixed = market.fixed * entry

    def ratio(mark: Decimal, rate: Decimal) -> Decimal:
        # MM / margin balance, in USDT: USDC's equity and the long's MM at ``rate`` USDT
        return rate * (market.rate * mark + fixed) / (wallet + rate * (usdc_wallet + mark - entry))

    def mark_at(r: Decimal) -> Decimal:
        # r (W + p (500 + P - e)) = p (rate P + fixed), solved for P
        mark = (p * fixed + r * (p * entry - wallet - p * usdc_wallet)) / (p * (r - market.rate))
        return mark.quantize(Decimal("0.01"))

    marks = [mark_at(Decimal(r)) for r in ("0.35", "0.65", "0.797", "0.9")]
    assert ratio(marks[2], p) < Decimal("0.8") <= ratio(marks[2], Decimal(1))
    _escalate(daemon, fake, usdc, http_receiver, marks[:2])
    fake.set_mark(usdc, marks[2])
    time.sleep(QUIET_S)  # a few mark pushes at 79.7%: nothing fires
    assert _alerts(http_receiver) == EXPECTED[:2], http_receiver.titles()
    fake.set_mark(usdc, marks[3])
    _await(daemon, lambda: len(http_receiver.posts) >= 3, f"critical at mark {marks[3]}")
    assert _alerts(http_receiver) == EXPECTED, http_receiver.titles()
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.text()
    assert "Traceback" not in log and "incomplete" not in log, log[-3000:]
