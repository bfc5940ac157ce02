"""The incremental tick path agrees with a full recompute, tick after tick."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.book import Book, LiveAccount
from alertd.engine.margin import compute
from alertd.engine.model import Account

from .support import snapshots
from .test_properties import accounts, close, dec

D = Decimal


def mark_of(live: LiveAccount, symbol: str) -> Decimal | None:
    """The current mark of ``symbol`` in one account: a position's, or a coin's price."""
    for lp in live.positions:
        if lp.symbol == symbol:
            return lp.mark
    for coin in live.coins:
        if coin.symbol == symbol:
            return coin.price / coin.scale
    return None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(accounts(), accounts(pools=True), accounts(rates=True)), min_size=1, max_size=3
    ),
    st.data(),
)
def test_ticks_update_pools_like_a_full_recompute(held: list[Account], data: st.DataObject) -> None:
    book = Book()
    for key, account in enumerate(held):
        book.set_account(key, account)
    symbols = sorted(book.symbols)
    for _ in range(data.draw(st.integers(1, 25))):
        symbol = data.draw(st.sampled_from(symbols))
        current = next(
            m for key in range(len(held)) if (m := mark_of(book.live(key), symbol)) is not None
        )
        mark = current * (1 + data.draw(dec(-25, 25, 2)) / 100)
        touched = book.apply_mark(symbol, mark)
        assert touched == {
            key
            for key, a in enumerate(held)
            if any(p.symbol == symbol for p in a.positions)
            or any(c.price_symbol == symbol for c in a.collateral)
        }
    for key in range(len(held)):
        full = compute(book.account(key))
        pool = book.cross_pool(key)
        assert close(pool.mm, full.pool.maintenance_margin)
        assert close(pool.upnl, full.pool.unrealized_pnl)
        # collateral moved with its marks: the pool's balance is wallet + coins' value
        assert close(pool.margin_balance, full.pool.margin_balance)
        ours, theirs = book.worst_ratio(key), full.worst_ratio
        if ours.is_finite() and theirs.is_finite():
            assert close(ours, theirs)
        else:
            assert ours == theirs  # both Infinity: liquidated


def same(ours: Decimal | None, theirs: Decimal | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    if ours.is_finite() and theirs.is_finite():
        return close(ours, theirs)
    return ours == theirs


@settings(max_examples=150, deadline=None)
@given(st.one_of(accounts(hedge=True), accounts(pools=True), accounts(rates=True)), st.data())
def test_liquidation_figures_on_demand_match_a_full_recompute(
    account: Account, data: st.DataObject
) -> None:
    """Liquidation prices and the crash distance, kept and re-solved as marks move, are the
    ones compute() finds from scratch at every step."""
    book = Book()
    book.set_account("a", account)
    live = book.live("a")
    symbols = sorted(book.symbols)
    for _ in range(data.draw(st.integers(1, 12))):
        symbol = data.draw(st.sampled_from(symbols))
        current = mark_of(live, symbol)
        assert current is not None
        book.apply_mark(symbol, current * (1 + data.draw(dec(-20, 20, 2)) / 100))
        full = compute(book.account("a"))
        for i, pm in enumerate(full.positions):
            assert same(live.liquidation_price(i), pm.liquidation_price)
            assert same(live.liquidation_distance(i), pm.liquidation_distance)
            assert same(live.positions[i].effective_leverage, pm.effective_leverage)
        assert same(live.crash_distance(), full.crash_distance)
        assert same(live.effective_leverage, full.pool.effective_leverage)
        assert close(live.cross_notional, full.pool.notional)
        assert close(live.cross.buffer, full.pool.buffer)
        # the riskiest cross pool, the same one on both paths
        assert live.cross.asset == full.pool.asset
        assert same(live.worst_ratio, full.worst_ratio)


def one_btc_long() -> Account:
    """1 BTC long at 50,000 (mark 50,000) on Binance with 1,000 USDT."""
    tiers = snapshots.tiers([(None, "0.004", "0")])
    btc = snapshots.position("BTC/USDT:USDT", "long", "1", "50000", "50000", tiers)
    return snapshots.account(snapshots.snapshot("binanceusdm", "1000", [btc]))


def two_accounts_long_btc() -> Book:
    """A book with accounts "a" and "b", each :func:`one_btc_long`."""
    book = Book()
    book.set_account("a", one_btc_long())
    book.set_account("b", one_btc_long())
    return book


def test_replacing_and_removing_accounts() -> None:
    book = two_accounts_long_btc()
    assert book.apply_mark("BTC/USDT:USDT", D(49000)) == {"a", "b"}
    assert book.cross_pool("a").upnl == D(-1000)
    book.set_account("a", one_btc_long())  # a fresh snapshot replaces the old state
    assert book.cross_pool("a").upnl == D(0)
    book.remove_account("b")
    assert book.apply_mark("BTC/USDT:USDT", D(48000)) == {"a"}
    book.remove_account("a")
    assert list(book.symbols) == [] and len(book) == 0


def test_a_mark_can_be_applied_to_one_account_only() -> None:
    book = two_accounts_long_btc()
    book.apply_account_mark("a", "BTC/USDT:USDT", D(49000))
    assert book.cross_pool("a").upnl == D(-1000)
    assert book.cross_pool("b").upnl == D(0)
    assert "a" in book and "c" not in book


def same_figures(ours: LiveAccount, theirs: LiveAccount) -> bool:
    """Two accounts' running figures agree (within the sums' rounding)."""
    pairs = [
        (a, b)
        for p, q in zip(ours.pools, theirs.pools, strict=True)
        for a, b in ((p.mm, q.mm), (p.upnl, q.upnl), (p.margin_balance, q.margin_balance))
    ]
    pairs += [(p.mark, q.mark) for p, q in zip(ours.positions, theirs.positions, strict=True)]
    pairs += [(p.price, q.price) for p, q in zip(ours.coins, theirs.coins, strict=True)]
    pairs.append((ours.cross_notional, theirs.cross_notional))
    return all(close(a, b) for a, b in pairs) and same(ours.worst_ratio, theirs.worst_ratio)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(accounts(), accounts(pools=True)), min_size=1, max_size=4), st.data())
def test_an_account_read_after_ticks_is_repriced_at_its_venues_latest_marks(
    held: list[Account], data: st.DataObject
) -> None:
    """A tick is applied when its account is next read: an account read now and then (ticks
    of both venues in between, snapshots that replace it, a mark of its own) has the figures
    of its snapshot repriced at the marks it should hold: its venue's latest tick of each
    symbol since its snapshot, or its own mark if told one since. A snapshot's marks hold
    until its venue's next tick, not an older one; a venue's tick moves no account of the
    other venue."""
    venues = [data.draw(st.sampled_from("AB")) for _ in held]
    book = Book()
    # per account, the marks it should hold since its snapshot (the path before: every
    # holder repriced at every tick)
    expected: list[dict[str, Decimal]] = [{} for _ in held]

    def should_hold(key: int) -> LiveAccount:
        alone = Book()  # no venue ticks: each mark repriced at once
        alone.set_account(key, held[key])
        for symbol, mark in expected[key].items():
            alone.apply_account_mark(key, symbol, mark)
        return alone.live(key)

    symbols: list[set[str]] = []
    marks: dict[tuple[str, str], Decimal] = {}
    for key, account in enumerate(held):
        book.set_account(key, account, venue=venues[key])
        live = should_hold(key)
        symbols.append({lp.symbol for lp in live.positions} | {c.symbol for c in live.coins})
        for symbol in symbols[key]:
            mark = mark_of(live, symbol)
            assert mark is not None
            marks.setdefault((venues[key], symbol), mark)
    keys = st.integers(0, len(held) - 1)
    for _ in range(data.draw(st.integers(1, 30))):
        action = data.draw(st.sampled_from(["tick", "tick", "tick", "read", "snapshot", "own"]))
        if action == "tick":
            venue, symbol = data.draw(st.sampled_from(sorted(marks)))
            mark = marks[venue, symbol] * (1 + data.draw(dec(-10, 10, 2)) / 100)
            marks[venue, symbol] = mark
            holders = {k for k in range(len(held)) if venues[k] == venue and symbol in symbols[k]}
            assert book.apply_mark(symbol, mark, venue=venue) == holders
            for key in holders:
                expected[key][symbol] = mark
        elif action == "read":
            key = data.draw(keys)
            assert same_figures(book.live(key), should_hold(key))
        elif action == "snapshot":  # a reconcile: the account at its snapshot's marks again
            key = data.draw(keys)
            book.set_account(key, held[key], venue=venues[key])
            expected[key] = {}
        else:  # a holder told alone (a position the book did not cover yet, say)
            key = data.draw(keys)
            symbol = data.draw(st.sampled_from(sorted(symbols[key])))
            mark = marks[venues[key], symbol] * (1 + data.draw(dec(-2, 2, 2)) / 100)
            book.apply_account_mark(key, symbol, mark)
            expected[key][symbol] = mark
    for key in range(len(held)):
        assert same_figures(book.live(key), should_hold(key))
