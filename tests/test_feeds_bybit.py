"""alertd's Bybit v5 feed against the local fake exchange, through ccxt unmodified."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path

import pytest

from alertd.config import RuleConfig
from alertd.engine.margin import compute
from alertd.engine.model import MarginMode, Side
from alertd.exchanges.bybit import BybitAdapter
from alertd.feeds.feed import AccountFeed
from alertd.snapshot.format import account_to_json

from .fake_exchange.bybit import FakeBybit
from .support.aio import run
from .support.fakes import ccxt_client, started
from .support.feeds import (
    BTC,
    FAST,
    FAST_OPTIONS,
    account_config,
    bootstrapped,
    btc_long,
    counted_reconciles,
    kept_open,
    make_feed,
    mark_arrives,
    running,
    running_manager,
    secrets,
    streaming,
)
from .support.poll import eventually
from .support.process import alertd
from .test_account_modes import Evaluated

D = Decimal
ETH = "ETH/USDT:USDT"


def started_fake() -> AbstractAsyncContextManager[FakeBybit]:
    """The fake Bybit, serving account "key-b" with 8,000 USDT."""
    return started(FakeBybit(), [("key-b", "secret-b", "8000")])


def test_bootstrap_and_figures_agree_with_bybit() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "20150")
            fake.open_position(
                "key-b",
                BTC,
                "long",
                "1",
                "20000",
                margin_mode="isolated",
                isolated_margin="400",
                leverage=50,
            )
            fake.set_mark(ETH, "3250")
            fake.open_position("key-b", ETH, "long", "10", "3300")
            feed = await bootstrapped(
                make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            )
            state = feed.state
            assert state.missing() == []
            btc = state.positions[(BTC, Side.LONG)]
            assert btc.margin_mode is MarginMode.ISOLATED and btc.isolated_margin == D(400)
            metrics = compute(state.to_account())
            for pm in metrics.positions:
                figures = state.reported_positions[pm.position.key]
                assert figures.maintenance_margin is not None
                assert abs(pm.maintenance_margin - figures.maintenance_margin) < D("0.01")
                if figures.liquidation_price is not None and pm.liquidation_price is not None:
                    # Bybit rounds liquidation prices to the tick; alertd does too
                    assert abs(pm.liquidation_price - figures.liquidation_price) <= D("0.1")

    run(body())


def deprecated_isolated_long(fake: FakeBybit) -> Decimal:
    """An isolated 50x 1 BTC long at 20,000 (mark 20,150) on "key-b", ``positionBalance``
    sent as ``"0"``; its Position IM: 20,000 / 50 and the fee to close at the bankruptcy
    price."""
    fake.deprecate_position_balance()
    fake.set_mark(BTC, "20150")
    fake.open_position("key-b", BTC, "long", "1", "20000", margin_mode="isolated", leverage=50)
    return D(400) + 20000 * D("0.98") * D("0.00055")


def test_a_login_refused_as_expired_is_sent_again_and_the_account_streams() -> None:
    """Bybit refuses a login that arrives past its ``expires`` with "Params Error" (ccxt signs
    it 10 s ahead: a start of 1,000 accounts at load 14 had 19 arrive late). ccxt fails the
    account's private watches but keeps the login for sent, and the retried watches on the
    still open connection waited for it forever: the account never streamed, feed-down fired
    and stayed (benchmarks.md, session 12). Now the retry logs in again: a position change
    pushed after the refusal reaches the feed."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "20000")
            fake.open_position("key-b", BTC, "long", "1", "20000")
            fake.late_login("key-b")
            feed = make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            async with running(feed):
                key = (BTC, Side.LONG)
                await eventually(lambda: key in feed.state.positions, what="the position")
                refused_then_in = [("key-b", False), ("key-b", True)]
                await eventually(lambda: fake.logins == refused_then_in, what="a second login")
                fake.open_position("key-b", BTC, "long", "3", "20000")  # pushed
                await eventually(
                    lambda: feed.state.positions[key].contracts == 3,
                    what="the pushed position (the private stream logged in again)",
                )

    run(body(), timeout_s=60)


def test_a_quiet_account_whose_login_was_refused_is_connected_once_it_logs_in_again() -> None:
    """A refused login fails the private watches on a socket that stays open: the account
    is no longer connected. The retried watch logs in on that same socket, so no opening
    follows to say it streams again, and a quiet account pushes nothing: it stayed
    disconnected for good, feed-down fired and never resolved while its stream was up (5 of
    1,000 accounts at a start at load 14-15, twice refused in a row as well; issue 14,
    session 16). Now the accepted login says it: connected again, with no push."""

    async def body() -> None:
        async with started_fake() as fake:
            btc_long(fake, "key-b")
            fake.late_login("key-b")
            feed = make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            async with running(feed):
                await eventually(lambda: len(fake.logins) == 1, what="the refused login")
                fake.late_login("key-b")  # the retry refused as well
                await connected_after(fake, feed, [False, False, True])

    run(body(), timeout_s=60)


