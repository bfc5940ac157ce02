"""Bybit v5 (unified trading account), USDT linear perpetuals.

Wire formats: bybit-exchange.github.io/docs/v5: "Get Position Info" (/v5/position/list),
"Get Wallet Balance" (/v5/account/wallet-balance), "Get Risk Limit" (/v5/market/risk-limit),
"Get Account Info" (/v5/account/info), websocket topics ``position``, ``wallet`` and
``tickers.<symbol>`` (markPrice).

alertd reads unified trading accounts only (``accountType=UNIFIED``). Bybit answers a classic
account's UNIFIED request with an empty 404 (pybit issues #140, #173), which ccxt takes for an
outage and alertd would retry forever: the account type is checked first, at every snapshot
(:func:`account_mode`, which also reads the margin mode).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alertd.engine.model import MarginMode, Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.tiers import TierTable
from alertd.exchanges.common import AdlScale, closed_both_sides, risk_tiers, with_adl
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import ExchangeAdapter, FrameError, Snapshot, dec, dec_or_none
from alertd.feeds.state import AccountMode, Coverage, ModeReading, PositionState, ReportedAccount

PROFILE = ExchangeProfile(
    id="bybit",
    name="Bybit",
    isolated_mm_at_entry=True,
    displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
    displayed_ratio_name="Account MM Rate",
    rounds_liquidation_to_tick=True,
)
MARKETS = MarketFilter(settle="USDT")
# Get Position Info ``adlRankIndicator`` (also in the position stream): 1-5, 5 first in line;
# 0 is the "default value of empty position" (v5 enums, adlRankIndicator): no rank
ADL = AdlScale(lowest=1, highest=5, none=frozenset({0}))

# /v5/account/info ``unifiedMarginStatus`` below 3 is not a unified trading account (docs v5,
# "Different Account Modes": 1 classic, 3 UTA 1.0, 4 UTA 1.0 pro, 5 UTA 2.0, 6 UTA 2.0 pro; 2
# was the retired unified margin account).
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
    if margin_mode == "REGULAR_MARGIN":
        # every collateral coin counts in the cross pool at its USD value times a tiered
        # collateral ratio: alertd's USDT-wallet computation holds while USDT is all it holds
        return ModeReading(AccountMode.UNIFIED_CROSS, detail, settle_only=True)
    if margin_mode == "ISOLATED_MARGIN":
        return ModeReading(AccountMode.UNIFIED_ISOLATED, detail)
    if margin_mode == "PORTFOLIO_MARGIN":
        return ModeReading(
            AccountMode.PORTFOLIO,
            detail,
            Coverage.EXCHANGE_RATIO,
            "portfolio margin requirements are scenario-based and not reproducible from public "
            "data: the margin ratio is Bybit's own accountMMRate, read at every reconcile; "
            "liquidation prices, crash distance and margin to add are not computed",
        )
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


class BybitAdapter(ExchangeAdapter):
    exchange_id = "bybit"
    market_filter = MARKETS
    wallet_includes_isolated = True  # walletBalance holds isolated positions' margin too

    def __init__(self) -> None:
        # On a unified account isolation is account-wide ("ISOLATED_MARGIN" in
        # /v5/account/info) and tradeMode is always 0; classic accounts set tradeMode per
        # position. Read at every REST snapshot.
        self.account_isolated = False

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        out = {}
        for symbol in symbols:
            market = exchange.market(symbol)
            response = await exchange.publicGetV5MarketRiskLimit(
                {"category": "linear", "symbol": market["id"]}
            )
            rows = (response.get("result") or {}).get("list") or []
            if rows:
                out[symbol] = risk_limits_to_table(rows)
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
            isolated_margin=dec(raw.get("positionBalance"), "positionBalance")
            if isolated
            else None,
            leverage=dec(leverage, "leverage") if leverage not in (None, "") else None,
        )
        return with_adl(state, raw, "adlRankIndicator", ADL)

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        info = (await exchange.privateGetV5AccountInfo()).get("result") or {}
        mode = account_mode(info)
        self.account_isolated = mode.mode is AccountMode.UNIFIED_ISOLATED
        return mode

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        snapshot: Snapshot = ([], {}, {})

        def parse(raw: dict[str, Any]) -> list[PositionState]:
            p = self._position(exchange, raw)
            return [] if p is None else [p]

        cursor = None
        while True:
            request = {"category": "linear", "settleCoin": self.settle, "limit": 200}
            if cursor:
                request["cursor"] = cursor
            response = await exchange.privateGetV5PositionList(request)
            result = response.get("result") or {}
            self._snapshot_into(
                result.get("list") or [], parse, ("liqPrice", "positionMM", "markPrice"), snapshot
            )
            cursor = result.get("nextPageCursor")
            if not cursor:
                return snapshot

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        response = await exchange.privateGetV5AccountWalletBalance({"accountType": "UNIFIED"})
        accounts = (response.get("result") or {}).get("list") or []
        if not accounts:
            raise FrameError("wallet-balance: no account in the answer")
        info = accounts[0]
        wallet = Decimal(0)
        others = []
        for coin in info.get("coin") or []:
            if coin.get("coin") == self.settle:
                wallet = dec(coin.get("walletBalance"), "walletBalance")
            elif any(dec_or_none(coin.get(f)) for f in ("walletBalance", "equity", "borrowAmount")):
                others.append(str(coin.get("coin")))
        return wallet, ReportedAccount(
            maintenance_margin=dec_or_none(info.get("totalMaintenanceMargin")),
            margin_balance=dec_or_none(info.get("totalMarginBalance")),
            margin_ratio=dec_or_none(info.get("accountMMRate")),
            other_collateral=tuple(sorted(others)),
        )

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        changed = await exchange.watch_positions()
        out = []
        for position in changed:
            raw = position.get("info") or {}
            if raw.get("category") not in (None, "linear"):
                continue
            p = self._position(exchange, raw)
            if p is not None:
                out.append(p)
            elif raw.get("symbol"):
                # a one-way close arrives with side "" and size 0: close both possible keys
                market = exchange.safe_market(raw.get("symbol"), None, None, "swap")
                out.extend(closed_both_sides(market["symbol"]))
        return out

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        balance = await exchange.watch_balance()
        info = balance.get("info") or {}
        accounts = info.get("data") if isinstance(info, dict) else info
        if isinstance(accounts, dict):
            accounts = [accounts]
        for account in accounts or []:
            for coin in account.get("coin") or []:
                if coin.get("coin") == self.settle:
                    return dec(coin.get("walletBalance"), "walletBalance")
        return None


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
    capabilities=Capabilities(tier_source=TierSource.RISK_LIMITS, key_permissions=key_permissions),
    markets=MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    # linear markets only: load_markets makes 3 requests instead of 11
    ccxt_options={"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
)
