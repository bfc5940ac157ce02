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
from alertd.daemon.evaluation import Alerting, build_rules
from alertd.daemon.store import Store
from alertd.delivery.deliverer import Deliverer
from alertd.engine import tiers as tier_module
from alertd.engine.book import Book, LiveAccount, _requirement_rate, requirement_rate
from alertd.engine.collateral import ConversionRates, SettleTerms
from alertd.engine.margin import compute
from alertd.engine.model import Account, MarginAsset
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


def test_a_re_rated_account_is_evaluated_only_where_its_band_fails_at_the_new_rates() -> None:
    """The daemon's path for an asset index frame (``Change.RATES``: ``Alerting.rerated``,
    then ``band_rerated`` at the evaluation): 2,500 USDT and 3,000 USDC on its own line, a
    BTC long requiring 2,500 (ratio 0.455, the warning at 0.5). A frame moving the rates by
    0.0001 proves the band again at the new rates: no evaluation, no alert. USDC's index
    falling to 0.80 (a depeg: its bid 0.7999) takes the equity to 4,899.45 and the ratio to
    0.5103: the band fails there, the account is evaluated and the warning fires at that
    frame, as evaluating every frame would."""
    btc = snapshots.position(
        "BTC/USDT:USDT", "long", "1", "50000", "50000", snapshots.tiers([(None, "0.05", "0")])
    )
    base = snapshots.account(snapshots.snapshot("binanceusdm", "2500", [btc]))

    def at(usdc_bid: str, usdc_ask: str) -> Account:
        usdt = SettleTerms.of(None, D(0), None, ConversionRates(D("0.9999"), D("1.0001")))
        usdc = SettleTerms.of(None, D(0), None, ConversionRates(D(usdc_bid), D(usdc_ask)))
        return replace(base, settle_terms=usdt, margin_assets=(MarginAsset("USDC", D(3000), usdc),))

    config = Config(version=1, accounts=[AccountConfig(name="a", exchange="binanceusdm")])
    store = Store(":memory:")
    wall = [1.0e9]
    book = Book()
    alerting = Alerting(
        config,
        store,
        Deliverer(store, {}, config.routes, config.delivery),
        book=book,
        wall_clock=lambda: wall[0],
    )
    status = FeedStatus(D(0), D(0), None)
    marks = {"BTC/USDT:USDT": D(50000)}

    def seen(_: str) -> float:
        return wall[0]

    def frame(account: Account) -> list[str]:
        """The account re-rated at ``wall``: the alerts its evaluation fired (none where the
        band, proven again, stood in for it)."""
        wall[0] += 1.0
        book.set_account("a", account)
        alerting.rerated("a")
        live = book.live("a")
        if alerting.band_rerated(
            "a", "binanceusdm", live, status, wall[0], True, None, marks, seen
        ):
            return []
        notes = alerting.evaluate_figures("a", "binanceusdm", live, status)
        alerting.keep_band("a", "binanceusdm", live, status, wall[0], True, None)
        return [n.rule.name for n in notes]

    book.set_account("a", at("0.9999", "1.0001"))
    live = book.live("a")
    assert alerting.evaluate_figures("a", "binanceusdm", live, status) == []
    alerting.keep_band("a", "binanceusdm", live, status, wall[0], True, None)
    assert live.worst_ratio.quantize(D("0.001")) == D("0.455")
    assert frame(at("0.9998", "1.0002")) == []
    assert (alerting.skipped, alerting.reproven) == (1, 1)  # not evaluated
    assert frame(at("0.7999", "0.8001")) == ["margin-ratio-warning"]
    assert book.live("a").worst_ratio.quantize(D("0.0001")) == D("0.5103")
    assert alerting.reproven == 1  # evaluated: the band failed at the new rates
