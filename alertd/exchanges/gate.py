"""Gate futures, USDT-settled perpetuals (``BTC_USDT``).

Wire formats: gate.com/docs/developers/apiv4: "List all positions of a user"
(GET /futures/usdt/positions), "Query futures account" (GET /futures/usdt/accounts), "Query
risk limit tiers" (GET /futures/usdt/risk_limit_tiers), websocket channels
``futures.positions``, ``futures.balances`` and ``futures.tickers`` (``mark_price``). Field
descriptions: repository gate/gateapi-python, docs/Position.md, FuturesAccount.md,
FuturesLimitRiskTiers.md.

Field notes, checked against real answers:

- ``size`` is signed and counted in contracts (``quanto_multiplier`` = ccxt's contractSize);
  ``mode`` is ``single`` (the sign gives the side) or ``dual_long`` / ``dual_short``.
- ``leverage`` 0 means cross (its leverage is then ``cross_leverage_limit``); newer answers
  also say it in ``pos_margin_mode`` and ``lever``.
- Isolated ``margin`` excludes unrealized PnL: a real position's ``margin_rate`` is
  ``(margin + unrealised_pnl) / maintenance_margin``.
- ``total`` is the wallet: "the sum of all historical fund flows" (deposits, realized PnL, fees,
  funding), so it still holds the margin of isolated positions.
- A position's ``maintenance_margin`` is ``value * (tier mmr + taker fee)`` less the deduction;
  in two real answers that fee is 0.075% (the contract's ``taker_fee_rate``).
- The private channels subscribe with the user id (``payload: [uid, ...]``); ccxt raises
  ``ArgumentsRequired`` without ``exchange.uid``. alertd reads it once at bootstrap from "Get
  account detail" (GET /account/detail, ``user_id``) unless the account's ``options`` give
  ``uid``.

The unified account ("Get unified account information", GET /unified/accounts; gateapi-python
UnifiedAccount, UnifiedBalance), read once at every snapshot, with the balance:

- Single-currency margin (``margin_mode`` 3): the USDT cross pool, ``balances.USDT``
  ``margin_balance`` and ``mm``; computed by alertd (:func:`single_currency_pool`).
- Multi-currency margin (1): one USD pool, ``total_margin_balance`` and
  ``total_maintenance_margin``; computed by alertd, other collateral (BTC ...) included: the
  account is then liquidated only once its USDT is gone, and Gate counts the USDT shortfall
  (or the USDT borrowed, the larger) as a liability carrying a tiered borrowing maintenance
  margin (``GET /unified/loan_margin_tiers``, :func:`loan_margin_tiers`), which alertd's pool
  holds (``Account.settle_terms``); a borrowed coin is a collateral leg whose loan's rate
  follows the debt's USD value. :func:`multi_currency_pool` names what alertd still leaves to
  Gate's own ratio (a loan with no tiers listed, a coin it cannot price).
- Portfolio margin (2): scenario-based; Gate's own ratio.
- The settle currency's equity in the unified account holds the cross positions' unrealized
  PnL and not the isolated positions' margin: alertd's wallet is that equity less the PnL plus
  that margin, both as the positions answer of the same snapshot gives them
  (``wallet_includes_isolated``, as the futures ``total`` is).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from alertd.engine.collateral import (
    Collateral,
    CollateralRatio,
    RatioBasis,
    RatioTier,
    SettleTerms,
)
from alertd.engine.model import Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import Tier, TierBasis, TierTable, TierTableError, derive_deductions
from alertd.errors import AccountRefused
from alertd.exchanges.common import (
    AdlScale,
    ComputedPoolReads,
    closed_both_sides,
    coin_price_symbol,
    first_row_mark,
    risk_tiers,
    side_of,
    signed_position,
    taker_fee_rates,
    ticker_mark,
    usd_pool_coin,
    with_adl,
)
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import (
    ExchangeAdapter,
    FrameError,
    Snapshot,
    dec,
    dec_or_none,
    stamp_or_none,
)
from alertd.feeds.state import (
    AccountMode,
    Coverage,
    LifeSequence,
    ModeReading,
    PositionState,
    ReportedAccount,
)

PROFILE = ExchangeProfile(
    id="gate",
    name="Gate",
    # Gate adds the taker fee rate to the maintenance rate: 0.075% reproduces Gate's own
    # figures in its real API responses (ccxt's test data) exactly.
    default_fee_rate=Decimal("0.00075"),
    displayed_ratio=DisplayedRatio.EQUITY_OVER_REQUIREMENT,
    displayed_ratio_name="MMR",
)
MARKETS = MarketFilter(settle="USDT")
# Position ``adl_ranking`` (REST and the positions channel): "1-5, 1 the highest, 5 the
# lowest; 6 means no position or in liquidation" (API v4 reference, Position): counts down
ADL = AdlScale(lowest=5, highest=1, none=frozenset({6}))


def risk_limit_tiers_to_table(rows: list[dict[str, Any]]) -> TierTable:
    """Gate risk limit tiers (``risk_limit`` cap in USDT, ``maintenance_rate``, ``deduction``)."""
    return risk_tiers(
        rows,
        cap="risk_limit",
        mmr="maintenance_rate",
        deduction="deduction",
        leverage=lambda row: dec_or_none(row.get("leverage_max")),
    )


# Gate's ``mode``: "single" (one-way: the sign of ``size``), or a hedge-mode side
_MODES = {"dual_long": Side.LONG, "dual_short": Side.SHORT}


def _isolated(raw: dict[str, Any]) -> bool:
    mode = raw.get("pos_margin_mode")
    if mode in ("isolated", "cross"):
        return bool(mode == "isolated")
    return dec_or_none(raw.get("leverage")) is not None  # leverage 0 means cross


def _life_sequence(raw: dict[str, Any]) -> LifeSequence | None:
    """A position row's order against another: its ``update_id`` ("Update ID. The value
    increments by 1 each time the position is updated", Gate APIv4 Position, since v4.86.0;
    ``futures.positions``: "Message sequence number", since 2023-06-20) with when it was
    made: a push's ``time_ms`` ("Update unix timestamp in milliseconds"), a REST row's
    ``update_time`` ("Last update time", seconds) and ``open_time`` ("First Open Time" of the
    position's life: ``first_open_time`` in its close history). No source says whether
    ``update_id`` runs on when a closed position is reopened or starts again (the recorded
    answers of a freshly opened position hold 1, ccxt's gate.py samples; the channel's sample
    of a reopened one 170919), so it orders two updates of one life only: ``LifeSequence``.
    None: no update id or no time (the push then wins)."""
    sequence = stamp_or_none(raw.get("update_id"))
    if sequence is None:
        return None
    pushed_ms = stamp_or_none(raw.get("time_ms"))
    if pushed_ms is not None:
        return LifeSequence(sequence, pushed_ms, pushed_ms)
    updated_s = stamp_or_none(raw.get("update_time"))
    if updated_s is None:
        return None
    opened_s = stamp_or_none(raw.get("open_time"))
    opened_to_ms = None if opened_s is None else opened_s * 1000 + 999
    return LifeSequence(sequence, updated_s * 1000, updated_s * 1000 + 999, opened_to_ms)


def _user_id(value: Any, source: str) -> str:
    """Gate's numeric user id as the string ccxt wants; a missing one refuses the account."""
    text = "" if isinstance(value, bool) or value is None else str(value).strip()
    if not text.isdigit() or int(text) == 0:
        raise AccountRefused(
            f"gate: no user id ({source} is {value!r}): Gate's private streams subscribe with "
            "it; set options.uid to the account's numeric Gate UID"
        )
    return text


# the unified account's margin modes in the futures account's ``margin_mode``
UNIFIED_MODES = {
    1: AccountMode.MULTI_ASSETS,
    2: AccountMode.PORTFOLIO,
    3: AccountMode.UNIFIED_SINGLE_CURRENCY,
}
# the modes whose pool alertd computes from the unified account
_COMPUTED_POOLS = frozenset({AccountMode.UNIFIED_SINGLE_CURRENCY, AccountMode.MULTI_ASSETS})
_NOT_COMPUTED = (
    "the margin ratio is Gate's own (total_maintenance_margin / total_margin_balance of GET "
    "/unified/accounts), read at every reconcile and moved with the marks in between; "
    "liquidation prices, crash distance and margin to add are not computed"
)


def futures_mode(account: dict[str, Any]) -> ModeReading:
    """The account's mode from "Query futures account" (GET /futures/usdt/accounts).

    ``margin_mode``: 0 classic futures account (or the unified account's classic spot margin
    mode), 1 multi-currency, 2 portfolio, 3 single-currency margin. A classic account is
    alertd's model when Gate computes it the "new classic" way: tiered maintenance margin
    (``enable_tiered_mm``) and one cross pool (the ``cross_*`` fields, "applicable to new
    classic account margin mode"). Gate API v4 docs, FuturesAccount. The unified
    single-currency and multi-currency modes are computed from the unified account
    (:func:`single_currency_pool`, :func:`multi_currency_pool`; :meth:`GateAdapter.settled_mode`
    falls back to Gate's own ratio where the pool holds what alertd does not reproduce);
    portfolio margin is Gate's own ratio.
    """
    raw = account.get("margin_mode")
    name = account.get("margin_mode_name")
    code = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else None
    detail = "margin_mode " + (f"{code}" if code is not None else "not given")
    if name:
        detail += f" ({name})"
    if code == 2:
        return ModeReading.portfolio_margin(
            detail, "Gate's own (total_maintenance_margin / total_margin_balance)"
        )
    if code in UNIFIED_MODES:
        return ModeReading(UNIFIED_MODES[code], detail)
    if code not in (0, None):
        raise FrameError(f"futures accounts: margin_mode {raw!r} is not a margin mode")
    if account.get("enable_tiered_mm") is False or "cross_maintenance_margin" not in account:
        return ModeReading(
            AccountMode.LEGACY,
            detail + ", old classic",
            Coverage.NOT_COMPUTED,
            "Gate's old classic futures account (no tiered maintenance margin or no cross "
            "margin pool) margins each position at the maintenance rate of the risk limit set "
            "on it, by rules alertd has no published formula or worked example to check "
            "against, and reports no account ratio; switch the account to the new classic "
            "mode (or a unified margin mode) on Gate",
        )
    return ModeReading(AccountMode.SINGLE_ASSET, detail)


def _currency_rows(answer: Any) -> list[dict[str, Any]]:
    """The per-currency rows of a unified-account tier answer (a list, which the docs'
    discount example nests in one more list)."""
    rows: list[Any] = list(answer) if isinstance(answer, list) else []
    while rows and all(isinstance(r, list) for r in rows):
        rows = [item for r in rows for item in r]
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("currency"), str)]


