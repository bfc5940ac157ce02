"""Stop-loss coverage: the pure figures (engine/stops.py), each exchange's open-order payloads
as stops, the metrics read from the book and the stop rules' messages."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.book import Book
from alertd.engine.model import Side
from alertd.engine.reported import ExchangeRatioPosition, Exposure, exchange_ratio_position
from alertd.engine.stops import (
    StopKind,
    StopOrder,
    Trigger,
    beyond_liquidation,
    loss_at,
    price_for_loss,
    protection,
    protective,
    stop_coverage,
    stop_loss_price,
)
from alertd.exchanges.binance import usdm_stop
from alertd.exchanges.bybit import open_stop, position_stop
from alertd.exchanges.gate import price_order_stops
from alertd.exchanges.hyperliquid import trigger_stop
from alertd.exchanges.okx import algo_stops
from alertd.feeds.adapter import FrameError, checked_stops
from alertd.feeds.feed import AccountFeed
from alertd.rules.lifecycle import Kind, Notification, Resolution
from alertd.rules.messages import render
from alertd.rules.metrics import FeedStatus, observe, with_full_metrics
from alertd.rules.model import Condition, Context, Rule, Scope, Severity, Subject

from .fake_exchange.binance import ALGO_ORDER_EXAMPLE
from .support.snapshots import account, position, snapshot, tiers

BTC = "BTC/USDT:USDT"
LONG, SHORT = Side.LONG, Side.SHORT


def stop(
    price: str | None,
    contracts: str | None = None,
    side: Side = LONG,
    kind: StopKind = StopKind.STOP,
    trigger: Trigger | None = None,
    symbol: str = BTC,
) -> StopOrder:
    if trigger is None:
        trigger = Trigger.FALL if side is LONG else Trigger.RISE
    return StopOrder(
        symbol,
        side,
        kind,
        trigger,
        None if price is None else D(price),
        None if contracts is None else D(contracts),
    )


def what_it_does(order: StopOrder | None) -> tuple[Any, ...]:
    """A read stop's side, trigger direction, trigger price and size (None: the whole
    position)."""
    assert order is not None
    return (order.side, order.trigger, order.trigger_price, order.contracts)


# --- pure figures -------------------------------------------------------------------------


def test_protective_stops_are_adverse_reducing_orders_of_the_same_position() -> None:
    orders = [
        stop("60000", "0.5"),  # a long's stop: protects
        stop("70000", "0.5", kind=StopKind.TAKE_PROFIT, trigger=Trigger.RISE),  # take-profit
        stop("61000", "0.5", side=SHORT),  # reduces a short: not the long's
        stop("60000", "0.5", symbol="ETH/USDT:USDT"),  # another market
        stop("62000", "1", trigger=Trigger.RISE),  # a sell that fires on a rise: not a stop
        stop(None, "0.2", kind=StopKind.TRAILING),  # trailing: protects, no price
        stop("63000", "0"),  # closes nothing
    ]
    found = protective(orders, BTC, LONG, D(65000))
    assert found == [orders[0], orders[5]]
    assert stop_loss_price(found, LONG) == D(60000)
    assert stop_coverage(found, D(1)) == D("0.7")


def test_a_trigger_order_protects_when_an_adverse_move_reaches_it() -> None:
    """OKX trigger orders fire when the price reaches them from either side: below the mark
    that is a long's stop, above it a short's."""
    below = stop("60000", "1", trigger=Trigger.CROSS)
    above = stop("70000", "1", trigger=Trigger.CROSS)
    assert protective([below, above], BTC, LONG, D(65000)) == [below]
    short_below = dataclasses.replace(below, side=SHORT)
    short_above = dataclasses.replace(above, side=SHORT)
    assert protective([short_below, short_above], BTC, SHORT, D(65000)) == [short_above]


def test_closest_stop_is_a_longs_highest_and_a_shorts_lowest() -> None:
    longs = [stop("58000", "0.3"), stop("60000", "0.3"), stop("55000", "0.4")]
    assert stop_loss_price(longs, LONG) == D(60000)
    shorts = [stop("72000", "1", SHORT), stop("70000", "1", SHORT)]
    assert stop_loss_price(shorts, SHORT) == D(70000)
    assert stop_loss_price([], LONG) is None
    assert stop_loss_price([stop(None, "1", kind=StopKind.TRAILING)], LONG) is None


def test_coverage_adds_ladders_caps_at_one_and_close_position_is_all() -> None:
    assert stop_coverage([], D(2)) == 0
    assert stop_coverage([stop("60000", "0.5"), stop("59000", "0.5")], D(2)) == D("0.5")
    assert stop_coverage([stop("60000", "3")], D(2)) == 1
    assert stop_coverage([stop("60000", "0.1"), stop("59000")], D(2)) == 1  # close-position


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(D("0.001"), D(1000), places=3),
    st.lists(st.decimals(D("0.001"), D(1000), places=3), max_size=6),
)
def test_coverage_is_between_zero_and_one_and_grows_with_each_stop(size: D, sizes: list[D]) -> None:
    stops = [stop("60000", str(s)) for s in sizes]
    values = [stop_coverage(stops[:k], size) for k in range(len(stops) + 1)]
    assert all(0 <= v <= 1 for v in values)
    assert values == sorted(values)
    assert values[-1] == min(D(1), sum(sizes, D(0)) / size)


def test_beyond_liquidation_is_signed_by_what_comes_first() -> None:
    # a long liquidated at 58,000 with its stop at 57,000: 1,000 beyond, 1/65,000 of the mark
    assert beyond_liquidation(D(57000), D(58000), LONG, D(65000)) == D(1000) / D(65000)
    assert beyond_liquidation(D(60000), D(58000), LONG, D(65000)) < 0
    # a short liquidated at 72,000 with its stop at 73,000
    assert beyond_liquidation(D(73000), D(72000), SHORT, D(65000)) == D(1000) / D(65000)
    assert beyond_liquidation(D(70000), D(72000), SHORT, D(65000)) < 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([LONG, SHORT]),
    st.booleans(),
    st.decimals(D(1), D(100000), places=2),
    st.decimals(D("0.001"), D(100), places=3),
    st.decimals(D(0), D(5000), places=2),
)
def test_price_for_loss_inverts_loss_at(
    side: Side, inverse: bool, entry: D, qty: D, loss: D
) -> None:
    quantity = qty * 100 if inverse else qty  # inverse sizes are in quote units
    price = price_for_loss(loss, side, quantity, entry, inverse)
    if price is None or price <= 0:
        return  # no price loses that much (an inverse short, a long's loss above its value)
    assert abs(loss_at(price, side, quantity, entry, inverse) - loss) <= D("1e-18") * (1 + loss)


def test_loss_at_a_longs_stop_below_entry() -> None:
    assert loss_at(D(60000), LONG, D("0.5"), D(65000), False) == D(2500)
    assert loss_at(D(70000), SHORT, D("0.5"), D(65000), False) == D(2500)
    assert loss_at(D(66000), LONG, D("0.5"), D(65000), False) == D(-500)  # locks in profit


# --- exchange payloads ----------------------------------------------------------------------

# Binance USDⓈ-M "Current All Algo Open Orders": the docs' response example, a take-profit (the
# local Binance lists its orders in the same fields)
BINANCE_ALGO_TP = ALGO_ORDER_EXAMPLE
# "Current All Open Orders" (GET /fapi/v1/openOrders), the docs' response example
BINANCE_TRAILING = {
    "avgPrice": "0.00000",
    "clientOrderId": "abc",
    "cumQuote": "0",
    "executedQty": "0",
    "orderId": 1917641,
    "origQty": "0.40",
    "origType": "TRAILING_STOP_MARKET",
    "price": "0",
    "reduceOnly": False,
    "side": "BUY",
    "positionSide": "SHORT",
    "status": "NEW",
    "stopPrice": "9300",
    "closePosition": False,
    "symbol": "BTCUSDT",
    "time": 1579276756075,
    "timeInForce": "GTC",
    "type": "TRAILING_STOP_MARKET",
    "activatePrice": "9020",
    "priceRate": "0.3",
    "updateTime": 1579276756075,
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
    "priceMatch": "NONE",
    "selfTradePreventionMode": "NONE",
    "goodTillDate": 0,
}


def test_binance_algo_take_profit_and_close_position_stop() -> None:
    tp = usdm_stop(BINANCE_ALGO_TP, "BNB/USDT:USDT")
    assert tp is not None
    assert (tp.side, tp.kind, tp.trigger) == (LONG, StopKind.TAKE_PROFIT, Trigger.RISE)
    assert (tp.trigger_price, tp.contracts, tp.order_id) == (D(750), D("0.01"), "2148627")
    assert protective([tp], "BNB/USDT:USDT", LONG, D(700)) == []
    # the same order as a close-position stop-market: protects the whole long
    sl = usdm_stop(
        {
            **BINANCE_ALGO_TP,
            "orderType": "STOP_MARKET",
            "triggerPrice": "600",
            "closePosition": True,
        },
        "BNB/USDT:USDT",
    )
    assert sl is not None and sl.contracts is None and sl.trigger is Trigger.FALL
    assert stop_coverage(protective([sl], "BNB/USDT:USDT", LONG, D(700)), D(3)) == 1


def test_binance_trailing_stop_protects_the_short_without_a_price() -> None:
    trailing = usdm_stop(BINANCE_TRAILING, BTC)
    assert trailing is not None
    assert (trailing.side, trailing.kind, trailing.trigger) == (
        SHORT,
        StopKind.TRAILING,
        Trigger.RISE,
    )
    assert trailing.trigger_price is None and trailing.contracts == D("0.40")
    # a plain limit order is no stop
    assert usdm_stop({**BINANCE_TRAILING, "type": "LIMIT"}, BTC) is None
    # one-way mode: a STOP_MARKET sell reduces a long, less what already filled
    one_way = {
        **BINANCE_TRAILING,
        "type": "STOP_MARKET",
        "side": "SELL",
        "positionSide": "BOTH",
        "origQty": "1.0",
        "executedQty": "0.25",
        "reduceOnly": True,
    }
    sl = usdm_stop(one_way, BTC)
    assert sl is not None and (sl.side, sl.trigger_price, sl.contracts) == (
        LONG,
        D(9300),
        D("0.75"),
    )


# Bybit "Get Open & Closed Orders" (GET /v5/order/realtime), field names and enums from the v5
# docs (order/open-order; "Enum Definitions": stopOrderType, triggerDirection 1 rise / 2 fall).
# The first is the docs' response example: a limit order carrying TP/SL to attach, no stop yet.
BYBIT_LIMIT_WITH_TPSL = {
    "orderId": "fd4300ae-7847-404e-b947-b46980a4d140",
    "orderLinkId": "test-000005",
    "symbol": "ETHUSDT",
    "price": "1600.00",
    "qty": "0.10",
    "side": "Buy",
    "positionIdx": 1,
    "orderStatus": "New",
    "leavesQty": "0.10",
    "orderType": "Limit",
    "stopOrderType": "UNKNOWN",
    "triggerPrice": "0.00",
    "takeProfit": "2500.00",
    "stopLoss": "1500.00",
    "triggerDirection": 0,
    "reduceOnly": False,
    "closeOnTrigger": False,
}
BYBIT_POSITION_SL = {
    "orderId": "sl-1",
    "symbol": "BTCUSDT",
    "price": "0",
    "qty": "0",
    "side": "Sell",
    "positionIdx": 0,
    "orderStatus": "Untriggered",
    "leavesQty": "0",
    "orderType": "Market",
    "stopOrderType": "StopLoss",
    "triggerPrice": "60000.00",
    "triggerDirection": 2,
    "reduceOnly": True,
    "closeOnTrigger": True,
    "tpslMode": "Full",
}


def test_bybit_open_orders() -> None:
    assert open_stop(BYBIT_LIMIT_WITH_TPSL, "ETH/USDT:USDT") is None
    sl = open_stop(BYBIT_POSITION_SL, BTC)
    assert what_it_does(sl) == (LONG, Trigger.FALL, D(60000), None)
    partial = open_stop(
        {
            **BYBIT_POSITION_SL,
            "stopOrderType": "PartialStopLoss",
            "tpslMode": "Partial",
            "qty": "0.3",
            "leavesQty": "0.3",
            "side": "Buy",
            "positionIdx": 2,
            "triggerDirection": 1,
            "triggerPrice": "72000",
        },
        BTC,
    )
    assert partial is not None
    assert (partial.side, partial.trigger, partial.contracts) == (SHORT, Trigger.RISE, D("0.3"))
    # a triggered order is no longer waiting
    assert open_stop({**BYBIT_POSITION_SL, "orderStatus": "Triggered"}, BTC) is None
    with pytest.raises(FrameError, match="triggerPrice"):
        open_stop({**BYBIT_POSITION_SL, "triggerPrice": "0"}, BTC)


def test_bybit_position_stop_loss_field() -> None:
    # "Get Position Info": stopLoss "" or "0" when none is set
    assert position_stop({"stopLoss": ""}, BTC, LONG) is None
    assert position_stop({"stopLoss": "0"}, BTC, LONG) is None
    found = position_stop({"stopLoss": "71000.5"}, BTC, SHORT)
    assert found is not None and found.trigger is Trigger.RISE and found.contracts is None


# OKX "Get algo order list" (GET /api/v5/trade/orders-algo-pending), the docs' response
# example with its instrument changed to the swap (its other fields as OKX gives them)
OKX_CONDITIONAL = {
    "activePx": "",
    "actualPx": "",
    "actualSide": "buy",
    "actualSz": "0",
    "algoClOrdId": "",
    "algoId": "681096944655273984",
    "attachAlgoOrds": [],
    "cTime": "1708658165774",
    "callbackRatio": "",
    "callbackSpread": "",
    "ccy": "",
    "clOrdId": "",
    "closeFraction": "",
    "instId": "BTC-USDT-SWAP",
    "instType": "SWAP",
    "last": "51014.6",
    "lever": "",
    "moveTriggerPx": "",
    "ordId": "",
    "ordPx": "-1",
    "ordType": "conditional",
    "posSide": "net",
    "reduceOnly": "false",
    "side": "buy",
    "slOrdPx": "",
    "slTriggerPx": "",
    "slTriggerPxType": "",
    "state": "live",
    "sz": "10",
    "tdMode": "cross",
    "tpOrdPx": "-1",
    "tpTriggerPx": "52000",
    "tpTriggerPxType": "last",
    "triggerPx": "",
    "triggerPxType": "",
}


def test_okx_algo_orders() -> None:
    [tp] = algo_stops(OKX_CONDITIONAL, BTC)  # a buy take-profit: closes a short on a fall
    assert (tp.side, tp.kind, tp.trigger, tp.contracts) == (
        SHORT,
        StopKind.TAKE_PROFIT,
        Trigger.FALL,
        D(10),
    )
    oco = {
        **OKX_CONDITIONAL,
        "ordType": "oco",
        "side": "sell",
        "posSide": "long",
        "slTriggerPx": "48000",
        "closeFraction": "1",
        "sz": "",
    }
    sl, tp2 = algo_stops(oco, BTC)
    assert (sl.kind, sl.trigger, sl.trigger_price, sl.contracts) == (
        StopKind.STOP,
        Trigger.FALL,
        D(48000),
        None,
    )
    assert tp2.kind is StopKind.TAKE_PROFIT and tp2.trigger is Trigger.RISE
    [trigger] = algo_stops({**OKX_CONDITIONAL, "ordType": "trigger", "triggerPx": "50000"}, BTC)
    assert trigger.trigger is Trigger.CROSS
    [trailing] = algo_stops(
        {**OKX_CONDITIONAL, "ordType": "move_order_stop", "side": "sell", "moveTriggerPx": ""},
        BTC,
    )
    assert trailing.kind is StopKind.TRAILING and trailing.trigger_price is None
    with pytest.raises(FrameError, match="slTriggerPx"):
        algo_stops({**OKX_CONDITIONAL, "tpTriggerPx": ""}, BTC)


# Gate "List all auto orders" (GET /futures/{settle}/price_orders): the docs'
# FuturesPriceTriggeredOrder example (api v4)
GATE_PRICE_ORDER = {
    "initial": {"contract": "BTC_USDT", "size": 100, "price": "5.03"},
    "trigger": {
        "strategy_type": 0,
        "price_type": 0,
        "price": "3000",
        "rule": 1,
        "expiration": 86400,
    },
    "id": 1283293,
    "user": 1234,
    "create_time": 1514764800,
    "finish_time": 1514764900,
    "trade_id": 13566,
    "status": "open",
    "finish_as": "cancelled",
    "reason": "",
    "order_type": "close-long-order",
}


def test_gate_price_orders() -> None:
    [tp] = price_order_stops(GATE_PRICE_ORDER, BTC)  # closes a long at >= 3000: not a stop
    assert what_it_does(tp) == (LONG, Trigger.RISE, D(3000), D(100))
    assert protective([tp], BTC, LONG, D(2500)) == []
    full = {
        **GATE_PRICE_ORDER,
        "initial": {"contract": "BTC_USDT", "size": 0, "price": "0", "close": True},
        "trigger": {**GATE_PRICE_ORDER["trigger"], "rule": 2, "price": "2000"},  # type: ignore[dict-item]
        "order_type": "",
    }
    both = price_order_stops(full, BTC)  # single mode: closes whichever side is held
    assert [s.side for s in both] == [LONG, SHORT]
    assert protective(both, BTC, LONG, D(2500)) == [both[0]]  # falls: a long's stop
    assert protective(both, BTC, SHORT, D(2500)) == []  # for a short: a take-profit
    dual = {**full, "initial": {"contract": "BTC_USDT", "size": 0, "auto_size": "close_short"}}
    with pytest.raises(FrameError, match="rule"):
        price_order_stops({**dual, "trigger": {"price": "1"}}, BTC)


# Hyperliquid info "frontendOpenOrders": the docs' example (a limit order, no trigger), and a
# position TP/SL as Hyperliquid lists it (sz and origSz "0.0", triggerCondition in words)
HL_LIMIT = {
    "coin": "BTC",
    "isPositionTpsl": False,
    "isTrigger": False,
    "limitPx": "29792.0",
    "oid": 91490942,
    "orderType": "Limit",
    "origSz": "5.0",
    "reduceOnly": False,
    "side": "A",
    "sz": "5.0",
    "tif": None,
    "timestamp": 1681247412573,
    "triggerCondition": "N/A",
    "triggerPx": "0.0",
}
HL_POSITION_SL = {
    **HL_LIMIT,
    "isPositionTpsl": True,
    "isTrigger": True,
    "limitPx": "185.0",
    "orderType": "Stop Market",
    "origSz": "0.0",
    "sz": "0.0",
    "reduceOnly": True,
    "triggerCondition": "Price below 185",
    "triggerPx": "185.0",
    "children": [],
}


def test_hyperliquid_trigger_orders() -> None:
    assert trigger_stop(HL_LIMIT, "BTC/USDC:USDC") is None
    sl = trigger_stop(HL_POSITION_SL, "SOL/USDC:USDC")
    assert what_it_does(sl) == (LONG, Trigger.FALL, D(185), None)
    tp = trigger_stop({**HL_POSITION_SL, "orderType": "Take Profit Market", "side": "B"}, "X")
    assert tp is not None and (tp.side, tp.trigger) == (SHORT, Trigger.FALL)
    partial = trigger_stop({**HL_POSITION_SL, "isPositionTpsl": False, "sz": "2.5"}, "X")
    assert partial is not None and partial.contracts == D("2.5")


# --- metrics and messages -------------------------------------------------------------------

FEED = FeedStatus(stale_s=D(0), down_s=D(0), fatal=None)


def _account(stops: tuple[StopOrder, ...] | None) -> Any:
    # 1 BTC long at 65,000, 10,000 USDT: cross liquidation near 55,000
    btc = position(BTC, "long", "1", "65000", "65000", tiers([(None, "0.004", "0")]))
    return dataclasses.replace(account(snapshot("binanceusdm", "10000", [btc])), stops=stops)


def _observe(stops: tuple[StopOrder, ...] | None) -> dict[str, D | None]:
    book = Book()
    book.set_account("a", _account(stops))
    return dict(observe("a", "binanceusdm", book.live("a"), FEED)[1].metrics)


def test_stop_metrics_from_the_book() -> None:
    assert _observe(None)["stop_missing"] is None  # not read: no figure, never "no stop"
    none = _observe(())
    assert none["stop_missing"] == 1 and none["stop_coverage"] == 0
    assert none["stop_loss_price"] is None and none["stop_beyond_liquidation"] is None
    good = _observe((stop("60000", "0.5"), stop("61000", "0.25")))
    assert good["stop_missing"] == 0 and good["stop_coverage"] == D("0.75")
    assert good["stop_loss_price"] == D(61000)
    assert good["stop_loss"] == D(4000)
    assert good["stop_loss_share"] == D(4000) / D(10000)
    beyond = good["stop_beyond_liquidation"]
    assert beyond is not None and beyond < 0
    bad = _observe((stop("50000"),))
    figures = Book()
    figures.set_account("a", _account(()))
    liq = figures.live("a").liquidation_price(0)
    assert liq is not None
    assert bad["stop_beyond_liquidation"] == (liq - D(50000)) / D(65000)


def _message(metric: str, threshold: D, stops: tuple[StopOrder, ...]) -> tuple[str, str]:
    book = Book()
    book.set_account("a", _account(stops))
    live = book.live("a")
    values = observe("a", "binanceusdm", live, FEED)[1].metrics
    rule = Rule("r", Condition(metric, Scope.POSITION, above=threshold), Severity.WARNING)
    subject = Subject("a", "binanceusdm", BTC, "long")
    n = Notification(
        Kind.FIRING, rule, subject, 0.0, 0.0, values[metric], Context(live=live, index=0)
    )
    message = render(with_full_metrics([n])[0])
    return message.title, message.body


def test_messages_say_what_is_wrong_and_where_the_stop_goes() -> None:
    title, body = _message("stop_missing", D(0), ())
    assert "no stop-loss" in title and "set a reduce-only stop above liq" in body
    title, body = _message("stop_beyond_liquidation", D(0), (stop("50000"),))
    assert "stop 50,000" in title and "beyond liq" in title
    assert "can never trigger" in body and "move the stop above" in body
    title, body = _message("stop_loss", D(2000), (stop("60000"),))
    assert "loses 5,000" in title.replace(".00", "")
    assert "move the stop above 63,000" in body
    for text in (title, *body.splitlines()):
        assert len(text) <= 100, text  # a phone lock screen's lines


# --- accounts whose exchange's ratio stands in (issue 11: Binance portfolio margin) -------

PM_MARK, PM_LIQ = D(65000), D(58000)  # Binance's liquidationPrice of the long, as reported


def _reported(stops: tuple[StopOrder, ...] | None, mark: D = PM_MARK) -> ExchangeRatioPosition:
    """A 1 BTC long of a portfolio margin account, as the daemon builds it from Binance's
    positionRisk (alertd/feeds/state.py ``exchange_ratio_positions``)."""
    figures = exchange_ratio_position(Exposure(BTC, D(1), False), D(1), D(64000), mark, PM_LIQ)
    stop = protection(stops, BTC, LONG, D(1), mark, PM_LIQ)
    return dataclasses.replace(figures, stop=stop)


def _pm_feed(*positions: ExchangeRatioPosition, stands_in: bool = True) -> FeedStatus:
    return dataclasses.replace(
        FEED,
        exchange_name="Binance USDⓈ-M",
        mode="portfolio margin",
        mode_limits="one requirement over UM, CM and margin",
        exchange_ratio=D("0.13"),
        exchange_ratio_stands_in=stands_in,
        positions=positions,
    )


def _pm_observe(feed: FeedStatus) -> list[Any]:
    return observe("pm", "binanceusdm", None, feed)


def test_an_exchange_ratio_accounts_positions_are_observed_on_the_exchange_s_figures() -> None:
    [account_obs, pos] = _pm_observe(_pm_feed(_reported((stop("57000"),))))
    assert account_obs.subject == Subject("pm", "binanceusdm")
    assert pos.subject == Subject("pm", "binanceusdm", BTC, "long")
    values = pos.metrics
    # the stop 1,000 below Binance's liquidation price, as a fraction of the mark
    assert values["stop_beyond_liquidation"] == D(1000) / PM_MARK
    assert values["stop_missing"] == 0 and values["stop_coverage"] == 1
    assert values["stop_loss_price"] == D(57000)
    assert values["liquidation_distance"] == (PM_MARK - PM_LIQ) / PM_MARK
    # no figure of alertd's own: the metrics that need one are not observed at all (their
    # alerts stay as they are), never given a value from the exchange's
    assert "margin_ratio" not in values
    # a share of the exchange's own equity: none reported here, no value
    assert values["stop_loss_share"] is None
    # the loss at the stop is the size's and the entry's arithmetic, as its PnL is
    assert values["stop_loss"] == D(64000) - D(57000)
    assert pos.context.reported is not None and pos.context.live is None
    none = _pm_observe(_pm_feed(_reported(())))[1].metrics
    assert none["stop_missing"] == 1 and none["stop_beyond_liquidation"] is None
    unread = _pm_observe(_pm_feed(_reported(None)))[1].metrics
    assert unread["stop_missing"] is None  # orders not read: never "no stop"
    assert unread["liquidation_distance"] == (PM_MARK - PM_LIQ) / PM_MARK
    # the ratio does not stand in (not bootstrapped yet): the positions are not observed
    assert len(_pm_observe(_pm_feed(_reported(()), stands_in=False))) == 1
    # only what is asked for is read; an account with no position rule observes no position
    assert len(observe("pm", "binanceusdm", None, _pm_feed(_reported(())), ["worst_ratio"])) == 1


def test_a_stop_beyond_the_exchange_s_liquidation_price_fires_and_resolves_when_moved() -> None:
    from alertd.config import StopRules
    from alertd.daemon.evaluation import stop_rules
    from alertd.rules.lifecycle import AlertEngine

    rules = stop_rules(StopRules(missing=True, missing_for=0))
    engine = AlertEngine(rules)
    good = _pm_feed(_reported((stop("59000"),)))
    assert engine.evaluate(_pm_observe(good), 0.0) == []
    beyond = _pm_feed(_reported((stop("57000"),)))
    [fired] = engine.evaluate(_pm_observe(beyond), 10.0)
    assert (fired.kind, fired.rule.name) == (Kind.FIRING, "stop-beyond-liquidation")
    message = render(fired)
    assert message.title == (
        "WARNING pm BTC/USDT:USDT long: stop 57,000.00 is beyond liq 58,000.00 (exchange's)"
    )
    lines = message.body.splitlines()
    assert lines[0] == "liquidation comes 1,000.00 (1.5%) before the stop: it can never trigger"
    assert "liq 58,000.00 (exchange's)" in lines[1]
    assert lines[2].startswith("the liquidation price is Binance USDⓈ-M's own"), lines
    assert lines[-1] == "→ move the stop above 58,000.00"
    for text in (message.title, *lines[:2], lines[-1]):
        assert len(text) <= 100, text
    assert engine.evaluate(_pm_observe(beyond), 20.0) == []  # still beyond: no repeat yet
    [resolved] = engine.evaluate(_pm_observe(good), 30.0)
    assert (resolved.kind, resolved.rule.name) == (Kind.RESOLVED, "stop-beyond-liquidation")
    done = render(resolved)
    assert done.title.endswith("long: stop now fires before liquidation")
    assert done.body == "stop 59,000.00, liq 58,000.00 (exchange's) (stop-beyond-liquidation)"
    [missing] = engine.evaluate(_pm_observe(_pm_feed(_reported(()))), 40.0)
    assert missing.rule.name == "stop-missing"
    assert "set a reduce-only stop above liq 58,000.00 (exchange's)" in render(missing).body
    assert set(engine.alerted_metrics("pm")) == {"pm/BTC/USDT:USDT/long"}
    [closed] = engine.evaluate(_pm_observe(_pm_feed()), 50.0)  # Binance lists no position
    assert (closed.kind, closed.reason) == (Kind.RESOLVED, Resolution.GONE)


def test_a_stop_losing_more_than_the_maximum_fires_on_an_exchange_ratio_account() -> None:
    from alertd.config import StopRules
    from alertd.daemon.evaluation import stop_rules
    from alertd.rules.lifecycle import AlertEngine

    engine = AlertEngine(stop_rules(StopRules(beyond_liquidation=False, max_loss=D(5000))))
    assert engine.evaluate(_pm_observe(_pm_feed(_reported((stop("59500"),)))), 0.0) == []
    [fired] = engine.evaluate(_pm_observe(_pm_feed(_reported((stop("58500"),)))), 10.0)
    assert (fired.rule.name, fired.value) == ("stop-max-loss", D(5500))
    message = render(fired)
    assert message.title.endswith("long: stop 58,500.00 loses 5,500.00 USDT"), message.title
    # the stop that keeps the loss to 5,000 from the 64,000 entry
    assert message.body.splitlines()[-1] == "→ move the stop above 59,000.00", message.body
    # a position Binance lists as read (a COIN-M one): no size of alertd's, no loss figure
    listed = dataclasses.replace(_reported((stop("50000"),)), quantity=None, as_read=True)
    assert _pm_observe(_pm_feed(listed))[1].metrics["stop_loss"] is None


def test_a_stop_losing_more_than_a_share_of_the_exchange_s_equity_fires_and_resolves() -> None:
    """``stop-max-loss-share`` on an exchange-ratio account: the loss at the stop over the
    exchange's own equity of the account (Binance's uniMMR x accountMaintMargin, moved with
    the marks: ``AccountState.exchange_equity``), the message naming it as the exchange's."""
    from alertd.config import StopRules
    from alertd.daemon.evaluation import stop_rules
    from alertd.rules.lifecycle import AlertEngine

    rules = stop_rules(StopRules(beyond_liquidation=False, max_loss_share=D("0.05")))
    engine = AlertEngine(rules)

    def at(price: str) -> list[Any]:
        position = dataclasses.replace(
            _reported((stop(price),)), equity=D(100000), equity_unit="USD"
        )
        return _pm_observe(_pm_feed(position))

    assert engine.evaluate(at("59500"), 0.0) == []  # 4,500: 4.5% of 100,000
    [fired] = engine.evaluate(at("58500"), 10.0)
    assert (fired.rule.name, fired.value) == ("stop-max-loss-share", D("0.055"))
    message = render(fired)
    assert message.title.endswith("stop 58,500.00 loses 5,500.00 USDT (5.5% of equity)")
    lines = message.body.splitlines()
    # Binance's portfolio margin equity is in USD (``PORTFOLIO_FIGURES.unit``), not the USDT
    # the loss is in
    assert lines[1] == "the equity is Binance USDⓈ-M's own, 100,000.00 USD", message.body
    # the stop that keeps the loss to 5% of it, 5,000 from the 64,000 entry
    assert lines[-1] == "→ move the stop above 59,000.00", message.body
    [resolved] = engine.evaluate(at("59500"), 20.0)
    assert resolved.kind is Kind.RESOLVED and resolved.rule.name == "stop-max-loss-share"
    # no equity left (or none reported): no share, never a division by it
    broke = dataclasses.replace(_reported((stop("58500"),)), equity=D(0))
    assert _pm_observe(_pm_feed(broke))[1].metrics["stop_loss_share"] is None


