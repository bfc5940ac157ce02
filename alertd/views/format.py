"""Numbers as alertd shows them: the one home for every figure in a table, a message or JSON.

Pure: ``Decimal`` in, text out (no clock, no I/O; a fee gap's line computes the maintenance
margin it leaves out with the engine). The house rules:

- **money**: thousands separators and two decimals from 1 up (``1,234.56 USDT``); below 1,
  six significant digits (a BTC pool's ``0.0000043301 BTC`` is not ``0.00``); the unit after.
- **prices**: thousands separators, six significant digits and never fewer than two decimals
  (``58,232.93``, ``74.4312``, ``0.113551``); ``--`` for "no liquidation price", as exchanges
  show it.
- **quantities**: exactly as held (the exchange keeps them on its lot size); a size *to cut*
  is rounded up, to the lot size when it is known, else to four significant digits: cutting
  a little more is the safe side.
- **percents**: a fraction times 100; a ratio past liquidation reads ``LIQUIDATED``. Shown
  beside a threshold, a value gets the decimals that tell the two apart, rounded towards its
  own side: ``2.99%`` beside "below 3.0%", never ``3.0%``.
- **JSON**: exact decimal strings without an exponent; ``Infinity`` for a liquidated ratio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_UP, Context, Decimal

from alertd.engine.fee_gap import FeeGap, pools_left_out
from alertd.engine.model import Account

NONE = "-"
NO_PRICE = "--"  # the exchanges' own way of showing "no liquidation price"
INFINITE = "∞"
LIQUIDATED = "LIQUIDATED"
MONEY_DIGITS = 6  # significant digits of an amount below 1
PRICE_DIGITS = 6
CUT_DIGITS = 4  # significant digits of a size to cut when the lot size is unknown
MAX_APART_PLACES = 8  # decimals a value may gain to read differently from its threshold

# wide enough that rounding a figure to a few decimals never overflows the precision
_WIDE = Context(prec=80)

# a positions table with every column needs about this many; a narrower terminal (calc, status)
# gets the key figures in one table that fits 80 columns and the rest in a second
WIDE_COLUMNS = 150


def count(n: int, noun: str) -> str:
    """``1 account``, ``2 accounts``, ``0 alerts``: a number of things, in English."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def decimal_str(value: Decimal | None) -> str | None:
    """A JSON decimal string: exact, no exponent; ``"Infinity"`` for a liquidated ratio."""
    if value is None:
        return None
    if not value.is_finite():
        return "Infinity" if value > 0 else "-Infinity"
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _rounded(value: Decimal, places: int, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding, context=_WIDE)


def _fixed(value: Decimal, places: int, rounding: str = ROUND_HALF_EVEN, sign: str = "") -> str:
    """``value`` with ``places`` decimals and thousands separators; never ``-0.00``."""
    q = _rounded(value, places, rounding)
    if q == 0:
        q = abs(q)
    return f"{q:{sign},.{places}f}"


def _places(value: Decimal, significant: int, minimum: int) -> int:
    """Decimals that show ``significant`` digits of ``value``, and at least ``minimum``."""
    if value == 0:
        return minimum
    return max(minimum, significant - (value.adjusted() + 1))


def _trim(text: str, keep: int) -> str:
    """Drop trailing zeros after the ``keep``-th decimal."""
    if "." not in text:
        return text
    head, tail = text.split(".")
    tail = tail[:keep] + tail[keep:].rstrip("0")
    return f"{head}.{tail}" if tail else head


def money(value: Decimal | None, unit: str = "", *, up: bool = False) -> str:
    """An amount of the settle currency; ``up`` rounds up (an amount to add is never short)."""
    if value is None:
        return NONE
    if not value.is_finite():
        return INFINITE
    rounding = ROUND_CEILING if up else ROUND_HALF_EVEN
    if abs(value) >= 1 or value == 0:
        text = _fixed(value, 2, rounding)
    else:
        text = _trim(_fixed(value, _places(value, MONEY_DIGITS, 2), rounding), 2)
    return f"{text} {unit}" if unit else text


def fee_gap_line(pools: Iterable[Account], gap: FeeGap) -> str:
    """What the requirement leaves out for want of a fee rate, and how low it makes alertd's
    maintenance margin at most, pool by pool (each an account: ``Account.pool_accounts``),
    rounded up: what ``alertd status``, ``/status``, ``snapshot``, ``calc`` and the
    ``fee-gap`` warning say of a :class:`FeeGap`."""
    lows = [
        money(left.amount, settle, up=True)
        + ("" if left.share is None else f" ({percent(left.share, 1, rounding=ROUND_UP)})")
        for settle, left in pools_left_out(pools, gap)
    ]
    return gap.describe() + (f": maintenance margin up to {', '.join(lows)} low" if lows else "")


