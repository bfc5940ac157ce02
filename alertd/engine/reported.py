"""The exchange's own account ratio between two reads, moved with the marks.

Where alertd does not compute an account's requirement (portfolio margin, a mode it does not
model, a margin pool it does not know yet), the exchange's own ratio stands in; it is read over
REST at every reconcile. Between two reads the marks move, and a ratio read a minute ago can
be far from today's in a crash. So the ratio is moved with the marks the way a linear account
moves: the margin balance by each cross position's PnL since the read, the requirement in
proportion to the cross positions' notional (the exchange's own rates, unchanged). Isolated
positions are left out: their PnL and requirement are their own margin's, not the pool's.

Its limits, stated wherever the figure is shown ("moved with the marks since ..."): a tier
crossed since the read, portfolio margin's cross-asset offsets and scenario requirements, and
collateral coins' haircuts are not re-applied; collateral coins themselves are not moved
(alertd sees their prices only in the modes it computes). Binance portfolio margin's COIN-M
positions are the exception: their PnL and requirement move with their COIN-M mark, the
requirement across their brackets (:meth:`CoinLeg.requirement_at`), and their coins' whole
equity (the COIN-M wallet, the cross margin account less its loans, the UM wallet) moves with
the mark and counts at the coin's collateral tiers (:func:`counted_change`,
:func:`collateral_value`); other coins and their loans stay as read. The next read replaces
the estimate.
A position whose market or mark alertd does not know leaves the figure as read: half a move is
not given as a whole one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.margin import margin_ratio
from alertd.engine.model import Side
from alertd.engine.stops import StopFigures, loss_at
from alertd.engine.tiers import TierTable

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Exposure:
    """A position as far as its PnL and notional move with its mark."""

    symbol: str
    quantity: Decimal  # signed: positive long; base units (linear) or quote units (inverse)
    inverse: bool


def _moved(
    exposures: Sequence[Exposure], then: Mapping[str, Decimal], now: Mapping[str, Decimal]
) -> tuple[Decimal, Decimal, Decimal] | None:
    """The PnL of ``exposures`` from the marks ``then`` to ``now``, and their notional at
    each; None when a mark is missing on either side, or nothing is held."""
    pnl = ZERO
    notional_then = notional_now = ZERO
    for e in exposures:
        before, after = then.get(e.symbol), now.get(e.symbol)
        if before is None or after is None or before <= 0 or after <= 0:
            return None
        if e.inverse:  # PnL and notional in the coin: quantity is in quote units
            pnl += e.quantity * (1 / before - 1 / after)
            notional_then += abs(e.quantity) / before
            notional_now += abs(e.quantity) / after
        else:
            pnl += e.quantity * (after - before)
            notional_then += abs(e.quantity) * before
            notional_now += abs(e.quantity) * after
    if notional_then == 0:
        return None
    return pnl, notional_then, notional_now


@dataclass(frozen=True, slots=True)
class CoinLeg:
    """An inverse position in an account whose figures are in USD (a Binance portfolio margin
    account's COIN-M position, beside its USDⓈ-M ones in uniMMR): its PnL, in the coin, counts
    at the coin's mark, ``quantity x (mark / entry - 1)`` in USD; its requirement, in the coin,
    is its notional in the coin (``|quantity| / mark``) times a rate less its bracket's
    deduction in the coin (``cum``), so in USD ``|quantity| x rate - cum x mark``: constant only
    in the first bracket (``cum`` 0), where the USD requirement read with it stands exactly; in
    a higher one it grows as the mark falls (by ``cum`` x the fall), which the requirement as
    read leaves out until the next read."""

    symbol: str
    quantity: Decimal  # signed: positive long; quote (USD) units
    entry: Decimal
    # its share of the requirement of the account's ratio as read, in USD (the exchange's
    # maintenance margin of it, in the coin, at its mark of the read, in the ratio's terms:
    # Binance's uniMMR ratio requires 1.05 x MM); None: not reported (then moved with the
    # linear positions' notional, as the rest of the requirement is)
    requirement: Decimal | None = None
    # the coin's collateral rates (:class:`CoinEquity`): what a rise of the coin's equity
    # counts at (the lowest of its tiers) and a fall (the highest); 0 and 1 while not read: a
    # gain since the read is then not counted at all, a loss always in full (the safe side)
    collateral_rate: Decimal = ZERO
    collateral_rate_high: Decimal = Decimal(1)
    # the coin whose equity its PnL is in (legs of one coin count together, with its
    # wallet); "": a coin of its own
    coin: str = ""
    # its market's brackets, by its notional in the coin (Binance's "Query CM Notional and
    # Leverage Brackets"), and the ratio's requirement per unit of maintenance margin (the
    # terms of ``requirement``): with both, its requirement moves with its mark and size
    # (:meth:`requirement_at`); None: stays as read
    brackets: TierTable | None = None
    terms: Decimal = Decimal(1)
    # the coin's collateral tiers: with them, its equity (the whole coin's: its wallets,
    # loans and legs' PnL) is placed in them (:func:`collateral_value`); empty: bounded by
    # ``collateral_rate`` and ``collateral_rate_high``
    collateral_tiers: CollateralTiers = ()
    # opened since the read (a pushed position): not in the equity read, its PnL counted
    # from its entry
    opened: bool = False

    def pnl_usd(self, mark: Decimal) -> Decimal:
        return self.quantity * (mark / self.entry - 1)

    def requirement_at(self, mark: Decimal) -> Decimal:
        """Its share of the requirement at ``mark``, in USD: from its brackets, the bracket
        its notional in the coin (``|quantity| / mark``) is in, ``(notional x rate - cum) x
        mark`` in the ratio's terms (a tier crossed since the read re-applied, a pushed size
        counted); as read without brackets."""
        if self.quantity == 0:  # closed since the read: nothing required of it
            return ZERO
        if self.requirement is None or self.brackets is None:
            return self.requirement or ZERO
        notional = abs(self.quantity) / mark
        tier = self.brackets.tier_for(notional)
        return (notional * tier.mmr - tier.deduction) * mark * self.terms


# a coin's collateral tiers: (floor, cap, rate, cum) of its equity's USD value, ascending;
# the last one's cap None (its rate past the last cap read); cum None: not given
CollateralTiers = tuple[tuple[Decimal, Decimal | None, Decimal, Decimal | None], ...]


def _readings(usd: Decimal, tiers: CollateralTiers) -> tuple[Decimal, Decimal | None]:
    """A positive ``usd`` counted by the two readings of the tiers (:func:`collateral_value`):
    the slices, and ``value x rate + cum`` of the tier it is in (None where that tier gives
    no ``cum``), each never more than the value itself."""
    slices = ZERO
    quick = None
    for floor, cap, rate, cum in tiers:
        top = usd if cap is None else min(usd, cap)
        if top > floor:
            slices += (top - floor) * rate
            if top == usd:  # the tier the value is in
                quick = None if cum is None else min(usd * rate + cum, usd)
    return min(slices, usd), quick


def collateral_value(usd: Decimal, tiers: CollateralTiers) -> Decimal:
    """A coin's equity of ``usd`` as uniMMR counts it with its tiered collateral rates: in
    full below zero (min(equity x rate, equity)); above, the lower of two readings of
    Binance's "Portfolio Margin Pro Tiered Collateral Rate" (tiers of the asset's value,
    ``tierFloor`` to ``tierCap``, each with its ``collateralRate`` and ``cum``, "account equity
    quick addition number"): each tier's rate on the part of the value within the tier (the
    slices), and ``value x rate + cum`` of the tier the value is in (the quick addition, as
    ``cum`` is used in Binance's brackets). They agree where ``cum`` is the slices' sum below
    the tier (``cum`` = the previous tier's + its cap x (its rate - this rate)); the docs'
    example gives 0 where that would be 100, and which one Binance applies is not documented:
    the lower is never more than Binance counts. Never more than the value itself."""
    if usd <= 0:
        return usd
    slices, quick = _readings(usd, tiers)
    return slices if quick is None else min(slices, quick)


def _tiered_change(before: Decimal, after: Decimal, tiers: CollateralTiers) -> Decimal:
    """The change of a coin's counted equity from ``before`` to ``after`` (USD) under the
    reading that counts it lower: the change is applied to Binance's own figure as read, so
    the lower *change* is the safe side, not the change of the lower level (which mixes the
    readings: a fall from 1,500 to 900 across a cum-0 tier edge counted -450 where the
    slices give -550; review of fixpm13b). Below zero both count the equity in full."""

    def counted(usd: Decimal) -> tuple[Decimal, Decimal | None]:
        return (usd, usd) if usd <= 0 else _readings(usd, tiers)

    (slices_before, quick_before), (slices_after, quick_after) = counted(before), counted(after)
    change = slices_after - slices_before
    if quick_before is None and quick_after is None:
        return change
    # an end without cum reads its slices under either reading
    quick_b = slices_before if quick_before is None else quick_before
    quick_a = slices_after if quick_after is None else quick_after
    return min(change, quick_a - quick_b)


def counted_change(
    before: Decimal,
    after: Decimal,
    low: Decimal,
    high: Decimal,
    tiers: CollateralTiers = (),
) -> Decimal:
    """The change of a coin's equity (in USD, ``before`` to ``after``) as uniMMR counts it:
    each asset's equity counts as min(assetEquity x index x collateralRate, assetEquity x
    index) (Binance FAQ "What Is the Unified Account Maintenance Margin Ratio (uniMMR)"), so
    below zero in full and above zero at its collateral rate, the rate of the tier the
    equity is in. Where the tier is not known, a rise above zero counts at ``low`` (the
    lowest rate of the coin's tiers) and a fall above zero at ``high`` (the highest): never
    more equity than Binance counts; exact for a coin with one rate (``low`` = ``high``).
    With the coin's ``tiers`` and its whole equity, placed in them (:func:`_tiered_change`)."""
    if tiers:
        return _tiered_change(before, after, tiers)
    positive = max(after, ZERO) - max(before, ZERO)
    negative = min(after, ZERO) - min(before, ZERO)
    return positive * (low if positive > 0 else high) + negative


def _coin_equities(
    legs: Sequence[CoinLeg], marks: Mapping[str, Decimal], wallets: Mapping[str, Decimal]
) -> dict[str, tuple[Decimal, CoinLeg]] | None:
    """Each coin's equity in USD at ``marks`` as ``legs`` and ``wallets`` hold it: its
    ``wallets`` amount (in the coin: the COIN-M wallet, with the coin's other wallets where
    read) at its first leg's mark (a leg read with the account's before one opened since) and
    its legs' PnL, with the leg whose rates count it; None: a mark or entry missing."""
    coins: dict[str, list[CoinLeg]] = {}
    for leg in legs:
        coins.setdefault(leg.coin or leg.symbol, []).append(leg)
    out = {}
    for coin, held in coins.items():
        prices = [marks.get(leg.symbol) for leg in held]
        if any(m is None or m <= 0 for m in prices) or any(leg.entry <= 0 for leg in held):
            return None
        first = next((leg for leg in held if not leg.opened), held[0])
        mark = marks[first.symbol]
        equity = (wallets.get(coin, ZERO) if first.coin else ZERO) * mark
        for leg in held:
            equity += leg.pnl_usd(marks[leg.symbol])
        out[coin] = (equity, first)
    return out


def _coin_pnl(
    read: Sequence[CoinLeg],
    legs: Sequence[CoinLeg],
    then: Mapping[str, Decimal],
    now: Mapping[str, Decimal],
    read_wallets: Mapping[str, Decimal],
    wallets: Mapping[str, Decimal],
) -> Decimal | None:
    """The USD change of the coins' equity as uniMMR counts it (:func:`counted_change`), per
    coin (never one coin's gain netted against another's loss): from the legs and wallets as
    ``read`` at the marks ``then`` to the ``legs`` and ``wallets`` held now (a push's size,
    entry and wallet: what a fill realized or a transfer moved) at the marks ``now``. A leg
    closed by a push since the read is held with no size (``quantity`` 0) until the next
    read: its coin's wallet, the close's realized PnL in it, moves on with its mark. A coin
    read that no leg holds now (a position listed as read) stays as read: its mark is not
    followed. None: a mark or entry missing."""
    before = _coin_equities([leg for leg in read if not leg.opened], then, read_wallets)
    after = _coin_equities(legs, now, wallets)
    if before is None or after is None:
        return None
    pnl = ZERO
    for coin, (equity, rated) in after.items():
        # opened since the read (none of it read): from nothing
        equity_then = before[coin][0] if coin in before else ZERO
        pnl += counted_change(
            equity_then,
            equity,
            rated.collateral_rate,
            rated.collateral_rate_high,
            rated.collateral_tiers,
        )
    return pnl


def _moved_all(
    requirement: Decimal,
    exposures: Sequence[Exposure],
    coin_legs: Sequence[CoinLeg],
    then: Mapping[str, Decimal],
    now: Mapping[str, Decimal],
    wallets: Mapping[str, Decimal],
    read_legs: Sequence[CoinLeg] | None,
    read_wallets: Mapping[str, Decimal] | None,
) -> tuple[Decimal, Decimal] | None:
    """The requirement and the PnL at ``now`` of what was read at ``then``: the coin legs as
    read less their USD requirement as read, those held now at their marks now
    (:meth:`CoinLeg.requirement_at`), the rest scaled with the linear exposures' notional;
    None when a mark is missing or nothing is held."""
    read = coin_legs if read_legs is None else read_legs
    coin_pnl = _coin_pnl(
        read, coin_legs, then, now, wallets if read_wallets is None else read_wallets, wallets
    )
    if coin_pnl is None:
        return None
    fixed = sum((leg.requirement or ZERO for leg in read if not leg.opened), ZERO)
    # _coin_pnl checked every leg's mark now
    legs_now = sum((leg.requirement_at(now[leg.symbol]) for leg in coin_legs), ZERO)
    if not exposures:
        return (requirement - fixed + legs_now, coin_pnl) if coin_legs or read else None
    moved = _moved(exposures, then, now)
    if moved is None:
        return None
    pnl, notional_then, notional_now = moved
    scaled = (requirement - fixed) * notional_now / notional_then
    return scaled + legs_now, pnl + coin_pnl


def moved_ratio(
    ratio: Decimal,
    margin_balance: Decimal,
    exposures: Sequence[Exposure],
    then: Mapping[str, Decimal],
    now: Mapping[str, Decimal],
    coin_legs: Sequence[CoinLeg] = (),
    coin_wallets: Mapping[str, Decimal] | None = None,
    read_legs: Sequence[CoinLeg] | None = None,
    read_wallets: Mapping[str, Decimal] | None = None,
) -> Decimal | None:
    """The exchange's ratio (requirement over ``margin_balance``) read at the marks ``then``,
    at the marks ``now``: the requirement scaled with the notional (the coin legs' share of
    it as read, in USD), the balance moved by the PnL (theirs in USD at their marks). The
    coin legs and wallets held now are ``coin_legs`` and ``coin_wallets``, those the read
    holds ``read_legs`` and ``read_wallets`` (None: the same: nothing pushed since). None
    when a mark is missing on either side, or nothing is held (nothing moves it: the figure
    stands as read)."""
    if margin_balance <= 0:
        return None
    moved = _moved_all(
        ratio * margin_balance,
        exposures,
        coin_legs,
        then,
        now,
        coin_wallets or {},
        read_legs,
        read_wallets,
    )
    if moved is None:
        return None
    requirement, pnl = moved
    return margin_ratio(requirement, margin_balance + pnl)


def moved_equity(
    margin_balance: Decimal,
    exposures: Sequence[Exposure],
    then: Mapping[str, Decimal],
    now: Mapping[str, Decimal],
    coin_legs: Sequence[CoinLeg] = (),
    coin_wallets: Mapping[str, Decimal] | None = None,
    read_legs: Sequence[CoinLeg] | None = None,
    read_wallets: Mapping[str, Decimal] | None = None,
) -> Decimal | None:
    """The exchange's ``margin_balance`` read at the marks ``then``, at the marks ``now`` (moved
    by the PnL, as :func:`moved_ratio` moves it); None where it cannot be moved."""
    moved = _moved_all(
        ZERO, exposures, coin_legs, then, now, coin_wallets or {}, read_legs, read_wallets
    )
    return None if moved is None else margin_balance + moved[1]


@dataclass(frozen=True, slots=True)
class ExchangeRatioPosition:
    """A position of an account whose requirement alertd does not compute (the exchange's own
    ratio stands in): what its size and the live mark give, and the distance to the
    liquidation price the exchange itself reported. None of it is a margin figure of alertd's.
    """

    symbol: str
    side: Side
    contracts: Decimal
    entry_price: Decimal
    mark_price: Decimal | None  # None: no mark yet
    notional: Decimal | None  # in the quote currency (linear) or in the coin (inverse)
    unrealized_pnl: Decimal | None  # in the settle currency
    liquidation_price: Decimal | None  # the exchange's, as last read; None: none reported
    # from the mark to it, as a fraction of the mark; negative once the mark is past it
    liquidation_distance: Decimal | None
    # every figure the exchange's as its last snapshot read them (the mark too: a position
    # alertd reads but does not follow, a portfolio margin account's COIN-M positions)
    as_read: bool = False
    # its protective stops at the mark, against the exchange's liquidation price; None: not
    # read
    stop: StopFigures | None = None
    # its size in base units (linear) or quote units (inverse), unsigned, and whether it is
    # inverse: what its loss at a stop is figured from, as its PnL is; None: not known (a
    # position listed as read)
    quantity: Decimal | None = None
    inverse: bool = False
    # the exchange's own equity of the account (its ratio's denominator, moved with the marks
    # as the ratio is), in the unit the exchange reports it in: what a loss at the stop is a
    # share of (``stop_loss_share``); None: the exchange reports none
    equity: Decimal | None = None
    equity_unit: str = ""  # the unit of ``equity`` (Binance portfolio margin's: USD)
    # the exchange's maintenance margin of the position as read, in its settle currency (a
    # coin-margined one's in the coin); None: the exchange reports none (Binance's COIN-M
    # positions of a portfolio margin account: "Get CM Account Detail")
    maintenance_margin: Decimal | None = None
    # its market's brackets by its notional in the coin (Binance's COIN-M brackets, "Query CM
    # Notional and Leverage Brackets"): its requirement moves with them; None: not read
    coin_brackets: TierTable | None = None
    # the collateral rates a rise and a fall of its coin's equity count at in the exchange's
    # equity (Binance portfolio margin's COIN-M positions: :class:`CoinLeg`); None: not read
    collateral_rates: tuple[Decimal, Decimal] | None = None
    # its coin's wallet as read, in the coin, that moves with its mark in the exchange's
    # equity (Binance portfolio margin's COIN-M wallet of the coin); None: not read
    coin_wallet: Decimal | None = None
    # the rest of its coin's equity as read, in the coin, moving with it (Binance portfolio
    # margin's cross margin account, less loans and interest, and UM wallet of the coin:
    # "Account Balance"); None: not read
    coin_other: Decimal | None = None
    # the parts of ``coin_other`` the stream pushes apart, each the last value seen, read or
    # pushed since (Binance portfolio margin's "Account Balance" ``crossMarginAsset``, free +
    # locked, ``crossMarginBorrowed`` + ``crossMarginInterest`` and ``umWalletBalance``;
    # pushed: ``outboundAccountPosition`` ``f`` + ``l``, ``liabilityChange`` ``l``, a UM
    # ``ACCOUNT_UPDATE``'s ``a.B[].wb``): a push moves ``coin_other`` by its change from it,
    # or, one whose other half alertd cannot see, only this (the move left as read); None:
    # not read
    coin_cross: Decimal | None = None
    coin_liability: Decimal | None = None
    coin_um: Decimal | None = None
    # its coin's collateral tiers (:data:`CollateralTiers`); empty: not read, or not
    # placed (its equity's other parts unknown)
    collateral_tiers: CollateralTiers = ()
    # opened since the account was read (a pushed position the read did not list): none of
    # its PnL or requirement is in the exchange's figures as read
    opened: bool = False
    # the coin its equity is in, where it is another than the account's (a COIN-M position's
    # settle coin: its market's ``settle``, Binance's ``marginAsset``; "BTC" for BTCUSD_PERP
    # and BTCUSD_261225 alike, whose ccxt symbols end in BTC and BTC-261225); None: not known
    coin: str | None = None

    @property
    def unrealized_pnl_usd(self) -> Decimal | None:
        """An inverse position's PnL (in the coin) at its mark, in its quote currency (USD):
        what it adds to an account figured in USD (Binance portfolio margin's uniMMR); None
        for a linear one (its PnL is in its quote currency already) or without a mark."""
        if not self.inverse or self.unrealized_pnl is None or self.mark_price is None:
            return None
        return self.unrealized_pnl * self.mark_price

    @property
    def stop_loss(self) -> Decimal | None:
        """The loss from entry if the mark reaches the closest protective stop (size and
        entry alone: no margin figure); None without a stop price or a known size."""
        if self.stop is None or self.stop.price is None or self.quantity is None:
            return None
        return loss_at(self.stop.price, self.side, self.quantity, self.entry_price, self.inverse)

    @property
    def stop_loss_share(self) -> Decimal | None:
        """:attr:`stop_loss` over the exchange's own :attr:`equity` of the account (the loss
        in the settle currency against the equity in the exchange's unit, USD on the
        portfolio margin accounts: USDT at par); None without either, or no equity left."""
        loss = self.stop_loss
        if loss is None or self.equity is None or self.equity <= 0:
            return None
        return loss / self.equity


def exchange_ratio_position(
    exposure: Exposure,
    contracts: Decimal,
    entry: Decimal,
    mark: Decimal | None,
    liquidation: Decimal | None,
) -> ExchangeRatioPosition:
    """``exposure``'s figures at ``mark`` (``exposure.quantity`` signed, as :func:`moved_ratio`
    reads it) with the exchange's ``liquidation`` price."""
    side = Side.LONG if exposure.quantity >= 0 else Side.SHORT
    q, inverse = exposure.quantity, exposure.inverse
    notional = pnl = distance = None
    if mark is not None and mark > 0 and entry > 0:
        if inverse:  # quantity in quote units: notional and PnL in the coin
            notional, pnl = abs(q) / mark, q * (1 / entry - 1 / mark)
        else:
            notional, pnl = abs(q) * mark, q * (mark - entry)
        distance = liquidation_distance(side, mark, liquidation)
    return ExchangeRatioPosition(
        exposure.symbol,
        side,
        contracts,
        entry,
        mark,
        notional,
        pnl,
        liquidation,
        distance,
        quantity=abs(q),
        inverse=inverse,
    )


def liquidation_distance(side: Side, mark: Decimal, liquidation: Decimal | None) -> Decimal | None:
    """From ``mark`` (positive) to the exchange's ``liquidation`` price, as a fraction of the
    mark: a long is liquidated below its price, a short above; None without a price."""
    if liquidation is None:
        return None
    return (mark - liquidation) / mark if side is Side.LONG else (liquidation - mark) / mark
