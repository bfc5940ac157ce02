"""End to end, account modes (issue 11): the real ``alertd run`` process against the local
Binance. A multi-assets account is computed by alertd (the real account of accounts.md as Binance
shows it, no false critical at bootstrap; a coin falling with a long crosses the thresholds at
the right marks); a switch of mode is picked up without a restart; a drift from
Binance's figures and an account that stays incomplete each raise their warning and resolve. A
portfolio margin account alerts on Binance's own uniMMR, labelled as Binance's."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from .fake_exchange.binance import CM_ACCOUNT_EXAMPLE, CM_POSITION_EXAMPLE
from .support.endpoint import computed_account, free_port, get, status_account
from .support.fixtures import BTC, ratio_alerts_at, started, stopped_cleanly
from .support.poll import wait_for
from .support.process import alertd

USDC_BTC = "BTC/USDC:USDC"
ETH = "ETH/USDT:USDT"
FDUSD_BTC = "BTC/FDUSD:FDUSD"
BINANCE = "Binance USDⓈ-M"


def _serve_status(world: dict[str, Any], reconcile_interval_s: float = 1, **builtin: Any) -> str:
    """Rewrite the world's config: the endpoint on, a fast reconcile (by default), ``builtin``
    rule settings; returns the endpoint's base URL."""
    port = free_port()
    config = dict(world["config"])
    config["feeds"] = {**config["feeds"], "reconcile_interval_s": reconcile_interval_s}
    config["http"] = {"enabled": True, "port": port}
    config["builtin_rules"] = builtin
    world["path"].write_text(json.dumps(config))
    return f"http://127.0.0.1:{port}"


