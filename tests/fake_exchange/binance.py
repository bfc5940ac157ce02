"""A scriptable local Binance USDⓈ-M futures server; ccxt.pro.binanceusdm runs against it as is.

It speaks Binance's real REST and websocket wire formats on one loopback port; point ccxt at it
with ``fake.apply_to(exchange)`` (or deep-merge ``fake.ccxt_urls()`` over ``exchange.urls['api']``
and set ``fake.ccxt_options``). Response shapes follow captured Binance responses (ccxt's
``ts/src/test/static/response/binance.json``, ``.../ws/binance.json``) and the USDⓈ-M API docs.

What it serves (paths as on fapi.binance.com / papi.binance.com / fstream.binance.com):
- REST public: ``/fapi/v1/ping``, ``/time``, ``/exchangeInfo``, ``/premiumIndex``,
  ``/ticker/24hr``, ``/ticker/price``.
- REST signed (HMAC-SHA256 over the query, ``timestamp`` within ``recvWindow``):
  ``/fapi/v1/leverageBracket``, ``/fapi/v2|v3/positionRisk``, ``/fapi/v2|v3/account``,
  ``/fapi/v2|v3/balance``, ``/fapi/v1/positionSide/dual``, ``/fapi/v1/multiAssetsMargin``.
- REST public: ``/fapi/v1/assetIndex`` (multi-assets mode indices, "Multi-Assets Mode Asset
  Index": a list, or one object with ``symbol``).
- REST API-key only: ``POST|PUT|DELETE /fapi/v1/listenKey`` and ``/papi/v1/listenKey``.
- Portfolio margin (``set_portfolio_margin``), signed: ``/papi/v1/account`` (uniMMR from the
  account's state: it moves with the marks), ``/papi/v1/um/positionRisk``,
  ``/papi/v1/um/account``, ``/papi/v1/balance``, ``/papi/v1/um/leverageBracket``,
  ``/papi/v1/cm/positionRisk``, ``/papi/v1/cm/account``, ``/papi/v1/cm/leverageBracket``
  (``set_cm_brackets``) and
  ``/papi/v1/cm/conditional/openOrders`` (scripted: ``set_cm_positions``,
  ``set_cm_account``, ``set_cm_conditional_orders``), its UM open
  conditional orders on ``/papi/v1/um/algo/openAlgoOrders`` and (``as_strategy_order``)
  ``/papi/v1/um/conditional/openOrders``, in the shapes of the Portfolio Margin API docs'
  response examples; another account gets Binance's -21001.
  Its user data on ``/pm/ws/<listenKey>`` (``ACCOUNT_UPDATE`` with ``fs`` UM).
- Websocket market streams on ``/market/ws/N``, ``/public/ws/N``, ``/ws``, ``/ws/<stream>`` and
  combined ``/stream?streams=a/b``: ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` with
  ``{"result": null, "id": N}``; ``<sym>@markPrice[@1s]`` and ``!markPrice@arr[@1s]``;
  ``!assetIndex@arr`` and ``<assetSymbol>@assetIndex`` ("Multi-Assets Mode Asset Index":
  every row of ``/fapi/v1/assetIndex`` as ``assetIndexUpdate`` events, with the marks' period
  and at once when a row moves; ``asset_index_paused`` silences it).
- Websocket user data on ``/private/ws?listenKey=K`` (what ccxt dials) and ``/ws/K``:
  ``ACCOUNT_UPDATE``, ``MARGIN_CALL``, ``listenKeyExpired``.

The account figures (maintenance margin, liquidation price, account totals) are computed here,
independently of alertd, with Binance's published formulas: ``MM = |notional at mark| * mmr -
cum`` with the bracket chosen by notional at mark, and the cross liquidation price
``LP = (WB - TMM1 + UPNL1 + cum - s*Q*EP) / (Q*mmr - s*Q)``, solved again with the bracket of the
notional at LP when that differs (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M
Futures Contracts"). The account is in single-asset mode (one margin asset, USDT by default),
or with ``set_multi_assets`` in multi-assets mode: its other coins are listed in the account's
``assets`` and counted in the ``total*`` figures at ``min(amount x bidRate, amount x askRate)``
(Binance FAQ "How to Calculate Margin in Multi-Assets Mode"), and in the cross liquidation
prices at their current value (a coin does not move with the position here; ``set_multi_assets``
collateral and ``set_multi_assets_coins`` coins alike); an index may
follow a market's mark (``set_asset_index(..., follows=symbol)``). The settle coin's equity
(its wallet and its own positions' PnL) counts at its ``<settle>USD`` row's bid rate while
positive and its ask rate once negative, its positions' maintenance margin at its ask rate
(the same FAQ: "∑min(assetEquity*bidRate, assetEquity*askRate)", example 2's "80 x 0.99495");
the USDTUSD and USDCUSD rows are served at 1 until ``set_asset_index`` moves them (a depeg).
Every asset is counted the same way, the settle coin, another margin asset (USDC: its
wallet plus its USDC-M positions' PnL, their MM at its ask rate) and a coin alike.

Connections, queues, drops, unanswered pings, scripted REST failures, bans and revoked keys
are the shared machinery of ``base.py``; this module adds Binance's wire format. Test helpers
beyond the wire: ``apply_to(exchange)``, ``wait_for_subscription(stream)``,
``wait_for_user_stream(api_key)``, ``wait_until(predicate)``, ``account_v3(api_key)`` and
``position_risk_v3(api_key)`` (the REST bodies, for assertions), ``mark(symbol)``, ``unban``,
``used_weight`` (the request weight spent per API at Binance's documented weights, as its
``X-MBX-USED-WEIGHT`` counts it; ``reset_weight``).
Run ``python -m tests.fake_exchange.binance --help`` for a standalone server for benchmarks.

Simplifications, on purpose: no orders or fills (positions are scripted), no fees except the
break-even price estimate, ADL quantile 2 unless set (``set_adl``), the index price equals the
mark, any stream name is accepted on any public path, and a ban is per API key rather than per IP
(see ``base.ban``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import random
import string
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fake_exchange import base as shared
from tests.fake_exchange.base import (
    LOOPBACK,
    BookSides,
    FakeExchangeServer,
    Num,
    Reject,
    StopOrderSpec,
    now_ms,
    peer,
    scripted,
)
from tests.fake_exchange.base import to_decimal as _dec

# "Query CM Position Information" (GET /papi/v1/cm/positionRisk), the docs' response example
# (developers.binance.com, Portfolio Margin, account REST API; hedge mode: LONG)
CM_POSITION_EXAMPLE: dict[str, Any] = {
    "symbol": "BTCUSD_201225",
    "positionAmt": "1",
    "entryPrice": "11707.70000003",
    "markPrice": "11788.66626667",
    "unRealizedProfit": "0.00005866",
    "liquidationPrice": "6170.20509059",
    "leverage": "125",
    "positionSide": "LONG",
    "updateTime": 1627026881327,
    "maxQty": "50",
    "notionalValue": "0.00084827",
}

# "Query All Current CM Open Conditional Orders" (GET /papi/v1/cm/conditional/openOrders), the
# response example of Binance's portfolio margin connector (binance/binance-connector-python,
# clients/derivatives_trading_portfolio_margin, tests/unit/rest_api/test_trade_api.py)
CM_CONDITIONAL_EXAMPLE: dict[str, Any] = {
    "newClientStrategyId": "abc",
    "strategyId": 123445,
    "strategyStatus": "NEW",
    "strategyType": "TRAILING_STOP_MARKET",
    "origQty": "0.40",
    "price": "0",
    "reduceOnly": False,
    "side": "BUY",
    "positionSide": "SHORT",
    "stopPrice": "9300",
    "symbol": "BTCUSD",
    "bookTime": 1566818724710,
    "updateTime": 1566818724722,
    "timeInForce": "GTC",
    "activatePrice": "9020",
    "priceRate": "0.3",
}

# Binance USDⓈ-M "Current All Algo Open Orders" (GET /fapi/v1/openAlgoOrders), the docs'
# response example (developers.binance.com, USDⓈ-M futures, trade REST API)
ALGO_ORDER_EXAMPLE: dict[str, Any] = {
    "algoId": 2148627,
    "clientAlgoId": "MRumok0dkhrP4kCm12AHaB",
    "algoType": "CONDITIONAL",
    "orderType": "TAKE_PROFIT",
    "symbol": "BNBUSDT",
    "side": "SELL",
    "positionSide": "BOTH",
    "timeInForce": "GTC",
    "quantity": "0.01",
    "algoStatus": "NEW",
    "actualOrderId": "",
    "actualPrice": "0.00000",
    "triggerPrice": "750.000",
    "price": "750.000",
    "icebergQuantity": None,
    "tpTriggerPrice": "0.000",
    "tpPrice": "0.000",
    "slTriggerPrice": "0.000",
    "slPrice": "0.000",
    "tpOrderType": "",
    "selfTradePreventionMode": "EXPIRE_MAKER",
    "workingType": "CONTRACT_PRICE",
    "priceMatch": "NONE",
    "closePosition": False,
    "priceProtect": False,
    "reduceOnly": False,
    "createTime": 1750514941540,
    "updateTime": 1750514941540,
    "triggerTime": 0,
    "goodTillDate": 0,
}

# "Portfolio Margin Pro Tiered Collateral Rate" (GET /sapi/v2/portfolio/collateralRate,
# USER_DATA: signed), the docs' response example (developers.binance.com, Derivatives,
# Portfolio Margin Pro, market data): per asset, tiers of its equity's value with a rate and a
# ``cum`` ("account equity quick addition number")
COLLATERAL_RATE_EXAMPLE: list[dict[str, Any]] = [
    {
        "asset": "BNB",
        "collateralInfo": [
            {
                "tierFloor": "0.0000",
                "tierCap": "1000.0000",
                "collateralRate": "1.0000",
                "cum": "0.0000",
            },
            {
                "tierFloor": "1000.0000",
                "tierCap": "2000.0000",
                "collateralRate": "0.9000",
                "cum": "0.0000",
            },
        ],
    },
    {
        "asset": "USDT",
        "collateralInfo": [
            {
                "tierFloor": "0.0000",
                "tierCap": "1000.0000",
                "collateralRate": "1.0000",
                "cum": "0.0000",
            },
            {
                "tierFloor": "1000.0000",
                "tierCap": "2000.0000",
                "collateralRate": "0.9999",
                "cum": "0.0000",
            },
        ],
    },
]

# "Get CM Account Detail" (GET /papi/v1/cm/account), the docs' response example
# (developers.binance.com, Portfolio Margin, account REST API)
CM_ACCOUNT_EXAMPLE: dict[str, Any] = {
    "assets": [
        {
            "asset": "BTC",
            "crossWalletBalance": "0.00241969",
            "crossUnPnl": "0.00000000",
            "maintMargin": "0.00000000",
            "initialMargin": "0.00000000",
            "positionInitialMargin": "0.00000000",
            "openOrderInitialMargin": "0.00000000",
            "updateTime": 1625474304765,
        }
    ],
    "positions": [
        {
            "symbol": "BTCUSD_201225",
            "positionAmt": "0",
            "initialMargin": "0",
            "maintMargin": "0",
            "unrealizedProfit": "0.00000000",
            "positionInitialMargin": "0",
            "openOrderInitialMargin": "0",
            "leverage": "125",
            "positionSide": "BOTH",
            "entryPrice": "0.0",
            "maxQty": "50",
            "updateTime": 0,
        }
    ],
}

# Binance's documented request weight of each REST path served here, counted against the
# API's own per-IP limit (Binance's X-MBX-USED-WEIGHT): (with a symbol, without one). USDⓈ-M
# futures ("REQUEST_WEIGHT 2400" a minute): each endpoint's "Request Weight" in its REST API
# docs; Portfolio Margin ("6000" a minute, its General Info): likewise in its docs
REQUEST_WEIGHTS: dict[str, dict[str, tuple[int, int]]] = {
    "fapi": {
        "/fapi/v1/ping": (1, 1),
        "/fapi/v1/time": (1, 1),
        "/fapi/v1/exchangeInfo": (1, 1),
        "/fapi/v1/premiumIndex": (1, 10),
        "/fapi/v1/assetIndex": (1, 10),
        "/fapi/v1/leverageBracket": (1, 1),
        "/fapi/v2/positionRisk": (5, 5),
        "/fapi/v3/positionRisk": (5, 5),
        "/fapi/v2/account": (5, 5),
        "/fapi/v3/account": (5, 5),
        "/fapi/v2/balance": (5, 5),
        "/fapi/v3/balance": (5, 5),
        "/fapi/v1/multiAssetsMargin": (30, 30),
        "/fapi/v1/listenKey": (1, 1),
        "/fapi/v1/openOrders": (1, 40),
        "/fapi/v1/openAlgoOrders": (1, 40),
    },
    "papi": {
        "/papi/v1/account": (20, 20),
        "/papi/v1/balance": (20, 20),
        "/papi/v1/um/positionRisk": (5, 5),
        "/papi/v1/um/account": (5, 5),
        "/papi/v1/cm/positionRisk": (1, 1),
        "/papi/v1/cm/account": (5, 5),
        "/papi/v1/cm/leverageBracket": (1, 1),
        "/papi/v1/um/leverageBracket": (1, 1),
        "/papi/v1/listenKey": (1, 1),
        "/papi/v1/um/conditional/openOrders": (1, 40),
        "/papi/v1/um/algo/openAlgoOrders": (1, 40),
        "/papi/v1/cm/conditional/openOrders": (1, 40),
    },
}
REQUEST_WEIGHTS["dapi"] = {
    # COIN-M futures ("REQUEST_WEIGHT 2400" a minute, its own): "Exchange Information",
    # weight 1 (developers.binance.com, COIN-M Futures, market data REST API)
    "/dapi/v1/exchangeInfo": (1, 1),
}
REQUEST_WEIGHTS["sapi"] = {
    # "Portfolio Margin Pro Tiered Collateral Rate" (GET /sapi/v2/portfolio/collateralRate):
    # "Request Weight(IP) 50" (developers.binance.com, Derivatives, Portfolio Margin Pro,
    # market data), counted against the spot API's own per-IP limit (api.binance.com)
    "/sapi/v2/portfolio/collateralRate": (50, 50),
}
WEIGHT_PER_MINUTE = {"fapi": 2400, "papi": 6000, "dapi": 2400, "sapi": 6000}

BRACKETS_FILE = Path(__file__).with_name("data") / "binance_usdm_brackets.json"
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
FUTURE_TOLERANCE_MS = 1000  # Binance rejects timestamps more than 1 s ahead of its clock
FUNDING_PERIOD_MS = 8 * 3600 * 1000
BREAK_EVEN_FEE_RATE = Decimal("0.0005")  # open + close taker fee, as in captured breakEvenPrice
DEFAULT_LEVERAGE = 20
ADL_QUANTILE = 2
INSURANCE_FUND = "1000000"  # USDT in each symbol's insurance fund pool unless set
EIGHT_PLACES = Decimal("0.00000001")
LISTEN_KEY_ALPHABET = string.ascii_letters + string.digits
OTHER_MARGIN_ASSETS = ("FDUSD", "BTC", "BNB", "ETH", "USDC", "USDT")
# GET /fapi/v3/account: (an asset's field, the account's total, the figure of both)
ACCOUNT_FIGURES = (
    ("walletBalance", "totalWalletBalance", "wallet"),
    ("unrealizedProfit", "totalUnrealizedProfit", "upnl"),
    ("marginBalance", "totalMarginBalance", "margin_balance"),
    ("maintMargin", "totalMaintMargin", "mm"),
    ("initialMargin", "totalInitialMargin", "im"),
    ("positionInitialMargin", "totalPositionInitialMargin", "im"),
    ("openOrderInitialMargin", "totalOpenOrderInitialMargin", "open_order_im"),
    ("crossWalletBalance", "totalCrossWalletBalance", "cross_wallet"),
    ("crossUnPnl", "totalCrossUnPnl", "cross_upnl"),
    ("availableBalance", "availableBalance", "available"),
    ("maxWithdrawAmount", "maxWithdrawAmount", "max_withdraw"),
)

ERR_UNKNOWN = (-1000, "An unknown error occured while processing the request.")
ERR_TOO_MANY = -1003
ERR_TIMESTAMP = (-1021, "Timestamp for this request is outside of the recvWindow.")
ERR_SIGNATURE = (-1022, "Signature for this request is not valid.")
ERR_LISTEN_KEY = (-1125, "This listenKey does not exist.")
ERR_KEY_FORMAT = (-2014, "API-key format invalid.")
ERR_BAD_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
# a /papi request from an account that is not a portfolio margin account (Binance FAQ "How to
# Use the Binance Portfolio Margin Pro Program APIs")
ERR_NOT_PORTFOLIO = (-21001, "invalid request: request ID is not a Portfolio Margin Account")
# "What Is the Unified Account Maintenance Margin Ratio (uniMMR)" (Binance FAQ): trade freely
# above 150%, a reminder down to 120%, reduce-only down to 105%, liquidation below
PORTFOLIO_LIQUIDATION_UNI_MMR = Decimal("1.05")
PORTFOLIO_STATUS = (
    (Decimal("1.5"), "NORMAL"),
    (Decimal("1.2"), "MARGIN_CALL"),
    (PORTFOLIO_LIQUIDATION_UNI_MMR, "REDUCE_ONLY"),
    (Decimal(1), "FORCE_LIQUIDATION"),
)


# ---- numbers ---------------------------------------------------------------------------------


def _f8(value: Decimal) -> str:
    """Binance's 8-decimal amount format ("607.52416678")."""
    text = format(value.quantize(EIGHT_PLACES, rounding=ROUND_HALF_EVEN), "f")
    return text[1:] if text.startswith("-") and not value.quantize(EIGHT_PLACES) else text


def _plain(value: Decimal) -> str:
    """Shortest plain form ("67445.9", "-849"), never an exponent."""
    if not value:
        return "0"
    return format(value.normalize(), "f")


def _json_text(text: str) -> web.Response:
    """An answer already serialised as compact JSON (shared.json_response's headers)."""
    return web.Response(text=text, content_type="application/json")


def _decimals(step: str) -> int:
    exponent = Decimal(step).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


# ---- markets and brackets --------------------------------------------------------------------


@dataclass(frozen=True)
class _Tier:
    floor: Decimal
    cap: Decimal
    mmr: Decimal
    cum: Decimal
    max_leverage: int


