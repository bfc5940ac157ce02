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
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alertd.engine.model import Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import TierTable
from alertd.errors import AccountRefused
from alertd.exchanges.common import (
    AdlScale,
    closed_both_sides,
    first_row_mark,
    risk_tiers,
    side_of,
    signed_position,
    taker_fee_rates,
    ticker_mark,
    with_adl,
)
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import ExchangeAdapter, FrameError, Snapshot, dec, dec_or_none
from alertd.feeds.state import AccountMode, Coverage, ModeReading, PositionState, ReportedAccount

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


def _user_id(value: Any, source: str) -> str:
    """Gate's numeric user id as the string ccxt wants; a missing one refuses the account."""
    text = "" if isinstance(value, bool) or value is None else str(value).strip()
    if not text.isdigit() or int(text) == 0:
        raise AccountRefused(
            f"gate: no user id ({source} is {value!r}): Gate's private streams subscribe with "
            "it; set options.uid to the account's numeric Gate UID"
        )
    return text


_UNIFIED_LIMITS = (
    "the futures account's balance is not the pool: Gate margins it in the unified account "
    "(GET /unified/accounts), over {what}, which alertd does not model yet; the margin ratio "
    "is Gate's own (maintenance margin / margin balance there), read at every reconcile; "
    "liquidation prices, crash distance and margin to add are not computed"
)
UNIFIED_MODES = {
    1: (AccountMode.MULTI_ASSETS, "every currency at discounted USD values"),
    2: (AccountMode.PORTFOLIO, "scenario-based portfolio requirements"),
    3: (AccountMode.UNIFIED_SINGLE_CURRENCY, "the currency's unified balance"),
}


def futures_mode(account: dict[str, Any]) -> ModeReading:
    """The account's mode from "Query futures account" (GET /futures/usdt/accounts).

    ``margin_mode``: 0 classic futures account (or the unified account's classic spot margin
    mode), 1 multi-currency, 2 portfolio, 3 single-currency margin. A classic account is
    alertd's model when Gate computes it the "new classic" way: tiered maintenance margin
    (``enable_tiered_mm``) and one cross pool (the ``cross_*`` fields, "applicable to new
    classic account margin mode"). Gate API v4 docs, FuturesAccount.
    """
    raw = account.get("margin_mode")
    name = account.get("margin_mode_name")
    code = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else None
    detail = "margin_mode " + (f"{code}" if code is not None else "not given")
    if name:
        detail += f" ({name})"
    if code in UNIFIED_MODES:
        mode, what = UNIFIED_MODES[code]
        return ModeReading(mode, detail, Coverage.EXCHANGE_RATIO, _UNIFIED_LIMITS.format(what=what))
    if code not in (0, None):
        raise FrameError(f"futures accounts: margin_mode {raw!r} is not a margin mode")
    if account.get("enable_tiered_mm") is False or "cross_maintenance_margin" not in account:
        return ModeReading(
            AccountMode.LEGACY,
            detail + ", old classic",
            Coverage.NOT_COMPUTED,
            "Gate's old classic futures account (no tiered maintenance margin or no cross "
            "margin pool) margins each position on its own in ways alertd does not model, and "
            "reports no account ratio; switch the account to the new classic mode on Gate",
        )
    return ModeReading(AccountMode.SINGLE_ASSET, detail)


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


class GateAdapter(ExchangeAdapter):
    reported_account_mm_cross_only = True
    exchange_id = "gate"
    market_filter = MARKETS
    wallet_includes_isolated = True  # ``total`` still holds isolated positions' margin

    def __init__(self) -> None:
        self.mode = AccountMode.UNKNOWN  # read at every snapshot: where the ratio comes from

    def _settle_id(self) -> str:
        return self.settle.lower()

    async def _futures_account(self, exchange: Any) -> dict[str, Any]:
        info = await exchange.privateFuturesGetSettleAccounts({"settle": self._settle_id()})
        if not isinstance(info, dict):
            raise FrameError("futures accounts: not an object")
        return info

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        reading = futures_mode(await self._futures_account(exchange))
        self.mode = reading.mode
        return reading

    async def _unified_ratio(self, exchange: Any) -> ReportedAccount:
        """The unified account's own figures ("Get unified account information"): the whole
        account's, or the settle currency's in single-currency mode."""
        info = await exchange.privateUnifiedGetAccounts()
        if not isinstance(info, dict):
            raise FrameError("unified accounts: not an object")
        if self.mode is AccountMode.UNIFIED_SINGLE_CURRENCY:
            coin = (info.get("balances") or {}).get(self.settle) or {}
            mm, balance = dec_or_none(coin.get("mm")), dec_or_none(coin.get("margin_balance"))
        else:
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
        side = side_of(_MODES.get(str(raw.get("mode") or "single")), size)
        if side is None:
            return closed_both_sides(symbol)
        isolated = _isolated(raw)
        if isolated:
            leverage = dec_or_none(raw.get("lever")) or dec_or_none(raw.get("leverage"))
        else:
            leverage = dec_or_none(raw.get("lever")) or dec_or_none(raw.get("cross_leverage_limit"))
        state = signed_position(
            raw, symbol, side, size, entry="entry_price", isolated=isolated, leverage=leverage
        )
        return [with_adl(state, raw, "adl_ranking", ADL)]

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        rows = await exchange.privateFuturesGetSettlePositions(
            {"settle": self._settle_id(), "holding": True}
        )
        snapshot: Snapshot = ([], {}, {})
        self._snapshot_into(
            rows or [],
            lambda raw: self._position(exchange, raw),
            ("liq_price", "maintenance_margin", "mark_price"),
            snapshot,
        )
        return snapshot

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
        info = await self._futures_account(exchange)
        wallet = dec(info.get("total") or "0", "total")
        if self.mode in (mode for mode, _ in UNIFIED_MODES.values()):
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
    capabilities=Capabilities(tier_source=TierSource.RISK_LIMITS),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    ccxt_options={"defaultType": "swap"},
)
