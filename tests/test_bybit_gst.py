"""Bybit's fee to close for a GST-paying account (kyc=IND), through ``alertd snapshot`` and
``alertd calc`` on the local Bybit: the fee term holds the GST the account's fills pay on the
trading fee, as a live position's MM does (tests/test_adapters_more.py,
``test_bybit_s_fee_to_close_holds_the_gst_its_fills_pay``: ``positionMMByMp`` 0.26025039 =
MM + the fee to close x 1.18). The local Bybit lists the tax beside each fill's ``feeRate`` in
``extraFees`` and computes its IM, MM and liquidation prices with the fee x (1 + GST).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from alertd.engine.model import Side
from alertd.exchanges.bybit import GST_GAP, UNRATED_TAX_BY_REGION, kyc_region
from alertd.feeds.adapter import FrameError
from tests.fake_exchange.base import FakeExchangeServer
from tests.fake_exchange.bybit import FakeBybit
from tests.support.aio import async_test
from tests.support.fakes import ccxt_client
from tests.support.process import alertd
from tests.test_feed_matrix import VENUES, World, world
from tests.test_snapshot_exchanges import (
    Holding,
    Leg,
    _comparison_tables,
    _config,
    _key,
    _open_book,
    _reported_liquidations,
)

# India's 18% GST on the fee ("Indian GST tax. Only for kyc=Indian users", Bybit v5 enums,
# extraFees.feeType): a live fill's GST feeRate 0.000099 on its feeRate 0.00055
GST = "0.18"
BOOK = {
    "india": Holding(
        "400000",
        (
            Leg("BTC", "long", "40", entry_move="0.01"),  # 2.6M: tier 2
            Leg("ETH", "short", "20", entry_move="-0.01"),
            Leg("SOL", "long", "300", "isolated", "0.02"),
        ),
    )
}


def test_a_gst_paying_account_s_figures_match_bybit_s(
    tmp_path: Path, fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]]
) -> None:
    fake = fake_in_thread("bybit")
    _open_book(fake, "bybit", BOOK)
    fake.set_gst(_key("bybit", "india"), GST)  # type: ignore[attr-defined]
    config, env = _config(tmp_path, fake, "bybit", BOOK)

    table = alertd("snapshot", "-c", str(config), env=env)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    # every figure Bybit reports (each position's MM and liquidation price, the pool's MM and
    # ratio) agrees with alertd's: without the GST the MM rows differ by about 1.5%
    rows = _comparison_tables(table.stdout)["india"]
    assert rows and not [r for r in rows if r[-1] == "NO"], table.stdout

    written = alertd("snapshot", "-c", str(config), "--json", "--account", "india", env=env)
    assert written.returncode == 0, written.stderr
    snapshot = json.loads(written.stdout)
    # the account's taker rate with the GST on it: 0.055% x 1.18
    assert {p["fee_rate"] for p in snapshot["positions"]} == {"0.000649"}
    path = tmp_path / "india.json"
    path.write_text(written.stdout)
    calc = alertd("calc", str(path), "--json", env=env)
    assert calc.returncode == 0, calc.stderr
    ours = {
        (p["symbol"], p["side"]): Decimal(p["liquidation_price"])
        for p in json.loads(calc.stdout, parse_float=Decimal)["positions"]
    }
    theirs = asyncio.run(_reported_liquidations(fake, "bybit", "india"))
    assert sorted(ours) == sorted(theirs)
    for key, reported in theirs.items():
        assert abs(ours[key] - reported) <= fake.tick(key[0]), (key, ours[key], reported)


def _gst_untold(
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
) -> tuple[FakeExchangeServer[Any, Any], str]:
    """The local Bybit with the book's GST-paying account ``india`` (and its key), whose
    fills and KYC region Bybit both refuses (10005)."""
    fake = fake_in_thread("bybit")
    _open_book(fake, "bybit", BOOK)
    key = _key("bybit", "india")
    fake.set_gst(key, GST)  # type: ignore[attr-defined]
    fake.script_fills(key, refuse=10005)  # type: ignore[attr-defined]
    fake.script_key_info(key, refuse=10005)  # type: ignore[attr-defined]
    return fake, key


def test_snapshot_and_calc_show_how_low_an_unknown_gst_leaves_the_mm(
    tmp_path: Path, fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]]
) -> None:
    """A GST-paying account whose fills and KYC region Bybit both refuses: ``alertd snapshot``
    says the fee to close lacks the GST and writes the gap into the snapshot; ``alertd calc``
    says by how much the maintenance margin is low at most, and that is what Bybit's own
    positions' MM (with the GST) holds above alertd's."""
    fake, key = _gst_untold(fake_in_thread)
    config, env = _config(tmp_path, fake, "bybit", BOOK)

    table = alertd("snapshot", "-c", str(config), env=env)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    said = " ".join(table.stdout.split())
    gap = "fee to close without the GST an India-KYC account pays (18% on the fee)"
    assert f"warning: india: {gap}: maintenance margin up to " in said, said
    written = alertd("snapshot", "-c", str(config), "--json", "--account", "india", env=env)
    assert written.returncode == 0, written.stderr
    assert "without the GST" in written.stderr
    snapshot = json.loads(written.stdout)
    assert snapshot["fee_gap"] == {"what": "the GST an India-KYC account pays", "share": "0.18"}
    assert {p["fee_rate"] for p in snapshot["positions"]} == {"0.00055"}
    path = tmp_path / "india.json"
    path.write_text(written.stdout)

    calc = alertd("calc", str(path), "--json", env=env)
    assert calc.returncode == 0, calc.stderr
    out = json.loads(calc.stdout, parse_float=Decimal)
    left = Decimal(out["fee_gap"]["maintenance_margin_left_out"])
    ours = sum(Decimal(p["maintenance_margin"]) for p in out["positions"])
    theirs = asyncio.run(_reported_maintenance_margins(fake, key))
    # Bybit's MM holds the fee to close with the GST: above alertd's by what calc says, to
    # Bybit's 8 decimals a position
    assert abs(theirs - ours - left) <= Decimal("1e-8") * len(out["positions"]), (theirs, ours)
    assert Decimal(out["fee_gap"]["share_of_maintenance_margin"]) == left / ours
    shown = alertd("calc", str(path), env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"maintenance margin up to {left.quantize(Decimal('0.01'), ROUND_CEILING)} USDT (" in (
        " ".join(shown.stderr.split())
    ), shown.stderr


def test_an_account_alertd_does_not_compute_shows_no_gst_gap(
    tmp_path: Path, fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]]
) -> None:
    """A portfolio-margin account (Bybit's own ratio, which holds Bybit's GST, stands in for
    alertd's): ``alertd snapshot`` says alertd does not compute it, and no fee gap, though
    neither the fills nor the region told the GST: the gap is of alertd's own figures."""
    fake, key = _gst_untold(fake_in_thread)
    fake.set_margin_mode(key, "PORTFOLIO_MARGIN")  # type: ignore[attr-defined]
    config, env = _config(tmp_path, fake, "bybit", BOOK)

    table = alertd("snapshot", "-c", str(config), env=env)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    said = " ".join(table.stdout.split())
    assert "warning: india: alertd does not compute Bybit portfolio margin" in said, said
    assert "without the GST" not in said, said


async def _reported_maintenance_margins(fake: FakeExchangeServer[Any, Any], key: str) -> Decimal:
    """The sum of Bybit's own ``positionMM`` of the account's positions."""
    async with ccxt_client(fake, "bybit", key, "secret-india") as client:
        positions = await client.fetch_positions()
    return sum((Decimal(str(p["info"]["positionMM"])) for p in positions), Decimal(0))


# Ways GET /v5/execution/list can fail an account's read of its GST: a key without the
# permission (retCode 10005, "Permission denied", bybit v5 "Error Codes"), a request Bybit
# refuses (10001), and fills whose ``extraFees`` alertd cannot read (not JSON, a GST row with no
# rate, an object where a list belongs, a GST rate 9,090 times the fee: no tax is, one whose
# share of the fee overflows Decimal's context: decimal.Overflow failed every bootstrap)
UNREADABLE_FILLS = {
    "permission denied": {"refuse": 10005},
    "params error": {"refuse": 10001},
    "extraFees not JSON": {"extra_fees": "{GST:0.000099}"},
    "GST row without feeRate": {"extra_fees": [{"feeType": "GST", "feeCoin": "USDT"}]},
    "extraFees an object": {"extra_fees": {}},
    "GST above the fee": {"extra_fees": [{"feeType": "GST", "feeRate": "5"}]},
    "GST overflowing": {"extra_fees": [{"feeType": "GST", "feeRate": "1e999999"}]},
    # a string of JSON (as the REST docs type it) nested past Python's parser: its
    # RecursionError is no ValueError, and escaped the read
    "extraFees nested past the parser": {"extra_fees": "[" * 100_000 + "]" * 100_000},
    # no fee type of the v5 enums (extraFees.feeType, a string): a list or an object raised
    # TypeError (unhashable) in the fee types' set, which escaped the read: every bootstrap
    # failed (review of bybit12, test_rvprobe_feetype.py)
    "feeType a list": {"extra_fees": [{"feeType": ["GST"], "feeRate": "0.000099"}]},
    "feeType an object": {"extra_fees": [{"feeType": {"GST": 1}, "feeRate": "0.000099"}]},
}


def _bybit(w: World) -> FakeBybit:
    assert isinstance(w.fake, FakeBybit)
    return w.fake


async def _bootstraps_without_the_gst(w: World) -> None:
    """The account bootstraps, not stopped, at Bybit's own taker rate without the GST it could
    not read, the gap kept in its state."""
    state = w.feed.state
    await w.until(lambda: state.fatal is not None or state.connected, "bootstrap")
    assert state.fatal is None
    assert state.fee_rates == {VENUES["bybit"].btc: Decimal("0.00055")}
    assert state.fee_gap == GST_GAP


@pytest.mark.parametrize("fills", list(UNREADABLE_FILLS.values()), ids=list(UNREADABLE_FILLS))
@async_test(120)
async def test_unreadable_fills_and_region_leave_the_gst_unknown_and_shown(
    fills: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The GST is a part of the fee term (15% of it for India's 18%); fills alertd cannot read
    and a KYC region it cannot read leave it unknown: logged once, the gap kept in the state
    (status, snapshots and calc show it), and the account computed at its fee rate without
    it: not stopped (the old code stopped it on a refusal) nor kept from bootstrapping (a
    malformed answer failed every try)."""
    venue = VENUES["bybit"]
    caplog.set_level(logging.WARNING)

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_fills(venue.key, **fills)
        _bybit(w).script_key_info(venue.key, refuse=10005)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await _bootstraps_without_the_gst(w)
        await w.feed.reconcile()
        await w.feed.reconcile()
        assert state.fatal is None and state.fee_rates == {venue.btc: Decimal("0.00055")}
        assert state.fee_gap == GST_GAP
        # asked at the bootstrap, not again while the account holds the same symbols
        assert _bybit(w).fills_asked(venue.key) == 1
        assert _bybit(w).key_info_asked(venue.key) == 1
    told = [r.getMessage() for r in caplog.records if "GST" in r.getMessage()]
    assert len(told) == 1, told
    assert "/v5/user/query-api" in told[0], told


# How GET /v5/execution/list tells nothing of the GST while the key's KYC region does: no fill
# in the 7 days Bybit lists, or fills refused (10005)
SILENT_FILLS = {"no fill in 7 days": {"listed": False}, "fills refused": {"refuse": 10005}}


@pytest.mark.parametrize("fills", list(SILENT_FILLS.values()), ids=list(SILENT_FILLS))
@pytest.mark.parametrize(
    ("region", "share"),
    [("IND", GST), ("MYS", "0")],
    ids=["kyc=IND pays 18%", "kyc=MYS pays none"],
)
@async_test(120)
async def test_without_a_fill_the_kyc_region_tells_the_gst(
    fills: dict[str, Any], region: str, share: str
) -> None:
    """Where no fill tells, the key's KYC region does (GET /v5/user/query-api ``kycRegion``,
    readable with any permission): India's documented 18% GST on the fee for kyc=IND (help
    centre, "FAQ — GST and TDS in India"), no tax elsewhere; nothing left unknown."""
    venue = VENUES["bybit"]

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, share)
        _bybit(w).set_kyc_region(venue.key, region)
        _bybit(w).script_fills(venue.key, **fills)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.fatal is not None or state.connected, "bootstrap")
        assert state.fatal is None and state.fee_gap is None
        assert state.fee_rates == {venue.btc: Decimal("0.00055") * (1 + Decimal(share))}
        await w.feed.reconcile()
        assert state.fee_rates == {venue.btc: Decimal("0.00055") * (1 + Decimal(share))}
        assert _bybit(w).key_info_asked(venue.key) == 1


@pytest.mark.parametrize(
    ("share", "rate"),
    [(GST, "0.000649"), ("0", "0.00055")],
    ids=["a fill with GST", "a fill without GST, kyc=IND"],
)
@async_test(120)
async def test_a_fill_that_tells_asks_no_region(share: str, rate: str) -> None:
    """A fill that tells the GST is the account's own answer: the key's region is not asked.
    A kyc=IND account whose fill pays no GST (an exemption the region cannot show) pays none:
    the fill outranks the region (docs/exchanges.md, the UTA cross row)."""
    venue = VENUES["bybit"]

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, share)
        _bybit(w).set_kyc_region(venue.key, "IND")

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.connected, "bootstrap")
        assert state.fee_rates == {venue.btc: Decimal(rate)} and state.fee_gap is None
        assert _bybit(w).key_info_asked(venue.key) == 0


@async_test(120)
async def test_fills_refused_at_a_later_reconcile_do_not_stop_a_live_account() -> None:
    """No fill in Bybit's 7-day window at the bootstrap: the KYC region tells the GST; once the
    account trades another symbol the fills are asked again at the reconcile, and a key
    refused them then (10005) leaves the live account running (it stopped it) at the
    region's GST."""
    venue = VENUES["bybit"]

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_fills(venue.key, listed=False)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.connected, "bootstrap")
        assert _bybit(w).fills_asked(venue.key) == 1
        _bybit(w).script_fills(venue.key, refuse=10005)
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "short", "1", "3000")
        await w.until(lambda: (venue.eth, Side.SHORT) in state.positions, "ETH opened")
        await w.feed.reconcile()
        await w.feed.reconcile()
        assert state.fatal is None and state.connected
        assert _bybit(w).fills_asked(venue.key) == 2
        # the region (kyc=IND) told the GST at the bootstrap already
        assert set(state.fee_rates.values()) == {Decimal("0.000649")}
        assert _bybit(w).key_info_asked(venue.key) == 1