def _normalize_brackets(brackets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw Binance bracket dicts, sorted; ccxt tier dicts (raw one under ``info``) accepted too.
    A missing ``cum`` is derived: cum[n] = cum[n-1] + floor[n] * (mmr[n] - mmr[n-1])."""
    if not brackets:
        raise ValueError("at least one bracket is required")
    raw = [dict(b["info"]) if "info" in b else dict(b) for b in brackets]
    raw.sort(key=lambda b: _dec(b["notionalFloor"]))
    cum = Decimal(0)
    previous_mmr = Decimal(0)
    for number, bracket in enumerate(raw, start=1):
        for name in ("notionalFloor", "notionalCap", "maintMarginRatio", "initialLeverage"):
            if name not in bracket:
                raise ValueError(f"bracket {number} lacks {name!r}")
        mmr = _dec(bracket["maintMarginRatio"])
        cum += _dec(bracket["notionalFloor"]) * (mmr - previous_mmr)
        previous_mmr = mmr
        bracket.setdefault("bracket", number)
        bracket.setdefault("cum", float(cum))
    return raw


def _tiers(raw: list[dict[str, Any]]) -> list[_Tier]:
    return [
        _Tier(
            floor=_dec(b["notionalFloor"]),
            cap=_dec(b["notionalCap"]),
            mmr=_dec(b["maintMarginRatio"]),
            cum=_dec(b["cum"]),
            max_leverage=int(b["initialLeverage"]),
        )
        for b in raw
    ]


def _tier_for(tiers: list[_Tier], notional: Decimal) -> _Tier:
    for tier in tiers:
        if notional < tier.cap:
            return tier
    return tiers[-1]


def _generic_brackets() -> list[dict[str, Any]]:
    """A typical mid-cap USDⓈ-M table, for symbols added without brackets."""
    rows = [
        (0, 5_000, 75, 0.005),
        (5_000, 50_000, 50, 0.01),
        (50_000, 200_000, 25, 0.02),
        (200_000, 500_000, 20, 0.025),
        (500_000, 1_000_000, 10, 0.05),
        (1_000_000, 2_000_000, 5, 0.1),
        (2_000_000, 5_000_000, 2, 0.25),
        (5_000_000, 10_000_000, 1, 0.5),
    ]
    return _normalize_brackets(
        [
            {"notionalFloor": f, "notionalCap": c, "initialLeverage": lev, "maintMarginRatio": r}
            for f, c, lev, r in rows
        ]
    )


def _load_real_brackets() -> dict[str, list[dict[str, Any]]]:
    data = json.loads(BRACKETS_FILE.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@dataclass
class _Market:
    id: str
    base: str
    quote: str
    mark: Decimal
    brackets: list[dict[str, Any]]
    tick_size: str
    step_size: str
    min_notional: str
    sub_type: list[str]
    funding_rate: Decimal = Decimal("0.00010000")
    tiers: list[_Tier] = field(init=False)
    # rows of answers that follow from the market's brackets and fixed fields alone, serialised
    # once for every account they fit (a 550-symbol leverageBracket answer is 580 KB an
    # account), by what else they depend on; set_brackets drops them
    _rows_json: dict[tuple[Any, ...], str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.set_brackets(self.brackets)

    def set_brackets(self, brackets: list[dict[str, Any]]) -> None:
        self.brackets = _normalize_brackets(brackets)
        self.tiers = _tiers(self.brackets)
        self._rows_json.clear()

    def row_json(self, key: tuple[Any, ...], build: Callable[[], Any]) -> str:
        """``build()``'s compact JSON, kept under ``key`` until the brackets change."""
        text = self._rows_json.get(key)
        if text is None:
            text = self._rows_json[key] = shared.compact(build())
        return text

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}:{self.quote}"

    @property
    def stream_id(self) -> str:
        return self.id.lower()

    @property
    def max_leverage(self) -> int:
        return self.tiers[0].max_leverage


# (market id, base, quote, mark, tick size, step size, min notional, underlying sub type)
_DEFAULT_MARKETS = (
    ("BTCUSDT", "BTC", "USDT", "97000.00", "0.10", "0.001", "100", ["PoW"]),
    ("ETHUSDT", "ETH", "USDT", "3400.00", "0.01", "0.001", "20", ["Layer-1"]),
    ("SOLUSDT", "SOL", "USDT", "180.0000", "0.0100", "1", "5", ["Layer-1"]),
)
_KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD")


# "Query CM Notional and Leverage Brackets" (GET /papi/v1/cm/leverageBracket), the docs'
# response example (developers.binance.com, Portfolio Margin, account REST API): the edges in
# the coin (``qtyFloor``, ``qtyCap``), the rate and ``cum`` ("速算数", quick calculation)
CM_LEVERAGE_BRACKET_EXAMPLE: list[dict[str, Any]] = [
    {
        "symbol": "BTCUSD_PERP",
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": 125,
                "qtyCap": 50,
                "qtyFloor": 0,
                "maintMarginRatio": 0.004,
                "cum": 0.0,
            }
        ],
    }
]
# a COIN-M market's one bracket unless set (set_cm_brackets): the docs' example's, without a
# cap (one bracket for every size)
CM_BRACKET_FIRST: dict[str, Any] = CM_LEVERAGE_BRACKET_EXAMPLE[0]["brackets"][0] | {
    "qtyCap": 999999999
}


@dataclass
class _CoinMarket:
    """A COIN-M perpetual or delivery (quarterly) contract (``/dapi/v1/exchangeInfo``):
    inverse, settled in its coin (``marginAsset``), each contract ``contract_size`` USD
    ("Exchange Information", COIN-M Futures: ``contractSize`` 100 for BTCUSD_PERP and
    BTCUSD_<yymmdd>, 10 for the others); a delivery one's ``deliveryDate`` in epoch ms."""

    id: str
    base: str
    contract_size: Decimal
    mark: Decimal
    funding_rate: Decimal = Decimal("0.00010000")
    delivery_ms: int | None = None  # None: a perpetual
    # its leverage brackets as "Query CM Notional and Leverage Brackets" (GET
    # /papi/v1/cm/leverageBracket) lists them: ``qtyFloor``/``qtyCap`` in the coin (the
    # position's notional in the coin), ``maintMarginRatio``, ``cum`` in the coin
    brackets: list[dict[str, Any]] = field(default_factory=lambda: [dict(CM_BRACKET_FIRST)])

    def maint_margin(self, size: Decimal) -> Decimal:
        """The maintenance margin, in the coin, of a position of ``size`` USD (signed) at the
        mark: its notional in the coin (``|size| / mark``) times its bracket's rate less the
        bracket's ``cum`` (Binance COIN-M FAQ "Leverage and Margin of COIN-Margined
        Futures": maintenance margin = notional x rate - cum)."""
        notional = abs(size) / self.mark
        bracket = self.brackets[-1]
        for row in self.brackets:
            if notional <= Decimal(str(row["qtyCap"])):
                bracket = row
                break
        rate, cum = Decimal(str(bracket["maintMarginRatio"])), Decimal(str(bracket["cum"]))
        return notional * rate - cum

    @property
    def symbol(self) -> str:
        """ccxt's unified symbol (a delivery contract's ends in its expiry: BTC/USD:BTC-261225)."""
        if self.delivery_ms is None:
            return f"{self.base}/USD:{self.base}"
        return f"{self.base}/USD:{self.base}-{self.id.rpartition('_')[2]}"


# (market id, base, contract size in USD, mark, delivery date in epoch ms: None, perpetual)
_DEFAULT_COIN_MARKETS: tuple[tuple[str, str, str, str, int | None], ...] = (
    ("BTCUSD_PERP", "BTC", "100", "97000.0", None),
    ("ETHUSD_PERP", "ETH", "10", "3400.00", None),
    # a quarterly: "contractType" CURRENT_QUARTER, delivered 2026-12-25 08:00 UTC
    ("BTCUSD_261225", "BTC", "100", "97000.0", 1798185600000),
)


