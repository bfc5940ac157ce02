"""Every exchange alertd knows, by id: the one place to look an exchange up.

Adding an exchange: write its module (``alertd/exchanges/<exchange>.py``: margin profile,
feed adapter, ``SPEC``) and add the spec to :data:`BUILTIN` below. Code outside the package
(a test, a plugin) calls :func:`register` instead.

Importing this module must not import ccxt (``alertd calc`` stays fast): the exchange modules
hold adapters and parsers only, and ccxt objects are built in :mod:`alertd.feeds.ccxt_exchange`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from alertd.errors import InputError
from alertd.exchanges import binance, bybit, gate, hyperliquid, okx
from alertd.exchanges.spec import ExchangeSpec

# In the order they are listed to users.
BUILTIN: tuple[ExchangeSpec, ...] = (
    binance.USDM,
    binance.COINM,
    bybit.SPEC,
    okx.SPEC,
    gate.SPEC,
    hyperliquid.SPEC,
)

_specs: dict[str, ExchangeSpec] = {}
# A read-only view of the registry, by id; it follows register() and unregister().
SPECS: Mapping[str, ExchangeSpec] = MappingProxyType(_specs)


class UnknownExchangeError(InputError):
    """An exchange id that is not registered (or has no live feed where one is needed)."""

    def __init__(self, exchange_id: str, known: Iterable[str], why: str = "unknown") -> None:
        names = list(known)
        close = difflib.get_close_matches(exchange_id, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(names)}"
        self.exchange_id = exchange_id
        super().__init__(f"{why} exchange {exchange_id!r} ({hint})")


class NoLiveFeedError(UnknownExchangeError):
    """A profile-only exchange where a live feed is needed."""

    def __init__(self, spec: ExchangeSpec) -> None:
        InputError.__init__(
            self,
            f"{spec.id} has no live feed: its margin profile serves alertd calc and replay "
            f"(live: {', '.join(s.id for s in specs(live=True))})",
        )
        self.exchange_id = spec.id


def register(spec: ExchangeSpec, *, replace: bool = False) -> ExchangeSpec:
    """Add ``spec`` to the registry; an id already taken is an error unless ``replace``."""
    if spec.id in _specs and not replace:
        raise ValueError(f"exchange {spec.id!r} is already registered")
    _specs[spec.id] = spec
    return spec


def unregister(exchange_id: str) -> None:
    """Remove an exchange (a test's stub); unknown ids are ignored."""
    _specs.pop(exchange_id, None)


def specs(*, live: bool = False) -> tuple[ExchangeSpec, ...]:
    """Every registered exchange; ``live``: only those with a feed adapter."""
    return tuple(s for s in _specs.values() if s.has_feed or not live)


def get_spec(exchange_id: str, *, live: bool = False) -> ExchangeSpec:
    """The spec of ``exchange_id``; ``live``: it must have a feed.

    Raises :class:`UnknownExchangeError` with a "did you mean" hint.
    """
    spec = _specs.get(exchange_id)
    if spec is None:
        raise UnknownExchangeError(exchange_id, (s.id for s in specs(live=live)))
    if live and not spec.has_feed:
        raise NoLiveFeedError(spec)
    return spec


for _spec in BUILTIN:
    register(_spec)
