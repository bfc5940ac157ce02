"""OKX v5, USDT-margined perpetual swaps (``BTC-USDT-SWAP``).

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
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from alertd.engine.model import Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import Tier, TierBasis, TierTable
from alertd.exchanges.common import (
    AdlScale,
    closed_both_sides,
    first_row_mark,
    side_of,
    signed_position,
    ticker_mark,
    with_adl,
)
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import ExchangeAdapter, FrameError, Snapshot, dec, dec_or_none
from alertd.feeds.state import (
    AccountEvent,
    AccountMode,
    Coverage,
    ModeReading,
    PositionState,
    ReportedAccount,
)

log = logging.getLogger(__name__)

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

# The id OKX echoes in its answer to alertd's own subscription: an error answer then rejects
# only this subscription's future instead of every future on the private connection.
WARNING_SUBSCRIPTION = "alertdliqwarn"


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


_NOT_COMPUTED = (
    "one USD pool over every currency at discounted values (adjEq), which alertd does not "
    "model yet: the margin ratio is OKX's own account mgnRatio, read at every reconcile; "
    "liquidation prices, crash distance and margin to add are not computed"
)


def account_mode(config: Any) -> ModeReading:
    """The account's mode from "Get account configuration" (/api/v5/account/config,
    ``acctLv``: 1 spot, 2 spot and futures (single-currency margin), 3 multi-currency margin,
    4 portfolio margin)."""
    rows = config.get("data") if isinstance(config, dict) else None
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    level = str(row.get("acctLv"))
    detail = f"acctLv {level}"
    if level == "2":
        return ModeReading(AccountMode.SINGLE_ASSET, detail)
    if level == "3":
        return ModeReading(AccountMode.MULTI_ASSETS, detail, Coverage.EXCHANGE_RATIO, _NOT_COMPUTED)
    if level == "4":
        return ModeReading(
            AccountMode.PORTFOLIO,
            detail,
            Coverage.EXCHANGE_RATIO,
            "portfolio margin requirements are scenario-based and not reproducible from public "
            "data; " + _NOT_COMPUTED.partition(": ")[2],
        )
    if level == "1":
        return ModeReading(
            AccountMode.SIMPLE,
            detail,
            Coverage.REFUSED,
            "okx: the account is in spot mode (acctLv 1), which holds no derivatives: nothing "
            "for alertd to watch; switch it to a margin mode on OKX, or remove it from the config",
        )
    raise FrameError(f"account/config: acctLv {level!r} is not an account mode")


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
    """Retrieve the outcome of the warning subscription's future (it only ever fails)."""
    if not future.cancelled() and future.exception() is not None:
        log.debug("okx liquidation-warning subscription ended: %s", future.exception())


