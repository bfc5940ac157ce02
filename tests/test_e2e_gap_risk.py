"""End to end (issue 15 item 4): the real ``alertd run`` against the local Binance, whose order
book is thin near the position's liquidation price: the built-in gap-risk warning names the
shortfall and the size to cut; the book refilled, it resolves. Only the held symbol's book is
fetched. A replay names the order-book rules it cannot replay."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from alertd.cli.replay import NO_BOOKS

from .support.configs import write_config
from .support.endpoint import free_port, get
from .support.fixtures import BTC, started
from .support.poll import wait_for
from .support.process import alertd

D = Decimal
STEP_S = 60.0

# 1 BTC long at 60,000 on 2,000 USDT cross, maintenance margin 0.4% of notional: liquidation
# where 2,000 + (P - 60,000) = 0.004 P, bankruptcy where 2,000 + (P - 60,000) = 0.
LIQ = D(58000) / D("0.996")
BANKRUPT = D(58000)
# a book around 60,000 (mid 60,000) that fills 1 BTC down to 59,000: shifted to the
# liquidation price it fills past the bankruptcy price
THIN_BIDS = [("59990", "0.2"), ("59700", "0.2"), ("59000", "0.6")]
ASKS = [("60010", "5")]
DEEP_BIDS = [("59990", "10")]


def expected_gap() -> tuple[Decimal, Decimal]:
    """The shortfall and the size that fits, by hand: every bid x LIQ / 60,000."""
    scale = LIQ / D(60000)
    levels = [(D(p) * scale, D(s)) for p, s in THIN_BIDS]
    shortfall = sum(s * (BANKRUPT - p) for p, s in levels)
    # PnL against the bankruptcy price: +, -, then the third level takes it below zero
    pnl = sum(s * (p - BANKRUPT) for p, s in levels[:2])
    fits = D("0.4") + pnl / (BANKRUPT - levels[2][0])
    return shortfall, fits


def test_a_thin_book_near_liquidation_warns_with_the_shortfall_and_resolves(
    world: dict[str, Any],
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    fake.set_order_book(BTC, THIN_BIDS, ASKS)
    fake.set_order_book("ETH/USDT:USDT", THIN_BIDS, ASKS)  # not held: never asked for
    feeds = {**config["feeds"], "stale_after_s": 30, "order_books": {"interval_s": 0.5}}
    builtin = {"gap_risk_for": 0}
    port = free_port()
    http_on = {"enabled": True, "port": port}
    path.write_text(
        json.dumps({**config, "feeds": feeds, "builtin_rules": builtin, "http": http_on})
    )
    started(daemon)

    wait_for(lambda: len(http.posts) >= 1, STEP_S, "the gap-risk warning")
    title, body = http.titles()[0], http.posts[0]["message"]
    shortfall, fits = expected_gap()
    found = re.fullmatch(
        r"WARNING main BTC/USDT:USDT long: gap risk: ([\d,.]+) past bankruptcy at liq\.",
        title,
    )
    assert found, title
    assert abs(D(found.group(1).replace(",", "")) - shortfall) < D("0.01"), (title, shortfall)
    assert "bankruptcy 58,000.00" in body, body
    # the size to cut, rounded up to Binance's 0.001 BTC lot
    cut = (1 - fits).quantize(D("0.001"), rounding="ROUND_CEILING")
    assert f"→ cut {cut} BTC/USDT:USDT to fit the book" in body, body
    assert "book too thin" not in body  # the book holds the whole size
    # alertd status (the endpoint's JSON, and the command's table) shows both figures
    code, text = get(f"http://127.0.0.1:{port}/status")
    assert code == 200, text
    position = json.loads(text)["accounts"][0]["positions"][0]
    assert abs(D(position["gap_risk"]) - shortfall) < D("1e-9"), position
    assert D(position["bankruptcy_buffer"]) == (LIQ - BANKRUPT) / D(60000)
    status = alertd("status", "-c", str(path), env={**daemon.env, "COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    assert "Gap risk" in status.stdout and f"{shortfall:,.2f}" in status.stdout, status.stdout

    fake.set_order_book(BTC, DEEP_BIDS, ASKS)
    wait_for(lambda: len(http.posts) >= 2, STEP_S, "resolved")
    assert http.titles()[1].startswith("RESOLVED main BTC/USDT:USDT long: gap risk gone")
    time.sleep(1.0)
    assert daemon.stop() == 0
    assert len(http.posts) == 2, http.titles()
    assert set(fake.book_requests) == {"BTCUSDT"}  # the held symbol's book only
    log = daemon.text()
    assert "Traceback" not in log


def test_replay_says_order_book_rules_do_not_apply_and_replays_the_buffer(tmp_path: Path) -> None:
    """A replay has prices, not order books: a gap-risk rule is named as not replayed (no
    silent "no alert"); the bankruptcy buffer is computed from prices alone, so it replays."""
    rules = [
        {"name": "gap", "metric": "gap_risk", "above": 0, "severity": "warning"},
        {"name": "thin-buffer", "metric": "bankruptcy_buffer", "below": 0.5, "severity": "info"},
    ]
    config = write_config(tmp_path, rules=rules)
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
    prices = tmp_path / "p.csv"
    prices.write_text("timestamp,price\n" + "".join(f"{t0 + i * 60_000},100\n" for i in range(3)))
    spec = "BTC/USDT:USDT long 1 @ 100 x10 cross"
    table = alertd("replay", str(prices), "--position", spec, "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert "rule gap: not replayed: it reads the exchange's order book" in table.stdout
    # 10 USDT on 1 BTC at 100: liq. 90/0.996, bankruptcy 90: a buffer of 0.36%, under 50%
    assert "thin-buffer" in table.stdout, table.stdout
    data = json.loads(
        alertd("replay", str(prices), "--position", spec, "--config", str(config), "--json").stdout
    )
    assert data["not_replayed"] == [{"rule": "gap", "why": NO_BOOKS}]
    assert [a["rule"] for a in data["alerts"]] == ["thin-buffer"]
