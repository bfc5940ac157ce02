"""How feeds reach an exchange and wait: the typed seam the service passes to its feeds.

Production uses the defaults; tests pass tiny backoffs, and a factory or clock of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from alertd.clock import Clock, Sleep
from alertd.config import AccountConfig, BackoffSettings, FeedSettings, Secret
from alertd.feeds.backoff import Backoff
from alertd.feeds.ccxt_exchange import SharedExchange, make_exchange
from alertd.feeds.route import default_route_address


class ExchangeFactory(Protocol):
    """(account, its secrets, the feed settings, the frame sink, what it shares with the other
    accounts on its exchange) -> a ccxt.pro exchange; the mark hubs call it with no secrets."""

    def __call__(
        self,
        account: AccountConfig,
        secrets: Mapping[str, Secret],
        settings: FeedSettings,
        sink: Any = None,
        shared: SharedExchange | None = None,
    ) -> Any: ...


BackoffFactory = Callable[[], Backoff]
# account -> (the addresses its connections may leave from when it names none, one per family
# of its exchange's host, () where none can be told; why not)
DefaultRoute = Callable[[AccountConfig], tuple[tuple[str, ...], str]]


@dataclass(frozen=True, slots=True)
class FeedOptions:
    exchange_factory: ExchangeFactory = make_exchange
    backoff: BackoffFactory | None = None  # None: from the config's ``feeds.backoff``
    # monotonic: when each stream was last heard from; the service reads staleness with it
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    # epoch seconds: when a mark arrived, for the price dynamics (which candles seed)
    wall_clock: Clock = time.time
    # the default route's source address to an account's exchange (alertd.feeds.route): asked
    # only where one exchange host's accounts mix a named source address with none
    default_route: DefaultRoute = default_route_address

    def backoff_factory(self, settings: BackoffSettings) -> BackoffFactory:
        if self.backoff is not None:
            return self.backoff
        return lambda: Backoff.configured(settings)


PRODUCTION = FeedOptions()