def test_the_exchange_s_equity_is_in_the_unit_it_reports() -> None:
    from alertd.exchanges.binance import PORTFOLIO_FIGURES
    from alertd.feeds.state import ReportedAccount

    assert ReportedAccount(scope=PORTFOLIO_FIGURES).money_unit("USDT") == "USD"
    assert ReportedAccount(unit="USD").money_unit("USDT") == "USD"  # Bybit, OKX PM
    assert ReportedAccount().money_unit("USDC") == "USDC"  # the pool alertd computes


def test_a_liquidation_distance_rule_reads_the_exchange_s_liquidation_price() -> None:
    from alertd.rules.lifecycle import AlertEngine

    rule = Rule(
        "near-liq",
        Condition("liquidation_distance", Scope.POSITION, below=D("0.05")),
        Severity.CRITICAL,
    )
    engine = AlertEngine([rule])
    assert engine.evaluate(_pm_observe(_pm_feed(_reported(()))), 0.0) == []  # 10.8% away
    near = _pm_feed(_reported((), mark=D(60000)))  # 3.3% above Binance's 58,000
    [fired] = engine.evaluate(_pm_observe(near), 10.0)
    assert fired.value == D(2000) / D(60000)
    body = render(fired).body
    assert "BTC/USDT:USDT long 1 @ 60,000.00 · liq 58,000.00 (exchange's) (3.3%)" in body, body
    assert "the liquidation price is Binance USDⓈ-M's own" in body, body


