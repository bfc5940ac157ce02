"""OKX v5, USDT-margined perpetual swaps (``BTC-USDT-SWAP``) and expiry futures
(``BTC-USDT-261225``, instType FUTURES): one USDT cross pool.

Wire formats: okx.com/docs-v5/en: "Get positions" (/api/v5/account/positions), "Get balance"
(/api/v5/account/balance), "Get position tiers" (/api/v5/public/position-tiers), "Get mark
price" (/api/v5/public/mark-price), websocket channels ``positions``, ``account``,
``mark-price`` and ``liquidation-warning`` (private; ccxt has no handler for it, so alertd
subscribes itself and reads the frames through :meth:`OKXAdapter.event`).

Field notes, checked against real answers (ccxt's recorded responses, ts/src/test/static):

- A position's ``mmr`` is ``notional * tier mmr`` at the mark, without the liquidation fee;
  OKX's ``mgnRatio`` divides by ``mmr + notional * fee``. alertd's OKX profile adds that fee
  (0.05%), so alertd's maintenance margin is OKX's ``mmr`` plus ``notional * fee``.
- Isolated ``margin`` excludes unrealized PnL (equity = ``margin + upl``).
- ``cashBal`` excludes isolated margin: OKX's currency equity is cash balance + cross PnL +
  isolated margin + isolated PnL (help: "Single-currency margin mode"; a real answer with one
  isolated position reads cashBal 4920.0718, isoEq 60.3833, eq 4980.4551 = cashBal + isoEq).
- The currency's ``mmr`` (and ``mgnRatio``) in "Get balance" cover the cross positions only
  (docs: "Cross maintenance margin requirement at the currency level"; the same real answer,
  with only the isolated position open, reads ``mmr`` "0").
- Tiers are sized in contracts (``minSz``/``maxSz``) with no deduction: MM steps at each cap.

Multi-currency margin (``acctLv`` 3, help centre "Multi-currency margin mode: cross margin
trading"): one USD pool. Its adjusted equity is the sum over currencies of the equity's USD
value times the currency's discount rate, tiered by the amount held ("Get discount rate and
interest-free quota", ``GET /api/v5/public/discount-rate-interest-free-quota``: ``minAmt`` and
``maxAmt`` "the unit is the currency like BTC", ``""`` no cap; ``minDiscountRate`` past the
last tier). A recorded multi-currency answer (ccxt okx.json, fetchBalance "spot balance")
reads BTC eq 1.06126645222, eqUsd 125092.85636955927, disEq 122590.9992421681: eqUsd x 0.98,
the docs' first BTC tier (0 to 20 BTC). The same answer reads adjEq 152550.809, mmr 9.0731
and mgnRatio 15986.63, below adjEq / mmr (16813.4): the account's ``mmr`` leaves the
liquidation fee out of the ratio's denominator, as a currency's does in single-currency mode.
The help centre's account-level terms: a currency's cross equity is "Balance + Floating PnL
(cross) + Options value - Accrued interest", its liability "Abs{Min[0, Equity (cross)]}" plus
isolated liabilities (so accrued interest counts as owed); adjusted equity counts a negative
equity in full; the maintenance margin is the sum of position values times their tier rates,
where the position value includes "potential borrowing" (the liabilities). A liability's rate
is OKX's borrowing tier for the currency: "Get position tiers" with ``instType`` MARGIN,
``tdMode`` cross and ``ccy`` ("It will return borrowing amount for Multi-currency margin and
Portfolio margin when ccy takes effect": ``minSz``/``maxSz`` are then amounts borrowed in the
currency; a row as ccxt's okx.py fetch_market_leverage_tiers records it: maxSz "500", mmr
"0.03", imr "0.1"). Read as OKX's position tiers are (step tiers, no deduction): the whole
amount owed at the rate of the tier holding it, valued at the currency's USD price, so the
requirement moves with that price as the liability's value does. ``twap`` (the auto-repayment
risk level) and ``notionalLever`` are indicators, not inputs of the ratio.

The settle currency (USDT) is lent too once the positions' losses pass its equity, and a
positive equity counts at USDT's own discount rate, tiered by amount like any currency's: both
move with every position's PnL, not with one price, so they are not a collateral leg but the
pool's own (``Account.settle_terms``: USDT's borrowing tiers and discount tiers, read as
above); the engine solves liquidation prices, crash distance and margin to add with them.
What alertd still leaves to OKX's own mgnRatio (named in the account's mode): a held currency
without a USD value or discount tiers, and a liability without borrowing tiers
(:func:`multi_currency_pool`). Not documented by OKX, so not added: a
liquidation fee on repaying a liability (OKX's quick-margin help gives one, ``(1 + taker
fee)``, for its isolated margin positions; the multi-currency pages name none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from alertd.engine.tiers import Tier, TierBasis, TierTable, TierTableError
from alertd.exchanges.common import (
    AdlScale,
    ComputedPoolReads,
    closed_both_sides,
    first_row_mark,
    price_quotient,
    side_of,
    signed_position,
    ticker_mark,
    usd_pool_coin,
    with_adl,
)
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import (
    ExchangeAdapter,
    FrameError,
    Part,
    Snapshot,
    dec,
    dec_or_none,
    stamp_or_none,
)
from alertd.feeds.state import (
    AccountEvent,
    AccountMode,
    Coverage,
    ModeReading,
    PositionState,
    ReportedAccount,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PROFILE = ExchangeProfile(
    id="okx",
    name="OKX",
    deduction_tiers=False,
    tier_basis=TierBasis.CONTRACTS,
    # OKX adds the liquidation fee (the taker rate; 0.05% at the base fee level).
    default_fee_rate=Decimal("0.0005"),
    displayed_ratio=DisplayedRatio.EQUITY_OVER_REQUIREMENT,
    displayed_ratio_name="mgnRatio",
)
MARKETS = MarketFilter(settle="USDT")
# Get positions ``adl`` (also in the positions channel): "divided into 6 levels, from 0 to 5,
# the smaller the number, the weaker the adl intensity" (v5 API reference; older editions
# said 1 to 5: a 1 then reads as 0.2, one step above the bottom, never above its place)
ADL = AdlScale(lowest=0, highest=5)
LIQUIDATION_WARNING = "liquidation_warning"  # the event kind of a liquidation-warning push

# websocket error codes that refuse a login (OKX v5 "Error Code", websocket public and private)
LOGIN_ERRORS = frozenset({"60004", "60005", "60006", "60007", "60009", "60024"})

# The id OKX echoes in its answer to alertd's own subscription: an error answer then rejects
# only this subscription's future instead of every future on the private connection.
WARNING_SUBSCRIPTION = "alertdliqwarn"
# the id of alertd's own subscription to "algo-advance" (business connection)
ADVANCE_SUBSCRIPTION = "alertdalgoadvance"


def position_tiers_to_table(rows: list[dict[str, Any]]) -> TierTable:
    """OKX position tiers (``maxSz`` in contracts, ``mmr``, ``maxLever``): step tiers."""
    ordered = sorted(rows, key=lambda r: dec(r.get("maxSz"), "maxSz"))
    tiers = []
    for i, row in enumerate(ordered):
        cap = None if i == len(ordered) - 1 else dec(row["maxSz"], "maxSz")
        lev = dec_or_none(row.get("maxLever"))
        tiers.append(Tier(cap, dec(row.get("mmr"), "mmr"), Decimal(0), lev))
    return TierTable.build(tiers, TierBasis.CONTRACTS)


# OKX's ``posSide``: "net" (net mode: the sign of ``pos``), or a long/short mode side
_POS_SIDES = {"long": Side.LONG, "short": Side.SHORT}


# "Get fee rates": the taker rate's field by the contracts' settle coin (coin-margined: "taker")
FEE_FIELDS = {"USDT": "takerU", "USDC": "takerUSDC"}
# ``acctLv`` of the modes alertd computes: 2 single-currency margin, 3 multi-currency margin
COMPUTED_LEVELS = {"2": AccountMode.SINGLE_ASSET, "3": AccountMode.MULTI_ASSETS}
_NOT_COMPUTED = (
    "the margin ratio is OKX's own account mgnRatio, read at every reconcile and moved with the "
    "marks in between; liquidation prices, crash distance and margin to add are not computed"
)
# the derivative products of the USDT pool: perpetual swaps and expiry futures
INST_TYPES = ("SWAP", "FUTURES")
_INST_TYPE = {"swap": "SWAP", "future": "FUTURES"}  # ccxt market type -> OKX instType


def account_mode(config: Any) -> ModeReading:
    """The account's mode from "Get account configuration" (/api/v5/account/config,
    ``acctLv``: 1 spot, 2 spot and futures (single-currency margin), 3 multi-currency margin,
    4 portfolio margin). Multi-currency margin is computed by alertd (one USD pool over every
    currency at its discounted value, :func:`multi_currency_pool`) unless the balance shows
    a term alertd does not reproduce (:meth:`OKXAdapter.settled_mode` says which)."""
    rows = config.get("data") if isinstance(config, dict) else None
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    level = str(row.get("acctLv"))
    detail = f"acctLv {level}"
    if level in COMPUTED_LEVELS:
        return ModeReading(COMPUTED_LEVELS[level], detail)
    if level == "4":
        return ModeReading.portfolio_margin(detail, "OKX's own account mgnRatio")
    if level == "1":
        return ModeReading(
            AccountMode.SIMPLE,
            detail,
            Coverage.REFUSED,
            "okx: the account is in spot mode (acctLv 1), which holds no derivatives: nothing "
            "for alertd to watch; switch it to a margin mode on OKX, or remove it from the config",
        )
    raise FrameError(f"account/config: acctLv {level!r} is not an account mode")


def borrowing_tiers(rows: list[Any], ccy: str) -> TierTable | None:
    """A currency's borrowing maintenance rates, from "Get position tiers" (instType MARGIN,
    tdMode cross, ``ccy``): ``maxSz`` the amount borrowed in the currency, ``mmr`` the rate
    (step tiers, as OKX's position tiers). None when OKX lists none for the currency."""
    found = [r for r in rows if isinstance(r, dict)]
    if not found:
        return None
    try:
        return position_tiers_to_table(found)
    except TierTableError as exc:
        field = {"cap": "maxSz"}.get(exc.field, exc.field)
        raise FrameError(
            f"position-tiers MARGIN {ccy} tier {exc.index + 1} {field}: {exc.reason}"
        ) from None


def discount_ratio(row: dict[str, Any]) -> CollateralRatio:
    """A currency's tiered discount rate from one row of "Get discount rate and
    interest-free quota": ``details`` of ``minAmt``, ``maxAmt`` (in the currency, "" for no
    cap) and ``discountRate``; above the last capped tier, ``minDiscountRate``."""
    ccy = row.get("ccy")
    details = [d for d in row.get("details") or [] if isinstance(d, dict)]
    if not details:
        raise FrameError(f"discount-rate-interest-free-quota: no tiers for {ccy}")
    ordered = sorted(details, key=lambda d: dec(d.get("minAmt") or "0", f"{ccy} minAmt"))
    tiers = []
    for d in ordered:
        cap = d.get("maxAmt")
        tiers.append(
            RatioTier(
                dec(cap, f"{ccy} maxAmt") if cap not in (None, "") else None,
                dec(d.get("discountRate"), f"{ccy} discountRate"),
            )
        )
    if tiers[-1].cap is not None:
        floor = dec_or_none(row.get("minDiscountRate")) or Decimal(0)
        tiers.append(RatioTier(None, floor))
    try:
        return CollateralRatio.build(tiers, RatioBasis.AMOUNT)
    except TierTableError as exc:
        # the engine's field names alertd's own: OKX's words for them
        field = {"ratio": "discountRate", "cap": "maxAmt"}.get(exc.field, exc.field)
        raise FrameError(
            f"discount-rate-interest-free-quota {ccy} tier {exc.index + 1} {field}: {exc.reason}"
        ) from None


@dataclass(frozen=True, slots=True)
class CurrencyPool:
    """A multi-currency account's USD pool as alertd models it, in the settle currency:
    the settle currency's cross cash (its positions' PnL is added at their marks), the other
    currencies as collateral, OKX's own account figures, and what alertd cannot reproduce
    (empty when the pool is exact)."""

    wallet: Decimal
    coins: tuple[Collateral, ...]
    reported: ReportedAccount
    not_reproduced: tuple[str, ...]
    # the settle currency's borrowing tiers (lent when its equity falls below zero) and
    # discount tiers (its equity moves with the positions' PnL); None: neither
    settle_terms: SettleTerms | None = None


# "Get balance" (GET /api/v5/account/balance): the rows a pool's figures are read from
BALANCE = "account/balance"


def _cross_equity(detail: dict[str, Any], ccy: str) -> Decimal:
    """A currency's equity in the cross pool: its equity less its isolated positions'."""
    eq = dec(detail.get("eq") or "0", f"{ccy} eq")
    return eq - (dec_or_none(detail.get("isoEq")) or Decimal(0))


def multi_currency_pool(
    account: dict[str, Any],
    ratios: dict[str, CollateralRatio],
    settle: str,
    markets: dict[str, Any],
    borrowing: dict[str, TierTable] | None = None,
) -> CurrencyPool:
    """The USD pool of a multi-currency account (``acctLv`` 3) from one "Get balance"
    account (every currency's ``details``), the discount tiers of the currencies held and the
    ``borrowing`` tiers of the currencies owed.

    Each currency counts its cross equity (``eq - isoEq``) at its USD price (``eqUsd / eq``)
    times its tiered discount rate; the pool is kept in the settle currency (prices over the
    settle currency's USD price: the ratio is the same in either unit). The settle currency's
    equity moves with the positions' PnL, so the pool holds its cash (``eq - isoEq`` less the
    cross PnL) and its discount tiers (``settle_terms``: the engine discounts the equity at
    every price). A currency OKX does not take as
    collateral (``collateralEnabled`` false: ``disEq`` 0) counts nothing. A negative equity
    (accrued interest in it) is a liability: counted in full, with the borrowing maintenance
    margin of its tier (a collateral leg with ``liability_tiers``); the settle currency's
    borrowing tiers come back in ``settle_terms`` (it is owed below zero). Not reproduced: a
    held currency without a USD value or discount tiers, a liability without borrowing tiers
    (the settle
    currency's when it is owed now); those name themselves in ``not_reproduced`` (OKX's own
    ratio then stands in). Raises :class:`FrameError` naming a field that is not a number.
    """
    borrowing = borrowing or {}
    details = {d.get("ccy"): d for d in account.get("details") or [] if isinstance(d, dict)}
    not_reproduced: list[str] = []

    def usd_price(detail: dict[str, Any]) -> Decimal | None:
        # out of range (a hostile row's exponents) a FrameError naming the row's fields
        eq, usd = dec_or_none(detail.get("eq")), dec_or_none(detail.get("eqUsd"))
        if eq is None or usd is None:
            return None
        return price_quotient(usd, eq, f"{BALANCE}: the {detail.get('ccy')} eqUsd over its eq")

    def in_settle(value: Decimal | None, field: str) -> Decimal | None:
        what = f"{BALANCE}: {field} over the {settle} USD price"
        return price_quotient(value, settle_usd, what) if value is not None else None

    settle_row = details.get(settle) or {}
    # with no settle equity to price it, the pool is counted in USD: the ratio, liquidation
    # prices and crash distance are the same; amounts are then USD, not USDT (a 0.0x% peg)
    settle_usd = usd_price(settle_row) or Decimal(1)
    settle_eq = _cross_equity(settle_row, settle) if settle_row else Decimal(0)
    cross_upl = (dec_or_none(settle_row.get("upl")) or Decimal(0)) - (
        dec_or_none(settle_row.get("isoUpl")) or Decimal(0)
    )
    wallet = settle_eq - cross_upl
    if settle_eq < 0 and settle not in borrowing:
        not_reproduced.append(f"a {settle} liability with no borrowing tiers")
    elif settle_eq > 0 and settle not in ratios:
        not_reproduced.append(f"{settle} held with no discount tiers")
    coins = []
    for ccy, detail in details.items():
        if not isinstance(ccy, str) or ccy == settle:
            continue
        amount = _cross_equity(detail, ccy)
        if amount == 0:
            continue
        price = usd_price(detail)
        if amount < 0:
            # owed whether or not the currency is collateral: counted in full, with the
            # maintenance margin of its borrowing tier
            tiers = borrowing.get(ccy)
            if price is None or price <= 0 or tiers is None:
                missing = "a USD value (eqUsd)" if tiers is not None else "borrowing tiers"
                not_reproduced.append(f"a {ccy} liability with no {missing}")
                continue
            flat = CollateralRatio.flat(Decimal(1))
            coin = usd_pool_coin(
                ccy, amount, price, settle_usd, flat, settle, markets, BALANCE, "eqUsd"
            )
            coins.append(dataclasses.replace(coin, liability_tiers=tiers))
            continue
        if detail.get("collateralEnabled") is False:
            continue  # not collateral: OKX counts it at disEq 0
        ratio = ratios.get(ccy)
        if price is None or price <= 0 or ratio is None:
            # OKX values it by figures alertd did not get: its ratio stands in, naming why
            missing = "a USD value (eqUsd)" if ratio is not None else "discount tiers"
            not_reproduced.append(f"{ccy} held with no {missing}")
            continue
        coin = usd_pool_coin(
            ccy, amount, price, settle_usd, ratio, settle, markets, BALANCE, "eqUsd"
        )
        coins.append(coin)
    mgn_ratio = dec_or_none(account.get("mgnRatio"))
    adj_eq, mmr = dec_or_none(account.get("adjEq")), dec_or_none(account.get("mmr"))
    reported = ReportedAccount(
        in_settle(mmr, "mmr"),
        in_settle(adj_eq, "adjEq"),
        # OKX's mgnRatio is adjEq / (mmr + liquidation fee): alertd's ratio is its reciprocal
        1 / mgn_ratio if mgn_ratio else None,
    )
    lent, discount = borrowing.get(settle), ratios.get(settle)
    terms = SettleTerms.of(lent, Decimal(0), discount)
    return CurrencyPool(wallet, tuple(coins), reported, tuple(not_reproduced), terms)


async def _discount_tiers(exchange: Any, ccy: str) -> CollateralRatio | None:
    """``ccy``'s discount tiers ("Get discount rate and interest-free quota"); None: none."""
    answer = await exchange.publicGetPublicDiscountRateInterestFreeQuota({"ccy": ccy})
    for row in answer.get("data") or []:
        if isinstance(row, dict) and row.get("ccy") == ccy:
            return discount_ratio(row)
    return None


async def _borrowing_tiers(exchange: Any, ccy: str) -> TierTable | None:
    """``ccy``'s borrowing tiers in multi-currency margin ("Get position tiers", instType
    MARGIN, tdMode cross, ``ccy``); None: none listed."""
    answer = await exchange.publicGetPublicPositionTiers(
        {"instType": "MARGIN", "tdMode": "cross", "ccy": ccy}
    )
    return borrowing_tiers(answer.get("data") or [], ccy)


# "Get algo order list" (GET /api/v5/trade/orders-algo-pending) takes one ordType a request,
# but for conditional and oco together: stop-loss/take-profit, plain triggers, trailing stops
ALGO_TYPES = ("conditional,oco", "trigger", "move_order_stop")
MAX_ALGO_PAGES = 10  # of 100 orders per type: a bound on one account's listing


def algo_stops(raw: dict[str, Any], symbol: str) -> list[StopOrder]:
    """The stops of one pending algo order: a conditional order's stop-loss and/or
    take-profit (``slTriggerPx``, ``tpTriggerPx``; an oco has both), a trigger order
    (``triggerPx``: it fires when the price reaches it, from whichever side it stood), a
    trailing stop (``moveTriggerPx``, its current trigger, empty before activation).
    ``closeFraction`` 1 closes the whole position; otherwise ``sz`` contracts."""
    order_side = raw.get("side")
    if order_side not in ("buy", "sell"):
        raise FrameError(f"side: not buy or sell: {order_side!r}")
    pos_side = raw.get("posSide") or "net"
    # a sell reduces a long; hedge mode (long/short) names the position
    side = _POS_SIDES.get(str(pos_side)) or (Side.LONG if order_side == "sell" else Side.SHORT)
    whole = dec_or_none(raw.get("closeFraction")) == 1
    contracts = None if whole else dec(raw.get("sz") or "0", "sz")
    reduce_only = raw.get("reduceOnly") in (True, "true") or pos_side != "net" or whole
    adverse, favourable = (
        (Trigger.FALL, Trigger.RISE)
        if side is Side.LONG
        else (
            Trigger.RISE,
            Trigger.FALL,
        )
    )
    order_id = str(raw.get("algoId", ""))
    ord_type = raw.get("ordType")
    out = []

    def add(kind: StopKind, trigger: Trigger, price: Decimal | None) -> None:
        out.append(StopOrder(symbol, side, kind, trigger, price, contracts, order_id, reduce_only))

    if ord_type in ("conditional", "oco"):
        if (sl := dec_or_none(raw.get("slTriggerPx"))) is not None:
            add(StopKind.STOP, adverse, sl)
        if (tp := dec_or_none(raw.get("tpTriggerPx"))) is not None:
            add(StopKind.TAKE_PROFIT, favourable, tp)
        if not out:
            raise FrameError(f"algo order {order_id}: neither slTriggerPx nor tpTriggerPx")
    elif ord_type == "trigger":
        price = dec_or_none(raw.get("triggerPx"))
        if price is None:
            raise FrameError(f"algo order {order_id}: triggerPx missing")
        add(StopKind.STOP, Trigger.CROSS, price)
    elif ord_type == "move_order_stop":
        add(StopKind.TRAILING, adverse, dec_or_none(raw.get("moveTriggerPx")))
    return out


def _consume(future: Any) -> None:
    """Retrieve the outcome of a subscription's future alertd made itself (the liquidation
    warnings', the advance algo orders'; it only ever fails)."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("okx subscription ended: %s", future.exception())


def _subscribe_once(exchange: Any, url: str, subscription: str, channel: str) -> None:
    """Subscribe ``url``'s connection to ``channel`` (every instrument type) under alertd's
    own id ``subscription``, unless it is: ccxt neither subscribes to nor handles the channel.
    The subscription is kept in the connection's own bookkeeping, so a reconnect (a new
    connection) subscribes again."""
    if subscription in exchange.client(url).subscriptions:
        return
    request = {
        "id": subscription,
        "op": "subscribe",
        "args": [{"channel": channel, "instType": "ANY"}],
    }
    future = exchange.watch(url, subscription, request, subscription)
    if isinstance(future, asyncio.Future):
        future.add_done_callback(_consume)


class OKXAdapter(ComputedPoolReads, ExchangeAdapter):
    reported_mm_excludes_fee = True
    # the settle currency's ``mmr`` in the balance details is "Cross maintenance margin
    # requirement at the currency level" (OKX v5 docs, GET /api/v5/account/balance): isolated
    # positions are not in it
    reported_account_mm_cross_only = True
    exchange_id = "okx"
    market_filter = MARKETS
    exchange_ratio = _NOT_COMPUTED
    # cashBal holds no isolated margin: a real single-currency answer with one isolated
    # position (cited in tests/fake_exchange/okx.py) reads eq = cashBal + isoEq
    wallet_includes_isolated = False
    # the balance (``mmr``, ``mgnRatio``, the wallet), read with the mode (:meth:`fetch_mode`),
    # before the positions
    read_first = Part.WALLETS

    @staticmethod
    def refused_login(message: Any) -> str | None:
        """OKX refuses a websocket login with an error frame of no ``id``: ``{"event":
        "error", "code": "60006", "msg": "Timestamp request expired"}`` among others (OKX v5
        "Error Code" list, websocket: 60004 invalid timestamp, 60005 invalid apiKey, 60006
        timestamp expired, 60007 invalid sign, 60009 login failed, 60024 wrong passphrase;
        60006 when it arrives more than 30 s after ccxt signed it: 9 of 1,000 accounts at a
        start at load 10-13, benchmarks.md calm14). ccxt 4.5's ``handle_error_message``
        rejects the connection's pending futures but keeps its ``authenticated``
        subscription, so the retried watches on the still open connection never log in again
        and wait for ever (the reconciles keep such an account fresh: it stayed blind,
        feed-down firing). Dropping it makes the next watch log in afresh."""
        if (
            isinstance(message, dict)
            and message.get("event") == "error"
            and str(message.get("code")) in LOGIN_ERRORS
        ):
            return "authenticated"
        return None

    @staticmethod
    def accepted_login(message: Any) -> bool:
        """OKX accepts a websocket login with ``{"event": "login", "code": "0", "msg": "",
        "connId": ...}`` (OKX v5 "Websocket: Login")."""
        return (
            isinstance(message, dict)
            and message.get("event") == "login"
            and str(message.get("code")) == "0"
        )

    def __init__(self) -> None:
        super().__init__()
        # a multi-currency account's pool, read with its mode at every snapshot (None in
        # the other modes): fetch_balance and fetch_collateral give its parts
        self._pool: CurrencyPool | None = None
        # the settle currency's wallet time as the last snapshot read it (wallet_times)
        self._wallet_times: dict[str, int] = {}
        # the mode of the last account configuration read, kept until a net snapshot or a
        # balance answer of another mode (:meth:`fetch_mode`); None: read it at the next
        self._mode_read: ModeReading | None = None
        # the balance answer fetch_mode read with the mode (single-currency margin and
        # portfolio margin), for fetch_balance; None: fetch_balance reads it
        self._balance: dict[str, Any] | None = None
        # the account's "uTime" in the balance answer fetch_mode read, before the positions
        # (first_answer_ms); None: not read this snapshot, or not given
        self._balance_ms: int | None = None

    def snapshot_begins(self, net: bool) -> None:
        # read at every snapshot, net or not: a switch between multi-currency and portfolio
        # margin, which the balance answer does not tell apart, would otherwise be computed
        # as the mode before (alertd's own figures for a mode it does not compute) until the
        # next net one: issue 11 asks every reconcile to read the mode
        self._mode_read = None
        self._balance_ms = None

    def first_answer_ms(self) -> int | None:
        """The balance answer's own time, read with the mode before the positions: its
        account-level ``uTime``, "The latest time to get account information" (www.okx.com/
        docs-v5/en/#trading-account-websocket-account-channel; the same field of "Get
        balance", GET /api/v5/account/balance, reads "Update time of account information",
        and the docs' example answers carry it after every currency's own ``uTime``, the
        time that currency's balance last changed): the time OKX took the answer, not the
        time something changed. Each position row carries "uTime", the "Latest time
        position was adjusted", on the same clock, REST and push alike: a push whose rows
        were all adjusted before the balance answer was taken is held by it and by the
        positions answer read after it. A read of the balance after the positions (the
        fallback in fetch_balance) gives none: it would be later than the positions."""
        return self._balance_ms

    async def _read_mode(self, exchange: Any) -> ModeReading:
        mode = account_mode(await exchange.privateGetAccountConfig())
        # spot mode is refused: read again at every snapshot, never kept
        self._mode_read = None if mode.coverage is Coverage.REFUSED else mode
        return mode

    async def _read_balance(self, exchange: Any, params: dict[str, str]) -> dict[str, Any]:
        """The account of one "Get balance" answer (GET /api/v5/account/balance)."""
        response = await exchange.privateGetAccountBalance(params)
        accounts = response.get("data") or []
        if not accounts or not isinstance(accounts[0], dict):
            raise FrameError("account/balance: no account in the answer")
        account: dict[str, Any] = accounts[0]
        return account

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        """The account's mode (:func:`account_mode`) and its balance answer, read together.

        "Get account configuration" is read at every snapshot (:meth:`snapshot_begins`);
        the balance answer read after it is checked against it: the account's ``adjEq`` is
        "Applicable to Spot mode/Multi-currency margin/Portfolio margin" (www.okx.com/
        docs-v5/en/#trading-account-rest-api-get-balance; "" in single-currency margin,
        where the currency's own ``mgnRatio`` and ``mmr`` are filled instead), so a switch
        made between the two reads is read again at once."""
        self._pool = self._balance = None
        mode = self._mode_read
        read_now = mode is None
        if mode is None:
            mode = await self._read_mode(exchange)
        account, asked = None, None
        while True:
            if mode.coverage is Coverage.REFUSED:
                return mode
            pooled = mode.mode is not AccountMode.SINGLE_ASSET
            # a multi-currency account's pool is every currency's: the whole answer
            multi = mode.mode is AccountMode.MULTI_ASSETS
            params = {} if multi else {"ccy": self.settle}
            if account is None or params != asked:
                account, asked = await self._read_balance(exchange, params), params
                self._balance_ms = stamp_or_none(account.get("uTime"))
            if read_now or (account.get("adjEq") not in (None, "")) == pooled:
                break
            log.info(
                "okx: the balance answer is of another account mode than %s: reading the "
                "account configuration again",
                mode.detail,
            )
            mode, read_now = await self._read_mode(exchange), True
        if not multi:
            self._balance = account
            return mode
        # the pool decides whether alertd reproduces the account (settled_mode): read once,
        # with the mode; its wallet (cashBal) holds no PnL, so the positions read after it
        # cannot disagree with it as Gate's equity can
        held, owed = [], []
        for d in account.get("details") or []:
            if not isinstance(d, dict) or not isinstance(d.get("ccy"), str):
                continue
            amount = _cross_equity(d, d["ccy"])
            if amount < 0 and d["ccy"] != self.settle:
                owed.append(d["ccy"])
            elif amount > 0 and d.get("collateralEnabled") is not False:
                held.append(d["ccy"])
        # public, slow-changing tables: read once for every account on the exchange
        # the settle currency's always: its equity moves with the positions' PnL
        ratios = await self._tables(
            "discount", [*held, self.settle], functools.partial(_discount_tiers, exchange)
        )
        # the settle currency's too: lent as soon as the positions' losses pass its equity
        borrowing = await self._tables(
            "borrowing", [*owed, self.settle], functools.partial(_borrowing_tiers, exchange)
        )
        self._pool = multi_currency_pool(account, ratios, self.settle, exchange.markets, borrowing)
        return mode

    async def _tables(
        self, kind: str, currencies: list[str], read: Callable[[str], Awaitable[T | None]]
    ) -> dict[str, T]:
        """Each currency's public table of ``kind`` (shared by the exchange's accounts),
        leaving out those OKX lists none for."""
        out = {}
        for ccy in sorted(currencies):
            table = await self.tables.get(("okx", kind, ccy), functools.partial(read, ccy))
            if table is not None:
                out[ccy] = table
        return out

    def _market(self, exchange: Any, inst_id: Any) -> dict[str, Any] | None:
        """The ccxt market of a swap or future; None for other settle currencies."""
        market: dict[str, Any] = exchange.safe_market(inst_id, None, "-", "swap")
        if not self.market_filter.same_pool(market.get("settle")):
            return None  # coin-margined or USDC contracts belong to another pool
        return market

    @staticmethod
    def _inst_type(exchange: Any, symbol: str) -> str:
        return _INST_TYPE.get(str(exchange.market(symbol).get("type")), "SWAP")

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        """Each symbol's position tiers: "Get position tiers" (GET
        /api/v5/public/position-tiers) is public, the same table for every account, and
        OKX limits public endpoints per IP (www.okx.com/docs-v5/en/#overview-rate-limits;
        this one 10 requests in 2 s): read once per instrument family for every account
        of the exchange, again after each market refresh."""
        out = {}
        for symbol in symbols:
            market = exchange.market(symbol)
            family = (market.get("info") or {}).get("instFamily")
            if not family:
                raise FrameError(f"{symbol}: no instFamily in the market, cannot ask for tiers")
            inst_type = self._inst_type(exchange, symbol)

            async def read(inst_type: str = inst_type, family: str = family) -> TierTable | None:
                # cross tiers: OKX publishes the same table for isolated positions; expiry
                # futures have their own (instType FUTURES, the same instFamily)
                response = await exchange.publicGetPublicPositionTiers(
                    {"instType": inst_type, "tdMode": "cross", "instFamily": family}
                )
                rows = response.get("data") or []
                return position_tiers_to_table(rows) if rows else None

            key = ("okx", "position-tiers", inst_type, family)
            table = await self.tables.get(key, read, keep_empty=False)
            if table is not None:
                out[symbol] = table
        return out

    def _position(self, exchange: Any, raw: dict[str, Any]) -> list[PositionState]:
        """The states one raw position gives: none for other products, both sides on a close."""
        if raw.get("instType") not in (None, *INST_TYPES):
            return []  # spot margin and options are not in alertd's pool
        market = self._market(exchange, raw.get("instId"))
        if market is None:
            return []
        symbol = market["symbol"]
        pos = dec(raw.get("pos") or "0", "pos")
        # "posSide": long or short in long/short (hedge) mode, net in net mode, its "pos"
        # signed (www.okx.com/docs-v5/en/#trading-account-websocket-positions-channel)
        declared = _POS_SIDES.get(str(raw.get("posSide") or "net"))
        side = side_of(declared, pos)
        # "uTime", the "latest time position was adjusted" (ms), in the REST answer and the
        # positions channel alike (www.okx.com/docs-v5/en/#trading-account-rest-api-get-
        # positions, #trading-account-websocket-positions-channel); "pTime" is only the push's
        version = stamp_or_none(raw.get("uTime"))
        if side is None:
            return closed_both_sides(symbol, version)
        isolated = raw.get("mgnMode") == "isolated"
        leverage = dec_or_none(raw.get("lever"))
        state = signed_position(
            raw, symbol, side, pos, entry="avgPx", isolated=isolated, leverage=leverage
        )
        state = dataclasses.replace(state, version=version, one_way=declared is None)
        return [with_adl(state, raw, "adl", ADL)]

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        # every product in one answer (no instType): swaps and expiry futures are kept
        response = await exchange.privateGetAccountPositions({})
        snapshot: Snapshot = ([], {}, {})
        self._snapshot_into(
            response.get("data") or [],
            lambda raw: self._position(exchange, raw),
            ("liqPx", "mmr", "markPx"),
            snapshot,
        )
        return snapshot

    # the business connection's "orders-algo" channel (ccxt: watch_orders with trigger)
    watches_stops = True
    watch_orders_params = {"trigger": True}  # noqa: RUF012 (read only)

    def stream_connection(self, stream: str) -> str:
        # the algo orders come on the business connection (www.okx.com/docs-v5/en/
        # #order-book-trading-algo-trading-ws-algo-orders-channel: URL Path /ws/v5/business)
        return "business" if stream == "orders" else "private"

    def socket_connection(self, url: str) -> str:
        # the business connection's path is /ws/v5/business, the private one's /ws/v5/private
        # (www.okx.com/docs-v5/en/#overview-production-trading-services)
        return "business" if "/ws/v5/business" in url else "private"

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        return raw.get("ordType") in ("conditional", "oco", "trigger", "move_order_stop")

    async def watch_stop_changes(self, exchange: Any) -> bool:
        # a trailing stop (``move_order_stop``) is an advance algo order: pushed on the
        # business connection's "algo-advance" channel ("Retrieve advance algo orders
        # (including Iceberg order, TWAP order, Trailing order) ... pushed when triggered by
        # events such as placing/canceling order"), not on "orders-algo" ("trigger order, oco
        # order, conditional order"): www.okx.com/docs-v5/en/#order-book-trading-algo-trading-
        # ws-advance-algo-orders-channel. ccxt neither subscribes to nor handles it: alertd
        # subscribes, and reads its frames before ccxt drops them (:meth:`stops_pushed`)
        await exchange.authenticate({"access": "business"})
        self._subscribe_advance(exchange)
        return await super().watch_stop_changes(exchange)

    def _subscribe_advance(self, exchange: Any) -> None:
        """Subscribe the business connection to ``algo-advance``, once per connection."""
        url = exchange.get_url("orders-algo", "business")
        _subscribe_once(exchange, url, ADVANCE_SUBSCRIPTION, "algo-advance")

    def stops_pushed(self, message: Any) -> bool:
        # an "algo-advance" push of a trailing stop: placed, cancelled, triggered (its
        # trigger's moves are not said to be pushed: read at the next stop read)
        arg = message.get("arg") if isinstance(message, dict) else None
        if not isinstance(arg, dict) or arg.get("channel") != "algo-advance":
            return False
        rows = message.get("data")
        return isinstance(rows, list) and any(
            isinstance(row, dict) and self.is_stop_event(row) for row in rows
        )

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder]:
        out = []
        for ord_type in ALGO_TYPES:
            after = None
            for _ in range(MAX_ALGO_PAGES):
                # no instType: swaps' and expiry futures' orders together
                request = {"ordType": ord_type, "limit": "100"}
                if after:
                    request["after"] = after
                response = await exchange.privateGetTradeOrdersAlgoPending(request)
                rows = response.get("data") or []
                for raw in rows:
                    if raw.get("instType") not in (None, *INST_TYPES):
                        continue
                    market = self._market(exchange, raw.get("instId"))
                    if market is not None:
                        out.extend(algo_stops(raw, market["symbol"]))
                if len(rows) < 100:
                    break
                after = rows[-1].get("algoId")
            else:
                raise FrameError(f"orders-algo-pending: more than {MAX_ALGO_PAGES} pages")
        return out

    def _detail(self, account: dict[str, Any]) -> dict[str, Any] | None:
        for detail in account.get("details") or []:
            if detail.get("ccy") == self.settle:
                return dict(detail)
        return None

    def wallet_times(self) -> dict[str, int]:
        return dict(self._wallet_times)

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        self._wallet_times = {}
        if self._pool is not None:  # multi-currency: read with the mode
            return self._pool.wallet, self._pool.reported
        account, self._balance = self._balance, None  # read with the mode, where it was
        if account is None:
            account = await self._read_balance(exchange, {"ccy": self.settle})
        detail = self._detail(account) or {}
        # the currency's "uTime", "update time of currency balance information" (ms), in the
        # REST answer and the account channel alike (www.okx.com/docs-v5/en/#trading-account-
        # rest-api-get-balance, #trading-account-websocket-account-channel)
        at = stamp_or_none(detail.get("uTime"))
        self._wallet_times = {} if at is None else {self.settle: at}
        wallet = dec(detail.get("cashBal") or "0", "cashBal")
        ratio = dec_or_none(detail.get("mgnRatio"))
        mm = dec_or_none(detail.get("mmr"))
        if ratio is not None or mm is not None:
            # Spot-and-futures (single-currency) mode: the USDT cross pool, in USDT. Its
            # cross equity is the currency's equity without the isolated positions'.
            eq = dec_or_none(detail.get("eq"))
            iso = dec_or_none(detail.get("isoEq")) or Decimal(0)
            balance = eq - iso if eq is not None else None
        else:
            # portfolio margin (acctLv 4): one USD pool backed by every currency; its ratio
            # is the account's (see account_mode)
            ratio = dec_or_none(account.get("mgnRatio"))
            mm = dec_or_none(account.get("mmr"))
            balance = dec_or_none(account.get("adjEq"))
            # adjEq and mmr are "in USD" (www.okx.com/docs-v5/en/#trading-account-rest-api-
            # get-balance: adjEq "Adjusted / Effective equity in USD"); the single-currency figures
            # above are the currency's own
            return wallet, ReportedAccount(mm, balance, 1 / ratio if ratio else None, unit="USD")
        # OKX's mgnRatio is equity / (MM + liquidation fee): alertd's ratio is its reciprocal
        return wallet, ReportedAccount(mm, balance, 1 / ratio if ratio else None)

    def _subscribe_warnings(self, exchange: Any) -> None:
        """Subscribe the private connection to ``liquidation-warning``, once per connection."""
        url = exchange.get_url("liquidation-warning", "private")
        _subscribe_once(exchange, url, WARNING_SUBSCRIPTION, "liquidation-warning")

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        await exchange.authenticate()
        self._subscribe_warnings(exchange)
        changed = await exchange.watch_positions()
        return self._changed_positions(changed, "pos", lambda raw: self._position(exchange, raw))

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        balance = await exchange.watch_balance()
        message = balance.get("info")
        accounts = (message.get("data") if isinstance(message, dict) else None) or []
        for account in accounts:
            detail = self._detail(account)
            if detail is not None and detail.get("cashBal") not in (None, ""):
                self.balance_pushed_ms = stamp_or_none(detail.get("uTime"))  # as fetch_balance's
                return dec(detail.get("cashBal"), "cashBal")
        return None  # a push without the settle currency (OKX sends changed currencies only)

    async def fetch_fee_rates(self, exchange: Any, symbols: list[str]) -> dict[str, Decimal]:
        """The account's taker rates, the liquidation fee OKX adds to the maintenance margin
        (its fee level considered), from "Get fee rates" (``GET /api/v5/account/trade-fee``,
        one request per product held: SWAP, FUTURES). OKX signs a rate charged negative;
        ``takerU`` is USDT-margined contracts' rate, ``takerUSDC`` USDC-margined ones',
        ``taker`` coin-margined ones'. A field left empty keeps the profile's base rate."""
        by_product: dict[str, list[str]] = {}
        for symbol in symbols:
            by_product.setdefault(self._inst_type(exchange, symbol), []).append(symbol)
        out = {}
        for product, held in sorted(by_product.items()):
            response = await exchange.privateGetAccountTradeFee({"instType": product})
            rows = response.get("data") if isinstance(response, dict) else None
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
                raise FrameError(f"trade-fee {product}: no rates in the answer")
            row = rows[0]
            for symbol in held:
                settle = exchange.market(symbol).get("settle")
                name = FEE_FIELDS.get(settle, "taker")
                if row.get(name) in (None, ""):
                    continue
                rate = -dec(row[name], f"trade-fee {name}")
                if rate < 0:
                    raise FrameError(f"trade-fee {name}: a taker rebate ({row[name]}) is no rate")
                out[symbol] = rate
        return out

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        response = await exchange.publicGetPublicMarkPrice(
            {"instType": self._inst_type(exchange, symbol), "instId": exchange.market_id(symbol)}
        )
        return first_row_mark(response.get("data") or [], "markPx", "mark-price", symbol)

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return ticker_mark(await exchange.watch_mark_price(symbol), "markPx")

    async def unwatch_mark(self, exchange: Any, symbol: str) -> None:
        # ccxt okx has no un_watch_mark_price, and its un_watch_tickers only settles
        # 'tickers' unsubscriptions: a mark-price one would wait for ever. The subscription
        # stays; its frames are ignored and it ends with the connection.
        return None

    def event(self, message: Any, now: float) -> AccountEvent | None:
        if not isinstance(message, dict) or "event" in message:
            return None  # subscription answers and errors carry "event"
        arg = message.get("arg")
        if not isinstance(arg, dict) or arg.get("channel") != "liquidation-warning":
            return None
        legs = []
        for p in message.get("data") or []:
            if not isinstance(p, dict):
                continue
            ratio = dec_or_none(p.get("mgnRatio"))
            shown = f"mgnRatio {p.get('mgnRatio')}"
            if ratio is not None:
                shown += f" (alertd ratio {1 / ratio:.4f})"
            legs.append(
                f"{p.get('instId')} {p.get('posSide')} {p.get('pos')} {p.get('mgnMode')} "
                f"mark {p.get('markPx')} {shown}"
            )
        return AccountEvent(LIQUIDATION_WARNING, now, "; ".join(legs) or "no positions named")


SPEC = ExchangeSpec(
    profile=PROFILE,
    adapter=OKXAdapter,
    capabilities=Capabilities(
        tier_source=TierSource.POSITION_TIERS,
        margin_call_push=LIQUIDATION_WARNING,
        # private limits per User ID (www.okx.com/docs-v5/en/#overview-rate-limits), none on
        # an IP's private requests; ccxt's okx paces one account's bootstrap over about 0.9 s
        # (account config, positions, balance, trade fee cost 4, 2, 2, 4 at 110 ms): the
        # slots held 1,000 accounts back, 143 s with 8, 59 s with 64 on a loaded machine
        # (docs/benchmarks.md, tenth pass)
        rest_concurrency=64,
        # "Connection limit: 3 requests per second (based on IP)"
        # (www.okx.com/docs-v5/en/#overview-websocket-connect); an account opens two (the
        # private connection, the business one for the algo orders)
        ws_openings_per_ip=(3, 1.0),
        # the public endpoints' limits are per IP ("Rate limit rule: IP", e.g. "Get position
        # tiers: 10 requests per 2 seconds"), the private ones' per User ID
        # (www.okx.com/docs-v5/en/#overview-rate-limits): most count over 2 s
        public_limit_window_s=2.0,
    ),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET, Credential.PASSWORD),
    ccxt_options={"defaultType": "swap"},
)