def test_a_login_refused_after_a_drop_in_the_hosts_pace_is_connected_once_in_again() -> None:
    """As above, with the host's pace of openings (a manager's account): the private socket
    dropped, opened again in its turn (connected), its login then refused as expired fails
    its watches on the open socket; the retry's accepted login, with no opening and no push,
    says it streams again."""

    async def body() -> None:
        async with started_fake() as fake:
            btc_long(fake, "key-b")
            accounts = [account_config("b", "bybit", fake)]
            async with running_manager(accounts, {"b": ("key-b", "secret-b")}) as manager:
                feed = manager.feeds["b"]
                assert feed.shared is not None and feed.shared.ip_budget.openings is not None
                await eventually(lambda: fake.logins == [("key-b", True)], what="logged in")
                await eventually(lambda: feed.state.connected, what="streaming")
                fake.late_login("key-b")
                await fake.drop_connections(kind="private")
                await connected_after(fake, feed, [True, False, True])

    run(body(), timeout_s=60)


async def connected_after(fake: FakeBybit, feed: AccountFeed, accepted: list[bool]) -> None:
    """Once "key-b"'s logins were refused or ``accepted`` so, the last accepted on a socket
    that stayed open, the feed is connected (with no opening and no push after it)."""
    logins = [("key-b", ok) for ok in accepted]
    await eventually(lambda: fake.logins == logins, what=f"the logins {accepted}")
    await eventually(lambda: feed.state.connected, what="connected again (its login accepted)")


def test_an_isolated_position_whose_position_balance_is_deprecated_reads_its_im() -> None:
    """Bybit deprecates ``positionBalance`` ("can refer to positionIM"), and the field still
    arrives as ``"0"`` on open positions: alertd read that as an isolated margin of nothing,
    a false liquidation. Here the local Bybit sends ``"0"`` on an isolated 50x BTC long with
    no margin added, whose margin is then its Position IM (at the entry, with the fee to close
    at the bankruptcy price, as a recorded 50x FTMUSDT row has it: positionBalance 0.1220222 =
    10 x 0.5941 / 50 + 10 x 0.5941 x 0.98 x 0.055%, thibaultyou/trading-toolbox,
    back/src/modules/exchange/types/position-data.interface.ts), and alertd's liquidation
    price and maintenance margin are Bybit's."""

    async def body() -> None:
        async with started_fake() as fake:
            im = deprecated_isolated_long(fake)
            feed = await bootstrapped(
                make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            )
            state = feed.state
            btc = state.positions[(BTC, Side.LONG)]
            assert btc.isolated_margin == im  # positionIM, not the "0" sent
            (pm,) = compute(state.to_account()).positions
            bybit = state.reported_positions[(BTC, Side.LONG)]
            assert bybit.liquidation_price is not None and pm.liquidation_price is not None
            assert abs(pm.liquidation_price - bybit.liquidation_price) <= D("0.1")
            assert bybit.maintenance_margin is not None
            assert abs(pm.maintenance_margin - bybit.maintenance_margin) < D("0.01")
            assert pm.margin_ratio < 1

    run(body())