def _book_diff(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> list[list[str]]:
    """The levels of one side that changed, as a depth event lists them: gone ones at "0"."""
    old, new = dict(before), dict(after)
    gone = [[price, "0"] for price in old if price not in new]
    return gone + [[price, size] for price, size in after if old.get(price) != size]


def _split_symbol(symbol: str) -> tuple[str, str, str]:
    """'BTC/USDT:USDT' or 'BTCUSDT' -> ('BTCUSDT', 'BTC', 'USDT')."""
    if "/" in symbol:
        base, rest = symbol.split("/", 1)
        quote, _, settle = rest.partition(":")
        if settle and settle != quote:
            raise ValueError(f"{symbol}: only linear perpetuals (settle = quote) are served")
        return f"{base}{quote}".upper(), base.upper(), quote.upper()
    upper = symbol.upper()
    for quote in _KNOWN_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper, upper[: -len(quote)], quote
    raise ValueError(f"cannot tell base from quote in {symbol!r}; use 'BASE/QUOTE:QUOTE'")


def _default_tick(mark: Decimal) -> str:
    digits = max(0, 6 - len(str(int(mark)))) if mark >= 1 else 6
    return format(Decimal(1).scaleb(-digits), "f")


# ---- accounts and their figures --------------------------------------------------------------


@dataclass
class _Position:
    market_id: str
    side: str  # BOTH (one-way mode) or LONG / SHORT (hedge mode)
    amount: Decimal  # signed: negative is short
    entry: Decimal
    margin_type: str  # "cross" or "isolated"
    isolated_wallet: Decimal
    leverage: int
    realized: Decimal
    update_ms: int


@dataclass
class _Account(shared.Credentials):
    asset: str
    wallet: Decimal  # total wallet balance: cross wallet plus the isolated wallets
    positions: dict[tuple[str, str], _Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    dual_side: bool = False
    listen_key: str | None = None
    update_ms: int = field(default_factory=now_ms)
    can_trade: bool = False  # the key's permissions (GET /sapi/v1/account/apiRestrictions)
    # Multi-assets mode (GET /fapi/v1/multiAssetsMargin): other assets in the one USD pool,
    # asset -> (amount, USD value per unit after the haircut); the account's total* fields
    # then sum them in USD ("Account Information V3", multi-assets example)
    multi_assets: bool = False
    collateral: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    # a maintenance margin the exchange adds that alertd does not model (a rule change):
    # the reported totalMaintMargin is the fake's own times this factor
    reported_mm_factor: Decimal = Decimal(1)
    # the same per margin asset's row (single-asset mode: that pool's ``maintMargin``)
    pool_mm_factors: dict[str, Decimal] = field(default_factory=dict)
    coins: dict[str, Decimal] = field(default_factory=dict)  # multi-assets, priced by assetIndex
    # Portfolio margin (``set_portfolio_margin``): the USDⓈ-M positions and the account's risk
    # are served under /papi; what the UM positions do not hold (COIN-M positions, margin
    # loans) is scripted as its maintenance margin in USD, the open orders' loss beside it
    portfolio: bool = False
    portfolio_other_mm: Decimal = Decimal(0)
    portfolio_open_loss: Decimal = Decimal(0)
    # its COIN-M positions as GET /papi/v1/cm/positionRisk lists them (set_cm_positions),
    # scripted whole: this server holds no COIN-M market
    cm_rows: list[dict[str, Any]] = field(default_factory=list)
    cm_orders: list[dict[str, Any]] = field(default_factory=list)  # its CM conditional orders
    # its brackets adjusted (adjust_brackets): market id -> "notionalCoef"
    bracket_coefs: dict[str, Decimal] = field(default_factory=dict)
    # its "Get CM Account Detail" answer (set_cm_account)
    cm_account: dict[str, Any] = field(default_factory=lambda: {"assets": [], "positions": []})
    # its COIN-M positions held in this server's COIN-M markets (open_cm_position), by market
    # id: (contracts, signed; entry price; Binance's liquidation price of the account, scripted)
    cm_held: dict[str, tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)
    # its COIN-M coins' wallets (in the coin) and collateral rates (set_cm_coin): a coin's
    # equity (its wallet and its COIN-M positions' PnL) counts in uniMMR at its rate
    cm_coins: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    # when each coin's COIN-M wallet last changed: its "Get CM Account Detail" row's
    # "updateTime"
    cm_coin_ms: dict[str, int] = field(default_factory=dict)
    # its coins' other balances, in the coin (set_pm_coin_balance): "Account Balance"'s
    # crossMarginAsset, crossMarginBorrowed, crossMarginInterest and umWalletBalance; each
    # counts in its coin's equity in uniMMR beside the COIN-M wallet
    pm_balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)


@dataclass
class _Figures:
    notional: Decimal  # signed, at mark
    upnl: Decimal
    mm: Decimal
    im: Decimal
    tier: _Tier
    liquidation: Decimal | None = None


def _solve_liquidation(
    base: Decimal, legs: list[tuple[Decimal, Decimal, list[_Tier]]], mark: Decimal
) -> Decimal | None:
    """The price at which margin balance equals maintenance margin, other positions held at mark.

    ``base`` is WB - TMM1 + UPNL1 for cross (the isolated wallet for isolated); ``legs`` are the
    position(s) of the symbol as (signed quantity, entry, brackets). Binance's formula, generalised
    over the BOTH/LONG/SHORT legs of one symbol: LP = (base + sum cum - sum q*EP) /
    (sum |q|*mmr - sum q). The bracket is re-chosen at the notional at LP until it is stable.
    None when there is no positive solution (Binance shows 0).
    """
    tiers = [_tier_for(t, abs(q) * mark) for q, _, t in legs]
    price: Decimal | None = None
    for _ in range(16):
        numerator = base + sum((t.cum for t in tiers), Decimal(0))
        numerator -= sum((q * entry for q, entry, _ in legs), Decimal(0))
        denominator = sum(
            (abs(q) * t.mmr for (q, _, _), t in zip(legs, tiers, strict=True)), Decimal(0)
        ) - sum((q for q, _, _ in legs), Decimal(0))
        if not denominator:
            return None
        price = numerator / denominator
        if price <= 0:
            return None
        retiered = [_tier_for(t, abs(q) * price) for q, _, t in legs]
        if retiered == tiers:
            break
        tiers = retiered
    return price


class _Connection(shared.WsConnection):
    """A Binance websocket: market streams, or the user-data stream of one listen key."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        super().__init__(request, ws, kind)
        self.combined = False  # /stream endpoints wrap payloads as {"stream": ..., "data": ...}
        self.listen_key: str | None = None


# ---- the server ------------------------------------------------------------------------------


class FakeBinanceUSDM(FakeExchangeServer[_Account, _Connection]):
    """Binance USDⓈ-M futures on 127.0.0.1, scripted from tests. See the module docstring."""

    # "300 connections per attempt every 5 minutes" per IP (developers.binance.com, WebSocket
    # API, Connection limits; the USDⓈ-M futures pages state no cap of their own)
    WS_OPENINGS_PER_IP: ClassVar[tuple[int, float] | None] = (300, 300.0)
    CCXT_OPTIONS: ClassVar[dict[str, Any]] = {
        # binance's fetchCurrencies calls spot wallet endpoints (sapi/v1/capital/config/getall)
        # whenever an API key is set; a USDⓈ-M server does not serve them, and load_markets would
        # fail. Currencies are then derived from the markets, which is all a futures client needs.
        "fetchCurrencies": False,
    }

    NAME: ClassVar[str] = "Binance USDⓈ-M futures"
    BAN_DURATION_S: ClassVar[float] = 120.0
    DEFAULT_LEVERAGE: ClassVar[int] = DEFAULT_LEVERAGE

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        super().__init__(mark_interval_s=mark_interval_s)
        # PUT /fapi/v1/listenKey requests that reached the endpoint (whatever their answer;
        # those failed by fail_rest() never reach it)
        self.listen_key_puts = 0
        self.listen_key_put_paths: list[str] = []  # /fapi/v1/listenKey or /papi/v1/listenKey
        # the request weight spent per API (fapi, papi) since reset_weight(), at Binance's
        # documented weights (REQUEST_WEIGHTS), and the paths sent that have none listed
        self.used_weight: dict[str, int] = dict.fromkeys(REQUEST_WEIGHTS, 0)
        # the same by client address: Binance counts the weight per IP
        self.used_weight_by_ip: dict[str, dict[str, int]] = {}
        self.unweighed: list[str] = []
        # "Portfolio Margin Pro Tiered Collateral Rate": the exchange's tiers per coin, and how
        # often they were read
        self.collateral_tiers: dict[str, list[dict[str, Any]]] = {}
        self.collateral_rate_reads = 0
        # the tiers refused to every key, answered as Binance answers a Portfolio Margin Pro
        # endpoint for an account that is not one (-21001, "How to Use the Binance Portfolio
        # Margin Pro Program APIs": its endpoints "will not be available for Portfolio Margin
        # (unless under exceptional circumstances)")
        self.collateral_rates_refused = False
        # conditional orders placed before the Algo Service (as_strategy_order): a portfolio
        # margin account's are listed by /papi/v1/um/conditional/openOrders, not the algo one
        self._strategy_orders: set[str] = set()
        self._markets: dict[str, _Market] = {}
        # the COIN-M perpetuals (/dapi/v1/exchangeInfo, dstream marks), by market id
        self._coin_markets = {
            market_id: _CoinMarket(market_id, base, _dec(size), _dec(mark), delivery_ms=delivery)
            for market_id, base, size, mark, delivery in _DEFAULT_COIN_MARKETS
        }
        # markets whose leverage brackets GET /fapi/v1/leverageBracket leaves out
        self._brackets_withheld: set[str] = set()
        # GET /fapi/v1/assetIndex rows by symbol ("BTCUSD"); Binance always lists the
        # margin assets' own rows (the docs' stream example has USDTUSD)
        self._asset_index: dict[str, dict[str, Any]] = {}
        for asset in ("USDT", "USDC"):
            self._index_row(asset, Decimal(1), Decimal(0), Decimal(0))
        # the rows served at 1 until a test sets them
        self._par_rows = {"USDTUSD", "USDCUSD"}
        # assetIndex rows that follow a market's mark: (market id, index / mark)
        self._index_follows: dict[str, tuple[str, Decimal]] = {}
        # the asset index streams go quiet (a stale stream), REST still answers
        self.asset_index_paused = False
        # SUBSCRIBE requests naming ``!assetIndex@arr`` (a first one, or a renewal)
        self.asset_index_subscribes = 0
        # the most USDT's and USDC's indices move each mark interval (0: they stand still)
        self.rates_walk = Decimal(0)
        self._rates_rng = random.Random(1)
        # positionRisk v3 "adl" by symbol (ADL_QUANTILE where none is set)
        self._adl: dict[str, int] = {}
        # the diff depth streams: the last update id per market; per stream, the book, id
        # and time of its last event, and the streams with an event due
        self._book_update_ids: dict[str, int] = {}
        self._depth_sent: dict[str, tuple[BookSides, int, float]] = {}
        self._depth_due: set[str] = set()
        self.depth_events = 0
        # the USDT balance of the insurance fund pool covering each symbol (by market id)
        self._insurance: dict[str, str] = {}
        real = _load_real_brackets()
        for market_id, base, quote, mark, tick, step, min_notional, sub in _DEFAULT_MARKETS:
            self._markets[market_id] = _Market(
                market_id,
                base,
                quote,
                _dec(mark),
                real[market_id],
                tick,
                step,
                min_notional,
                sub,
            )

    # ---- ccxt wiring -----------------------------------------------------------------------------

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        """Every REST family is pointed here, not only the ``fapi*`` ones binanceusdm uses, so
        that nothing can leave the loopback."""
        return {
            "fapiPublic": f"{http}/fapi/v1",
            "fapiPublicV2": f"{http}/fapi/v2",
            "fapiPublicV3": f"{http}/fapi/v3",
            "fapiPrivate": f"{http}/fapi/v1",
            "fapiPrivateV2": f"{http}/fapi/v2",
            "fapiPrivateV3": f"{http}/fapi/v3",
            "fapiData": f"{http}/futures/data",
            "public": f"{http}/api/v3",
            "private": f"{http}/api/v3",
            "v1": f"{http}/api/v1",
            "sapi": f"{http}/sapi/v1",
            "sapiV2": f"{http}/sapi/v2",
            "sapiV3": f"{http}/sapi/v3",
            "sapiV4": f"{http}/sapi/v4",
            "dapiPublic": f"{http}/dapi/v1",
            "dapiPrivate": f"{http}/dapi/v1",
            "dapiPrivateV2": f"{http}/dapi/v2",
            "dapiData": f"{http}/futures/data",
            "eapiPublic": f"{http}/eapi/v1",
            "eapiPrivate": f"{http}/eapi/v1",
            "papi": f"{http}/papi/v1",
            "papiV2": f"{http}/papi/v2",
            "ws": {
                # ccxt rewrites a linear URL ending in /ws to /market/ws/N (mark prices, tickers),
                # /public/ws/N (depth, trades) and /private/ws?listenKey=K (user data)
                "linear": f"{ws}/ws",
                "inverse": f"{ws}/ws",
                "spot": f"{ws}/ws",
                "margin": f"{ws}/ws",
                "stock": f"{ws}/equity/ws",
                "option": f"{ws}/public/ws",
                "optionMarket": f"{ws}/market/ws",
                "optionPrivate": f"{ws}/private/ws",
                "papi": f"{ws}/pm/ws",
                "ws-api": {
                    "spot": f"{ws}/ws-api/v3",
                    "linear": f"{ws}/ws-fapi/v1",
                    "inverse": f"{ws}/ws-dapi/v1",
                },
            },
        }

    # ---- markets ---------------------------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        return _split_symbol(symbol)[0]

    @scripted
    def add_symbol(
        self,
        symbol: str,
        mark: Num,
        brackets: list[dict[str, Any]] | None = None,
        *,
        tick_size: str | None = None,
        step_size: str = "0.001",
        min_notional: str = "5",
    ) -> None:
        """Add (or replace) a USDⓈ-M perpetual. ``symbol`` as 'BASE/QUOTE:QUOTE' or 'BASEQUOTE'."""
        market_id, base, quote = _split_symbol(symbol)
        price = shared.positive(mark, "mark")
        self._markets[market_id] = _Market(
            market_id,
            base,
            quote,
            price,
            brackets if brackets is not None else _generic_brackets(),
            tick_size or _default_tick(price),
            step_size,
            min_notional,
            [],
        )

    @scripted
    def withhold_brackets(self, symbol: str, withheld: bool = True) -> None:
        """Leave ``symbol`` out of ``GET /fapi/v1/leverageBracket`` (no brackets for it): an
        account whose tier table alertd cannot read (its positions still figure here)."""
        market_id = self._market(symbol).id
        if withheld:
            self._brackets_withheld.add(market_id)
        else:
            self._brackets_withheld.discard(market_id)

    @scripted
    def adjust_brackets(self, api_key: str, symbol: str, coef: str) -> None:
        """Adjust one account's brackets of ``symbol``: its answer to GET
        /fapi/v1/leverageBracket carries ``notionalCoef`` ("user symbol bracket multiplier,
        only appears when user's symbol bracket is adjusted", Binance's "Notional and Leverage
        Brackets (USER_DATA)") and, this server's reading of it, the market's notional edges
        times it (``cum`` derived again); its figures here follow them."""
        self._account(api_key).bracket_coefs[self._market(symbol).id] = Decimal(coef)

    def _account_brackets(self, account: _Account, market: _Market) -> list[dict[str, Any]]:
        """The account's brackets of ``market``: the market's, or adjusted (adjust_brackets)."""
        coef = account.bracket_coefs.get(market.id)
        if coef is None:
            return market.brackets
        edges = ("notionalFloor", "notionalCap")
        return _normalize_brackets(
            [
                {k: v for k, v in b.items() if k != "cum"}
                | {k: float(_dec(b[k]) * coef) for k in edges}
                for b in market.brackets
            ]
        )

    def _account_tiers(self, account: _Account, market: _Market) -> list[_Tier]:
        if market.id not in account.bracket_coefs:
            return market.tiers
        return _tiers(self._account_brackets(account, market))

    def _bracket_row(self, account: _Account, market: _Market) -> dict[str, Any]:
        """The account's row of ``market`` in GET /fapi/v1/leverageBracket."""
        coef = account.bracket_coefs.get(market.id)
        row: dict[str, Any] = {"symbol": market.id}
        if coef is not None:
            row["notionalCoef"] = float(coef)
        withheld = market.id in self._brackets_withheld
        return row | {"brackets": [] if withheld else self._account_brackets(account, market)}

    @scripted
    def set_tiers(self, symbol: str, brackets: list[dict[str, Any]]) -> None:
        """Replace a symbol's leverage brackets (raw Binance dicts; ``cum`` derived if absent)."""
        self._market(symbol).set_brackets(brackets)

    def tick(self, symbol: str) -> Decimal:
        return Decimal(self._market(symbol).tick_size)

    @scripted
    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        """Move the mark price; subscribers of ``<sym>@markPrice[@1s]`` and
        ``!markPrice@arr[@1s]`` get a ``markPriceUpdate`` at once (unless ``push=False``).
        Binance sends no position update on price moves, and neither does this server."""
        market = self._market(symbol)
        market.mark = shared.positive(price, "mark")
        moved = self._move_indices(market)
        if push:
            frame = self._mark_frame(market, now_ms())
            self._on_loop(self._push_marks, [frame])
            if moved:
                self._on_loop(self._push_asset_index, moved)

    @scripted
    def set_cm_mark(self, market_id: str, price: Num, *, push: bool = True) -> None:
        """Move a COIN-M perpetual's mark (``BTCUSD_PERP``); ``<id>@markPrice[@1s]``
        subscribers (dstream's "Mark Price Stream", the same ``markPriceUpdate``) get it."""
        market = self._coin_markets[market_id]
        market.mark = shared.positive(price, "mark")
        if push:
            self._on_loop(self._push_marks, [self._mark_frame(market, now_ms())], False)

    def cm_mark(self, market_id: str) -> Decimal:
        return self._coin_markets[market_id].mark

    def _mark_frame(self, market: _Market | _CoinMarket, event_ms: int) -> dict[str, Any]:
        return {
            "e": "markPriceUpdate",
            "E": event_ms,
            "s": market.id,
            "p": _f8(market.mark),
            "i": _f8(market.mark),
            "P": _f8(market.mark),
            "r": _f8(market.funding_rate),
            "T": (event_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS,
        }

    def _push_marks(self, frames: list[dict[str, Any]], every: bool = True) -> None:
        """``frames`` to their symbols' streams, and (``every``: USDⓈ-M's) to the all-market
        streams; COIN-M's are dstream's, whose all-market stream is not served here."""
        by_stream = {f["s"].lower(): f for f in frames}
        for conn in self._connections_of():
            for stream in list(conn.streams):
                name, _, rest = stream.partition("@")
                if rest in ("markPrice", "markPrice@1s") and name in by_stream:
                    self._send(conn, stream, by_stream[name])
                elif every and stream in ("!markPrice@arr", "!markPrice@arr@1s"):
                    self._send(conn, stream, frames)

    # ---- the diff depth stream: ``<symbol>@depth``, ``@depth@500ms``, ``@depth@100ms`` -------
    # (developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/
    # Diff-Book-Depth-Streams): each ``depthUpdate`` carries the levels that changed since the
    # stream's previous event (quantity "0": the level is gone), at most one per the stream's
    # period, and update ids: ``U`` first, ``u`` last, ``pu`` the previous event's ``u``; the
    # REST book's ``lastUpdateId`` is the ``u`` it is current to, so a client syncs by dropping
    # events with ``u`` below it (ccxt's watch_order_book does).

    # each diff stream's update rate (ms): "<symbol>@depth" is the 250 ms one
    DEPTH_STREAMS: ClassVar[dict[str, int]] = {
        "depth": 250,
        "depth@500ms": 500,
        "depth@100ms": 100,
        "depth@0ms": 0,
    }

    def _book_changed(self, market_id: str, before: BookSides, after: BookSides) -> None:
        previous = self._book_update_ids.get(market_id, 0)
        # a real book moves by many updates between two events: ids advance by more than one
        self._book_update_ids[market_id] = previous + 3
        self._on_loop(self._push_depth, market_id, before, previous)

    def _push_depth(self, market_id: str, before: BookSides, previous: int) -> None:
        """Each stream of ``market_id``'s book sends the changes since its last event (or,
        for its first, since the book before this change), at once if its period has passed
        since, else when it has (merged, as Binance does)."""
        name = market_id.lower()
        for rest, period_ms in self.DEPTH_STREAMS.items():
            stream = f"{name}@{rest}"
            if not self._subscribers(stream):
                self._depth_sent.pop(stream, None)
                continue
            sent = self._depth_sent.setdefault(stream, (before, previous, -float("inf")))
            wait_s = sent[2] + period_ms / 1000 - time.monotonic()
            if wait_s <= 0:
                self._send_depth(stream, market_id)
            elif stream not in self._depth_due:
                self._depth_due.add(stream)
                loop = asyncio.get_running_loop()
                loop.call_later(wait_s, self._send_due_depth, stream, market_id)

    def _send_due_depth(self, stream: str, market_id: str) -> None:
        self._depth_due.discard(stream)
        if self._subscribers(stream):
            self._send_depth(stream, market_id)

    def _send_depth(self, stream: str, market_id: str) -> None:
        """One ``depthUpdate`` on ``stream``: the levels changed since its last one (all of
        the book for its first: the ids tell a client to drop what its REST book has)."""
        book = self._books.get(market_id, ([], []))
        last = self._book_update_ids.get(market_id, 0)
        before, previous, _ = self._depth_sent[stream]
        self._depth_sent[stream] = (book, last, time.monotonic())
        if last == previous:
            return
        now = now_ms()
        frame = {
            "e": "depthUpdate",
            "E": now,
            "T": now,
            "s": market_id,
            "U": previous + 1,
            "u": last,
            "pu": previous,
            "b": _book_diff(before[0], book[0]),
            "a": _book_diff(before[1], book[1]),
        }
        self.depth_events += 1
        for conn in self._subscribers(stream):
            self._send(conn, stream, frame)

    def depth_subscribers(self, symbol: str) -> int:
        """The connections subscribed to ``symbol``'s diff depth stream."""
        name = self._market_id(symbol).lower()
        return sum(
            1
            for conn in self._connections_of()
            for stream in conn.streams
            if stream.partition("@")[0] == name and stream.partition("@")[2] in self.DEPTH_STREAMS
        )

    def _push_periodic_marks(self) -> None:
        event_ms = now_ms()
        self._push_marks([self._mark_frame(m, event_ms) for m in self._markets.values()])
        coin_m = [self._mark_frame(m, event_ms) for m in self._coin_markets.values()]
        self._push_marks(coin_m, every=False)
        if self.rates_walk:
            self._walk_rates()
        self._push_asset_index()

    def _walk_rates(self) -> None:
        """USDT's and USDC's indices a random step of up to ``rates_walk`` each (benchmarks)."""
        for key in ("USDTUSD", "USDCUSD"):
            row = self._asset_index.get(key)
            if row is not None:
                step = Decimal(str(round(self._rates_rng.uniform(-1, 1), 4))) * self.rates_walk
                price = _dec(row["index"]) + step
                bid, ask = _dec(row["bidBuffer"]), _dec(row["askBuffer"])
                self._index_row(key.removesuffix("USD"), price, bid, ask)

    # ---- accounts --------------------------------------------------------------------------------

    @scripted
    def add_account(
        self, api_key: str, secret: str, wallet_balance: Num = "1000", asset: str = "USDT"
    ) -> None:
        if not api_key or not secret:
            raise ValueError("api_key and secret must be non-empty")
        self._accounts[api_key] = _Account(api_key, secret, asset.upper(), _dec(wallet_balance))

    @scripted
    def set_multi_assets_coins(self, api_key: str, coins: dict[str, Num], on: bool = True) -> None:
        """Multi-assets mode with these other coins (negative: borrowed) beside the settle
        wallet, valued by ``assetIndex``: each needs an index (``set_asset_index``) to count
        in the totals. (``set_multi_assets`` instead gives each coin its USD value.)"""
        account = self._account(api_key)
        account.multi_assets = on
        account.coins = {asset.upper(): _dec(amount) for asset, amount in coins.items()}

    @scripted
    def set_portfolio_margin(
        self, api_key: str, on: bool = True, *, other_mm: Num = "0", open_loss: Num = "0"
    ) -> None:
        """A portfolio margin account: its USDⓈ-M positions, wallet and uniMMR served under
        /papi ("Account Information", "Query UM Position Information", "Get UM Account
        Detail", "Account Balance"), its user data on the portfolio margin stream. Its
        maintenance margin is its UM positions' (Binance's brackets) plus ``other_mm`` USD
        (COIN-M positions and margin loans this server does not hold); its adjusted equity
        the wallet, the UM positions' PnL and the multi-assets coins at their index, less
        ``open_loss``; uniMMR is the one over the other (Binance FAQ "What Is the Unified
        Account Maintenance Margin Ratio (uniMMR)": ``∑adjustedEquity / ∑MM``), moving with
        the marks."""
        account = self._account(api_key)
        account.portfolio = on
        account.portfolio_other_mm = _dec(other_mm)
        account.portfolio_open_loss = _dec(open_loss)

    @scripted
    def set_cm_positions(self, api_key: str, rows: list[dict[str, Any]]) -> None:
        """The rows a portfolio margin account's "Query CM Position Information" answers
        (``CM_POSITION_EXAMPLE``'s fields), as given."""
        self._account(api_key).cm_rows = [dict(row) for row in rows]

    @scripted
    def open_cm_position(
        self, api_key: str, market_id: str, contracts: Num, entry: Num, liquidation: Num
    ) -> None:
        """A portfolio margin account's COIN-M position in one of this server's COIN-M markets
        (``contracts`` signed, one-way mode), its figures computed at the market's mark from
        then on: "Query CM Position Information" (``unRealizedProfit`` = contracts x contract
        size x (1 / entry - 1 / mark) and ``notionalValue`` = contracts x contract size / mark,
        in the coin: Binance COIN-M FAQ "Leverage and Margin of COIN-Margined Futures"), its
        maintenance margin in "Get CM Account Detail" (its market's brackets:
        ``set_cm_brackets``), and uniMMR (the PnL counted at the coin's mark, the index here;
        the margin likewise). ``liquidation``: Binance's price of the whole account, as scripted."""
        self._coin_markets[market_id]  # a market this server lists
        # a fill: its row's "updateTime" (the account's stamp here) moves with it
        self._account(api_key).update_ms = now_ms()
        self._account(api_key).cm_held[market_id] = (
            _dec(contracts),
            shared.positive(entry, "entry"),
            _dec(liquidation),
        )

    @scripted
    def set_cm_brackets(self, market_id: str, brackets: list[dict[str, Any]]) -> None:
        """The COIN-M market's leverage brackets (``CM_BRACKET_FIRST``'s fields, ascending),
        as "Query CM Notional and Leverage Brackets" lists them and as its positions'
        maintenance margin is computed from then on."""
        self._coin_markets[market_id].brackets = [dict(row) for row in brackets]

    @scripted
    def set_cm_coin(self, api_key: str, coin: str, wallet: Num, collateral_rate: Num) -> None:
        """A portfolio margin account's ``wallet`` of ``coin`` (COIN-M's margin) and the coin's
        collateral rate: the coin's equity, its wallet and its COIN-M positions' PnL, counts
        in uniMMR at the coin's mark as min(equity x rate, equity) (Binance FAQ "What Is the
        Unified Account Maintenance Margin Ratio (uniMMR)"). Without it: no wallet, rate 1."""
        rate = shared.positive(collateral_rate, "collateral_rate")
        self._account(api_key).cm_coins[coin.upper()] = (_dec(wallet), rate)
        self._account(api_key).cm_coin_ms[coin.upper()] = now_ms()
        # the rate as "Portfolio Margin Pro Tiered Collateral Rate" lists it: one tier
        self.collateral_tiers[coin.upper()] = [
            {
                "tierFloor": "0.0000",
                "tierCap": "999999999999.0000",
                "collateralRate": _plain(rate),
                "cum": "0.0000",
            }
        ]

    @scripted
    def set_collateral_tiers(self, coin: str, tiers: list[dict[str, Any]] | None) -> None:
        """What "Portfolio Margin Pro Tiered Collateral Rate" answers for ``coin``: its rows
        (``collateralInfo``) as given; None: the coin not listed. The exchange's, not an
        account's: the same for every key."""
        if tiers is None:
            self.collateral_tiers.pop(coin.upper(), None)
        else:
            self.collateral_tiers[coin.upper()] = [dict(t) for t in tiers]

    @scripted
    def reduce_cm_position(self, api_key: str, market_id: str, contracts: Num) -> None:
        """A COIN-M fill at the market's mark reducing the held position to ``contracts``
        (signed, 0: closed): the closed part's PnL, in the coin, realized into the coin's
        wallet (COIN-M's realized PnL is the coin's: Binance COIN-M FAQ "Leverage and Margin
        of COIN-Margined Futures"), so uniMMR keeps it."""
        account = self._account(api_key)
        market = self._coin_markets[market_id]
        held, entry, liquidation = account.cm_held[market_id]
        left = _dec(contracts)
        if left * held < 0 or abs(left) > abs(held):
            raise ValueError("reduce_cm_position: only a reduction of the held position")
        closed = (held - left) * market.contract_size
        account.update_ms = now_ms()  # a fill: its row's "updateTime" moves with it
        wallet, rate = self._cm_coins(account).get(market.base, (Decimal(0), Decimal(1)))
        account.cm_coins[market.base] = (wallet + closed * (1 / entry - 1 / market.mark), rate)
        account.cm_coin_ms[market.base] = account.update_ms
        if left == 0:
            del account.cm_held[market_id]
        else:
            account.cm_held[market_id] = (left, entry, liquidation)

    def _cm_figures(self, account: _Account) -> list[tuple[_CoinMarket, Decimal, Decimal]]:
        """Each held COIN-M position: its market, size in USD (signed) and entry price."""
        out = []
        for market_id, (contracts, entry, _) in account.cm_held.items():
            market = self._coin_markets[market_id]
            out.append((market, contracts * market.contract_size, entry))
        return out

    @scripted
    def set_pm_coin_balance(
        self,
        api_key: str,
        coin: str,
        *,
        cross_margin: Num = "0",
        borrowed: Num = "0",
        interest: Num = "0",
        um_wallet: Num = "0",
    ) -> None:
        """A portfolio margin account's ``coin`` in its cross margin account (held,
        ``borrowed`` and its ``interest``) and UM wallet, in the coin: "Account Balance" (GET
        /papi/v1/balance) lists them, and they count in the coin's equity in uniMMR at its
        index with its COIN-M wallet and positions' PnL (Binance FAQ "What Is the Unified
        Account Maintenance Margin Ratio (uniMMR)": each asset's equity)."""
        self._account(api_key).pm_balances[coin.upper()] = {
            "crossMarginAsset": _dec(cross_margin),
            "crossMarginBorrowed": _dec(borrowed),
            "crossMarginInterest": _dec(interest),
            "umWalletBalance": _dec(um_wallet),
        }

    def _collateral_value(self, coin: str, usd: Decimal, rate: Decimal) -> Decimal:
        """The coin's equity of ``usd`` as uniMMR counts it: in full below zero; above, each
        tier's rate on the part of the value within the tier (``tierFloor`` to ``tierCap``
        of "Portfolio Margin Pro Tiered Collateral Rate"; past the last cap its rate), or
        ``rate`` where the coin has no tiers."""
        tiers = self.collateral_tiers.get(coin)
        if usd <= 0 or not tiers:
            return min(usd * rate, usd)
        ordered = sorted(tiers, key=lambda t: Decimal(str(t["tierFloor"])))
        value = Decimal(0)
        for i, tier in enumerate(ordered):
            floor = Decimal(str(tier["tierFloor"]))
            cap = None if i == len(ordered) - 1 else Decimal(str(tier["tierCap"]))
            top = usd if cap is None else min(usd, cap)
            if top > floor:
                value += (top - floor) * Decimal(str(tier["collateralRate"]))
        return value

    def _pm_other(self, account: _Account, coin: str) -> Decimal:
        """The coin's cross margin equity and UM wallet, in the coin (set_pm_coin_balance)."""
        row = account.pm_balances.get(coin)
        if row is None:
            return Decimal(0)
        return (
            row["crossMarginAsset"]
            - row["crossMarginBorrowed"]
            - row["crossMarginInterest"]
            + row["umWalletBalance"]
        )

    def _cm_usd(self, account: _Account) -> tuple[Decimal, Decimal]:
        """The COIN-M coins' equity as uniMMR counts it (each coin's wallet and positions' PnL
        at its mark, at most at its collateral rate) and the positions' maintenance margin, in
        USD."""
        # the coin's index: its perpetual's mark here (a quarterly's mark carries its basis)
        marks = {m.base: m.mark for m in self._coin_markets.values() if m.delivery_ms is None}
        coins = self._cm_coins(account)
        equity = {coin: wallet * marks[coin] for coin, (wallet, _) in coins.items()}
        for coin in account.pm_balances:
            equity[coin] = (
                equity.get(coin, Decimal(0)) + self._pm_other(account, coin) * marks[coin]
            )
        mm = Decimal(0)
        for market, size, entry in self._cm_figures(account):
            equity.setdefault(market.base, Decimal(0))
            equity[market.base] += size * (1 / entry - 1 / market.mark) * market.mark
            mm += market.maint_margin(size) * market.mark
        counted = Decimal(0)
        for coin, usd in equity.items():
            rate = coins.get(coin, (Decimal(0), Decimal(1)))[1]
            counted += self._collateral_value(coin, usd, rate)
        return counted, mm

    def _cm_coins(self, account: _Account) -> dict[str, tuple[Decimal, Decimal]]:
        """Each coin's COIN-M wallet and collateral rate: a scripted "Get CM Account Detail"
        asset's ``crossWalletBalance`` (rate 1 unless set), then ``set_cm_coin``'s."""
        coins = {
            str(a["asset"]): (Decimal(str(a["crossWalletBalance"])), Decimal(1))
            for a in account.cm_account.get("assets", [])
        }
        return coins | account.cm_coins

    def cm_position_risk(self, api_key: str) -> list[dict[str, Any]]:
        """The body of "Query CM Position Information" for this account now, for assertions."""
        return self._cm_rows(self._account(api_key))

    def _cm_rows(self, account: _Account) -> list[dict[str, Any]]:
        rows = list(account.cm_rows)
        for market, size, entry in self._cm_figures(account):
            contracts, _, liquidation = account.cm_held[market.id]
            rows.append(
                CM_POSITION_EXAMPLE
                | {
                    "symbol": market.id,
                    "positionAmt": _plain(contracts),
                    "positionSide": "BOTH",
                    "entryPrice": _f8(entry),
                    "markPrice": _f8(market.mark),
                    "unRealizedProfit": _f8(size * (1 / entry - 1 / market.mark)),
                    "notionalValue": _f8(size / market.mark),
                    "liquidationPrice": _f8(liquidation),
                    "updateTime": account.update_ms,
                }
            )
        return rows

    def _cm_account_body(self, account: _Account) -> dict[str, Any]:
        body = dict(account.cm_account)
        held = []
        for market, size, entry in self._cm_figures(account):
            held.append(
                CM_ACCOUNT_EXAMPLE["positions"][0]
                | {
                    "symbol": market.id,
                    "positionAmt": _plain(account.cm_held[market.id][0]),
                    "entryPrice": _f8(entry),
                    "maintMargin": _f8(market.maint_margin(size)),
                    "unrealizedProfit": _f8(size * (1 / entry - 1 / market.mark)),
                }
            )
        body["positions"] = [*body.get("positions", []), *held]
        # the COIN-M wallets the uniMMR here counts (set_cm_coin's beside the scripted ones)
        assets = {a["asset"]: a for a in body.get("assets", [])}
        for coin, (wallet, _) in account.cm_coins.items():
            row = assets.get(coin, CM_ACCOUNT_EXAMPLE["assets"][0])
            assets[coin] = row | {"asset": coin, "crossWalletBalance": _f8(wallet)}
            if coin in account.cm_coin_ms:
                assets[coin]["updateTime"] = account.cm_coin_ms[coin]
        body["assets"] = list(assets.values())
        return body

    @scripted
    def set_cm_account(self, api_key: str, body: dict[str, Any]) -> None:
        """What a portfolio margin account's "Get CM Account Detail" answers
        (``CM_ACCOUNT_EXAMPLE``'s fields), as given."""
        self._account(api_key).cm_account = dict(body)

    @scripted
    def push_cm_position_update(self, api_key: str, row: dict[str, Any]) -> None:
        """A COIN-M fill's push on a portfolio margin account's stream: "Event: Futures
        Balance and Position Update" with ``fs`` CM (the business unit), its ``a.B`` the
        coin's wallet (``cw`` "Cross Wallet Balance": the account's COIN-M wallet of the row's
        coin now, as "Get CM Account Detail" lists it) and ``a.P`` the COIN-M position (``s``,
        ``pa``, ``ep``, ``ps``, ...), as the Portfolio Margin user data stream docs list them."""
        account = self._account(api_key)
        stamp = now_ms()
        market = self._coin_markets.get(str(row.get("s")))
        base = market.base if market is not None else "BTC"
        wallet = _f8(self._cm_coins(account).get(base, (Decimal(0), Decimal(1)))[0])
        coin = {"a": base, "wb": wallet, "cw": wallet, "bc": "0"}
        event = {
            "e": "ACCOUNT_UPDATE",
            "fs": "CM",
            "E": stamp,
            "T": stamp - 1,
            "a": {"m": "ORDER", "B": [coin], "P": [row]},
        }
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def push_cm_balance_update(self, api_key: str, coin: str, reason: str) -> None:
        """A portfolio margin account's push of ``coin``'s COIN-M wallet alone (a transfer, a
        withdrawal, a funding fee: "Event: Futures Balance and Position Update" with ``fs`` CM,
        ``a.m`` the event reason type ``reason`` (WITHDRAW, ASSET_TRANSFER, FUNDING_FEE, ...),
        ``a.B`` the coin's wallet now, ``a.P`` empty), as the Portfolio Margin user data
        stream docs list it."""
        account = self._account(api_key)
        stamp = now_ms()
        wallet = _f8(self._cm_coins(account).get(coin.upper(), (Decimal(0), Decimal(1)))[0])
        balance = {"a": coin.upper(), "wb": wallet, "cw": wallet, "bc": "0"}
        event = {
            "e": "ACCOUNT_UPDATE",
            "fs": "CM",
            "E": stamp,
            "T": stamp - 1,
            "a": {"m": reason, "B": [balance], "P": []},
        }
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def push_margin_account_update(
        self,
        api_key: str,
        coin: str,
        also: Mapping[str, Num] | None = None,
        updated_ms: int | None = None,
    ) -> None:
        """A portfolio margin account's push of ``coin``'s cross margin balance as
        ``set_pm_coin_balance`` left it: "Event: Margin Account Update"
        (``outboundAccountPosition``, ``B[]`` of ``a``, ``f`` free and ``l`` locked, all of it
        free here; ``u`` the time of the last account update, ``updated_ms`` if given), as the
        Portfolio Margin user data stream docs list it; with a row of each asset of ``also``,
        its free balance as given (one event "contains the assets that were possibly changed
        by the event": a margin trade's two)."""
        account = self._account(api_key)
        stamp = now_ms()
        row = account.pm_balances.get(coin.upper(), {})
        held = row.get("crossMarginAsset", Decimal(0))
        balances = [{"a": coin.upper(), "f": _f8(held), "l": "0.00000000"}]
        for asset, free in (also or {}).items():
            balances.append({"a": asset, "f": _f8(_dec(free)), "l": "0.00000000"})
        updated = stamp - 1 if updated_ms is None else updated_ms
        event = {"e": "outboundAccountPosition", "E": stamp, "u": updated, "U": stamp,
                 "B": balances}  # fmt: skip
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def spend_margin_usdt(self, api_key: str, amount: Num) -> None:
        """``amount`` USDT spent in a portfolio margin account's cross margin account (a margin
        buy): the local Binance holds the account's USDT as one wallet, counted in full in
        uniMMR. Nothing pushed: the trade's ``outboundAccountPosition`` is
        ``push_margin_account_update``'s."""
        self._account(api_key).wallet -= _dec(amount)

    @scripted
    def balance_updated_ms(self, api_key: str) -> int:
        """The ``updateTime`` of the account's rows of "Account Balance" as read now."""
        return self._account(api_key).update_ms

    @scripted
    def push_um_coin_balance(self, api_key: str, coin: str, reason: str) -> None:
        """A portfolio margin account's push of ``coin``'s UM wallet as ``set_pm_coin_balance``
        left it (a fund collection, a BNB transfer): "Event: Futures Balance and Position
        Update" with ``fs`` UM, ``a.m`` the event reason type ``reason``, ``a.B`` the coin's
        row (``wb`` the wallet balance, ``cw`` the cross wallet balance: the same, no isolated
        position here), ``a.P`` empty, as the Portfolio Margin user data stream docs list it."""
        account = self._account(api_key)
        stamp = now_ms()
        held = _f8(account.pm_balances.get(coin.upper(), {}).get("umWalletBalance", Decimal(0)))
        balance = {"a": coin.upper(), "wb": held, "cw": held, "bc": "0"}
        event = {"e": "ACCOUNT_UPDATE", "fs": "UM", "E": stamp, "T": stamp - 1,
                 "a": {"m": reason, "B": [balance], "P": []}}  # fmt: skip
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def push_liability_change(
        self,
        api_key: str,
        coin: str,
        kind: str,
        principal: Num = "0",
        interest: Num = "0",
        total: Num | None = None,
    ) -> None:
        """A portfolio margin account's push of ``coin``'s margin loan as ``set_pm_coin_balance``
        left it: "Event: Liability Update" (``liabilityChange``: ``t`` the ``kind`` (BORROW,
        REPAY, INTEREST...), ``p`` and ``i`` the change's principal and interest, ``l`` the
        total liability, borrowed and interest), as the Portfolio Margin user data stream docs
        list it; ``total`` the ``l`` given (a USDT loan: the local Binance holds USDT as one
        wallet, set_pm_coin_balance being the coins')."""
        account = self._account(api_key)
        stamp = now_ms()
        row = account.pm_balances.get(coin.upper(), {})
        if total is None:
            total = row.get("crossMarginBorrowed", Decimal(0)) + row.get(
                "crossMarginInterest", Decimal(0)
            )
        event = {"e": "liabilityChange", "E": stamp, "a": coin.upper(), "t": kind,
                 "T": stamp, "p": _f8(_dec(principal)), "i": _f8(_dec(interest)),
                 "l": _f8(_dec(total))}  # fmt: skip
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def reset_weight(self) -> None:
        self.used_weight = dict.fromkeys(REQUEST_WEIGHTS, 0)
        self.used_weight_by_ip = {}
        self.unweighed = []

    def _count_request(self, request: web.Request) -> None:
        for api, weights in REQUEST_WEIGHTS.items():
            weight = weights.get(request.path)
            if weight is not None:
                spent = weight[0 if "symbol" in request.query else 1]
                self.used_weight[api] += spent
                by_ip = self.used_weight_by_ip.setdefault(
                    peer(request), dict.fromkeys(REQUEST_WEIGHTS, 0)
                )
                by_ip[api] += spent
                return
        self.unweighed.append(request.path)

    @scripted
    def set_cm_conditional_orders(self, api_key: str, rows: list[dict[str, Any]]) -> None:
        """The open CM conditional orders of a portfolio margin account
        (``CM_CONDITIONAL_EXAMPLE``'s fields), as given; asked by symbol, that symbol's."""
        self._account(api_key).cm_orders = [dict(row) for row in rows]

    @scripted
    def set_asset_index(
        self,
        asset: str,
        index: Num,
        bid_buffer: Num,
        ask_buffer: Num,
        *,
        follows: str | None = None,
    ) -> None:
        """One row of ``GET /fapi/v1/assetIndex`` (``<asset>USD``), in Binance's format.
        ``follows``: a symbol whose mark moves the index from now on (the index keeps its
        ratio to that mark, as a coin's index follows its market)."""
        price = _dec(index)
        self._index_row(asset, price, _dec(bid_buffer), _dec(ask_buffer))
        key = f"{asset.upper()}USD"
        self._par_rows.discard(key)
        self._on_loop(self._push_asset_index, [key])
        if follows is None:
            self._index_follows.pop(key, None)
        else:
            market = self._market(follows)
            self._index_follows[key] = (market.id, price / market.mark)

    def _move_indices(self, market: _Market) -> list[str]:
        """The index rows that follow ``market``'s mark moved with it; their symbols."""
        moved = []
        for key, (market_id, basis) in self._index_follows.items():
            if market_id == market.id:
                row = self._asset_index[key]
                price = basis * market.mark
                self._index_row(
                    key.removesuffix("USD"), price, _dec(row["bidBuffer"]), _dec(row["askBuffer"])
                )
                moved.append(key)
        return moved

    # the docs' response example of the "Multi-Assets Mode Asset Index" stream
    # (developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/
    # Multi-Assets-Mode-Asset-Index): a list of ``assetIndexUpdate`` events, one per index,
    # the REST row's fields under one letter each
    _INDEX_EVENT_FIELDS: ClassVar[dict[str, str]] = {
        "s": "symbol",
        "i": "index",
        "b": "bidBuffer",
        "a": "askBuffer",
        "B": "bidRate",
        "A": "askRate",
        "q": "autoExchangeBidBuffer",
        "g": "autoExchangeAskBuffer",
        "Q": "autoExchangeBidRate",
        "G": "autoExchangeAskRate",
    }

    def _index_event(self, row: dict[str, Any], event_ms: int) -> dict[str, Any]:
        event: dict[str, Any] = {"e": "assetIndexUpdate", "E": event_ms}
        event.update({short: row[name] for short, name in self._INDEX_EVENT_FIELDS.items()})
        return event

    def _push_asset_index(self, symbols: list[str] | None = None) -> None:
        """Loop thread: the rows of ``symbols`` (None: every row) to the asset index streams'
        subscribers, ``!assetIndex@arr`` as one list, ``<assetSymbol>@assetIndex`` each its
        own event."""
        if self.asset_index_paused:
            return
        stamp = now_ms()
        events = [
            self._index_event(row, stamp)
            for key, row in sorted(self._asset_index.items())
            if symbols is None or key in symbols
        ]
        if not events:
            return
        for conn in self._connections_of():
            for stream in list(conn.streams):
                if stream == "!assetIndex@arr":
                    self._send(conn, stream, events)
                elif stream.endswith("@assetIndex"):
                    for event in events:
                        if event["s"].lower() == stream.partition("@")[0].lower():
                            self._send(conn, stream, event)

    @scripted
    def asset_index_subscriptions(self) -> int:
        """How many live connections subscribe ``!assetIndex@arr``."""
        return sum(1 for c in self._connections_of() if "!assetIndex@arr" in c.streams)

    @scripted
    def push_asset_index_frame(self, payload: Any) -> None:
        """Send ``payload`` as is on every ``!assetIndex@arr`` subscription (a malformed
        frame, for tests)."""
        self._on_loop(self._push_raw_index, payload)

    @scripted
    def forget_asset_index_subscriptions(self) -> None:
        """Every connection's ``!assetIndex@arr`` subscription ends on the server's side, the
        connection and its other streams (the marks) kept: the index stream falls silent as
        though it had never been subscribed there, until a client subscribes it again."""
        for conn in self._connections_of():
            conn.streams.discard("!assetIndex@arr")

    def _push_raw_index(self, payload: Any) -> None:
        for conn in self._connections_of():
            if "!assetIndex@arr" in conn.streams:
                self._send(conn, "!assetIndex@arr", payload)

    def _index_row(self, asset: str, price: Decimal, bid: Decimal, ask: Decimal) -> None:
        self._asset_index[f"{asset.upper()}USD"] = {
            "symbol": f"{asset.upper()}USD",
            "time": now_ms(),
            "index": _f8(price),
            "bidBuffer": _f8(bid),
            "askBuffer": _f8(ask),
            "bidRate": _f8(price * (1 - bid)),
            "askRate": _f8(price * (1 + ask)),
            "autoExchangeBidBuffer": _f8(bid / 2),
            "autoExchangeAskBuffer": _f8(ask / 2),
            "autoExchangeBidRate": _f8(price * (1 - bid / 2)),
            "autoExchangeAskRate": _f8(price * (1 + ask / 2)),
        }

    def _coins_usd(self, account: _Account) -> Decimal:
        """The other coins' USD value in multi-assets mode: min(amount x bid, amount x ask)."""
        total = Decimal(0)
        for asset, amount in account.coins.items():
            row = self._asset_index.get(f"{asset}USD")
            if row is not None:
                total += min(amount * _dec(row["bidRate"]), amount * _dec(row["askRate"]))
        return total

    def _rates(self, asset: str) -> tuple[Decimal, Decimal] | None:
        """(bidRate, askRate) of ``asset``'s ``assetIndex`` row; None without one."""
        row = self._asset_index.get(f"{asset}USD")
        return None if row is None else (_dec(row["bidRate"]), _dec(row["askRate"]))

    def _counted(self, asset: str, equity: Decimal) -> Decimal:
        """``asset``'s equity in the one USD pool: min(equity x bidRate, equity x askRate)
        (Binance FAQ "How to Calculate Margin in Multi-Assets Mode": "Account Equity =
        ∑min(assetEquity*bidRate, assetEquity*askRate)"); an asset Binance does not index
        counts nothing."""
        rates = self._rates(asset)
        return Decimal(0) if rates is None else min(equity * rates[0], equity * rates[1])

    def _ask(self, asset: str) -> Decimal:
        """What one unit of the MM of ``asset``'s positions counts in USD: its askRate (the
        same FAQ, example 2: "80 x 0.99495")."""
        rates = self._rates(asset)
        return Decimal(1) if rates is None else rates[1]

    def _quote(self, position: _Position) -> str:
        return self._markets[position.market_id].quote

    def _asset_equities(
        self,
        account: _Account,
        figures: dict[tuple[str, str], _Figures],
        leave_out: str | None = None,
    ) -> dict[str, Decimal]:
        """Each asset's equity in a multi-assets account ("assetEquity"): its wallet (the
        settle coin's cross wallet, another asset's amount: ``set_multi_assets`` collateral,
        ``set_multi_assets_coins`` coins) plus the PnL of the cross positions margined in it
        (their market's quote: a USDC-M position's is USDC's), market ``leave_out``'s left
        out."""
        equities = {account.asset: self._cross_wallet(account, account.asset)}
        held = [(a, amount) for a, (amount, _) in account.collateral.items()]
        for asset, amount in [*held, *account.coins.items()]:
            equities[asset] = equities.get(asset, Decimal(0)) + amount
        for key, p in account.positions.items():
            if p.margin_type == "cross" and p.market_id != leave_out:
                quote = self._quote(p)
                equities[quote] = equities.get(quote, Decimal(0)) + figures[key].upnl
        return equities

    def _multi_assets_totals(
        self, account: _Account, figures: dict[tuple[str, str], _Figures]
    ) -> tuple[Decimal, Decimal]:
        """(totalMarginBalance, totalMaintMargin) of a multi-assets account in USD: every
        asset's equity at its rates, every position's MM at its margin asset's askRate."""
        equities = self._asset_equities(account, figures)
        balance = sum((self._counted(a, e) for a, e in equities.items()), Decimal(0))
        mm = sum(
            (figures[k].mm * self._ask(self._quote(p)) for k, p in account.positions.items()),
            Decimal(0),
        )
        return balance, mm

    def _multi_assets_liquidation(
        self, account: _Account, figures: dict[tuple[str, str], _Figures], market_id: str
    ) -> Decimal | None:
        """Where ``market_id``'s positions bring the one USD pool's equity down to its
        maintenance margin, every other position at its mark. The equity of the market's
        margin asset (its quote: USDT, USDC) moves with the price and converts at its bid
        rate above zero, its ask rate below; every other asset's equity and every other
        position's MM hold their USD value. Each piece is Binance's bracket formula with the
        brackets scaled by ask / rate and the rest of the pool divided by the rate; the root
        of the piece whose side of zero it lands on (the nearest to the mark if both)."""
        market = self._markets[market_id]
        bid, ask = self._rates(market.quote) or (Decimal(1), Decimal(1))
        mine = [
            p
            for p in account.positions.values()
            if p.market_id == market_id and p.margin_type == "cross"
        ]
        equities = self._asset_equities(account, figures, leave_out=market_id)
        own_equity = equities.pop(market.quote, Decimal(0))
        rest = sum((self._counted(a, e) for a, e in equities.items()), Decimal(0))
        rest_mm = sum(
            (
                figures[k].mm * self._ask(self._quote(p))
                for k, p in account.positions.items()
                if p.market_id != market_id and p.margin_type == "cross"
            ),
            Decimal(0),
        )
        found = []
        for rate, positive in ((bid, True), (ask, False)):
            tiers = [
                dataclasses.replace(t, mmr=t.mmr * ask / rate, cum=t.cum * ask / rate)
                for t in market.tiers
            ]
            base = own_equity + (rest - rest_mm) / rate
            price = _solve_liquidation(
                base, [(p.amount, p.entry, tiers) for p in mine], market.mark
            )
            if price is None:
                continue
            equity = own_equity + sum((p.amount * (price - p.entry) for p in mine), Decimal(0))
            if (equity > 0) == positive:
                found.append(price)
        return min(found, key=lambda price: abs(price - market.mark)) if found else None

    def _pool_asset(self, account: _Account, position: _Position) -> str:
        """The margin asset of the pool ``position`` counts in: in single-asset mode its
        market's own ("each margin asset its own pool": a USDC-M position against USDC), in
        multi-assets mode the account's one pool."""
        quote = self._markets[position.market_id].quote
        return account.asset if account.multi_assets or account.portfolio else quote

    def _pool_wallet(self, account: _Account, asset: str) -> Decimal:
        """``asset``'s whole wallet (cross plus its isolated positions' wallets)."""
        if asset == account.asset:
            return account.wallet
        held = account.collateral.get(asset, (Decimal(0), Decimal(1)))[0]
        return held + account.coins.get(asset, Decimal(0))

    def _cross_wallet(self, account: _Account, asset: str) -> Decimal:
        """``asset``'s cross wallet: its wallet less its isolated positions' wallets."""
        isolated = sum(
            (
                p.isolated_wallet
                for p in account.positions.values()
                if p.margin_type == "isolated" and self._pool_asset(account, p) == asset
            ),
            Decimal(0),
        )
        return self._pool_wallet(account, asset) - isolated

    def _credit(self, account: _Account, asset: str, amount: Decimal) -> None:
        """Move ``amount`` into ``asset``'s wallet (a realized PnL)."""
        if asset == account.asset:
            account.wallet += amount
        elif asset in account.coins:
            account.coins[asset] += amount
        else:
            held, value = account.collateral.get(asset, (Decimal(0), Decimal(1)))
            account.collateral[asset] = (held + amount, value)

    @scripted
    def set_adl(self, symbol: str, quantile: int) -> None:
        """The ADL quantile (0-4) Position Information V3 reports for ``symbol``'s positions."""
        self._adl[self._market(symbol).id] = quantile

    @scripted
    def set_insurance_fund(self, symbol: str, usdt: str) -> None:
        """The USDT balance of the insurance fund pool that covers ``symbol``."""
        self._insurance[self._market(symbol).id] = usdt

    @scripted
    def set_klines(self, symbol: str, candles: list[tuple[int, str, str, str, str]]) -> None:
        """1-minute candles (open time ms, open, high, low, close) that the kline endpoints
        (trades and mark price alike) serve for ``symbol``."""
        self._mark_candles[self._market(symbol).id] = sorted(candles)

    @scripted
    def set_multi_assets(
        self, api_key: str, on: bool = True, collateral: dict[str, tuple[Num, Num]] | None = None
    ) -> None:
        """Script the account's mode: multi-assets with ``collateral`` (asset -> (amount, USD
        value per unit after its haircut)), or single-asset (``on=False``)."""
        account = self._account(api_key)
        account.multi_assets = on
        account.collateral = {
            asset: (_dec(amount), _dec(value))
            for asset, (amount, value) in (collateral or {}).items()
        }
        for asset, (_, value) in account.collateral.items():
            # Binance indexes every collateral asset: here at its value, no buffers
            key = f"{asset.upper()}USD"
            if key not in self._asset_index or key in self._par_rows:
                self._index_row(asset, value, Decimal(0), Decimal(0))

    @scripted
    def set_asset_wallet(self, api_key: str, asset: str, amount: Num) -> None:
        """A wallet in another margin asset (single-asset mode: its own pool), so that the
        account can hold that asset's perpetuals (a USDC-M position on a USDT account); a
        change after the first pushes the asset's ``ACCOUNT_UPDATE`` (a deposit or a
        withdrawal of that asset)."""
        account = self._account(api_key)
        asset = asset.upper()
        before = account.collateral.get(asset)
        account.collateral[asset] = (_dec(amount), Decimal(1))
        if before is not None:
            change = _dec(amount) - before[0]
            reason = "DEPOSIT" if change >= 0 else "WITHDRAW"
            self._push_account_update(account, reason, [], balance_change=change, asset=asset)

    @scripted
    def set_reported_mm_factor(self, api_key: str, factor: Num, asset: str | None = None) -> None:
        """Report ``totalMaintMargin`` (with ``asset``: that margin asset's ``assets[]`` row's
        ``maintMargin``, its own pool in single-asset mode) as the fake's own times
        ``factor``: an exchange rule alertd does not know, which its drift check must notice."""
        account = self._account(api_key)
        if asset is None:
            account.reported_mm_factor = _dec(factor)
        else:
            account.pool_mm_factors[asset.upper()] = _dec(factor)

    def set_can_trade(self, api_key: str, can_trade: bool = True) -> None:
        """The key's permissions as apiRestrictions reports them (read-only by default)."""
        self._account(api_key).can_trade = can_trade

    def _open_position(
        self, account: _Account, market: _Market, order: shared.PositionOrder, hedge: bool
    ) -> None:
        """Pushes the ``ACCOUNT_UPDATE`` a fill would cause. One-way mode (``hedge=False``) has
        one slot per symbol (``ps=BOTH``), so opening a short replaces a long. Hedge mode has
        LONG and SHORT slots; an account is in one mode or the other, as on Binance. Isolated
        margin moves out of the cross wallet."""
        # multi-assets and portfolio margin: every USDⓈ-M asset in one pool
        pooled = account.multi_assets or account.portfolio
        if not pooled and market.quote != account.asset and market.quote not in account.collateral:
            raise ValueError(
                f"{market.symbol} settles in {market.quote}, account in {account.asset}"
            )
        direction = 1 if order.long else -1
        leverage = int(order.leverage)
        if leverage != order.leverage or not 1 <= leverage <= market.max_leverage:
            raise ValueError(f"leverage must be within 1..{market.max_leverage} for {market.id}")
        if account.positions and account.dual_side != hedge:
            raise ValueError("account has open positions in the other position mode")
        account.dual_side = hedge
        slot = ("LONG" if order.long else "SHORT") if hedge else "BOTH"
        stamp = now_ms()
        position = _Position(
            market.id,
            slot,
            order.size * direction,
            order.entry,
            "isolated" if order.isolated else "cross",
            order.isolated_margin,
            leverage,
            Decimal(0),
            stamp,
        )
        account.positions[(market.id, slot)] = position
        account.leverage[market.id] = leverage
        account.update_ms = stamp
        self._push_account_update(
            account,
            "ORDER",
            [self._ws_position(account, position)],
            asset=self._pool_asset(account, position),
        )

    @scripted
    def close_position(
        self, api_key: str, symbol: str, side: str | None = None, *, realize_pnl: bool = True
    ) -> None:
        """Close the symbol's position(s) (``side`` 'long'/'short' picks one) and push the
        ``ACCOUNT_UPDATE`` with ``pa=0``. The unrealized PnL at the current mark moves into the
        wallet, as a market close would (``realize_pnl=False`` to keep the wallet as it is)."""
        account = self._account(api_key)
        market = self._market(symbol)
        wanted = None if side is None else shared.parse_side(side)
        closing = [
            p
            for (market_id, _), p in account.positions.items()
            if market_id == market.id and (wanted is None or (p.amount > 0) == wanted)
        ]
        if not closing:
            raise ValueError(f"{api_key} has no matching open position in {market.id}")
        stamp = now_ms()
        rows = []
        # the PnL realizes into the position's margin asset ("ma"): a USDC-M close into USDC,
        # in multi-assets mode too (a portfolio margin account's pool holds it as one)
        asset = self._pool_asset(account, closing[0]) if account.portfolio else market.quote
        for position in closing:
            del account.positions[(position.market_id, position.side)]
            pnl = position.amount * (market.mark - position.entry)
            if realize_pnl:
                self._credit(account, asset, pnl)
                position.realized += pnl
            rows.append(
                {
                    "s": market.id,
                    "pa": "0",
                    "ep": "0.0",
                    "bep": "0",
                    "cr": _f8(position.realized),
                    "up": "0",
                    "mt": position.margin_type,
                    "iw": "0",
                    "ps": position.side,
                    "ma": market.quote,
                }
            )
        account.update_ms = stamp
        self._push_account_update(account, "ORDER", rows, asset=asset)

    @scripted
    def set_balance(self, api_key: str, wallet_balance: Num) -> None:
        """Set the total wallet balance and push the balance-only ``ACCOUNT_UPDATE`` of a
        deposit or withdrawal (``m`` DEPOSIT/WITHDRAW, ``bc`` the change, ``P`` empty)."""
        account = self._account(api_key)
        new = _dec(wallet_balance)
        change = new - account.wallet
        account.wallet = new
        account.update_ms = now_ms()
        reason = "DEPOSIT" if change >= 0 else "WITHDRAW"
        self._push_account_update(account, reason, [], balance_change=change)

    @scripted
    def push_margin_call(self, api_key: str) -> None:
        """Push Binance's ``MARGIN_CALL`` event listing the account's open positions."""
        account = self._account(api_key)
        figures = self._figures(account)
        rows = []
        for key, position in account.positions.items():
            market = self._markets[position.market_id]
            rows.append(
                {
                    "s": position.market_id,
                    "ps": position.side,
                    "pa": _plain(position.amount),
                    "mt": "CROSSED" if position.margin_type == "cross" else "ISOLATED",
                    "iw": _f8(position.isolated_wallet),
                    "mp": _f8(market.mark),
                    "up": _f8(figures[key].upnl),
                    "mm": _f8(figures[key].mm),
                }
            )
        event: dict[str, Any] = {"e": "MARGIN_CALL", "E": now_ms()}
        if any(p.margin_type == "cross" for p in account.positions.values()):
            # only with crossed positions, as documented
            event["cw"] = _f8(self._cross_wallet(account, account.asset))
        event["p"] = rows
        self._on_loop(self._push_user, account.api_key, event)

    @scripted
    def expire_listen_key(self, api_key: str) -> None:
        """Send the real ``listenKeyExpired`` event on the account's user-data streams and
        invalidate the key: no more events on it, ``PUT /fapi/v1/listenKey`` then answers -1125,
        and a ``POST`` issues a new key. The socket itself stays open, as on Binance."""
        account = self._account(api_key)
        key = account.listen_key
        if key is None:
            raise ValueError(f"{api_key} has no listen key (no POST /fapi/v1/listenKey yet)")
        account.listen_key = None
        # Binance sends E as a string in this event (unlike every other event)
        event = {"e": "listenKeyExpired", "E": str(now_ms()), "listenKey": key}
        self._on_loop(self._expire_streams, key, event)

    def _expire_streams(self, key: str, event: dict[str, Any]) -> None:
        for conn in self._connections_of("private"):
            if conn.listen_key == key and conn.live:
                self._send(conn, key, event)
                conn.live = False

    def _ws_position(self, account: _Account, position: _Position) -> dict[str, Any]:
        market = self._markets[position.market_id]
        sign = 1 if position.amount > 0 else -1
        return {
            "s": position.market_id,
            "pa": _plain(position.amount),
            "ep": _plain(position.entry),
            "bep": _plain(position.entry * (1 + sign * BREAK_EVEN_FEE_RATE)),
            "cr": _f8(position.realized),
            "up": _f8(position.amount * (market.mark - position.entry)),
            "mt": position.margin_type,
            "iw": _f8(position.isolated_wallet),
            "ps": position.side,
            "ma": market.quote,  # the position's margin asset
        }

    def _push_account_update(
        self,
        account: _Account,
        reason: str,
        positions: list[dict[str, Any]],
        *,
        balance_change: Decimal = Decimal(0),
        asset: str | None = None,
    ) -> None:
        """``a.B`` carries the changed asset's row (``asset``, the account's by default)."""
        asset = asset or account.asset
        stamp = now_ms()
        event: dict[str, Any] = {
            "e": "ACCOUNT_UPDATE",
            "E": stamp,
            "T": stamp - 1,
            "a": {
                "m": reason,
                "B": [
                    {
                        "a": asset,
                        "wb": _f8(self._pool_wallet(account, asset)),
                        "cw": _f8(self._cross_wallet(account, asset)),
                        "bc": _f8(balance_change) if balance_change else "0",
                    }
                ],
                "P": positions,
            },
        }
        if account.portfolio:  # the portfolio margin stream's UM update ("Event: Futures
            event["fs"] = "UM"  # Balance and Position Update": ``fs`` the business unit)
        self._on_loop(self._push_user, account.api_key, event)

    def _push_user(self, api_key: str, event: dict[str, Any]) -> None:
        if not self._held_push(api_key, functools.partial(self._send_user, api_key, event)):
            self._send_user(api_key, event)

    def _send_user(self, api_key: str, event: dict[str, Any]) -> None:
        account = self._accounts[api_key]
        for conn in self._connections_of("private"):
            mine = conn.owner == api_key and conn.listen_key == account.listen_key
            if mine and conn.live and not conn.muted:
                self._send(conn, conn.listen_key or "", event)

    def _figures(self, account: _Account) -> dict[tuple[str, str], _Figures]:
        figures: dict[tuple[str, str], _Figures] = {}
        for key, position in account.positions.items():
            market = self._markets[position.market_id]
            notional = position.amount * market.mark
            tier = _tier_for(self._account_tiers(account, market), abs(notional))
            figures[key] = _Figures(
                notional=notional,
                upnl=position.amount * (market.mark - position.entry),
                mm=abs(notional) * tier.mmr - tier.cum,
                im=abs(notional) / position.leverage,
                tier=tier,
            )
        for key, position in account.positions.items():
            market = self._markets[position.market_id]
            if position.margin_type == "isolated":
                legs = [(position.amount, position.entry, self._account_tiers(account, market))]
                base = position.isolated_wallet
            else:
                # the position's pool: its margin asset's cross wallet and positions (single-
                # asset mode), or the one USD pool with every coin at its value (multi-assets)
                asset = self._pool_asset(account, position)
                cross_wallet = self._cross_wallet(account, asset)
                if account.multi_assets:
                    cross_wallet += self._coins_usd(account)
                same = [
                    p
                    for p in account.positions.values()
                    if p.margin_type == "cross" and p.market_id == position.market_id
                ]
                others = [
                    figures[k]
                    for k, p in account.positions.items()
                    if p.margin_type == "cross"
                    and p.market_id != position.market_id
                    and self._pool_asset(account, p) == asset
                ]
                tiers = self._account_tiers(account, market)
                legs = [(p.amount, p.entry, tiers) for p in same]
                base = cross_wallet - sum((f.mm for f in others), Decimal(0))
                base += sum((f.upnl for f in others), Decimal(0))
            if account.portfolio:
                figures[key].liquidation = self._portfolio_liquidation(
                    account, figures, position.market_id
                )
                continue
            if account.multi_assets and position.margin_type == "cross":
                figures[key].liquidation = self._multi_assets_liquidation(
                    account, figures, position.market_id
                )
                continue
            figures[key].liquidation = _solve_liquidation(base, legs, market.mark)
        return figures

    def _portfolio_equity(self, account: _Account, upnl: Decimal) -> Decimal:
        """A portfolio margin account's equity in USD with its UM positions' PnL ``upnl``
        (USDT and USDC at par): the wallet, the coins at their index, the COIN-M coins at
        their collateral rate."""
        cm_equity, _ = self._cm_usd(account)
        wallet = self._cross_wallet(account, account.asset)
        return wallet + self._coins_usd(account) + upnl + cm_equity

    def _portfolio_liquidation(
        self, account: _Account, figures: dict[tuple[str, str], _Figures], market_id: str
    ) -> Decimal | None:
        """Where ``market_id``'s positions bring uniMMR down to Binance's liquidation level,
        every other position at its mark: adjusted equity = 1.05 x MM, the other positions'
        PnL and MM (and the scripted other MM) held, solved with Binance's bracket arithmetic
        with each bracket's rate and deduction scaled by the level."""
        market = self._markets[market_id]
        level = PORTFOLIO_LIQUIDATION_UNI_MMR
        others = [f for (m, _), f in figures.items() if m != market_id]
        equity = self._portfolio_equity(account, sum((f.upnl for f in others), Decimal(0)))
        mm = account.portfolio_other_mm + self._cm_usd(account)[1]
        mm += sum((f.mm for f in others), Decimal(0))
        base = equity - account.portfolio_open_loss - level * mm
        tiers = [dataclasses.replace(t, mmr=t.mmr * level, cum=t.cum * level) for t in market.tiers]
        legs = [
            (p.amount, p.entry, tiers)
            for p in account.positions.values()
            if p.market_id == market_id
        ]
        return _solve_liquidation(base, legs, market.mark)

    def portfolio_account(self, api_key: str) -> dict[str, Any]:
        """The body of ``GET /papi/v1/account`` for this account now ("Account Information",
        developers.binance.com, Portfolio Margin: the docs' fields), for assertions."""
        account = self._account(api_key)
        figures = self._figures(account)
        upnl = sum((f.upnl for f in figures.values()), Decimal(0))
        mm = account.portfolio_other_mm + self._cm_usd(account)[1]
        mm += sum((f.mm for f in figures.values()), Decimal(0))
        im = sum((f.im for f in figures.values()), Decimal(0))
        equity = self._portfolio_equity(account, upnl)
        # the coins without their haircut: "actual equity without collateral rate"
        actual = (
            equity
            - self._coins_usd(account)
            + sum(
                (
                    amount * _dec(self._asset_index[f"{asset}USD"]["index"])
                    for asset, amount in account.coins.items()
                    if f"{asset}USD" in self._asset_index
                ),
                Decimal(0),
            )
        )
        adjusted = equity - account.portfolio_open_loss
        # with nothing required Binance's answer is not documented: 0 here
        uni_mmr = adjusted / mm if mm else Decimal(0)
        status = next((name for floor, name in PORTFOLIO_STATUS if uni_mmr > floor), "BANKRUPTED")
        return {
            "uniMMR": _f8(uni_mmr),
            "accountEquity": _f8(equity),
            "actualEquity": _f8(actual),
            "accountInitialMargin": _f8(im),
            "accountMaintMargin": _f8(mm),
            "accountStatus": status if mm else "NORMAL",
            "virtualMaxWithdrawAmount": _f8(max(Decimal(0), adjusted - im)),
            "totalAvailableBalance": _f8(max(Decimal(0), adjusted - im)),
            "totalMarginOpenLoss": _f8(account.portfolio_open_loss),
            "updateTime": account.update_ms,
        }

    # ---- REST: plumbing --------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/fapi/v1/ping", self._ping),
            web.get("/fapi/v1/time", self._time),
            web.get("/fapi/v1/exchangeInfo", self._exchange_info),
            web.get("/fapi/v1/premiumIndex", self._premium_index),
            web.get("/fapi/v1/ticker/24hr", self._ticker_24hr),
            web.get("/fapi/v1/ticker/price", self._ticker_price),
            web.get("/fapi/v1/leverageBracket", self._leverage_bracket),
            web.get("/fapi/v2/positionRisk", self._position_risk_v2),
            web.get("/fapi/v3/positionRisk", self._position_risk_v3),
            web.get("/fapi/v2/account", self._account_v2),
            web.get("/fapi/v3/account", self._account_v3),
            web.get("/fapi/v2/balance", self._balance),
            web.get("/fapi/v3/balance", self._balance),
            web.get("/fapi/v1/positionSide/dual", self._position_mode),
            web.get("/fapi/v1/multiAssetsMargin", self._multi_assets),
            web.get("/fapi/v1/openOrders", self._open_orders),
            web.get("/fapi/v1/openAlgoOrders", self._open_algo_orders),
            web.get("/fapi/v1/assetIndex", self._asset_index_get),
            web.get("/sapi/v1/account/apiRestrictions", self._api_restrictions),
            web.get("/sapi/v2/portfolio/collateralRate", self._collateral_rate),
            web.get("/fapi/v1/klines", self._klines),
            web.get("/fapi/v1/insuranceBalance", self._insurance_balance),
            web.get("/fapi/v1/depth", self._depth),
            web.get("/fapi/v1/markPriceKlines", self._klines),
            web.get("/dapi/v1/exchangeInfo", self._coin_m_exchange_info),
            web.get("/papi/v1/account", self._papi_account),
            web.get("/papi/v1/balance", self._papi_balance),
            web.get("/papi/v1/um/account", self._papi_um_account),
            web.get("/papi/v1/um/positionRisk", self._papi_position_risk),
            web.get("/papi/v1/um/leverageBracket", self._leverage_bracket),
            web.get("/papi/v1/cm/positionRisk", self._papi_cm_position_risk),
            web.get("/papi/v1/cm/account", self._papi_cm_account),
            web.get("/papi/v1/cm/leverageBracket", self._papi_cm_leverage_bracket),
            web.get("/papi/v1/cm/conditional/openOrders", self._papi_cm_conditional_orders),
            web.get("/papi/v1/um/algo/openAlgoOrders", self._papi_algo_orders),
            web.get("/papi/v1/um/conditional/openOrders", self._papi_conditional_orders),
            web.post("/papi/v1/listenKey", self._listen_key_post),
            web.put("/papi/v1/listenKey", self._listen_key_put),
            web.delete("/papi/v1/listenKey", self._listen_key_delete),
            web.get("/pm/ws/{target}", self._ws_entry),
            web.post("/fapi/v1/listenKey", self._listen_key_post),
            web.put("/fapi/v1/listenKey", self._listen_key_put),
            web.delete("/fapi/v1/listenKey", self._listen_key_delete),
            web.get("/ws", self._ws_entry),
            web.get("/ws/{target}", self._ws_entry),
            web.get("/market/ws", self._ws_entry),
            web.get("/market/ws/{n}", self._ws_entry),
            web.get("/public/ws", self._ws_entry),
            web.get("/public/ws/{n}", self._ws_entry),
            web.get("/private/ws", self._ws_entry),
            web.get("/stream", self._ws_entry),
            web.get("/market/stream", self._ws_entry),
            web.get("/public/stream", self._ws_entry),
            web.route("*", "/{tail:.*}", self._not_served),
        ]

    _json = staticmethod(shared.json_response)

    def _error(self, status: int, code: int, msg: str) -> web.Response:
        return self._json({"code": code, "msg": msg}, status)

    def _ban_response(self, until_ms: int) -> web.Response:
        msg = (
            f"Way too many requests; IP({LOOPBACK}) banned until {until_ms}. "
            "Please use the websocket for live updates to avoid bans."
        )
        # the whole seconds until the ban is over ("in the case of a 418, until the ban is
        # over", "General Info", Limits), rounded up: a client that waits that long is not
        # refused again
        retry_after = max(1, -(-(until_ms - now_ms()) // 1000))
        return self._json(
            {"code": ERR_TOO_MANY, "msg": msg}, 418, {"Retry-After": str(retry_after)}
        )

    _ip_ban_response = _ban_response

    def _error_response(self, status: int, retry_after_s: float | None) -> web.StreamResponse:
        """Binance's bodies for scripted failures (``fail_rest``)."""
        if status == 429:
            msg = (
                f"Too many requests; current limit of IP({LOOPBACK}) is 2400 requests per "
                "minute. Please use the websocket for live updates to avoid polling the API."
            )
            headers = {"Retry-After": str(int(retry_after_s if retry_after_s is not None else 1))}
            return self._json({"code": ERR_TOO_MANY, "msg": msg}, 429, headers)
        if status == 418:
            seconds = retry_after_s or self.BAN_DURATION_S
            return self._ban_response(now_ms() + int(1000 * seconds))
        if status == 401:
            return self._error(401, *ERR_BAD_KEY)
        if status >= 500 or status == 403:
            # gateway and WAF errors arrive as plain text, not Binance JSON
            return web.Response(status=status, text=f"{status} {_REASONS.get(status, 'Error')}")
        return self._error(status, *ERR_UNKNOWN)

    async def _not_served(self, request: web.Request) -> web.Response:
        return self._error(
            404, ERR_UNKNOWN[0], f"fake Binance USDM does not serve {request.method} {request.path}"
        )

    def _key_rejected(self, rejection: shared.KeyRejection) -> web.Response:
        if rejection.problem is shared.KeyProblem.MISSING:
            return self._error(401, *ERR_KEY_FORMAT)
        if rejection.problem is shared.KeyProblem.BANNED and rejection.banned_until_ms is not None:
            return self._ban_response(rejection.banned_until_ms)
        return self._error(401, *ERR_BAD_KEY)

    def _key_account(self, request: web.Request) -> _Account:
        """API-key check of USER_STREAM and signed endpoints."""
        return self._authorized(request.headers.get("X-MBX-APIKEY"))

    async def _signed(self, request: web.Request) -> tuple[_Account, dict[str, str]]:
        """Binance's SIGNED check: API key, timestamp within recvWindow, then the HMAC-SHA256
        of totalParams (query string followed by the body, without the signature)."""
        account = self._key_account(request)
        query = request.rel_url.raw_query_string
        body = await request.text() if request.can_read_body else ""
        signature = None
        unsigned: list[str] = []
        for part in (query, body):
            kept = []
            for item in part.split("&") if part else []:
                if item.startswith("signature="):
                    signature = item[len("signature=") :]
                else:
                    kept.append(item)
            unsigned.append("&".join(kept))
        params = dict(parse_qsl(query)) | dict(parse_qsl(body))
        mandatory = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise Reject(self._error(400, -1102, mandatory.format("timestamp"))) from None
        try:
            recv_window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
        except ValueError:
            raise Reject(self._error(400, -1102, mandatory.format("recvWindow"))) from None
        if recv_window > MAX_RECV_WINDOW_MS:
            raise Reject(self._error(400, -1131, "recvWindow must be less than 60000"))
        server_ms = now_ms()
        if timestamp >= server_ms + FUTURE_TOLERANCE_MS or server_ms - timestamp > recv_window:
            raise Reject(self._error(400, *ERR_TIMESTAMP))
        if not signature:
            raise Reject(self._error(400, -1102, mandatory.format("signature")))
        expected = hmac.new(
            account.secret.encode(), "".join(unsigned).encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise Reject(self._error(400, *ERR_SIGNATURE))
        return account, params

    def _symbol_filter(self, params: dict[str, str]) -> _Market | None:
        market_id = params.get("symbol")
        if market_id is None:
            return None
        market = self._markets.get(market_id.upper())
        if market is None:
            raise Reject(self._error(400, -1121, "Invalid symbol."))
        return market

    # ---- REST: public ----------------------------------------------------------------------------

    async def _depth(self, request: web.Request) -> web.Response:
        # USDⓈ-M "Order Book": symbol, limit in [5, 10, 20, 50, 100, 500, 1000] (default 500);
        # {"lastUpdateId", "E" (message time), "T" (transaction time), "bids", "asks"}, each
        # level ["price", "qty"] (developers.binance.com/docs/derivatives/usds-margined-futures/
        # market-data/rest-api/Order-Book)
        params = dict(request.query)
        market = self._symbol_filter(params)
        if market is None:
            return self._error(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        limit = params.get("limit", "500")
        if limit not in ("5", "10", "20", "50", "100", "500", "1000"):
            return self._error(
                400,
                -1100,
                "Illegal characters found in parameter 'limit'; legal range is "
                "'5, 10, 20, 50, 100, 500, 1000'.",
            )
        bids, asks = self.order_book(market.id, int(limit))
        stamp = now_ms()
        return self._json(
            {
                # the diff stream's update ids continue from it (``<symbol>@depth``)
                "lastUpdateId": self._book_update_ids.get(market.id, 0),
                "E": stamp,
                "T": stamp,
                "bids": [list(level) for level in bids],
                "asks": [list(level) for level in asks],
            }
        )

    async def _ping(self, request: web.Request) -> web.Response:
        return self._json({})

    async def _time(self, request: web.Request) -> web.Response:
        return self._json({"serverTime": now_ms()})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        assets = sorted({m.quote for m in self._markets.values()} | {"USDT", "USDC", "BTC"})
        return self._json(
            {
                "timezone": "UTC",
                "serverTime": now_ms(),
                "futuresType": "U_MARGINED",
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 2400,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 1200,
                    },
                    {
                        "rateLimitType": "ORDERS",
                        "interval": "SECOND",
                        "intervalNum": 10,
                        "limit": 300,
                    },
                ],
                "exchangeFilters": [],
                "assets": [
                    {"asset": a, "marginAvailable": True, "autoAssetExchange": "0"} for a in assets
                ],
                "symbols": [self._symbol_info(m) for m in self._markets.values()],
            }
        )

    async def _coin_m_exchange_info(self, request: web.Request) -> web.Response:
        """COIN-M "Exchange Information" (GET /dapi/v1/exchangeInfo, developers.binance.com,
        COIN-M Futures): the fields ccxt's binancecoinm reads (``contractSize`` in USD,
        ``marginAsset`` the coin, ``contractStatus``)."""
        symbols = []
        for market in self._coin_markets.values():
            row = self._symbol_info(
                _Market(
                    market.id,
                    market.base,
                    "USD",
                    market.mark,
                    _generic_brackets(),
                    "0.1",
                    "1",
                    "0",
                    [],
                )
            )
            row.pop("status")
            row |= {
                "pair": f"{market.base}USD",
                "contractStatus": "TRADING",
                "contractSize": int(market.contract_size),
                "marginAsset": market.base,
                "equalQtyPrecision": 4,
            }
            if market.delivery_ms is not None:
                row |= {"contractType": "CURRENT_QUARTER", "deliveryDate": market.delivery_ms}
            symbols.append(row)
        return self._json(
            {
                "timezone": "UTC",
                "serverTime": now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    @staticmethod
    def _symbol_info(market: _Market) -> dict[str, Any]:
        price_precision = _decimals(market.tick_size)
        qty_precision = _decimals(market.step_size)
        return {
            "symbol": market.id,
            "pair": market.id,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": market.base,
            "quoteAsset": market.quote,
            "marginAsset": market.quote,
            "pricePrecision": price_precision,
            "quantityPrecision": qty_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": market.sub_type,
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": market.tick_size,
                    "maxPrice": "4529764",
                    "tickSize": market.tick_size,
                },
                {
                    "filterType": "LOT_SIZE",
                    "stepSize": market.step_size,
                    "maxQty": "1000000",
                    "minQty": market.step_size,
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "stepSize": market.step_size,
                    "maxQty": "100000",
                    "minQty": market.step_size,
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": market.min_notional},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def _premium(self, market: _Market) -> dict[str, Any]:
        stamp = now_ms()
        return {
            "symbol": market.id,
            "markPrice": _f8(market.mark),
            "indexPrice": _f8(market.mark),
            "estimatedSettlePrice": _f8(market.mark),
            "lastFundingRate": _f8(market.funding_rate),
            "interestRate": "0.00010000",
            "nextFundingTime": (stamp // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS,
            "time": stamp,
        }

    async def _premium_index(self, request: web.Request) -> web.Response:
        market = self._symbol_filter(dict(request.query))
        if market is not None:
            return self._json(self._premium(market))
        return self._json([self._premium(m) for m in self._markets.values()])

    def _ticker(self, market: _Market) -> dict[str, Any]:
        stamp = now_ms()
        price = _plain(market.mark)
        return {
            "symbol": market.id,
            "priceChange": "0",
            "priceChangePercent": "0.000",
            "weightedAvgPrice": price,
            "lastPrice": price,
            "lastQty": market.step_size,
            "openPrice": price,
            "highPrice": price,
            "lowPrice": price,
            "volume": "0",
            "quoteVolume": "0",
            "openTime": stamp - 86_400_000,
            "closeTime": stamp,
            "firstId": 1,
            "lastId": 1,
            "count": 1,
        }

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        market = self._symbol_filter(dict(request.query))
        if market is not None:
            return self._json(self._ticker(market))
        return self._json([self._ticker(m) for m in self._markets.values()])

    async def _ticker_price(self, request: web.Request) -> web.Response:
        market = self._symbol_filter(dict(request.query))
        rows = [
            {"symbol": m.id, "price": _plain(m.mark), "time": now_ms()}
            for m in ([market] if market is not None else self._markets.values())
        ]
        return self._json(rows[0] if market is not None else rows)

    # ---- REST: signed ----------------------------------------------------------------------------

    async def _leverage_bracket(self, request: web.Request) -> web.Response:
        checked = await self._signed(request)
        account, params = checked
        market = self._symbol_filter(params)
        if market is not None:  # one object, not a list, when a symbol is sent
            return self._json(self._bracket_row(account, market))
        rows = [
            shared.compact(self._bracket_row(account, m))
            if m.id in account.bracket_coefs  # the account's own
            else m.row_json(("leverageBracket",), lambda m=m: self._bracket_row(account, m))
            for m in self._markets.values()
            if m.id not in self._brackets_withheld
        ]
        return _json_text(f"[{','.join(rows)}]")

    def _risk_rows(
        self, account: _Account, version: int, *, flat: bool = True
    ) -> list[dict[str, Any]]:
        figures = self._figures(account)
        rows: list[dict[str, Any]] = []
        for key, position in account.positions.items():
            market = self._markets[position.market_id]
            fig = figures[key]
            sign = 1 if position.amount > 0 else -1
            isolated = position.margin_type == "isolated"
            isolated_margin = position.isolated_wallet + fig.upnl if isolated else Decimal(0)
            common = {
                "symbol": position.market_id,
                "positionSide": position.side,
                "positionAmt": _plain(position.amount),
                "entryPrice": _plain(position.entry),
                "breakEvenPrice": _plain(position.entry * (1 + sign * BREAK_EVEN_FEE_RATE)),
                "markPrice": _f8(market.mark),
                "unRealizedProfit": _f8(fig.upnl),
                "liquidationPrice": _f8(fig.liquidation) if fig.liquidation else "0",
                "isolatedMargin": _f8(isolated_margin) if isolated else "0",
                "notional": _f8(fig.notional),
            }
            if version == 3:
                rows.append(
                    common
                    | {
                        "marginAsset": market.quote,
                        "isolatedWallet": _f8(position.isolated_wallet) if isolated else "0",
                        "initialMargin": _f8(fig.im),
                        "maintMargin": _f8(fig.mm),
                        "positionInitialMargin": _f8(fig.im),
                        "openOrderInitialMargin": "0",
                        "adl": self._adl.get(position.market_id, ADL_QUANTILE),
                        "bidNotional": "0",
                        "askNotional": "0",
                        "updateTime": position.update_ms,
                    }
                )
            else:
                rows.append(
                    common
                    | {
                        "leverage": str(position.leverage),
                        "maxNotionalValue": self._max_notional(market, position.leverage),
                        "marginType": position.margin_type,
                        "isAutoAddMargin": "false",
                        "isolatedWallet": _f8(position.isolated_wallet) if isolated else "0",
                        "updateTime": position.update_ms,
                    }
                )
        if version == 2 and flat:  # v2 also lists every flat symbol/side
            rows += [self._flat_row_v2(account, m, slot) for m, slot in self._flat_slots(account)]
        return rows

    def _flat_slots(self, account: _Account) -> list[tuple[_Market, str]]:
        """Every symbol and side ``account`` holds no position in."""
        sides = ("LONG", "SHORT") if account.dual_side else ("BOTH",)
        return [
            (market, slot)
            for market in self._markets.values()
            for slot in sides
            if (market.id, slot) not in account.positions
        ]

    @staticmethod
    def _max_notional(market: _Market, leverage: int) -> str:
        caps = [t.cap for t in market.tiers if t.max_leverage >= leverage]
        return _plain(caps[-1] if caps else market.tiers[0].cap)

    def _flat_row_v2(self, account: _Account, market: _Market, slot: str) -> dict[str, Any]:
        leverage = account.leverage.get(market.id, DEFAULT_LEVERAGE)
        zero_qty = format(Decimal(0).scaleb(-_decimals(market.step_size)), "f")
        return {
            "symbol": market.id,
            "positionSide": slot,
            "positionAmt": zero_qty,
            "entryPrice": "0.0",
            "breakEvenPrice": "0.0",
            "markPrice": _f8(market.mark),
            "unRealizedProfit": "0.00000000",
            "liquidationPrice": "0",
            "isolatedMargin": "0.00000000",
            "notional": "0",
            "leverage": str(leverage),
            "maxNotionalValue": self._max_notional(market, leverage),
            "marginType": "cross",
            "isAutoAddMargin": "false",
            "isolatedWallet": "0",
            "updateTime": 0,
        }

    async def _position_risk(self, request: web.Request, version: int) -> web.Response:
        checked = await self._signed(request)
        account, params = checked
        market = self._symbol_filter(params)
        rows = self._risk_rows(account, version)
        if market is not None:
            rows = [r for r in rows if r["symbol"] == market.id]
        return self._json(rows)

    async def _position_risk_v2(self, request: web.Request) -> web.Response:
        return await self._position_risk(request, 2)

    async def _position_risk_v3(self, request: web.Request) -> web.Response:
        return await self._position_risk(request, 3)

    def _totals(self, account: _Account, asset: str | None = None) -> dict[str, Any]:
        """One pool's figures: ``asset``'s (the account's by default); in single-asset mode
        each margin asset is its own pool ("Account Information V3": the totals are "only
        for USDT asset", each ``assets[]`` row its asset's pool)."""
        asset = asset or account.asset
        every = self._figures(account)
        figures = {
            key: f
            for key, f in every.items()
            if self._pool_asset(account, account.positions[key]) == asset
        }
        cross = [f for k, f in figures.items() if account.positions[k].margin_type == "cross"]
        upnl = sum((f.upnl for f in figures.values()), Decimal(0))
        cross_upnl = sum((f.upnl for f in cross), Decimal(0))
        mm = sum((f.mm for f in figures.values()), Decimal(0))
        im = sum((f.im for f in figures.values()), Decimal(0))
        cross_im = sum((f.im for f in cross), Decimal(0))
        cross_wallet = self._cross_wallet(account, asset)
        wallet = self._pool_wallet(account, asset)
        available = max(Decimal(0), cross_wallet + cross_upnl - cross_im)
        return {
            "figures": every,
            "wallet": wallet,
            "upnl": upnl,
            "margin_balance": wallet + upnl,
            "mm": mm,
            "im": im,
            "open_order_im": Decimal(0),  # no orders
            "cross_wallet": cross_wallet,
            "cross_upnl": cross_upnl,
            "available": available,
            "max_withdraw": max(Decimal(0), min(available, cross_wallet)),
        }

    @scripted
    def account_v3(self, api_key: str) -> dict[str, Any]:
        """The body ``GET /fapi/v3/account`` returns for this account now (for assertions)."""
        account = self._account(api_key)
        t = self._totals(account)
        figures: dict[tuple[str, str], _Figures] = t["figures"]
        own = {
            "asset": account.asset,
            **{field: _f8(t[figure]) for field, _, figure in ACCOUNT_FIGURES},
            "updateTime": account.update_ms,
        }
        pooled = account.collateral if account.multi_assets else {}
        assets = [own] + [
            self._empty_asset(a) | self._held_asset(*pooled[a])
            if a in pooled
            else self._pool_row(account, a)
            if a in account.collateral
            else self._empty_asset(a)
            for a in OTHER_MARGIN_ASSETS
            if a != account.asset
        ]
        usd = sum((amount * value for amount, value in pooled.values()), Decimal(0))
        for figure in ("wallet", "margin_balance", "cross_wallet", "available", "max_withdraw"):
            t[figure] += usd
        if account.multi_assets:
            # one USD pool: every asset's equity at its rates, every position's MM at its
            # margin asset's askRate
            t["margin_balance"], t["mm"] = self._multi_assets_totals(account, figures)
        t["mm"] *= account.reported_mm_factor
        if account.multi_assets:
            for asset in assets[1:]:
                if asset["asset"] in account.coins:
                    amount = _f8(account.coins[asset["asset"]])
                    for field in ("walletBalance", "marginBalance", "crossWalletBalance"):
                        asset[field] = amount
        totals = {total: _f8(t[figure]) for _, total, figure in ACCOUNT_FIGURES}
        if account.multi_assets:
            # the account's totals are one USD pool in multi-assets mode
            coins = self._coins_usd(account)
            for total in ("totalWalletBalance", "totalCrossWalletBalance"):
                totals[total] = _f8(_dec(totals[total]) + coins)
        positions = []
        for key, position in account.positions.items():
            fig = figures[key]
            isolated = position.margin_type == "isolated"
            positions.append(
                {
                    "symbol": position.market_id,
                    "positionSide": position.side,
                    "positionAmt": _plain(position.amount),
                    "unrealizedProfit": _f8(fig.upnl),
                    "isolatedMargin": _f8(position.isolated_wallet + fig.upnl) if isolated else "0",
                    "notional": _f8(fig.notional),
                    "isolatedWallet": _f8(position.isolated_wallet) if isolated else "0",
                    "initialMargin": _f8(fig.im),
                    "maintMargin": _f8(fig.mm),
                    "updateTime": position.update_ms,
                }
            )
        return {
            **totals,
            "assets": assets,
            "positions": positions,
        }

    @scripted
    def position_risk_v3(self, api_key: str) -> list[dict[str, Any]]:
        """The body ``GET /fapi/v3/positionRisk`` returns for this account now."""
        return self._risk_rows(self._account(api_key), 3)

    def _pool_row(self, account: _Account, asset: str) -> dict[str, Any]:
        """Single-asset mode: ``asset``'s row is its own pool's figures (its wallet, its
        positions' PnL and MM), as Binance reports a USDC wallet beside the USDT one."""
        t = self._totals(account, asset)
        t["mm"] *= account.pool_mm_factors.get(asset, Decimal(1))
        return {
            "asset": asset,
            **{field: _f8(t[figure]) for field, _, figure in ACCOUNT_FIGURES},
            "updateTime": account.update_ms,
        }

    @staticmethod
    def _held_asset(amount: Decimal, value: Decimal) -> dict[str, Any]:
        return {
            "walletBalance": _f8(amount),
            "marginBalance": _f8(amount),
            "crossWalletBalance": _f8(amount),
            "availableBalance": _f8(amount),
            "maxWithdrawAmount": _f8(amount),
            "updateTime": now_ms(),
        }

    @staticmethod
    def _empty_asset(asset: str) -> dict[str, Any]:
        return {
            "asset": asset,
            **dict.fromkeys((field for field, _, _ in ACCOUNT_FIGURES), "0.00000000"),
            "updateTime": 0,  # Binance's "never used" marker; ccxt skips such assets
        }

    async def _account_v3(self, request: web.Request) -> web.Response:
        checked = await self._signed(request)
        return self._json(self.account_v3(checked[0].api_key))

    async def _account_v2(self, request: web.Request) -> web.Response:
        checked = await self._signed(request)
        account = checked[0]
        body = self.account_v3(account.api_key)
        for asset in body["assets"]:
            asset["marginAvailable"] = True
        held = {(p["symbol"], p["positionSide"]): p for p in body["positions"]}
        # the held positions first, then every flat symbol and side (v2 lists them all: 550
        # an account, each serialised once per leverage: nothing in it moves with the mark)
        positions = [
            shared.compact(
                self._v2_account_position(row, held.get((row["symbol"], row["positionSide"])))
            )
            for row in self._risk_rows(account, 2, flat=False)
        ]
        for market, slot in self._flat_slots(account):
            leverage = account.leverage.get(market.id, DEFAULT_LEVERAGE)
            flat = functools.partial(self._flat_row_v2, account, market, slot)
            positions.append(
                market.row_json(
                    ("v2 account", slot, leverage),
                    lambda flat=flat: self._v2_account_position(flat(), None),
                )
            )
        head = {
            "feeTier": 0,
            "feeBurn": True,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": 0,
            "multiAssetsMargin": account.multi_assets,
            "tradeGroupId": -1,
        }
        body.pop("positions")  # last, after the head and the body
        return _json_text(
            f'{shared.compact(head | body)[:-1]},"positions":[{",".join(positions)}]}}'
        )

    @staticmethod
    def _v2_account_position(row: dict[str, Any], raw: dict[str, Any] | None) -> dict[str, Any]:
        """A ``positions`` row of GET /fapi/v2/account from its positionRisk v2 row and, for a
        held one, its v3 account row."""
        return {
            "symbol": row["symbol"],
            "initialMargin": raw["initialMargin"] if raw else "0",
            "maintMargin": raw["maintMargin"] if raw else "0",
            "unrealizedProfit": row["unRealizedProfit"],
            "positionInitialMargin": raw["initialMargin"] if raw else "0",
            "openOrderInitialMargin": "0",
            "leverage": row["leverage"],
            "isolated": row["marginType"] == "isolated",
            "entryPrice": row["entryPrice"],
            "breakEvenPrice": row["breakEvenPrice"],
            "maxNotional": row["maxNotionalValue"],
            "bidNotional": "0",
            "askNotional": "0",
            "positionSide": row["positionSide"],
            "positionAmt": row["positionAmt"],
            "updateTime": row["updateTime"],
        }

    async def _balance(self, request: web.Request) -> web.Response:
        checked = await self._signed(request)
        body = self.account_v3(checked[0].api_key)
        return self._json(
            [
                {
                    "accountAlias": "SgsR",
                    "asset": a["asset"],
                    "balance": a["walletBalance"],
                    "crossWalletBalance": a["crossWalletBalance"],
                    "crossUnPnl": a["crossUnPnl"],
                    "availableBalance": a["availableBalance"],
                    "maxWithdrawAmount": a["maxWithdrawAmount"],
                    "marginAvailable": True,
                    "updateTime": a["updateTime"],
                }
                for a in body["assets"]
            ]
        )

    # ---- REST: portfolio margin (/papi) ------------------------------------------------------

    async def _collateral_rate(self, request: web.Request) -> web.Response:
        """ "Portfolio Margin Pro Tiered Collateral Rate": signed (USER_DATA), the exchange's
        table (:meth:`set_collateral_tiers`, :meth:`set_cm_coin`) for any key."""
        await self._signed(request)
        self.collateral_rate_reads += 1
        if self.collateral_rates_refused:
            raise Reject(self._error(400, *ERR_NOT_PORTFOLIO))
        return self._json(
            [
                {"asset": coin, "collateralInfo": tiers}
                for coin, tiers in self.collateral_tiers.items()
            ]
        )

    async def _portfolio_signed(self, request: web.Request) -> _Account:
        account, _ = await self._signed(request)
        if not account.portfolio:
            raise Reject(self._error(400, *ERR_NOT_PORTFOLIO))
        return account

    async def _papi_account(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        return self._json(self.portfolio_account(account.api_key))

    def position_risk_papi(self, api_key: str) -> list[dict[str, Any]]:
        """The body of "Query UM Position Information" (GET /papi/v1/um/positionRisk) for
        this account now: the docs' fields (no margin type, isolated wallet or maintenance
        margin: portfolio margin is cross); in one-way mode every symbol's ``BOTH`` row, in
        hedge mode only those with a position."""
        account = self._account(api_key)
        fields = (
            "symbol", "positionAmt", "entryPrice", "markPrice", "unRealizedProfit",
            "liquidationPrice", "positionSide", "notional", "updateTime",
        )  # fmt: skip
        rows = []
        for row in self._risk_rows(account, 2):
            if account.dual_side and Decimal(row["positionAmt"]) == 0:
                continue
            rows.append(
                {field: row[field] for field in fields}
                | {"leverage": row["leverage"], "maxNotionalValue": row["maxNotionalValue"]}
            )
        return rows

    async def _papi_position_risk(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        return self._json(self.position_risk_papi(account.api_key))

    async def _papi_cm_position_risk(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        return self._json(self._cm_rows(account))

    async def _papi_cm_account(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        return self._json(self._cm_account_body(account))

    async def _papi_cm_leverage_bracket(self, request: web.Request) -> web.Response:
        """ "Query CM Notional and Leverage Brackets": every COIN-M market's brackets, or the
        ``symbol``'s."""
        await self._portfolio_signed(request)
        wanted = request.query.get("symbol")
        return self._json(
            [
                {"symbol": market.id, "brackets": market.brackets}
                for market in self._coin_markets.values()
                if wanted is None or market.id == wanted
            ]
        )

    async def _papi_cm_conditional_orders(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        wanted = request.query.get("symbol")
        return self._json(
            [row for row in account.cm_orders if wanted is None or row.get("symbol") == wanted]
        )

    async def _papi_um_account(self, request: web.Request) -> web.Response:
        """ "Get UM Account Detail": the UM wallet per asset and the held positions, in the
        docs' fields."""
        account = await self._portfolio_signed(request)
        t = self._totals(account)
        asset = {
            "asset": account.asset,
            "crossWalletBalance": _f8(t["cross_wallet"]),
            "crossUnPnl": _f8(t["cross_upnl"]),
            "maintMargin": _f8(t["mm"]),
            "initialMargin": _f8(t["im"]),
            "positionInitialMargin": _f8(t["im"]),
            "openOrderInitialMargin": "0.00000000",
            "updateTime": account.update_ms,
        }
        figures: dict[tuple[str, str], _Figures] = t["figures"]
        positions = [
            {
                "symbol": p.market_id,
                "initialMargin": _f8(figures[key].im),
                "maintMargin": _f8(figures[key].mm),
                "unrealizedProfit": _f8(figures[key].upnl),
                "positionInitialMargin": _f8(figures[key].im),
                "openOrderInitialMargin": "0",
                "leverage": str(p.leverage),
                "entryPrice": _plain(p.entry),
                "maxNotional": self._max_notional(self._markets[p.market_id], p.leverage),
                "bidNotional": "0",
                "askNotional": "0",
                "positionSide": p.side,
                "positionAmt": _plain(p.amount),
                "updateTime": p.update_ms,
            }
            for key, p in account.positions.items()
        ]
        return self._json({"assets": [asset], "positions": positions})

    async def _papi_balance(self, request: web.Request) -> web.Response:
        """ "Account Balance" (GET /papi/v1/balance): the settle asset's row in the docs'
        fields (UM wallet and PnL), then each coin's (set_pm_coin_balance, the COIN-M
        wallets and PnL)."""
        account = await self._portfolio_signed(request)
        t = self._totals(account)
        row = {
            "asset": account.asset,
            "totalWalletBalance": _f8(t["wallet"]),
            "crossMarginAsset": "0.00000000",
            "crossMarginBorrowed": "0.00000000",
            "crossMarginFree": "0.00000000",
            "crossMarginInterest": "0.00000000",
            "crossMarginLocked": "0.00000000",
            "umWalletBalance": _f8(t["wallet"]),
            "umUnrealizedPNL": _f8(t["upnl"]),
            "cmWalletBalance": "0.00000000",
            "cmUnrealizedPNL": "0.00000000",
            "updateTime": account.update_ms,
            "negativeBalance": "0",
        }
        rows = [row]
        # the coins' rows: cross margin, UM and COIN-M wallets in the coin
        cm = {coin: wallet for coin, (wallet, _) in self._cm_coins(account).items()}
        pnl: dict[str, Decimal] = {}
        for market, size, entry in self._cm_figures(account):
            pnl[market.base] = pnl.get(market.base, Decimal(0)) + size * (
                1 / entry - 1 / market.mark
            )
        for coin in sorted(set(account.pm_balances) | set(cm) | set(pnl)):
            zero = Decimal(0)
            other = account.pm_balances.get(coin, {})
            cross = other.get("crossMarginAsset", zero)
            um, wallet = other.get("umWalletBalance", zero), cm.get(coin, zero)
            rows.append(
                row
                | {
                    "asset": coin,
                    "totalWalletBalance": _f8(cross + um + wallet),
                    "crossMarginAsset": _f8(cross),
                    "crossMarginBorrowed": _f8(other.get("crossMarginBorrowed", zero)),
                    "crossMarginFree": _f8(cross),
                    "crossMarginInterest": _f8(other.get("crossMarginInterest", zero)),
                    "crossMarginLocked": "0.00000000",
                    "umWalletBalance": _f8(um),
                    "umUnrealizedPNL": "0.00000000",
                    "cmWalletBalance": _f8(wallet),
                    "cmUnrealizedPNL": _f8(pnl.get(coin, zero)),
                }
            )
        return self._json(rows)

    async def _position_mode(self, request: web.Request) -> web.Response:
        checked = await self._signed(request)
        return self._json({"dualSidePosition": checked[0].dual_side})

    async def _multi_assets(self, request: web.Request) -> web.Response:
        # "Get Current Multi-Assets Mode": {"multiAssetsMargin": true} (developers.binance.com)
        checked = await self._signed(request)
        return self._json({"multiAssetsMargin": checked[0].multi_assets})

    # ---- open conditional orders: Binance's Algo Service since 2025-12 --------------------------

    def _algo_order(self, stop: StopOrderSpec) -> dict[str, Any]:
        """A conditional order as "Current All Algo Open Orders" (GET /fapi/v1/openAlgoOrders)
        lists it: the docs' response example's fields."""
        order_type = "STOP_MARKET" if stop.kind == "stop" else "TAKE_PROFIT_MARKET"
        return {
            **ALGO_ORDER_EXAMPLE,
            "algoId": int(stop.order_id),
            "clientAlgoId": f"alertd-test-{stop.order_id}",
            "orderType": order_type,
            "symbol": stop.market.id,
            "side": "SELL" if stop.sell else "BUY",
            "positionSide": stop.side.upper() if stop.hedge else "BOTH",
            "quantity": "0" if stop.contracts is None else _plain(stop.contracts),
            "triggerPrice": _plain(stop.trigger),
            "price": "0.00",
            "workingType": "MARK_PRICE",
            "closePosition": stop.contracts is None,
            "reduceOnly": stop.contracts is not None and not stop.hedge,
            "createTime": stop.created_ms,
            "updateTime": stop.created_ms,
        }

    async def _open_orders(self, request: web.Request) -> web.Response:
        # conditional orders live in the Algo Service: the matching engine holds none here
        await self._signed(request)
        return self._json([])

    async def _open_algo_orders(self, request: web.Request) -> web.Response:
        account, params = await self._signed(request)
        wanted = params.get("symbol")
        rows = [
            self._algo_order(stop)
            for stop in self.stops(account.api_key)
            if wanted is None or stop.market.id == wanted
        ]
        return self._json(rows)

    @scripted
    def as_strategy_order(self, order_id: str) -> None:
        """The conditional order ``order_id`` (``add_stop``) as placed before the Algo
        Service: a portfolio margin account's is then a UM conditional order ("strategy")."""
        self._strategy_orders.add(order_id)

    def _strategy_order(self, account: _Account, stop: StopOrderSpec) -> dict[str, Any]:
        """A conditional order as "Query All Current UM Open Conditional Orders" (GET
        /papi/v1/um/conditional/openOrders) lists it: the fields of its response example
        (binance/binance-connector-python, clients/derivatives_trading_portfolio_margin,
        tests/unit/rest_api/test_trade_api.py). It has no closePosition: the whole position's
        size stands in ``origQty``."""
        size = stop.contracts
        if size is None:
            slot = stop.side.upper() if stop.hedge else "BOTH"
            held = account.positions.get((stop.market.id, slot))
            size = abs(held.amount) if held is not None else Decimal(0)
        return {
            "newClientStrategyId": f"alertd-test-{stop.order_id}",
            "strategyId": int(stop.order_id),
            "strategyStatus": "NEW",
            "strategyType": "STOP_MARKET" if stop.kind == "stop" else "TAKE_PROFIT_MARKET",
            "origQty": _plain(size),
            "price": "0",
            "reduceOnly": not stop.hedge,
            "side": "SELL" if stop.sell else "BUY",
            "positionSide": stop.side.upper() if stop.hedge else "BOTH",
            "stopPrice": _plain(stop.trigger),
            "symbol": stop.market.id,
            "bookTime": stop.created_ms,
            "updateTime": stop.created_ms,
            "timeInForce": "GTC",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "priceMatch": "NONE",
        }

    def _papi_stops(self, account: _Account, params: Any, strategy: bool) -> list[StopOrderSpec]:
        wanted = params.get("symbol")
        return [
            stop
            for stop in self.stops(account.api_key)
            if (stop.order_id in self._strategy_orders) == strategy
            and (wanted is None or stop.market.id == wanted)
        ]

    async def _papi_algo_orders(self, request: web.Request) -> web.Response:
        """ "Query All Current UM Open Algo Orders" (GET /papi/v1/um/algo/openAlgoOrders):
        the rows of /fapi/v1/openAlgoOrders (the connector's response example)."""
        account = await self._portfolio_signed(request)
        stops = self._papi_stops(account, request.query, strategy=False)
        return self._json([self._algo_order(stop) for stop in stops])

    async def _papi_conditional_orders(self, request: web.Request) -> web.Response:
        account = await self._portfolio_signed(request)
        stops = self._papi_stops(account, request.query, strategy=True)
        return self._json([self._strategy_order(account, stop) for stop in stops])

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """The user data stream's ALGO_UPDATE ("Event: Algo Order Update")."""
        row = self._algo_order(stop)
        now = now_ms()
        self._push_user(
            api_key,
            {
                "e": "ALGO_UPDATE",
                "T": now,
                "E": now,
                "o": {
                    "caid": row["clientAlgoId"],
                    "aid": row["algoId"],
                    "at": "CONDITIONAL",
                    "o": row["orderType"],
                    "s": row["symbol"],
                    "S": row["side"],
                    "ps": row["positionSide"],
                    "f": "GTC",
                    "q": row["quantity"],
                    "X": "NEW" if event == "new" else "CANCELED",
                    "ai": "",
                    "ap": "0.00000",
                    "aq": "0.00000",
                    "act": "0",
                    "tp": row["triggerPrice"],
                    "p": "0",
                    "V": "EXPIRE_MAKER",
                    "wt": "MARK_PRICE",
                    "pm": "NONE",
                    "cp": row["closePosition"],
                    "pP": False,
                    "R": row["reduceOnly"],
                    "tt": 0,
                    "gtd": 0,
                },
            },
        )

    async def _asset_index_get(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        if symbol is None:
            return self._json(list(self._asset_index.values()))
        if symbol not in self._asset_index:
            return self._error(400, -1121, "Invalid symbol.")
        return self._json(self._asset_index[symbol])

    async def _insurance_balance(self, request: web.Request) -> web.Response:
        # "Query Insurance Fund Balance Snapshot" (public): with a symbol, its pool; each
        # symbol is its own pool here, holding USDT only
        market = self._symbol_filter(dict(request.query))
        pools = [
            {
                "symbols": [m.id],
                "assets": [
                    {
                        "asset": "USDT",
                        "marginBalance": self._insurance.get(m.id, INSURANCE_FUND),
                        "updateTime": now_ms(),
                    }
                ],
            }
            for m in ([market] if market is not None else self._markets.values())
        ]
        return self._json(pools[0] if market is not None else pools)

    async def _klines(self, request: web.Request) -> web.Response:
        # Binance "Kline/Candlestick Data" and "Mark Price Kline": symbol, interval, startTime,
        # endTime, limit (default 500, at most 1500); oldest first
        params = request.query
        minutes = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240}.get(
            params.get("interval", "")
        )
        if minutes is None:
            return self._error(400, -1120, "Invalid interval.")
        step = minutes * 60_000
        chosen = self.mark_candles(
            params.get("symbol", ""),
            step,
            int(params.get("startTime", 0)),
            int(params.get("endTime", 2**62)),
            min(int(params.get("limit", 500)), 1500),
            first="startTime" in params,  # from the start forwards, as Binance pages
        )
        return self._json(
            [
                [t, o, h, low, c, "0", t + step - 1, "0", 60, "0", "0", "0"]
                for t, o, h, low, c in chosen
            ]
        )

    async def _api_restrictions(self, request: web.Request) -> web.Response:
        # Binance "Get API Key Permission" (wallet endpoints): the fields alertd reads
        checked = await self._signed(request)
        trade = checked[0].can_trade
        return self._json(
            {
                "ipRestrict": True,
                "createTime": 1698645219000,
                "enableReading": True,
                "enableWithdrawals": False,
                "enableInternalTransfer": False,
                "enableMargin": False,
                "enableFutures": trade,
                "permitsUniversalTransfer": False,
                "enableVanillaOptions": False,
                "enableFixApiTrade": False,
                "enableFixReadOnly": False,
                "enableSpotAndMarginTrading": trade,
                "enablePortfolioMarginTrading": False,
            }
        )

    # ---- REST: listen keys (USER_STREAM: API key, no signature) ----------------------------------

    async def _listen_key_post(self, request: web.Request) -> web.Response:
        account = self._key_account(request)
        # an account with an active key gets the same key back (its validity extended)
        if account.listen_key is None:
            account.listen_key = shared.random_id(LISTEN_KEY_ALPHABET, 64)
        return self._json({"listenKey": account.listen_key})

    async def _listen_key_put(self, request: web.Request) -> web.Response:
        self.listen_key_puts += 1
        self.listen_key_put_paths.append(request.path)
        account = self._key_account(request)
        if account.listen_key is None:
            return self._error(400, *ERR_LISTEN_KEY)
        return self._json({"listenKey": account.listen_key})

    async def _listen_key_delete(self, request: web.Request) -> web.Response:
        account = self._key_account(request)
        key, account.listen_key = account.listen_key, None
        if key is None:
            return self._error(400, *ERR_LISTEN_KEY)
        for conn in self._connections_of("private"):
            if conn.listen_key == key:
                self._spawn(conn.close(1000))
        return self._json({})

    # ---- websockets ------------------------------------------------------------------------------

    def _account_by_listen_key(self, key: str) -> _Account | None:
        return next((a for a in self._accounts.values() if a.listen_key == key), None)

    async def _ws_entry(self, request: web.Request) -> web.StreamResponse:
        """Route a websocket upgrade: market streams, or the user-data stream of a listen key."""
        path = request.path
        streams: list[str] = []
        listen_key = request.query.get("listenKey")
        combined = path.endswith("/stream")
        if combined:
            streams = [s for s in request.query.get("streams", "").split("/") if s]
        elif path.startswith(("/ws/", "/pm/ws/")):
            streams = [request.match_info["target"]]
        for name in list(streams):
            if name.isdigit():
                # ccxt's own numbering of its connections to dstream (COIN-M market streams,
                # ``.../ws/<n>``): a public connection, streams subscribed on it
                streams.remove(name)
            elif "@" not in name and not name.startswith("!"):
                streams.remove(name)
                listen_key = name
        account = None
        if listen_key is not None or path.startswith("/private"):
            account = self._account_by_listen_key(listen_key or "")
            if account is None:
                return self._error(400, *ERR_LISTEN_KEY)
        kind = "private" if account is not None else "public"

        def connection(request: web.Request, ws: web.WebSocketResponse) -> _Connection:
            conn = _Connection(request, ws, kind)
            conn.combined = combined
            conn.streams.update(streams)
            if account is not None:
                conn.owner = account.api_key
                conn.listen_key = listen_key
            return conn

        return await self._serve_ws(request, connection, self._on_ws_text)

    def _on_ws_text(self, conn: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._reply(conn, {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        if not isinstance(request, dict):
            self._reply(conn, {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            error = {"code": 2, "msg": "Invalid request: params must be a list of strings"}
            self._reply(conn, {"error": error, "id": request_id})
            return
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            self.asset_index_subscribes += params.count("!assetIndex@arr")
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": sorted(conn.streams), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            self._reply(
                conn, {"result": None if method == "SET_PROPERTY" else False, "id": request_id}
            )
        else:
            msg = (
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
            )
            self._reply(conn, {"error": {"code": 2, "msg": msg}, "id": request_id})

    def _reply(self, conn: _Connection, message: dict[str, Any]) -> None:
        conn.send(message)

    @staticmethod
    def _framed(conn: _Connection, stream: str, payload: Any) -> str:
        """An event as sent on ``conn``: wrapped for combined (/stream) connections."""
        return shared.compact({"stream": stream, "data": payload} if conn.combined else payload)

    def _send(self, conn: _Connection, stream: str, payload: Any) -> None:
        """Loop thread: queue an event."""
        conn.post(self._framed(conn, stream, payload))

    def _malformed_frames(self, conn: _Connection, kind: str) -> list[str]:
        """``"json"``: a truncated ``markPriceUpdate``; ``"shape"``: a ``markPriceUpdate`` with
        ``"p": "abc"`` on market streams, an ``ACCOUNT_UPDATE`` with non-numeric fields on
        user-data streams."""
        stamp = now_ms()
        if kind == "json":
            return ['{"e":"markPriceUpdate","E":' + str(stamp) + ',"s":"BTCUSDT","p":"9']
        if conn.kind == "private":
            event = {
                "e": "ACCOUNT_UPDATE",
                "E": stamp,
                "T": stamp,
                "a": {"m": "ORDER", "B": "garbled", "P": [{"s": "BTCUSDT", "pa": "abc"}]},
            }
            return [self._framed(conn, conn.listen_key or "", event)]
        names = [s.partition("@")[0] for s in conn.streams if "@markPrice" in s]
        market_id = (names[0] if names and names[0] != "!markprice" else "btcusdt").upper()
        event = {"e": "markPriceUpdate", "E": stamp, "s": market_id, "p": "abc"}
        return [self._framed(conn, f"{market_id.lower()}@markPrice", event)]

    @scripted
    def has_user_stream(self, api_key: str) -> bool:
        """The account has a live user-data connection on its current listen key."""
        account = self._account(api_key)
        return any(
            c.owner == api_key and c.live and c.listen_key == account.listen_key
            for c in self._connections_of("private")
        )

    def user_stream_paths(self, api_key: str) -> list[str]:
        """The URL paths of the account's live user-data connections: ``/private/ws`` (what
        ccxt dials for USDⓈ-M) or ``/pm/ws/<key>`` (the portfolio margin stream)."""
        return [
            c.request.path for c in self._connections_of("private") if c.owner == api_key and c.live
        ]

    async def wait_for_user_stream(self, api_key: str, timeout_s: float = 2.0) -> None:
        """Wait until the account has a live user-data connection on its current listen key."""
        await self.wait_until(lambda: self.has_user_stream(api_key), timeout_s)


_REASONS = {
    403: "Forbidden",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# ---- command line: a server for benchmarks ---------------------------------------------------


def _seed_accounts(fake: FakeBinanceUSDM, count: int) -> None:
    """Accounts key0..keyN-1 / secret0..: a cross long BTC, a cross short ETH and an isolated
    long SOL each, sized differently per account so that their risk differs; the BTC long
    protected by a close-position stop 5% below, the ETH short by half its size 5% above."""
    btc, eth, sol = (fake.mark(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    for i in range(count):
        key = f"key{i}"
        fake.add_account(key, f"secret{i}", wallet_balance=10_000 + 250 * (i % 40))
        scale = Decimal(1 + i % 7)
        fake.open_position(key, "BTCUSDT", "long", Decimal("0.05") * scale, btc * Decimal("0.99"))
        fake.open_position(
            key, "ETHUSDT", "short", Decimal("0.8") * scale, eth * Decimal("1.01"), leverage=10
        )
        fake.open_position(
            key,
            "SOLUSDT",
            "long",
            10 * scale,
            sol,
            margin_mode="isolated",
            leverage=10,
        )
        fake.add_stop(key, "BTCUSDT", "long", (btc * Decimal("0.95")).quantize(Decimal("0.1")))
        eth_stop = (eth * Decimal("1.05")).quantize(Decimal("0.01"))
        fake.add_stop(key, "ETHUSDT", "short", eth_stop, Decimal("0.4") * scale)


def _seed_multi_assets_accounts(fake: FakeBinanceUSDM, count: int) -> None:
    """``_seed_accounts``' positions in multi-assets mode, each account also holding USDC (a
    margin asset: ETHUSDC listed, on a line of its own) and BTC (a coin following BTCUSDT's
    mark, 5% buffers); USDT's and USDC's indices walk every mark interval (``rates_walk``),
    as Binance's do in their fifth decimal, so every frame of the asset index stream moves
    the rates of every account."""
    _seed_accounts(fake, count)
    btc = fake.mark("BTCUSDT")
    fake.add_symbol("ETH/USDC:USDC", fake.mark("ETHUSDT"))
    fake.set_asset_index("BTC", btc, "0.05", "0.05", follows="BTC/USDT:USDT")
    for asset in ("USDT", "USDC"):
        fake.set_asset_index(asset, "0.9999", "0.0001", "0.0001")
    for i in range(count):
        fake.set_multi_assets_coins(f"key{i}", {"USDC": 2_000 + 50 * (i % 40), "BTC": "0.02"})
    fake.rates_walk = Decimal("0.0001")


def main(argv: list[str] | None = None) -> int:
    """The benchmark server; ``--multi-assets`` seeds multi-assets accounts
    (``_seed_multi_assets_accounts``)."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--multi-assets", action="store_true")
    args, rest = own.parse_known_args(argv)
    seed = _seed_multi_assets_accounts if args.multi_assets else _seed_accounts
    return shared.serve_main(FakeBinanceUSDM, seed, rest, max_step=0.001)


if __name__ == "__main__":
    sys.exit(main())
