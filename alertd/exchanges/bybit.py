"""Bybit v5 (unified trading account), USDT and USDC linear perpetuals in one pool.

Bybit values the pool in USD, every coin at its USD index ("UTA Trading Rules"): each settle
coin besides USDT (USDC) is an equity line of its own, its wallet plus its perpetuals' PnL at
its USD value and collateral value ratio, its perpetuals' MM at its USD value
(:func:`unified_margin_assets`).

Wire formats: bybit-exchange.github.io/docs/v5: "Get Position Info" (/v5/position/list),
"Get Wallet Balance" (/v5/account/wallet-balance), "Get Risk Limit" (/v5/market/risk-limit),
"Get Account Info" (/v5/account/info), "Get Tiered Collateral Ratio"
(/v5/spot-margin-trade/collateral), websocket topics ``position``, ``wallet`` and
``tickers.<symbol>`` (markPrice).

alertd reads unified trading accounts only (``accountType=UNIFIED``). Bybit answers a classic
account's UNIFIED request with an empty 404 (pybit issues #140, #173), which ccxt takes for an
outage and alertd would retry forever: the account type is checked first, at every snapshot
(:func:`account_mode`, which also reads the margin mode).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from alertd.engine.collateral import (
    Collateral,
    CollateralRatio,
    ConversionRates,
    RatioBasis,
    RatioTier,
    SettleTerms,
)
from alertd.engine.fee_gap import FeeGap
from alertd.engine.model import MarginAsset, MarginMode, Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile, FeeTerm
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import TierTable, TierTableError
from alertd.exchanges.common import (
    AdlScale,
    closed_both_sides,
    over_settle,
    price_quotient,
    risk_tiers,
    taker_fee_rates,
    usd_pool_coin,
    with_adl,
)
from alertd.exchanges.spec import (
    Capabilities,
    Credential,
    ExchangeSpec,
    IpBanAnswer,
    MarketFilter,
    TierSource,
)
from alertd.feeds.adapter import (
    ExchangeAdapter,
    FrameError,
    Snapshot,
    UnreadFee,
    dec,
    dec_or_none,
    stamp_or_none,
)
from alertd.feeds.state import AccountMode, Coverage, ModeReading, PositionState, ReportedAccount

log = logging.getLogger(__name__)

PROFILE = ExchangeProfile(
    id="bybit",
    name="Bybit",
    # since 2025-09-02 MM is valued at the mark in cross and isolated margin alike, plus the
    # estimated fee to close at the bankruptcy price ("The New Margin Calculation:
    # Adjustments and Implications") at the account's taker rate (/v5/account/fee-rate); the
    # base taker fee rate of perpetuals, 0.055%, where it is not known, as a recorded
    # position answer confirms (see tests/test_worked_examples.py)
    default_fee_rate=Decimal("0.00055"),
    fee_term=FeeTerm.CLOSE_AT_BANKRUPTCY,
    displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
    displayed_ratio_name="Account MM Rate",
    rounds_liquidation_to_tick=True,
)
# USDC perpetuals share the unified account's pool ("UTA Trading Rules"), on USDC's own equity
# line at its USD value (unified_margin_assets)
MARKETS = MarketFilter(settle="USDT", pooled=("USDC",))
MAX_ORDER_PAGES = 20  # of 50 open orders: a bound on one account's order listing
# Get Position Info ``adlRankIndicator`` (also in the position stream): 1-5, 5 first in line;
# 0 is the "default value of empty position" (v5 enums, adlRankIndicator): no rank
ADL = AdlScale(lowest=1, highest=5, none=frozenset({0}))

# /v5/account/info ``unifiedMarginStatus`` below 3 is not a unified trading account (docs v5,
# "Different Account Modes": 1 classic, 3 UTA 1.0, 4 UTA 1.0 pro, 5 UTA 2.0, 6 UTA 2.0 pro; 2
# was the retired unified margin account).
# /v5/account/info ``marginMode`` of the modes alertd computes; in REGULAR_MARGIN every
# collateral coin counts in the cross pool at its USD value times its tiered collateral value
# ratio (unified_collateral)
COMPUTED_MARGIN_MODES = {
    "REGULAR_MARGIN": AccountMode.UNIFIED_CROSS,
    "ISOLATED_MARGIN": AccountMode.UNIFIED_ISOLATED,
}
NOT_UTA = {1: "a classic (non-UTA) account", 2: "a unified margin account (UMA, not UTA)"}


def account_mode(account_info: dict[str, Any]) -> ModeReading:
    """The account's mode from "Get Account Info" (/v5/account/info): ``unifiedMarginStatus``
    (below 3: not a unified trading account, refused naming it) and ``marginMode``."""
    status = account_info.get("unifiedMarginStatus")
    code = int(status) if isinstance(status, int | str) and str(status).isdigit() else None
    if code is None or code < 3:
        what = NOT_UTA.get(code or 0, "an account of unknown type")
        return ModeReading(
            AccountMode.LEGACY if code in NOT_UTA else AccountMode.UNKNOWN,
            f"unifiedMarginStatus {status!r}",
            Coverage.REFUSED,
            f"bybit: {what} (unifiedMarginStatus {status!r}): alertd reads Unified Trading "
            "Accounts only; upgrade the account to UTA on Bybit, or remove it from the config",
        )
    margin_mode = account_info.get("marginMode")
    detail = f"unifiedMarginStatus {code}, marginMode {margin_mode}"
    if margin_mode in COMPUTED_MARGIN_MODES:
        return ModeReading(COMPUTED_MARGIN_MODES[margin_mode], detail)
    if margin_mode == "PORTFOLIO_MARGIN":
        return ModeReading.portfolio_margin(detail, "Bybit's own accountMMRate")
    return ModeReading(
        AccountMode.UNKNOWN,
        detail,
        Coverage.EXCHANGE_RATIO,
        f"a margin mode alertd does not know ({str(margin_mode)[:40]!r}): the margin ratio is "
        "Bybit's own accountMMRate",
    )


def risk_limits_to_table(rows: list[dict[str, Any]]) -> TierTable:
    """Bybit risk limits (``riskLimitValue``, ``maintenanceMargin``, ``mmDeduction``)."""

    def leverage(row: dict[str, Any]) -> Decimal | None:
        lev = row.get("maxLeverage")
        return dec(lev, "maxLeverage") if lev else None

    return risk_tiers(
        rows,
        cap="riskLimitValue",
        mmr="maintenanceMargin",
        deduction="mmDeduction",
        leverage=leverage,
    )


def collateral_ratio(rows: list[dict[str, Any]]) -> CollateralRatio:
    """A coin's tiered collateral value ratio from "Get Tiered Collateral Ratio"
    (``GET /v5/spot-margin-trade/collateral``: ``collateralRatioList`` of ``minQty``,
    ``maxQty`` in coins, "" for no upper limit, ``collateralRatio``)."""
    ordered = sorted(rows, key=lambda r: dec(r.get("minQty") or "0", "minQty"))
    tiers = []
    for row in ordered:
        cap = row.get("maxQty")
        tiers.append(
            RatioTier(
                dec(cap, "maxQty") if cap not in (None, "") else None,
                dec(row.get("collateralRatio"), "collateralRatio"),
            )
        )
    try:
        return CollateralRatio.build(tiers, RatioBasis.AMOUNT)
    except TierTableError as exc:
        raise FrameError(f"collateralRatioList: {exc}") from None


def coin_wallet(row: dict[str, Any]) -> Decimal:
    """A "Get Wallet Balance" coin row's wallet, ``walletBalance - spotBorrow`` (spot borrowing
    counts in walletBalance since manual borrowing: the docs' "Old walletBalance = New
    walletBalance - spotBorrow"; negative: a liability). A row without ``walletBalance`` is
    a :class:`FrameError` naming the coin's field."""
    coin = row.get("coin")
    return dec(row.get("walletBalance"), f"{coin} walletBalance") - dec(
        row.get("spotBorrow") or "0", f"{coin} spotBorrow"
    )