def test_an_isolated_position_with_margin_added_by_hand_liquidates_at_bybit_s_price(
    tmp_path: Path,
) -> None:
    """Without ``positionBalance`` (deprecated, sent as ``"0"``) margin added to an isolated
    position by hand is in no field: ``positionIM`` is the Position IM. alertd solved the
    liquidation price from it, 19,698.50 for a 50x BTC long at 20,000 with 300 USDT added,
    where Bybit's is about 300 lower, and a 2% liquidation-distance rule fired at a mark of
    20,000. Now the margin is the one Bybit's ``liqPrice`` implies: the live book, the rule,
    ``compute``, a snapshot and ``alertd calc`` all put the liquidation at Bybit's price."""

    async def body() -> None:
        async with started_fake() as fake:
            im = deprecated_isolated_long(fake)
            feed = make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            state = feed.state
            evaluate = Evaluated(feed, NEAR_LIQUIDATION_2PCT)
            key = (BTC, Side.LONG)
            async with streaming(feed):
                fake.add_margin("key-b", BTC, "300")  # pushed on the position stream
                async with ccxt_client(fake, "bybit", "key-b", "secret-b") as client:
                    answer = await client.privateGetV5PositionList(
                        {"category": "linear", "settleCoin": "USDT"}
                    )
                (row,) = answer["result"]["list"]
                assert row["positionBalance"] == "0" and D(row["positionIM"]) == im
                bybit = D(row["liqPrice"])
                assert bybit < D("19698.5") - 250  # the 300 USDT in it

                def implied() -> Decimal | None:
                    (held,) = state.to_account().positions
                    margin = held.isolated_margin
                    return margin if margin is not None and margin > im + 250 else None

                # the position frame Bybit pushed: its liqPrice gives the margin (was: im)
                margin = await eventually(implied, what="the margin Bybit's liqPrice implies")
                assert state.positions[key].isolated_margin == im  # all Bybit sends of it
                assert im + 300 - D(1) <= margin <= im + 300  # within tick x qty

                await mark_arrives(fake, feed, "20000")
                assert evaluate(1.0) == []  # was: firing at 1.51% from 19,698.50
                live = evaluate.book.live("b")
                assert live.liquidation_price(0) == bybit
                distance = live.liquidation_distance(0)
                assert distance is not None and distance > D("0.02")

                await mark_arrives(fake, feed, "19750")
                assert evaluate(2.0) == [("firing", f"b/{BTC}/long", None)]
                live = evaluate.book.live("b")
                assert live.liquidation_price(0) == bybit
                (pm,) = compute(state.to_account()).positions
                assert pm.liquidation_price == bybit
                assert pm.liquidation_distance == live.liquidation_distance(0)
                assert pm.margin_ratio == live.worst_ratio
                # the ratio reaches 1 at Bybit's price (its tick holds the rounding)
                (at_liq,) = compute(state.to_account({BTC: bybit})).positions
                assert D("0.999") < at_liq.margin_ratio <= 1
                assert pm.bankruptcy_price is not None and pm.bankruptcy_price < bybit

            path = tmp_path / "bybit.json"
            path.write_text(json.dumps(account_to_json(state.to_account())))
            result = alertd("calc", str(path), "--json")
            assert result.returncode == 0, result.stderr
            (calculated,) = json.loads(result.stdout)["positions"]
            assert D(calculated["liquidation_price"]) == bybit

    run(body())


NEAR_LIQUIDATION_2PCT = RuleConfig(
    name="near-liq", metric="liquidation_distance", below=D("0.02"), severity="critical"
)


@contextlib.asynccontextmanager
async def btc_collateral_account() -> AsyncIterator[FakeBybit]:
    """The fake Bybit serving account "key-c": 2,000 USDT borrowed, 0.5 BTC of collateral
    at 59,940 (tiered: 95% of the first 0.2 BTC, 90% above) following the BTC mark at
    60,000, and a 0.3 BTC long."""
    async with started(FakeBybit(), [("key-c", "secret-c", "-2000")]) as fake:
        fake.set_mark(BTC, "60000")
        fake.open_position("key-c", BTC, "long", "0.3", "60000")
        fake.set_collateral_tiers("BTC", [("0.2", "0.95"), (None, "0.9")])
        fake.set_collateral("key-c", "BTC", "0.5", "59940", None, follows=BTC)
        yield fake


def test_btc_collateral_and_a_btc_long_in_the_unified_cross_pool() -> None:
    """A UTA cross account whose USDT is borrowed (-2,000) and whose collateral is 0.5 BTC
    (tiered: 95% of the first 0.2 BTC, 90% above) holding a 0.3 BTC long: the pool counts
    the BTC at its tiered value, the coin falls with the long, and alertd's ratio and
    liquidation price are Bybit's (no false "liquidated" from the negative USDT wallet)."""

    async def body() -> None:
        async with btc_collateral_account() as fake:
            feed = await bootstrapped(
                make_feed(account_config("c", "bybit", fake), "key-c", "secret-c")
            )
            state = feed.state
            assert state.computable and state.wallet_balance == D(-2000)
            (btc,) = state.collateral
            assert (btc.asset, btc.amount, btc.price, btc.price_symbol) == (
                "BTC",
                D("0.5"),
                D("59940"),
                BTC,
            )
            # 0.2 x 0.95 + 0.3 x 0.9 = 0.46 BTC counted at 59,940
            assert btc.value == D("0.46") * D("59940")
            metrics = compute(state.to_account())
            assert metrics.pool.margin_balance == -2000 + D("0.46") * D("59940")
            assert metrics.pool.margin_ratio < 1  # far from liquidated
            assert feed.comparison is not None and feed.comparison.mismatches == ()
            # liquidation: -2000 + 0.46 x 0.999 P + 0.3 (P - 60000) = 0.3 P x 0.005 (tier 1)
            # + the fee to close at the bankruptcy price (10x: 0.3 x 54,000 x 0.055%)
            liq = metrics.positions[0].liquidation_price
            fee = D("0.3") * 54000 * D("0.00055")
            expected = (2000 + D("0.3") * 60000 + fee) / (
                D("0.46") * D("0.999") + D("0.3") * D("0.995")
            )
            tick = D("0.1")
            assert liq is not None and liq - tick < expected <= liq
            # the USDT wallet alone (alertd before) is past liquidation: a false critical
            usdt_only = compute(dataclasses.replace(state.to_account(), collateral=()))
            assert usdt_only.pool.margin_balance < 0
            reported = state.reported_positions[(BTC, Side.LONG)].liquidation_price
            assert reported == liq  # Bybit's (the fake's) estimate moves the coin too

    run(body())


