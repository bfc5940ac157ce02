"""Incremental margin state for many accounts, fed one mark price at a time.

The daemon sees every mark tick of every held symbol. Recomputing a whole account per tick
would cost O(positions); instead each cross pool keeps running sums of unrealized PnL and
maintenance margin, and a tick on a symbol updates only the positions in that symbol and the
pools that hold them: O(positions in the symbol). Everything else (liquidation prices, crash
distance, what to add or cut) is computed on demand by :func:`~alertd.engine.margin.compute`
from the book's current account, so the two paths share one set of formulas (:class:`Leg`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import replace
from decimal import Decimal

from alertd.engine.legs import Leg
from alertd.engine.margin import AccountMetrics, compute, margin_ratio
from alertd.engine.model import Account, Position

ZERO = Decimal(0)
INFINITY = Decimal("Infinity")


class LivePool:
    """One margin pool's running sums: the cross pool, or one isolated position."""

    __slots__ = ("balance", "mm", "upnl")

    def __init__(self, balance: Decimal) -> None:
        self.balance = balance  # cross wallet balance, or the isolated margin
        self.upnl = ZERO
        self.mm = ZERO

    @property
    def margin_balance(self) -> Decimal:
        return self.balance + self.upnl

    @property
    def ratio(self) -> Decimal:
        return margin_ratio(self.mm, self.balance + self.upnl)


class LivePosition:
    __slots__ = (
        "account",
        "deduction",
        "hi",
        "inverse",
        "leg",
        "lo",
        "mark",
        "mm",
        "pool",
        "rate",
        "sq",
        "sq_entry",
        "symbol",
        "upnl",
    )

    def __init__(self, account: Hashable, position: Position, leg: Leg, pool: LivePool) -> None:
        self.account = account
        self.symbol = position.symbol
        self.leg = leg
        self.inverse = position.inverse
        self.pool = pool
        self.sq = leg.sign * leg.quantity
        self.sq_entry = self.sq * leg.entry_u
        self.upnl = ZERO
        self.mm = ZERO
        # the current tier's notional range and rate, so most ticks skip the lookup
        self.lo = self.hi = ZERO
        self.rate = self.deduction = ZERO
        self.mark = position.mark_price
        self.reprice(position.mark_price)

    def _retier(self, notional: Decimal) -> None:
        leg = self.leg
        table = leg.tiers
        if leg.fixed_tier is not None:
            i = leg.fixed_tier
            self.lo, self.hi = Decimal(-1), INFINITY
        else:
            i = table.index_for(notional)
            self.lo = table.floor(i) if i > 0 else Decimal(-1)
            last = i == len(table.tiers) - 1
            cap = table.tiers[i].cap
            self.hi = INFINITY if last or cap is None else cap
        tier = table.tiers[i]
        self.rate = tier.mmr + leg.fee_rate
        self.deduction = tier.deduction

    def reprice(self, mark: Decimal) -> None:
        """Move to a new mark, updating the pool's sums by the difference."""
        self.mark = mark
        u = 1 / mark if self.inverse else mark
        upnl = self.sq * u - self.sq_entry
        if self.leg.fixed_mm is not None:
            mm = self.leg.fixed_mm
        else:
            notional = self.leg.quantity * u
            if not self.lo < notional <= self.hi:
                self._retier(notional)
            mm = notional * self.rate - self.deduction
        pool = self.pool
        pool.upnl += upnl - self.upnl
        pool.mm += mm - self.mm
        self.upnl = upnl
        self.mm = mm


class Book:
    """Many accounts' margin, updated incrementally by mark ticks."""

    def __init__(self) -> None:
        self._accounts: dict[Hashable, Account] = {}
        self._pools: dict[Hashable, list[LivePool]] = {}
        self._by_symbol: dict[str, list[LivePosition]] = {}
        self._positions: dict[Hashable, list[LivePosition]] = {}

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def symbols(self) -> Iterable[str]:
        return self._by_symbol.keys()

    def set_account(self, key: Hashable, account: Account) -> None:
        """Add or replace an account (a fresh snapshot after a reconcile, say)."""
        self.remove_account(key)
        cross = LivePool(account.wallet_balance)
        pools = [cross]
        live = []
        for p in account.positions:
            pool = cross
            if p.is_isolated:
                assert p.isolated_margin is not None
                pool = LivePool(p.isolated_margin)
                pools.append(pool)
            lp = LivePosition(key, p, Leg.of(p, account.profile), pool)
            live.append(lp)
            self._by_symbol.setdefault(p.symbol, []).append(lp)
        self._accounts[key] = account
        self._pools[key] = pools
        self._positions[key] = live

    def remove_account(self, key: Hashable) -> None:
        if key not in self._accounts:
            return
        for symbol in {lp.symbol for lp in self._positions.pop(key)}:
            kept = [lp for lp in self._by_symbol[symbol] if lp.account != key]
            if kept:
                self._by_symbol[symbol] = kept
            else:
                del self._by_symbol[symbol]
        del self._accounts[key]
        del self._pools[key]

    def apply_mark(self, symbol: str, mark: Decimal) -> set[Hashable]:
        """Reprice every position in ``symbol``; returns the accounts it touched."""
        touched: set[Hashable] = set()
        for lp in self._by_symbol.get(symbol, ()):
            lp.reprice(mark)
            touched.add(lp.account)
        return touched

    def apply_account_mark(self, key: Hashable, symbol: str, mark: Decimal) -> None:
        """Reprice one account's positions in ``symbol`` (each account has its own feed)."""
        for lp in self._positions[key]:
            if lp.symbol == symbol:
                lp.reprice(mark)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._accounts

    def worst_ratio(self, key: Hashable) -> Decimal:
        """The highest ratio among the account's pools (the cross pool if it holds positions)."""
        pools = self._pools[key]
        ratios = [pool.ratio for pool in pools[1:]]
        if any(lp.pool is pools[0] for lp in self._positions[key]):
            ratios.append(pools[0].ratio)
        return max(ratios, default=ZERO)

    def cross_pool(self, key: Hashable) -> LivePool:
        return self._pools[key][0]

    def account(self, key: Hashable) -> Account:
        """The account at its current marks, for full metrics."""
        base = self._accounts[key]
        marks = [lp.mark for lp in self._positions[key]]
        return replace(
            base,
            positions=tuple(
                replace(p, mark_price=m) for p, m in zip(base.positions, marks, strict=True)
            ),
        )

    def metrics(self, key: Hashable, target_ratio: Decimal | None = None) -> AccountMetrics:
        return compute(self.account(key), target_ratio)
