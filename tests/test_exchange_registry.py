"""The exchange registry: one spec per exchange; a newcomer's exchange registered from a test."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from alertd.config import ConfigError, FeedSettings, Secret, parse_config
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.errors import InputError
from alertd.exchanges import binance, okx
from alertd.exchanges.registry import (
    SPECS,
    NoLiveFeedError,
    UnknownExchangeError,
    get_spec,
    register,
    specs,
    unregister,
)
from alertd.exchanges.spec import Capabilities, Credential, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import ExchangeAdapter
from alertd.feeds.ccxt_exchange import make_exchange
from alertd.feeds.feed import AccountFeed
from alertd.replay.run import position_from_spec
from alertd.snapshot.format import parse_snapshot


def test_every_shipped_exchange_has_one_spec() -> None:
    assert [s.id for s in specs()] == [
        "binanceusdm",
        "binancecoinm",
        "bybit",
        "okx",
        "gate",
        "hyperliquid",
    ]
    assert [s.id for s in specs(live=True)] == [
        "binanceusdm",
        "bybit",
        "okx",
        "gate",
        "hyperliquid",
    ]
    for spec in specs(live=True):
        assert spec.adapter is not None and spec.adapter.exchange_id == spec.id
        assert spec.markets is not None and spec.new_adapter().settle == spec.markets.settle
        assert spec.ccxt_options["defaultType"] in ("future", "swap")
    assert get_spec("binancecoinm").adapter is None
    assert get_spec("binanceusdm").inverse_spec == "binancecoinm"


def test_credentials_and_capabilities() -> None:
    both = (Credential.API_KEY, Credential.SECRET)
    assert get_spec("binanceusdm").credentials == both
    assert get_spec("okx").credentials == (*both, Credential.PASSWORD)
    hyperliquid = get_spec("hyperliquid")
    assert hyperliquid.credentials == () and hyperliquid.wallet_address
    assert not hyperliquid.capabilities.private_streams
    assert [s.id for s in specs() if s.capabilities.renews_listen_key] == ["binanceusdm"]
    assert [s.id for s in specs() if s.capabilities.key_permissions] == ["binanceusdm", "bybit"]
    assert {
        s.id: s.capabilities.margin_call_push for s in specs() if s.capabilities.margin_call_push
    } == {
        "binanceusdm": "margin_call",
        "okx": "liquidation_warning",
    }


def test_the_margin_call_capability_names_the_event_the_adapter_makes() -> None:
    # Binance "Event: Margin Call"; OKX websocket channel "liquidation-warning"
    frames = {
        "binanceusdm": {"e": "MARGIN_CALL", "cw": "3.16", "p": [{"s": "ETHUSDT", "mm": "1.6"}]},
        "okx": {
            "arg": {"channel": "liquidation-warning", "instType": "ANY"},
            "data": [{"instId": "BTC-USDT-SWAP", "mgnRatio": "1.09", "posSide": "long"}],
        },
    }
    for exchange_id, frame in frames.items():
        spec = get_spec(exchange_id)
        event = spec.new_adapter().event(frame, 1.0)
        assert event is not None and event.kind == spec.capabilities.margin_call_push
    assert binance.MARGIN_CALL == "margin_call" and okx.LIQUIDATION_WARNING == "liquidation_warning"


def test_a_spec_is_frozen_and_its_options_read_only() -> None:
    spec = get_spec("bybit")
    with pytest.raises(AttributeError):
        spec.wallet_address = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.ccxt_options["defaultType"] = "spot"  # type: ignore[index]
    with pytest.raises(TypeError):
        SPECS["stub"] = spec  # type: ignore[index]


def test_ccxt_exchanges_get_the_spec_options_and_credentials() -> None:
    config = parse_config(
        "version: 1\naccounts:\n  - {name: b, exchange: bybit, api_key_env: K, secret_env: S,"
        " options: {fetchMarkets: {x: 1}}}\n"
    )
    secrets = {"api_key": Secret("k"), "secret": Secret("s")}

    async def build() -> None:
        exchange = make_exchange(config.accounts[0], secrets, FeedSettings())
        try:
            assert (exchange.apiKey, exchange.secret) == ("k", "s")
            assert exchange.options["defaultType"] == "swap"
            fetch_markets = exchange.options["fetchMarkets"]
            assert fetch_markets["types"] == ["linear"] and fetch_markets["x"] == 1
            fetch_markets["types"].append("spot")  # the spec's own options stay as they were
        finally:
            await exchange.close()

    asyncio.run(build())
    assert get_spec("bybit").ccxt_options["fetchMarkets"] == {"types": ["linear"]}


def test_unknown_ids_get_did_you_mean() -> None:
    with pytest.raises(UnknownExchangeError) as info:
        get_spec("bianance")
    assert str(info.value) == "unknown exchange 'bianance' (did you mean binanceusdm?)"
    assert isinstance(info.value, InputError)
    with pytest.raises(UnknownExchangeError) as info:
        get_spec("kraken")
    assert "one of binanceusdm, binancecoinm, bybit" in str(info.value)
    with pytest.raises(NoLiveFeedError) as live:
        get_spec("binancecoinm", live=True)
    assert "binancecoinm has no live feed" in str(live.value)


def test_replay_takes_its_profile_from_the_registry() -> None:
    assert position_from_spec("BTC/USDT:USDT long 1 @ 100").profile is binance.USDM_PROFILE
    # an inverse symbol on binanceusdm is modelled by the spec it names for inverse markets
    inverse = position_from_spec("BTC/USD:BTC long 10 @ 60000 x5", "binanceusdm")
    assert inverse.profile is binance.COINM_PROFILE
    with pytest.raises(UnknownExchangeError, match="did you mean okx"):
        position_from_spec("BTC/USDT:USDT long 1 @ 100", "okxx")


def test_config_rejects_a_profile_only_exchange() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\naccounts:\n  - {name: c, exchange: binancecoinm}\n")
    assert info.value.problems[0].startswith(
        "accounts[0].exchange: binancecoinm has no live feed: its margin profile serves alertd "
        "calc and replay"
    )


def test_the_registry_does_not_load_ccxt() -> None:
    """``alertd calc`` must start fast: neither the registry nor the config imports ccxt."""
    code = "import alertd.exchanges.registry, alertd.config, sys; print('ccxt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_line_does_not_load_ccxt_before_a_command_needs_it() -> None:
    """Every ``alertd`` command loads the command line's modules: ccxt (seconds to import)
    waits for the commands that talk to exchanges (``replay`` once imported the daemon's
    evaluation module, and with it the feeds and ccxt, for ``calc`` too)."""
    code = "import alertd.cli.main, sys; print('ccxt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- a newcomer's exchange, defined here and registered the documented way --------------------

STUB_PROFILE = ExchangeProfile(
    id="stubex",
    name="Stub Exchange",
    default_fee_rate=Decimal("0.001"),
    displayed_ratio=DisplayedRatio.REQUIREMENT_OVER_EQUITY,
    displayed_ratio_name="Risk",
)
STUB_MARKETS = MarketFilter(settle="USDC")


class StubAdapter(ExchangeAdapter):
    exchange_id = "stubex"
    market_filter = STUB_MARKETS


STUB = ExchangeSpec(
    profile=STUB_PROFILE,
    adapter=StubAdapter,
    capabilities=Capabilities(tier_source=TierSource.RISK_LIMITS),
    markets=STUB_MARKETS,
    credentials=(Credential.API_KEY, Credential.SECRET),
    ccxt_options={"defaultType": "swap"},
)


@pytest.fixture
def stub() -> Iterator[ExchangeSpec]:
    register(STUB)
    try:
        yield STUB
    finally:
        unregister(STUB.id)


def test_a_registered_exchange_is_accepted_by_config_validation(stub: ExchangeSpec) -> None:
    config = parse_config(
        "version: 1\naccounts:\n  - {name: s, exchange: stubex, api_key_env: K, secret_env: S}\n"
    )
    assert config.accounts[0].exchange == "stubex"
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\naccounts:\n  - {name: s, exchange: stubex, api_key_env: K}\n")
    assert info.value.problems == ["accounts[0]: stubex needs secret_env or secret_file"]
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\naccounts:\n  - {name: s, exchange: stubexx}\n")
    assert info.value.problems[0] == (
        "accounts[0].exchange: unknown exchange 'stubexx' (did you mean stubex?)"
    )


def test_a_registered_exchange_gets_its_adapter_and_profile(stub: ExchangeSpec) -> None:
    config = parse_config(
        "version: 1\naccounts:\n  - {name: s, exchange: stubex, api_key_env: K, secret_env: S}\n"
    )
    feed = AccountFeed(config.accounts[0], {}, FeedSettings())
    assert isinstance(feed.adapter, StubAdapter)
    assert feed.spec is stub
    assert feed.state.profile is STUB_PROFILE
    assert feed.state.settle == "USDC"
    markets: dict[str, dict[str, Any]] = {
        "BTC/USDC:USDC": {"symbol": "BTC/USDC:USDC", "contract": True, "settle": "USDC"},
        "BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT", "contract": True, "settle": "USDT"},
        "BTC/USDC": {"symbol": "BTC/USDC", "contract": False, "settle": None},
    }
    read = feed.adapter.markets(SimpleNamespace(markets=markets), None)
    assert list(read) == ["BTC/USDC:USDC"]


def test_a_registered_exchange_serves_snapshots_and_replay(stub: ExchangeSpec) -> None:
    snapshot = {
        "schema": 1,
        "exchange": "stubex",
        "settle": "USDC",
        "cross": {"wallet_balance": "1000"},
        "positions": [
            {
                "symbol": "BTC/USDC:USDC",
                "side": "long",
                "contracts": "0.1",
                "entry_price": "60000",
                "mark_price": "60000",
                "margin_mode": "cross",
                "tiers": [{"max_notional": None, "mmr": "0.005", "deduction": "0"}],
            }
        ],
    }
    account = parse_snapshot(json.dumps(snapshot)).account
    assert account.profile is STUB_PROFILE
    assert account.positions[0].fee_rate == Decimal("0.001")  # the profile's default
    replayed = position_from_spec("BTC/USDC:USDC long 0.5 @ 62000 x20", "stubex")
    assert replayed.profile is STUB_PROFILE


def test_register_refuses_a_taken_id(stub: ExchangeSpec) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(STUB)


def test_a_spec_checks_its_adapter_reads_its_markets() -> None:
    with pytest.raises(ValueError, match="market_filter is not the spec's markets"):
        ExchangeSpec(
            profile=STUB_PROFILE,
            adapter=StubAdapter,
            capabilities=Capabilities(tier_source=TierSource.RISK_LIMITS),
            markets=MarketFilter(settle="USDT"),
        )
