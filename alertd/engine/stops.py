"""Stop-loss coverage: which open conditional orders protect a position, and how well.

Pure: the exchanges' adapters turn each exchange's open conditional orders (stop-market,
stop-limit, take-profit, trailing stops, a position's own TP/SL) into :class:`StopOrder`; this
module decides which of them protect a position and reads the figures the rules use.

A stop **protects** a position when it triggers on an adverse move (a long's stop triggers
when the price falls, a short's when it rises) and reduces or closes that position (its side
is the position's: a sell for a long, a buy for a short, or a close-position order). A
take-profit triggers on a favourable move and protects nothing. A trailing stop protects;
where the exchange does not say its current trigger price it counts for coverage but has no
price.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from alertd.engine.model import Position, Side

ZERO = Decimal(0)
ONE = Decimal(1)


class Trigger(enum.Enum):
    """The move that triggers an order."""

    FALL = "falls"  # the trigger price is reached from above
    RISE = "rises"  # from below
    # the price crossing the trigger either way (OKX trigger orders: the side of the price at
    # placement decides, and the payload does not say it): judged against the current mark
    CROSS = "crosses"


class StopKind(enum.Enum):
    STOP = "stop"  # stop-market / stop-limit / a position's stop-loss
    TAKE_PROFIT = "take-profit"
    TRAILING = "trailing stop"


@dataclass(frozen=True, slots=True)
class StopOrder:
    """One open conditional order as the exchange reported it.

    ``side`` is the position side the order reduces: a sell reduces a long. ``contracts`` is
    its size in the market's contracts; ``None`` closes the whole position (Binance
    ``closePosition``, Bybit ``closeOnTrigger`` with no quantity or a position's own TP/SL,
    OKX ``closeFraction`` 1, Gate ``close`` / size 0, Hyperliquid ``isPositionTpsl``).
    ``trigger_price`` is ``None`` for a trailing stop whose current trigger the exchange does
    not report.
    """

    symbol: str
    side: Side
    kind: StopKind
    trigger: Trigger
    trigger_price: Decimal | None
    contracts: Decimal | None
    order_id: str = ""
    reduce_only: bool = True

    def protects(self, symbol: str, side: Side, mark: Decimal) -> bool:
        """Triggers on a move against a ``side`` position in ``symbol`` (at ``mark``) and
        reduces it."""
        if self.symbol != symbol or self.side is not side or self.kind is StopKind.TAKE_PROFIT:
            return False
        if self.contracts is not None and self.contracts <= 0:
            return False  # closes nothing
        if self.trigger is Trigger.CROSS:
            # reached by an adverse move: below the mark for a long, above it for a short
            return self.trigger_price is not None and (self.trigger_price - mark) * side < 0
        return self.trigger is (Trigger.FALL if side is Side.LONG else Trigger.RISE)


def protective(
    stops: Iterable[StopOrder], symbol: str, side: Side, mark: Decimal
) -> list[StopOrder]:
    """The stops that protect the ``side`` position in ``symbol`` at ``mark``."""
    return [s for s in stops if s.protects(symbol, side, mark)]


def stop_loss_price(stops: Iterable[StopOrder], side: Side) -> Decimal | None:
    """The trigger of the protective stop closest to the mark: a long's highest stop, a
    short's lowest (the first that fires on an adverse move). ``stops`` are the position's
    protective ones; ``None`` when none has a price."""
    prices = [s.trigger_price for s in stops if s.trigger_price is not None]
    if not prices:
        return None
    return max(prices) if side is Side.LONG else min(prices)


def stop_coverage(stops: Iterable[StopOrder], contracts: Decimal) -> Decimal:
    """The fraction of a position of ``contracts`` its protective ``stops`` close, at most 1
    (a close-position stop covers all of it; laddered stops add up)."""
    if contracts <= 0:
        return ZERO
    covered = ZERO
    for s in stops:
        if s.contracts is None:
            return ONE
        covered += s.contracts
    return min(ONE, covered / contracts)


def beyond_liquidation(
    stop: Decimal, liquidation: Decimal, side: Side, mark: Decimal
) -> Decimal | None:
    """How far ``stop`` lies beyond ``liquidation``, as a fraction of ``mark``: positive when
    the liquidation comes first on an adverse move (a long's stop below its liquidation
    price never triggers), negative when the stop fires first. None unless the liquidation
    price is on the adverse side of the mark (a long's below it): a cross leg liquidated by
    the other way's move (hedged legs), or one already past it, has no such race."""
    if (mark - liquidation) * side <= 0:
        return None
    return (liquidation - stop) * side / mark


def loss_at(
    price: Decimal, side: Side, quantity: Decimal, entry: Decimal, inverse: bool
) -> Decimal:
    """The position's loss (positive) if the mark were at ``price``: minus its unrealized PnL
    there, in the settle currency, without fees or slippage. ``quantity`` is in base units
    (linear) or quote units (inverse)."""
    if inverse:
        pnl = side * quantity * (ONE / entry - ONE / price)
    else:
        pnl = side * quantity * (price - entry)
    return -pnl


def price_for_loss(
    loss: Decimal, side: Side, quantity: Decimal, entry: Decimal, inverse: bool
) -> Decimal | None:
    """The price at which the position's loss from its entry is ``loss`` (the inverse of
    :func:`loss_at`): where a stop keeps the loss to it. ``None`` where no price does (an
    inverse short whose ``loss`` exceeds what any price can take)."""
    if quantity <= 0:
        return None
    if not inverse:
        return entry - side * loss / quantity
    reciprocal = ONE / entry + side * loss / quantity
    return None if reciprocal <= 0 else ONE / reciprocal


@dataclass(frozen=True, slots=True)
class StopFigures:
    """A position's stop-loss figures, as status, ``calc`` and messages show them."""

    price: Decimal | None  # the closest protective stop's trigger (None: none with a price)
    coverage: Decimal  # fraction of the position its protective stops close
    orders: int  # how many protective orders
    # how far the closest stop lies beyond the liquidation price (fraction of the mark;
    # positive: it can never trigger); None without a stop price or a liquidation price
    beyond_liquidation: Decimal | None
    loss: Decimal | None  # the position's loss from entry at the closest stop


def stop_figures(
    stops: tuple[StopOrder, ...] | None,
    position: Position,
    mark: Decimal,
    liquidation: Decimal | None,
) -> StopFigures | None:
    """The figures of one position's protective stops at ``mark``; None where the stops are
    not read."""
    p = position
    figures = protection(stops, p.symbol, p.side, p.contracts, mark, liquidation)
    if figures is None or figures.price is None:
        return figures
    return replace(
        figures, loss=loss_at(figures.price, p.side, p.quantity, p.entry_price, p.inverse)
    )


def protection(
    stops: tuple[StopOrder, ...] | None,
    symbol: str,
    side: Side,
    contracts: Decimal,
    mark: Decimal,
    liquidation: Decimal | None,
) -> StopFigures | None:
    """:func:`stop_figures` of a position known by its size alone (an account whose
    requirement the exchange's own figures stand in for: the liquidation price is the
    exchange's), without the loss at the stop; None where the stops are not read."""
    if stops is None:
        return None
    found = protective(stops, symbol, side, mark)
    price = stop_loss_price(found, side)
    return StopFigures(
        price=price,
        coverage=stop_coverage(found, contracts),
        orders=len(found),
        beyond_liquidation=None
        if price is None or liquidation is None
        else beyond_liquidation(price, liquidation, side, mark),
        loss=None,
    )
