"""An asset index frame re-rates accounts (Binance multi-assets, docs/exchanges.md): the
figures a tier table yields alone (its hash, its steepest rate and steps, each leg's
requirement rate) are derived once per table and rate and kept with it (``TierTable.memo``),
shared by every account converting at that rate. Kept or not, every figure after a re-rate
must equal a rebuild's from scratch, exactly (Decimal equality)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.config import AccountConfig, Config
from alertd.daemon.evaluation import build_rules
from alertd.engine import tiers as tier_module
from alertd.engine.book import Book, LiveAccount, _requirement_rate, requirement_rate
from alertd.engine.collateral import ConversionRates, SettleTerms
from alertd.engine.margin import compute
from alertd.engine.model import Account
from alertd.engine.tiers import TierTable
from alertd.rules.band import band
from alertd.rules.metrics import FeedStatus
from alertd.rules.model import Subject

from .support import snapshots
from .test_properties import accounts, conversion_rates

D = Decimal
RULES = build_rules(Config(version=1, accounts=[AccountConfig(name="a", exchange="binanceusdm")]))


def rates_of(draw: st.DataObject) -> SettleTerms | None:
    """One margin asset's terms at a frame's rates (its ``assetIndex`` row)."""
    return SettleTerms.of(None, D(0), None, draw.draw(conversion_rates()))


def rerated(account: Account, data: st.DataObject) -> Account:
    """The account at a frame's rates: USDT's and each margin asset's line moved, or one of
    them alone (the other's terms as they were: its legs and tables unchanged)."""
    moves = data.draw(st.sampled_from(["both", "settle", "assets"]))
    settle = rates_of(data) if moves != "assets" else account.settle_terms
    lines = tuple(
        replace(m, terms=rates_of(data)) if moves != "settle" else m for m in account.margin_assets
    )
    return replace(account, settle_terms=settle, margin_assets=lines)


def unshared(account: Account) -> Account:
    """The account over tier tables of its own (equal, new objects: nothing kept with them)."""
    return replace(
        account,
        positions=tuple(
            replace(p, tiers=TierTable.build(list(p.tiers.tiers), p.tiers.basis))
            for p in account.positions
        ),
    )


def figures(live: LiveAccount) -> tuple[object, ...]:
    """Every figure the book gives of the account, and what the band and messages read."""
    per_position = [
        (
            lp.leg,
            lp.slope,
            lp.requirement_rate(),
            lp.upnl,
            lp.mm,
            live.liquidation_price(i),
            live.bankruptcy_price(i),
            live.liquidation_distance(i),
            live.bankruptcy_buffer(i),
        )
        for i, lp in enumerate(live.positions)
    ]
    pools = [
        (pool.balance, pool.upnl, pool.mm, pool.sensitivity, pool.leeway, pool.reach())
        for pool in live.pools
    ]
    return (per_position, pools, live.crash_distance(), live.worst_ratio)


def metrics(account: Account) -> tuple[object, ...]:
    """compute()'s figures of the account, margin to add among them."""
    full = compute(account, D("0.8"))
    return (
        [(pm.liquidation_price, pm.bankruptcy_price, pm.margin_to_add) for pm in full.positions],
        full.pool.margin_to_add,
        full.crash_distance,
        full.worst_ratio,
    )


@settings(max_examples=120, deadline=None)
@given(accounts(rates=True), st.data())
def test_figures_after_a_rerate_equal_a_rebuild_from_scratch(
    account: Account, data: st.DataObject
) -> None:
    """Two accounts holding the same tables re-rated frame after frame in one book (what the
    tables keep made by one, read by the other and by the next frame's), against a book of
    its own over new tables after each frame (nothing kept): every figure equal."""
    book = Book()
    book.set_account("a", account)
    book.set_account("twin", account)
    status = FeedStatus(D(0), D(0), None)
    subject = Subject("a", "binanceusdm")
    for _ in range(data.draw(st.integers(1, 6))):
        account = rerated(account, data)
        book.set_account("twin", account)  # the twin first: the tables' figures its
        book.set_account("a", account)
        tier_module._scaled.cache_clear()  # the scaled tables made again, as new
        fresh = Book()
        fresh.set_account("a", unshared(account))
        ours, theirs = book.live("a"), fresh.live("a")
        assert figures(ours) == figures(theirs)
        assert metrics(book.account("a")) == metrics(fresh.account("a"))
        kept = band(RULES, subject, ours, status, 0.0, connected=True)
        anew = band(RULES, subject, theirs, status, 0.0, connected=True)
        assert (kept and (kept.prices, kept.gaps)) == (anew and (anew.prices, anew.gaps))


def test_a_rate_s_table_figures_are_derived_once_for_every_account() -> None:
    """The requirement rate of a leg at a frame's rate is kept with the scaled table: the
    second account holding the symbol at that rate reads it, not derives it again."""
    rows = [("50000", "0.004", "0"), ("250000", "0.005", "50"), (None, "0.01", "1300")]
    btc = snapshots.position("BTC/USDT:USDT", "long", "1", "50000", "50000", snapshots.tiers(rows))
    account = snapshots.account(snapshots.snapshot("binanceusdm", "1000", [btc]))
    terms = SettleTerms.of(None, D(0), None, ConversionRates(D("0.9999"), D("1.0002")))
    book = Book()
    book.set_account("a", replace(account, settle_terms=terms))
    book.set_account("b", replace(account, settle_terms=terms))
    a, b = book.live("a").positions[0], book.live("b").positions[0]
    assert a.leg.tiers is b.leg.tiers  # one scaled table for both
    found = a.requirement_rate()
    assert found == _requirement_rate(a.leg, D(0)) == D("0.0040008")  # 0.004 x 1.0002
    kept = a.leg.tiers.memo
    assert [key for key in kept if isinstance(key, tuple)] == [
        ("requirement_rate", D(0), D(0), None)
    ]
    assert b.requirement_rate() == found and requirement_rate(b.leg) == found