def test_the_kyc_region_as_bybit_answers_it() -> None:
    """ "Get API Key Information"'s example answer (bybit-exchange/docs,
    docs/v5/user/apikey-info.mdx: ``"kycLevel": "LEVEL_1", "kycRegion": "MYS"``); an answer
    without a region is one alertd cannot read, never "no tax": "" (the same docs' answer of an
    account without KYC, ``"kycLevel": "LEVEL_DEFAULT", "kycRegion": ""``) tells none, and
    anything but an ISO 3166 alpha-3 code ("India", "IN") is malformed."""
    example = {"retCode": 0, "result": {"kycLevel": "LEVEL_1", "kycRegion": "MYS"}}
    assert kyc_region(example) == "MYS"
    assert kyc_region({"result": {"kycRegion": " ind "}}) == "IND"
    assert kyc_region({"result": {"kycLevel": "LEVEL_DEFAULT", "kycRegion": ""}}) is None
    for malformed in ({"result": {"kycLevel": "LEVEL_1"}}, {"result": None}, [], {"result": 7}):
        with pytest.raises(FrameError, match="kycRegion"):
            kyc_region(malformed)
    for code in ("India", "IN", "I1D", "ÍND", "IND,MYS"):
        with pytest.raises(FrameError, match="kycRegion"):
            kyc_region({"result": {"kycRegion": code}})


