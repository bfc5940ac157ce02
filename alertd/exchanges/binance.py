"""Binance USDⓈ-M: REST bootstrap from raw fields, user-data frames, listen-key renewal; and
Binance COIN-M, a margin profile without a live feed (``alertd calc`` and replay).

Raw fields are read from ``info`` because ccxt's unified margin fields ignore ``cum`` and
back-solve collateral (ccxt.md). Wire formats: developers.binance.com, USDⓈ-M Futures:
"Position Information V3", "Account Information V3", "Notional and Leverage Brackets",
user data stream "Event: Balance and Position Update" and "Event: Margin Call"; multi-assets
mode: "Account Information V2" (its ``multiAssetsMargin`` flag, the same as "Get Current
Multi-Assets Mode", ``GET /fapi/v1/multiAssetsMargin``, at a sixth of the request weight) and
"Multi-Assets Mode Asset Index" (``GET /fapi/v1/assetIndex``). Portfolio margin (ccxt's
``options.portfolioMargin``): developers.binance.com, Portfolio Margin, "Account Information"
(``GET /papi/v1/account``), "Query UM Position Information" (``GET /papi/v1/um/positionRisk``),
"Get UM Account Detail" (``GET /papi/v1/um/account``), "UM Notional and Leverage Brackets"
(``GET /papi/v1/um/leverageBracket``), "Query CM Position Information" (``GET
/papi/v1/cm/positionRisk``, the COIN-M positions, followed on COIN-M's marks:
:class:`CoinMMarks`), the UM conditional orders (:func:`usdm_stop`); its user-data stream
(``POST /papi/v1/listenKey``, events on the portfolio margin stream URL) is ccxt.pro's with
the same option.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from alertd.engine.collateral import Collateral, CollateralRatio, ConversionRates, SettleTerms
from alertd.engine.margin import margin_ratio
from alertd.engine.model import MarginAsset, MarginMode, Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.reported import CollateralTiers, ExchangeRatioPosition, liquidation_distance
from alertd.engine.stops import StopKind, StopOrder, Trigger, protection
from alertd.engine.tiers import Tier, TierTable, TierTableError
from alertd.exchanges.common import (
    AdlScale,
    closed_both_sides,
    coin_price_symbol,
    ticker_mark,
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
    RejectedRow,
    Snapshot,
    alike_answers,
    checked_stops,
    dec,
    dec_or_none,
    stamp_or_none,
)
from alertd.feeds.state import (
    AccountEvent,
    AccountMode,
    Coverage,
    FigureScope,
    ModeReading,
    PositionState,
    ReportedAccount,
    older,
)

log = logging.getLogger(__name__)

USDM_PROFILE = ExchangeProfile(
    id="binanceusdm",
    name="Binance USDⓈ-M",
    displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
    displayed_ratio_name="Margin Ratio",
)
# COIN-M margin is the same arithmetic on inverse contracts, settled in the coin
COINM_PROFILE = dataclasses.replace(USDM_PROFILE, id="binancecoinm", name="Binance COIN-M")
# Every USDⓈ-M margin asset's contracts (USDT-M, USDC-M, and any other the catalogue lists:
# BUSD-M until 2023, FDUSD-M): in multi-assets mode in the one USD pool, each margin asset's
# equity (its wallet and its positions' PnL) and its positions' MM at its own bid/ask rates
# (``settle_rates``; ``shared_margin_assets``); in single-asset mode each margin asset its
# own pool (``single_asset_pools``), computed alone
USDM_MARKETS = MarketFilter(settle="USDT", every_settle=True)
MARGIN_CALL = "margin_call"  # the event kind of a MARGIN_CALL push
# the request weight of an open-orders query without a symbol, in queries with one
ALL_SYMBOLS_WEIGHT = 40
# Position Information V3 ``adl`` (the user-data stream has none: the REST snapshot's stands),
# the quantile of "Position ADL Quantile Estimation": 0-4, low to high, updated every 30 s
ADL = AdlScale(lowest=0, highest=4)


def _side(position_side: str, amount: Decimal) -> Side:
    if position_side == "LONG":
        return Side.LONG
    if position_side == "SHORT":
        return Side.SHORT
    return Side.LONG if amount >= 0 else Side.SHORT  # one-way mode: "BOTH", sign gives side


def brackets_to_table(brackets: list[dict[str, Any]]) -> TierTable:
    """Binance brackets (``notionalCap``, ``maintMarginRatio``, ``cum``) as a tier table."""
    ordered = sorted(brackets, key=lambda b: dec(b.get("notionalFloor", 0), "notionalFloor"))
    tiers = []
    for i, b in enumerate(ordered):
        cap = None if i == len(ordered) - 1 else dec(b["notionalCap"], "notionalCap")
        lev = b.get("initialLeverage")
        tiers.append(
            Tier(
                cap,
                dec(b["maintMarginRatio"], "maintMarginRatio"),
                dec(b["cum"], "cum"),
                dec(lev, "initialLeverage") if lev is not None else None,
            )
        )
    return TierTable.build(tiers)


# Binance FAQ "What Is the Unified Account Maintenance Margin Ratio (uniMMR) And How Is It
# Calculated" and "Binance Portfolio Margin Pro Maintenance Margin Ratio Calculation": "100% <
# uniMMR <= 105%: Liquidation will take place"; alertd's ratio (1 at liquidation) is this level
# over uniMMR
PORTFOLIO_LIQUIDATION_UNI_MMR = Decimal("1.05")


def portfolio_mode(
    coin_m_unlisted: str | None = None, coins_unrated: tuple[str, ...] = ()
) -> ModeReading:
    """A portfolio margin account's reading. ``coin_m_unlisted``: why its COIN-M positions
    could not be read this time (a refused request, a malformed row); uniMMR still counts
    them, the UM positions are still followed, and the reason stands in the account's
    limits (status, snapshot; logged once, as a change of mode is). ``coins_unrated``: the
    coins of held COIN-M positions without collateral tiers read (the read refused or
    failing, the coin's row missing or malformed: :func:`pm_collateral_tiers`), whose gains
    count 0 between reconciles, said there too. The tiers' one source is "Portfolio Margin
    Pro Tiered Collateral Rate", a Portfolio Margin Pro endpoint, and Binance's FAQ "How to
    Use the Binance Portfolio Margin Pro Program APIs" says "the Portfolio Margin Pro API
    endpoints are compatible with Binance Portfolio Margin Pro, and will not be available for
    Portfolio Margin (unless under exceptional circumstances)": a portfolio margin account
    may well be refused them, which its status should say, not leave to a log line."""
    if coin_m_unlisted is None:
        coin_m = "COIN-M positions follow their COIN-M marks between reconciles"
    else:
        coin_m = f"COIN-M positions not listed ({coin_m_unlisted})"
    if coins_unrated:
        coin_m += (
            f"; no collateral rate read for {', '.join(coins_unrated)} (GET "
            "/sapi/v2/portfolio/collateralRate, a Portfolio Margin Pro endpoint): its COIN-M "
            "gains count 0 between reconciles, the early side"
        )
    return ModeReading.portfolio_margin(
        "options.portfolioMargin",
        f"Binance's own uniMMR as {PORTFOLIO_LIQUIDATION_UNI_MMR} / uniMMR (100% at the uniMMR "
        f"{PORTFOLIO_LIQUIDATION_UNI_MMR} where Binance liquidates)",
        "Binance's portfolio margin requirement spans the USDⓈ-M and COIN-M futures and the "
        "cross margin account (loans, collateral rates), more than the USDⓈ-M positions alertd "
        "reads (the marks move the UM positions' share of it, the COIN-M positions' PnL and "
        "requirement (their brackets), and their coins' whole equity (COIN-M wallet, cross "
        "margin less loans, UM wallet) at the coin's collateral tiers; other coins and their "
        f"loans stay as read; {coin_m})",
    )


PORTFOLIO_MODE = portfolio_mode()


def cm_positions(
    rows: Any,
    symbol_of: Callable[[str], str],
    contract_size_of: Callable[[str], Decimal | None] = lambda market_id: None,
    coin_of: Callable[[str], str | None] = lambda market_id: None,
) -> tuple[ExchangeRatioPosition, ...]:
    """A portfolio margin account's COIN-M positions as Binance's "Query CM Position
    Information" (``GET /papi/v1/cm/positionRisk``, developers.binance.com, Portfolio Margin)
    gives them: ``positionAmt`` contracts (signed in one-way mode, ``positionSide`` BOTH;
    every symbol's row is listed there, the empty ones left out), ``entryPrice``,
    ``markPrice``, ``unRealizedProfit`` and ``notionalValue`` in the coin, and
    ``liquidationPrice`` (0: none), the distance to it at Binance's mark of the read.
    ``symbol_of`` names a market id; ``contract_size_of`` gives its contract's size in USD
    from the COIN-M catalogue (``contractSize`` of "Exchange Information", GET
    /dapi/v1/exchangeInfo): a position with one has its size in USD and follows its market's
    mark between reconciles (``AccountState.exchange_ratio_positions``); without one it is
    listed as read. ``coin_of`` gives its settle coin from the catalogue (the market's
    ``marginAsset``, ccxt's ``settle``); where it knows none, the row's own ``marginAsset``
    where Binance sends one (COIN-M's /dapi positionRisk rows carry it; the /papi docs'
    example, a quarterly's BTCUSD_201225, has none), else None: never cut
    from the symbol (a quarterly's, BTCUSD_261225, is BTC/USD:BTC-261225 in ccxt)."""
    if not isinstance(rows, list):
        raise FrameError("cm/positionRisk: expected a list of positions")
    out = []
    for raw in rows:
        if not isinstance(raw, dict) or not isinstance(raw.get("symbol"), str):
            raise FrameError("cm/positionRisk: an entry is not a position with a symbol")
        where = f"cm/positionRisk {raw['symbol']}"
        amount = dec(raw.get("positionAmt"), f"{where} positionAmt")
        if amount == 0:
            continue
        side = _side(str(raw.get("positionSide", "BOTH")), amount)
        mark = dec(raw.get("markPrice"), f"{where} markPrice")
        if mark <= 0:
            raise FrameError(f"{where} markPrice: not positive: {mark}")
        liquidation = dec_or_none(raw.get("liquidationPrice"))
        size = contract_size_of(raw["symbol"])
        margin_asset = raw.get("marginAsset")
        coin = coin_of(raw["symbol"]) or (margin_asset if isinstance(margin_asset, str) else None)
        out.append(
            ExchangeRatioPosition(
                symbol=symbol_of(raw["symbol"]),
                side=side,
                contracts=abs(amount),
                entry_price=dec(raw.get("entryPrice"), f"{where} entryPrice"),
                mark_price=mark,
                notional=abs(dec(raw.get("notionalValue"), f"{where} notionalValue")),
                unrealized_pnl=dec(raw.get("unRealizedProfit"), f"{where} unRealizedProfit"),
                liquidation_price=liquidation,
                liquidation_distance=liquidation_distance(side, mark, liquidation),
                as_read=True,
                quantity=None if size is None else abs(amount) * size,
                inverse=size is not None,
                coin=coin or None,
            )
        )
    return tuple(out)


def cm_maintenance_margins(
    answer: Any, symbol_of: Callable[[str], str]
) -> dict[tuple[str, Side], Decimal]:
    """Each COIN-M position's maintenance margin, in its coin, by (symbol, side), as Binance's
    "Get CM Account Detail" (``GET /papi/v1/cm/account``, weight 5, developers.binance.com,
    Portfolio Margin) lists it: ``positions[]`` with ``symbol``, ``positionSide``,
    ``positionAmt`` and ``maintMargin`` (every symbol listed, the empty ones left out here).
    ``positionRisk`` has no margin figure of the position: this is Binance's own."""
    if not isinstance(answer, dict) or not isinstance(answer.get("positions", []), list):
        raise FrameError("cm/account: expected an object with a list of positions")
    out: dict[tuple[str, Side], Decimal] = {}
    for raw in answer.get("positions", []):
        if not isinstance(raw, dict) or not isinstance(raw.get("symbol"), str):
            raise FrameError("cm/account: a position is not an object with a symbol")
        where = f"cm/account {raw['symbol']}"
        amount = dec(raw.get("positionAmt", "0"), f"{where} positionAmt")
        if amount == 0:
            continue
        side = _side(str(raw.get("positionSide", "BOTH")), amount)
        out[(symbol_of(raw["symbol"]), side)] = dec(raw.get("maintMargin"), f"{where} maintMargin")
    return out


def cm_brackets(
    answer: Any, symbol_of: Callable[[str], str]
) -> tuple[dict[str, TierTable], list[str]]:
    """Each COIN-M market's leverage brackets, by symbol, as a tier table of its notional in
    the coin, from Binance's "Query CM Notional and Leverage Brackets" (``GET
    /papi/v1/cm/leverageBracket``, USER_DATA, weight 1; developers.binance.com, Portfolio
    Margin, account REST API): rows of ``symbol`` and ``brackets[]`` with ``qtyFloor`` and
    ``qtyCap`` (the bracket's edges in the coin), ``maintMarginRatio`` and ``cum`` (in the
    coin): a position's maintenance margin in the coin is its notional in the coin times its
    bracket's rate less ``cum`` (Binance COIN-M FAQ "Leverage and Margin of COIN-Margined
    Futures"). The lower edge is spelt ``qtylFloor`` by the COIN-M docs ("Notional Bracket
    for Symbol", GET /dapi/v2/leverageBracket, and the pair's v1: "lower edge of base asset
    quantity") and ``qtyFloor`` by the /papi docs' example: either is read, and it only
    orders the rows (:func:`_brackets_in_order`). Also the problems: a malformed symbol's
    brackets are left out (its requirement then stays as read), named."""
    if not isinstance(answer, list):
        raise FrameError("cm/leverageBracket: expected a list of symbols")
    out: dict[str, TierTable] = {}
    problems = []
    for raw in answer:
        market_id = raw.get("symbol") if isinstance(raw, dict) else None
        rows = raw.get("brackets") if isinstance(raw, dict) else None
        if not isinstance(market_id, str) or not isinstance(rows, list) or not rows:
            problems.append("cm/leverageBracket: a row without a symbol or its brackets")
            continue
        where = f"cm/leverageBracket {market_id}"
        try:
            if not all(isinstance(row, dict) for row in rows):
                raise FrameError(f"{where}: a bracket is not an object")
            ordered = _brackets_in_order(rows, where)
            last = len(ordered) - 1
            tiers = [
                Tier(
                    None if i == last else dec(b.get("qtyCap"), f"{where} qtyCap"),
                    dec(b.get("maintMarginRatio"), f"{where} maintMarginRatio"),
                    dec(b.get("cum"), f"{where} cum"),
                )
                for i, b in enumerate(ordered)
            ]
            out[symbol_of(market_id)] = TierTable.build(tiers)
        except FrameError as exc:
            problems.append(str(exc))
        except TierTableError as exc:
            problems.append(f"{where} brackets[{exc.index}] {exc.field}: {exc.reason}")
    return out, problems


def _brackets_in_order(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """A COIN-M market's bracket rows, ascending: by their lower edge where every row has
    one (``qtyFloor``, or ``qtylFloor`` as the /dapi docs spell it), else by their level
    (``bracket``, 1 the lowest, in every docs' example); the caps are checked ascending by
    :meth:`TierTable.build`."""
    for field in ("qtyFloor", "qtylFloor", "bracket"):
        if all(row.get(field) is not None for row in rows):
            return sorted(rows, key=lambda b: dec(b[field], f"{where} {field}"))
    raise FrameError(f"{where} qtyFloor: missing (nor qtylFloor, nor bracket)")


def pm_collateral_tiers(answer: Any) -> tuple[dict[str, CollateralTiers], list[str]]:
    """Each asset's collateral tiers from Binance's "Portfolio Margin Pro Tiered Collateral
    Rate" (``GET /sapi/v2/portfolio/collateralRate``, USER_DATA, weight 50 of the spot API's
    per-IP limit; developers.binance.com, Derivatives, Portfolio Margin Pro, market data; the
    ``/sapi/v1`` one is "Classic Portfolio Margin"'s, flat): rows of ``asset`` and
    ``collateralInfo``, the tiers of the asset's equity value (``tierFloor`` to ``tierCap``)
    with their ``collateralRate`` and ``cum`` ("account equity quick addition number", 0 in
    the docs' example where a second tier's rate is lower; where a row has none, None): the
    value counts the lower of the tiers' slices and ``value x rate + cum``
    (:func:`~alertd.engine.reported.collateral_value`).

    uniMMR counts an asset's equity as min(equity x index x collateralRate, equity x index)
    (Binance FAQ "What Is the Unified Account Maintenance Margin Ratio (uniMMR)"), each
    tier's rate on the part of the value within it. Also the problems: a malformed row is
    left out (its asset's gain then counts 0 and its loss in full, as before the rates were
    read), named."""
    if not isinstance(answer, list):
        raise FrameError("portfolio/collateralRate: expected a list of assets")
    out: dict[str, CollateralTiers] = {}
    problems = []
    for raw in answer:
        asset = raw.get("asset") if isinstance(raw, dict) else None
        where = f"portfolio/collateralRate {asset}" if isinstance(asset, str) else None
        tiers = raw.get("collateralInfo") if isinstance(raw, dict) else None
        if not isinstance(asset, str) or where is None or not isinstance(tiers, list) or not tiers:
            problems.append("portfolio/collateralRate: a row without an asset or its tiers")
            continue
        try:
            out[asset] = _collateral_tiers(tiers, where)
        except FrameError as exc:
            problems.append(str(exc))
    return out, problems


def _collateral_tiers(tiers: list[Any], where: str) -> CollateralTiers:
    """One asset's ``collateralInfo`` rows as its tiers, ascending, or :class:`FrameError`
    naming the row and field: each needs its ``tierFloor``, ``tierCap`` (but the last, whose
    rate goes on past it) and ``collateralRate`` within 0 and 1; the tiers must cover the value
    from 0 without a gap or an overlap (the first floor 0, each floor the previous cap, each
    cap above its floor), as the docs' example does: a missing floor or an unreadable cap
    read as 0 or none made tiers overlap, which counted the same dollars twice."""
    found = []
    for i, tier in enumerate(tiers):
        if not isinstance(tier, dict):
            raise FrameError(f"{where}: a tier is not an object")
        row = f"{where} collateralInfo[{i}]"
        rate = dec(tier.get("collateralRate"), f"{row} collateralRate")
        if not 0 <= rate <= 1:
            raise FrameError(f"{row} collateralRate: {rate} is not within 0 and 1")
        floor = dec(tier.get("tierFloor"), f"{row} tierFloor")
        cap = tier.get("tierCap")
        cum = tier.get("cum")
        found.append(
            (
                floor,
                None if cap is None else dec(cap, f"{row} tierCap"),
                rate,
                None if cum is None else dec(cum, f"{row} cum"),
                row,
            )
        )
    found.sort(key=lambda t: t[0])
    out = []
    edge = Decimal(0)
    for i, (floor, cap, rate, cum, row) in enumerate(found):
        if floor != edge:
            what = "the first tier's floor, not 0" if i == 0 else f"not the previous cap {edge}"
            raise FrameError(f"{row} tierFloor: {floor} is {what}")
        last = i == len(found) - 1
        if not last and cap is None:
            raise FrameError(f"{row} tierCap: missing")
        if cap is not None and cap <= floor:
            raise FrameError(f"{row} tierCap: {cap} is not above its tierFloor {floor}")
        bound = floor * (1 - rate)
        if cum is not None and not 0 <= cum <= bound:
            # value x rate + cum above the value itself at the tier's floor, or below the
            # value's own rate: a hostile cum that min() would pick (a 1,000,000 fall counted)
            raise FrameError(f"{row} cum: {cum} is not within 0 and {bound.normalize():f}")
        # past the last cap read, its rate goes on
        out.append((floor, None if last else cap, rate, cum))
        edge = cap if cap is not None else edge
    return tuple(out)


def pm_collateral_rates(
    answer: Any,
) -> tuple[dict[str, tuple[Decimal, Decimal]], list[str]]:
    """Each asset's lowest and highest collateral rate of its tiers
    (:func:`pm_collateral_tiers`): what a rise and a fall of its equity count at where the
    coin's whole equity is not read, so that it cannot be placed in its tiers
    (:func:`~alertd.engine.reported.counted_change`): never more equity than Binance counts,
    exact for an asset with one rate. Also the problems."""
    tiers, problems = pm_collateral_tiers(answer)
    return {asset: _bounds(rows) for asset, rows in tiers.items()}, problems


@dataclasses.dataclass(frozen=True, slots=True)
class PmBalance:
    """An asset's equity outside its COIN-M wallet and positions, in the asset, as "Account
    Balance" lists it (:func:`pm_coin_balances`), in the parts the portfolio margin stream
    pushes apart."""

    cross: Decimal  # crossMarginAsset: the cross margin account's, free + locked
    liability: Decimal  # crossMarginBorrowed + crossMarginInterest: its loans
    um_wallet: Decimal  # umWalletBalance
    um_pnl: Decimal  # umUnrealizedPNL
    updated_ms: int | None  # the row's updateTime (a push older than it is in it)

    @property
    def other(self) -> Decimal:
        return self.cross - self.liability + self.um_wallet + self.um_pnl


def pm_coin_balances(answer: Any) -> dict[str, PmBalance]:
    """Each asset's equity, in the asset, outside its COIN-M wallet and positions, as
    "Account Balance" (``GET /papi/v1/balance``, weight 20; developers.binance.com, Portfolio
    Margin, account REST API) lists it: the cross margin account's ``crossMarginAsset`` ("=
    crossMarginFree + crossMarginLocked") less ``crossMarginBorrowed`` and
    ``crossMarginInterest`` (its loans), and the UM ``umWalletBalance`` and
    ``umUnrealizedPNL``. With the COIN-M wallet and positions' PnL it is the asset's equity
    that uniMMR counts at its index and collateral rate."""
    if not isinstance(answer, list):
        raise FrameError("balance: expected a list of assets")
    out: dict[str, PmBalance] = {}
    for raw in answer:
        if not isinstance(raw, dict) or not isinstance(raw.get("asset"), str):
            raise FrameError("balance: an asset is not an object with its name")
        where = f"balance {raw['asset']}"
        fields = ("crossMarginAsset", "crossMarginBorrowed", "crossMarginInterest")
        held, borrowed, interest = (dec(raw.get(f, "0"), f"{where} {f}") for f in fields)
        um = dec(raw.get("umWalletBalance", "0"), f"{where} umWalletBalance")
        pnl = dec(raw.get("umUnrealizedPNL", "0"), f"{where} umUnrealizedPNL")
        at = stamp_or_none(raw.get("updateTime"))
        out[raw["asset"]] = PmBalance(held, borrowed + interest, um, pnl, at)
    return out


def pushed_cross_margin(message: Any) -> tuple[dict[str, tuple[str, Decimal]], int | None]:
    """What a portfolio margin stream's push of the cross margin account tells, by asset: the
    part of "Account Balance" it replaces (``cross``: ``crossMarginAsset``; ``liability``:
    ``crossMarginBorrowed`` + ``crossMarginInterest``) and its new value, with the push's
    stamp. Binance's Portfolio Margin user data streams (developers.binance.com, derivatives,
    portfolio-margin, user-data-streams): "Event: Margin Account Update"
    (``outboundAccountPosition``, "sent any time an account balance has changed": ``B[]`` of
    ``a`` the asset, ``f`` free, ``l`` locked, absolute; ``u`` "Time of last account update")
    gives ``cross`` = ``f`` + ``l``; "Event: Liability Update" (``liabilityChange``, on a
    borrow, a repay, interest: ``a``, ``p`` the principal and ``i`` the interest of the
    change, ``l`` "Total Liability", the asset's whole debt after it; ``E``) gives
    ``liability`` = ``l`` (read as the loans and their interest together, as "Account
    Balance" splits them: the docs' example's ``l`` is above its ``p`` + ``i``, the debt
    before the change in it; undocumented beyond "Total Liability", Binance's own SDK model
    ``LiabilityChange`` included, and Binance's margin account names its total asset less
    net asset, each net asset less ``borrowed`` and ``interest``, "total liability":
    docs/exchanges.md). "Event: Margin Balance Update" (``balanceUpdate``: ``d`` a
    delta) is not applied: the ``outboundAccountPosition`` that follows every balance change
    gives the balance itself, and a delta counted too would count it twice. Empty: not such
    a push."""
    if not isinstance(message, dict):
        return {}, None
    event = message.get("e")
    if event == "outboundAccountPosition":
        out = {}
        for raw in _balance_rows(message.get("B"), "outboundAccountPosition: B"):
            where = f"outboundAccountPosition {raw['a']}"
            free, locked = dec(raw.get("f"), f"{where} f"), dec(raw.get("l"), f"{where} l")
            out[raw["a"]] = ("cross", free + locked)
        at = stamp_or_none(message.get("u"))
        return out, at if at is not None else stamp_or_none(message.get("E"))
    if event == "liabilityChange":
        asset = message.get("a")
        if not isinstance(asset, str):
            raise FrameError("liabilityChange: no asset")
        total = dec(message.get("l"), f"liabilityChange {asset} l")
        return {asset: ("liability", total)}, stamp_or_none(message.get("E"))
    return {}, None


# the event reason types (``a.m``) of "Event: Futures Balance and Position Update" that move
# money between the account's own wallets (Portfolio Margin user data streams; the full list
# also holds DEPOSIT, WITHDRAW, ORDER, FUNDING_FEE, ...): the other side is pushed apart
TRANSFER_REASONS = frozenset({"MARGIN_TRANSFER", "ASSET_TRANSFER"})


def pushed_um_wallets(message: Any) -> tuple[dict[str, tuple[str, Decimal]], int | None]:
    """The UM wallets a portfolio margin stream's UM update gives, by asset, as
    :func:`pushed_cross_margin` gives its parts: "Event: Futures Balance and Position Update"
    (``ACCOUNT_UPDATE`` with ``fs`` UM; "pushed only when update happens on user's account,
    including changes on balances": ``a.B[]`` of ``a`` the asset and ``wb`` its "Wallet
    Balance", "Account Balance"'s ``umWalletBalance``; ``E``). A coin moved between its UM
    wallet and its cross margin account (POST /papi/v1/asset-collection "Fund Collection by
    Asset", /papi/v1/auto-collection, /papi/v1/bnb-transfer) is pushed on both sides: this
    one and ``outboundAccountPosition``. Empty: not such a push."""
    if not isinstance(message, dict) or message.get("fs") != "UM":
        return {}, None
    if message.get("e") != "ACCOUNT_UPDATE":
        return {}, None  # an order's ("Event: Futures Order update", ORDER_TRADE_UPDATE)
    update = message.get("a")
    rows = update.get("B", []) if isinstance(update, dict) else None
    out = {}
    for raw in _balance_rows(rows, "UM ACCOUNT_UPDATE: a.B"):
        out[raw["a"]] = ("um", dec(raw.get("wb"), f"UM ACCOUNT_UPDATE {raw['a']} wb"))
    return out, stamp_or_none(message.get("E"))


def _row_assets(rows: Any) -> frozenset[str]:
    """The assets a push's balance rows (``B[]``) name; none where they are not a list."""
    if not isinstance(rows, list):
        return frozenset()
    return frozenset(r["a"] for r in rows if isinstance(r, dict) and isinstance(r.get("a"), str))


def _balance_rows(rows: Any, where: str) -> list[dict[str, Any]]:
    """A push's balance rows (``B[]``), each an object naming its asset (``a``)."""
    if not isinstance(rows, list):
        raise FrameError(f"{where} is not a list of balances")
    for raw in rows:
        if not isinstance(raw, dict) or not isinstance(raw.get("a"), str):
            raise FrameError(f"{where}: a balance row without an asset")
    return rows


def _bounds(tiers: CollateralTiers) -> tuple[Decimal, Decimal]:
    """The lowest and the highest rate of a coin's collateral tiers."""
    return min(t[2] for t in tiers), max(t[2] for t in tiers)


def cm_wallets(answer: Any) -> dict[str, Decimal]:
    """Each coin's COIN-M wallet, in the coin, as "Get CM Account Detail" (``GET
    /papi/v1/cm/account``) lists it: ``assets[]`` with ``asset`` and ``crossWalletBalance``
    (the docs' example: BTC 0.00241969). Its value moves with the coin's index in uniMMR's
    equity of the coin (:func:`pm_collateral_rates`)."""
    assets = answer.get("assets", []) if isinstance(answer, dict) else None
    if not isinstance(assets, list):
        raise FrameError("cm/account: expected an object with a list of assets")
    out: dict[str, Decimal] = {}
    for raw in assets:
        if not isinstance(raw, dict) or not isinstance(raw.get("asset"), str):
            raise FrameError("cm/account: an asset is not an object with its name")
        where = f"cm/account {raw['asset']} crossWalletBalance"
        out[raw["asset"]] = dec(raw.get("crossWalletBalance"), where)
    return out


# "Event: Liability Update" ``t`` values alertd knows: BORROW (the PM docs' example), REPAY
# and INTEREST (the margin risk stream's causes "Repayment", "Interest Calculation"; their
# strings inferred, not documented)
LIABILITY_TYPES = frozenset({"BORROW", "REPAY", "INTEREST"})


def cm_wallet_times(answer: Any) -> dict[str, int]:
    """Each coin's COIN-M wallet's ``updateTime`` in "Get CM Account Detail" (``assets[]``;
    the docs' example: 1625474304765), where it is a time (:func:`cm_wallets` checked the
    rows): a push stamped before it is in the wallet as read."""
    assets = answer.get("assets", []) if isinstance(answer, dict) else []
    return {
        raw["asset"]: at
        for raw in assets
        if (at := stamp_or_none(raw.get("updateTime"))) is not None
    }


# Binance's answer to a /papi request of an account not in portfolio margin (Binance FAQ "How
# to Use the Binance Portfolio Margin Pro Program APIs": "request ID is not a Portfolio Margin
# Account"), as ccxt's error text carries the body
NOT_PORTFOLIO_CODE = '"code":-21001'
NOT_PORTFOLIO = ModeReading(
    AccountMode.UNKNOWN,
    "options.portfolioMargin",
    Coverage.REFUSED,
    "binanceusdm: the account's options.portfolioMargin is set but Binance answers that it is "
    "not a portfolio margin account (code -21001); remove the option from the account's "
    "config",
)


def usdm_mode(answer: Any, portfolio_margin: bool = False) -> ModeReading:
    """The account's mode from its ``multiAssetsMargin`` flag (true multi-assets, false
    single-asset), as "Get Current Multi-Assets Mode" (GET /fapi/v1/multiAssetsMargin) and
    "Account Information V2" (GET /fapi/v2/account) both answer it (developers.binance.com,
    USDⓈ-M futures, account REST API).

    A portfolio margin account (ccxt's ``options.portfolioMargin``) keeps its USDⓈ-M positions
    under /papi and its risk in Binance's uniMMR (:func:`portfolio_account`): Binance's own
    ratio stands in.
    """
    if portfolio_margin:
        return PORTFOLIO_MODE
    flag = answer.get("multiAssetsMargin") if isinstance(answer, dict) else None
    if flag is True or flag == "true":
        # one USD pool: the settle wallet, every other coin at its assetIndex index less its
        # haircut (moving with its perpetual's mark), the USDⓈ-M positions (see
        # multi_assets_collateral)
        return ModeReading(AccountMode.MULTI_ASSETS, "multiAssetsMargin true")
    if flag is False or flag == "false":
        # a pool per margin asset: USDT-M positions against the USDT wallet, USDC-M against
        # the USDC wallet (single_asset_pools), each computed on its own
        return ModeReading(AccountMode.SINGLE_ASSET, "multiAssetsMargin false")
    raise FrameError(f"multiAssetsMargin: not a boolean: {flag!r}")


# What Binance's portfolio margin figures are beside alertd's: its own (the UM positions
# against the UM wallet, as a single-asset pool) cover less
PORTFOLIO_FIGURES = FigureScope(
    ours="UM positions and wallet only",
    maintenance_margin="accountMaintMargin (the whole account: UM, CM, margin)",
    margin_balance="uniMMR x accountMaintMargin (adjusted equity, collateral rates)",
    margin_ratio=f"{PORTFOLIO_LIQUIDATION_UNI_MMR} / uniMMR",
    liquidation_price="liquidationPrice (the whole account's uniMMR at its liquidation level)",
    unit="USD",
)


def portfolio_account(answer: Any) -> ReportedAccount:
    """Binance's own figures of a portfolio margin account from "Account Information"
    (``GET /papi/v1/account``, developers.binance.com, Portfolio Margin): ``uniMMR`` ("Portfolio
    margin account maintenance margin rate"), ``accountMaintMargin`` (the account's
    maintenance margin in USD). uniMMR is adjusted equity over that margin (Binance FAQ
    "What Is the Unified Account Maintenance Margin Ratio (uniMMR)": ``∑adjustedEquity / ∑MM``,
    adjusted equity being ``∑Equity`` less the open-order loss); ``accountEquity`` (the
    equity at collateral rates, in USD) and ``actualEquity`` (without collateral rates) are
    not that numerator (open orders' loss is not taken off them), so the equity the ratio
    moves by is ``uniMMR x accountMaintMargin``, exactly the numerator of Binance's figure.

    The ratio in alertd's direction is :data:`PORTFOLIO_LIQUIDATION_UNI_MMR` / uniMMR: 1 where
    Binance liquidates. With no maintenance margin (nothing held or owed) the ratio is 0 and
    no equity is derived from it (nothing for marks to move)."""
    if not isinstance(answer, dict):
        raise FrameError("papi account: expected an object")
    uni_mmr = dec(answer.get("uniMMR"), "uniMMR")
    mm = dec(answer.get("accountMaintMargin"), "accountMaintMargin")
    if mm < 0:
        raise FrameError(f"accountMaintMargin: negative: {mm}")
    if mm == 0:
        return ReportedAccount(mm, None, Decimal(0), PORTFOLIO_FIGURES)
    equity = uni_mmr * mm
    ratio = margin_ratio(PORTFOLIO_LIQUIDATION_UNI_MMR * mm, equity)
    return ReportedAccount(mm, equity, ratio, PORTFOLIO_FIGURES)


def single_asset_pools(
    account: dict[str, Any], assets: tuple[str, ...]
) -> dict[str, tuple[Decimal, ReportedAccount]]:
    """The pools of the margin assets ``assets`` (those besides the settle currency whose
    contracts the catalogue lists: ``MarketFilter.margin_assets``) in single-asset mode, from
    "Account Information V2/V3" (``GET /fapi/v2/account``): each is its own pool
    ("single-asset mode: each margin asset its own pool"), its cross wallet
    ``assets[].crossWalletBalance`` and Binance's figures of it, ``maintMargin`` and
    ``marginBalance`` of the same row (the account's ``total*`` fields are the USDT pool's
    alone: "only for USDT asset"). An asset the answer does not list has an empty wallet."""
    rows = {row.get("asset"): row for row in account.get("assets") or [] if isinstance(row, dict)}
    pools = {}
    for asset in assets:
        row = rows.get(asset)
        if row is None:
            pools[asset] = (Decimal(0), ReportedAccount())
            continue
        where = f"assets[{asset}]"
        wallet = dec(row.get("crossWalletBalance"), f"{where}.crossWalletBalance")
        mm = dec_or_none(row.get("maintMargin"))
        balance = dec_or_none(row.get("marginBalance"))
        ratio = mm / balance if mm is not None and balance else None
        pools[asset] = (wallet, ReportedAccount(mm, balance, ratio))
    return pools


def multi_assets_collateral(
    account: dict[str, Any],
    asset_index: list[dict[str, Any]],
    settle: str,
    markets: dict[str, Any],
    margin_assets: Collection[str] = (),
) -> tuple[Collateral, ...]:
    """The coins of a multi-assets account's USD pool besides ``settle`` (its wallet balance)
    and the ``margin_assets`` (each on an equity line of its own: ``shared_margin_assets``).

    ``account`` is ``GET /fapi/v3/account``, ``asset_index`` ``GET /fapi/v1/assetIndex``. Each
    coin counts ``min(equity x bidRate, equity x askRate)`` (Binance FAQ "How to Calculate
    Margin in Multi-Assets Mode"), with ``bidRate = index x (1 - bidBuffer)`` and ``askRate =
    index x (1 + askBuffer)``: at its index, with ratio ``1 - bidBuffer`` when held and
    ``1 + askBuffer`` as a liability. A coin with a USDⓈ-M perpetual moves with that
    perpetual's mark (the index keeps its basis to it); raises :class:`FrameError` naming a
    held coin the index does not price.
    """
    index = {row.get("symbol"): row for row in asset_index if isinstance(row, dict)}
    coins = []
    for entry in account.get("assets") or []:
        if not isinstance(entry, dict):
            raise FrameError("account assets: a row that is not an object")
        asset = entry.get("asset")
        if not isinstance(asset, str) or asset == settle or asset in margin_assets:
            continue
        # multi-assets mode is cross only: the cross wallet is the coin's whole balance
        amount = dec(entry.get("crossWalletBalance"), f"assets[{asset}].crossWalletBalance")
        if amount == 0:
            continue
        row = index.get(f"{asset}USD")
        if row is None:
            raise FrameError(f"assetIndex: no {asset}USD index for the {asset} balance")
        price, ratio, liability = _coin_terms(row, asset)
        coins.append(
            Collateral(
                asset=asset,
                amount=amount,
                price=price,
                ratio=ratio,
                price_symbol=coin_price_symbol(asset, settle, markets),
                liability_ratio=liability,
            )
        )
    return tuple(coins)


# Every follower of the asset index stream re-rates from the same rows (one frame a second,
# up to 1,000 accounts): each distinct row is read once, its figures shared (they are frozen).
# Keyed by the row's raw fields where they hash (a JSON string or number); a field that does
# not (a malformed list) is read uncached, to be named as usual.
_ROW_CACHE_SIZE = 1024


def _hashable(*fields: Any) -> bool:
    # not a bool: True would find the entry of 1 (equal, same hash), a malformed field read
    return all(type(f) in (str, int, float, type(None)) for f in fields)


def _coin_terms(row: Mapping[str, Any], asset: str) -> tuple[Decimal, CollateralRatio, Decimal]:
    """A coin's price, ratio and liability ratio from its ``<asset>USD`` row of the asset
    index: its index, ``1 - bidBuffer`` held and ``1 + askBuffer`` owed."""
    fields = (row.get("index"), row.get("bidBuffer"), row.get("askBuffer"))
    if _hashable(*fields):
        return _read_coin_terms(asset, *fields)
    return _read_coin_terms.__wrapped__(asset, *fields)


@functools.lru_cache(maxsize=_ROW_CACHE_SIZE)
def _read_coin_terms(
    asset: str, index: Any, bid: Any, ask: Any
) -> tuple[Decimal, CollateralRatio, Decimal]:
    price = dec(index, f"assetIndex {asset}USD index")
    if price <= 0:
        raise FrameError(f"assetIndex: {asset}USD index is {price}")
    # a bid buffer discounts the coin (0 to all of it) and an ask buffer surcharges a debt:
    # one outside that is a bad row, named like any other (never a TierTableError that would
    # fail the frame or the reconcile around it)
    bid_buffer = dec(bid, f"assetIndex {asset}USD bidBuffer")
    if not 0 <= bid_buffer <= 1:
        raise FrameError(f"assetIndex: {asset}USD bidBuffer {bid_buffer} is outside [0, 1]")
    ask_buffer = dec(ask, f"assetIndex {asset}USD askBuffer")
    if ask_buffer < 0:
        raise FrameError(f"assetIndex: {asset}USD askBuffer {ask_buffer} is below 0")
    return price, CollateralRatio.flat(1 - bid_buffer), 1 + ask_buffer


def shared_margin_assets(
    account: dict[str, Any],
    asset_index: list[dict[str, Any]],
    assets: Sequence[str],
    held: Collection[str] = (),
) -> tuple[MarginAsset, ...]:
    """The margin assets ``assets`` besides the settle currency (those whose contracts the
    catalogue lists: USDC, FDUSD) in a multi-assets account's USD pool, each on an equity
    line of its own: its cross wallet (``GET /fapi/v3/account`` ``assets[].crossWalletBalance``)
    and the PnL of its positions at its ``assetIndex`` row's rates (:func:`settle_rates`:
    "Account Equity = ∑min(assetEquity*bidRate, assetEquity*askRate)", its positions' MM at
    its askRate). Every asset gets its line, even without a wallet: a USDC-M position's PnL
    and MM are USDC's. An asset with a wallet or a position (``held``: the margin assets of
    the positions held) whose row is missing is a :class:`FrameError` naming it (never at
    par); one with neither is left out (nothing of it counts)."""
    rows = {r.get("asset"): r for r in account.get("assets") or [] if isinstance(r, dict)}
    indexed = {r.get("symbol") for r in asset_index if isinstance(r, dict)}
    out = []
    for asset in assets:
        row = rows.get(asset)
        where = f"assets[{asset}].crossWalletBalance"
        wallet = dec(row.get("crossWalletBalance"), where) if row is not None else Decimal(0)
        counts = wallet != 0 or asset in held
        if not counts and f"{asset}USD" not in indexed:
            continue
        try:
            rates = settle_rates(asset_index, asset)
        except FrameError:
            if counts:
                raise
            continue  # a bad row of an asset nothing of the account's is in: not its problem
        out.append(MarginAsset(asset, wallet, rates))
    return tuple(out)


def settle_rates(asset_index: list[dict[str, Any]], settle: str) -> SettleTerms | None:
    """How a multi-assets pool counts the settle currency's own equity: at its ``assetIndex``
    row's ``bidRate`` while positive and ``askRate`` once negative, its positions'
    maintenance margin at ``askRate`` (Binance FAQ "How to Calculate Margin in Multi-Assets
    Mode": "Account Equity = ∑min(assetEquity*bidRate, assetEquity*askRate)", example 2's
    "80 x 0.99495"; the docs' ``!assetIndex@arr`` example has a ``USDTUSD`` row). None at par.
    Raises :class:`FrameError` naming a missing row or a bad rate: counting USDT at par in a
    depeg would put the pool on the unsafe side without a word."""
    key = f"{settle}USD"
    row = next((r for r in asset_index if isinstance(r, dict) and r.get("symbol") == key), None)
    if row is None:
        raise FrameError(f"assetIndex: no {key} row (the rates {settle} converts at)")
    return _row_rates(row, key)


def _row_rates(row: Mapping[str, Any], key: str) -> SettleTerms | None:
    """The rates of one asset index row (``key``: its symbol, for the problem's words)."""
    fields = (row.get("bidRate"), row.get("askRate"))
    if _hashable(*fields):
        return _read_rates(key, *fields)
    return _read_rates.__wrapped__(key, *fields)


@functools.lru_cache(maxsize=_ROW_CACHE_SIZE)
def _read_rates(key: str, bid_rate: Any, ask_rate: Any) -> SettleTerms | None:
    bid = dec(bid_rate, f"assetIndex {key} bidRate")
    ask = dec(ask_rate, f"assetIndex {key} askRate")
    if bid <= 0 or ask < bid:
        raise FrameError(f"assetIndex: {key} bidRate {bid} and askRate {ask} (bid > 0, ask >= bid)")
    return SettleTerms.of(None, Decimal(0), None, ConversionRates(bid, ask))


# The "Multi-Assets Mode Asset Index" market stream (developers.binance.com, USDⓈ-M futures,
# websocket market streams, "Multi-Assets Mode Asset Index": stream name "!assetIndex@arr OR
# <assetSymbol>@assetIndex", update speed 1s): ``assetIndexUpdate`` rows with ``s`` the
# index symbol ("USDTUSD"), ``i`` the index, ``b``/``a`` the bid/ask buffers and ``B``/``A``
# the bid/ask rates (``q``, ``g``, ``Q``, ``G``: the auto-exchange ones, not read); the
# fields of ``GET /fapi/v1/assetIndex`` under one-letter names, read here as that row
ASSET_INDEX_STREAM = "!assetIndex@arr"
ASSET_INDEX_EVENT = "assetIndexUpdate"
ASSET_INDEX_HASH = "assetIndex"  # the ccxt message hash its watch waits on
_STREAM_FIELDS = {
    "s": "symbol",
    "i": "index",
    "b": "bidBuffer",
    "a": "askBuffer",
    "B": "bidRate",
    "A": "askRate",
}


def streamed_index_rows(frame: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of one asset index frame (a list of ``assetIndexUpdate`` events, or one event
    of a ``<assetSymbol>@assetIndex`` stream) in the REST row's shape, checked
    (:func:`checked_index_rows`)."""
    events = frame if isinstance(frame, list) else [frame]
    return checked_index_rows(
        [
            {name: event.get(field) for field, name in _STREAM_FIELDS.items()}
            if isinstance(event, dict)
            else event
            for event in events
        ]
    )


def checked_index_rows(rows: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The asset index ``rows`` (``GET /fapi/v1/assetIndex``'s shape) checked as a snapshot
    reads them (an index above 0, buffers, rates with bid > 0 and ask >= bid), and what was
    wrong with the others (skipped, each named: one bad row does not stop the others). Each
    good row keeps the fields alertd reads alone, the stream's: a REST row (with ``time`` and
    the ``autoExchange`` buffers) and a streamed one of the same rates are then equal, so the
    stream's change filter does not take every REST read for a change of every row."""
    good: list[dict[str, Any]] = []
    problems: list[str] = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("symbol"), str):
            problems.append(f"assetIndex: not a row with a symbol: {str(row)[:80]!r}")
            continue
        symbol = row["symbol"][:40]
        try:
            _coin_terms(row, symbol.removesuffix("USD"))
            _row_rates(row, symbol)
        except FrameError as exc:
            problems.append(RejectedRow(str(exc), symbol))
            continue
        good.append({name: row.get(name) for name in _STREAM_FIELDS.values()})
    return good, problems


def rerated(
    rows: Mapping[str, Mapping[str, Any]],
    settle: str,
    terms: SettleTerms | None,
    lines: tuple[MarginAsset, ...],
    coins: tuple[Collateral, ...],
) -> tuple[SettleTerms | None, tuple[MarginAsset, ...], tuple[Collateral, ...]]:
    """A multi-assets pool as it counts now (``terms``: the settle currency's rates,
    ``lines``, ``coins``: the snapshot's, moved by the rows before) at the asset index
    ``rows`` streamed since (by symbol, checked by :func:`streamed_index_rows`): each line's
    and the settle currency's rates, each coin's buffers from its row; the wallets and
    amounts as read. An asset without a row (an expired one: rejected in every frame since)
    keeps the rates it counts at now: never the snapshot's, which a depeg streamed since
    has left (par for USDC), nor par.

    A coin with a perpetual keeps the price it moves with that perpetual's mark (the
    snapshot's index and its basis to the mark): the index stream and the mark stream tick
    apart, and an index re-based on a mark a tick older than the one it was figured at would
    count a fall twice once the mark arrives (a 3.6% fall of BTC, as the coin's basis, and
    again as its mark). A coin without one (it keeps its price between snapshots) takes the
    streamed index."""
    settle_row = rows.get(f"{settle}USD")
    if settle_row is not None:
        terms = _row_rates(settle_row, f"{settle}USD")
    lines = tuple(
        dataclasses.replace(line, terms=_row_rates(row, f"{line.asset}USD"))
        if (row := rows.get(f"{line.asset}USD")) is not None
        else line
        for line in lines
    )
    moved = []
    for coin in coins:
        row = rows.get(f"{coin.asset}USD")
        if row is None:
            moved.append(coin)
            continue
        price, ratio, liability = _coin_terms(row, coin.asset)
        if coin.price_symbol is not None:
            price = coin.price
        moved.append(dataclasses.replace(coin, price=price, ratio=ratio, liability_ratio=liability))
    return terms, lines, tuple(moved)


# Conditional order types (USDⓈ-M "New Order" / "New Algo Order"): a STOP or STOP_MARKET sell
# triggers when the price falls to stopPrice, a buy when it rises to it; TAKE_PROFIT the
# other way; a TRAILING_STOP_MARKET sell trails the high and fires on a fall
_STOP_KINDS = {
    "STOP": StopKind.STOP,
    "STOP_MARKET": StopKind.STOP,
    "TAKE_PROFIT": StopKind.TAKE_PROFIT,
    "TAKE_PROFIT_MARKET": StopKind.TAKE_PROFIT,
    "TRAILING_STOP_MARKET": StopKind.TRAILING,
}


def usdm_stop(raw: dict[str, Any], symbol: str) -> StopOrder | None:
    """One open order of ``GET /fapi/v1/openOrders`` (``type``, ``stopPrice``, ``origQty``)
    or of ``GET /fapi/v1/openAlgoOrders`` (``orderType``, ``triggerPrice``, ``quantity``;
    where conditional orders live since Binance moved them to its Algo Service,
    2025-12), as a stop; None for an order that triggers nothing (LIMIT, MARKET).

    A portfolio margin account's are the same rows under /papi: "Query All Current UM Open
    Algo Orders" (``GET /papi/v1/um/algo/openAlgoOrders``, the algo rows; ccxt places a
    portfolio margin UM conditional order there, ``papiPostUmAlgoOrder``) and, placed before
    the move, "Query All Current UM Open Conditional Orders" (``GET
    /papi/v1/um/conditional/openOrders``: ``strategyType``, ``stopPrice``, ``origQty``,
    ``strategyId``; no ``closePosition``). Their response examples: Binance's portfolio
    margin connector (binance/binance-connector-python,
    clients/derivatives_trading_portfolio_margin, tests/unit/rest_api/test_trade_api.py)."""
    order_type = raw.get("orderType", raw.get("strategyType", raw.get("type")))
    kind = _STOP_KINDS.get(str(order_type))
    if kind is None:
        return None
    order_side = str(raw.get("side", "")).upper()
    if order_side not in ("BUY", "SELL"):
        raise FrameError(f"side: not BUY or SELL: {raw.get('side')!r}")
    sell = order_side == "SELL"
    position_side = str(raw.get("positionSide", "BOTH"))
    # a sell reduces a long: in hedge mode the positionSide says which, in one-way the side
    side = _side(position_side, Decimal(1 if sell else -1))
    falls = sell if kind is not StopKind.TAKE_PROFIT else not sell
    price_field = "triggerPrice" if "triggerPrice" in raw else "stopPrice"
    trigger_price = dec_or_none(raw.get(price_field))
    if kind is not StopKind.TRAILING and trigger_price is None:
        raise FrameError(f"{price_field}: missing or zero on a {order_type} order")
    contracts: Decimal | None = None
    if raw.get("closePosition") not in (True, "true"):
        if "quantity" in raw:  # algo order: its whole quantity waits for the trigger
            contracts = dec(raw.get("quantity"), "quantity")
        else:
            contracts = dec(raw.get("origQty"), "origQty") - dec(
                raw.get("executedQty", "0"), "executedQty"
            )
    return StopOrder(
        symbol=symbol,
        side=side,
        kind=kind,
        trigger=Trigger.FALL if falls else Trigger.RISE,
        # a trailing stop's current trigger is not in the payload (activatePrice and
        # priceRate are): it counts for coverage, without a price
        trigger_price=None if kind is StopKind.TRAILING else trigger_price,
        contracts=contracts,
        order_id=str(raw.get("algoId", raw.get("strategyId", raw.get("orderId", "")))),
        reduce_only=raw.get("reduceOnly") in (True, "true")
        or position_side != "BOTH"
        or contracts is None,
    )


def order_rows(answer: Any, endpoint: str) -> list[dict[str, Any]]:
    """The entries of an open-orders answer (a list of objects), or a frame error naming the
    ``endpoint``."""
    if not isinstance(answer, list):
        raise FrameError(f"{endpoint}: expected a list of orders")
    for raw in answer:
        if not isinstance(raw, dict):
            raise FrameError(f"{endpoint}: an entry is not an object")
    return answer


def insurance_balance(answer: Any, settle: str) -> Decimal:
    """The ``settle`` balance of the insurance fund in "Query Insurance Fund Balance
    Snapshot" (``GET /fapi/v1/insuranceBalance?symbol=...``, public, weight 1): one pool
    ``{"symbols": [...], "assets": [{"asset", "marginBalance", "updateTime"}, ...]}`` covering
    the symbol; a pool holds a balance per margin asset."""
    if not isinstance(answer, dict):
        raise FrameError(f"insuranceBalance: not one pool: {type(answer).__name__}")
    for row in answer.get("assets") or []:
        if isinstance(row, dict) and row.get("asset") == settle:
            return dec(row.get("marginBalance"), f"insuranceBalance {settle} marginBalance")
    raise FrameError(f"insuranceBalance: no {settle} balance in the pool")


async def watch_mark(exchange: Any, symbol: str) -> Decimal:
    """The next mark of ``symbol`` on its "Mark Price Stream" (``<symbol>@markPrice@1s``:
    ``p`` the mark), USDⓈ-M's (fstream) and COIN-M's (dstream) alike."""
    return ticker_mark(await exchange.watch_mark_price(symbol), "p")


@dataclasses.dataclass(slots=True)
class ReadStamps:
    """The update times a portfolio margin snapshot read, each a push is compared with: a
    push stamped before one is in what was read (:meth:`BinanceUSDMAdapter.pushed_listed`)."""

    # each COIN-M row's, by its market id and position side ("Query CM Position Information")
    coin_m: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    # each asset's "Account Balance" row's
    balances: dict[str, int] = dataclasses.field(default_factory=dict)
    # each coin's COIN-M wallet's ("Get CM Account Detail" ``assets[]``)
    cm_wallets: dict[str, int] = dataclasses.field(default_factory=dict)


class BinanceUSDMAdapter(ExchangeAdapter):
    exchange_id = "binanceusdm"
    market_filter = USDM_MARKETS
    reads_insurance_fund = True
    # multi-assets mode counts each margin asset at its own <asset>USD rates
    lined_modes = frozenset({AccountMode.MULTI_ASSETS})
    # the spot API (api.binance.com: /sapi, "REQUEST_WEIGHT 6000" a minute of its own, spot
    # "General Info", Limits), where the portfolio margin collateral rates and the key's
    # permissions are read: not fapi/papi's budget
    other_host_apis = frozenset({"sapi", "sapiV2", "sapiV3", "sapiV4"})

    async def fetch_insurance_fund(self, exchange: Any, symbol: str) -> Decimal:
        market = exchange.market(symbol)
        answer = await exchange.fapiPublicGetInsuranceBalance({"symbol": market["id"]})
        return insurance_balance(answer, self.settle)

    # GET /fapi/v1/depth: "limit: Default 500; Valid limits:[5, 10, 20, 50, 100, 500, 1000]"
    book_limits = (5, 10, 20, 50, 100, 500, 1000)
    # the diff stream <symbol>@depth@500ms, synced by ccxt to a REST snapshot by update ids
    streams_order_book = True

    def __init__(self) -> None:
        # one snapshot's two answers, read by fetch_mode (which the feed calls first) and
        # handed to fetch_positions, fetch_balance and fetch_collateral of the same snapshot
        self._rows: list[Any] | None = None
        self._account: dict[str, Any] | None = None
        # a portfolio margin account's "Account Information" (uniMMR), read with the mode;
        # None for the other modes
        self._portfolio: dict[str, Any] | None = None
        self._not_portfolio = False  # the option is set; Binance says it is not such an account
        # a portfolio margin account's COIN-M positions, read with the snapshot (followed on
        # the COIN-M marks), or why they could not be (the mode's limits say it)
        self._coin_m: tuple[ExchangeRatioPosition, ...] = ()
        self._coin_m_unlisted: str | None = None
        # the coins of those positions without collateral tiers read (portfolio_mode)
        self._coins_unrated: tuple[str, ...] = ()
        # their protective stops as read with them (re-figured at the live COIN-M marks)
        self._coin_m_stops: tuple[StopOrder, ...] = ()
        # multi-assets mode: the settle currency's rates, read with the coins at every snapshot
        self._settle_terms: SettleTerms | None = None
        self._margin_assets: tuple[MarginAsset, ...] = ()
        # the COIN-M symbols held at the last portfolio margin snapshot (their reads' weight)
        self._coin_m_symbols = 0
        # the COIN-M ids the portfolio margin stream pushed (``fs`` CM): not UM positions
        self._coin_m_pushed: set[str] = set()
        # the COIN-M catalogue once loaded (``listed_catalogue``): names a pushed COIN-M row
        self._coin_m_catalogue: Any = None
        # why the COIN-M catalogue last failed to load (None: it did not)
        self._coin_m_catalogue_failing: str | None = None
        # "Account Balance" failed at the last read (said when it begins)
        self._balances_failing = False
        # every COIN-M market's brackets as last read (a position opened by a push uses them)
        self._coin_m_brackets: dict[str, TierTable] = {}
        # the COIN-M brackets' read failed at the last read (said when it begins)
        self._brackets_failing = False
        # the malformed COIN-M symbols' brackets at the last read (each said when it begins)
        self._bracket_problems: set[str] = set()
        # the COIN-M markets a push named with no listed position (said once each)
        self._coin_m_unlisted_pushed: set[str] = set()
        # those pushed open since the last read, not listed (pushed_unlisted)
        self._pushed_unlisted: set[str] = set()
        # the assets pushed since the last read whose change is not followed (pushed_unfollowed)
        self._pushed_unfollowed: set[str] = set()
        # the update times the last snapshot written read (pushed_listed)
        self._read_ms = ReadStamps()
        # those the snapshot being read gives, installed only when it is written
        # (snapshot_written): a read failing after one of them leaves the state, and the
        # stamps it is compared with, as the last snapshot's (review of pm17, 2)
        self._next_read_ms = ReadStamps()
        # the liabilityChange types not known that were said (each once)
        self._liability_types_said: set[str] = set()
        # what the last snapshot weighed in the per-IP budget, by its mode (None: none yet)
        self._snapshot_weight: float | None = None
        # each wallet's update time as the last snapshot read it (wallet_times)
        self._wallet_times: dict[str, int] = {}

    async def _read_portfolio_snapshot(self, exchange: Any) -> None:
        """A portfolio margin account's snapshot: its USDⓈ-M positions ("Query UM Position
        Information", weight 5), their assets ("Get UM Account Detail", weight 5: the UM
        wallet per asset in the same ``assets[]`` shape as USDⓈ-M's account), the account's
        risk ("Account Information", weight 20: uniMMR) and its COIN-M positions ("Query CM
        Position Information", weight 1: :func:`cm_positions`)."""
        self._rows = self._account = self._portfolio = None
        self._coin_m = ()
        self._coin_m_unlisted = None
        self._not_portfolio = False
        # this read lists what was pushed before it (one pushed while it reads is named again)
        self._pushed_unlisted = set()
        self._pushed_unfollowed = set()
        self._next_read_ms = dataclasses.replace(self._read_ms)  # what this read leaves unread
        try:
            portfolio = await exchange.papiGetAccount()
        except Exception as exc:
            # ccxt knows Binance's code for it on spot only: a plain ExchangeError here
            if NOT_PORTFOLIO_CODE not in str(exc).replace(" ", ""):
                raise
            self._not_portfolio = True
            return
        if not isinstance(portfolio, dict):
            raise FrameError("papi account: expected an object")
        rows = await exchange.papiGetUmPositionRisk()
        self._keep(rows, await exchange.papiGetUmAccount(), "um/")
        await self._read_coin_m(exchange)
        self._portfolio = portfolio

    async def _read_coin_m(self, exchange: Any) -> None:
        """The COIN-M positions, or why they are not listed: a key refused the COIN-M reads
        (Binance's API permissions can differ per product) or a malformed row would otherwise
        fail every snapshot, and with it the UM positions and uniMMR, which cover the account
        without them. A network error, a rate limit or a ban still fails the snapshot: those
        are the IP's or the exchange's, and the next reconcile retries the whole read."""
        # here, not at the top: the exchange modules load without ccxt (registry); a feed has it
        import ccxt

        from alertd.feeds.ccxt_exchange import describe

        self._coin_m_unlisted = None
        self._coin_m_symbols = 0
        self._coin_m_stops = ()
        self._coins_unrated = ()
        try:
            self._coin_m = await self._coin_m_positions(exchange)
        except (FrameError, ccxt.ExchangeError) as exc:
            self._coin_m_unlisted = describe(exc)

    async def _loaded_coin_m_catalogue(
        self, exchange: Any, load: Callable[[], Awaitable[Any]]
    ) -> Any:
        """The COIN-M catalogue, or ``exchange`` (whose catalogue lists no COIN-M market: the
        positions are then listed as Binance read them) where /dapi cannot be reached: a proxy
        or region that passes only fapi and papi (403, 451), an outage (5xx), a ban of it
        (418, waited out by its host, never the account's end). Logged when it begins and
        when it loads again, not at every reconcile; the next reconcile tries again."""
        import ccxt

        from alertd.feeds.ccxt_exchange import describe

        try:
            self._coin_m_catalogue = await load()
        except ccxt.BaseError as exc:
            if self._coin_m_catalogue_failing is None:
                log.warning(
                    "the COIN-M catalogue (/dapi) cannot be loaded: COIN-M positions listed "
                    "as Binance reads them, not followed, until it loads (%s)",
                    describe(exc),
                )
            self._coin_m_catalogue_failing = describe(exc)
            return exchange if self._coin_m_catalogue is None else self._coin_m_catalogue
        if self._coin_m_catalogue_failing is not None:
            log.info("the COIN-M catalogue (/dapi) is loaded: COIN-M positions followed again")
            self._coin_m_catalogue_failing = None
        return self._coin_m_catalogue

    async def _coin_m_positions(self, exchange: Any) -> tuple[ExchangeRatioPosition, ...]:
        """A portfolio margin account's COIN-M positions (:func:`cm_positions`), each with its
        protective stops: "Query All Current CM Open Conditional Orders" (``GET
        /papi/v1/cm/conditional/openOrders``, the UM legacy rows' shape: :func:`usdm_stop`)
        asked per held symbol (weight 1 each; 40 without one), and Binance's maintenance
        margin of it (:func:`cm_maintenance_margins`), read while one is held."""

        rows = await exchange.papiGetCmPositionRisk()
        held = cm_positions(rows, str)
        # each row's "updateTime" (every symbol's row is listed, a closed one's too), by its
        # market id and position side: a push older than it does not change what was read
        self._next_read_ms.coin_m = {
            (str(row["symbol"]), str(row.get("positionSide", "BOTH"))): at
            for row in rows
            if (at := stamp_or_none(row.get("updateTime"))) is not None
        }
        # the COIN-M catalogue only once a COIN-M position is held: an account without one
        # loads no COIN-M market (nor, in the feed, opens a COIN-M mark stream)
        catalogue = exchange
        if held and self.listed_catalogue is not None:
            catalogue = await self._loaded_coin_m_catalogue(exchange, self.listed_catalogue)

        def market_of(market_id: str) -> Any:
            return catalogue.safe_market(market_id, None, None, "swap")

        def symbol_of(market_id: str) -> str:
            return str(market_of(market_id)["symbol"])

        def contract_size_of(market_id: str) -> Decimal | None:
            market = market_of(market_id)
            size = market.get("contractSize")
            inverse = market.get("inverse") and market.get("id") == market_id
            return dec(str(size), f"{market_id} contractSize") if inverse and size else None

        def coin_of(market_id: str) -> str | None:
            # the catalogue's market (not the default safe_market makes of an unknown id)
            market = market_of(market_id)
            settle = market.get("settle") if market.get("id") == market_id else None
            return settle if isinstance(settle, str) and settle else None

        held = cm_positions(rows, symbol_of, contract_size_of, coin_of)
        tiers = await self._collateral_rates(exchange) if held else {}
        if self.listed_read is not None:  # a feed, whose marks move the gains between reads
            coins = {p.coin for p in held if p.coin is not None}
            self._coins_unrated = tuple(sorted(coins - tiers.keys()))
        # the rows are checked: each position's Binance id by its symbol
        ids = {symbol_of(row["symbol"]): row["symbol"] for row in rows}
        held_ids = sorted({ids[p.symbol] for p in held})
        self._coin_m_symbols = len(held_ids)
        stops: list[StopOrder] = []
        for market_id in held_ids:
            answer = await exchange.papiGetCmConditionalOpenOrders({"symbol": market_id})
            for raw in order_rows(answer, "cm/conditional/openOrders"):
                stop = usdm_stop(raw, symbol_of(str(raw.get("symbol"))))
                if stop is not None:
                    stops.append(stop)
        found = tuple(checked_stops(stops))
        self._coin_m_stops = found
        # nothing to show of an empty COIN-M account: its weight (5) only while one is held
        answer = await exchange.papiGetCmAccount() if held else {}
        margins = cm_maintenance_margins(answer, symbol_of)
        wallets = cm_wallets(answer)
        self._next_read_ms.cm_wallets = cm_wallet_times(answer)
        brackets = await self._cm_brackets(exchange, symbol_of) if held else {}
        others = await self._coin_balances(exchange) if held else {}
        out = []
        for p in held:
            if p.mark_price is not None:  # always, as Binance reads it
                figures = protection(
                    found, p.symbol, p.side, p.contracts, p.mark_price, p.liquidation_price
                )
                p = dataclasses.replace(p, stop=figures)
            # in its settle coin's equity (BTC for BTC/USD:BTC and BTC/USD:BTC-261225 alike)
            coin = p.coin
            out.append(
                dataclasses.replace(
                    p,
                    maintenance_margin=margins.get((p.symbol, p.side)),
                    coin_brackets=brackets.get(p.symbol),
                    collateral_rates=_bounds(tiers[coin]) if coin and coin in tiers else None,
                    collateral_tiers=tiers.get(coin, ()) if coin else (),
                    coin_wallet=wallets.get(coin, Decimal(0)) if coin else None,
                    **_other_parts(coin, others),
                )
            )
        return tuple(out)

    async def _coin_balances(self, exchange: Any) -> dict[str, PmBalance] | None:
        """Each coin's equity outside COIN-M (:func:`pm_coin_balances`), or None where "Account
        Balance" is refused or malformed (logged when it begins): the COIN-M positions are
        still listed, their coins' other wallets then as read and their tiers bounded."""
        import ccxt

        from alertd.feeds.ccxt_exchange import describe

        try:
            found = pm_coin_balances(await exchange.papiGetBalance())
        except (FrameError, ccxt.ExchangeError) as exc:
            if not self._balances_failing:
                log.warning(
                    "the portfolio margin balances (GET /papi/v1/balance) cannot be read: the "
                    "coins' cross margin and UM wallets stay as read (%s)",
                    describe(exc),
                )
            self._balances_failing = True
            self._next_read_ms.balances = {}
            return None
        self._balances_failing = False
        self._next_read_ms.balances = {
            asset: b.updated_ms for asset, b in found.items() if b.updated_ms is not None
        }
        return found

    async def _cm_brackets(
        self, exchange: Any, symbol_of: Callable[[str], str]
    ) -> dict[str, TierTable]:
        """The COIN-M markets' brackets (:func:`cm_brackets`), read with the COIN-M positions
        while one is held (weight 1 for every symbol), so that a position's requirement moves
        with its mark and its pushed size between reads, across its brackets; a malformed
        symbol's are logged and left out (its requirement as read). Refused or malformed as a
        whole (an exchange error, an answer that is not a list), the brackets as last read
        (none before: each requirement as read), logged when it begins: the COIN-M positions
        stay listed, as for "Account Balance" (:meth:`_coin_balances`)."""
        import ccxt

        from alertd.feeds.ccxt_exchange import describe

        try:
            found, problems = cm_brackets(await exchange.papiGetCmLeverageBracket(), symbol_of)
        except (FrameError, ccxt.ExchangeError) as exc:
            if not self._brackets_failing:
                log.warning(
                    "the COIN-M brackets (GET /papi/v1/cm/leverageBracket) cannot be read: "
                    "the COIN-M requirements move with the brackets as last read, or stay as "
                    "read (%s)",
                    describe(exc),
                )
            self._brackets_failing = True
            return self._coin_m_brackets
        self._brackets_failing = False
        # each malformed symbol said once while it stays so, not at every reconcile
        for problem in problems:
            if problem not in self._bracket_problems:
                log.warning(
                    "malformed COIN-M brackets, left out (requirement as read): %s", problem
                )
        self._bracket_problems = set(problems)
        self._coin_m_brackets = found  # a position pushed before the next read has its own
        return found

    async def _collateral_rates(self, exchange: Any) -> Mapping[str, CollateralTiers]:
        """The portfolio margin collateral tiers (:func:`pm_collateral_tiers`), read once per
        exchange for its accounts (:attr:`listed_read`, on the catalogue's schedule) with this
        account's key; empty where none is shared (a feed without a listed-marks hub) or
        none could be read yet (each COIN-M gain then counts 0, the safe side)."""
        if self.listed_read is None:
            return {}

        async def read() -> dict[str, CollateralTiers]:
            # not in ccxt's implicit API (it lists the /sapi/v1 one only): its generic request,
            # signed as every sapiV2 path is (binance.sign)
            answer = await exchange.request(*COLLATERAL_RATE_REQUEST)
            rates, problems = pm_collateral_tiers(answer)
            for problem in problems:
                log.warning(
                    "a malformed collateral rate, left out (its gains count 0): %s", problem
                )
            return rates

        rates = await self.listed_read(read)
        return rates if isinstance(rates, dict) else {}

    def _keep(self, rows: Any, account: Any, family: str) -> None:
        """One snapshot's positions and account answers (``family``: the endpoints' prefix
        under the API, for the problem's words), checked."""
        if not isinstance(rows, list):
            raise FrameError(f"{family}positionRisk: expected a list of positions")
        if not isinstance(account, dict):
            raise FrameError(f"{family}account: expected an object")
        # its every-symbol position list (about 550 rows) is not read: not kept either
        account.pop("positions", None)
        self._rows, self._account = rows, account

    async def _read_snapshot(self, exchange: Any) -> None:
        """The two requests of a snapshot, positions first (the balance read after them, as
        Binance's own figures are): Position Information V3 (weight 5) and Account
        Information V2 (weight 5), which carries the ``multiAssetsMargin`` flag, every asset's
        balance and the account's totals in one answer, where the mode (V2), the balance (V3)
        and the coins (V2) took 15; the dedicated mode endpoint alone weighs 30."""
        if self._portfolio_margin(exchange):
            await self._read_portfolio_snapshot(exchange)
            return
        self._rows = self._account = self._portfolio = None
        rows = await exchange.fapiPrivateV3GetPositionRisk()
        self._keep(rows, await exchange.fapiPrivateV2GetAccount(), "")

    async def _snapshot_account(self, exchange: Any) -> dict[str, Any]:
        if self._account is None:
            await self._read_snapshot(exchange)
        if self._account is None:  # the /papi answer refused the account (fetch_mode says so)
            raise FrameError(
                "papi account: not a portfolio margin account (code -21001): no UM account "
                "to read the balance from"
            )
        return self._account

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        await self._read_snapshot(exchange)
        if self._not_portfolio:
            return NOT_PORTFOLIO
        if self._portfolio is not None:
            self._snapshot_weight = portfolio_snapshot_weight(self._coin_m_symbols)
            return portfolio_mode(self._coin_m_unlisted, self._coins_unrated)
        mode = usdm_mode(self._account)
        # fetch_collateral reads the index, over REST unless the stream has it fresh (and
        # says which it read)
        multi_assets = mode.mode is AccountMode.MULTI_ASSETS
        self._snapshot_weight = USDM_SNAPSHOT_WEIGHT + (ASSET_INDEX_WEIGHT if multi_assets else 0)
        return mode

    def snapshot_weight(self) -> float | None:
        return self._snapshot_weight

    def stops_weight(self, symbols: int) -> float | None:
        # a portfolio margin account's UM orders are the same pair of reads under /papi
        portfolio = self._portfolio is not None
        return usdm_stops_weight(symbols) * PAPI_SHARE if portfolio else None

    def live_weight(self, options: Mapping[str, Any]) -> float | None:
        return PORTFOLIO_LIVE_WEIGHT if options.get("portfolioMargin") else None

    @staticmethod
    def _portfolio_margin(exchange: Any) -> bool:
        # the account's own ccxt option: ccxt routes its private streams to the portfolio
        # margin user-data stream by it too
        return bool((exchange.options or {}).get("portfolioMargin"))

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        """The account's brackets of ``symbols`` ("Notional and Leverage Brackets", weight 1
        with or without a symbol; an account's brackets can differ from the default:
        ``notionalCoef``). One symbol is asked alone (a small answer); more, in one request
        for all, and if that one times out, one request per symbol. Only the raw rows are
        read (the deduction ``cum`` is only there): ccxt's ``fetch_leverage_tiers`` would
        parse every listed symbol's tiers for each account."""
        if not symbols:
            return {}
        # a portfolio margin account's brackets: "UM Notional and Leverage Brackets" (GET
        # /papi/v1/um/leverageBracket), the same rows
        read = (
            exchange.papiGetUmLeverageBracket
            if self._portfolio_margin(exchange)
            else exchange.fapiPrivateGetLeverageBracket
        )
        if len(symbols) == 1:
            rows = await self._brackets_by_symbol(exchange, read, symbols)
        else:
            try:
                # the same answer for every account whose brackets Binance did not adjust:
                # parsed once for them all (read-only here)
                with alike_answers():
                    rows = await read()
            except Exception as exc:
                import ccxt  # loaded by then: the adapter runs on ccxt objects (registry.py)

                if not isinstance(exc, ccxt.RequestTimeout):
                    raise
                # Every symbol's brackets are about 1 KB a listed market (580 KB at 550) and
                # the one answer that timed out under load (benchmarks.md, seventh pass); one
                # small answer per held symbol (1 weight each: 2 more for three symbols) is
                # cheaper than the failed bootstrap's retry (12 weight and its backoff, blind)
                rows = await self._brackets_by_symbol(exchange, read, symbols)
        if not isinstance(rows, list):
            raise FrameError("leverageBracket: expected a list of symbols")
        wanted = {exchange.market_id(symbol): symbol for symbol in symbols}
        out = {}
        for row in rows:
            symbol = wanted.get(row.get("symbol")) if isinstance(row, dict) else None
            if symbol is not None and row.get("brackets"):
                out[symbol] = brackets_to_table(row["brackets"])
        return out

    @staticmethod
    async def _brackets_by_symbol(
        exchange: Any, read: Callable[..., Any], symbols: list[str]
    ) -> list[Any]:
        """Each symbol's brackets asked alone (an object, not a list, when a symbol is
        sent), one after the other: the account's REST slot bounds its requests."""
        rows: list[Any] = []
        for symbol in symbols:
            answer = await read({"symbol": exchange.market_id(symbol)})
            if not isinstance(answer, dict | list):
                raise FrameError("leverageBracket: expected a symbol's brackets")
            rows += [answer] if isinstance(answer, dict) else answer
        return rows

    def _position(self, exchange: Any, raw: dict[str, Any]) -> PositionState:
        market = exchange.safe_market(raw.get("symbol") or raw.get("s"), None, None, "swap")
        symbol = market["symbol"]
        amount = dec(raw.get("positionAmt", raw.get("pa")), "positionAmt")
        position_side = str(raw.get("positionSide", raw.get("ps", "BOTH")))
        side = _side(position_side, amount)
        margin_type = raw.get("marginType", raw.get("mt"))
        isolated_wallet = dec(raw.get("isolatedWallet", raw.get("iw", "0")), "isolatedWallet")
        if margin_type is None:
            margin_type = "isolated" if isolated_wallet != 0 else "cross"
        mode = MarginMode.ISOLATED if str(margin_type).lower() == "isolated" else MarginMode.CROSS
        leverage = raw.get("leverage")
        state = PositionState(
            symbol=symbol,
            side=side,
            contracts=abs(amount),
            entry_price=dec(raw.get("entryPrice", raw.get("ep")), "entryPrice"),
            margin_mode=mode,
            isolated_margin=isolated_wallet if mode is MarginMode.ISOLATED else None,
            leverage=dec(leverage, "leverage") if leverage is not None else None,
            # a REST row's "updateTime" (Position Information V3; a push's row carries none:
            # its event's time is given by watch_positions)
            version=stamp_or_none(raw.get("updateTime")),
            # one-way mode ("positionSide" BOTH, Position Information V3; "ps" in a push):
            # the row is the symbol's whole position, a REST row's time the symbol's
            # (AccountState.replace_positions: a flip's push older than it is dropped)
            one_way=position_side == "BOTH",
        )
        return with_adl(state, raw, "adl", ADL)

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        if self._rows is None:
            await self._read_snapshot(exchange)
        rows, self._rows = self._rows or [], None
        snapshot: Snapshot = ([], {}, {})
        self._snapshot_into(
            rows,
            lambda raw: [self._position(exchange, raw)],
            ("liquidationPrice", "maintMargin", "markPrice"),
            snapshot,
        )
        return snapshot

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        info = await self._snapshot_account(exchange)
        wallet = None
        # each asset's "updateTime" (Account Information V2, and a portfolio margin account's
        # Get UM Account Detail): what a balance push must be newer than
        self._wallet_times = {
            name: at
            for asset in info.get("assets", [])
            if isinstance(asset, dict)
            and isinstance(name := asset.get("asset"), str)
            and (at := stamp_or_none(asset.get("updateTime"))) is not None
        }
        for asset in info.get("assets", []):
            if asset.get("asset") == self.settle:
                wallet = dec(asset.get("crossWalletBalance"), "crossWalletBalance")
        if wallet is None:
            wallet = Decimal(0)  # no USDT asset at all: an empty futures wallet
        if self._portfolio is not None:
            # portfolio margin: Binance's own figures of the whole account (uniMMR)
            return wallet, portfolio_account(self._portfolio)
        # single-asset mode: the USDT pool's figures ("only for USDT asset"); multi-assets:
        # sums over every asset in USD ("Account Information V2/V3", both modes' examples)
        mm = dec_or_none(info.get("totalMaintMargin"))
        balance = dec_or_none(info.get("totalMarginBalance"))
        ratio = mm / balance if mm is not None and balance else None
        return wallet, ReportedAccount(mm, balance, ratio)

    def wallet_times(self) -> dict[str, int]:
        return dict(self._wallet_times)

    async def fetch_pools(self, exchange: Any) -> dict[str, tuple[Decimal, ReportedAccount]]:
        account = await self._snapshot_account(exchange)
        if account.get("multiAssetsMargin") or self._portfolio is not None:
            return {}  # multi-assets: one USD pool (fetch_collateral); portfolio: Binance's
        return single_asset_pools(account, self.market_filter.margin_assets(exchange.markets))

    async def fetch_listed_positions(self, exchange: Any) -> tuple[ExchangeRatioPosition, ...]:
        return self._coin_m if self._portfolio is not None else ()

    def listed_stops(self) -> tuple[StopOrder, ...]:
        return self._coin_m_stops if self._portfolio is not None else ()

    def pushed_listed(
        self,
        message: Any,
        listed: tuple[ExchangeRatioPosition, ...],
        as_seen: bool = False,
    ) -> tuple[ExchangeRatioPosition, ...] | None:
        """The portfolio margin stream's COIN-M update ("Event: Futures Balance and Position
        Update" with ``fs`` CM: ``a.P[]`` rows of ``s``, ``pa`` the contracts, signed in
        one-way mode, ``ep`` the entry price, ``ps`` the position side) applied to the listed
        COIN-M positions it names: size and entry, the liquidation price staying Binance's as
        read (the whole account's, not in the push); a closed one is gone. A row of a position
        not listed, or of a market the COIN-M catalogue does not hold, is left to the next
        reconcile (its mark and Binance's figures of it are not known yet). Its ``a.B[]`` rows
        (``a`` the asset, ``cw`` its "Cross Wallet Balance": the COIN-M wallet Get CM Account
        Detail's ``crossWalletBalance`` reads, a close's realized PnL and fee in it, a funding
        fee's push has B alone) give the listed positions of that coin their wallet
        (:meth:`_pushed_wallets`). ``as_seen``: a cross margin push or loan taken as seen
        (:meth:`_pushed_coin_parts`). None: not such a push, or nothing listed changed."""
        parts, at_ms = pushed_cross_margin(message)
        if parts:
            # interest charged on a loan alertd does not follow names nothing (taken as read)
            loan = message.get("e") == "liabilityChange"
            if loan:
                self._said_liability_type(message.get("t"))
            names = not loan or message.get("t") != "INTEREST"
            return self._pushed_coin_parts(parts, at_ms, listed, names=names, as_seen=as_seen)
        if any(p.coin_other is not None for p in listed):
            parts, at_ms = pushed_um_wallets(message)
            if parts:
                return self._pushed_coin_parts(parts, at_ms, listed)
        if not isinstance(message, dict) or message.get("fs") != "CM":
            return None
        catalogue = self._coin_m_catalogue
        update = message.get("a")
        if not isinstance(update, dict):
            return None
        rows = update.get("P", [])
        if not isinstance(rows, list):
            raise FrameError("CM ACCOUNT_UPDATE: a.P is not a list of positions")
        # the event's time "E" (as a UM push's, watch_positions) against the row's
        # "updateTime" the last read gave: a row older than the read is already in it or
        # overtaken (a push that came late, or applied again over that read)
        at = stamp_or_none(message.get("E"))
        if catalogue is None:
            # no COIN-M position at the read, or its catalogue not loaded (/dapi refused or
            # failing: the positions listed as read, under Binance's ids): a position opened
            # since in a market the read did not list cannot be named or followed until a
            # read (which loads it); one the read listed stays as read until the next
            read = {p.symbol for p in listed}
            for raw in rows:
                if not isinstance(raw, dict) or not isinstance(raw.get("s"), str):
                    raise FrameError("CM ACCOUNT_UPDATE: a position row without a symbol")
                amount = dec(raw.get("pa"), f"CM ACCOUNT_UPDATE {raw['s']} pa")
                ps = str(raw.get("ps", "BOTH"))
                if raw["s"] in read or amount == 0:
                    continue
                if not older(at, self._read_ms.coin_m.get((raw["s"], ps))):
                    self._said_unlisted_push(raw["s"])
            return None
        out = {(p.symbol, p.side): p for p in self._pushed_wallets(update.get("B", []), at, listed)}
        for raw in rows:
            if not isinstance(raw, dict) or not isinstance(raw.get("s"), str):
                raise FrameError("CM ACCOUNT_UPDATE: a position row without a symbol")
            market = catalogue.safe_market(raw["s"], None, None, "swap")
            amount = dec(raw.get("pa"), f"CM ACCOUNT_UPDATE {raw['s']} pa")
            position_side = str(raw.get("ps", "BOTH"))
            if older(at, self._read_ms.coin_m.get((raw["s"], position_side))):
                continue
            pushed = _side(position_side, amount)
            if position_side == "BOTH" and amount != 0:
                # one-way: a signed size ends the other side's position (a "0" closes either)
                other = Side.SHORT if pushed is Side.LONG else Side.LONG
                _closed_by_push(out, (str(market["symbol"]), other))
            sides = (Side.LONG, Side.SHORT) if position_side == "BOTH" and amount == 0 else ()
            for side in sides or (pushed,):
                key = (str(market["symbol"]), side)
                p = out.get(key)
                if amount == 0:
                    _closed_by_push(out, key)
                    continue
                entry = dec(raw.get("ep"), f"CM ACCOUNT_UPDATE {raw['s']} ep")
                if entry <= 0:
                    # an open position with no entry has no PnL: its leg, and with it the
                    # whole moved ratio, would stand as read
                    raise FrameError(
                        f"CM ACCOUNT_UPDATE {raw['s']} ep: {entry} of an open position"
                    )
                if p is None:
                    p = self._opened_by_push(market, raw["s"], side, tuple(out.values()))
                    if p is None:
                        continue
                    out[key] = p
                if p.quantity is None:
                    continue
                contracts = abs(amount)
                # a contract's size in USD: the position's, or its market's where a push
                # closed it since the read (held with no size: _closed_by_push)
                size = (
                    p.quantity / p.contracts
                    if p.contracts
                    else dec(str(market.get("contractSize")), f"{raw['s']} contractSize")
                )
                out[key] = dataclasses.replace(
                    p, contracts=contracts, quantity=size * contracts, entry_price=entry
                )
        changed = tuple(out.values())
        return None if changed == listed else changed

    def _pushed_coin_parts(
        self,
        pushed: dict[str, tuple[str, Decimal]],
        at_ms: int | None,
        listed: tuple[ExchangeRatioPosition, ...],
        names: bool = False,
        as_seen: bool = False,
    ) -> tuple[ExchangeRatioPosition, ...] | None:
        """The listed positions with their coin's cross margin balance, loans or UM wallet as
        a push gives them (:func:`pushed_cross_margin`, :func:`pushed_um_wallets`): the coin's
        other equity (``coin_other``) moved by the part's change from its value last seen, so
        that a transfer between the coin's COIN-M wallet, UM wallet and cross margin account,
        or a margin loan or repay, moves the coin's equity as it moves Binance's.

        A push is one move: one carrying an asset alertd does not move beside a coin it does
        (a margin trade, BTC bought with USDT: "contains the assets that were possibly changed
        by the event", both rows in one ``outboundAccountPosition``; a fee in another asset)
        has a half alertd cannot see (the USDT's change, at its own rate). Its coins' equity
        is then left as read, the parts' values taken as seen (the next push of them moves
        from there), until a read gives both halves: a ``cross`` margin push's assets not
        followed are named (:meth:`pushed_unfollowed`: the account incomplete, read again at
        once). So is a push of such assets alone (ETH bought with USDT, with no COIN-M position
        of ETH: uniMMR counts the ETH at its index less its haircut, a change no push carries).
        A UM wallet push of another asset (USDT's, at each UM fill) is not: the UM positions'
        PnL it realizes is followed with them. ``names``: a cross margin push or a loan's,
        naming the assets it carries that alertd does not follow, but for interest charged
        on such a loan (Binance's ``liabilityChange`` ``t`` INTEREST, hourly on every loan:
        its ``i`` lowers the asset's equity by the interest at the asset's index, a price
        alertd does not follow; taken as read, its cost docs/exchanges.md says, where a read
        each would spend 12 weight an account at the top of every hour). ``as_seen``: the
        push is one half of such a move pushed in two events (a loan of BTC sold for USDT:
        the loan's ``liabilityChange``, then BTC and USDT in one ``outboundAccountPosition``;
        :meth:`AccountFeed._hold` pairs them), not whole either. A push older
        than the asset's row as read is in it; a coin whose balances were not read (refused)
        stays so. None: nothing changed."""
        moved = {p.coin for p in listed if p.coin and p.coin_other is not None}
        whole = not as_seen and set(pushed) <= moved
        if names:
            self._pushed_unfollowed |= {
                asset
                for asset in set(pushed) - moved
                if not older(at_ms, self._read_ms.balances.get(asset))
            }
        out = []
        for p in listed:
            change = pushed.get(p.coin) if p.coin else None
            read_ms = self._read_ms.balances.get(p.coin) if p.coin else None
            if change is None or p.coin_other is None or older(at_ms, read_ms):
                out.append(p)
                continue
            part, value = change
            seen = {"cross": p.coin_cross, "liability": p.coin_liability, "um": p.coin_um}[part]
            if seen is None:
                out.append(p)
                continue
            # a loan is equity less: its rise lowers the coin's equity
            step = (seen - value if part == "liability" else value - seen) if whole else 0
            p = dataclasses.replace(p, coin_other=p.coin_other + step)
            if part == "cross":
                p = dataclasses.replace(p, coin_cross=value)
            elif part == "liability":
                p = dataclasses.replace(p, coin_liability=value)
            else:
                p = dataclasses.replace(p, coin_um=value)
            out.append(p)
        changed = tuple(out)
        return None if changed == listed else changed

    def _pushed_wallets(
        self, balances: Any, at_ms: int | None, listed: tuple[ExchangeRatioPosition, ...]
    ) -> tuple[ExchangeRatioPosition, ...]:
        """The listed positions with their coin's COIN-M wallet as a CM push's ``a.B[]`` gives
        it (``a``, ``cw``); a position whose wallet was not read (listed as read) stays so,
        and so does a wallet the push, stamped ``at_ms`` (``E``), is older than as read
        (``assets[].updateTime`` of "Get CM Account Detail": a transfer's half held for its
        other half and released after a read that holds a later change of the wallet)."""
        if not isinstance(balances, list):
            raise FrameError("CM ACCOUNT_UPDATE: a.B is not a list of balances")
        wallets = {}
        for raw in balances:
            if not isinstance(raw, dict) or not isinstance(raw.get("a"), str):
                raise FrameError("CM ACCOUNT_UPDATE: a balance row without an asset")
            wallets[raw["a"]] = dec(raw.get("cw"), f"CM ACCOUNT_UPDATE {raw['a']} cw")
        for coin in [c for c in wallets if older(at_ms, self._read_ms.cm_wallets.get(c))]:
            del wallets[coin]
        return tuple(
            dataclasses.replace(p, coin_wallet=wallets[p.coin])
            if p.coin in wallets and p.coin_wallet is not None
            else p
            for p in listed
        )

    def _opened_by_push(
        self,
        market: Any,
        market_id: str,
        side: Side,
        listed: tuple[ExchangeRatioPosition, ...],
    ) -> ExchangeRatioPosition | None:
        """A COIN-M position a push names that the last read did not list (opened since): in
        a market of the COIN-M catalogue, a position of one contract (its size and entry
        set by the push) that follows its mark from here, its PnL counted from its entry
        (none at the read: ``opened``), its requirement from its market's brackets as last
        read (none at the read), its coin's wallet, rates and balances those of a listed
        position of its coin (else none: a gain counts 0, a loss in full); no liquidation
        price of Binance's until the next read. None: a market the catalogue does not hold
        (left to the next reconcile, said once)."""
        size = market.get("contractSize")
        if market.get("id") != market_id or not market.get("inverse") or not size:
            self._said_unlisted_push(market_id)
            return None
        symbol, coin = str(market["symbol"]), market.get("settle")
        sibling = next((p for p in listed if coin and p.coin == coin), None)
        opened = ExchangeRatioPosition(
            symbol=symbol,
            side=side,
            contracts=Decimal(1),
            entry_price=Decimal(1),
            mark_price=Decimal(1),
            notional=None,
            unrealized_pnl=None,
            liquidation_price=None,
            liquidation_distance=None,
            quantity=dec(str(size), f"{market_id} contractSize"),
            inverse=True,
            coin_brackets=self._coin_m_brackets.get(symbol),
            coin=coin if isinstance(coin, str) and coin else None,
            opened=True,
        )
        if sibling is None:
            return opened
        return dataclasses.replace(
            opened,
            collateral_rates=sibling.collateral_rates,
            collateral_tiers=sibling.collateral_tiers,
            coin_wallet=sibling.coin_wallet,
            coin_other=sibling.coin_other,
            coin_cross=sibling.coin_cross,
            coin_liability=sibling.coin_liability,
            coin_um=sibling.coin_um,
        )

    def _said_unlisted_push(self, market_id: str) -> None:
        """Say, once per COIN-M market, that its push names a position not listed (opened since
        the last read, or in a market the COIN-M catalogue does not hold)."""
        self._pushed_unlisted.add(market_id)
        if market_id not in self._coin_m_unlisted_pushed:
            self._coin_m_unlisted_pushed.add(market_id)
            log.info(
                "a COIN-M push of %s, a position not listed (opened since the last read, or "
                "not in the COIN-M catalogue): left to the next reconcile",
                market_id,
            )

    def _said_liability_type(self, kind: Any) -> None:
        """Say, once per value, a ``liabilityChange`` ``t`` other than those alertd knows:
        Binance's PM "Event: Liability Update" documents ``t`` as "Type" with BORROW in its
        example only; the margin risk stream's "Liability Update" names borrowing, repayment
        and interest calculation as its causes, not their strings. REPAY and INTEREST are
        inferred; a push of another ``t`` is taken as a borrow's or repay's (held for its
        balance push; of an asset not followed, a read asked: interest so, as before pm17)."""
        shown = repr(kind)[:40]  # any JSON value: a list is not hashable
        known = isinstance(kind, str) and kind in LIABILITY_TYPES
        if known or shown in self._liability_types_said or len(self._liability_types_said) > 31:
            return
        self._liability_types_said.add(shown)
        log.info(
            "a liabilityChange push of type %s, not one alertd knows (BORROW, REPAY, "
            "INTEREST): taken as a borrow or repay (of an asset not followed, a read asked)",
            shown,
        )

    def snapshot_written(self) -> None:
        """The update times the snapshot read (COIN-M rows, "Account Balance", COIN-M
        wallets) are those a push is compared with from now on (:meth:`pushed_listed`)."""
        self._read_ms = dataclasses.replace(self._next_read_ms)  # (the next read's its own)

    def pushed_unlisted(self) -> frozenset[str]:
        return frozenset(self._pushed_unlisted)

    def pushed_unfollowed(self) -> frozenset[str]:
        return frozenset(self._pushed_unfollowed)

    def transfer_half(self, message: Any) -> frozenset[str]:
        """A portfolio margin stream's COIN-M or UM wallet push of a transfer ("Event: Futures
        Balance and Position Update", ``fs`` CM or UM, ``a.m`` the event reason type
        MARGIN_TRANSFER or ASSET_TRANSFER, no position rows): the coin moved to or from its
        cross margin account, whose balance Binance pushes in another event, "Event: Margin
        Account Update" (``outboundAccountPosition``). The assets of its ``a.B[]``."""
        if not isinstance(message, dict) or message.get("e") != "ACCOUNT_UPDATE":
            return frozenset()
        update = message.get("a")
        if message.get("fs") not in ("CM", "UM") or not isinstance(update, dict):
            return frozenset()
        if update.get("m") not in TRANSFER_REASONS or update.get("P"):
            return frozenset()
        return _row_assets(update.get("B"))  # malformed: applied at once, said there

    def transfer_other_half(self, message: Any) -> frozenset[str]:
        """The assets of an ``outboundAccountPosition`` (``B[].a``): the cross margin side of
        a transfer (:meth:`transfer_half`)."""
        if not isinstance(message, dict) or message.get("e") != "outboundAccountPosition":
            return frozenset()
        return _row_assets(message.get("B"))

    def loan_half(self, message: Any) -> frozenset[str]:
        """A ``liabilityChange`` ("Event: Liability Update") of a loan's change other than
        interest (``t`` BORROW, REPAY, ...): the coin borrowed is credited to, or the repaid
        debited from, the cross margin balance, which Binance pushes in its own
        ``outboundAccountPosition``. An INTEREST one moves the liability alone (no balance
        push follows): not held."""
        if not isinstance(message, dict) or message.get("e") != "liabilityChange":
            return frozenset()
        asset = message.get("a")
        if message.get("t") == "INTEREST" or not isinstance(asset, str):
            return frozenset()
        return frozenset({asset})

    def listed_assets(self, message: Any) -> frozenset[str]:
        """The assets of a COIN-M or UM wallet push (``a.B[].a``, any reason, with position
        rows or none), a cross margin balance push (``B[].a``) or a loan's
        (``liabilityChange``'s ``a``): each moves the listed positions' coin parts."""
        if not isinstance(message, dict):
            return frozenset()
        event = message.get("e")
        if event == "ACCOUNT_UPDATE" and message.get("fs") in ("CM", "UM"):
            update = message.get("a")
            return _row_assets(update.get("B")) if isinstance(update, dict) else frozenset()
        if event == "liabilityChange":
            asset = message.get("a")
            return frozenset({asset}) if isinstance(asset, str) else frozenset()
        return self.transfer_other_half(message)

    def listed_marks(self, options: Mapping[str, Any]) -> ExchangeAdapter | None:
        # a portfolio margin account's COIN-M positions: their catalogue (``listed_catalogue``,
        # GET /dapi/v1/exchangeInfo) and marks (dstream) are binancecoinm's
        return CoinMMarks() if options.get("portfolioMargin") else None

    async def fetch_collateral(self, exchange: Any) -> tuple[Collateral, ...]:
        # V2 account information carries the mode flag and every coin's balance; the last
        # reader of the snapshot's answer
        account = await self._snapshot_account(exchange)
        self._account = None
        self._settle_terms = None
        self._margin_assets = ()
        if not account.get("multiAssetsMargin"):
            return ()  # single-asset: the settle wallet alone backs the pool
        # the asset index stream's rows, while it is fresh: the same rows as the REST read
        # (developers.binance.com, "Multi-Assets Mode Asset Index", stream and REST), at most
        # a staleness interval old, for none of the weight; the REST read where the stream is
        # stale or lacks a row the account needs
        streamed = self.streamed_index() if self.streamed_index is not None else None
        if streamed is not None:
            try:
                coins = self._read_pool(account, list(streamed.values()), exchange)
            except FrameError:
                pass
            else:
                self._snapshot_weight = USDM_SNAPSHOT_WEIGHT
                return coins
        # every index in one request (weight 10): the settle currency's rates and the coins';
        # a coin Binance does not price is then named in the account's problem, where asking
        # for it alone would be refused as a bad symbol
        asset_index = await exchange.fapiPublicGetAssetIndex()
        if not isinstance(asset_index, list):
            raise FrameError("assetIndex: expected a list of indices")
        self._snapshot_weight = USDM_SNAPSHOT_WEIGHT + ASSET_INDEX_WEIGHT
        coins = self._read_pool(account, asset_index, exchange)
        if self.index_read is not None:
            self.index_read(checked_index_rows(asset_index)[0])
        return coins

    def _read_pool(
        self, account: dict[str, Any], asset_index: list[Any], exchange: Any
    ) -> tuple[Collateral, ...]:
        """A multi-assets pool's settle terms and margin asset lines (kept) and its coins
        (returned), from the account answer and the asset index rows."""
        terms = settle_rates(asset_index, self.settle)
        assets = self.market_filter.margin_assets(exchange.markets)
        held = {
            exchange.safe_market(p.get("symbol"), None, None, "swap").get("settle")
            for p in account.get("positions") or []
            # v3 lists a symbol with open orders alone, at a positionAmt of 0
            if isinstance(p, dict) and dec_or_none(p.get("positionAmt")) not in (None, 0)
        }
        shared = shared_margin_assets(account, asset_index, assets, held)
        coins = multi_assets_collateral(account, asset_index, self.settle, exchange.markets, assets)
        self._settle_terms, self._margin_assets = terms, shared
        return coins

    def settle_terms(self) -> SettleTerms | None:
        return self._settle_terms

    streams_asset_index = True

    @staticmethod
    def stream_hash(message: Any) -> str | None:
        # ccxt's binance has no handler of assetIndexUpdate (its list frame is dropped)
        first = message[0] if isinstance(message, list) and message else message
        event = first.get("e") if isinstance(first, dict) else None
        return ASSET_INDEX_HASH if event == ASSET_INDEX_EVENT else None

    @staticmethod
    def _asset_index_url(exchange: Any) -> str:
        # the URL and stream slot ccxt gives its own market streams (the mark price's among
        # them); ccxt keeps the slot of a subscription hash, so every call names the same one
        return str(
            exchange.get_ws_url("linear", exchange.get_future_ws_category(ASSET_INDEX_HASH))
            + "/"
            + exchange.stream("linear", ASSET_INDEX_HASH)
        )

    async def watch_asset_index(self, exchange: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """``!assetIndex@arr`` on ccxt's market-stream connection, subscribed as ccxt
        subscribes its own market streams; the frames are resolved by :meth:`stream_hash`."""
        url = self._asset_index_url(exchange)
        request_id = exchange.request_id(url)
        request = {"method": "SUBSCRIBE", "params": [ASSET_INDEX_STREAM], "id": request_id}
        frame = await exchange.watch(
            url, ASSET_INDEX_HASH, request, ASSET_INDEX_HASH, {"id": request_id}
        )
        return streamed_index_rows(frame)

    async def renew_asset_index(self, exchange: Any, reason: str) -> bool:
        """``UNSUBSCRIBE`` ``!assetIndex@arr`` on its connection, and the next watch sends
        ``SUBSCRIBE`` again (developers.binance.com, USDⓈ-M futures, websocket market streams,
        "Live Subscribing/Unsubscribing to streams": both on an open connection, its other
        streams kept). ccxt gives each market subscription a stream slot (a connection) of its
        own until its 50 are taken: mostly the index's connection carries nothing else, and is
        reopened instead (:func:`~alertd.feeds.ccxt_exchange.renew_subscription`)."""
        # here, not at the top: the exchange modules load without ccxt (registry)
        from alertd.feeds.ccxt_exchange import renew_subscription

        url = self._asset_index_url(exchange)
        request = {
            "method": "UNSUBSCRIBE",
            "params": [ASSET_INDEX_STREAM],
            "id": exchange.request_id(url),
        }
        return await renew_subscription(exchange, url, ASSET_INDEX_HASH, request, reason)

    async def fetch_asset_index(self, exchange: Any) -> tuple[list[dict[str, Any]], list[str]]:
        answer = await exchange.fapiPublicGetAssetIndex()  # every index: weight 10
        if not isinstance(answer, list):
            raise FrameError("assetIndex: expected a list of indices")
        return checked_index_rows(answer)

    def rerated(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        terms: SettleTerms | None,
        lines: tuple[MarginAsset, ...],
        coins: tuple[Collateral, ...],
    ) -> tuple[SettleTerms | None, tuple[MarginAsset, ...], tuple[Collateral, ...]]:
        return rerated(rows, self.settle, terms, lines, coins)

    def margin_assets(self) -> tuple[MarginAsset, ...]:
        return self._margin_assets

    @property
    def watches_stops(self) -> bool:  # type: ignore[override]
        # a portfolio margin account's conditional orders change on the PM stream's
        # CONDITIONAL_ORDER_TRADE_UPDATE, which ccxt does not deliver: no push would say a stop
        # was cancelled, so its stops are read at every reconcile rather than trusted to one
        return self._portfolio is None

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        # ALGO_UPDATE carries the algo id ("aid"); a legacy conditional order's
        # ORDER_TRADE_UPDATE its original type ("ot": STOP_MARKET ...)
        return "aid" in raw or str(raw.get("ot", raw.get("o"))) in _STOP_KINDS

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder] | None:
        # Conditional orders moved to the Algo Service (openAlgoOrders); openOrders still lists
        # those placed before the move. Each weighs 1 with a symbol and 40 without ("Current
        # All Open Orders", "Current All Algo Open Orders"): per held symbol up to 40 of them,
        # or 50 accounts' reconciles alone would pass the IP's 2,400 a minute. A portfolio
        # margin account's UM orders: the same pair under /papi/v1/um (see usdm_stop).
        if self._portfolio_margin(exchange):
            reads = (exchange.papiGetUmConditionalOpenOrders, exchange.papiGetUmAlgoOpenAlgoOrders)
        else:
            reads = (exchange.fapiPrivateGetOpenOrders, exchange.fapiPrivateGetOpenAlgoOrders)
        markets = exchange.markets or {}
        ids = [markets[s]["id"] for s in symbols if s in markets]
        # a symbol ccxt does not know (no catalogue loaded): every symbol at once
        per_symbol = len(ids) == len(symbols) and len(ids) < ALL_SYMBOLS_WEIGHT
        scopes: list[dict[str, str]] = [{"symbol": i} for i in ids] if per_symbol else [{}]
        rows: list[Any] = []
        for scope in scopes:
            for read in reads:
                rows += order_rows(await read(scope), "open orders")
        out = []
        for raw in rows:
            market = exchange.safe_market(raw.get("symbol"), None, None, "swap")
            if not self.market_filter.accepts(market):
                continue
            stop = usdm_stop(raw, market["symbol"])
            if stop is not None:
                out.append(stop)
        return out

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        changed = await exchange.watch_positions()
        out: list[PositionState] = []
        for position in changed:
            raw = position.get("info") or {}
            if "pa" not in raw and "positionAmt" not in raw:
                continue
            if raw.get("s") in self._coin_m_pushed:
                # a COIN-M position on the portfolio margin stream, which ccxt hands over
                # with the UM ones: not one of this account's markets (the reconcile lists
                # the COIN-M positions as Binance reads them)
                continue
            # the push's event time ("E" of "Event: Balance and Position Update", which ccxt
            # gives each of its positions as ``timestamp``), against a REST row's "updateTime"
            # (developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/
            # Event-Balance-and-Position-Update; .../trade/rest-api/Position-Information-V3)
            at = stamp_or_none(position.get("timestamp"))
            p = dataclasses.replace(self._position(exchange, raw), version=at)
            if p.one_way and p.contracts == 0:
                # a one-way close ("pa": "0", "ps": "BOTH") says nothing of the side it closes:
                # a short closed must not stay open as the long that "0" would parse to
                out.extend(closed_both_sides(p.symbol, at))
            else:
                # one-way, open: a flip's one row (the signed "pa") ends the other side
                out.append(p)
        return out

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        return (await self.watch_balances(exchange)).get(self.settle)

    async def watch_balances(self, exchange: Any) -> dict[str, Decimal]:
        """Every margin asset's cross wallet in an ``ACCOUNT_UPDATE`` ("Event: Balance and
        Position Update": ``a.B[]`` lists each asset the event changed, ``a`` the asset and
        ``cw`` its cross wallet balance): the settle currency's and the other pools' (a
        USDC-M fill changes the USDC row)."""
        balance = await exchange.watch_balance()
        message = balance.get("info") or {}
        data = message.get("a") if isinstance(message, dict) else None
        if not isinstance(data, dict):
            return {}
        # its event time "E", as the positions' (watch_positions), against the assets'
        # "updateTime" of Account Information V2 (fetch_balance)
        self.balance_pushed_ms = stamp_or_none(message.get("E"))
        wanted = (self.settle, *self.market_filter.margin_assets(exchange.markets))
        return {
            entry["a"]: dec(entry.get("cw"), f"B[{entry['a']}].cw")
            for entry in data.get("B", [])
            if isinstance(entry, dict) and entry.get("a") in wanted
        }

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        info = await exchange.fapiPublicGetPremiumIndex({"symbol": exchange.market_id(symbol)})
        return dec(info.get("markPrice"), "markPrice")

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return await watch_mark(exchange, symbol)

    async def unwatch_mark(self, exchange: Any, symbol: str) -> None:
        await exchange.un_watch_mark_price(symbol)

    def event(self, message: Any, now: float) -> AccountEvent | None:
        if isinstance(message, dict) and message.get("fs") == "CM":
            # the portfolio margin stream's COIN-M update ("Event: Futures Balance and
            # Position Update", ``fs`` the business unit: UM or CM), seen here before ccxt
            # hands its positions to watch_positions, which leaves these ids out
            update = message.get("a")
            rows = update.get("P") if isinstance(update, dict) else None
            for row in rows if isinstance(rows, list) else ():
                if isinstance(row, dict) and isinstance(row.get("s"), str):
                    self._coin_m_pushed.add(row["s"])
            return None
        if isinstance(message, dict) and message.get("e") == "riskLevelChange":
            # the portfolio margin stream's margin call ("Event: riskLevelChange": ``u`` the
            # uniMMR, ``s`` MARGIN_CALL, SUPPLY_MARGIN, REDUCE_ONLY or FORCE_LIQUIDATION, ``eq``
            # the account equity and ``m`` the maintenance margin in USD)
            return AccountEvent(
                MARGIN_CALL,
                now,
                f"{str(message.get('s'))[:40]}: Binance's uniMMR {str(message.get('u'))[:40]}, "
                f"equity {str(message.get('eq'))[:40]} USD, maintenance margin "
                f"{str(message.get('m'))[:40]} USD",
            )
        if not isinstance(message, dict) or message.get("e") != "MARGIN_CALL":
            return None
        legs = []
        for p in message.get("p") or []:
            try:
                legs.append(
                    f"{p.get('s')} {p.get('ps')} {p.get('pa')} mark {p.get('mp')} "
                    f"MM {dec(p.get('mm'), 'mm')}"
                )
            except FrameError:
                legs.append(str(p.get("s")))
        detail = f"cross wallet {message.get('cw')}; " + "; ".join(legs)
        return AccountEvent(MARGIN_CALL, now, detail)

    def listen_key_expired(self, message: Any) -> bool:
        return isinstance(message, dict) and message.get("e") == "listenKeyExpired"

    async def renew(self, exchange: Any) -> None:
        # ccxt's own renewal runs once and is not rescheduled (Python port): alertd's timer
        # calls it. On failure ccxt rejects the private futures and forgets the key, so the
        # next watch authenticates afresh.
        await exchange.keep_alive_listen_key({"type": "future"})


# the spot API's ban (api.binance.com: "HTTP 418 return code is used when an IP has been
# auto-banned for continuing to send requests after receiving 429 codes", with a Retry-After;
# spot "General Info", Limits), as USDⓈ-M's words it
SPOT_IP_BAN = IpBanAnswer(418, lasts_s=120.0, until_ms=r"banned until (\d{10,16})")


def _other_parts(coin: str | None, others: Mapping[str, PmBalance] | None) -> dict[str, Any]:
    """A COIN-M position's coin's equity outside COIN-M (:class:`PmBalance`): in all, and the
    parts the stream pushes (none of it where "Account Balance" was not read; 0 for a coin it
    does not list)."""
    if not coin or others is None:
        return {"coin_other": None, "coin_cross": None, "coin_liability": None, "coin_um": None}
    zero = Decimal(0)
    found = others.get(coin, PmBalance(zero, zero, zero, zero, None))
    return {
        "coin_other": found.other,
        "coin_cross": found.cross,
        "coin_liability": found.liability,
        "coin_um": found.um_wallet,
    }


def _closed_by_push(
    listed: dict[tuple[str, Side], ExchangeRatioPosition], key: tuple[str, Side]
) -> None:
    """A listed COIN-M position a push closed: held with no size until the next read where it
    follows its mark (its coin's wallet, the close's realized PnL in it, is still the coin's
    equity that uniMMR counts, moving with the coin's mark: dropped, the coin's equity
    snapped back to as read until the fill's read), gone where it is listed as read."""
    p = listed.get(key)
    if p is None:
        return
    if p.quantity is None:
        del listed[key]
    else:
        listed[key] = dataclasses.replace(p, contracts=Decimal(0), quantity=Decimal(0))


class CoinMMarks(ExchangeAdapter):
    """The COIN-M marks a portfolio margin account's COIN-M positions follow, on a mark hub of
    their own (``binancecoinm``): "Mark Price Stream" ``<symbol>@markPrice@1s`` on
    dstream.binance.com (developers.binance.com, COIN-M Futures, websocket market streams: the
    same ``markPriceUpdate`` as USDⓈ-M's), public; seeded by the marks the reconcile read
    with the positions. The catalogue is COIN-M's "Exchange Information"
    (``GET /dapi/v1/exchangeInfo``, weight 1), loaded once by the hub's exchange."""

    exchange_id = "binancecoinm"
    market_filter = MarketFilter(settle="BTC")
    # the portfolio margin collateral rates (pm_collateral_rates): the exchange's, read with
    # an account's key once per exchange for all its accounts
    shared_read_name = "portfolio margin collateral rates (GET /sapi/v2/portfolio/collateralRate)"
    # on the spot API's host, whose bans and 429s are its own (not fapi's, papi's or dapi's)
    shared_read_host = "api.binance.com"
    shared_read_ban = SPOT_IP_BAN

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return await watch_mark(exchange, symbol)

    async def unwatch_mark(self, exchange: Any, symbol: str) -> None:
        await exchange.un_watch_mark_price(symbol)


async def key_permissions(exchange: Any) -> list[str]:
    """What the key allows beyond reading, from GET /sapi/v1/account/apiRestrictions."""
    info = await exchange.sapiGetAccountApiRestrictions()
    flags = {
        "enableFutures": "futures trading",
        "enableSpotAndMarginTrading": "spot and margin trading",
        "enableWithdrawals": "withdrawals",
        "enableInternalTransfer": "internal transfers",
        "enableMargin": "margin loans",
        "permitsUniversalTransfer": "universal transfers",
        "enableVanillaOptions": "options trading",
    }
    return [label for key, label in flags.items() if info.get(key)]


# Binance's documented weights of the USDⓈ-M requests alertd sends where ccxt's implicit API
# counts less (developers.binance.com, USDⓈ-M futures: Position Information V2/V3, Account
# Information V2/V3, Futures Account Balance V2/V3: weight 5 each; ccxt counts 1). The others
# alertd sends are counted as Binance does by ccxt already: exchangeInfo 1, leverageBracket 1,
# listenKey 1, premiumIndex with a symbol 1, assetIndex without one 10, klines by limit.
USDM_WEIGHTS = {
    (api, "GET", path): 5
    for api in ("fapiPrivateV2", "fapiPrivateV3")
    for path in ("positionRisk", "account", "balance")
}
# "REQUEST_WEIGHT 2400 per minute" per IP (USDⓈ-M futures, General Info, Limits)
USDM_WEIGHT_PER_MINUTE = 2400
# A snapshot: Position Information V3 and Account Information V2, 5 each
USDM_SNAPSHOT_WEIGHT = 10
# "Multi-Assets Mode Asset Index" (GET /fapi/v1/assetIndex): "1 for a single symbol; 10 when
# the symbol parameter is omitted" (developers.binance.com, USDⓈ-M futures, market data REST
# API); a multi-assets account's snapshot reads every index at once (fetch_collateral)
ASSET_INDEX_WEIGHT = 10
# Going live beside the snapshot: the leverage brackets (1) and the listen key (1)
USDM_GOING_LIVE_WEIGHT = 2

# The Portfolio Margin API's own per-IP limit, apart from USDⓈ-M's: REQUEST_WEIGHT 6000 a
# minute (developers.binance.com, Portfolio Margin, General Info, Limits; ccxt's binance.py
# prices a /papi weight at a fifth of its 1,200 a minute for the same reason: "IP (papi)
# request rate limit of 6000 per minute")
PAPI_WEIGHT_PER_MINUTE = 6000
# Binance's documented weights of the /papi requests alertd sends (Portfolio Margin API,
# each endpoint's "Request Weight"): Account Information 20, Query UM/CM Position Information
# 5/1, Get UM/CM Account Detail 5/5, UM/CM Notional and Leverage Brackets 1/1, the listen key 1
PAPI_WEIGHTS = {
    "account": 20,
    "um/positionRisk": 5,
    "um/account": 5,
    "cm/positionRisk": 1,
    "cm/account": 5,
    "cm/leverageBracket": 1,
    "balance": 20,
    "um/leverageBracket": 1,
    "listenKey": 1,
}
# open (algo, conditional) orders: 1 with a symbol, ALL_SYMBOLS_WEIGHT without ("Query All
# Current UM Open Conditional Orders", "... UM Open Algo Orders", "... CM Open Conditional
# Orders")
PAPI_BY_SYMBOL = frozenset(
    {"um/conditional/openOrders", "um/algo/openAlgoOrders", "cm/conditional/openOrders"}
)
# One rolling window paces every Binance account of an IP, in USDⓈ-M weight: a /papi request
# counts there as its share of the papi budget (2,400 / 6,000 of its weight), so that a
# window within USDⓈ-M's budget is within each API's own however the two mix
PAPI_SHARE = USDM_WEIGHT_PER_MINUTE / PAPI_WEIGHT_PER_MINUTE


def papi_weight(path: str, params: Any) -> float | None:
    """A /papi request's weight in the pacing window's (USDⓈ-M) units; None: not one alertd
    sends (ccxt's own cost)."""
    if path in PAPI_BY_SYMBOL:
        weight = 1 if isinstance(params, dict) and params.get("symbol") else ALL_SYMBOLS_WEIGHT
    elif path in PAPI_WEIGHTS:
        weight = PAPI_WEIGHTS[path]
    else:
        return None
    return weight * PAPI_SHARE


def portfolio_snapshot_weight(coin_m_symbols: int) -> float:
    """A portfolio margin account's snapshot in the pacing window's units: Account Information,
    the UM positions and account, the COIN-M positions, and with ``coin_m_symbols`` held
    their conditional orders per symbol, the COIN-M account and brackets and the account's
    balances (``_coin_m_positions``)."""
    reads = ("account", "um/positionRisk", "um/account", "cm/positionRisk")
    weight = sum(PAPI_WEIGHTS[path] for path in reads)
    if coin_m_symbols:
        held = ("cm/account", "cm/leverageBracket", "balance")
        weight += coin_m_symbols + sum(PAPI_WEIGHTS[path] for path in held)
    return weight * PAPI_SHARE


# a portfolio margin account until it is live: its snapshot (no COIN-M position known yet),
# its UM brackets and its listen key
PORTFOLIO_LIVE_WEIGHT = (
    portfolio_snapshot_weight(0)
    + (PAPI_WEIGHTS["um/leverageBracket"] + PAPI_WEIGHTS["listenKey"]) * PAPI_SHARE
)


# "Portfolio Margin Pro Tiered Collateral Rate": GET /sapi/v2/portfolio/collateralRate,
# "Request Weight(IP) 50" of the spot API's "REQUEST_WEIGHT 6000" a minute (api.binance.com):
# not in the fapi/papi window (``other_host_apis``); read once per exchange on the market
# catalogue's schedule (BinanceUSDMAdapter._collateral_rates), 50 of 6,000 once an interval
COLLATERAL_RATE_REQUEST: tuple[str, list[str], str, dict[str, Any]] = (
    "portfolio/collateralRate",
    ["sapiV2"],
    "GET",
    {},
)


def usdm_request_weight(api: str, method: str, path: str, params: Any) -> float | None:
    if api == "papi":
        return papi_weight(path, params)
    return USDM_WEIGHTS.get((api, method, path))


def usdm_stops_weight(symbols: int) -> int:
    """What :meth:`BinanceUSDMAdapter.fetch_stops` spends for ``symbols`` held symbols:
    openOrders and openAlgoOrders, 1 each per symbol ("Current All Open Orders", "Current All
    Algo Open Orders"), or the pair without a symbol at 40 each from ``ALL_SYMBOLS_WEIGHT``
    symbols on."""
    return 2 * min(symbols, ALL_SYMBOLS_WEIGHT)


USDM_IP_BAN = IpBanAnswer(418, lasts_s=120.0, until_ms=r"banned until (\d{10,16})")
# COIN-M futures' own per-IP limit: "REQUEST_WEIGHT 2400" a minute (its exchangeInfo's
# rateLimits; developers.binance.com, COIN-M Futures, General Info, Limits)
COINM_WEIGHT_PER_MINUTE = 2400

USDM = ExchangeSpec(
    profile=USDM_PROFILE,
    adapter=BinanceUSDMAdapter,
    capabilities=Capabilities(
        tier_source=TierSource.LEVERAGE_BRACKETS,
        margin_call_push=MARGIN_CALL,
        renews_listen_key=True,
        key_permissions=key_permissions,
        # "The limits on the API are based on the IPs, not the API keys" (Binance USDⓈ-M
        # futures docs, General Info, Limits): REQUEST_WEIGHT 2400 per minute per IP
        rest_limit_per_ip=True,
        rest_weight_per_minute=USDM_WEIGHT_PER_MINUTE,
        request_weight=usdm_request_weight,
        # a single-asset account's; a multi-assets or portfolio margin account's as it reads
        # (BinanceUSDMAdapter.snapshot_weight, live_weight): docs/scaling.md
        snapshot_weight=USDM_SNAPSHOT_WEIGHT,
        live_weight=USDM_SNAPSHOT_WEIGHT + USDM_GOING_LIVE_WEIGHT,
        stops_weight=usdm_stops_weight,
        # "Repeatedly violating rate limits and/or failing to back off after receiving 429s
        # will result in an automated IP ban (HTTP status 418)"; "IP bans are tracked and scale
        # in duration for repeat offenders, from 2 minutes to 3 days"; "A Retry-After header is
        # sent with a 418 or 429 responses and will give the number of seconds required to
        # wait, in the case of a 429, to prevent a ban, or, in the case of a 418, until the ban
        # is over" (USDⓈ-M futures, "General Info", Limits:
        # https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info);
        # its body, code -1003: "Way too many requests; IP(...) banned until 1592391478000."
        ip_ban=USDM_IP_BAN,
        # "There is a limit of 300 connections per attempt every 5 minutes", per IP
        # (developers.binance.com, WebSocket API, Connection limits: the one cap Binance
        # documents; the USDⓈ-M pages state none of their own); an account opens one, its
        # user-data stream
        ws_openings_per_ip=(300, 300.0),
    ),
    markets=USDM_MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    ccxt_options={
        # fetchCurrencies would call spot wallet endpoints that a futures-only key cannot read
        "fetchCurrencies": False,
        "defaultType": "future",
        # ccxt's first watch_positions would fetch its own snapshot: positionRisk (weight 5)
        # and every symbol's leverage brackets, kept per account (about 0.8 MB at 550
        # markets); the feed takes its own snapshots (at bootstrap and once the streams are
        # subscribed), so that one is pure cost
        "watchPositions": {"fetchPositionsSnapshot": False},
        # the order-book diff stream at its slowest rate, <symbol>@depth@500ms: each event
        # carries the changes of half a second merged, a fifth of the 100 ms stream's events
        # for a book alertd takes at most once a second (feeds.order_books.stream_every_s);
        # read by ccxt's watch and unwatch alike
        "watchOrderBookRate": "500",
    },
    inverse_spec="binancecoinm",
    # the USDⓈ-M futures REST API, https://fapi.binance.com (USDⓈ-M futures docs, "General
    # Info", General API Information), where its positions, balances and brackets are read;
    # its user-data stream is fstream.binance.com's
    api_url="fapiPrivate",
)
COINM = ExchangeSpec(
    profile=COINM_PROFILE,
    adapter=None,
    capabilities=Capabilities(
        tier_source=TierSource.SNAPSHOT,
        # a portfolio margin account's COIN-M mark hub reads its catalogue here (GET
        # /dapi/v1/exchangeInfo, weight 1): dapi.binance.com, another host than fapi with a
        # per-IP limit of its own ("REQUEST_WEIGHT" 2400 a minute, COIN-M Futures, General
        # Info, Limits), and the same 418 ban answer as USDⓈ-M's (its Retry-After, "banned
        # until"): one IpBudget of its own, which a ban pauses (FeedManager._listed_hub_for)
        rest_limit_per_ip=True,
        rest_weight_per_minute=COINM_WEIGHT_PER_MINUTE,
        ip_ban=USDM_IP_BAN,
    ),
)