# a settle coin's USD value per coin is read only from an equity of at least this much: Bybit
# rounds ``usdValue`` (a USDC equity of 0.0000015 gave 0.9933), an error of its last digit
# over the equity; from one coin up it is below 1e-8 of a stablecoin's value
LINE_MIN_EQUITY = Decimal(1)
# and with none read so, a line takes its own row's rougher value from this much up (an error
# of at most 5e-7 at Bybit's 8 decimals); below it no value: the account incomplete naming the
# coin, never a guess (0.000000015 over 0.00000001 would count its perpetuals' MM at two thirds)
ROUGH_MIN_EQUITY = Decimal("0.01")


def _row_number(row: dict[str, Any], field: str) -> Decimal | None:
    """A coin row's ``field``: None where it is left out, ``""`` or 0 (Bybit's ``usdValue``
    of a dust balance rounds to 0); one that is not a finite number is a :class:`FrameError`
    naming the coin's field."""
    value = row.get(field)
    if value in (None, ""):
        return None
    return dec(value, f"wallet-balance: the {row.get('coin')} {field}") or None


def usd_per_coin(row: dict[str, Any], min_equity: Decimal = Decimal(0)) -> Decimal | None:
    """A coin row's USD value per coin, ``usdValue / equity`` (its USD index, positive: a
    liability's two are both negative).

    The one policy for a bad value of either field, whatever reads it (docs/exchanges.md,
    Bybit): a row that gives no value (``usdValue`` or ``equity`` left out, ``""`` or 0, or
    an equity below ``min_equity``) gives None, and its reader says what then (the account
    incomplete naming the coin, or its line at the value last read); a row whose value is
    wrong (not a finite number: a string, NaN, Infinity; a quotient out of Decimal's range:
    1e-999999, 9E+999999; the two of opposite signs: no price) is a malformed frame, a
    :class:`FrameError` naming the coin's fields, the snapshot skipped and logged."""
    coin = row.get("coin")
    equity, usd = _row_number(row, "equity"), _row_number(row, "usdValue")
    if equity is None or usd is None or abs(equity) < min_equity:
        return None
    what = f"wallet-balance: the {coin} usdValue over its equity"
    price = price_quotient(usd, equity, what)
    if price < 0:
        raise FrameError(f"{what} is no price ({usd} / {equity})")
    return price


def settle_usd(coins: list[dict[str, Any]], settle: str) -> Decimal:
    """The settle coin's USD value per coin (1 where its row gives none, or gives it from an
    equity below :data:`LINE_MIN_EQUITY`: every line's ``p`` and every coin's price is over
    it, so a rounded dust row would skew them all): Bybit values the pool in USD, alertd in
    the settle coin; every price over it keeps the ratio the same."""
    rows = (r for r in coins if r.get("coin") == settle)
    return next((usd_per_coin(r, LINE_MIN_EQUITY) for r in rows), None) or Decimal(1)


def line_rates(
    coins: list[dict[str, Any]], settle: str, assets: tuple[str, ...]
) -> dict[str, Decimal]:
    """The settle coins ``assets``' USD values per coin over the settle coin's, each from a
    row with an equity of at least :data:`LINE_MIN_EQUITY` (a value worth keeping: the last
    one read stands in for a later row that gives none)."""
    over = settle_usd(coins, settle)
    out = {}
    for row in coins:
        coin = row.get("coin")
        if isinstance(coin, str) and coin in assets:
            usd = usd_per_coin(row, LINE_MIN_EQUITY)
            if usd is not None and usd > 0:
                out[coin] = over_settle(usd, over, coin, settle)
    return out


def unlined_wallets(
    coins: list[dict[str, Any]], assets: tuple[str, ...], lines: tuple[MarginAsset, ...]
) -> dict[str, Decimal]:
    """The wallets of the settle coins ``assets`` the snapshot read but could not line (no
    USD value: :func:`unified_margin_assets`): by coin, those not 0."""
    lined = {line.asset for line in lines}
    out = {}
    for row in coins:
        coin = row.get("coin")
        if isinstance(coin, str) and coin in assets and coin not in lined:
            wallet = coin_wallet(row)
            if wallet != 0:
                out[coin] = wallet
    return out