# kycRegion answers that do not tell the GST: none (an account without KYC, as Bybit's docs
# answer it; a sub-account's key, undocumented) or not a region code
UNTOLD_REGIONS = {"no region (no KYC)": ("", False), "not a code": ("India", True)}


@pytest.mark.parametrize(("region", "malformed"), UNTOLD_REGIONS.values(), ids=UNTOLD_REGIONS)
@async_test(120)
async def test_a_region_that_is_no_code_leaves_the_gst_unknown_and_shown(
    region: str, malformed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """No fill in Bybit's 7 days and a ``kycRegion`` that names no region: the GST is unknown
    (Bybit's GST FAQ taxes an Indian proof of address or declared address too, so no KYC
    region is no proof of no tax), the gap shown and told once, the account computed at
    Bybit's rate without it; it was read as "no tax" silently."""
    venue = VENUES["bybit"]
    caplog.set_level(logging.WARNING)

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).set_kyc_region(venue.key, region)
        _bybit(w).script_fills(venue.key, listed=False)

    async with world(venue, setup=setup) as w:
        await _bootstraps_without_the_gst(w)
        await w.feed.reconcile()
        assert w.feed.state.fee_gap == GST_GAP and _bybit(w).key_info_asked(venue.key) == 1
        assert (w.feed.malformed != {}) is malformed
    told = [r.getMessage() for r in caplog.records if "GST" in r.getMessage()]
    assert len(told) == 1 and "kycRegion" in told[0], told