# --- snapshot format and calc ---------------------------------------------------------------


def test_snapshot_keeps_orders_and_reads_older_snapshots_without_them() -> None:
    import json

    from alertd.errors import SnapshotError
    from alertd.snapshot.format import account_to_json, parse_snapshot

    stops = (
        stop("60000", "0.5"),
        stop("80000", kind=StopKind.TAKE_PROFIT, trigger=Trigger.RISE),
        stop(None, "0.25", kind=StopKind.TRAILING),
        stop("59000", "1", trigger=Trigger.CROSS),
    )
    written = account_to_json(_account(stops))
    back = parse_snapshot(json.dumps(written)).account
    assert back.stops == stops
    assert "orders" not in account_to_json(_account(None))  # not read: absent
    assert parse_snapshot(json.dumps(account_to_json(_account(())))).account.stops == ()
    older = {k: v for k, v in written.items() if k != "orders"}
    assert parse_snapshot(json.dumps(older)).account.stops is None
    bad = {
        **written,
        "orders": [
            {"symbol": BTC, "side": "long", "trigger": "falls"},
            {"symbol": BTC, "side": "up", "trigger": "falls", "trigger_price": "1"},
        ],
    }
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(json.dumps(bad))
    text = str(caught.value)
    assert "orders[1].side" in text and "orders[0].trigger_price: required" not in text
    del bad["orders"][1]
    with pytest.raises(SnapshotError, match=r"orders\[0\].trigger_price: required"):
        parse_snapshot(json.dumps(bad))