def discount_ratios(answer: Any) -> dict[str, CollateralRatio]:
    """Each currency's tiered discount from "List currency discount tiers" (``GET
    /unified/currency_discount_tiers``; the docs' example nests the rows in one more list):
    ``discount`` over ``lower_limit`` to ``upper_limit`` (``+``: no cap), the limits in USD
    value: Gate's announcement of its gradient margin adjustment factors (2024-03-28) counts
    200 BTC at 70,000 USD as 5M x 1 + 5M x 0.97 + 4M x 0.95 = 13.65M USD."""
    out = {}
    for row in _currency_rows(answer):
        ccy = row["currency"]
        ordered = _ordered_tiers(row, "discount_tiers", "currency_discount_tiers")
        tiers = []
        for d in ordered:
            tiers.append(RatioTier(_upper_limit(d, ccy), dec(d.get("discount"), f"{ccy} discount")))
        try:
            out[ccy] = CollateralRatio.build(tiers, RatioBasis.VALUE)
        except TierTableError as exc:
            raise _tier_error("currency_discount_tiers", ccy, exc, "discount") from None
    return out


def _ordered_tiers(row: dict[str, Any], key: str, endpoint: str) -> list[dict[str, Any]]:
    """A currency row's tiers (``key``), lowest ``lower_limit`` first (a missing one: 0);
    none at all is a frame error naming the currency."""
    ccy = row["currency"]
    details = [d for d in row.get(key) or [] if isinstance(d, dict)]
    if not details:
        raise FrameError(f"{endpoint}: no tiers for {ccy}")
    return sorted(details, key=lambda d: dec(d.get("lower_limit") or "0", f"{ccy} lower_limit"))