def unified_margin_assets(
    coins: list[dict[str, Any]],
    ratios: dict[str, CollateralRatio],
    settle: str,
    assets: tuple[str, ...],
    held: Collection[str] = (),
    known_rates: Mapping[str, Decimal] | None = None,
) -> tuple[MarginAsset, ...]:
    """The settle coins ``assets`` besides ``settle`` whose perpetuals share the unified cross
    pool (USDC), each on an equity line of its own: its wallet (``walletBalance -
    spotBorrow``) plus its perpetuals' PnL, counted at its tiered collateral value ratio by
    quantity while positive and in full once negative, at its USD value per coin over the
    settle coin's, ``p``; its perpetuals' MM at ``p`` (``SettleTerms(discount=ratio,
    rates=ConversionRates(p, p))``).

    Bybit: a coin's ``equity`` is "``walletBalance`` - ``spotBorrow`` + ``unrealisedPnl`` +
    Asset Option Value", its ``usdValue`` that at its USD index; the margin balance counts
    each coin "after considering the collateral value ratio", a negative balance at 100%;
    ``totalMaintenanceMargin`` is "∑ Asset Total Maintenance Margin" in USD ("Get Wallet
    Balance"; help centre "Understanding Collateral Value Ratios in Unified Trading Account",
    "Key Terms and Formulas in Unified Trading Account"). USDT and USDC are always collateral
    ("Set Collateral Coin": "USDT, USDC cannot be set").

    An asset with neither a wallet nor a position (``held``) has no line (nothing of it
    counts). Its ``p`` is read from its row at an equity of :data:`LINE_MIN_EQUITY` or more
    (:func:`line_rates`); below it, the last one so read stands in (``known_rates``, by
    asset), and with none its own row's rougher ``usdValue / equity`` from an equity of
    :data:`ROUGH_MIN_EQUITY` (dust of 0.5 USDC, ``usdValue`` 0.4995: still 0.999 to 1e-8; the
    account incomplete for it before). A row with no USD value at all (equity 0, below
    :data:`ROUGH_MIN_EQUITY`, or ``usdValue`` rounded to 0) and none known leaves
    the asset without a line (never at par): the account is incomplete naming it while it
    holds a wallet or a position of it (:func:`unlined_wallets`,
    ``AccountState.unlined_margin_assets``), its USDT positions still read. An asset without
    a collateral ratio table is a :class:`FrameError` naming it."""
    rows = {r.get("coin"): r for r in coins}
    over = settle_usd(coins, settle)
    read = line_rates(coins, settle, assets)
    out = []
    for asset in assets:
        row = rows.get(asset)
        wallet = coin_wallet(row) if row is not None else Decimal(0)
        if wallet == 0 and asset not in held:
            continue
        rough = usd_per_coin(row, ROUGH_MIN_EQUITY) if row is not None else None
        rate = read.get(asset) or (known_rates or {}).get(asset)
        if rate is None and rough is not None:
            rate = over_settle(rough, over, asset, settle)
        if rate is None or rate <= 0:
            continue  # no USD value yet: unlined, the account incomplete naming the asset
        ratio = ratios.get(asset)
        if ratio is None:
            raise FrameError(f"spot-margin-trade/collateral: no collateral ratio for {asset}")
        terms = SettleTerms.of(None, Decimal(0), ratio, ConversionRates(rate, rate))
        out.append(MarginAsset(asset, wallet, terms))
    return tuple(out)


def unified_collateral(
    coins: list[dict[str, Any]],
    ratios: dict[str, CollateralRatio],
    settle: str,
    markets: dict[str, Any],
    lined: Collection[str] = (),
) -> tuple[Collateral, ...]:
    """The coins of a unified cross pool besides ``settle`` (its wallet balance) and the
    settle coins on equity lines of their own (``lined``: :func:`unified_margin_assets`), from
    "Get Wallet Balance" ``coin`` rows and each coin's tiered collateral value ratio.

    A coin counts when the platform takes it as collateral (``marginCollateral``) and the user
    switched it on (``collateralSwitch``). Its amount is ``walletBalance - spotBorrow`` (the
    docs' "Old walletBalance = New walletBalance - spotBorrow"; negative: a liability, counted
    in full); its price is its USD value per coin (``usdValue / equity``) over the settle
    coin's (Bybit values the pool in USD, alertd in the settle coin: the ratio is the same).
    A coin with a USDT perpetual moves with that perpetual's mark between reads. Raises
    :class:`FrameError` naming a counted coin without a price or a ratio table.
    """

    over = settle_usd(coins, settle)
    out = []
    for row in coins:
        coin = row.get("coin")
        if not isinstance(coin, str) or coin == settle or coin in lined:
            continue
        if row.get("marginCollateral") is not True or row.get("collateralSwitch") is not True:
            continue  # not collateral: Bybit leaves it out of the margin balance
        amount = coin_wallet(row)
        if amount == 0:
            continue
        price = usd_per_coin(row)
        if price is None or price <= 0:
            raise FrameError(f"wallet-balance: no USD value for the {coin} balance")
        ratio = ratios.get(coin)
        if ratio is None:
            raise FrameError(f"spot-margin-trade/collateral: no collateral ratio for {coin}")
        out.append(usd_pool_coin(coin, amount, price, over, ratio, settle, markets))
    return tuple(out)


def isolated_margin(raw: dict[str, Any]) -> Decimal:
    """An isolated position's margin: ``positionBalance`` while Bybit still sends it; the
    docs deprecate it ("Get Position Info": "**Deprecated**, can refer to ``positionIM`` or
    ``positionIMByMp``"), so an answer without it gives ``positionIM``. A deprecated field
    still arrives, as ``"0"``: the docs' position stream example and live frames of open
    positions recorded since (2025-10 to 2026-03) carry ``"positionBalance": "0"``; an open
    isolated position never holds no margin, so a zero is the field not sent, not a margin
    of nothing (read as one, every such position showed as liquidated)."""
    balance = position_balance(raw)
    if balance is not None:
        return balance
    return dec(raw.get("positionIM"), "positionIM")


def position_balance(raw: dict[str, Any]) -> Decimal | None:
    """``positionBalance`` where Bybit sends a margin in it; None where the deprecated field
    is left out or ``"0"``."""
    sent = raw.get("positionBalance")
    balance = None if sent in (None, "") else dec(sent, "positionBalance")
    return balance or None


def liquidation_price_for_margin(raw: dict[str, Any]) -> Decimal | None:
    """Bybit's ``liqPrice`` of an isolated position whose margin is not sent: the margin it
    holds then stands in (``PositionState.exchange_liquidation_price``). Without
    ``positionBalance``, margin added by hand ("Add Or Reduce Margin", ``POST
    /v5/position/add-margin``) or automatically (``autoAddMargin``) is in no field:
    ``positionIM`` is the Position IM, and the add-margin answer itself gives ``positionIM``,
    ``positionMM`` and ``liqPrice``, no balance (bybit-exchange/docs,
    docs/v5/position/manual-add-margin.mdx). ``liqPrice`` is "the real price" of an isolated
    position ("Get Position Info") and holds that margin. None where there is a
    ``positionBalance`` or no usable ``liqPrice`` (``""`` when Bybit has none, ``"0"``, not
    a number): the margin is then ``positionIM``."""
    if position_balance(raw) is not None:
        return None
    return dec_or_none(raw.get("liqPrice"))


def _side(raw: dict[str, Any]) -> Side | None:
    idx = str(raw.get("positionIdx", "0"))
    if idx == "1":
        return Side.LONG
    if idx == "2":
        return Side.SHORT
    side = raw.get("side")
    if side == "Buy":
        return Side.LONG
    if side == "Sell":
        return Side.SHORT
    return None  # one-way position with no side: closed


# /v5/order/realtime ``stopOrderType`` (docs v5, "Enum Definitions", stopOrderType): the
# position's own TP/SL, partial TP/SL, trailing stops and plain conditional orders ("Stop")
_STOP_KINDS = {
    "StopLoss": StopKind.STOP,
    "PartialStopLoss": StopKind.STOP,
    "Stop": StopKind.STOP,
    "TrailingStop": StopKind.TRAILING,
    "TakeProfit": StopKind.TAKE_PROFIT,
    "PartialTakeProfit": StopKind.TAKE_PROFIT,
}


