"""End to end, ``/metrics`` (issue 15): the real ``alertd run`` against the local Binance, an
account with two positions, a stop on one, an ADL rank, a thin order book and the insurance
fund watched. Every figure ``alertd status`` shows for them is on ``/metrics`` with the same
value, under the registry's gauge name and the endpoint's labels; the gauges are the registry's
published metrics, so a metric added there appears without touching the endpoint."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from alertd.rules.metrics import POSITION_METRICS, PUBLISHED
from alertd.rules.model import Scope

from .support.endpoint import free_port, get
from .support.fixtures import BTC, started
from .support.poll import wait_for
from .support.process import alertd
from .test_e2e_gap_risk import ASKS, THIN_BIDS

D = Decimal
ETH = "ETH/USDT:USDT"
STEP_S = 60.0

# status JSON key -> the registry metric shown under it
ACCOUNT_FIGURES = {
    "margin_ratio": "worst_ratio",
    "buffer": "buffer",
    "effective_leverage": "effective_leverage",
    "concentration": "concentration",
    "margin_concentration": "margin_concentration",
}
POSITION_FIGURES = {
    "liquidation_distance": "liquidation_distance",
    "margin_ratio": "margin_ratio",
    "stop_loss_price": "stop_loss_price",
    "stop_coverage": "stop_coverage",
    "stop_beyond_liquidation": "stop_beyond_liquidation",
    "adl_rank": "adl_rank",
    "bankruptcy_buffer": "bankruptcy_buffer",
    "gap_risk": "gap_risk",
    "close_slippage": "close_slippage",
}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def status_of(path: Any, env: dict[str, str]) -> dict[str, Any]:
    shown = alertd("status", "-c", str(path), "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def gauge(metric: str, scope: Scope) -> str:
    (found,) = [m for m in PUBLISHED[scope] if m.name == metric]
    return found.gauge_name


def test_metrics_shows_every_issue_15_figure_as_status_does(world: dict[str, Any]) -> None:
    fake, daemon, path, config = world["fake"], world["daemon"], world["path"], world["config"]
    fake.set_mark(ETH, "3000")
    fake.open_position("key-e2e", ETH, "long", "2", "3000")
    stop = fake.add_stop("key-e2e", BTC, "long", "59000")
    assert stop
    fake.set_adl(BTC, 3)
    fake.set_order_book(BTC, THIN_BIDS, ASKS)
    fake.set_order_book(ETH, [("2999", "50")], [("3001", "50")])
    fake.set_insurance_fund(BTC, "1250000.5")
    port = free_port()
    builtin = {"insurance_fund": True, "insurance_fund_interval": 0.5}
    feeds = {**config["feeds"], "order_books": {"interval_s": 0.5}}
    settings = {"feeds": feeds, "builtin_rules": builtin, "http": {"enabled": True, "port": port}}
    path.write_text(json.dumps({**config, **settings}))
    started(daemon)

    def complete() -> dict[str, Any] | None:
        code, text = get(f"http://127.0.0.1:{port}/status")
        if code != 200:
            return None
        (account,) = json.loads(text)["accounts"]
        positions = account["positions"]
        ready = len(positions) == 2 and all(
            p["gap_risk"] is not None and p["stop_coverage"] is not None for p in positions
        )
        return account if ready else None

    wait_for(lambda: complete() is not None, STEP_S, "both positions with books and stops")

    def funds_read() -> bool:
        names = [name for name, _ in scrape(port)]
        # a fall from the high needs two reads of the fund behind each held symbol
        return names.count("alertd_position_insurance_fund_drop") == 2 and (
            names.count("alertd_insurance_fund_balance") == 2
        )

    wait_for(funds_read, STEP_S, "the insurance funds read")
    # the marks are pushed unchanged and the books are fixed: the figures stand still, so a
    # scrape and a status taken one after the other show the same ones
    samples = scrape(port)
    (account,) = status_of(path, daemon.env)["accounts"]

    def value(metric: str, scope: Scope, **labels: str) -> float | None:
        key = tuple(sorted({"account": "main", **labels}.items()))
        return samples.get((gauge(metric, scope), key))

    def same(shown: str | None, scraped: float | None, what: str) -> None:
        if shown is None:
            assert scraped is None, (what, scraped)
        else:
            assert scraped is not None, (what, shown)
            assert scraped == float(D(shown)) or math.isclose(scraped, float(D(shown))), (
                what,
                shown,
                scraped,
            )

    for key, metric in ACCOUNT_FIGURES.items():
        extra = {"settle": "USDT"} if metric == "buffer" else {}
        same(account[key], value(metric, Scope.ACCOUNT, **extra), key)
    assert account["concentration"] is not None and account["effective_leverage"] is not None
    by_symbol = {p["symbol"]: p for p in account["positions"]}
    for symbol, shown in by_symbol.items():
        labels = {"symbol": symbol, "side": "long"}
        for key, metric in POSITION_FIGURES.items():
            same(shown[key], value(metric, Scope.POSITION, **labels), f"{symbol} {key}")
        missing = D(0) if D(shown["stop_coverage"]) > 0 else D(1)
        assert value("stop_missing", Scope.POSITION, **labels) == float(missing)
        # each held symbol's fund is read (unchanged: no drop)
        assert value("insurance_fund_drop", Scope.POSITION, **labels) == 0.0

    btc, eth = by_symbol[BTC], by_symbol[ETH]
    # the figures themselves, by hand: the stop at 59,000 covers the whole BTC position, ETH
    # has none; Binance's ADL quantile 3 of 0-4; the thin book's shortfall
    assert D(btc["stop_loss_price"]) == 59000 and D(btc["stop_coverage"]) == 1
    assert eth["stop_loss_price"] is None and D(eth["stop_coverage"]) == 0
    assert D(btc["adl_rank"]) == D("0.75")
    # the thin book's deepest bid, moved to BTC's liquidation price, fills below bankruptcy
    assert D(btc["gap_risk"]) > 0 and D(btc["close_slippage"]) > 0
    assert D(eth["gap_risk"]) == 0 and D(eth["close_slippage"]) > 0
    notional = {BTC: D(60000), ETH: D(6000)}
    share = notional[BTC] / sum(notional.values())
    assert abs(D(account["concentration"]) - share) < D("1e-20")
    fund = ("alertd_insurance_fund_balance", (("exchange", "binanceusdm"), ("symbol", BTC)))
    assert samples[fund] == 1250000.5
    # every published position metric with a value in the figures is a gauge
    assert {n for n, _ in samples} >= {
        POSITION_METRICS[m].gauge_name for m in POSITION_FIGURES.values()
    }
    assert "Traceback" not in daemon.text()