def _upper_limit(row: dict[str, Any], ccy: str) -> Decimal | None:
    """A tier's ``upper_limit``; None for an open last tier (the loan tiers' docs: "``
    indicates greater than (the last tier)"; the discount tiers' answer writes ``+``)."""
    cap = row.get("upper_limit")
    return None if cap in (None, "", "+") else dec(cap, f"{ccy} upper_limit")


def _tier_error(endpoint: str, ccy: str, exc: TierTableError, rate: str) -> FrameError:
    """A tier the engine refused, named by Gate's field (``rate``: the rate's)."""
    field = {"ratio": rate, "mmr": rate, "cap": "upper_limit"}.get(exc.field, exc.field)
    return FrameError(f"{endpoint} {ccy} tier {exc.index + 1} {field}: {exc.reason}")


def loan_margin_tiers(answer: Any) -> dict[str, TierTable]:
    """Each currency's borrowing maintenance rates from "Query unified account tiered loan
    margin" (``GET /unified/loan_margin_tiers``, Gate API v4; gateapi-python
    UnifiedMarginTiers/MarginTiers: ``currency``, ``margin_tiers`` of ``tier``,
    ``margin_rate``, ``lower_limit``, ``upper_limit`` (empty or ``+``: no cap), ``leverage``).

    The limits are the debt's USD value: Gate's announcements of its "Tiered Borrowing
    Maintenance Margin Rate" (second batch 2024-07-11, third 2024-08-28) list "Debt Size
    Requirements (USD)" against a "Borrowing Maintenance Margin Rate" (XRP: 0-500,000 5%,
    500,000-1,000,000 7% ...). The tiers are slices, each part of the debt's value at its own
    tier's rate: gate.com's "Tiered Margin Calculation" for cross margin (the unified
    account's borrowing, gate.com/trade/introduction/margin-trading/tiered-margin/cross-margin:
    "A tiered maintenance margin requirement is used for borrowing funds, based on the USD
    value of liabilities", 30 BTC owed at 100,000 with 2% up to 2,000,000 USD and 4% to
    5,000,000: "2,000,000 * 2% + 1,000,000 * 4% = 80,000 USD"; the same page's max leverage
    per tier is the answer's ``leverage``). So each tier's deduction is the bracket
    recursion's, as a position's (the local Gate figures it slice by slice). The tiers must
    start at 0 and join (each ``lower_limit`` the previous ``upper_limit``): a debt between
    would have no rate."""
    out = {}
    for row in _currency_rows(answer):
        ccy = row["currency"]
        ordered = _ordered_tiers(row, "margin_tiers", "loan_margin_tiers")
        tiers = []
        floor = Decimal(0)
        for i, d in enumerate(ordered):
            low = dec(d.get("lower_limit"), f"{ccy} lower_limit")
            if low != floor:
                raise FrameError(
                    f"loan_margin_tiers {ccy} tier {i + 1} lower_limit: {low} leaves a gap "
                    f"(the tiers must start at 0 and join; expected {floor})"
                )
            top = _upper_limit(d, ccy)
            tiers.append(
                Tier(
                    top,
                    dec(d.get("margin_rate"), f"{ccy} margin_rate"),
                    Decimal(0),
                    dec_or_none(d.get("leverage")),
                )
            )
            floor = top if top is not None else floor
        try:
            # the caps and rates checked before the deductions are derived from them
            TierTable.build(tiers, TierBasis.NOTIONAL)
        except TierTableError as exc:
            raise _tier_error("loan_margin_tiers", ccy, exc, "margin_rate") from None
        deductions = derive_deductions([t.cap for t in tiers], [t.mmr for t in tiers])
        sliced = [
            dataclasses.replace(t, deduction=d) for t, d in zip(tiers, deductions, strict=True)
        ]
        out[ccy] = TierTable.build(sliced, TierBasis.NOTIONAL)  # the same caps and rates
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class UnifiedPool:
    """The pool of a unified account as alertd models it, in the settle currency: the
    settle currency's cross equity as Gate reported it (its positions' PnL included: the
    wallet is this less their PnL), the other currencies as collateral, Gate's own figures
    and what alertd does not reproduce (empty when the pool is exact)."""

    settle_equity: Decimal
    coins: tuple[Collateral, ...]
    reported: ReportedAccount
    not_reproduced: tuple[str, ...]
    # the settle currency's loan margin tiers, amount borrowed and discount tiers: what it
    # owes (the loan, or its shortfall below zero when larger) carries a borrowing
    # maintenance margin; None in single-currency mode
    settle_terms: SettleTerms | None = None


