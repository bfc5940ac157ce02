"""Drift measured on snapshots whose read a push changed (issue 11 item 5, drift16).

A snapshot's answers are read one after another, each of one moment of the read; a push that
changes the state meanwhile is applied again on top of what was read. Before drift16 such a
snapshot measured no drift (the last comparison stood), so on an active account, a push in
every read, a model error was never raised. Now each figure the exchange reports is compared
at the moment of the read nearest it: the state as read or a step of the pushes applied again
(``feeds/feed.py::MomentsOfRead``, ``snapshot/compare.py::closest``). Through the local
exchanges, ccxt unmodified, each snapshot's positions answer held (answered as of its request,
sent later) while the push comes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from decimal import Decimal as D
from typing import Any

import pytest

from alertd.engine.model import MarginMode, Side
from alertd.engine.tiers import Tier, TierTable
from alertd.exchanges.registry import get_spec
from alertd.feeds.adapter import Part
from alertd.feeds.feed import KeptPush, MomentsOfRead, moment_of, same_part
from alertd.feeds.state import AccountState, MarketInfo, PositionState
from alertd.snapshot.compare import Comparison, Figure, closest, row

from .support.aio import run
from .support.endpoint import status_account
from .support.fakes import KEY
from .support.fixtures import BTC, started
from .support.poll import eventually, wait_for
from .test_e2e_modes import BINANCE, _serve_status
from .test_push_during_snapshot import (
    ETH,
    POSITIONS_READ,
    btc_of,
    contracts,
    hold_positions,
    key_of,
    long_half_btc,
)

THIRD = D(1) / 3  # |ours - theirs| / theirs with the exchange's MM 1.5 times alertd's
MM = Figure.MAINTENANCE_MARGIN
LONG = (BTC, Side.LONG)


def test_each_figure_is_compared_at_the_moment_nearest_it() -> None:
    """fixrace14's figures: the positions answer of the 0.5 long (120), the account's of the
    0.8 pushed during the read (192). As read, the account's differs by 37.5%; after the push,
    the position's by 60%; each at its own moment, nothing differs."""
    as_read = Comparison((row(MM, None, D(120), D(192)), row(MM, LONG, D(120), D(120))), ())
    pushed = Comparison((row(MM, None, D(192), D(192)), row(MM, LONG, D(192), D(120))), ())
    nearest = closest([as_read, pushed])
    assert nearest.mismatches == ()
    assert nearest.drift == {"maintenance_margin": 0, f"{BTC} long maintenance_margin": 0}
    assert [r.key for r in nearest] == [r.key for r in as_read]


def test_a_model_error_shows_at_every_moment_and_stays() -> None:
    """The exchange's requirement 1.5 times alertd's model at both moments of the read: the
    smaller difference is the drift, a mismatch still; a row only one moment has is kept (a
    position the push opened) and the adjustments said once."""
    said = ("the fee left out",)
    as_read = Comparison((row(MM, None, D(120), D(288)),), said)
    pushed = Comparison((row(MM, None, D(192), D(288)), row(MM, LONG, D(72), D(72))), said)
    nearest = closest([as_read, pushed])
    assert nearest.drift == {"maintenance_margin": THIRD, f"{BTC} long maintenance_margin": 0}
    assert [r.key for r in nearest.mismatches] == ["maintenance_margin"]
    assert nearest.adjustments == said


def test_the_moments_of_a_read_are_bounded_and_said_once_each() -> None:
    """A push that changes nothing alertd computes from is no moment; more distinct moments
    than the bound measure nothing (the last comparison stands)."""
    state = AccountState("a", get_spec("binanceusdm").profile, "USDT")
    state.wallet_balance = D(100)
    found = moment_of(state)
    push = KeptPush(lambda: True, Part.WALLETS, found, True)
    moments = MomentsOfRead(state, [push], most=3)
    state.wallet_balance = D(110)
    moments.step(push, True)
    moments.step(push, True)  # nothing changed since
    state.wallet_balance = D(120)
    moments.step(push, True)
    assert found.wallet_balance == 100  # a moment is not moved by what follows
    states = moments.complete()
    assert states is not None  # the state found is the same as read: once
    assert [m.wallet_balance for m in states] == [100, 110, 120]
    state.wallet_balance = D(130)
    moments.step(push, True)
    assert moments.complete() is None