def open_stop(raw: dict[str, Any], symbol: str) -> StopOrder | None:
    """One order of "Get Open & Closed Orders" (``/v5/order/realtime``) as a stop; None for
    an order with no trigger (``stopOrderType`` empty) or not waiting for one."""
    kind = _STOP_KINDS.get(str(raw.get("stopOrderType") or ""))
    if kind is None or raw.get("orderStatus", "Untriggered") != "Untriggered":
        return None
    order_side = raw.get("side")
    if order_side not in ("Buy", "Sell"):
        raise FrameError(f"side: not Buy or Sell: {order_side!r}")
    idx = str(raw.get("positionIdx", "0"))
    # the position a sell reduces is a long: hedge mode names it (positionIdx 1 long, 2 short)
    side = {"1": Side.LONG, "2": Side.SHORT}.get(
        idx, Side.LONG if order_side == "Sell" else Side.SHORT
    )
    direction = str(raw.get("triggerDirection", "0"))
    if direction in ("1", "2"):  # 1: triggered by a rise to triggerPrice, 2: by a fall
        trigger = Trigger.RISE if direction == "1" else Trigger.FALL
    else:  # a position's TP/SL carries none: a long's stop falls, its take-profit rises
        adverse = kind is not StopKind.TAKE_PROFIT
        trigger = Trigger.FALL if (side is Side.LONG) == adverse else Trigger.RISE
    trigger_price = dec_or_none(raw.get("triggerPrice"))
    if trigger_price is None:
        raise FrameError(f"triggerPrice: missing or zero on a {raw.get('stopOrderType')} order")
    qty = dec_or_none(raw.get("leavesQty")) or dec_or_none(raw.get("qty"))
    whole = raw.get("tpslMode") == "Full" or (raw.get("closeOnTrigger") is True and qty is None)
    return StopOrder(
        symbol=symbol,
        side=side,
        kind=kind,
        trigger=trigger,
        trigger_price=trigger_price,
        contracts=None if whole else qty or Decimal(0),
        order_id=str(raw.get("orderId", "")),
        reduce_only=bool(raw.get("reduceOnly") or raw.get("closeOnTrigger")) or idx != "0",
    )


def position_stop(raw: dict[str, Any], symbol: str, side: Side) -> StopOrder | None:
    """A position's own full stop-loss (``stopLoss`` on "Get Position Info", "0" or "" when
    none): it closes the whole position when the mark passes it."""
    price = dec_or_none(raw.get("stopLoss"))
    if price is None:
        return None
    trigger = Trigger.FALL if side is Side.LONG else Trigger.RISE
    return StopOrder(symbol, side, StopKind.STOP, trigger, price, None, "position stopLoss")


# The ``extraFees`` rows that tax the trading fee by the account's KYC region (v5 enums,
# extraFees.feeType): "GST" ("Indian GST tax. Only for kyc=Indian users", 2025-06-30) and
# "VAT" ("ARE VAT tax. Only for kyc=ARE users", 2025-07-22). The enum's other taxes are of
# other sites' spot orders (TAX, CFX: Indonesia; WHT: the EU), never a linear fill. Whether
# Bybit's fee to close in MM holds the VAT as it holds the GST (a live position shows that:
# :func:`gst_share`) no source tells: counted, the safe side (a higher MM alerts earlier).
FEE_TAXES = frozenset({"GST", "VAT"})


def gst_share(fills: list[Any]) -> Decimal | None:
    """The tax on the account's trading fee (India's GST, the UAE's VAT: ``FEE_TAXES``), as a
    share of it, from its fills (Get Trade History, newest first): the first trade
    (``execType`` "Trade": not a funding or delivery row, whose ``feeRate`` is no trading
    fee) that paid a fee tells, its ``extraFees`` rows of those fee types over its
    ``feeRate``; 0 where that fill paid none; None where no fill paid a fee (no fill in the 7
    days Bybit lists by default).

    Bybit's fee to close in IM and MM holds that GST: a live cross SOLUSDT position of a
    GST-paying account (2025-10-02: 0.2 long at 233.02, 10x, mark 233.029) has
    ``positionMMByMp`` 0.26025039 = 0.2 x 233.029 x 0.5% + 0.2 x 233.02 x (1 - 1/10) x
    0.055% x 1.18, and the same account's fill at that moment has ``feeRate`` 0.00055 and an
    ``extraFees`` GST row at ``feeRate`` 0.000099 = 0.00055 x 0.18: the trading fee rate is
    without the tax, which comes beside it (tests/test_adapters_more.py)."""
    told = paid_trade(fills)
    if told is None:
        return None
    fill, rate = told
    extra = fill.get("extraFees")
    if isinstance(extra, str):
        # the REST docs type it a string (their example: ""), the stream a list
        try:
            extra = json.loads(extra) if extra.strip() else []
        except (ValueError, RecursionError):  # nested past the parser: no ValueError
            raise FrameError(f"execution extraFees: not a list: {extra[:80]!r}") from None
    if not isinstance(extra, list):
        raise FrameError(f"execution extraFees: not a list: {extra!r:.80}")
    rows = [row for row in extra if isinstance(row, dict)]
    for row in rows:
        # an enum of the v5 docs (extraFees.feeType: "GST", "VAT", ...): a list or an object
        # there is no fee type (and unhashable: no member of FEE_TAXES to ask)
        if not isinstance(row.get("feeType"), str | None):
            raise FrameError(f"execution extraFees: feeType not a string: {row['feeType']!r:.80}")
    try:
        tax = sum(
            (
                dec(row.get("feeRate"), "extraFees feeRate")
                for row in rows
                if row.get("feeType") in FEE_TAXES
            ),
            Decimal(0),
        )
        share = tax / rate
    except ArithmeticError:  # decimal.Overflow: a GST or a fee rate past Decimal's range
        raise FrameError(
            f"execution extraFees: a GST share of a fee rate of {rate} past Decimal's range"
        ) from None
    if not 0 <= share <= 1:
        # a tax on the fee is a share of it: a negative one or one above the fee itself
        # is no GST (India's is 18%)
        raise FrameError(f"execution extraFees: a GST rate of {tax} on a fee rate of {rate}")
    return share


def paid_trade(fills: list[Any]) -> tuple[dict[str, Any], Decimal] | None:
    """The newest trade of ``fills`` that paid a fee (``execType`` "Trade", ``feeRate`` above
    0) and its fee rate; None: none did. A fee rate above 1 (a fee above the trade's value)
    is no fee rate: :class:`FrameError` (a negative one, a maker's rebate, paid none)."""
    for fill in fills:
        if not isinstance(fill, dict) or fill.get("execType") != "Trade":
            continue
        rate = dec_or_none(fill.get("feeRate"))
        if rate is not None and rate > 1:
            raise FrameError(f"execution feeRate: {rate} is no fee rate (above 1)")
        if rate is not None and rate > 0:
            return fill, rate
    return None


def execution_rows(answer: Any) -> list[Any]:
    """The fills of a "Get Trade History" answer (``result.list``; none where it has none)."""
    result = (answer.get("result") or {}) if isinstance(answer, dict) else None
    rows = (result.get("list") or []) if isinstance(result, dict) else None
    if not isinstance(rows, list):
        raise FrameError(f"execution list: not an answer with a list: {answer!r:.80}")
    return rows


