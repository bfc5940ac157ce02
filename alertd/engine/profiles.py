"""Exchange conventions: what differs between exchanges in the same margin arithmetic.

Every profile shares one model (``MM = notional * (mmr + fee) - deduction``, liquidation where
maintenance margin equals margin balance). A profile says which fee joins the rate, whether tiers
carry deductions, where an isolated position's maintenance margin is valued, and how the
exchange itself displays its margin ratio. Sources are in ``docs/exchanges.md``.

The profiles themselves live with the rest of each exchange's knowledge, in
``alertd/exchanges/<exchange>.py``; the engine only ever receives them (inside an ``Account``)
and never looks one up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.tiers import TierBasis


class FeeTerm(enum.Enum):
    """Where the account's taker fee rate (``Position.fee_rate``) enters the requirement."""

    # added to the maintenance rate: OKX's liquidation fee, Gate's taker fee (and any rate a
    # snapshot gives an exchange whose base rate is zero)
    MAINTENANCE_RATE = "added to the maintenance rate"
    # Bybit since 2025-09-02: the estimated fee to close the position at its bankruptcy
    # price, ``quantity x entry x (1 -+ 1/leverage) x rate`` (long -, short +), a term that
    # does not move with the mark ("The New Margin Calculation: Adjustments and
    # Implications")
    CLOSE_AT_BANKRUPTCY = "the fee to close at the bankruptcy price"
    NONE = "none"  # the rate plays no part (Bybit before 2025-09-02)


class DisplayedRatio(enum.Enum):
    """How an exchange's own screen shows the ratio, so users can compare."""

    REQUIREMENT_OVER_EQUITY = "requirement/equity"  # Binance, Bybit: rises to 100%
    EQUITY_OVER_REQUIREMENT = "equity/requirement"  # OKX mgnRatio, Gate: falls to 100%
    NONE = "none"  # Hyperliquid shows account value beside maintenance margin


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeProfile:
    """An exchange's margin conventions; the defaults are the common case (Binance's)."""

    id: str
    name: str
    displayed_ratio: DisplayedRatio
    displayed_ratio_name: str
    # True: bracket tiers with deductions (MM continuous). False: step tiers (MM jumps).
    deduction_tiers: bool = True
    tier_basis: TierBasis = TierBasis.NOTIONAL
    # The base (non-VIP) taker fee rate, for a position whose account's own rate is not known
    # (OKX liquidation fee, Gate taker fee, Bybit's fee to close). Zero where the exchange's
    # requirement holds no fee (Binance, Hyperliquid).
    default_fee_rate: Decimal = Decimal(0)
    fee_term: FeeTerm = FeeTerm.MAINTENANCE_RATE
    # An isolated position's MM valued at its entry price (Bybit before 2025-09-02, help:
    # "Liquidation Price (USDT Contract)"); everyone now at the mark.
    isolated_mm_at_entry: bool = False
    # Hyperliquid: mmr = 1 / (2 * max leverage) of the tier.
    mmr_from_max_leverage: bool = False
    # Bybit rounds a long's liquidation price up and a short's down to the tick.
    rounds_liquidation_to_tick: bool = False

    @property
    def uses_fee(self) -> bool:
        """The exchange's requirement holds a fee term (the account's rate matters)."""
        return self.default_fee_rate > 0 and self.fee_term is not FeeTerm.NONE