def price(value: Decimal | None) -> str:
    """A price: mark, entry, liquidation or bankruptcy; ``--`` when there is none."""
    if value is None:
        return NO_PRICE
    if not value.is_finite():
        return INFINITE
    return _trim(_fixed(value, _places(value, PRICE_DIGITS, 2)), 2)


def quantity(value: Decimal | None) -> str:
    """A size as held, exactly (it is on the market's lot size already)."""
    if value is None:
        return NONE
    text = format(value.normalize(), ",f")
    return "0" if text in ("-0", "0") else text


def size_to_cut(value: Decimal | None, lot: Decimal | None = None) -> str:
    """A size to cut, rounded up: to ``lot`` when known, else to four significant digits."""
    if value is None:
        return NONE
    if value <= 0:
        return "0"
    if lot is not None and lot > 0:
        steps = (value / lot).to_integral_value(rounding=ROUND_CEILING)
        return quantity(steps * lot)
    exponent = value.adjusted() - CUT_DIGITS + 1
    return quantity(value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_CEILING))


def percent(
    value: Decimal | None,
    places: int = 2,
    *,
    signed: bool = False,
    infinite: str = INFINITE,
    rounding: str = ROUND_HALF_EVEN,
) -> str:
    """A fraction as a percent (``0.667`` -> ``66.70%``); ``signed`` shows ``+`` for gains."""
    if value is None:
        return NONE
    if not value.is_finite():
        return infinite
    return _fixed(value * 100, places, rounding, "+" if signed else "") + "%"


def sigmas(value: Decimal | None, places: int = 1, *, rounding: str = ROUND_HALF_EVEN) -> str:
    """A distance in standard deviations (``2.4σ``); ``∞`` with no volatility."""
    if value is None:
        return NONE
    if not value.is_finite():
        return INFINITE
    return _fixed(value, places, rounding) + "σ"


def ratio(value: Decimal | None, places: int = 2) -> str:
    """A margin ratio as a percent; ``LIQUIDATED`` once the margin balance is gone."""
    return percent(value, places, infinite=LIQUIDATED)


def apart(
    value: Decimal,
    threshold: Decimal,
    shown: Callable[[Decimal, int, str], str],
    places: int,
) -> str:
    """``shown(value, places, rounding)``, with more decimals while it reads as the threshold.

    Once more decimals are needed the value is rounded towards its own side of the threshold,
    so that the text is never on the wrong side of it either.
    """
    text = shown(value, places, ROUND_HALF_EVEN)
    if value == threshold or not value.is_finite() or not threshold.is_finite():
        return text
    rounding = ROUND_FLOOR if value < threshold else ROUND_CEILING
    while text == shown(threshold, places, ROUND_HALF_EVEN) and places < MAX_APART_PLACES:
        places += 1
        text = shown(value, places, rounding)
    return text


def seconds(value: Decimal, places: int = 0, rounding: str = ROUND_HALF_EVEN) -> str:
    """Seconds, whole as the feed-age metrics show them (``45s``)."""
    return f"{_fixed(value, places, rounding)}s"


def duration(total_s: float) -> str:
    """A length of time for a message: ``45s``, ``10m``, ``2h05m``."""
    s = int(total_s)
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def minutes(total_s: float | None) -> str:
    """A lead time in whole minutes (``12 min``)."""
    return NONE if total_s is None else f"{total_s / 60:.0f} min"


def leverage(value: Decimal | None) -> str:
    if value is None:
        return NONE
    if not value.is_finite():
        return INFINITE
    return f"{_fixed(value, 2)}x"


def timestamp(epoch_s: float | None) -> str:
    """A wall-clock time in the local zone, with the zone's name (``2026-01-02 03:04:05 UTC``)."""
    if epoch_s is None:
        return NONE
    return dt.datetime.fromtimestamp(epoch_s).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def utc_until(epoch_s: float, now_s: float) -> str:
    """When something ends, in UTC to the minute: ``09:42 UTC`` today (``now_s``'s date),
    ``2026-12-09 09:42 UTC`` another day."""
    at = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    same_day = at.date() == dt.datetime.fromtimestamp(now_s, dt.UTC).date()
    return at.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