# The tax on the trading fee by the account's KYC region, as a share of the fee, where Bybit
# documents one: "an 18% GST applies to any service or trading fees charged by crypto
# exchanges ... Bybit users in India must also pay an additional 18% GST", derivatives
# included (help centre, "FAQ — GST and TDS in India",
# bybit.com/en/help-center/article/FAQ-Goods-and-Services-Tax-GST-in-India); the GST row of
# a fill is "Only for kyc=Indian users" (v5 enums, extraFees.feeType). Every region but those
# below pays no tax on the fee.
FEE_TAX_BY_REGION = {"IND": Decimal("0.18")}
GST_GAP = FeeGap("the GST an India-KYC account pays", FEE_TAX_BY_REGION["IND"])
# Regions Bybit taxes the fee of without documenting the rate: a kyc=ARE account pays "VAT"
# (v5 enums, extraFees.feeType "ARE VAT tax. Only for kyc=ARE users"; no help-centre article
# or payload gives its rate). Its fills tell it; without one the tax stays unknown and shown
# (never "no tax"), at most the UAE's standard VAT rate, 5% (Federal Decree-Law No. 8 of 2017
# on Value Added Tax, article 3), as the gap's "up to".
UNRATED_TAX_BY_REGION = {
    "ARE": FeeGap("the VAT a UAE-KYC account pays (rate not documented by Bybit)", Decimal("0.05"))
}


def kyc_region(answer: Any) -> str | None:
    """The account's KYC region from "Get API Key Information" (``GET /v5/user/query-api``,
    ``kycRegion``: "Personal account kyc region", an ISO 3166 alpha-3 code such as "MYS" in
    Bybit's example; any key may read it, "Any permission can access this endpoint",
    bybit-exchange.github.io/docs/v5/user/apikey-info). None where it names none: "" is the
    same docs' answer of an account without KYC (``"kycLevel": "LEVEL_DEFAULT"``), and what a
    sub-account's key answers is undocumented; which tells no tax, since Bybit's GST FAQ taxes
    an Indian proof of address or declared address too. Anything but a 3-letter code ("India",
    "IN") is a malformed answer, not a region of no tax."""
    result = answer.get("result") if isinstance(answer, dict) else None
    region = result.get("kycRegion") if isinstance(result, dict) else None
    if not isinstance(region, str):
        raise FrameError(f"query-api kycRegion: not a region: {region!r:.80}")
    code = region.strip().upper()
    if not code:
        return None
    if len(code) != 3 or not (code.isascii() and code.isalpha()):
        raise FrameError(f"query-api kycRegion: not an ISO 3166 alpha-3 code: {region!r:.80}")
    return code


