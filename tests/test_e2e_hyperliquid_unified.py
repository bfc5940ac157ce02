"""End to end, Hyperliquid's unified account and portfolio margin (issue 11): the real
``alertd snapshot``, ``alertd calc`` and ``alertd run`` processes against the local Hyperliquid,
which serves a unified account as Hyperliquid documents it ("Trading / Account abstraction
modes": one USDC balance in the spot clearinghouse state backs the cross positions; the
perpetuals state holds none) and figures ``liquidationPx`` on that balance
(tests/fake_exchange/hyperliquid.py). alertd reproduces Hyperliquid's liquidation prices and its
"Unified Account Ratio" (``crossMaintenanceMarginUsed / (spot total - isolated marginUsed)``);
a long losing its PnL out of the spot balance crosses the thresholds at the right marks; no
alert at bootstrap (the perpetuals state alone, which holds no USDC, would read as liquidated).
Portfolio margin shows Hyperliquid's own ``portfolioMarginRatio``, labelled."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.support.fakes import ccxt_client
from tests.support.fixtures import (
    exchange_ratio,
    liquidations_agree,
    ratio_alerts_at,
    reconciling_every,
    snapshot_then_calc,
    started_computed,
    status_world_fixture,
    stopped_cleanly,
)
from tests.support.poll import wait_for

from .support.endpoint import computed_account, status_account

D = Decimal
BTC, ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"
USER = "0x" + "7c" * 20
UNIFIED = "unified account (userAbstraction unifiedAccount)"


# The local Hyperliquid with one unified account (``main``, 600 USDC in the spot state)
# and a daemon for it (``status_world``).
hl_world = status_world_fixture(
    "hyperliquid", (USER, ""), "600", lambda fake: fake.set_abstraction(USER, "unifiedAccount")
)


async def _hyperliquid_figures(fake: Any) -> tuple[dict[str, Decimal], Decimal]:
    """Hyperliquid's own liquidation price of each position and its Unified Account Ratio,
    as its docs compute it from ``clearinghouseState`` and ``spotClearinghouseState``."""
    async with ccxt_client(fake, "hyperliquid", walletAddress=USER) as client:
        state = await client.publicPostInfo({"type": "clearinghouseState", "user": USER})
        spot = await client.publicPostInfo({"type": "spotClearinghouseState", "user": USER})
    rows = [r["position"] for r in state["assetPositions"]]
    liquidations = {f"{p['coin']}/USDC:USDC": D(p["liquidationPx"]) for p in rows}
    (usdc,) = (b for b in spot["balances"] if b["token"] == 0)
    isolated = sum(D(p["marginUsed"]) for p in rows if p["leverage"]["type"] == "isolated")
    ratio = D(state["crossMaintenanceMarginUsed"]) / (D(usdc["total"]) - isolated)
    return liquidations, ratio


def test_snapshot_and_calc_reproduce_hyperliquid_s_unified_ratio_and_liquidation_prices(
    hl_world: dict[str, Any],
) -> None:
    fake = hl_world["fake"]
    # a cross BTC long at 20x and an isolated ETH short on 600 USDC of its own margin: the
    # spot total holds both; the cross pool is the total less the short's equity
    fake.set_mark(BTC, "59000")
    fake.set_mark(ETH, "3000")
    fake.open_position(USER, BTC, "long", "0.2", "60000")
    fake.open_position(
        USER, ETH, "short", "2", "3100", margin_mode="isolated", isolated_margin="600"
    )
    _, result = snapshot_then_calc(hl_world, UNIFIED)
    liquidations, ratio = asyncio.run(_hyperliquid_figures(fake))
    liquidations_agree(result["positions"], liquidations, [BTC, ETH], D("1e-6"))
    # MM 0.2 x 59,000 x 1.25% = 147.5 over 600 - 200 of the long's PnL
    assert ratio == D("147.5") / 400
    assert abs(D(result["account"]["margin_ratio"]) / ratio - 1) < D("1e-9")


def test_a_long_losing_the_spot_balance_crosses_at_the_right_marks(
    hl_world: dict[str, Any],
) -> None:
    fake, http, daemon = (hl_world[k] for k in ("fake", "http", "daemon"))
    # 600 USDC and a 0.2 BTC long at 60,000 (40x table: MM 1.25% of the notional):
    #   ratio(m) = 0.0025 m / (600 + 0.2 (m - 60,000)) = 0.0025 m / (0.2 m - 11,400)
    # 0.25 at 60,000: no alert (the perpetuals state alone holds no USDC: read as a standard
    # account, its wallet is 0 and the account liquidated)
    fake.set_mark(BTC, "60000")
    fake.open_position(USER, BTC, "long", "0.2", "60000")
    account = started_computed(hl_world, UNIFIED)
    assert D(account["margin_ratio"]) == D("0.25")
    assert exchange_ratio(hl_world["base"]) == D("0.25")
    # at the liquidation price the ratio is 1: 11,400 / 0.1975 = 57,721.52 (Hyperliquid's)
    liquidations, _ = asyncio.run(_hyperliquid_figures(fake))
    ours = liquidations_agree(account["positions"], liquidations, [BTC], D("1e-6"))
    assert abs(ours[BTC] - D(11400) / D("0.1975")) < D("0.01")

    # at 58,400: 146 / 280 = 52.1%
    # at 57,880: 144.7 / 176 = 82.2%
    ratio_alerts_at(fake, http, daemon, BTC, ("58400", "52.1%"), ("57880", "82.2%"))


def test_a_switch_to_portfolio_margin_shows_hyperliquid_s_own_ratio_without_a_restart(
    hl_world: dict[str, Any],
) -> None:
    fake, http, daemon, base = (hl_world[k] for k in ("fake", "http", "daemon", "base"))
    reconciling_every(hl_world, 1)
    fake.set_mark(BTC, "60000")
    fake.open_position(USER, BTC, "long", "0.2", "60000")
    started_computed(hl_world, UNIFIED)

    # portfolio margin: Hyperliquid reports portfolioMarginRatio, liquidatable above 0.95;
    # alertd's ratio (1 at liquidation) is it over 0.95, labelled as Hyperliquid's
    fake.set_portfolio_margin_ratio(USER, "0.19")
    fake.set_abstraction(USER, "portfolioMargin")

    def portfolio_ratio() -> dict[str, Any] | None:
        account = status_account(base)
        shown = account["margin_ratio_source"] == "exchange" and account["margin_ratio"]
        return account if shown and D(account["margin_ratio"]) == D("0.2") else None

    account = wait_for(portfolio_ratio, what="Hyperliquid's portfolio margin ratio")
    assert account["mode"] == "portfolio margin (userAbstraction portfolioMargin)"
    assert account["coverage"] == "exchange's own ratio"
    # the account-mode warning says what alertd does not compute, and names the figure shown
    wait_for(lambda: len(http.posts) >= 1, what="the account-mode warning")
    (title,) = http.titles()
    assert title.startswith("WARNING main: alertd does not compute Hyperliquid portfolio margin")
    assert "Hyperliquid's own margin ratio: 20.00%" in http.posts[0]["message"]
    # Hyperliquid's ratio rises past the warning level at the next read
    fake.set_portfolio_margin_ratio(USER, "0.5225")
    wait_for(lambda: len(http.posts) >= 2, what="warning on Hyperliquid's ratio")
    assert http.titles()[1].startswith("WARNING main: worst ratio 55.0%"), http.titles()

    fake.set_abstraction(USER, "unifiedAccount")
    wait_for(lambda: computed_account(base), what="computed again in the unified account")
    stopped_cleanly(daemon)