def _balances(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    balances = info.get("balances") or {}
    if not isinstance(balances, dict):
        raise FrameError("unified accounts: balances not an object")
    return {k: v for k, v in balances.items() if isinstance(v, dict)}


def single_currency_pool(info: dict[str, Any], settle: str) -> UnifiedPool:
    """Single-currency margin (``margin_mode`` 3): the settle currency's cross pool inside
    the unified account (help centre, "Single-Currency Margin Mode - Margin Requirements and
    Risk Control Rules": unit margin balance = USDT balance - USDT of isolated positions - USDT
    frozen in spot orders + the cross positions' unrealized PnL; liquidation at a maintenance
    margin ratio, margin balance / maintenance margin, of 100%). ``balances.USDT``:
    ``margin_balance`` and ``mm`` ("only effective for USDT in single-currency margin mode",
    gateapi-python UnifiedBalance). Gate's requirement is alertd's new-classic one."""
    coin = _balances(info).get(settle)
    if coin is None:  # nothing held in the settle currency
        return UnifiedPool(Decimal(0), (), ReportedAccount(), ())
    balance = dec(coin.get("margin_balance"), f"balances.{settle}.margin_balance")
    mm = dec_or_none(coin.get("mm"))
    return UnifiedPool(
        balance,
        (),
        ReportedAccount(mm, balance, mm / balance if balance and mm is not None else None),
        (),
    )


def _owes_and_holds(row: dict[str, Any], equity: Decimal, borrowed: Decimal) -> tuple[bool, bool]:
    """Whether a currency's balance row owes (a loan, or an equity below zero) and whether it
    is collateral (a positive equity enabled as collateral: Gate counts the others at
    nothing)."""
    owes = borrowed > 0 or equity < 0
    return owes, equity > 0 and row.get("enabled_collateral") is not False


def _priced(ccy: str, row: dict[str, Any], settle: str) -> bool:
    """Whether the pool needs ``ccy``'s price: collateral held, or a liability."""
    if ccy == settle:
        return False
    equity = dec_or_none(row.get("equity")) or Decimal(0)
    borrowed = dec_or_none(row.get("borrowed")) or Decimal(0)
    return any(_owes_and_holds(row, equity, borrowed))


def _earn_as_margin(info: dict[str, Any], row: dict[str, Any], ccy: str) -> Decimal:
    """The Simple Earn funds counted as ``ccy``'s margin (0: none): ``funding`` ("Uniloan
    financial management amount, effective when turned on as a unified account margin
    switch", gateapi-python UnifiedBalance) while the account's ``use_funding`` ("whether to
    use Earn funds as margin", UnifiedAccount) is not off."""
    if info.get("use_funding") is False:
        return Decimal(0)
    funding = dec(row.get("funding") or "0", f"balances.{ccy}.funding")
    return max(funding, Decimal(0))


def multi_currency_pool(
    info: dict[str, Any],
    ratios: dict[str, CollateralRatio],
    index_prices: dict[str, Decimal],
    settle: str,
    markets: dict[str, Any],
    loan_tiers: dict[str, TierTable] | None = None,
) -> UnifiedPool:
    """Multi-currency margin (``margin_mode`` 1): one USD pool over the unified account
    (help centre, "Multi-Currency Margin Mode - margin rules"; gateapi-csharp
    CrossMarginAccount: total margin balance = sum(positive equity x index price x discount)
    + sum(negative equity x index price)). Each currency counts its cross ``equity`` (coin
    balance - borrowed + futures unrealized PnL: the settle currency's holds the positions'
    PnL) at the index price of its USDT perpetual (``index_prices``; it moves with that
    perpetual's mark between reads) times its tiered discount by USD value
    (:func:`discount_ratios`); ``enabled_collateral`` false counts nothing. USDT is counted at
    par with USD. Gate's maintenance margin is the positions' (risk limit tiers, taker fee
    added) plus a borrowing maintenance margin on each currency's liabilities ("Coin
    Liabilities = Borrowed + ABS(Min(Spot Available + Futures Unrealized PnL + Options Value,
    0))") at its ``loan_tiers`` rate (:func:`loan_margin_tiers`). The same table has "Coin
    Balance = Spot available of currency" (Simple Earn funds not enabled as margin) and "Coin
    Equity = Coin Balance - Borrowed + Coin Futures Unrealized PnL + Options Value", so that
    liability is ``max(borrowed, -equity)``: what the engine owes (``Collateral.owed``,
    ``SettleTerms.owed``).

    The settle currency's equity moves with the positions' PnL: what it owes (the amount
    borrowed, or its shortfall below zero when larger: with other collateral behind the
    positions the account outlives its USDT, and at its liquidation price that equity is
    below zero) and its discount are the pool's own (``settle_terms``: the loan tiers' USD
    limits and the discount's read as USDT at par). A coin's liability (borrowed, or a
    negative equity) is a collateral leg whose borrowing maintenance margin is tiered by the
    debt's USD value, moving with the coin's price (a price move can carry the debt into
    another tier); a coin that is not collateral still owes its loan. Left to Gate's own
    ratio, named in ``not_reproduced``: a liability (or a settle currency owed, or backed by
    other collateral) with no loan margin tiers (Gate applies an unlisted single-tier rate),
    a held or owed currency with no discount tiers or no USDT perpetual to price it, and a
    settle currency with Simple Earn funds as margin (in its equity, not in its "Spot
    Available": :func:`_earn_as_margin`)."""
    balances = _balances(info)
    loans = loan_tiers or {}
    not_reproduced: list[str] = []
    coins = []
    settle_equity = settle_borrowed = Decimal(0)
    for ccy, row in sorted(balances.items()):
        equity = dec(row.get("equity"), f"balances.{ccy}.equity")
        borrowed = dec(row.get("borrowed") or "0", f"balances.{ccy}.borrowed")
        if ccy == settle:
            settle_equity, settle_borrowed = equity, borrowed
            if _earn_as_margin(info, row, ccy) > 0:
                # Gate's liability counts "Spot Available" without the Simple Earn funds
                # that its equity holds: owed is max(borrowed, earn - equity), a line in the
                # positions' PnL that SettleTerms (max(borrowed, -equity)) does not model
                not_reproduced.append(
                    f"{ccy} Simple Earn funds as margin (Gate counts a {ccy} liability once "
                    "the spot balance without them and the futures PnL fall below zero)"
                )
            if (borrowed > 0 or equity < 0) and ccy not in loans:
                what = "borrowed" if borrowed > 0 else "a shortfall"
                not_reproduced.append(f"{ccy} {what} with no loan margin tiers")
            elif equity > 0 and ccy not in ratios:
                not_reproduced.append(f"{ccy} held with no discount tiers")
            continue
        owes, collateral = _owes_and_holds(row, equity, borrowed)
        if not owes and not collateral:
            continue  # not collateral: Gate counts it at nothing
        ratio, tiers = ratios.get(ccy), loans.get(ccy)
        price = index_prices.get(ccy) or Decimal(0)  # none listed: no price to value it at
        perpetual = f"USDT perpetual ({ccy}_{settle})"
        if collateral and (ratio is None or price <= 0):
            missing = "discount tiers" if ratio is None else perpetual
            not_reproduced.append(f"{ccy} held with no {missing} to value it")
            continue
        if owes and (tiers is None or price <= 0):
            missing = "loan margin tiers" if tiers is None else perpetual
            not_reproduced.append(f"a {ccy} liability with no {missing}")
            continue
        counted = ratio if collateral and ratio is not None else CollateralRatio.flat(Decimal(0))
        coin = usd_pool_coin(ccy, equity, price, Decimal(1), counted, settle, markets)
        owed = tiers if owes else None
        coins.append(dataclasses.replace(coin, liability_tiers=owed, borrowed=borrowed))
    if coins and settle not in loans:
        # the account outlives its USDT: at the liquidation price the USDT equity is below
        # zero, a liability whose borrowing maintenance margin alertd has no tiers for
        held = ", ".join(c.asset for c in coins)
        not_reproduced.append(
            f"{held} as collateral with no {settle} loan margin tiers (the account is "
            f"liquidated only once futures losses exceed its {settle}, whose shortfall is "
            "then a liability with a borrowing maintenance margin)"
        )
    mm = dec_or_none(info.get("total_maintenance_margin"))
    balance = dec_or_none(info.get("total_margin_balance"))
    reported = ReportedAccount(mm, balance, mm / balance if mm is not None and balance else None)
    terms = SettleTerms.of(loans.get(settle), settle_borrowed, ratios.get(settle))
    return UnifiedPool(settle_equity, tuple(coins), reported, tuple(not_reproduced), terms)


# unified pool reads per snapshot, each followed by a positions answer: the pool stands once
# that answer agrees with the one before the pool's read
CONSISTENT_READ_TRIES = 3
MAX_PRICE_ORDER_PAGES = 10  # of 100 price-triggered orders: a bound on one account's listing


def price_order_stops(raw: dict[str, Any], symbol: str) -> list[StopOrder]:
    """One open price-triggered order (``GET /futures/{settle}/price_orders``,
    "FuturesPriceTriggeredOrder") as stops. ``trigger.rule`` 1 fires when the price is at or
    above ``trigger.price``, 2 at or below. ``initial.size`` is signed contracts (negative
    sells, reducing a long); 0 closes the whole position. The position it closes is in
    ``order_type`` (``close-long-position``, ``plan-close-short-position`` ...) or
    ``initial.auto_size`` (``close_long``/``close_short``, dual mode); a single-mode close
    (``initial.close``, size 0) closes whichever side is held: one stop per side, each judged
    by its trigger's direction."""
    trigger = raw.get("trigger") or {}
    initial = raw.get("initial") or {}
    if not isinstance(trigger, dict) or not isinstance(initial, dict):
        raise FrameError("price order: trigger/initial not objects")
    rule = str(trigger.get("rule"))
    if rule not in ("1", "2"):
        raise FrameError(f"trigger.rule: not 1 or 2: {trigger.get('rule')!r}")
    price = dec_or_none(trigger.get("price"))
    if price is None:
        raise FrameError("trigger.price: missing or zero")
    size = dec(initial.get("size", 0), "initial.size")
    order_type = str(raw.get("order_type") or "")
    auto = str(initial.get("auto_size") or "")
    if "long" in order_type or auto == "close_long":
        sides = [Side.LONG]
    elif "short" in order_type or auto == "close_short":
        sides = [Side.SHORT]
    elif size != 0:
        sides = [Side.LONG if size < 0 else Side.SHORT]
    elif initial.get("close") in (True, "true") or initial.get("is_close"):
        sides = [Side.LONG, Side.SHORT]
    else:
        raise FrameError(f"price order {raw.get('id')}: size 0 and not a close")
    reduce = (
        bool(initial.get("reduce_only") or initial.get("is_reduce_only") or initial.get("close"))
        or "close" in order_type
    )
    return [
        StopOrder(
            symbol,
            side,
            StopKind.STOP,
            Trigger.RISE if rule == "1" else Trigger.FALL,
            price,
            None if size == 0 else abs(size),
            str(raw.get("id", "")),
            reduce,
        )
        for side in sides
    ]


T = TypeVar("T")


async def _read_tables(
    read: Callable[[], Awaitable[Any]], parse: Callable[[Any], dict[str, T]]
) -> dict[str, T]:
    """One unified-account tier answer (every currency's rows), parsed."""
    return parse(await read())


class GateAdapter(ComputedPoolReads, ExchangeAdapter):
    reported_account_mm_cross_only = True
    exchange_id = "gate"
    market_filter = MARKETS
    wallet_includes_isolated = True  # ``total`` still holds isolated positions' margin
    exchange_ratio = _NOT_COMPUTED

    def __init__(self) -> None:
        super().__init__()
        self.mode = AccountMode.UNKNOWN  # read at every snapshot: where the ratio comes from
        # a unified single- or multi-currency account's pool, read with the balance at every
        # snapshot (None in the other modes and until then); the cross positions' unrealized
        # PnL and the isolated positions' margin as the positions answer of the same snapshot
        # gives them
        self._pool: UnifiedPool | None = None
        self._cross_upl = Decimal(0)
        self._isolated_margin = Decimal(0)

    def _settle_id(self) -> str:
        return self.settle.lower()

    async def _futures_account(self, exchange: Any) -> dict[str, Any]:
        info = await exchange.privateFuturesGetSettleAccounts({"settle": self._settle_id()})
        if not isinstance(info, dict):
            raise FrameError("futures accounts: not an object")
        return info

    async def _unified_account(self, exchange: Any) -> dict[str, Any]:
        """ "Get unified account information" (GET /unified/accounts)."""
        info = await exchange.privateUnifiedGetAccounts()
        if not isinstance(info, dict):
            raise FrameError("unified accounts: not an object")
        return info

    async def _index_price(self, exchange: Any, symbol: str) -> Decimal:
        """The index price of a USDT perpetual ("List futures tickers", ``index_price``)."""
        rows = await exchange.publicFuturesGetSettleTickers(
            {"settle": self._settle_id(), "contract": exchange.market_id(symbol)}
        )
        return first_row_mark(rows, "index_price", "tickers", symbol)

    async def _multi_currency_pool(self, exchange: Any, info: dict[str, Any]) -> UnifiedPool:
        held = sorted(ccy for ccy, row in _balances(info).items() if _priced(ccy, row, self.settle))
        # public, slow-changing tables (every currency in one answer each): read once for
        # every account on the exchange
        ratios = await self.tables.get(
            ("gate", "currency_discount_tiers"),
            functools.partial(
                _read_tables, exchange.privateUnifiedGetCurrencyDiscountTiers, discount_ratios
            ),
        )
        loans = await self.tables.get(
            ("gate", "loan_margin_tiers"),
            functools.partial(
                _read_tables, exchange.privateUnifiedGetLoanMarginTiers, loan_margin_tiers
            ),
        )
        prices = {}
        for ccy in held:
            symbol = coin_price_symbol(ccy, self.settle, exchange.markets)
            if symbol is not None:
                prices[ccy] = await self._index_price(exchange, symbol)
        return multi_currency_pool(info, ratios, prices, self.settle, exchange.markets, loans)

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        reading = futures_mode(await self._futures_account(exchange))
        self.mode = reading.mode
        self._pool = None  # a unified pool is read with the balance (_consistent_pool)
        return reading

    async def _read_pool(self, exchange: Any) -> UnifiedPool:
        info = await self._unified_account(exchange)
        if self.mode is AccountMode.UNIFIED_SINGLE_CURRENCY:
            return single_currency_pool(info, self.settle)
        return await self._multi_currency_pool(exchange, info)

    async def _unified_ratio(self, exchange: Any) -> ReportedAccount:
        """Portfolio margin: the unified account's own figures ("Get unified account
        information")."""
        info = await self._unified_account(exchange)
        mm = dec_or_none(info.get("total_maintenance_margin"))
        balance = dec_or_none(info.get("total_margin_balance"))
        return ReportedAccount(mm, balance, mm / balance if mm is not None and balance else None)

    async def prepare(self, exchange: Any) -> None:
        """Set ``exchange.uid``, which ccxt needs to subscribe to Gate's private channels."""
        configured = (exchange.options or {}).get("uid")
        if configured not in (None, ""):
            exchange.uid = _user_id(configured, "options.uid")
            return
        if exchange.uid:
            return  # read by an earlier bootstrap attempt
        detail = await exchange.privateAccountGetDetail()
        found = detail.get("user_id") if isinstance(detail, dict) else None
        exchange.uid = _user_id(found, "GET /api/v4/account/detail: user_id")

    def _market(self, exchange: Any, contract: Any) -> dict[str, Any] | None:
        market: dict[str, Any] = exchange.safe_market(contract, None, "_", "swap")
        if not self.market_filter.same_pool(market.get("settle")):
            return None
        return market

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        out = {}
        for symbol in symbols:
            market = exchange.market(symbol)
            rows = await exchange.publicFuturesGetSettleRiskLimitTiers(
                {"settle": self._settle_id(), "contract": market["id"]}
            )
            if rows:
                out[symbol] = risk_limit_tiers_to_table(list(rows))
        return out

    def _position(self, exchange: Any, raw: dict[str, Any]) -> list[PositionState]:
        """One raw position as alertd states; a one-way close closes both possible keys."""
        market = self._market(exchange, raw.get("contract"))
        if market is None:
            return []
        symbol = market["symbol"]
        size = dec(raw.get("size", "0"), "size")
        # "mode": single (one-way), dual_long or dual_short (Gate API v4, Position model)
        declared = _MODES.get(str(raw.get("mode") or "single"))
        side = side_of(declared, size)
        version = _life_sequence(raw)
        if side is None:
            return closed_both_sides(symbol, version)
        isolated = _isolated(raw)
        if isolated:
            leverage = dec_or_none(raw.get("lever")) or dec_or_none(raw.get("leverage"))
        else:
            leverage = dec_or_none(raw.get("lever")) or dec_or_none(raw.get("cross_leverage_limit"))
        state = signed_position(
            raw, symbol, side, size, entry="entry_price", isolated=isolated, leverage=leverage
        )
        state = dataclasses.replace(state, version=version, one_way=declared is None)
        return [with_adl(state, raw, "adl_ranking", ADL)]

    async def _position_rows(self, exchange: Any) -> Any:
        return await exchange.privateFuturesGetSettlePositions(
            {"settle": self._settle_id(), "holding": True}
        )

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        rows = await self._position_rows(exchange)
        snapshot: Snapshot = ([], {}, {})
        self._snapshot_into(
            rows or [],
            lambda raw: self._position(exchange, raw),
            ("liq_price", "maintenance_margin", "mark_price"),
            snapshot,
        )
        self._cross_upl, self._isolated_margin = self._equity_terms(exchange, rows)
        return snapshot

    def _equity_terms(self, exchange: Any, rows: Any) -> tuple[Decimal, Decimal]:
        """A unified account reports the settle currency's equity with the cross positions'
        PnL in it and the isolated positions' margin out of it: the wallet alertd holds is
        that equity less the one plus the other, as a positions answer gives them."""
        cross_upl = isolated_margin = Decimal(0)
        for raw in rows or []:
            if not isinstance(raw, dict) or self._market(exchange, raw.get("contract")) is None:
                continue
            if not dec(raw.get("size", "0"), "size"):
                continue
            if _isolated(raw):
                isolated_margin += dec(raw.get("margin") or "0", "margin")
            else:
                cross_upl += dec(raw.get("unrealised_pnl") or "0", "unrealised_pnl")
        return cross_upl, isolated_margin

    async def _consistent_pool(self, exchange: Any) -> UnifiedPool:
        """The unified pool, read between two positions answers that agree on the PnL (the
        snapshot's own, :meth:`fetch_positions`, and one after it): the equity Gate reports
        holds the PnL at the marks of the moment it was read, and a PnL taken at other marks
        (a move between the reads) would leave alertd's wallet off by the PnL's change until
        the next read (a 16% fall between two reads once made a warning resolve at once).
        Read again while they disagree, a few times: in a market that moves at every read
        the last pair stands."""
        pool, agreed = await self._pool_between_positions(exchange)
        for _ in range(CONSISTENT_READ_TRIES - 1):
            if agreed:
                break
            pool, agreed = await self._pool_between_positions(exchange)
        return pool

    async def _pool_between_positions(self, exchange: Any) -> tuple[UnifiedPool, bool]:
        """The pool, then the positions' terms; whether they are those read before the pool."""
        before = (self._cross_upl, self._isolated_margin)
        pool = await self._read_pool(exchange)
        rows = await self._position_rows(exchange)
        self._cross_upl, self._isolated_margin = self._equity_terms(exchange, rows)
        return pool, (self._cross_upl, self._isolated_margin) == before

    # the private "futures.autoorders" channel (ccxt: watch_orders with trigger)
    watches_stops = True
    watch_orders_params = {"trigger": True, "type": "swap"}  # noqa: RUF012 (read only)

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        return isinstance(raw.get("trigger"), dict) and isinstance(raw.get("initial"), dict)

    async def fetch_fee_rates(self, exchange: Any, symbols: list[str]) -> dict[str, Decimal]:
        """The account's taker rates from "Query user trading fee rates" (``GET
        /futures/usdt/fee``: a map of contract to ``taker_fee`` and ``maker_fee``, the VIP
        level considered; one contract asked by name): the rate Gate adds to the maintenance
        rate. The contracts' own ``taker_fee_rate`` is the base rate, not the account's
        (gateio/gateapi-python issue 135)."""
        wanted = {exchange.market(s)["id"]: s for s in symbols}
        request = {"settle": self._settle_id()}
        if len(wanted) == 1:
            request["contract"] = next(iter(wanted))
        rows = await exchange.privateFuturesGetSettleFee(request)
        if not isinstance(rows, dict):
            raise FrameError("futures fee: not an object")
        return taker_fee_rates(rows, "taker_fee", wanted)

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder]:
        out = []
        for page in range(MAX_PRICE_ORDER_PAGES):
            rows = await exchange.privateFuturesGetSettlePriceOrders(
                {"settle": self._settle_id(), "status": "open", "limit": 100, "offset": page * 100}
            )
            for raw in rows or []:
                market = self._market(exchange, (raw.get("initial") or {}).get("contract"))
                if market is not None:
                    out.extend(price_order_stops(raw, market["symbol"]))
            if len(rows or []) < 100:
                return out
        raise FrameError(f"price_orders: more than {MAX_PRICE_ORDER_PAGES} pages of open orders")

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        if self.mode in _COMPUTED_POOLS:
            self._pool = await self._consistent_pool(exchange)
            wallet = self._pool.settle_equity - self._cross_upl + self._isolated_margin
            return wallet, self._pool.reported
        info = await self._futures_account(exchange)
        wallet = dec(info.get("total") or "0", "total")
        if self.mode is AccountMode.PORTFOLIO:
            return wallet, await self._unified_ratio(exchange)
        # The cross figures exist in the "new classic" margin mode; older accounts have only
        # the account-wide maintenance margin.
        mm = dec_or_none(info.get("cross_maintenance_margin")) or dec_or_none(
            info.get("maintenance_margin")
        )
        balance = dec_or_none(info.get("cross_margin_balance"))
        # Gate shows margin balance / maintenance margin; alertd's ratio is the reciprocal
        ratio = mm / balance if mm is not None and balance else None
        return wallet, ReportedAccount(mm, balance, ratio)

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        changed = await exchange.watch_positions()
        return self._changed_positions(changed, "size", lambda raw: self._position(exchange, raw))

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        balance = await exchange.watch_balance()
        entries = balance.get("info")
        if not isinstance(entries, list):
            return None
        for entry in reversed(entries):  # the last change of the push is the newest
            if not isinstance(entry, dict):
                continue
            if entry.get("currency", self.settle).upper() != self.settle:
                continue
            # futures.balances: "balance" is the balance after the change, i.e. ``total``
            value = entry.get("balance", entry.get("total"))
            if value is not None:
                return dec(value, "balance")
        return None

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        rows = await exchange.publicFuturesGetSettleTickers(
            {"settle": self._settle_id(), "contract": exchange.market_id(symbol)}
        )
        return first_row_mark(rows, "mark_price", "tickers", symbol)

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return ticker_mark(await exchange.watch_ticker(symbol), "mark_price")


SPEC = ExchangeSpec(
    profile=PROFILE,
    adapter=GateAdapter,
    capabilities=Capabilities(
        tier_source=TierSource.RISK_LIMITS,
        # "X-Gate-RateLimit-Reset-Timestamp - the timestamp indicating when your request limit
        # resets if you have exceeded your rate_limit" (Gate API v4 docs, "Rate limit"); Gate
        # sends no Retry-After
        rate_limit_reset_header="X-Gate-RateLimit-Reset-Timestamp",
        # "Public endpoints ... 200r/10s per endpoint ... IP" against the private ones' "UID"
        # (Gate API v4 docs, "Frequency limit rule")
        public_limit_window_s=10.0,
    ),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    ccxt_options={
        "defaultType": "swap",
        # ccxt's first watch_positions would fetch a positions snapshot of its own in a task
        # nobody awaits (an ExchangeClosedByUser traceback when the daemon stops during it);
        # the feed takes its own snapshots, so that one is pure cost
        "watchPositions": {"fetchPositionsSnapshot": False},
    },
)
