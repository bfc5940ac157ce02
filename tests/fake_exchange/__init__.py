"""Scriptable local exchange servers that speak the real wire protocols, for tests.

ccxt's own client code runs against them unmodified; only ``exchange.urls['api']`` is pointed at
127.0.0.1. ``base.py`` holds what they share (connections, queues, drops, pings, malformed
frames, REST failures, keys and bans, marks); ``binance.py`` (Binance USDⓈ-M futures) and
``bybit.py`` (Bybit v5 UTA) add their wire formats. ``tests/support/fakes.py`` starts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_exchange.binance import FakeBinanceUSDM
    from tests.fake_exchange.bybit import FakeBybit

__all__ = ["FakeBinanceUSDM", "FakeBybit"]


def __getattr__(name: str) -> Any:
    # imported lazily so that `python -m tests.fake_exchange.X` runs the module only once
    if name == "FakeBinanceUSDM":
        from tests.fake_exchange.binance import FakeBinanceUSDM

        return FakeBinanceUSDM
    if name == "FakeBybit":
        from tests.fake_exchange.bybit import FakeBybit

        return FakeBybit
    raise AttributeError(name)