class BybitAdapter(ExchangeAdapter):
    exchange_id = "bybit"
    market_filter = MARKETS
    wallet_includes_isolated = True  # walletBalance holds isolated positions' margin too

    @staticmethod
    def refused_login(message: Any) -> str | None:
        """Bybit refuses a private websocket's ``auth`` with ``{"success": false, "ret_msg":
        "Params Error", "op": "auth", "conn_id": ...}`` (among other reasons when its
        ``expires`` has passed on arrival: the login signed more than ccxt's 10 s before,
        under load; the reply as Bybit's users report it: bybit-exchange/pybit#300,
        bybit-exchange/api-usage-examples#70). ccxt 4.5's ``handle_error_message`` reads it
        as an ExchangeError, not the AuthenticationError of a reply that echoes the request:
        it fails the pending watches but keeps its ``authenticated`` subscription, so the
        retried watches on the still open connection never send a login again and wait for
        one forever (19 of 1,000 accounts never streamed at a start at load 14,
        benchmarks.md session 12). Dropping it makes the next watch log in afresh."""
        if (
            isinstance(message, dict)
            and message.get("op") == "auth"
            and message.get("success") is False
        ):
            return "authenticated"
        return None

    @staticmethod
    def accepted_login(message: Any) -> bool:
        """Bybit accepts an ``auth`` with ``{"success": true, "ret_msg": "", "op": "auth",
        "conn_id": ...}``, or in its newer shape ``{"retCode": 0, "retMsg": "OK", "op":
        "auth", ...}`` (Bybit v5 "Websocket Connect": authentication; both as ccxt 4.5's
        ``handle_authenticate`` reads them)."""
        return (
            isinstance(message, dict)
            and message.get("op") == "auth"
            # the code as ccxt reads it (a number or its string), never a bool (False == 0)
            and (message.get("success") is True or str(message.get("retCode")) == "0")
        )

    def __init__(self) -> None:
        # On a unified account isolation is account-wide ("ISOLATED_MARGIN" in
        # /v5/account/info) and tradeMode is always 0; classic accounts set tradeMode per
        # position. Read at every REST snapshot.
        self.account_isolated = False
        self.account_cross = False
        # the wallet's coin rows of the last snapshot: the cross pool's coins are read from
        # the same answer as the settle wallet
        self._coins: list[dict[str, Any]] = []
        # the settle coins of the positions of the last snapshot: a USDC perpetual held gives
        # USDC a line even without a wallet
        self._held_settles: set[str] = set()
        # the settle coins a position push named since the last listing of positions, those
        # of them known when the snapshot under way began (forgotten only once it lists
        # them: a snapshot that fails keeps them for the next), and the coins it lists
        # positions of (None: every settle coin; snapshot_begins)
        self._pushed_settles: set[str] = set()
        self._pushes_seen: frozenset[str] = frozenset()
        self._listed_settles: tuple[str, ...] | None = None
        # the other settle coins' lines of the last snapshot (unified cross only), and the
        # USD rate each was last read at (a row with no equity gives none)
        self._margin_assets: tuple[MarginAsset, ...] = ()
        self._line_rates: dict[str, Decimal] = {}
        self._unlined_wallets: dict[str, Decimal] = {}  # of those it could not line
        # the positions' own stop-losses, from the last position snapshot (fetch_stops adds
        # them to the open orders)
        self.position_stops: list[StopOrder] = []
        # the GST share of the account's trading fee (India's, on a kyc=IND account: 0.18),
        # read from its latest fill (:func:`gst_share`); None until a fill has told. The held
        # symbols when the fills were last asked: without a fill in the 7 days Bybit lists,
        # they are asked again once the account holds another symbol (a trade), not at every
        # reconcile
        self.gst_share: Decimal | None = None
        # the taker fill that told a tax (its market id and untaxed ``feeRate``): the fee-rate
        # answer of its symbol shows whether Bybit's takerFeeRate holds the tax (fee_rates)
        self._taxed_fill: tuple[str, Decimal] | None = None
        self._fills_asked_holding: frozenset[str] | None = None
        # the account's KYC region (:func:`kyc_region`), read once where no fill tells the
        # GST: the documented tax of its region stands in (FEE_TAX_BY_REGION); None: not read,
        # or the answer named no region (asked again with the fills)
        self.kyc_region: str | None = None
        self._gst_unread: UnreadFee | None = None  # why neither the fills nor the region told

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        """Each symbol's risk limits: "Get Risk Limit" (GET /v5/market/risk-limit) is public
        market data, the same table for every account, and Bybit limits an IP to 600
        requests in 5 s (bybit-exchange.github.io/docs/v5/rate-limit, "IP Limit"): read once
        per symbol for every account of the exchange (1,000 accounts on three symbols: 3
        requests, not 2,500), again after each market refresh."""
        out = {}
        for symbol in symbols:
            market_id = exchange.market(symbol)["id"]

            async def read(market_id: str = market_id) -> TierTable | None:
                response = await exchange.publicGetV5MarketRiskLimit(
                    {"category": "linear", "symbol": market_id}
                )
                rows = (response.get("result") or {}).get("list") or []
                return risk_limits_to_table(rows) if rows else None

            table = await self.tables.get(
                ("bybit", "risk-limit", market_id), read, keep_empty=False
            )
            if table is not None:
                out[symbol] = table
        return out

    def _position(self, exchange: Any, raw: dict[str, Any]) -> PositionState | None:
        market = exchange.safe_market(raw.get("symbol"), None, None, "swap")
        side = _side(raw)
        size = dec(raw.get("size", "0"), "size")
        if side is None:
            if size != 0:
                raise FrameError(f"position {raw.get('symbol')}: size {size} without a side")
            return None
        isolated = self.account_isolated or str(raw.get("tradeMode", "0")) == "1"
        entry = raw.get("avgPrice", raw.get("entryPrice"))
        leverage = raw.get("leverage")
        state = PositionState(
            symbol=market["symbol"],
            side=side,
            contracts=size,
            entry_price=dec(entry, "avgPrice") if size else Decimal(1),
            margin_mode=MarginMode.ISOLATED if isolated else MarginMode.CROSS,
            # a flat (hedge-mode) leg has no margin to read: "0" and "" where one would be
            isolated_margin=isolated_margin(raw) if isolated and size else None,
            leverage=dec(leverage, "leverage") if leverage not in (None, "") else None,
            exchange_liquidation_price=liquidation_price_for_margin(raw) if isolated else None,
            # "updatedTime", the position's last update (ms), in the REST list and the push
            # alike (bybit-exchange.github.io/docs/v5/position and /v5/websocket/private/position)
            version=stamp_or_none(raw.get("updatedTime")),
            # "positionIdx" 0: one-way mode, one position a symbol; 1 and 2 hedge mode's legs
            # (bybit-exchange.github.io/docs/v5/websocket/private/position)
            one_way=str(raw.get("positionIdx", "0")) == "0",
        )
        return with_adl(state, raw, "adlRankIndicator", ADL)

    @property
    def pushed_settles(self) -> frozenset[str]:
        """The settle coins position pushes named since the last listing of positions."""
        return frozenset(self._pushed_settles)

    def snapshot_begins(self, net: bool) -> None:
        """The settle coins whose positions this snapshot lists: every one where ``net``;
        else the settle coin's and each other one's (USDC) the account held at the last
        snapshot or a push named since. "Get Position Info" takes one settle coin a request
        (``settleCoin``, "for linear, either symbol or settleCoin is required",
        bybit-exchange.github.io/docs/v5/position), so a USDC list read at every reconcile
        was a second request for accounts that hold no USDC perpetual; the private
        ``position`` topic that ccxt subscribes to is Bybit's all-in-one topic ("All-In-One
        Topic: position", .../docs/v5/websocket/private/position): it pushes a USDC
        perpetual opened, so the list is asked from the next snapshot on, and the net
        snapshots list it whatever the pushes said."""
        pooled = MARKETS.pooled
        if net:
            self._listed_settles = (self.settle, *pooled)
        else:
            named = self._held_settles | self._pushed_settles
            self._listed_settles = (self.settle, *(c for c in pooled if c in named))
        self._pushes_seen = frozenset(self._pushed_settles)

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        info = (await exchange.privateGetV5AccountInfo()).get("result") or {}
        mode = account_mode(info)
        self.account_isolated = mode.mode is AccountMode.UNIFIED_ISOLATED
        self.account_cross = mode.mode is AccountMode.UNIFIED_CROSS
        return mode

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        snapshot: Snapshot = ([], {}, {})

        self.position_stops = []

        def parse(raw: dict[str, Any]) -> list[PositionState]:
            p = self._position(exchange, raw)
            if p is None:
                return []
            if p.contracts and (stop := position_stop(raw, p.symbol, p.side)) is not None:
                self.position_stops.append(stop)
            return [p]

        # USDC perpetuals share the unified pool: Bybit lists positions per settle coin
        listed = list(self._listed_settles or (self.settle, *MARKETS.pooled))
        for settle in listed:
            cursor = None
            while True:
                request = {"category": "linear", "settleCoin": settle, "limit": 200}
                if cursor:
                    request["cursor"] = cursor
                response = await exchange.privateGetV5PositionList(request)
                result = response.get("result") or {}
                fields = ("liqPrice", "positionMM", "markPrice")
                self._snapshot_into(result.get("list") or [], parse, fields, snapshot)
                cursor = result.get("nextPageCursor")
                if not cursor:
                    break
            # a coin pushed while this snapshot lists (after it began) is listed too (the loop
            # goes on to it): else the snapshot, which replaces the positions, would drop it
            listed += [c for c in MARKETS.pooled if c in self._pushed_settles - {*listed}]
        self._held_settles = {
            str(exchange.markets[p.symbol].get("settle"))
            for p in snapshot[0]
            if p.symbol in exchange.markets
        }
        # listed: the pushes known when the snapshot began are in it (a later one is kept)
        self._pushed_settles -= self._pushes_seen
        return snapshot

    # the private "order" topic carries conditional orders too (stopOrderType)
    watches_stops = True

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        return str(raw.get("stopOrderType") or "") in _STOP_KINDS

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder]:
        """The open conditional orders of ``/v5/order/realtime`` (every kind by default on a
        unified account), page by page, and the positions' own stop-losses."""
        out = list(self.position_stops)
        # a USDC perpetual's orders are listed under settleCoin USDC: asked only while one is
        # held (one request, as before, for a USDT-only account)
        held = {exchange.market(s).get("settle") for s in symbols if s in exchange.markets}
        for settle in (self.settle, *(c for c in MARKETS.pooled if c in held)):
            cursor = None
            for _ in range(MAX_ORDER_PAGES):
                request = {"category": "linear", "settleCoin": settle, "limit": 50}
                if cursor:
                    request["cursor"] = cursor
                response = await exchange.privateGetV5OrderRealtime(request)
                result = response.get("result") or {}
                for raw in result.get("list") or []:
                    market = exchange.safe_market(raw.get("symbol"), None, None, "swap")
                    stop = open_stop(raw, market["symbol"])
                    if stop is not None:
                        out.append(stop)
                cursor = result.get("nextPageCursor")
                if not cursor:
                    break
            else:
                raise FrameError(f"order/realtime: more than {MAX_ORDER_PAGES} pages of orders")
        return out

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        response = await exchange.privateGetV5AccountWalletBalance({"accountType": "UNIFIED"})
        accounts = (response.get("result") or {}).get("list") or []
        if not accounts:
            raise FrameError("wallet-balance: no account in the answer")
        info = accounts[0]
        coins = [c for c in info.get("coin") or [] if isinstance(c, dict)]
        wallet = next((coin_wallet(c) for c in coins if c.get("coin") == self.settle), Decimal(0))
        self._coins = coins
        # Bybit's margin balance is in USD after the collateral value ratios ("Get Wallet
        # Balance", bybit-exchange.github.io/docs/v5/account/wallet-balance:
        # totalMarginBalance "Unit: USD"); its MM rate
        # (accountMMRate) is MM / margin balance: alertd's direction
        return wallet, ReportedAccount(
            maintenance_margin=dec_or_none(info.get("totalMaintenanceMargin")),
            margin_balance=dec_or_none(info.get("totalMarginBalance")),
            margin_ratio=dec_or_none(info.get("accountMMRate")),
            unit="USD",
        )

    async def fetch_fee_rates(self, exchange: Any, symbols: list[str]) -> dict[str, Decimal]:
        """The account's taker rates from "Get Fee Rate" (``GET /v5/account/fee-rate``,
        category linear: one symbol asked by name, several in one answer for every linear
        symbol): the rate of Bybit's estimated fee to close in IM and MM, with the GST an
        India-KYC account pays on it (:attr:`fee_tax_share`)."""
        wanted = {exchange.market(s)["id"]: s for s in symbols}
        request = {"category": "linear"}
        if len(wanted) == 1:
            request["symbol"] = next(iter(wanted))
        response = await exchange.privateGetV5AccountFeeRate(request)
        rows = (response.get("result") or {}).get("list") or []
        by_id = {str(r.get("symbol")): r for r in rows if isinstance(r, dict)}
        rates = taker_fee_rates(by_id, "takerFeeRate", wanted)
        holding = frozenset(symbols)
        if self.gst_share is None and holding != self._fills_asked_holding:
            await self._read_gst(exchange, holding)
        share = self.fee_tax_share
        if not share:
            return rates
        base = {s: PROFILE.default_fee_rate for s in wanted.values()}
        if self._quotes_the_tax(by_id, share):
            return {**{s: rate * (1 + share) for s, rate in base.items()}, **rates}
        return {s: rate * (1 + share) for s, rate in {**base, **rates}.items()}

    def _quotes_the_tax(self, by_id: dict[str, Any], share: Decimal) -> bool:
        """Whether this fee-rate answer's ``takerFeeRate`` holds the tax already: no source
        says whether it does (docs/exchanges.md, "Fee rates"), so alertd adds the tax to it
        (at worst counted twice: the safe side) unless the account's own answers show it:
        the taker fill that told the tax has the untaxed rate as its ``feeRate`` (the tax
        beside it in ``extraFees``), and the answer quotes that rate with the tax on it."""
        if self._taxed_fill is None:
            return False
        market_id, untaxed = self._taxed_fill
        row = by_id.get(market_id)
        quoted = dec_or_none(row.get("takerFeeRate")) if isinstance(row, dict) else None
        try:
            return quoted is not None and quoted != untaxed and quoted == untaxed * (1 + share)
        except ArithmeticError:  # past Decimal's range: not shown to hold it (the safe side)
            return False

    @property
    def fee_tax_share(self) -> Decimal | None:
        """The tax on the account's trading fee as a share of it: the tax share of its latest
        linear fill (:func:`gst_share`) where one told; else its KYC region's documented tax
        (FEE_TAX_BY_REGION, none elsewhere) where the region was read; None: unknown (not
        read, or a region taxed at a rate Bybit does not document: UNRATED_TAX_BY_REGION)."""
        if self.gst_share is not None:
            return self.gst_share
        if self.kyc_region is not None and self.kyc_region not in UNRATED_TAX_BY_REGION:
            return FEE_TAX_BY_REGION.get(self.kyc_region, Decimal(0))
        return None

    async def _read_gst(self, exchange: Any, holding: frozenset[str]) -> None:
        """:attr:`gst_share` from the account's latest fills (``GET /v5/execution/list``: one
        request at the bootstrap of an account that traded in the last 7 days); where none
        tells (no fill in those 7 days, or fills refused: a key without the permission,
        10005, or answered malformed), the KYC region (``GET /v5/user/query-api``, once).
        The GST is a part of the fee term (India's 18% on the fee: the term 15% low without
        it), not worth the account: where neither tells it stays unknown, told once and shown
        (:meth:`fee_rates_unread`), and both are asked again only once the account holds
        other symbols; after a network error or a rate limit, at the next read."""
        # here, not at the top: the exchange modules load without ccxt (registry); a feed has it
        import ccxt

        from alertd.feeds.ccxt_exchange import describe

        failed: list[Exception] = []
        untold: list[str] = []  # why each read told nothing
        try:
            answer = await exchange.privateGetV5ExecutionList({"category": "linear", "limit": 20})
            fills = execution_rows(answer)
            self.gst_share = gst_share(fills)
            told = paid_trade(fills) if self.gst_share else None
            if told is not None and told[0].get("isMaker") is False:
                self._taxed_fill = (str(told[0].get("symbol")), told[1])
            if self.gst_share is None:
                untold.append("no fill in the 7 days Bybit lists")
        except (FrameError, ccxt.BaseError) as exc:
            failed.append(exc)
            untold.append(f"/v5/execution/list: {describe(exc)}")
        if self.gst_share is None and self.kyc_region is None:
            try:
                self.kyc_region = kyc_region(await exchange.privateGetV5UserQueryApi())
                if self.kyc_region is None:
                    untold.append("/v5/user/query-api: no kycRegion (an account without KYC)")
            except (FrameError, ccxt.BaseError) as exc:
                failed.append(exc)
                untold.append(f"/v5/user/query-api: {describe(exc)}")
        if self.gst_share is None and self.kyc_region in UNRATED_TAX_BY_REGION:
            untold.append(f"kycRegion {self.kyc_region}: taxed at a rate Bybit does not document")
        if self.fee_tax_share is None:
            self._gst_unread = UnreadFee(
                UNRATED_TAX_BY_REGION.get(self.kyc_region or "", GST_GAP),
                "; ".join(untold),
                malformed=any(isinstance(exc, FrameError) for exc in failed),
            )
        else:
            self._gst_unread = None
        if any(isinstance(exc, ccxt.NetworkError) for exc in failed):
            return
        self._fills_asked_holding = holding

    def fee_rates_unread(self) -> UnreadFee | None:
        return self._gst_unread if self.fee_tax_share is None else None

    async def fetch_collateral(self, exchange: Any) -> tuple[Collateral, ...]:
        self._margin_assets, self._unlined_wallets = (), {}
        if not self.account_cross:
            return ()  # isolated: each position on its own margin; portfolio: Bybit's ratio
        assets = self.market_filter.margin_assets(exchange.markets)
        held = [
            str(c.get("coin"))
            for c in self._coins
            if c.get("coin") != self.settle
            and c.get("marginCollateral") is True
            and c.get("collateralSwitch") is True
        ]
        # the settle coins are collateral whatever their flags ("Set Collateral Coin": "USDT,
        # USDC cannot be set"): a row of one without the flags still needs its ratio
        held += [asset for asset in assets if asset in self._held_settles]
        held += [str(c.get("coin")) for c in self._coins if c.get("coin") in assets]
        ratios = {}
        for coin in sorted(set(held)):
            # public and the same for every account: read once for all of them, again after
            # each market refresh (a USDC perpetual held adds no request per reconcile)
            async def read(coin: str = coin) -> CollateralRatio | None:
                response = await exchange.publicGetV5SpotMarginTradeCollateral({"currency": coin})
                for row in (response.get("result") or {}).get("list") or []:
                    if isinstance(row, dict) and row.get("currency") == coin:
                        return collateral_ratio(row.get("collateralRatioList") or [])
                return None

            ratio = await self.tables.get(("bybit", "collateral", coin), read, keep_empty=False)
            if ratio is not None:
                ratios[coin] = ratio
        lines = unified_margin_assets(
            self._coins, ratios, self.settle, assets, self._held_settles, self._line_rates
        )
        coins = unified_collateral(self._coins, ratios, self.settle, exchange.markets, assets)
        self._margin_assets = lines
        self._unlined_wallets = unlined_wallets(self._coins, assets, lines)
        # only a p read at a whole coin or more is kept: a dust row's rounder one would
        # otherwise stand in for every later row, a better one included
        self._line_rates.update(line_rates(self._coins, self.settle, assets))
        return coins

    def margin_assets(self) -> tuple[MarginAsset, ...]:
        return self._margin_assets

    def unlined_wallets(self) -> dict[str, Decimal]:
        return self._unlined_wallets

    # in unified cross margin every other settle coin held needs its line: one a push gave
    # (a position or a wallet since the last snapshot) is missing until a snapshot reads it
    lined_modes = frozenset({AccountMode.UNIFIED_CROSS})
    line_source = "{asset} USD value"

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        changed = await exchange.watch_positions()
        out = []
        for position in changed:
            raw = position.get("info") or {}
            if raw.get("category") not in (None, "linear"):
                continue
            market = None
            if raw.get("symbol"):
                market = exchange.safe_market(raw.get("symbol"), None, None, "swap")
                # its settle coin's positions are listed from the next snapshot on; a market
                # the catalogue does not list yet (a new listing) names none: every one
                settle = market.get("settle")
                self._pushed_settles.update([str(settle)] if settle else MARKETS.pooled)
            p = self._position(exchange, raw)
            if p is not None:
                out.append(p)
            elif market is not None:
                # a one-way close arrives with side "" and size 0: close both possible keys
                out.extend(
                    closed_both_sides(market["symbol"], stamp_or_none(raw.get("updatedTime")))
                )
        return out

    async def watch_balances(self, exchange: Any) -> dict[str, Decimal]:
        """The wallets a ``wallet`` push carries (``walletBalance - spotBorrow``, as the REST
        answer is read): the settle coin's and the other settle coins' (USDC's line)."""
        balance = await exchange.watch_balance()
        info = balance.get("info") or {}
        accounts = info.get("data") if isinstance(info, dict) else info
        # no time to order it by: ccxt hands over the push's "data" without its "creationTime",
        # and the REST wallet-balance answer gives its coins none (bybit-exchange.github.io/
        # docs/v5/account/wallet-balance): a push that comes while it is read wins over it
        self.balance_pushed_ms = None
        if isinstance(accounts, dict):
            accounts = [accounts]
        wanted = {self.settle, *self.market_filter.margin_assets(exchange.markets)}
        out = {}
        for account in accounts or []:
            for coin in account.get("coin") or []:
                if isinstance(coin, dict) and coin.get("coin") in wanted:
                    # a bad row loses only its own coin's update, not the frame's others
                    try:
                        out[str(coin.get("coin"))] = coin_wallet(coin)
                    except FrameError as exc:
                        log.warning("bybit: skipped a wallet push row: %s", exc)
        return out


