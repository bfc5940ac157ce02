"""Exchange conventions: what differs between exchanges in the same margin arithmetic.

Every profile shares one model (``MM = notional * (mmr + fee) - deduction``, liquidation where
maintenance margin equals margin balance). A profile says which fee joins the rate, whether tiers
carry deductions, where an isolated position's maintenance margin is valued, and how the
exchange itself displays its margin ratio. Sources are in ``docs/exchanges.md``.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.tiers import TierBasis


class DisplayedRatio(enum.Enum):
    """How an exchange's own screen shows the ratio, so users can compare."""

    REQUIREMENT_OVER_EQUITY = "requirement/equity"  # Binance, Bybit: rises to 100%
    EQUITY_OVER_REQUIREMENT = "equity/requirement"  # OKX mgnRatio, Gate: falls to 100%
    NONE = "none"  # Hyperliquid shows account value beside maintenance margin


@dataclass(frozen=True, slots=True)
class ExchangeProfile:
    id: str
    name: str
    # True: bracket tiers with deductions (MM continuous). False: step tiers (MM jumps).
    deduction_tiers: bool
    tier_basis: TierBasis
    # Fee rate added to the maintenance rate when a position gives none (OKX liquidation fee,
    # Gate taker fee). Zero where the exchange adds none.
    default_fee_rate: Decimal
    # Bybit values an isolated position's MM at its entry price (help: "Liquidation Price (USDT
    # Contract)"); everyone else at the mark.
    isolated_mm_at_entry: bool
    # Hyperliquid: mmr = 1 / (2 * max leverage) of the tier.
    mmr_from_max_leverage: bool
    displayed_ratio: DisplayedRatio
    displayed_ratio_name: str
    # Bybit rounds a long's liquidation price up and a short's down to the tick.
    rounds_liquidation_to_tick: bool = False


PROFILES: dict[str, ExchangeProfile] = {
    p.id: p
    for p in (
        ExchangeProfile(
            id="binanceusdm",
            name="Binance USDⓈ-M",
            deduction_tiers=True,
            tier_basis=TierBasis.NOTIONAL,
            default_fee_rate=Decimal(0),
            isolated_mm_at_entry=False,
            mmr_from_max_leverage=False,
            displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
            displayed_ratio_name="Margin Ratio",
        ),
        ExchangeProfile(
            id="binancecoinm",
            name="Binance COIN-M",
            deduction_tiers=True,
            tier_basis=TierBasis.NOTIONAL,
            default_fee_rate=Decimal(0),
            isolated_mm_at_entry=False,
            mmr_from_max_leverage=False,
            displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
            displayed_ratio_name="Margin Ratio",
        ),
        ExchangeProfile(
            id="bybit",
            name="Bybit",
            deduction_tiers=True,
            tier_basis=TierBasis.NOTIONAL,
            default_fee_rate=Decimal(0),
            isolated_mm_at_entry=True,
            mmr_from_max_leverage=False,
            displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
            displayed_ratio_name="Account MM Rate",
            rounds_liquidation_to_tick=True,
        ),
        ExchangeProfile(
            id="okx",
            name="OKX",
            deduction_tiers=False,
            tier_basis=TierBasis.CONTRACTS,
            # OKX adds the liquidation fee (the taker rate; 0.05% at the base fee level).
            default_fee_rate=Decimal("0.0005"),
            isolated_mm_at_entry=False,
            mmr_from_max_leverage=False,
            displayed_ratio=DisplayedRatio.EQUITY_OVER_REQUIREMENT,
            displayed_ratio_name="mgnRatio",
        ),
        ExchangeProfile(
            id="gate",
            name="Gate",
            deduction_tiers=True,
            tier_basis=TierBasis.NOTIONAL,
            # Gate adds the taker fee rate to the maintenance rate: 0.075% reproduces Gate's own
            # figures in its real API responses (ccxt's test data) exactly.
            default_fee_rate=Decimal("0.00075"),
            isolated_mm_at_entry=False,
            mmr_from_max_leverage=False,
            displayed_ratio=DisplayedRatio.EQUITY_OVER_REQUIREMENT,
            displayed_ratio_name="MMR",
        ),
        ExchangeProfile(
            id="hyperliquid",
            name="Hyperliquid",
            deduction_tiers=True,
            tier_basis=TierBasis.NOTIONAL,
            default_fee_rate=Decimal(0),
            isolated_mm_at_entry=False,
            mmr_from_max_leverage=True,
            displayed_ratio=DisplayedRatio.NONE,
            displayed_ratio_name="",
        ),
    )
}


class UnknownExchangeError(KeyError):
    def __init__(self, exchange_id: str) -> None:
        close = difflib.get_close_matches(exchange_id, PROFILES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(PROFILES)})"
        self.message = f"unknown exchange {exchange_id!r}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def get_profile(exchange_id: str) -> ExchangeProfile:
    try:
        return PROFILES[exchange_id]
    except KeyError:
        raise UnknownExchangeError(exchange_id) from None
