"""End to end, account modes (issue 11): the real ``alertd run`` process against the local
Binance. A multi-assets account gets Binance's own ratio (no false critical at bootstrap, the
ratio alerts at Binance's marks); a switch of mode is picked up without a restart; a drift from
Binance's figures and an account that stays incomplete each raise their warning and resolve."""

from __future__ import annotations

import json
from typing import Any

from .support.fixtures import BTC, started
from .support.poll import wait_for
from .support.process import alertd
from .test_ops import free_port, get

USDC_BTC = "BTC/USDC:USDC"
BINANCE = "Binance USDⓈ-M"


def _serve_status(world: dict[str, Any], **builtin: Any) -> str:
    """Rewrite the world's config: the endpoint on, a fast reconcile, ``builtin`` rule
    settings; returns the endpoint's base URL."""
    port = free_port()
    config = dict(world["config"])
    config["feeds"] = {**config["feeds"], "reconcile_interval_s": 1}
    config["http"] = {"enabled": True, "port": port}
    config["builtin_rules"] = builtin
    world["path"].write_text(json.dumps(config))
    return f"http://127.0.0.1:{port}"


def _account(base: str) -> dict[str, Any]:
    status, text = get(f"{base}/status")
    assert status == 200, text
    account: dict[str, Any] = json.loads(text)["accounts"][0]
    return account


def test_multi_assets_account_shows_binances_ratio_and_alerts_at_binances_marks(
    world: dict[str, Any],
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    # the real account: 3.73 USDT + 22 USDC, long 0.009 BTC at 67,445.9 (Binance
    # showed 9.25% and a liquidation price of 64,846.99); USDC counted at 1 USD
    fake.add_account("key-ma", "secret-ma", wallet_balance="3.73")
    fake.set_multi_assets("key-ma", True, {"USDC": ("22", "1")})
    fake.set_mark(BTC, "67350")
    fake.open_position("key-ma", BTC, "long", "0.009", "67445.9")
    daemon.env.update(E2E_KEY="key-ma", E2E_SECRET="secret-ma")
    base = _serve_status(world)
    started(daemon)

    # USDT alone: 2.4246 / (3.73 - 0.8631) = 84.6%, a false critical. Binance's: 9.75%.
    wait_for(lambda: any("does not compute" in t for t in http.titles()), what="mode warning")
    titles = http.titles()
    assert titles == [
        f"WARNING main: alertd does not compute {BINANCE} multi-assets "
        "(multiAssetsMargin true) accounts"
    ]
    body = http.posts[0]["message"]
    assert "assetIndex" in body and f"{BINANCE}'s own margin ratio: 9.75%" in body
    account = _account(base)
    assert account["mode"] == "multi-assets (multiAssetsMargin true)"
    status = alertd("status", "-c", str(world["path"]), env=daemon.env)
    assert status.returncode == 0, status.stderr
    assert "multi-assets" in status.stdout and "own)" in status.stdout  # "9.75% (...'s own)"
    snapshot = alertd("snapshot", "-c", str(world["path"]), env=daemon.env)
    assert snapshot.returncode == 0, snapshot.stderr
    text = " ".join(snapshot.stdout.split())  # rich wraps long lines
    assert "main: account mode multi-assets (multiAssetsMargin true)" in text
    assert f"warning: main: alertd does not compute {BINANCE} multi-assets" in text
    assert f"are not {BINANCE}'s; {BINANCE}'s own margin ratio: 9.75%" in text
    account = _account(base)
    assert account["coverage"] == "exchange's own ratio"
    assert account["margin_ratio_source"] == "exchange"
    assert account["margin_ratio"] == account["exchange_margin_ratio"]
    assert account["positions"] == []  # alertd's USDT-only figures are withheld

    # Binance's ratio: MM 2.34 / (25.73 - 22.0131) = 63.0% at 65,000: the warning (not critical)
    fake.set_mark(BTC, "65000")
    wait_for(lambda: len(http.posts) >= 2, what="ratio warning on Binance's ratio")
    assert http.titles()[1].startswith("WARNING main: worst ratio 63.0%")
    assert f"the ratio is {BINANCE}'s own" in http.posts[1]["message"]
    # and critical just above Binance's liquidation price (64,846.99): 82.9% at 64,900
    fake.set_mark(BTC, "64900")
    wait_for(lambda: len(http.posts) >= 3, what="critical on Binance's ratio")
    assert http.titles()[2].startswith("CRITICAL main: worst ratio 82.9%")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_a_switch_to_multi_assets_is_picked_up_without_a_restart(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    base = _serve_status(world)
    started(daemon)
    wait_for(lambda: _account(base)["mode"] is not None, what="mode read")
    account = _account(base)
    assert account["mode"] == "single-asset (multiAssetsMargin false)"
    assert account["coverage"] == "computed by alertd"
    assert account["margin_ratio_source"] == "alertd" and account["margin_ratio"] == "0.12"

    fake.set_multi_assets("key-e2e", True, {"USDC": ("1000", "0.9999")})
    wait_for(lambda: len(http.posts) >= 1, what="mode warning after the switch")
    assert http.titles()[0].startswith(f"WARNING main: alertd does not compute {BINANCE}")
    account = _account(base)
    assert account["mode"] == "multi-assets (multiAssetsMargin true)"
    assert account["margin_ratio_source"] == "exchange"

    fake.set_multi_assets("key-e2e", False)
    wait_for(lambda: len(http.posts) >= 2, what="resolved after switching back")
    assert http.titles()[1] == "RESOLVED main: alertd computes the account again"
    assert _account(base)["margin_ratio_source"] == "alertd"
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


def test_an_account_that_stays_incomplete_says_what_is_missing(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    fake.add_symbol(USDC_BTC, "60000")
    fake.set_asset_wallet("key-e2e", "USDC", "500")
    base = _serve_status(world, incomplete_data_for="2s")
    started(daemon)
    assert http.posts == []
    fake.open_position("key-e2e", USDC_BTC, "long", "0.1", "60000")  # a USDC-M position
    wait_for(lambda: len(http.posts) >= 1, what="incomplete-data warning")
    assert http.titles() == ["WARNING main: incomplete data"]
    body = http.posts[0]["message"]
    assert "BTC/USDC:USDC long: settles in USDC, a margin pool alertd does not compute" in body
    assert f"{BINANCE}'s own margin ratio stands in meanwhile: 12.00%" in body
    account = _account(base)
    assert account["incomplete"] and account["margin_ratio_source"] == "exchange"

    # the ratio rules keep watching Binance's ratio of the USDT pool meanwhile
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) >= 2, what="ratio warning while incomplete")
    assert http.titles()[1].startswith("WARNING main: worst ratio 6")

    fake.close_position("key-e2e", USDC_BTC)
    wait_for(lambda: "RESOLVED main: data complete again" in http.titles(), what="complete again")
    assert _account(base)["margin_ratio_source"] == "alertd"
    assert daemon.stop() == 0