def test_calc_shows_each_positions_stop(tmp_path: Any) -> None:
    import json

    from alertd.snapshot.format import account_to_json

    from .support.process import alertd

    path = tmp_path / "snap.json"
    path.write_text(json.dumps(account_to_json(_account((stop("50000"),)))))
    table = alertd("calc", str(path), env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert table.returncode == 0, table.stderr
    assert "Stops" in table.stdout and "BEYOND" in table.stdout, table.stdout
    as_json = alertd("calc", "--json", str(path))
    [p] = json.loads(as_json.stdout)["positions"]
    assert p["stop"]["stop_loss_price"] == "50000" and p["stop"]["stop_coverage"] == "1"
    assert D(p["stop"]["stop_beyond_liquidation"]) > 0


# --- each local exchange's open orders through ccxt's own client --------------------------


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit", "gate", "hyperliquid", "okx"])
def test_each_exchanges_open_orders_read_through_ccxt(exchange: str) -> None:
    from alertd.exchanges.registry import get_spec
    from tests.fake_exchange.okx import FakeOKX
    from tests.test_e2e_exchanges import MARKETS

    from .support.aio import run
    from .support.fakes import ccxt_client, make_fake, started

    market = MARKETS[exchange]
    key = "0x" + "6a" * 20 if exchange == "hyperliquid" else "key-orders"
    spec = get_spec(exchange)
    contracts = D(market.contracts)
    half = contracts / 2

    async def body() -> list[StopOrder]:
        fake = make_fake(exchange)
        async with started(fake, [(key, "secret-orders", "10000")]):
            entry = fake.mark(market.symbol)
            fake.open_position(key, market.symbol, "long", market.contracts, entry)
            fake.add_stop(key, market.symbol, "long", entry * D("0.9"), half)
            fake.add_stop(key, market.symbol, "long", entry * D("1.2"), kind="take_profit")
            config: dict[str, Any] = {"options": {**spec.ccxt_options, **fake.ccxt_options}}
            keys = (None, None) if exchange == "hyperliquid" else (key, "secret-orders")
            if exchange == "hyperliquid":
                config["walletAddress"] = key
            if exchange == "okx":
                config["password"] = FakeOKX.PASSPHRASE
            async with ccxt_client(fake, exchange, *keys, **config) as client:
                await client.load_markets()
                adapter = spec.new_adapter()
                await adapter.prepare(client)
                await adapter.fetch_positions(client)
                found = await adapter.fetch_stops(client, [market.symbol])
                assert found is not None
                return found

    found = run(body)
    symbol = market.symbol
    mark = found[0].trigger_price or D(1)  # any price between the stop and the take-profit
    guarded = protective(found, symbol, LONG, mark / D("0.9"))
    assert [(s.trigger, s.contracts) for s in guarded] == [(Trigger.FALL, half)], found
    assert stop_coverage(guarded, contracts) == D("0.5")
    [tp] = [s for s in found if s.trigger is Trigger.RISE]
    assert tp.contracts is None and tp.side is LONG


def test_status_and_the_bots_positions_show_the_stop() -> None:
    from alertd.daemon.bot import _positions
    from alertd.daemon.view import AccountFigures, AccountView, Counters, DaemonView, Source
    from alertd.engine.margin import compute
    from alertd.views.status import describe_stop

    assert describe_stop(None, None, None) == "-"  # not read
    assert describe_stop(None, D(0), None) == "none"
    assert describe_stop(D(60000), D("0.5"), D("-0.01")) == "60,000.00 (50%)"
    assert describe_stop(D(50000), D(1), D("0.08")) == "50,000.00 (100%) BEYOND LIQ."
    assert describe_stop(None, D(1), None) == "trailing (100%)"

    def view(stops: tuple[StopOrder, ...] | None) -> DaemonView:
        figures = AccountFigures.of(compute(_account(stops)))
        account = AccountView("a", "binanceusdm", True, True, None, (), 1, figures)
        return DaemonView(Source.DAEMON, 0.0, (account,), (), (), Counters(), ())

    assert "stop 50,000.00 (100%) BEYOND LIQ." in _positions(view((stop("50000"),)), None)
    assert "stop none" in _positions(view(()), None)
    assert "stop" not in _positions(view(None), None)


PARSERS: list[tuple[Any, dict[str, Any]]] = [
    (usdm_stop, BINANCE_ALGO_TP),
    (usdm_stop, BINANCE_TRAILING),
    (open_stop, BYBIT_POSITION_SL),
    (open_stop, BYBIT_LIMIT_WITH_TPSL),
    (algo_stops, OKX_CONDITIONAL),
    (price_order_stops, GATE_PRICE_ORDER),
    (trigger_stop, HL_POSITION_SL),
]
HOSTILE = ["abc", None, [], {}, -1, "NaN", "1e999999", True, "", "Infinity"]


def _garbled(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``payload`` with each field, and each field of a nested object, hostile in turn."""
    for field, value in payload.items():
        for bad in HOSTILE:
            yield {**payload, field: bad}
        if isinstance(value, dict):
            for inner in _garbled(value):
                yield {**payload, field: inner}


@pytest.mark.parametrize(("parse", "payload"), PARSERS)
def test_hostile_order_fields_raise_frame_errors_only(parse: Any, payload: dict[str, Any]) -> None:
    """Every field of a real payload replaced by hostile values: the parser and the feed's
    check give sane stops (positive prices, sizes not negative) or raise FrameError (logged
    and skipped by the feed: no stop figures), never anything else."""
    for garbled in _garbled(payload):
        try:
            parsed = parse(garbled, BTC)
            found = checked_stops(
                [] if parsed is None else [parsed] if isinstance(parsed, StopOrder) else parsed
            )
        except FrameError:
            continue
        for s in found:
            assert s.trigger_price is None or s.trigger_price > 0, garbled
            assert s.contracts is None or s.contracts >= 0, garbled


def test_an_unreadable_order_leaves_the_stops_unread_not_missing() -> None:
    from tests.fake_exchange.binance import FakeBinanceUSDM

    from .support.aio import run
    from .support.fakes import started
    from .support.feeds import account_config, bootstrapped, btc_long, make_feed

    async def body() -> tuple[Any, Any]:
        async with started(FakeBinanceUSDM(), [("k", "s", "10000")]) as fake:
            btc_long(fake, "k")
            fake.add_stop("k", BTC, "long", "55000")
            good = await bootstrapped(make_feed(account_config("a", "binanceusdm", fake), "k", "s"))
            fake.add_stop("k", BTC, "long", "0")  # a trigger price of 0: not a usable order
            bad = await bootstrapped(make_feed(account_config("b", "binanceusdm", fake), "k", "s"))
            return good, bad

    good, bad = run(body)
    assert [s.trigger_price for s in good.state.stops] == [D(55000)]
    assert bad.state.bootstrapped and bad.state.stops is None  # no figures, not "no stop"
    assert bad.malformed == {"open orders: bad entry": 1}


@contextlib.asynccontextmanager
async def streaming_btc_long() -> AsyncIterator[tuple[Any, AccountFeed]]:
    """The local Binance with an account long BTC and no stop, and that account's feed
    streaming (its stops read: none)."""
    from tests.fake_exchange.binance import FakeBinanceUSDM

    from .support.fakes import started
    from .support.feeds import account_config, btc_long, make_feed, streaming
    from .support.poll import eventually

    async with started(FakeBinanceUSDM(), [("k", "s", "10000")]) as fake:
        btc_long(fake, "k")
        feed = make_feed(account_config("a", "binanceusdm", fake), "k", "s")
        async with streaming(feed):
            await eventually(lambda: feed.state.stops == (), what="no stops")
            yield fake, feed


def test_a_stop_placed_before_its_position_is_read_when_the_position_opens() -> None:
    """Binance's open orders are read per held symbol: a stop placed on a symbol not held yet
    (its push re-reads nothing there) is read when the position arrives on the stream."""
    from .support.aio import run
    from .support.poll import eventually

    eth = "ETH/USDT:USDT"

    async def body() -> None:
        async with streaming_btc_long() as (fake, feed):

            def reads() -> int:
                return sum(path.endswith("/openAlgoOrders") for _, path in fake.requests)

            before = reads()
            fake.add_stop("k", eth, "short", fake.mark(eth) * 2)
            await eventually(lambda: reads() > before, what="the push's re-read")
            assert feed.state.stops == ()  # BTC's orders only: ETH is not held yet
            fake.open_position("k", eth, "short", "1", fake.mark(eth))

            def eth_stop() -> bool:
                return any(s.symbol == eth for s in feed.state.stops or ())

            await eventually(eth_stop, what="the ETH stop read")

    run(body)


def test_a_stop_read_overtaken_by_a_newer_one_does_not_overwrite_it() -> None:
    """A reconcile's read of the open orders answers slowly; meanwhile a stop is placed, its
    push re-reads the orders and finds it. The reconcile's older answer (no stop) arrives
    last: it must not wipe out the stop until the next read."""
    from .support.aio import run
    from .support.poll import eventually

    async def body() -> None:
        async with streaming_btc_long() as (fake, feed):
            fake.hold_rest("/openAlgoOrders")
            resync = asyncio.create_task(feed.resync(stops=True))
            await eventually(lambda: fake.held_answers() == 1, what="the slow answer")
            fake.add_stop("k", BTC, "long", "55000")
            await eventually(lambda: bool(feed.state.stops), what="the push's read")
            fake.release_rest()
            await resync
            assert [s.trigger_price for s in feed.state.stops or ()] == [D(55000)]

    run(body)