def test_the_real_multi_assets_account_is_computed_as_binance_shows_it(
    world: dict[str, Any],
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # ../shared/design/accounts.md: 3.73 USDT + 22 USDC, long 0.009 BTC at 67,445.9; Binance
    # showed 9.25% and a liquidation price of 64,846.99 (USDT-only math: 57.30%, 67,300.70, a
    # false critical at bootstrap). USDC's index 0.99977 (no haircut); the mark at which the
    # USDT-only computation shows the 57.30% (tests/test_collateral.py)
    fake.add_account("key-ma", "secret-ma", wallet_balance="3.73")
    fake.set_asset_index("USDC", "0.99977", "0", "0")
    fake.set_multi_assets_coins("key-ma", {"USDC": "22"})
    fake.set_mark(BTC, "67502.68")
    fake.open_position("key-ma", BTC, "long", "0.009", "67445.9")
    daemon.env.update(E2E_KEY="key-ma", E2E_SECRET="secret-ma")
    base = _serve_status(world)
    started(daemon)

    account = wait_for(lambda: computed_account(base), what="alertd's own figures")
    assert account["mode"] == "multi-assets (multiAssetsMargin true)"
    assert account["coverage"] == "computed by alertd"
    # 2.43009648 / (3.73 + 22 x 0.99977 + 0.009 x (67,502.68 - 67,445.9)) = 9.26% (Binance's
    # 9.25% was read at a mark 0.006% higher), and Binance's own figure beside it agrees
    ratio = Decimal(account["margin_ratio"])
    assert round(ratio * 100, 2) == Decimal("9.26")
    wait_for(lambda: status_account(base)["exchange_margin_ratio"] is not None, what="Binance's")
    theirs = Decimal(status_account(base)["exchange_margin_ratio"])
    assert abs(ratio / theirs - 1) < Decimal("1e-6")
    (position,) = account["positions"]
    liq = Decimal(position["liquidation_price"])
    assert abs(liq / Decimal("64846.99") - 1) < Decimal("1e-6")
    snapshot = alertd("snapshot", "-c", str(world["path"]), env=daemon.env)
    assert snapshot.returncode == 0, snapshot.stderr
    text = " ".join(snapshot.stdout.split())  # rich wraps long lines
    assert "main: account mode multi-assets (multiAssetsMargin true)" in text
    assert "64,846.9" in text and "does not compute" not in text
    fake.set_mark(BTC, "67400")  # marks keep moving: still no alert on a healthy account
    wait_for(lambda: status_account(base)["positions"][0]["mark_price"] == "67400", what="mark")
    assert http.posts == []
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_collateral_and_position_falling_together_cross_at_the_right_marks(
    world: dict[str, Any],
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # 3.73 USDT, 10 USDC, 0.0002 BTC (haircut 5%) and a 0.009 BTC long: the BTC coin falls
    # with the long. No reconcile during the test: alertd moves the coin with the mark stream
    # itself (Binance's index, which follows the mark here, is not read again).
    fake.add_account("key-ma", "secret-ma", wallet_balance="3.73")
    fake.set_mark(BTC, "67502.68")
    fake.set_asset_index("USDC", "0.99977", "0", "0")
    fake.set_asset_index("BTC", "67480.1", "0.05", "0.05", follows=BTC)
    fake.set_multi_assets_coins("key-ma", {"USDC": "10", "BTC": "0.0002"})
    fake.open_position("key-ma", BTC, "long", "0.009", "67445.9")
    daemon.env.update(E2E_KEY="key-ma", E2E_SECRET="secret-ma")
    base = _serve_status(world, reconcile_interval_s=3600)
    started(daemon)
    wait_for(lambda: computed_account(base), what="alertd's own figures")

    # ratio = 0.009 m 0.004 / (3.73 + 10 x 0.99977 + 0.0002 x 67,480.1 (m / 67,502.68) 0.95
    #   + 0.009 (m - 67,445.9)). At 65,040: 52.9% (a coin held at its value: 47.8%, no alert)
    # at 64,850: 87.0% (a coin held at its value: 73.3%, not critical)
    ratio_alerts_at(fake, http, daemon, BTC, ("65040", "52.9%"), ("64850", "87.0%"))


def in_portfolio_margin(world: dict[str, Any]) -> None:
    """The world's account configured with ccxt's ``options.portfolioMargin``."""
    (account,) = world["config"]["accounts"]
    options = {**account["options"], "portfolioMargin": True}
    world["config"] = {**world["config"], "accounts": [{**account, "options": options}]}


def test_portfolio_margin_alerts_on_binance_s_uni_mmr_as_the_mark_falls(
    world: dict[str, Any],
) -> None:
    """A portfolio margin account (ccxt's options.portfolioMargin): alertd's ratio is Binance's
    uniMMR from /papi/v1/account (1.05 / uniMMR, 100% where Binance liquidates), labelled as
    Binance's in the status endpoint, ``alertd snapshot`` and the messages, and moved with the
    mark stream between reads (no reconcile during the test): the alerts fire at the marks
    where Binance's own next uniMMR crosses the thresholds."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # 2,000 USDT and 1 BTC long at 60,000 (MM 0.4%, no deduction), 100 USD of open-order loss
    # off the equity: uniMMR = (2,000 - 100) / 240 = 7.91666667, the ratio 1.05 / it = 13.26%
    fake.set_portfolio_margin("key-e2e", open_loss="100")
    fake.set_cm_positions("key-e2e", [CM_POSITION_EXAMPLE])  # a COIN-M long beside it
    # and Binance's maintenance margin of it, in BTC (GET /papi/v1/cm/account)
    held = CM_ACCOUNT_EXAMPLE["positions"][0] | {
        "positionAmt": "1", "positionSide": "LONG", "maintMargin": "0.00001697",
    }  # fmt: skip
    # no COIN-M wallet: the docs' example's 0.00241969 BTC would count in uniMMR (the local
    # Binance's too), off the figures above
    fake.set_cm_account("key-e2e", CM_ACCOUNT_EXAMPLE | {"positions": [held], "assets": []})
    fake.add_stop("key-e2e", BTC, "long", "59000", "0.5")  # a UM algo stop, half the long
    in_portfolio_margin(world)
    base = _serve_status(world, reconcile_interval_s=3600)
    started(daemon)

    shown = wait_for(
        lambda: (a := status_account(base))["margin_ratio_source"] == "exchange" and a,
        what="Binance's uniMMR as the account's ratio",
    )
    assert shown["mode"] == "portfolio margin (options.portfolioMargin)"
    assert shown["coverage"] == "exchange's own ratio"
    assert "Binance's own uniMMR" in shown["mode_limits"]
    uni = Decimal(fake.portfolio_account("key-e2e")["uniMMR"])
    assert uni == Decimal("7.91666667")
    assert abs(Decimal(shown["margin_ratio"]) * uni / Decimal("1.05") - 1) < Decimal("1e-9")
    # the position from /papi/v1/um/positionRisk: Binance's liquidation price, the distance to
    # it at the live mark, notional and PnL; no per-position ratio of alertd's; the COIN-M one
    # from /papi/v1/cm/positionRisk, every figure Binance's as the reconcile read it
    position, coin_m = shown["positions"]
    assert (coin_m["symbol"], coin_m["side"], coin_m["as_read"]) == ("BTCUSD_201225", "long", True)
    assert coin_m["liquidation_price"] == "6170.20509059" and position["as_read"] is False
    assert coin_m["liquidation_price_source"] == "exchange" and coin_m["margin_ratio"] is None
    assert (coin_m["maintenance_margin"], position["maintenance_margin"]) == ("0.00001697", None)
    (row,) = (r for r in fake.position_risk_papi("key-e2e") if Decimal(r["positionAmt"]))
    liq = Decimal(row["liquidationPrice"])
    # the UM stop (GET /papi/v1/um/algo/openAlgoOrders, read once the streams subscribe)
    # against Binance's liquidation price; the COIN-M long's (GET
    # /papi/v1/cm/conditional/openOrders, with its position): read, none
    stopped, coin_m = wait_for(
        lambda: (p := status_account(base)["positions"])[0]["stop_loss_price"] and p,
        what="the stops read",
    )
    assert (stopped["stop_loss_price"], stopped["stop_coverage"]) == ("59000", "0.5")
    assert Decimal(stopped["stop_beyond_liquidation"]) == (liq - 59000) / 60000
    assert coin_m["stop_loss_price"] is None and coin_m["stop_coverage"] == "0"
    assert Decimal(position["liquidation_price"]) == liq
    assert position["liquidation_price_source"] == "exchange"
    assert Decimal(position["liquidation_distance"]) == (60000 - liq) / 60000
    assert (position["notional"], position["unrealized_pnl"]) == ("60000", "0")
    assert position["margin_ratio"] is None
    # the account-mode warning names the mode and Binance's figure
    wait_for(lambda: len(http.posts) >= 1, what="the account-mode warning")
    assert http.titles()[0].startswith(
        f"WARNING main: alertd does not compute {BINANCE} portfolio margin"
    )
    assert "Binance's own uniMMR" in http.posts[0]["message"]
    assert f"{BINANCE}'s own margin ratio: 13.26%" in http.posts[0]["message"]
    snapshot = alertd("snapshot", "-c", str(world["path"]), env=daemon.env)
    assert snapshot.returncode == 0, snapshot.stderr
    text = " ".join(snapshot.stdout.split())
    assert "main: account mode portfolio margin (options.portfolioMargin)" in text
    assert f"{BINANCE}'s own margin ratio: 13.26%" in text and "uniMMR" in text
    status = alertd("status", "-c", str(world["path"]), env=daemon.env)
    assert status.returncode == 0, status.stderr
    text = " ".join(status.stdout.split())
    assert "13.26% (binanceusdm's own)" in text and "(exchange's)" in text, status.stdout
    assert "11,788.67 (as read)" in text, status.stdout  # the COIN-M position's mark

    # moved with the mark: requirement 1.05 x 240 m / 60,000, equity 1,900 + (m - 60,000);
    # Binance's uniMMR there: at 58,580 480 / 234.32 = 2.0485 (51.3%), at 58,400 300 /
    # 233.6 = 1.2842 (81.8%)
    ratio_alerts_at(fake, http, daemon, BTC, ("58580", "51.3%"), ("58400", "81.8%"), posts_before=1)
    assert Decimal(fake.portfolio_account("key-e2e")["uniMMR"]) == Decimal("1.28424658")
    for post in http.posts[1:]:
        assert f"the ratio is {BINANCE}'s own" in post["message"], post["message"]
        assert "uniMMR" in post["message"]


def test_portfolio_margin_stop_beyond_binance_s_liquidation_price_fires_and_resolves(
    world: dict[str, Any],
) -> None:
    """Issue 11: a portfolio margin account's UM stop beyond Binance's own liquidation price
    (alertd computes none of its own there) fires the built-in ``stop-beyond-liquidation``,
    the message naming the price as the exchange's; moving the stop between that price and
    the mark resolves it. The stops are read at each reconcile (every second here)."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    fake.set_portfolio_margin("key-e2e", open_loss="100")
    far = fake.add_stop("key-e2e", BTC, "long", "50000")  # the whole 1 BTC long
    in_portfolio_margin(world)
    base = _serve_status(world, reconcile_interval_s=1)
    started(daemon)
    (row,) = (r for r in fake.position_risk_papi("key-e2e") if Decimal(r["positionAmt"]))
    liq = Decimal(row["liquidationPrice"])
    assert 50000 < liq < 60000, liq

    def beyond() -> list[dict[str, Any]]:
        return [p for p in http.posts if "is beyond liq" in p["title"]]

    wait_for(lambda: beyond(), what="stop-beyond-liquidation on Binance's liquidation price")
    (post,) = beyond()
    assert post["title"] == (
        f"WARNING main {BTC} long: stop 50,000.00 is beyond liq {liq:,.2f} (exchange's)"
    )
    body = post["message"]
    assert f"liquidation comes {liq - 50000:,.2f}" in body and "can never trigger" in body
    assert f"the liquidation price is {BINANCE}'s own" in body, body
    assert body.endswith(f"→ move the stop above {liq:,.2f}"), body
    shown = status_account(base)["positions"][0]
    assert Decimal(shown["stop_beyond_liquidation"]) == (liq - 50000) / 60000

    # the trader moves the stop: a new one between the liquidation price and the mark, then
    # the far one cancelled
    fake.add_stop("key-e2e", BTC, "long", "59500")
    fake.cancel_stop("key-e2e", far)
    wait_for(lambda: any(t.startswith("RESOLVED") for t in http.titles()), what="the stop moved")
    resolved = [p for p in http.posts if p["title"].startswith("RESOLVED")]
    assert [p["title"] for p in resolved] == [
        f"RESOLVED main {BTC} long: stop now fires before liquidation"
    ]
    assert f"stop 59,500.00, liq {liq:,.2f} (exchange's)" in resolved[0]["message"]
    assert len(beyond()) == 1  # fired once, no second firing
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_a_switch_to_multi_assets_is_picked_up_without_a_restart(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    base = _serve_status(world)
    started(daemon)
    wait_for(lambda: status_account(base)["mode"] is not None, what="mode read")
    account = status_account(base)
    assert account["mode"] == "single-asset (multiAssetsMargin false)"
    assert account["coverage"] == "computed by alertd"
    assert account["margin_ratio_source"] == "alertd" and account["margin_ratio"] == "0.12"

    # 1,000 USDC at 0.9999 joins the pool: MM 240 / (2,000 + 999.9) = 8.0003%
    fake.set_multi_assets("key-e2e", True, {"USDC": ("1000", "0.9999")})
    wait_for(
        lambda: status_account(base)["mode"] == "multi-assets (multiAssetsMargin true)",
        what="the switch",
    )
    account = wait_for(lambda: computed_account(base), what="computed after the switch")
    assert account["coverage"] == "computed by alertd"
    assert Decimal(account["margin_ratio"]) == Decimal(240) / Decimal("2999.9")

    fake.set_multi_assets("key-e2e", False)
    wait_for(lambda: status_account(base)["margin_ratio"] == "0.12", what="single-asset again")
    assert status_account(base)["mode"] == "single-asset (multiAssetsMargin false)"
    assert http.posts == []  # computed throughout: no mode warning, no ratio alert
    assert daemon.stop() == 0


def test_drift_from_binances_ratio_raises_a_warning_naming_both(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    _serve_status(world, ratio_drift_for="3s")
    started(daemon)
    # Binance starts counting 50% more maintenance margin than alertd knows of
    fake.set_reported_mm_factor("key-e2e", "1.5")
    wait_for(lambda: len(http.posts) >= 1, what="drift warning")
    assert http.titles() == [
        f"WARNING main: alertd's margin ratio differs from {BINANCE}'s by 33.3%"
    ]
    body = http.posts[0]["message"]
    assert f"alertd 12.00%, {BINANCE} 18.00%" in body and "check alertd's numbers" in body
    fake.set_reported_mm_factor("key-e2e", "1")
    wait_for(lambda: len(http.posts) >= 2, what="drift resolved")
    assert http.titles()[1] == f"RESOLVED main: alertd's margin ratio agrees with {BINANCE}'s again"
    assert daemon.stop() == 0


def test_the_usdc_pool_falls_alone_and_its_alerts_fire_at_the_right_marks(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """Single-asset mode with a USDT and a USDC pool: the world's USDT pool (2,000 USDT, 1 BTC
    long at 60,000: 12%) and a USDC pool of 500 USDC holding 0.1 BTCUSDC long at 60,000. The
    USDC perpetual falls alone: its pool crosses the thresholds at the marks its own wallet
    sets, the USDT pool's figures do not move; a USDC deposit (an ACCOUNT_UPDATE of the USDC
    row, no reconcile) resolves them. ``alertd snapshot`` + ``alertd calc`` reproduce the
    local Binance's liquidation prices of both pools."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    fake.add_symbol(USDC_BTC, "60000")
    fake.set_asset_wallet("key-e2e", "USDC", "500")
    fake.open_position("key-e2e", USDC_BTC, "long", "0.1", "60000")
    base = _serve_status(world, reconcile_interval_s=3600)
    started(daemon)
    account = wait_for(lambda: computed_account(base), what="alertd's own figures")
    assert account["coverage"] == "computed by alertd" and not account["incomplete"]
    # each pool in status: USDT 240 / 2,000; USDC (6,000 x 1% - 25) / 500
    pools = [(p["asset"], Decimal(p["margin_ratio"])) for p in account["pools"]]
    assert pools == [("USDT", Decimal("0.12")), ("USDC", Decimal("0.07"))]
    usdt_before = _position(account, BTC)

    # snapshot + calc: each pool's liquidation price as the local Binance solves it
    snapshot = alertd("snapshot", "--json", "-c", str(world["path"]), env=daemon.env)
    assert snapshot.returncode == 0, snapshot.stderr
    saved = json.loads(snapshot.stdout)
    assert saved["pools"] == [{"asset": "USDC", "wallet_balance": "500", "collateral": []}]
    assert {p["symbol"]: p.get("pool") for p in saved["positions"]} == {
        BTC: None,
        USDC_BTC: "USDC",
    }
    path = tmp_path / "snap.json"
    path.write_text(snapshot.stdout)
    # the screen: each pool's figures, and each beside Binance's own row of its asset
    screen = alertd("snapshot", "-c", str(world["path"]), env=daemon.env)
    assert screen.returncode == 0, screen.stderr
    text = " ".join(screen.stdout.replace("│", " ").split())  # rich wraps long lines
    assert "main · Binance USDⓈ-M · USDT" in text and "main · Binance USDⓈ-M · USDC" in text
    assert "USDC pool: Margin ratio (MM / balance) 7.00% 7.00%" in text
    assert "USDT pool: Margin ratio (MM / balance) 12.00% 12.00%" in text
    calc = alertd("calc", "--json", str(path))
    assert calc.returncode == 0, calc.stderr
    out = json.loads(calc.stdout)
    ours = {
        p["symbol"]: Decimal(p["liquidation_price"])
        for pool in (out, *out["pools"])
        for p in pool["positions"]
    }
    theirs = {
        row["symbol"]: Decimal(row["liquidationPrice"]) for row in fake.position_risk_v3("key-e2e")
    }
    assert set(ours) == {BTC, USDC_BTC} and set(theirs) == {"BTCUSDT", "BTCUSDC"}
    for symbol, market_id in ((BTC, "BTCUSDT"), (USDC_BTC, "BTCUSDC")):
        assert abs(ours[symbol] / theirs[market_id] - 1) < Decimal("1e-4"), symbol
    assert out["pools"][0]["account"]["settle"] == "USDC"

    # the USDC pool: MM 0.1 m 1% - 25 (its second bracket), balance 500 + 0.1 (m - 60,000);
    # ratio 43.9% at 55,700, 51.0% at 55,600, 79.9% at 55,380, 82.1% at 55,370
    fake.set_mark(USDC_BTC, "55700")
    wait_for(
        lambda: _position(status_account(base), USDC_BTC)["mark_price"] == "55700", what="mark"
    )
    assert http.posts == []
    fake.set_mark(USDC_BTC, "55600")
    wait_for(lambda: len(http.posts) >= 1, what="ratio warning")
    assert http.titles() == ["WARNING main: worst ratio 51.0%"]
    body = http.posts[0]["message"]
    assert "above 50.0% (ratio-warning) · USDC pool" in body
    action = body.splitlines()[-1]
    assert action.startswith("→ add ") and " USDC " in action and "USDT" not in action
    fake.set_mark(USDC_BTC, "55380")
    wait_for(
        lambda: _position(status_account(base), USDC_BTC)["mark_price"] == "55380", what="mark"
    )
    assert len(http.posts) == 1  # 79.9%: not critical yet
    fake.set_mark(USDC_BTC, "55370")
    wait_for(lambda: len(http.posts) >= 2, what="ratio critical")
    assert http.titles()[1] == "CRITICAL main: worst ratio 82.1%"
    # the USDT pool did not move: its position's figures are as at the start
    now = status_account(base)
    figures = ("mark_price", "liquidation_price", "liquidation_distance", "margin_ratio")
    assert [_position(now, BTC)[f] for f in figures] == [usdt_before[f] for f in figures]
    assert Decimal(_position(now, USDC_BTC)["margin_ratio"]) > Decimal("0.8")

    # 1,000 USDC deposited: the USDC row of the push (no reconcile) resolves both alerts;
    # the USDC pool at 2.9%, the worst ratio is the USDT pool's 12% again
    fake.set_asset_wallet("key-e2e", "USDC", "1500")
    wait_for(lambda: len(http.posts) >= 4, what="resolved by the deposit")
    assert http.titles()[2:] == ["RESOLVED main: worst ratio 12.0%"] * 2
    assert Decimal(_position(status_account(base), USDC_BTC)["margin_ratio"]) < Decimal("0.03")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def _usdc_mark(base: str) -> str:
    return str(_position(status_account(base), USDC_BTC)["mark_price"])


def _position(account: dict[str, Any], symbol: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in account["positions"] if p["symbol"] == symbol)
    return found


def test_an_account_that_stays_incomplete_says_what_is_missing(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # a position whose leverage brackets Binance does not serve: no tier table for it
    fake.withhold_brackets(ETH)
    base = _serve_status(world, incomplete_data_for="2s")
    started(daemon)
    assert http.posts == []
    fake.open_position("key-e2e", ETH, "long", "0.01", "3400")  # 34 of notional, MM 0.17
    wait_for(lambda: len(http.posts) >= 1, what="incomplete-data warning")
    assert http.titles() == ["WARNING main: incomplete data"]
    body = http.posts[0]["message"]
    assert "ETH/USDT:USDT long: no tier table" in body
    # Binance's ratio: (240 + 0.17) / 2,000
    assert f"{BINANCE}'s own margin ratio stands in meanwhile: 12.01%" in body
    account = status_account(base)
    assert account["incomplete"] and account["margin_ratio_source"] == "exchange"

    # the ratio rules keep watching Binance's ratio of the USDT pool meanwhile
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) >= 2, what="ratio warning while incomplete")
    assert http.titles()[1].startswith("WARNING main: worst ratio 6")

    fake.close_position("key-e2e", ETH)
    wait_for(lambda: "RESOLVED main: data complete again" in http.titles(), what="complete again")
    assert status_account(base)["margin_ratio_source"] == "alertd"
    assert daemon.stop() == 0


def test_a_third_margin_asset_is_its_own_pool_in_status_metrics_and_drift(
    world: dict[str, Any],
) -> None:
    """Single-asset mode with an FDUSD-M perpetual beside the world's USDT pool (2,000 USDT,
    1 BTC long at 60,000: 12%): 500 FDUSD holding 0.1 BTCFDUSD long at 60,000 is a pool of
    its own (MM 6,000 x 1% - 25 = 35: 7%). ``/status`` and ``alertd status`` list both pools,
    ``/metrics`` has each pool's money figures labelled with its asset, and a drift in the
    FDUSD pool alone (Binance's FDUSD row counting 50% more MM) is named by its pool."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    fake.add_symbol(FDUSD_BTC, "60000")
    fake.set_asset_wallet("key-e2e", "FDUSD", "500")
    fake.open_position("key-e2e", FDUSD_BTC, "long", "0.1", "60000")
    base = _serve_status(world, ratio_drift_for="3s")
    started(daemon)
    account = wait_for(lambda: computed_account(base), what="alertd's own figures")
    assert account["coverage"] == "computed by alertd" and not account["incomplete"]
    pools = [(p["asset"], Decimal(p["margin_ratio"])) for p in account["pools"]]
    assert pools == [("USDT", Decimal("0.12")), ("FDUSD", Decimal("0.07"))]
    assert account["settle"] == "USDT"  # the riskiest pool's figures are the account's

    code, metrics = get(f"{base}/metrics")
    assert code == 200
    for line in (
        'alertd_buffer{account="main",settle="USDT"} 1760.0',
        'alertd_buffer{account="main",settle="FDUSD"} 465.0',
        'alertd_maintenance_margin{account="main",settle="FDUSD"} 35.0',
        'alertd_margin_balance{account="main",settle="FDUSD"} 500.0',
    ):
        assert line in metrics, metrics

    table = alertd("status", "-c", str(world["path"]), env={**daemon.env, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.replace("┃", " ").replace("│", " ").split())
    assert "Margin pools" in text
    assert "main USDT 12.00% 1,760" in text and "main FDUSD 7.00% 465" in text, text

    # Binance's FDUSD row counts 52.5 of MM where alertd knows of 35: that pool is named
    fake.set_reported_mm_factor("key-e2e", "1.5", asset="FDUSD")
    wait_for(lambda: len(http.posts) >= 1, what="drift warning")
    assert http.titles() == [
        f"WARNING main: alertd's FDUSD pool margin ratio differs from {BINANCE}'s by 33.3%"
    ]
    assert f"FDUSD pool: alertd 7.00%, {BINANCE} 10.50%" in http.posts[0]["message"]
    fake.set_reported_mm_factor("key-e2e", "1", asset="FDUSD")
    wait_for(lambda: len(http.posts) >= 2, what="drift resolved")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_portfolio_margin_alerts_as_a_coin_m_leg_falls_between_reconciles(
    world: dict[str, Any],
) -> None:
    """Issue 11: a portfolio margin account's COIN-M long (300 BTCUSD_PERP contracts of 100
    USD at 60,000) beside the UM long: `alertd run` follows its mark on the COIN-M mark
    stream (no reconcile during the test), its PnL moves Binance's uniMMR, and the alerts
    fire where Binance's own next uniMMR crosses the thresholds; ``/status`` shows it at the
    live COIN-M mark, named by the COIN-M catalogue."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # 2,000 USDT, the UM long 1 BTC at 60,000 (MM 240), 100 USD open-order loss; the COIN-M
    # long's MM 0.4% of 30,000 USD (120): uniMMR = 1,900 / 360 = 5.2778, the ratio 19.89%
    fake.set_portfolio_margin("key-e2e", open_loss="100")
    fake.set_cm_mark("BTCUSD_PERP", "60000")
    fake.open_cm_position("key-e2e", "BTCUSD_PERP", "300", "60000", "45000")
    in_portfolio_margin(world)
    base = _serve_status(world, reconcile_interval_s=3600)
    started(daemon)
    shown = wait_for(
        lambda: len((a := status_account(base))["positions"]) == 2 and a,
        what="the UM and COIN-M positions",
    )
    coin_m = shown["positions"][1]
    assert (coin_m["symbol"], coin_m["side"], coin_m["as_read"]) == ("BTC/USD:BTC", "long", False)
    assert coin_m["liquidation_price"] == "45000"
    wait_for(lambda: len(http.posts) >= 1, what="the account-mode warning")
    # the COIN-M mark alone falls (the UM one stays at 60,000): equity 1,900 + 30,000 (m /
    # 60,000 - 1), requirement 1.05 x 360: at 57,700 750 (Binance's uniMMR 2.0833, 50.4%),
    # at 57,100 450 (1.25, 84.0%)
    for n, (mark, severity, ratio) in enumerate(
        (("57700", "WARNING", "50.4%"), ("57100", "CRITICAL", "84.0%")), start=1
    ):
        fake.set_cm_mark("BTCUSD_PERP", mark)
        wait_for(lambda n=n: len(http.posts) > n, what=f"{severity} at the COIN-M mark {mark}")
        title = http.titles()[n]
        assert title.startswith(f"{severity} main: worst ratio {ratio}"), http.titles()
        theirs = Decimal("1.05") / Decimal(fake.portfolio_account("key-e2e")["uniMMR"])
        assert f"{theirs:.1%}" == ratio
    coin_m = wait_for(
        lambda: (p := status_account(base)["positions"][1])["mark_price"] == "57100" and p,
        what="the COIN-M mark in /status",
    )
    (row,) = fake.cm_position_risk("key-e2e")
    assert Decimal(coin_m["unrealized_pnl"]).quantize(Decimal("1e-8")) == Decimal(
        row["unRealizedProfit"]
    )
    assert Decimal(coin_m["liquidation_distance"]) == (Decimal(57100) - 45000) / 57100
    # its PnL in USD at the coin's mark: 30,000 (57,100 / 60,000 - 1) = -1,450 (to Decimal's
    # 28 digits: 1 / 57,100 does not end)
    assert Decimal(coin_m["unrealized_pnl_usd"]).quantize(Decimal("1e-8")) == -1450
    stopped_cleanly(daemon)