async def key_permissions(exchange: Any) -> list[str]:
    """What the key allows beyond reading, from GET /v5/user/query-api."""
    info = (await exchange.privateGetV5UserQueryApi()).get("result") or {}
    if str(info.get("readOnly")) == "1":
        return []
    granted = info.get("permissions") or {}
    return sorted(f"{area}: {', '.join(perms)}" for area, perms in granted.items() if perms)


SPEC = ExchangeSpec(
    profile=PROFILE,
    adapter=BybitAdapter,
    capabilities=Capabilities(
        tier_source=TierSource.RISK_LIMITS,
        key_permissions=key_permissions,
        # "You are allowed to send 600 requests within a 5-second window per IP by default"
        # (bybit-exchange.github.io/docs/v5/rate-limit, "IP Limit"; past it 403 and a ban of
        # at least 10 minutes for every account on the IP); private limits are per UID
        requests_per_ip=(600, 5.0),
        # "If you encounter the error "403, access too frequent", it indicates that your IP
        # has exceeded the allowed request frequency. In this case, you should terminate all
        # HTTP sessions and wait for at least 10 minutes. The ban will be lifted
        # automatically" (bybit-exchange.github.io/docs/v5/rate-limit, "IP Limit"); no
        # Retry-After. A 403 without that text (a CDN's refusal of a region) is not a ban.
        # Waited a minute past that least (the docs give no end, only "at least": a request
        # at exactly 10 minutes may meet the ban again, and every refusal is another wait)
        ip_ban=IpBanAnswer(403, lasts_s=660.0, text="access too frequent"),
        # each account's own limiter paces its bootstrap (about 0.3 s): with 8 slots 1,000
        # accounts wait on the slots, with 32 on the IP's cap above (docs/benchmarks.md,
        # tenth pass)
        rest_concurrency=32,
        # "Do not establish more than 500 connections within a 5-minute window" (same page,
        # "Websocket IP limit"); an account opens one (private)
        ws_openings_per_ip=(500, 300.0),
    ),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    # linear markets only: load_markets makes 3 requests instead of 11
    ccxt_options={
        "defaultType": "swap",
        "fetchMarkets": {"types": ["linear"]},
        # the feed takes its own positions snapshots: ccxt's (a task nobody awaits) is cost
        "watchPositions": {"fetchPositionsSnapshot": False},
    },
)
