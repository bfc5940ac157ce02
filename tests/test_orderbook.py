"""Closing a position into an order book (engine/orderbook.py) and the bankruptcy buffer: exact
on hand-built books, monotonic in size, explicit about a book too thin or empty; the book's
bankruptcy prices are compute()'s, and the equity behind a position is zero there."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.book import Book
from alertd.engine.margin import compute
from alertd.engine.model import Account
from alertd.engine.orderbook import ForcedClose, OrderBook, close_cost, gap_risk, walk
from alertd.rules.lifecycle import Kind, Notification
from alertd.rules.messages import render
from alertd.rules.model import Condition, Context, Rule, Scope, Severity, Subject

from .support.snapshots import btc_long_on_2000
from .test_book import same
from .test_properties import accounts, close

D = Decimal

# a hand-built book: mid 100.05
BOOK = OrderBook(
    bids=((D("100.0"), D("1")), (D("99.5"), D("2")), (D("99.0"), D("3"))),
    asks=((D("100.1"), D("1")), (D("100.6"), D("2")), (D("101.1"), D("3"))),
)


def test_average_fill_is_exact_on_a_hand_built_book() -> None:
    fill = walk(BOOK.bids, D("2.5"))
    assert fill.complete and fill.filled == D("2.5")
    # 1 at 100.0 + 1.5 at 99.5 = 249.25 over 2.5
    assert fill.average == D("99.7")
    assert fill.last == D("99.5")
    cost = close_cost(BOOK, long=True, quantity=D("2.5"), mark=D("100"))
    assert cost.slippage == D("0.003")  # (100 - 99.7) / 100
    short = close_cost(BOOK, long=False, quantity=D("3"), mark=D("100"))
    # 1 at 100.1 + 2 at 100.6 = 301.3 / 3
    assert short.slippage == (D("301.3") / 3 - 100) / 100


def test_an_inverse_contract_averages_harmonically() -> None:
    # sizes in USD: 100 USD at 100, 300 USD at 50 -> 1 + 6 coins for 400 USD: 400 / 7
    book = OrderBook(bids=((D("100"), D("100")), (D("50"), D("300"))), asks=())
    assert walk(book.bids, D("400"), inverse=True).average == D("400") / 7


def test_a_too_thin_book_says_how_much_it_fills_and_bounds_the_rest() -> None:
    fill = walk(BOOK.bids, D("10"))
    assert not fill.complete
    assert (fill.filled, fill.wanted) == (D("6"), D("10"))
    # the 4 unfilled valued at the deepest bid: 1x100 + 2x99.5 + 3x99 + 4x99 = 992
    cost = close_cost(BOOK, long=True, quantity=D("10"), mark=D("100"))
    assert cost.slippage == (100 - D("99.2")) / 100


def test_an_empty_book_has_no_figure() -> None:
    empty = OrderBook((), ())
    assert empty.mid is None
    assert walk(empty.bids, D("1")).average is None
    assert close_cost(empty, True, D("1"), D("100")).slippage is None
    risk = gap_risk(empty, ForcedClose(True, D("1"), D("90"), D("89")))
    assert risk.shortfall is None and risk.fits is None and risk.excess is None


def test_bad_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="bids"):
        OrderBook(bids=((D("1"), D("-1")),), asks=())
    with pytest.raises(ValueError, match="descending"):
        OrderBook(bids=((D("1"), D("1")), (D("2"), D("1"))), asks=())


def test_gap_risk_is_exact_on_a_hand_built_book() -> None:
    """The book shifted to mid 90 (x 90 / 100.05); a long of 5 with bankruptcy at 89.6."""
    liq, bankrupt = D("90"), D("89.6")
    risk = gap_risk(BOOK, ForcedClose(True, D("5"), liq, bankrupt))
    scale = liq / BOOK.mid  # type: ignore[operator]
    prices = [D("100.0") * scale, D("99.5") * scale, D("99.0") * scale]
    filled = prices[0] * 1 + prices[1] * 2 + prices[2] * 2
    assert risk.fill.average == filled / 5
    assert risk.shortfall == max(D(0), 5 * bankrupt - filled)
    assert risk.shortfall > 0
    # what fits: the running PnL against 89.6 reaches zero inside the third level
    pnl = (prices[0] - bankrupt) * 1 + (prices[1] - bankrupt) * 2
    fits = 3 + pnl / (bankrupt - prices[2])
    assert risk.fits == fits
    assert risk.excess == 5 - fits
    # closing exactly what fits loses nothing past the bankruptcy price
    at_fit = gap_risk(BOOK, ForcedClose(True, fits, liq, bankrupt))
    assert at_fit.shortfall is not None and abs(at_fit.shortfall) < D("1e-20")


def test_a_short_crosses_upwards() -> None:
    # shifted to mid 110.055: every price x 1.1 exactly
    risk = gap_risk(BOOK, ForcedClose(False, D("6"), D("110.055"), D("110.5")))
    paid = D("110.11") * 1 + D("110.66") * 2 + D("111.21") * 3
    assert risk.shortfall == paid - 6 * D("110.5") == D("2.06")


levels = st.lists(
    st.tuples(
        st.decimals("0.01", "50", places=2),  # a step below the previous price
        st.decimals("0.001", "10", places=3),
    ),
    min_size=0,
    max_size=12,
)


def build(steps: list[tuple[Decimal, Decimal]]) -> OrderBook:
    bids, asks = [], []
    price = D("1000")
    for step, size in steps:
        price -= step
        bids.append((price, size))
        asks.append((2000 - price, size))
    return OrderBook(tuple(bids), tuple(asks))


@settings(max_examples=200, deadline=None)
@given(levels, st.decimals("0", "80", places=3), st.decimals("0", "80", places=3), st.booleans())
def test_slippage_and_shortfall_grow_with_size(
    steps: list[tuple[Decimal, Decimal]], a: Decimal, b: Decimal, long: bool
) -> None:
    book = build(steps)
    small, big = sorted((a, b))
    costs = [close_cost(book, long, q, D("1000")) for q in (small, big)]
    if small > 0 and costs[0].slippage is not None:
        assert costs[1].slippage is not None and costs[1].slippage >= costs[0].slippage
    liq, bankrupt = (D("900"), D("896")) if long else (D("1100"), D("1104"))
    risks = [gap_risk(book, ForcedClose(long, q, liq, bankrupt)) for q in (small, big)]
    if risks[0].shortfall is not None:
        assert risks[1].shortfall is not None and risks[1].shortfall >= risks[0].shortfall
        # what fits does not depend on the size asked for, and closing it loses nothing
        assert risks[0].fits == risks[1].fits
        fits = risks[0].fits
        assert fits is not None and fits <= book.depth(long)
        assert (risks[1].excess or 0) >= (risks[0].excess or 0)
        at_fit = gap_risk(book, ForcedClose(long, fits, liq, bankrupt)).shortfall
        assert at_fit is not None and at_fit < D("1e-18")
        if big > fits:
            over = gap_risk(book, ForcedClose(long, big, liq, bankrupt))
            assert over.shortfall is not None
            assert over.shortfall > 0 or not over.fill.complete


@settings(max_examples=150, deadline=None)
@given(accounts(hedge=True), st.data())
def test_bankruptcy_prices_in_the_book_are_computes(account: Account, data: st.DataObject) -> None:
    """The book's bankruptcy price of each position is compute()'s; there the equity behind
    the position is exactly zero (isolated: its margin + PnL; cross: the pool, with its
    symbol moved there); the buffer is |liq - bankruptcy| / mark."""
    book = Book()
    book.set_account("a", account)
    live = book.live("a")
    full = compute(account)
    for i, pm in enumerate(full.positions):
        bankrupt = live.bankruptcy_price(i)
        assert same(bankrupt, pm.bankruptcy_price)
        buffer = live.bankruptcy_buffer(i)
        if bankrupt is None or pm.liquidation_price is None:
            assert buffer is None
            continue
        assert buffer == abs(live.liquidation_price(i) - bankrupt) / pm.position.mark_price  # type: ignore[operator]
        moved = replace(
            account,
            positions=tuple(
                replace(p, mark_price=bankrupt) if p.symbol == pm.position.symbol else p
                for p in account.positions
            ),
        )
        if any(c.price_symbol for c in account.collateral):
            continue  # coins moving with the symbol: compute()'s equity covers them below
        at = compute(moved, crash=False)
        equity = (
            at.positions[i].margin_balance if pm.position.is_isolated else at.pool.margin_balance
        )
        assert close(equity + 1, D(1), D("1e-12")), equity


def _book_note(metric: str, book: OrderBook, value: str) -> Notification:
    """A position alert on an order-book metric: 1 BTC long at 60,000 on 2,000 USDT (liq.
    58,232.93, bankruptcy 58,000), mark 60,000."""
    full = compute(btc_long_on_2000("60000", lot_size="0.001"), D("0.45"))
    rule = Rule("gap", Condition(metric, Scope.POSITION, above=D(0)), Severity.WARNING)
    subject = Subject("main", "binanceusdm", "BTC/USDT:USDT", "long")
    context = Context(full, full.positions[0], book=book)
    return Notification(Kind.FIRING, rule, subject, 1000.0, 400.0, D(value), context)


def test_gap_messages_say_the_fill_a_thin_book_and_the_size_to_cut() -> None:
    thin = OrderBook(
        bids=((D("59990"), D("0.2")), (D("59700"), D("0.2")), (D("59000"), D("0.2"))),
        asks=((D("60010"), D("1")),),
    )
    m = render(_book_note("gap_risk", thin, "409.57"))
    assert m.title == "WARNING main BTC/USDT:USDT long: gap risk: 409.57 past bankruptcy at liq."
    lines = m.body.splitlines()
    assert lines[0] == "above 0.00 (gap)"
    assert lines[2].startswith("at liq. 58,232.93 the book fills ")
    assert lines[2].endswith(" avg; bankruptcy 58,000.00")
    assert lines[3] == "book too thin: fills only 0.6 of 1 (the rest at its deepest price)"
    # what fits: 0.2 + 0.2 and part of the third level, at most the visible 0.6: cut >= 0.4
    risk = gap_risk(thin, ForcedClose(True, D(1), D(58000) / D("0.996"), D(58000)))
    assert risk.fits is not None and D("0.4") < risk.fits < D("0.6")
    cut = (1 - risk.fits).quantize(D("0.001"), rounding="ROUND_CEILING")
    assert lines[4] == f"→ cut {cut} BTC/USDT:USDT to fit the book"
    assert len(lines) <= 5 and all(len(line) <= 80 for line in lines)

    slip = render(_book_note("close_slippage", thin, "0.0053"))
    body = slip.body.splitlines()
    # (0.2 x 59,990 + 0.2 x 59,700 + 0.6 x 59,000) / 1 = 59,338
    assert body[2] == "a market close fills 59,338.00 avg, 1.10% from the mark"
    assert body[3].startswith("book too thin: fills only 0.6 of 1")

    empty = render(_book_note("gap_risk", OrderBook((), ()), "0"))
    assert "the order book is empty on the closing side" in empty.body


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.decimals("0.01", "50", places=2), st.decimals("0", "10", places=3)),
        max_size=12,
    ),
    st.lists(st.decimals("0", "80", places=3), min_size=1, max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_a_books_walks_for_many_sizes_are_the_walk_of_its_levels(
    steps: list[tuple[Decimal, Decimal]], sizes: list[Decimal], long: bool, inverse: bool
) -> None:
    """OrderBook.close reads every size's walk from the side's running sums (one pass a book,
    not one a size held): the same fill as walking the levels, to the digit, zero-size levels,
    an exact level boundary, nothing asked and a too thin book included."""
    book = build(steps)
    boundaries = list(itertools.accumulate(s for _, s in book.closing(long)))
    for q in [*sizes, *boundaries[:3], D(0)]:
        expected = walk(book.closing(long), q, inverse)
        assert book.close(long, q, inverse) == expected
        # to the digit on a book not asked before (one remembers a walk by an equal size)
        fill = build(steps).close(long, q, inverse)
        assert (str(fill.filled), str(fill.u_total)) == (
            str(expected.filled),
            str(expected.u_total),
        )


class _Counted(tuple[tuple[Decimal, Decimal], ...]):
    """A side's levels that count the passes over them."""

    passes = 0

    def __iter__(self) -> Iterator[tuple[Decimal, Decimal]]:
        type(self).passes += 1
        return super().__iter__()


def test_a_book_is_walked_once_a_side_whatever_the_sizes_asked() -> None:
    """A thousand accounts hold a thousand sizes in one symbol: each book fetched is passed
    over once a side, not once a size (8% of a calm daemon's samples at 1,000 Bybit accounts,
    benchmarks.md "Session 15, calm15")."""
    levels = tuple((D(1000 - i), D("0.5")) for i in range(100))
    book = OrderBook(_Counted(levels), ())
    before = _Counted.passes  # the book's own checks of its levels
    fills = [book.close(True, D(i) / 10) for i in range(1, 501)]
    assert _Counted.passes - before == 1
    assert fills == [walk(levels, D(i) / 10) for i in range(1, 501)]
