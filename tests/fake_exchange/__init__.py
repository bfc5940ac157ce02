"""Scriptable local exchange servers that speak the real wire protocols, for tests.

ccxt's own client code runs against them unmodified; only ``exchange.urls['api']`` is pointed at
127.0.0.1. See ``binance.py`` for Binance USDⓈ-M futures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_exchange.binance import FakeBinanceUSDM

__all__ = ["FakeBinanceUSDM"]


def __getattr__(name: str) -> Any:
    # imported lazily so that `python -m tests.fake_exchange.binance` runs the module only once
    if name == "FakeBinanceUSDM":
        from tests.fake_exchange.binance import FakeBinanceUSDM

        return FakeBinanceUSDM
    raise AttributeError(name)