@async_test(120)
async def test_a_reconcile_failed_at_the_stops_keeps_the_gap_with_the_rates_it_was_read_for() -> (
    None
):
    """The fee gap goes with the fee rates it was read with: a reconcile whose stops' read
    fails (after the fee rates were read, before they are kept) keeps both as they were. The
    gap was set at once, so fills that told the GST at last cleared it while the rates kept
    were still without the GST: figures low and nothing said."""
    venue = VENUES["bybit"]

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_key_info(venue.key, refuse=10005)
        # the fills' read fails (asked again at the next read), the region is refused
        w.fake.fail_rest(500, 1_000, path_prefix="/v5/execution/list")

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await _bootstraps_without_the_gst(w)
        w.fake.stop_failing()  # the fills now tell the GST
        w.fake.fail_rest(500, 1_000, path_prefix="/v5/order/realtime")
        with pytest.raises(ccxt.BaseError):  # what a reconcile logs as failed
            await w.feed.resync()  # a reconcile's read, the stops with it
        assert state.fee_rates == {venue.btc: Decimal("0.00055")}
        assert state.fee_gap == GST_GAP  # still: the rates kept are without the GST
        w.fake.stop_failing()
        await w.feed.resync()
        assert state.fee_gap is None
        assert state.fee_rates == {venue.btc: Decimal("0.000649")}


