"""The exchanges' own published worked examples, each with its source.

Exchanges display rounded figures; each check rounds alertd's exact result the way the source
shows it (2 decimals for prices on the help pages, 8 decimals for Binance API amounts).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

import pytest

from alertd.engine.margin import PositionMetrics, compute
from alertd.engine.profiles import ExchangeProfile, FeeTerm
from alertd.engine.tiers import Tier, TierTable, deduction_warnings, derive_deductions
from alertd.exchanges.bybit import PROFILE as BYBIT

from .support.snapshots import account, metrics, one_position, position, q, snapshot, tiers

D = Decimal

# Binance BTCUSDT brackets of 2021, as used by the Binance FAQ "How to Calculate Liquidation
# Price of USDⓈ-M Futures Contracts" (b3c689c1f50a44cabb3a84e663b81d93).
BINANCE_BTC_2021 = [
    ("50000", "0.004", "0"),
    ("250000", "0.005", "50"),
    ("1000000", "0.01", "1300"),
    ("10000000", "0.025", "16300"),
    ("20000000", "0.05", "266300"),
    ("50000000", "0.1", "1266300"),
    ("100000000", "0.125", "2516300"),
    ("200000000", "0.15", "5016300"),
    ("300000000", "0.25", "25016300"),
    (None, "0.5", "100016300"),
]
BINANCE_ETH_2021 = [
    ("10000", "0.005", "0"),
    ("100000", "0.0065", "15"),
    ("500000", "0.01", "365"),
    ("1000000", "0.02", "5365"),
    ("2000000", "0.05", "35365"),
    ("5000000", "0.1", "135365"),
    ("10000000", "0.125", "260365"),
    ("20000000", "0.15", "510365"),
    (None, "0.25", "2510365"),
]


def test_binance_maintenance_amount_level_3() -> None:
    # Binance FAQ b3c689c1f50a44cabb3a84e663b81d93, notes:
    # "250,000 * (1% - 0.5%) + 50 = 1,300".
    caps = [D(c) if c else None for c, _, _ in BINANCE_BTC_2021[:3]]
    mmrs = [D(m) for _, m, _ in BINANCE_BTC_2021[:3]]
    assert derive_deductions(caps, mmrs) == [D(0), D(50), D(1300)]


def test_binance_position_risk_sample_adausdt() -> None:
    # developers.binance.com, USDⓈ-M "Position Information V3" sample response: ADAUSDT,
    # positionAmt 30, entryPrice 0.385, markPrice 0.41047590, notional 12.31427700,
    # unRealizedProfit 0.76427700, maintMargin 0.08004280 (mmr 0.65%), initialMargin 0.61571385.
    p = one_position(
        "binanceusdm",
        "100",
        "ADA/USDT:USDT",
        "long",
        "30",
        "0.385",
        "0.41047590",
        tiers([("50000", "0.0065", "0"), (None, "0.01", "175")]),
        leverage="20",
    )
    assert p.notional == D("12.31427700")
    assert p.unrealized_pnl == D("0.76427700")
    assert q(p.maintenance_margin, "1e-8") == D("0.08004280")
    assert p.initial_margin == D("0.61571385")


def test_binance_position_risk_sample_compusdt_hedge_short() -> None:
    # Same page, hedge-mode sample: COMPUSDT SHORT, positionAmt -1.000, entryPrice 70.92841,
    # markPrice 49.72023376, unRealizedProfit 21.20817624, maintMargin 0.49720233 (mmr 1%),
    # initialMargin 2.48601168 (20x). Binance truncates these amounts to 8 decimals.
    p = one_position(
        "binanceusdm",
        "100",
        "COMP/USDT:USDT",
        "short",
        "1",
        "70.92841",
        "49.72023376",
        tiers([("5000", "0.01", "0"), (None, "0.025", "75")]),
        leverage="20",
    )
    assert p.notional == D("49.72023376")
    assert p.unrealized_pnl == D("21.20817624")
    assert p.maintenance_margin.quantize(D("1e-8"), ROUND_DOWN) == D("0.49720233")
    assert p.initial_margin is not None
    assert p.initial_margin.quantize(D("1e-8"), ROUND_DOWN) == D("2.48601168")


def test_binance_cross_liquidation_prices_faq() -> None:
    # Binance FAQ b3c689c1f50a44cabb3a84e663b81d93 worked example (as reproduced, "From calc
    # example", in freqtrade tests/exchange/test_binance.py): wallet 1,535,443.01; BTCUSDT long
    # 109.488 @ 32,481.98 (mark 31,967.27); ETHUSDT long 3,683.979 @ 1,456.84 (mark 1,335.18);
    # published LP 26,316.89 (BTC, with TMM1 356,512.508 and UPNL1 -448,192.89 from ETH) and
    # 1,153.26 (ETH, with TMM1 71,200.81144 and UPNL1 -56,354.57 from BTC).
    snap = snapshot(
        "binanceusdm",
        "1535443.01",
        [
            position(
                "BTC/USDT:USDT", "long", "109.488", "32481.98", "31967.27", tiers(BINANCE_BTC_2021)
            ),
            position(
                "ETH/USDT:USDT", "long", "3683.979", "1456.84", "1335.18", tiers(BINANCE_ETH_2021)
            ),
        ],
    )
    btc, eth = metrics(snap).positions
    # the other position's figures that the FAQ plugs in
    assert q(eth.maintenance_margin, "1e-3") == D("356512.508")
    assert q(eth.unrealized_pnl, "1e-2") == D("-448192.89")
    assert q(btc.maintenance_margin, "1e-5") == D("71200.81144")
    assert q(btc.unrealized_pnl, "1e-2") == D("-56354.57")
    # and the published liquidation prices; both fall in a higher bracket than at the mark,
    # so this also checks the re-solve in another tier
    assert q(btc.liquidation_price, "1e-2") == D("26316.89")
    assert q(eth.liquidation_price, "1e-2") == D("1153.26")


def test_binance_single_position_liquidation_faq() -> None:
    # Binance FAQ 25edcd7fe0e544839d0847b8cbb2e400 ("avoid liquidation"): wallet 500 USDT, long
    # 1,000 USDT of BTCUSDT at 50,000 (0.02 BTC), mmr 0.4%, cum 0: liquidation price 25,100.40.
    p = one_position(
        "binanceusdm",
        "500",
        "BTC/USDT:USDT",
        "long",
        "0.02",
        "50000",
        "50000",
        tiers(BINANCE_BTC_2021),
    )
    assert q(p.liquidation_price, "1e-2") == D("25100.40")


def test_binance_coinm_maintenance_margin() -> None:
    # Binance COIN-M FAQ ceccfcfb4e3a45e3b48b0b1bb1a8ae46: 100 BTCUSD contracts of 100 USD at
    # mark 25,000 is 0.4 BTC of notional; maintenance margin at 0.4% = 0.0016 BTC.
    p = one_position(
        "binancecoinm",
        "1",
        "BTC/USD:BTC",
        "long",
        "100",
        "25000",
        "25000",
        tiers([("5", "0.004", "0"), (None, "0.005", "0.005")]),
        contract_size="100",
        inverse=True,
        settle="BTC",
    )
    assert p.notional == D("0.4")
    assert p.maintenance_margin == D("0.0016")


def test_binance_coinm_maintenance_amount_level_5() -> None:
    # Binance COIN-M FAQ (older version): level 5 maintenance amount
    # "50 * (5% - 2.5%) + 0.56 = 1.81" BTC.
    assert D(50) * (D("0.05") - D("0.025")) + D("0.56") == D("1.81")
    table = TierTable.build([Tier(D(50), D("0.025"), D("0.56")), Tier(None, D("0.05"), D("1.81"))])
    # the level 4 -> 5 step alone is checked here (level 4's own deduction is not published)
    assert [w for w in deduction_warnings(table) if w[0] == 1] == []


BYBIT_TIERS = tiers([("2000000", "0.005", "0"), ("2600000", "0.0056", "1200")])


# Bybit's rules before 2025-09-02 (the help centre's worked examples): isolated MM at the
# entry price, no fee to close in it
BYBIT_BEFORE_2025_09 = replace(BYBIT, fee_term=FeeTerm.NONE, isolated_mm_at_entry=True)


def bybit_isolated_btc(
    side: str,
    entry: str,
    mark: str,
    margin: str,
    profile: ExchangeProfile = BYBIT,
    **extra: str,
) -> PositionMetrics:
    """1 BTCUSDT on Bybit, isolated with ``margin``, in the tiers above."""
    held = position(
        "BTC/USDT:USDT", side, "1", entry, mark, BYBIT_TIERS,
        mode="isolated", isolated_margin=margin, **extra,
    )  # fmt: skip
    acc = account(snapshot("bybit", "0", [held]))
    return compute(replace(acc, profile=profile)).positions[0]


@pytest.mark.parametrize(
    ("side", "margin", "published"),
    [
        # Bybit help "Liquidation Price (USDT Contract)", isolated, Example 1: long 1 BTC at
        # 20,000, 50x, mmr 0.5%: IM 400, MM 100 -> liquidation price 19,700.
        ("long", "400", "19700"),
        # Example 2: the same position short, with 3,000 USDT extra margin -> 23,300.
        ("short", "3400", "23300"),
        # Example 3: long, 200 USDT of funding taken from position margin -> 19,900.
        ("long", "200", "19900"),
    ],
)
def test_bybit_isolated_liquidation_before_2025_09(side: str, margin: str, published: str) -> None:
    # The mark is away from entry on purpose: Bybit valued MM at the entry price then.
    p = bybit_isolated_btc(side, "20000", "20150", margin, BYBIT_BEFORE_2025_09, leverage="50")
    assert p.liquidation_price == D(published)
    assert p.maintenance_margin == D(100)
    assert p.initial_margin == D(400)


@pytest.mark.parametrize(("side", "margin"), [("long", "400"), ("short", "3400"), ("long", "200")])
def test_bybit_isolated_liquidation_since_2025_09(side: str, margin: str) -> None:
    # "The New Margin Calculation: Adjustments and Implications" (Bybit help, 2025-09-02),
    # isolated USDT contracts: Position MM = (size x mark x MM rate - MM deduction) + size x
    # entry x (1 -+ 1/leverage) x taker fee rate. The examples above under these rules: the
    # liquidation price is where margin + upl(P) = MM(P), fixed (not moving with the mark).
    p = bybit_isolated_btc(side, "20000", "20150", margin, leverage="50")
    sign = 1 if side == "long" else -1
    fee = 20000 * (1 - sign * D(1) / 50) * D("0.00055")  # 10.78 long, 11.22 short
    assert p.maintenance_margin == 20150 * D("0.005") + fee
    liq = (sign * 20000 - D(margin) + fee) / (sign - D("0.005"))
    assert p.liquidation_price == liq
    assert (
        p.liquidation_price
        == bybit_isolated_btc(side, "20000", "19000", margin, leverage="50").liquidation_price
    )


def test_bybit_close_fee_from_a_recorded_position() -> None:
    # A recorded Bybit BTCUSDT cross position (ccxt fetch_positions info, 2024-10-05, quoted in
    # a public project's docstring): short 0.37 at 61,748.39486486, 10x, mark 61,804.1,
    # positionValue 22,846.9061, positionIM 2,298.5129882, positionMM 128.0569087. Both hold
    # the same fee to close at the bankruptcy price, 0.37 x entry x (1 + 1/10) x 0.055%:
    # IM - value / 10 = 13.8223782 and MM - value x 0.5% = 13.8223782.
    held = position(
        "BTC/USDT:USDT", "short", "0.37", "61748.39486486", "61804.1", BYBIT_TIERS,
        leverage="10",
    )  # fmt: skip
    p = metrics(snapshot("bybit", "10000", [held])).positions[0]
    fee = p.maintenance_margin - D("0.37") * D("61804.1") * D("0.005")
    assert abs(fee - D("13.8223782")) < D("1e-7")
    assert abs(D("2298.5129882") - D("22846.9061") / 10 - fee) < D("1e-7")


def test_bybit_bankruptcy_price() -> None:
    # Bybit help "Bankruptcy Price (USDT Contract)": a 50x long at 10,000 goes bankrupt at
    # 10,000 * (1 - 1/50) = 9,800.
    p = bybit_isolated_btc("long", "10000", "10000", "200")
    assert p.bankruptcy_price == D(9800)


def test_bybit_rounds_liquidation_towards_mark() -> None:
    # Bybit rounds a long's liquidation price up, a short's down, to the tick (no leverage
    # given: the fee to close counts at the entry price, 11)
    for side, margin in (("long", "400.05"), ("short", "399.95")):
        p = bybit_isolated_btc(side, "20000", "20000", margin, tick_size="0.5")
        sign = 1 if side == "long" else -1
        raw = (sign * 20000 - D(margin) + 11) / (sign - D("0.005"))
        up = ROUND_CEILING if side == "long" else ROUND_FLOOR
        assert p.liquidation_price == (raw * 2).to_integral_value(rounding=up) / 2
        assert p.liquidation_price != raw


def test_bybit_tier_2_deduction() -> None:
    # exchanges.md, Bybit BTCUSDT risk limit tier 2: cap 2,600,000 above 2,000,000, mmr 0.56%
    # over 0.5%: deduction 2,000,000 * 0.06% = 1,200.
    derived = derive_deductions([D(2000000), D(2600000)], [D("0.005"), D("0.0056")])
    assert derived[1] == D(1200)


def test_binance_btcusdt_brackets_2024_satisfy_the_recursion() -> None:
    # exchanges.md, Binance BTCUSDT brackets (API capture, October 2024).
    rows = [
        ("50000", "0.004", "0"),
        ("600000", "0.005", "50"),
        ("3000000", "0.0065", "950"),
        ("12000000", "0.01", "11450"),
        ("70000000", "0.02", "131450"),
        ("100000000", "0.025", "481450"),
        (None, "0.05", "2981450"),
    ]
    table = TierTable.build([Tier(D(c) if c else None, D(m), D(d)) for c, m, d in rows])
    assert deduction_warnings(table) == []
    caps = [D(c) if c else None for c, _, _ in rows]
    assert derive_deductions(caps, [D(m) for _, m, _ in rows]) == [D(d) for _, _, d in rows]


GATE_CAPS = ["20000", "50000", "100000", "200000", "1000000", "2000000", "3000000", None]
GATE_MMRS = ["0.004", "0.0045", "0.005", "0.007", "0.01", "0.02", "0.05", "0.5"]


@pytest.mark.parametrize(
    ("notional", "tier", "mmr"),
    [("15000", 1, "0.004"), ("20000", 1, "0.004"), ("150000", 4, "0.007"), ("4000000", 8, "0.5")],
)
def test_gate_risk_limit_tiers(notional: str, tier: int, mmr: str) -> None:
    # Gate help "Risk Limit" (22162), BTCUSDT 2025: caps 20k/50k/100k/200k/1M/2M/3M/5M, mmr
    # 0.40/0.45/0.50/0.70/1.00/2.00/5.00/50.00%. Since 2025-07-29 Gate uses gradient tiers, so
    # alertd derives the deductions and MM stays continuous. The taker fee (0.075%) joins the rate.
    p = one_position(
        "gate",
        "1000000",
        "BTC/USDT:USDT",
        "long",
        notional,
        "1",
        "1",
        [{"max_notional": c, "mmr": m} for c, m in zip(GATE_CAPS, GATE_MMRS, strict=True)],
    )
    assert p.tier + 1 == tier
    assert p.mmr == D(mmr)
    caps = [D(c) if c else None for c in GATE_CAPS]
    deduction = derive_deductions(caps, [D(m) for m in GATE_MMRS])[tier - 1]
    assert p.maintenance_margin == D(notional) * (D(mmr) + D("0.00075")) - deduction


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("exchange", ["okx", "gate"])
def test_okx_gate_isolated_formula(exchange: str, side: str) -> None:
    # exchanges.md, OKX and Gate isolated (linear), Gate help 27724 and OKX "Tiered maintenance
    # margin ratio rules": LP = (EP -+ margin / (contract_size * size)) / (1 -+ (mmr + fee)).
    size, cs, entry, margin, mmr = D(120), D("0.01"), D(64000), D(800), D("0.004")
    fee = D("0.0005") if exchange == "okx" else D("0.00075")
    cap = "max_contracts" if exchange == "okx" else "max_notional"
    p = one_position(
        exchange,
        "0",
        "BTC/USDT:USDT",
        side,
        str(size),
        str(entry),
        "63500",
        [{cap: None, "mmr": str(mmr), "deduction": "0"}],
        mode="isolated",
        isolated_margin=str(margin),
        contract_size=str(cs),
    )
    s = 1 if side == "long" else -1
    expected = (entry - s * margin / (cs * size)) / (1 - s * (mmr + fee))
    assert p.liquidation_price == expected


@pytest.mark.parametrize(
    ("side", "mode", "margin"),
    [("long", "isolated", "10000"), ("short", "isolated", "5000"), ("long", "cross", "20000")],
)
def test_hyperliquid_liquidation_formula(side: str, mode: str, margin: str) -> None:
    # Hyperliquid docs "Liquidations": liq_price = price - side * margin_available / size /
    # (1 - l * side), l = 1 / maintenance leverage = 1 / (2 * max leverage); cross
    # margin_available = account value - maintenance margin. "Margin tiers": BTC 40x.
    price, size, max_lev = D(100000), D(1), D(40)
    wallet = margin if mode == "cross" else "0"
    p = one_position(
        "hyperliquid",
        wallet,
        "BTC/USDC:USDC",
        side,
        str(size),
        str(price),
        str(price),
        [{"max_notional": None, "max_leverage": str(max_lev)}],
        mode=mode,
        isolated_margin=margin if mode == "isolated" else None,
        settle="USDC",
    )
    s = 1 if side == "long" else -1
    l_rate = 1 / (2 * max_lev)
    assert p.mmr == l_rate
    margin_available = D(margin) - price * size * l_rate
    expected = price - s * margin_available / size / (1 - l_rate * s)
    assert q(p.liquidation_price, "1e-18") == q(expected, "1e-18")