def test_a_tick_during_the_coins_read_keeps_the_coin_s_basis_to_its_mark() -> None:
    """A reconcile's wallet answer (the coins' prices) is slow; the BTC mark falls 5% on the
    stream meanwhile. The answer priced BTC at the older mark: the coin keeps its basis to
    that one (59,940 / 60,000) and falls with the mark from there, not valued at its old
    price against the new mark (5% too high in a fall, until the next read)."""

    async def body() -> None:
        async with btc_collateral_account() as fake:
            feed = make_feed(account_config("c", "bybit", fake), "key-c", "secret-c")
            async with kept_open(feed):
                feed.record_mark(BTC, D(60000), 0.0)
                fake.hold_rest("/v5/account/wallet-balance")
                resync = asyncio.create_task(feed.resync())
                await eventually(lambda: fake.held_answers() == 1, what="the slow answer")
                feed.record_mark(BTC, D(57000), 1.0)  # the stream's tick, while it waits
                fake.release_rest()
                await resync
                (btc,) = feed.state.collateral
                assert btc.price_over_mark == D(59940) / D(60000)
                (moved,) = feed.state.to_account().collateral
                assert moved.price == D(57000) * D(59940) / D(60000)

    run(body())


USDC_BTC = "BTC/USDC:USDC"


async def bybit_totals(fake: FakeBybit, key: str, secret: str) -> dict[str, Decimal]:
    """The local Bybit's own USD totals ("Get Wallet Balance") and its liquidation price of
    each USDC perpetual, read through ccxt's REST client."""
    async with ccxt_client(fake, "bybit", key, secret) as client:
        answer = await client.privateGetV5AccountWalletBalance({"accountType": "UNIFIED"})
        usdc = await client.privateGetV5PositionList({"category": "linear", "settleCoin": "USDC"})
    (wallet,) = answer["result"]["list"]
    (position,) = usdc["result"]["list"]
    return {
        "margin_balance": D(wallet["totalMarginBalance"]),
        "maintenance_margin": D(wallet["totalMaintenanceMargin"]),
        "liquidation_price": D(position["liqPrice"]),
    }