def test_a_push_the_first_answer_holds_leaves_no_moment_before_it() -> None:
    """A wallet push (from 90 to 100) the snapshot's wallet already holds: where the wallet
    is read first (OKX's balance), every answer holds it, and the state it found is no
    moment; where the positions are read first (Binance), the positions answer may be of
    that state, and it is one. A push dropped as older than the read is held too; one that
    changed nothing when it came says nothing of the answer."""
    state = AccountState("a", get_spec("okx").profile, "USDT")
    state.wallet_balance = D(90)
    found = moment_of(state)
    state.wallet_balance = D(100)  # the push, and the snapshot that holds it

    def wallets(first: Part, push: KeptPush, applied: bool = True) -> list[D | None]:
        moments = MomentsOfRead(state, [push], first)
        moments.step(push, applied)  # applied again: the wallet as read, 100
        states = moments.complete()
        assert states is not None
        return [m.wallet_balance for m in states]

    push = KeptPush(lambda: True, Part.WALLETS, found, True)
    assert wallets(Part.WALLETS, push) == [100]
    assert wallets(Part.WALLETS, push, applied=False) == [100]
    assert wallets(Part.POSITIONS, push) == [100, 90]
    assert wallets(Part.WALLETS, dataclasses.replace(push, changed=False)) == [100, 90]


def okx_long_raised() -> tuple[AccountState, AccountState]:
    """An OKX account long 0.5 BTC raised to 0.8 (as read), and the state a push of the
    raise found (the 0.5)."""
    state = AccountState("a", get_spec("okx").profile, "USDT")
    state.markets = {BTC: MarketInfo(BTC, D(1), False, "USDT")}
    state.tiers = {BTC: TierTable.build([Tier(None, D("0.005"), D(0))])}
    state.set_mark(BTC, D(60000), 0.0)
    state.wallet_balance = D(1000)
    state.positions[LONG] = PositionState(BTC, Side.LONG, D("0.5"), D(60000), MarginMode.CROSS)
    found = moment_of(state)
    state.positions[LONG] = dataclasses.replace(state.positions[LONG], contracts=D("0.8"))
    return state, found


def test_a_position_push_made_before_the_first_answer_was_taken_leaves_no_moment() -> None:
    """OKX's balance answer (read first) says when OKX took it (the account's ``uTime``); a
    position push says when the position was adjusted (its rows' ``uTime``). A push made
    before the answer was taken is in it: the state it found (0.5 BTC) is of no answer and
    no moment. One made at the answer's millisecond or after it may not be: that state stays
    one (sizes alone cannot say either of a balance answer: before okx17, always one)."""
    state, found = okx_long_raised()

    def sizes(at: int | None, first_ms: int | None) -> list[D]:
        push = KeptPush(lambda: True, Part.POSITIONS, found, True, at)
        moments = MomentsOfRead(state, [push], Part.WALLETS, first_ms)
        moments.step(push, True)  # applied again: the 0.8 as read
        states = moments.complete()
        assert states is not None
        return [m.positions[LONG].contracts for m in states]

    assert sizes(999, 1000) == [D("0.8")]
    assert sizes(1000, 1000) == [D("0.8"), D("0.5")]
    assert sizes(1001, 1000) == [D("0.8"), D("0.5")]
    assert sizes(None, 1000) == [D("0.8"), D("0.5")]
    assert sizes(999, None) == [D("0.8"), D("0.5")]


def test_a_push_made_before_the_first_answer_coming_after_one_made_after_it_keeps_its_moment() -> (
    None
):
    """OKX pushes the positions and the account on two channels, with no order between them:
    a wallet push made before the balance answer was taken (999, dropped as older than the
    read) comes after a position push made after it (1001: from 0.5 to 0.8 BTC). The balance
    answer (taken at 1000) is of the 0.5 the position push found: that state stays a moment
    (before: the wallet push's stamp took every push before it as held by the answer too, the
    0.5 was no moment, and the balance answer's figures were compared at the 0.8 alone: a
    false drift). Only the pushes before the first one made after the answer can be held by
    it (review of okx17, note; its probe)."""
    state, found = okx_long_raised()
    position = KeptPush(lambda: True, Part.POSITIONS, found, True, 1001)
    wallet = KeptPush(lambda: False, Part.WALLETS, moment_of(state), True, 999)
    moments = MomentsOfRead(state, [position, wallet], Part.WALLETS, 1000)
    moments.step(position, True)  # applied again: the 0.8 as read
    moments.step(wallet, False)  # dropped: older than the balance answer's wallet
    states = moments.complete()
    assert states is not None
    assert [m.positions[LONG].contracts for m in states] == [D("0.8"), D("0.5")]
    # a leading run made before the answer is still held by it: a position push made at 999
    # coming before a wallet push made at 1001 leaves the 0.5 no moment, as okx17 made it
    early = dataclasses.replace(position, at=999)
    late = dataclasses.replace(wallet, at=1001)
    moments = MomentsOfRead(state, [early, late], Part.WALLETS, 1000)
    moments.step(early, True)
    moments.step(late, True)
    states = moments.complete()
    assert states is not None
    assert [m.positions[LONG].contracts for m in states] == [D("0.8")]