class OKXAdapter(ExchangeAdapter):
    reported_mm_excludes_fee = True
    # the settle currency's ``mmr`` in the balance details is "Cross maintenance margin
    # requirement at the currency level" (OKX v5 docs, GET /api/v5/account/balance): isolated
    # positions are not in it
    reported_account_mm_cross_only = True
    exchange_id = "okx"
    market_filter = MARKETS
    # cashBal holds no isolated margin: a real single-currency answer with one isolated
    # position (cited in tests/fake_exchange/okx.py) reads eq = cashBal + isoEq
    wallet_includes_isolated = False

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        return account_mode(await exchange.privateGetAccountConfig())

    def _market(self, exchange: Any, inst_id: Any) -> dict[str, Any] | None:
        """The ccxt market of a swap position; None for other settle currencies."""
        market: dict[str, Any] = exchange.safe_market(inst_id, None, "-", "swap")
        if not self.market_filter.same_pool(market.get("settle")):
            return None  # coin-margined or USDC swaps belong to another pool
        return market

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        out = {}
        for symbol in symbols:
            market = exchange.market(symbol)
            family = (market.get("info") or {}).get("instFamily")
            if not family:
                raise FrameError(f"{symbol}: no instFamily in the market, cannot ask for tiers")
            # cross tiers: OKX publishes the same SWAP table for isolated positions
            response = await exchange.publicGetPublicPositionTiers(
                {"instType": "SWAP", "tdMode": "cross", "instFamily": family}
            )
            rows = response.get("data") or []
            if rows:
                out[symbol] = position_tiers_to_table(rows)
        return out

    def _position(self, exchange: Any, raw: dict[str, Any]) -> list[PositionState]:
        """The states one raw position gives: none for other products, both sides on a close."""
        if raw.get("instType") not in (None, "SWAP"):
            return []
        market = self._market(exchange, raw.get("instId"))
        if market is None:
            return []
        symbol = market["symbol"]
        pos = dec(raw.get("pos") or "0", "pos")
        side = side_of(_POS_SIDES.get(str(raw.get("posSide") or "net")), pos)
        if side is None:
            return closed_both_sides(symbol)
        isolated = raw.get("mgnMode") == "isolated"
        leverage = dec_or_none(raw.get("lever"))
        state = signed_position(
            raw, symbol, side, pos, entry="avgPx", isolated=isolated, leverage=leverage
        )
        return [with_adl(state, raw, "adl", ADL)]

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        response = await exchange.privateGetAccountPositions({"instType": "SWAP"})
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

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        return raw.get("ordType") in ("conditional", "oco", "trigger", "move_order_stop")

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder]:
        out = []
        for ord_type in ALGO_TYPES:
            after = None
            for _ in range(MAX_ALGO_PAGES):
                request = {"instType": "SWAP", "ordType": ord_type, "limit": "100"}
                if after:
                    request["after"] = after
                response = await exchange.privateGetTradeOrdersAlgoPending(request)
                rows = response.get("data") or []
                for raw in rows:
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

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        response = await exchange.privateGetAccountBalance({"ccy": self.settle})
        accounts = response.get("data") or []
        if not accounts:
            raise FrameError("account/balance: no account in the answer")
        account = accounts[0]
        detail = self._detail(account) or {}
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
            # Multi-currency or portfolio margin (acctLv 3, 4): one USD pool backed by every
            # currency; its ratio is the account's (see account_mode)
            ratio = dec_or_none(account.get("mgnRatio"))
            mm = dec_or_none(account.get("mmr"))
            balance = dec_or_none(account.get("adjEq"))
        # OKX's mgnRatio is equity / (MM + liquidation fee): alertd's ratio is its reciprocal
        return wallet, ReportedAccount(mm, balance, 1 / ratio if ratio else None)

    def _subscribe_warnings(self, exchange: Any) -> None:
        """Subscribe the private connection to ``liquidation-warning``, once per connection.

        ccxt neither subscribes to nor handles this channel. The subscription is kept in the
        connection's own bookkeeping, so a reconnect (a new connection) subscribes again.
        """
        url = exchange.get_url("liquidation-warning", "private")
        client = exchange.client(url)
        if WARNING_SUBSCRIPTION in client.subscriptions:
            return
        request = {
            "id": WARNING_SUBSCRIPTION,
            "op": "subscribe",
            "args": [{"channel": "liquidation-warning", "instType": "ANY"}],
        }
        future = exchange.watch(url, WARNING_SUBSCRIPTION, request, WARNING_SUBSCRIPTION)
        if isinstance(future, asyncio.Future):
            future.add_done_callback(_consume)

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
                return dec(detail.get("cashBal"), "cashBal")
        return None  # a push without the settle currency (OKX sends changed currencies only)

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        response = await exchange.publicGetPublicMarkPrice(
            {"instType": "SWAP", "instId": exchange.market_id(symbol)}
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
        tier_source=TierSource.POSITION_TIERS, margin_call_push=LIQUIDATION_WARNING
    ),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET, Credential.PASSWORD),
    ccxt_options={"defaultType": "swap"},
)