def test_usdc_perpetuals_count_on_usdc_s_own_line_at_its_usd_value() -> None:
    """A unified cross account with 8,000 USDT and 3,000 USDC, a USDT long and a USDC short,
    USDC's USD index at 0.9990 and its tiered collateral value ratio 1 up to 2,000 USDC, 0.9
    above: alertd counts USDC's equity (its wallet and the short's PnL) after the ratio at
    0.9990 and the short's MM at 0.9990, as Bybit does; its margin balance, MM and the USDC
    short's liquidation price are Bybit's, at the snapshot and after the USDC mark moves
    (no reconcile: the line moves with the mark). Read as a coin with the short's PnL at par
    (alertd before), the margin balance was 10,797.10 where Bybit's is 10,807.19."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "60000")
            fake.add_symbol(USDC_BTC, "60000")
            fake.set_usd_price("USDC", "0.9990")
            fake.set_collateral_tiers("USDC", [("2000", "1"), (None, "0.9")])
            fake.set_balance("key-b", "3000", coin="USDC")
            fake.open_position("key-b", BTC, "long", "0.2", "60000")
            fake.open_position("key-b", USDC_BTC, "short", "0.5", "59800")
            feed = make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            async with kept_open(feed):
                state = feed.state
                assert state.computable
                for mark in ("60000", "59500", "60400"):
                    fake.set_mark(USDC_BTC, mark, push=False)
                    feed.record_mark(USDC_BTC, D(mark), 1.0)
                    metrics = compute(state.to_account())
                    bybit = await bybit_totals(fake, "key-b", "secret-b")
                    mb, mm = metrics.pool.margin_balance, metrics.pool.maintenance_margin
                    assert abs(mb - bybit["margin_balance"]) <= D("1e-6") * mb, (mark, mb, bybit)
                    assert abs(mm - bybit["maintenance_margin"]) <= D("1e-6") * mm, (mark, mm)
                    short = next(p for p in metrics.positions if p.position.symbol == USDC_BTC)
                    assert short.liquidation_price is not None
                    assert abs(short.liquidation_price - bybit["liquidation_price"]) <= D("0.1")
                # USDC is a line of its own, not a coin
                (usdc,) = state.margin_assets
                assert state.collateral == () and usdc.asset == "USDC"
                assert usdc.wallet_balance == D(3000)
                assert usdc.terms is not None and usdc.terms.rates is not None
                assert usdc.terms.rates.bid == usdc.terms.rates.ask == D("0.999")

    run(body())


def test_a_usdc_pushed_after_the_snapshot_is_lined_at_once_not_at_the_next_reconcile() -> None:
    """A unified cross account holding a USDT long, no USDC at its last snapshot: a USDC
    deposit (the ``wallet`` push) leaves USDC without an equity line, the account incomplete,
    until a snapshot reads it. With the reconcile an hour away, the feed snapshots at once
    (after the settle delay): USDC is lined and the account computed again within seconds.
    Before, it stayed incomplete until the reconcile (the reviewer's probe_push.py)."""

    async def body() -> None:
        async with started(FakeBybit(mark_interval_s=0.3), [("key-b", "secret-b", "8000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.add_symbol(USDC_BTC, "60000")
            fake.open_position("key-b", BTC, "long", "1", "60000")
            slow = FAST.model_copy(update={"reconcile_interval_s": 3600})
            feed = AccountFeed(
                account_config("b", "bybit", fake), secrets("key-b", "secret-b"), slow, FAST_OPTIONS
            )
            unlined: list[list[str]] = []
            feed.listeners.append(lambda f, *_: unlined.append(f.state.unlined_margin_assets()))
            async with streaming(feed):
                state = feed.state
                await eventually(lambda: state.computable, what="computable")
                await asyncio.sleep(4)  # past the start's settle resync: the snapshot is older
                assert state.margin_assets == ()
                # the wallet subscription may not be up yet: deposit again until it pushes
                for _ in range(40):
                    fake.set_balance("key-b", "1000", coin="USDC")
                    await asyncio.sleep(0.5)
                    if ["USDC"] in unlined or state.margin_assets:
                        break
                assert ["USDC"] in unlined  # the push came before any snapshot lined USDC
                await eventually(
                    lambda: state.computable and [m.asset for m in state.margin_assets] == ["USDC"],
                    timeout_s=5,
                    what="USDC lined after its wallet push",
                )

    run(body())


def test_a_usdc_equity_of_0_leaves_usdc_unlined_not_the_bootstrap_failed() -> None:
    """A unified cross account whose USDC equity is 0 (no USDC wallet, a USDC perpetual at
    its entry) gives no USD value for USDC: the bootstrap completes, the account incomplete
    naming USDC (never at par) with its USDT long read. Before, the whole bootstrap failed
    (FrameError) and was retried, the USDT long unmonitored (the reviewer's probe_boot.py)."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "60000")
            fake.add_symbol(USDC_BTC, "60000")
            fake.open_position("key-b", BTC, "long", "1", "60000")
            fake.open_position("key-b", USDC_BTC, "short", "0.1", "60000")
            feed = await bootstrapped(
                make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            )
            state = feed.state
            assert state.bootstrapped and not state.computable
            assert state.unlined_margin_assets() == ["USDC"]
            assert any(s == BTC for s, _ in state.positions)

    run(body())


def _resyncs_for_unlined(caplog: pytest.LogCaptureFixture) -> int:
    return sum("resynced for the unlined" in r.getMessage() for r in caplog.records)


@contextlib.asynccontextmanager
async def _usdc_dust_pushed(
    usdc_usd: str, dust: str, pushes: int
) -> AsyncIterator[tuple[FakeBybit, AccountFeed]]:
    """A unified cross account (a USDT long, USDC at ``usdc_usd``, the reconcile an hour
    away) streamed past its start; a USDC wallet of ``dust`` pushed (again until the wallet
    subscription carries it) and the snapshot it asks landed; then ``pushes`` USDT changes
    (fees, fills, funding: each a ``wallet`` frame carrying the USDC row again)."""
    async with started(FakeBybit(mark_interval_s=0.3), [("key-b", "secret-b", "8000")]) as fake:
        fake.set_mark(BTC, "60000")
        fake.add_symbol(USDC_BTC, "60000")
        fake.set_usd_price("USDC", usdc_usd)
        fake.open_position("key-b", BTC, "long", "1", "60000")
        slow = FAST.model_copy(update={"reconcile_interval_s": 3600})
        feed = AccountFeed(
            account_config("b", "bybit", fake), secrets("key-b", "secret-b"), slow, FAST_OPTIONS
        )
        async with streaming(feed):
            state = feed.state
            await eventually(lambda: state.computable, what="computable")
            await asyncio.sleep(4)  # past the start's settle resync
            for _ in range(40):
                fake.set_balance("key-b", dust, coin="USDC")
                await asyncio.sleep(0.5)
                if "USDC" in state.pool_wallets or state.margin_assets:
                    break
            await asyncio.sleep(2)  # the snapshot the push asked for lands
            for i in range(pushes):
                fake.set_balance("key-b", str(8000 + i))
                await asyncio.sleep(1)
            yield fake, feed


def test_a_usdc_dust_wallet_is_lined_at_its_own_usd_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """0.5 USDC of dust (equity below LINE_MIN_EQUITY, no USD value read before): its own
    ``usdValue / equity`` lines it (0.4995 / 0.5: 0.999 to 1e-8), the account computed; the
    USDT pushes that follow ask no snapshot. Before, USDC stayed unlined and every wallet
    push (each snapshot clears the pushed wallets) asked a full REST snapshot again: 7 for
    6 pushes (the reviewer's test_usdc_dust_resyncs.py)."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with _usdc_dust_pushed("0.999", "0.5", pushes=4) as (fake, feed):
            before = _resyncs_for_unlined(caplog)
            assert before <= 1  # the dust's own push, if it came before the snapshot
            state = feed.state
            assert [m.asset for m in state.margin_assets] == ["USDC"]
            (usdc,) = state.margin_assets
            assert usdc.terms is not None and usdc.terms.rates is not None
            assert usdc.terms.rates.bid == D("0.999")
            assert state.computable and state.unlined_margin_assets() == []
            for i in range(3):
                fake.set_balance("key-b", str(9000 + i))
                await asyncio.sleep(1)
            assert _resyncs_for_unlined(caplog) == before

    run(body())


def test_a_usdc_wallet_without_any_usd_value_asks_one_snapshot_not_one_per_push(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A USDC wallet whose ``usdValue`` rounds to 0 (1e-8 USDC at an index of 0.4: Bybit's
    8 decimals) gives no USD value at all: USDC stays unlined, the account incomplete naming
    it (after the snapshot as after the push), and its push asks one snapshot; the USDT
    pushes that follow carry the same USDC row (the same cause) and ask none. Before, every
    wallet push asked a full REST snapshot, which cleared USDC until the next push."""
    caplog.set_level(logging.INFO)

    async def body() -> None:
        async with _usdc_dust_pushed("0.4", "0.00000001", pushes=4) as (_, feed):
            state = feed.state
            assert state.margin_assets == ()
            assert state.unlined_margin_assets() == ["USDC"] and not state.computable
            assert _resyncs_for_unlined(caplog) == 1

    run(body())


def _fee_rates_every_third_reconcile(fake: FakeBybit) -> AccountFeed:
    """Account b holding a BTC and an ETH long, its fee rates read every 3rd reconcile."""
    fake.set_mark(BTC, "60000")
    fake.open_position("key-b", BTC, "long", "1", "60000")
    fake.set_mark(ETH, "3000")
    fake.open_position("key-b", ETH, "long", "10", "3000")
    settings = FAST.model_copy(update={"fee_rates_reconcile_every": 3})
    return AccountFeed(
        account_config("b", "bybit", fake), secrets("key-b", "secret-b"), settings, FAST_OPTIONS
    )


def test_fee_rates_are_read_again_every_n_th_reconcile_and_when_the_holdings_change() -> None:
    """Bybit's fee-rate answer lists every linear symbol once more than one is held (the
    largest part of a calm reconcile's CPU at 550 markets, docs/benchmarks.md calm13); the
    account's rates follow its VIP level, set once a day: read at the bootstrap, at every
    ``fee_rates_reconcile_every``-th reconcile and whenever the held symbols change, the
    last read's rates kept between (the same figures). Before, every reconcile read them."""

    async def body() -> None:
        async with started_fake() as fake:
            feed = _fee_rates_every_third_reconcile(fake)

            def fee_reads() -> int:
                return sum(path == "/v5/account/fee-rate" for _, path in fake.requests)

            async with kept_open(feed):
                assert fee_reads() == 1  # the bootstrap's
                rates = dict(feed.state.fee_rates)
                assert set(rates) == {BTC, ETH}
                reads = []
                for _ in range(6):
                    await feed.reconcile()
                    reads.append(fee_reads())
                    assert feed.state.fee_rates == rates  # kept or read again: the same
                # the 3rd and 6th reconciles read them
                assert reads == [1, 1, 2, 2, 2, 3]
                # a symbol newly held: read at the next snapshot, whichever reconcile it is
                fake.set_mark("SOL/USDT:USDT", "150")
                fake.open_position("key-b", "SOL/USDT:USDT", "long", "10", "150")
                await feed.reconcile()
                assert fee_reads() == 4
                assert set(feed.state.fee_rates) == {BTC, ETH, "SOL/USDT:USDT"}

    run(body())


def test_a_failed_reconcile_due_to_read_the_fee_rates_leaves_them_due_at_the_next() -> None:
    """Every 3rd reconcile reads the rates; the account's VIP level changes after the 2nd
    and the 3rd fails (a 503 on the positions): the 4th reads them, not the 6th (review of
    calm13: the count alone decided, so a failed n-th reconcile pushed the read a cycle)."""

    async def body() -> None:
        async with started_fake() as fake:
            feed = _fee_rates_every_third_reconcile(fake)
            async with kept_open(feed):
                old = feed.state.fee_rates[BTC]
                await feed.reconcile()
                await feed.reconcile()
                fake.set_fee_rate("key-b", "0.0004")  # a new VIP level
                fake.fail_rest(503, path_prefix="/v5/position/list")
                seen = []
                for _ in range(3):
                    await feed.reconcile()
                    seen.append(feed.state.fee_rates[BTC])
                assert seen == [old, Decimal("0.0004"), Decimal("0.0004")]

    run(body())


def _usdt_long_and_usdc_wallet(fake: FakeBybit, net_every: int) -> AccountFeed:
    """Account b: a BTC long (USDT) and a USDC wallet (USDC lined from the start, so a USDC
    position pushed asks no snapshot of its own); every ``net_every``-th reconcile a net."""
    fake.add_symbol(USDC_BTC, "60000")
    fake.set_balance("key-b", "1000", coin="USDC")
    fake.set_mark(BTC, "60000")
    fake.open_position("key-b", BTC, "long", "1", "60000")
    settings = FAST.model_copy(update={"stops_reconcile_every": net_every})
    return AccountFeed(
        account_config("b", "bybit", fake), secrets("key-b", "secret-b"), settings, FAST_OPTIONS
    )


def test_a_usdc_perpetual_held_at_start_is_in_the_daemon_s_bootstrap() -> None:
    """The daemon's bootstrap (``run``: no stops read, not a reconcile's net) lists every
    settle coin's positions: a USDC short held at start is in the account once bootstrapped
    (calm14 left the USDC list out of it, nothing being held or pushed yet: the short missing
    and a false "differs from the exchange" until the start's settle resync, which waits
    behind every bootstrap of the host; review of calm14, finding 1)."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.add_symbol(USDC_BTC, "60000")
            fake.set_balance("key-b", "1000", coin="USDC")
            fake.set_mark(BTC, "60000")
            fake.open_position("key-b", BTC, "long", "1", "60000")
            fake.open_position("key-b", USDC_BTC, "short", "0.5", "60000")
            settings = FAST.model_copy(update={"reconcile_interval_s": 3600})
            feed = AccountFeed(
                account_config("b", "bybit", fake),
                secrets("key-b", "secret-b"),
                settings,
                FAST_OPTIONS,
            )
            held: list[set[str]] = []
            feed.listeners.append(
                lambda f, change, symbol: (
                    held.append(set(f.state.held_symbols))
                    if f.state.bootstrapped and not held
                    else None
                )
            )
            async with running(feed):
                await eventually(lambda: bool(held), what="bootstrapped")
            assert held[0] == {BTC, USDC_BTC}

    run(body(), timeout_s=60)


def test_the_usdc_positions_are_listed_while_held_or_pushed_and_at_every_net_reconcile() -> None:
    """An account holding USDT perpetuals and a USDC wallet, streaming: its reconciles list
    USDT positions only, the USDC list
    asked at every ``stops_reconcile_every``-th (the net for a missed push); a USDC short
    opened (pushed on the all-in-one ``position`` topic) is listed from the next reconcile
    on and kept by it, not dropped as a position the snapshot left out. Before, every
    reconcile asked for the USDC list: a second position request per calm reconcile."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.timed_requests = []
            feed = _usdt_long_and_usdc_wallet(fake, net_every=3)

            def usdc_lists() -> int:
                assert fake.timed_requests is not None
                return sum(
                    path == "/v5/position/list" and "settleCoin=USDC" in query
                    for _, _, path, query in fake.timed_requests
                )

            async with streaming(feed):
                first, seen = await counted_reconciles(feed, usdc_lists, 3)
                assert seen == [0, 0, 1]  # the 3rd reconcile is the net
                fake.open_position("key-b", USDC_BTC, "short", "0.5", "60000")
                await eventually(
                    lambda: USDC_BTC in feed.state.held_symbols, what="the USDC short pushed"
                )
                await feed.reconcile()  # the 4th: not a net, but USDC was pushed
                assert usdc_lists() - first == 2
                assert USDC_BTC in feed.state.held_symbols  # kept by the snapshot
                await feed.reconcile()  # held: listed again
                assert usdc_lists() - first == 3
                assert USDC_BTC in feed.state.held_symbols

    run(body())


def test_a_usdc_position_pushed_before_a_failed_reconcile_is_listed_by_the_next() -> None:
    """A USDC short pushed, then a reconcile that fails before it lists the positions (a 503
    on the account info): the next reconcile, not a net one, still lists the USDC positions
    and keeps the short (review of calm14: the push was forgotten when the failed snapshot
    began, and the next snapshot dropped the short until the next net reconcile)."""

    async def body() -> None:
        async with started_fake() as fake:
            feed = _usdt_long_and_usdc_wallet(fake, net_every=5)
            async with streaming(feed):
                await eventually(lambda: feed.state.stops is not None, what="the start's resync")
                fake.open_position("key-b", USDC_BTC, "short", "0.5", "60000")
                await eventually(
                    lambda: USDC_BTC in feed.state.held_symbols, what="the USDC short pushed"
                )
                fake.fail_rest(503, path_prefix="/v5/account/info")
                await feed.reconcile()  # the 1st: fails at its first read
                await feed.reconcile()  # the 2nd: not a net
                assert USDC_BTC in feed.state.held_symbols

    run(body())


def test_a_position_pushed_in_a_usdc_market_listed_since_the_start_is_read_at_once() -> None:
    """A USDC perpetual listed after the account's catalogue was loaded, and a position
    opened in it (pushed: a market ccxt does not know, so no settle coin): the next
    reconcile, not a net one, lists the USDC positions, reloads the catalogue for it and
    holds it (review of calm14: the unknown market named no settle coin, so the USDC list
    waited for the next net reconcile)."""

    async def body() -> None:
        async with started_fake() as fake:
            feed = _usdt_long_and_usdc_wallet(fake, net_every=5)
            async with streaming(feed):
                await eventually(lambda: feed.state.stops is not None, what="the start's resync")
                eth_usdc = "ETH/USDC:USDC"
                fake.add_symbol(eth_usdc, "3000")
                fake.open_position("key-b", eth_usdc, "short", "2", "3000")
                adapter = feed.adapter
                assert isinstance(adapter, BybitAdapter)
                await eventually(lambda: adapter.pushed_settles, what="the push")
                await feed.reconcile()  # the 1st: not a net
                assert eth_usdc in feed.state.held_symbols

    run(body())


def test_a_usdc_position_pushed_while_a_reconcile_lists_is_listed_by_it() -> None:
    """The reconcile's USDT list answered slowly (as the state was when it arrived); a USDC
    short opened and pushed meanwhile: the same reconcile lists the USDC positions too, and
    its snapshot, which replaces the positions, keeps the short (review of calm14: it listed
    USDT only and dropped the pushed short until the next reconcile)."""

    async def body() -> None:
        async with started_fake() as fake:
            feed = _usdt_long_and_usdc_wallet(fake, net_every=5)
            adapter = feed.adapter
            assert isinstance(adapter, BybitAdapter)
            async with streaming(feed):
                await eventually(lambda: feed.state.stops is not None, what="the start's resync")
                fake.hold_rest("/v5/position/list")
                reconcile = asyncio.create_task(feed.reconcile())  # the 1st: not a net
                await eventually(lambda: fake.held_answers() == 1, what="the USDT list held")
                fake.open_position("key-b", USDC_BTC, "short", "0.5", "60000")
                await eventually(lambda: adapter.pushed_settles, what="the push")
                fake.release_rest()
                await reconcile
                assert USDC_BTC in feed.state.held_symbols

    run(body())


def test_an_accepted_login_is_told_by_its_code_as_ccxt_reads_it_never_by_a_bool() -> None:
    """Bybit's accepted ``auth`` in both shapes (its code a number or, as ccxt reads it, a
    string); a refusal, another op's reply and a malformed ``retCode: false`` (``False ==
    0`` in Python) are not logins (review of blind16)."""
    accepted = BybitAdapter.accepted_login
    assert accepted({"success": True, "ret_msg": "", "op": "auth", "conn_id": "c"})
    assert accepted({"retCode": 0, "retMsg": "OK", "op": "auth"})
    assert accepted({"retCode": "0", "retMsg": "OK", "op": "auth"})
    assert not accepted({"success": False, "ret_msg": "Params Error", "op": "auth"})
    assert not accepted({"retCode": False, "op": "auth"})
    assert not accepted({"success": True, "op": "subscribe"})
    assert not accepted(["auth"])