# "Get API Key Information" answers alertd cannot read, served as the HTTP 200 body (the fake's
# ``script_key_info(body=...)``): none of them is a ccxt error or a region
HOSTILE_KEY_INFO = {
    "kycRegion a number": '{"retCode":0,"retMsg":"OK","result":{"kycRegion":356}}',
    "kycRegion a list": '{"retCode":0,"retMsg":"OK","result":{"kycRegion":["IND"]}}',
    "result a list": '{"retCode":0,"retMsg":"OK","result":[{"kycRegion":"IND"}]}',
    "the JSON a list": '[{"retCode":0,"result":{"kycRegion":"IND"}}]',
    "the JSON a string": '"IND"',
    "the JSON null": "null",
    "the JSON a number": "0",
    "nested past the parser's depth": "[" * 100_000 + "]" * 100_000,
    "not JSON": "<html>bad gateway</html>",
}


@pytest.mark.parametrize("body", list(HOSTILE_KEY_INFO.values()), ids=list(HOSTILE_KEY_INFO))
@async_test(120)
async def test_a_hostile_key_info_answer_is_a_malformed_answer_not_the_end_of_the_account(
    body: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No fill in Bybit's 7 days, and a ``/v5/user/query-api`` answer that is no answer: logged
    once as malformed and skipped, the gap shown, the account live at Bybit's rate without the
    GST. None of these escaped when the test was written: ccxt answers a body that is no JSON
    object (a list, a string, null, a number, nested past Python's recursion limit, not
    JSON) with its own error, which the read catches, and :func:`kyc_region` a region that is
    no string as malformed. The test pins both: a ccxt upgrade that lets such a body through
    as something else fails here."""
    venue = VENUES["bybit"]
    caplog.set_level(logging.WARNING)

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_fills(venue.key, listed=False)
        _bybit(w).script_key_info(venue.key, body=body)

    async with world(venue, setup=setup) as w:
        await _bootstraps_without_the_gst(w)
        await w.feed.reconcile()
        assert w.feed.state.fatal is None and w.feed.state.connected
        assert w.feed.state.fee_gap == GST_GAP and _bybit(w).key_info_asked(venue.key) == 1
    told = [r.getMessage() for r in caplog.records if "GST" in r.getMessage()]
    assert len(told) == 1 and "/v5/user/query-api" in told[0], told
    assert "Traceback" not in caplog.text


# a kyc=ARE fill's VAT row (v5 enums, extraFees.feeType "VAT": "ARE VAT tax. Only for kyc=ARE
# users"; subFeeType "ARE_VAT"), here at 5% of the 0.055% taker fee
ARE_VAT = [{"feeCoin": "USDT", "feeType": "VAT", "subFeeType": "ARE_VAT", "feeRate": "0.0000275"}]


# (how the fills answer, the fee rate alertd uses, the gap it shows)
UAE_READS = {
    "a fill with VAT": ({"extra_fees": ARE_VAT}, "0.0005775", None),
    "no fill in 7 days": ({"listed": False}, "0.00055", UNRATED_TAX_BY_REGION["ARE"]),
}


@pytest.mark.parametrize(("fills", "rate", "gap"), UAE_READS.values(), ids=UAE_READS)
@async_test(120)
async def test_a_uae_account_s_vat_is_read_from_its_fill_else_unknown_and_shown(
    fills: dict[str, Any], rate: str, gap: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """kyc=ARE: a fill carries its VAT beside the fee as an India-KYC account's carries its
    GST, and the fee to close counts it (0.055% x 1.05; the old code read GST rows only).
    Without a fill the tax is unknown and shown: Bybit taxes the fee ("VAT") at a rate it
    does not document, so the region tells no rate (the gap at most the UAE's standard 5%),
    never "no tax" as the old code read any region but India; told once."""
    venue = VENUES["bybit"]
    caplog.set_level(logging.WARNING)

    def setup(w: World) -> None:
        _bybit(w).set_kyc_region(venue.key, "ARE")
        _bybit(w).script_fills(venue.key, **fills)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.fatal is not None or state.connected, "bootstrap")
        await w.feed.reconcile()
        assert state.fatal is None and state.fee_rates == {venue.btc: Decimal(rate)}
        assert state.fee_gap == gap
        assert _bybit(w).key_info_asked(venue.key) == (0 if gap is None else 1)
    told = [r.getMessage() for r in caplog.records if "VAT" in r.getMessage()]
    assert told == [] if gap is None else len(told) == 1 and "kycRegion ARE" in told[0], told