# the first answer of each exchange's snapshot that carries figures the drift check compares
# (read after the account mode's): OKX reads its balance with the mode, before the positions
FIRST_READ = {**POSITIONS_READ, "okx": ("/api/v5/account/balance", None)}


async def reconcile_with_push(fake: Any, feed: Any, exchange: str, size: str) -> None:
    """A reconcile whose first answer (:data:`FIRST_READ`) is held while the long is set to
    ``size`` BTC and pushed: that answer is of the size before, the reads after it of
    ``size``."""
    snapshots = feed.snapshots
    fake.hold_rest(*FIRST_READ[exchange])
    reconcile = asyncio.create_task(feed.reconcile())
    await eventually(lambda: fake.held_answers() == 1, what="the first read held")
    fake.open_position(key_of(exchange), btc_of(exchange), "long", size, "60000")
    await eventually(lambda: contracts(feed) == D(size), what="the push")
    fake.release_rest()
    await reconcile
    assert feed.state.fatal is None
    assert feed.snapshots == snapshots + 1
    assert contracts(feed) == D(size)


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit"])
def test_a_model_error_is_measured_while_a_push_changes_every_read(exchange: str) -> None:
    """The exchange starts counting 1.5 times the maintenance margin alertd's model gives
    (Binance ``totalMaintMargin``, Bybit ``totalMaintenanceMargin``/``accountMMRate``); every
    reconcile after that has a fill pushed during its read. The margin ratio's drift is a
    third at each of them (before drift16: none of them measured, the start's 0 stood)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            assert feed.drift["margin_ratio"] < D("0.01")  # Bybit's rate has 4 decimals
            fake.set_reported_mm_factor(key_of(exchange), "1.5")
            for size in ("0.6", "0.7", "0.8"):
                await reconcile_with_push(fake, feed, exchange, size)
                # at the moment the exchange's account answer is of (after the push):
                # the 1.5 alone, not the push's step too
                assert abs(feed.drift["maintenance_margin"] - THIRD) < D("1e-6"), feed.drift
                assert abs(feed.drift["margin_ratio"] - THIRD) < D("0.01"), feed.drift
                assert feed.ratios is not None
                ours, theirs = feed.ratios
                assert abs(theirs / ours - D("1.5")) < D("0.02")

    run(body())


def mm_rows(comparison: Any) -> dict[str, D | None]:
    """The exchange's maintenance margins in ``comparison`` (the account's, each position's)."""
    return {r.key: r.theirs for r in comparison if r.figure is Figure.MAINTENANCE_MARGIN}


