"""Hyperliquid's margin tiers: read from ``meta``'s ``marginTables`` ("Trading / Margin tiers"),
a flat table (id under 50, not listed) from the market's max leverage."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from alertd.engine.tiers import Tier, TierTable
from alertd.exchanges.hyperliquid import HyperliquidAdapter, margin_table_to_tiers
from alertd.feeds.adapter import FrameError
from tests.fake_exchange.hyperliquid import FakeHyperliquid
from tests.support.aio import run
from tests.support.fakes import ccxt_client, started

# the docs' BTC table, as mainnet's meta lists it under id 56
BTC_TABLE = {
    "description": "tiered 40x",
    "marginTiers": [
        {"lowerBound": "0.0", "maxLeverage": 40},
        {"lowerBound": "150000000.0", "maxLeverage": 20},
    ],
}


def test_a_tiered_table_is_the_tax_bracket_form_of_half_the_initial_rates() -> None:
    table = margin_table_to_tiers(BTC_TABLE)
    assert table == TierTable.build(
        [
            Tier(D("150000000"), D("0.0125"), D(0), D(40)),
            # deduction = 150M * (2.5% - 1.25%): MM is continuous at the bound
            Tier(None, D("0.025"), D("1875000"), D(20)),
        ]
    )
    at_bound = D("150000000")
    assert at_bound * D("0.0125") == at_bound * D("0.025") - D("1875000")


@pytest.mark.parametrize(
    "table",
    [{}, {"marginTiers": []}, {"marginTiers": [{"lowerBound": "0", "maxLeverage": 0}]}, []],
)
def test_a_table_without_usable_tiers_is_a_frame_error(table: object) -> None:
    with pytest.raises(FrameError):
        margin_table_to_tiers(table)


def test_the_feed_reads_listed_tables_from_meta_and_flat_ones_from_max_leverage() -> None:
    async def body() -> None:
        async with started(FakeHyperliquid()) as fake, ccxt_client(fake, "hyperliquid") as ex:
            await ex.load_markets()
            before = len(fake.requests)
            tables = await HyperliquidAdapter().fetch_tiers(ex, ["BTC/USDC:USDC", "ETH/USDC:USDC"])
            assert len(fake.requests) == before + 1  # one meta request for both
            assert tables["BTC/USDC:USDC"] == margin_table_to_tiers(BTC_TABLE)
            # ETH's table 55 is not listed: one tier at its 25x
            assert tables["ETH/USDC:USDC"] == TierTable.build([Tier(None, D("0.02"), D(0), D(25))])

    run(body())