@pytest.mark.parametrize("exchange", sorted(FIRST_READ))
def test_no_false_drift_where_an_answer_read_after_the_push_holds_it(exchange: str) -> None:
    """fixrace14's case: the first answer is of the 0.5 BTC long, the long is raised to 0.8
    and pushed, and the answers read after it hold the 0.8's figures (Binance, Bybit, Gate,
    Hyperliquid: the account's after the positions'; OKX: the positions' after the balance
    read with the mode). Measured on the state as read alone this was a false drift (192
    against 120 on Binance). Now the snapshot is compared, each figure at its own moment,
    and nothing differs (before drift16: on OKX, whose push applied again changes nothing, a
    false drift of the account's figures; elsewhere no comparison, the start's standing)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            first = feed.comparison
            assert first is not None and not first.mismatches, first
            await reconcile_with_push(fake, feed, exchange, "0.8")
            assert not feed.comparison.mismatches, feed.comparison
            assert all(d <= D("0.005") for d in feed.drift.values()), feed.drift
            # compared on this snapshot's answers: the ones read after the push hold the 0.8
            # long's requirement
            before, after = mm_rows(first), mm_rows(feed.comparison)
            assert any(after[key] != before.get(key) for key in after), after

    run(body())


def test_drift_warning_fires_and_resolves_with_a_push_in_every_read(
    world: dict[str, Any],
) -> None:
    """``alertd run``, a reconcile every second, and from the start's end on a fill pushed
    during every reconcile's positions read: Binance's maintenance margin at 1.5 times
    alertd's raises the built-in ``ratio-drift`` warning naming both figures, and back at
    1 it resolves (before drift16: no read measured, no warning)."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    base = _serve_status(world, ratio_drift_for="3s")
    started(daemon)
    wait_for(lambda: status_account(base)["exchange_margin_ratio"] is not None, what="compared")
    sizes = ("1.1", "1")

    def held(size: str) -> bool:
        return bool(status_account(base)["positions"][0]["contracts"] == size)

    def reads_with_pushes(until: Any, what: str) -> None:
        """Every positions read held until a fill is pushed, until ``until()`` (bounded)."""
        for turn in range(120):
            if until():
                return
            size = sizes[turn % 2]
            fake.hold_rest(POSITIONS_READ["binanceusdm"][0])
            wait_for(lambda: fake.held_answers() == 1, what="a positions read held")
            fake.open_position("key-e2e", BTC, "long", size, "60000")
            wait_for(functools.partial(held, size), what="the push")
            fake.release_rest()
        raise AssertionError(f"{what}: not within 120 reads")

    fake.set_reported_mm_factor("key-e2e", "1.5")
    reads_with_pushes(lambda: len(http.posts) >= 1, "drift warning")
    # the smallest difference over the read's moments: a third where the account answer is
    # of the state after the fill (1.1 BTC pushed over 1), 26.7% where the fill takes the
    # long back to 1 BTC (1.5 x 1 against the 1.1 the read's positions answer held): never
    # nothing, never more than the model's error
    (title,) = http.titles()
    assert title.startswith(f"WARNING main: alertd's margin ratio differs from {BINANCE}'s by ")
    assert title.endswith(("by 33.3%", "by 26.7%")), title
    body = http.posts[0]["message"]
    assert f"{BINANCE} " in body and "check alertd's numbers" in body, body
    fake.set_reported_mm_factor("key-e2e", "1")
    reads_with_pushes(lambda: len(http.posts) >= 2, "drift resolved")
    assert http.titles()[1] == f"RESOLVED main: alertd's margin ratio agrees with {BINANCE}'s again"
    fake.release_rest()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_a_fill_realized_between_the_positions_and_the_account_read_is_no_false_drift() -> None:
    """Binance: 0.5 BTC and 5 ETH long; the positions answer is held and the ETH long is
    closed meanwhile, 2,000 USDT of profit realized into the wallet (one ``ACCOUNT_UPDATE``).
    The positions answer's BTC liquidation price is of both longs on the 10,000 wallet, the
    account answer of the BTC long alone on 12,000; the state as read (both longs on 12,000)
    is neither: the first is the state the push found, as alertd held it live, the second
    the push applied again on top of the read. Nothing differs (before drift16: no
    comparison, the one before the close standing)."""

    async def body() -> None:
        async with long_half_btc("binanceusdm", {ETH: "3400"}) as (fake, feed):
            fake.open_position(KEY, ETH, "long", "5", "3000")
            await eventually(lambda: (ETH, Side.LONG) in feed.state.positions, what="ETH")
            await feed.reconcile()
            first = feed.comparison
            assert first is not None and not first.mismatches, first
            assert f"{ETH} long liquidation_price" in first.drift
            hold_positions(fake, "binanceusdm")
            snapshots = feed.snapshots
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.close_position(KEY, ETH)
            await eventually(lambda: feed.state.wallet_balance == 12000, what="the close")
            fake.release_rest()
            await reconcile
            assert feed.snapshots == snapshots + 1
            assert (ETH, Side.LONG) not in feed.state.positions
            assert not feed.comparison.mismatches, feed.comparison
            before, after = mm_rows(first), mm_rows(feed.comparison)
            assert after["maintenance_margin"] != before["maintenance_margin"]

    run(body())


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit", "gate", "okx"])
def test_a_position_closed_while_the_first_answer_is_held_is_no_false_drift(
    exchange: str,
) -> None:
    """0.5 BTC and 5 ETH long; the first answer with figures (:data:`FIRST_READ`) is held
    while the ETH long is closed and pushed. On OKX that answer is the balance's, of both
    longs, and the positions answer read after it lists the BTC long alone: the balance is of
    the state the close found, whose ETH mark alertd dropped live as the close landed (its
    stream unsubscribed) and the positions answer does not carry. Each moment keeps the marks
    it had, so the state the close found is still a moment and nothing differs (before:
    that moment was left out as "no mark price", and the account's maintenance margin 1.2
    against OKX's 18.2 was a false drift). Elsewhere the positions answer is read first."""

    async def body() -> None:
        async with long_half_btc(exchange, {ETH: "3400"}) as (fake, feed):
            fake.open_position(key_of(exchange), ETH, "long", "5", "3000")
            await eventually(lambda: (ETH, Side.LONG) in feed.state.positions, what="ETH")
            await feed.reconcile()
            first = feed.comparison
            assert first is not None and not first.mismatches, first
            snapshots = feed.snapshots
            fake.hold_rest(*FIRST_READ[exchange])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the first read held")
            fake.close_position(key_of(exchange), ETH)
            await eventually(lambda: ETH not in feed.state.marks, what="the close")
            fake.release_rest()
            await reconcile
            assert feed.snapshots == snapshots + 1
            assert (ETH, Side.LONG) not in feed.state.positions
            assert feed.comparison is not first  # measured on this snapshot
            assert not feed.comparison.mismatches, feed.comparison
            assert feed.drift["maintenance_margin"] <= D("0.005"), feed.drift

    run(body())


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit", "okx"])
def test_a_late_push_of_a_fill_every_answer_holds_hides_no_model_error(exchange: str) -> None:
    """The exchange's maintenance margin 1.5 times alertd's model; the 0.75 BTC long is
    reduced to 0.5 and its push delivered late, during the next read, whose first answer
    (Binance's and Bybit's positions, OKX's balance: read first, as of its request) already
    holds the 0.5. The state the push found (0.75) is of no answer of that read: it is no
    moment, and the drift stays a third (before fixdrift16: that state was a moment and the
    drift measured nothing, the model error hidden; the reviewer's probe 2). On OKX the sizes
    cannot say that the balance answer holds a position push: its own time can (the
    account's ``uTime``, when OKX took the answer, after the reduce's ``uTime``; before
    okx17: the drift measured 0, 1.5 x 0.5 being alertd's figure for 0.75)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            key, btc = key_of(exchange), btc_of(exchange)
            fake.open_position(key, btc, "long", "0.75", "60000")
            await eventually(lambda: contracts(feed) == D("0.75"), what="0.75")
            fake.set_reported_mm_factor(key, "1.5")
            await feed.reconcile()
            assert abs(feed.drift["maintenance_margin"] - THIRD) < D("1e-6"), feed.drift
            # a third where the ratio is equity / MM (Binance, Bybit); OKX's mgnRatio is
            # equity / (MM + the liquidation fee), the fee as alertd's: less, the same at any
            # size within the first tier
            ratio_drift = feed.drift["margin_ratio"]
            fake.delay_pushes(key)
            fake.open_position(key, btc, "long", "0.5", "60000")  # its push late
            # the first answer with figures held, answered as of its request: 0.5 already
            fake.hold_rest(*FIRST_READ[exchange])
            snapshots = feed.snapshots
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the first read held")
            fake.release_pushes(key)  # the late frame of the reduce, during the read
            await eventually(lambda: contracts(feed) == D("0.5"), what="the late push")
            fake.release_rest()
            await reconcile
            assert feed.snapshots == snapshots + 1
            assert abs(feed.drift["maintenance_margin"] - THIRD) < D("1e-6"), feed.drift
            assert abs(feed.drift["margin_ratio"] - ratio_drift) < D("0.01"), feed.drift

    run(body())


def test_a_fill_is_held_by_its_size_not_by_the_other_fields_of_its_row() -> None:
    """Whether the first answer holds a position push is seen by the sizes: a push's row and
    a REST row of one fill may differ in what the push does not carry (Binance's
    ``ACCOUNT_UPDATE``: no liquidation price, no leverage); the other fields of the row do not
    make a held fill look new (before: the whole rows compared, the reviewer's doubt)."""
    pushed = AccountState("a", get_spec("binanceusdm").profile, "USDT")
    pushed.positions[LONG] = PositionState(BTC, Side.LONG, D("0.5"), D(60000), MarginMode.CROSS)
    read = moment_of(pushed)
    read.positions[LONG] = dataclasses.replace(
        pushed.positions[LONG], leverage=D(10), exchange_liquidation_price=D(41000)
    )
    assert same_part(pushed, read, Part.POSITIONS)
    read.positions[LONG] = dataclasses.replace(read.positions[LONG], contracts=D("0.8"))
    assert not same_part(pushed, read, Part.POSITIONS)
