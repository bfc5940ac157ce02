"""``alertd snapshot`` then ``alertd calc``, the real processes, against each local exchange.

For every exchange alertd runs live, a book of several position shapes (long and short, cross
and isolated, beyond the first maintenance tier where the exchange tiers it) is opened on its
local server; the account is configured only through ``urls:``/``options:`` as a user would.
``alertd snapshot`` must show no mismatch between alertd's figures and the exchange's own,
and ``alertd calc`` on the snapshot it wrote must reproduce the liquidation price the exchange
reports for each position: within a relative 1e-6, or the exchange's price tick where it rounds
to one. The exchange's figures are read here from its own payloads, through ccxt's REST client,
never from alertd; the local servers compute them from each exchange's published rules
(the sources are cited in each server's module).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fake_exchange.base import FakeExchangeServer
from tests.support.configs import exchange_account, write_config
from tests.support.fakes import ccxt_client
from tests.support.process import alertd

RELATIVE = Decimal("1e-6")
# exchanges that round the liquidation price they report to the price tick (Binance and
# Hyperliquid send it unrounded)
ROUNDS_TO_TICK = frozenset({"bybit", "okx", "gate"})


@dataclass(frozen=True)
class Leg:
    """One scripted position: ``contracts`` in the exchange's own contracts, entered
    ``entry_move`` away from the mark (a fraction), ``mode`` cross or isolated."""

    coin: str
    side: str
    contracts: str
    mode: str = "cross"
    entry_move: str = "0"
    leverage: int | None = None
    settle: str | None = None  # another settle coin of the pool (Bybit's USDC perpetuals)

    def symbol(self, exchange: str) -> str:
        settle = self.settle or _settle(exchange)
        return f"{self.coin}/{settle}:{settle}"


@dataclass(frozen=True)
class Holding:
    """One account: its wallet balance (cross positions then have a liquidation price), its
    positions and, where the exchange's requirement holds the account's taker fee rate
    (Bybit, OKX, Gate), a VIP rate the local exchange computes its own figures with."""

    wallet: str
    legs: tuple[Leg, ...]
    taker_fee: str | None = None
    # other settle coins' wallets and USD index prices (Bybit's USDC: its own equity line)
    settle_coins: tuple[tuple[str, str, str], ...] = ()  # (coin, wallet, USD price)


Book = dict[str, Holding]  # by account name


# Tier boundaries, per local server: Binance's real BTCUSDT brackets (300k / 800k notional),
# SOLUSDT (50k / 400k); Bybit BTC risk limits in steps of 2,000,000, ETH 1,000,000; OKX BTC
# tiers at 10,000 / 20,000 contracts (ctVal 0.01 BTC), ETH 10,000 (ctVal 0.1 ETH); Gate BTC
# risk limits in steps of 1,000,000 (quanto 0.0001 BTC), SOL 200,000 (quanto 1); Hyperliquid
# BTC's margin table, 40x up to 150M notional and 20x above.
BOOKS: dict[str, Book] = {
    "binanceusdm": {
        "a": Holding(
            "100000",
            (
                Leg("BTC", "long", "5", entry_move="0.01"),  # 485k: bracket 2
                Leg("ETH", "short", "20", entry_move="-0.01"),  # bracket 1
                Leg("SOL", "long", "500", "isolated", "0.02"),  # 90k: bracket 2
            ),
        ),
        "b": Holding(
            "60000",
            (
                Leg("BTC", "short", "10", "isolated", "-0.005", leverage=20),  # bracket 3
                Leg("ETH", "long", "10", entry_move="0.01"),
            ),
        ),
    },
    "bybit": {
        "a": Holding(
            "400000",
            (
                Leg("BTC", "long", "40", entry_move="0.01"),  # 2.6M: tier 2
                Leg("ETH", "short", "20", entry_move="-0.01"),
                Leg("SOL", "long", "300", "isolated", "0.02"),
            ),
        ),
        "b": Holding(
            "400000",
            (
                Leg("BTC", "short", "70", "isolated", "-0.005", leverage=20),  # 4.55M: tier 3
                Leg("ETH", "long", "400", entry_move="0.01"),  # 1.4M: tier 2
            ),
            # a VIP taker rate (base 0.055%): Bybit's fee to close moves the BTC short's
            # liquidation price by about 20 USDT, two hundred ticks
            taker_fee="0.0004",
        ),
        # USDC perpetuals in the unified account's one pool, beside a USDT one, on USDC's own
        # equity line: its wallet and their PnL at USDC's USD index (0.999), their MM too
        "c": Holding(
            "150000",
            (
                Leg("BTC", "long", "10", entry_move="0.01"),
                Leg("BTC", "short", "6", entry_move="-0.01", settle="USDC"),  # 390k: tier 2
                Leg("ETH", "long", "40", "isolated", "0.02", leverage=10, settle="USDC"),
            ),
            settle_coins=(("USDC", "40000", "0.999"),),
        ),
    },
    "okx": {
        "a": Holding(
            "1300000",
            (
                Leg("BTC", "long", "15000", entry_move="0.01"),  # 150 BTC: tier 2
                Leg("ETH", "short", "200", "isolated", "-0.01"),
            ),
        ),
        "b": Holding(
            "1300000",
            (
                Leg("BTC", "short", "25000", "isolated", "-0.005", leverage=20),  # tier 3
                Leg("ETH", "long", "15000", entry_move="0.01"),  # 1,500 ETH: tier 2
            ),
            # a lower fee level's taker rate (base 0.05%): OKX's liquidation fee in mgnRatio
            # and liqPx moves the BTC short's liquidation price by 0.02% of the price
            taker_fee="0.0003",
        ),
    },
    "gate": {
        "a": Holding(
            "250000",
            (
                Leg("BTC", "long", "200000", entry_move="0.01"),  # 20 BTC, 1.3M: tier 2
                Leg("ETH", "short", "2000", entry_move="-0.01"),
                Leg("SOL", "long", "2000", "isolated", "0.02"),  # 300k: tier 2
            ),
        ),
        "b": Holding(
            "150000",
            (
                Leg("BTC", "short", "400000", "isolated", "-0.005", leverage=20),  # tier 3
                Leg("ETH", "long", "5000", entry_move="0.01"),
            ),
            # a VIP taker rate (base 0.075%), added to the maintenance rate: the BTC short's
            # liquidation price moves by about 0.045% of the price
            taker_fee="0.0003",
        ),
    },
    "hyperliquid": {
        "a": Holding(
            "30000",
            (
                Leg("BTC", "long", "1.5", entry_move="0.01"),
                Leg("ETH", "short", "20", entry_move="-0.01"),
                Leg("SOL", "long", "300", "isolated", "0.02"),
            ),
        ),
        "b": Holding(
            "300000",  # the cross pool's USDC; the isolated margin is on top
            (
                # 156M notional: the second tier of BTC's table (20x from 150M)
                Leg("BTC", "short", "2400", "isolated", "-0.005", leverage=20),
                Leg("ETH", "long", "100", entry_move="0.01", leverage=10),
            ),
        ),
    },
}

# the fee rate a snapshot carries for an account at the base fee level: the exchange's base
# taker rate where its requirement holds one (OKX: its liquidation fee), else none
BASE_FEE: dict[str, str | None] = {
    "binanceusdm": "0",
    "bybit": "0.00055",
    "okx": "0.0005",
    "gate": "0.00075",
    "hyperliquid": "0",
}

# where each exchange's position payload carries its liquidation price
LIQUIDATION_FIELD: dict[str, Callable[[dict[str, Any]], Any]] = {
    "binanceusdm": lambda info: info["liquidationPrice"],
    "bybit": lambda info: info["liqPrice"],
    "okx": lambda info: info["liqPx"],
    "gate": lambda info: info["liq_price"],
    "hyperliquid": lambda info: info["position"]["liquidationPx"],
}


def _settle(exchange: str) -> str:
    return "USDC" if exchange == "hyperliquid" else "USDT"


def _key(exchange: str, account: str) -> str:
    # Hyperliquid reads accounts by wallet address, the others by API key
    if exchange == "hyperliquid":
        return "0x" + account.encode().hex().rjust(40, "0")
    return f"key-{account}"


def _open_book(fake: FakeExchangeServer[Any, Any], exchange: str, book: Book) -> None:
    settle = _settle(exchange)
    for name, holding in book.items():
        key = _key(exchange, name)
        fake.add_account(key, f"secret-{name}", wallet_balance=holding.wallet)
        if holding.taker_fee is not None:
            fake.set_fee_rate(key, holding.taker_fee)  # type: ignore[attr-defined]
        for coin, wallet, usd_price in holding.settle_coins:
            fake.set_usd_price(coin, usd_price)  # type: ignore[attr-defined]
            fake.set_balance(key, wallet, coin=coin)  # type: ignore[attr-defined]
        for leg in holding.legs:
            symbol = leg.symbol(exchange)
            if leg.settle is not None and f"{leg.coin}PERP" not in fake.symbols():
                # a USDC perpetual beside the USDT one, at its mark
                fake.add_symbol(symbol, fake.mark(f"{leg.coin}/{settle}:{settle}"))  # type: ignore[attr-defined]
            mark, tick = fake.mark(symbol), fake.tick(symbol)
            entry = (mark * (1 + Decimal(leg.entry_move))).quantize(tick)
            fake.open_position(
                key,
                symbol,
                leg.side,
                leg.contracts,
                entry,
                margin_mode=leg.mode,
                leverage=leg.leverage,
            )


def _config(
    tmp_path: Path, fake: FakeExchangeServer[Any, Any], exchange: str, book: Book
) -> tuple[Path, dict[str, str]]:
    """The config a user writes for these accounts, and the environment holding the secrets."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    accounts = []
    for name in book:
        account, secrets = exchange_account(
            fake, name, exchange, _key(exchange, name), f"secret-{name}"
        )
        accounts.append(account)
        env.update(secrets)
    return write_config(tmp_path, accounts), env


async def _reported_liquidations(
    fake: FakeExchangeServer[Any, Any], exchange: str, account: str
) -> dict[tuple[str, str], Decimal]:
    """The exchange's own liquidation price of each position, read from its payload."""
    key: str | None = _key(exchange, account)
    secret: str | None = f"secret-{account}"
    extra: dict[str, Any] = {}
    if exchange == "hyperliquid":
        extra["walletAddress"], key, secret = key, None, None
    if exchange == "okx":
        extra["password"] = fake.PASSPHRASE  # type: ignore[attr-defined]
    async with ccxt_client(fake, exchange, key, secret, **extra) as client:
        positions = await client.fetch_positions()
        if exchange == "bybit":  # ccxt asks for the USDT-settled ones unless told
            positions += await client.fetch_positions(None, {"settleCoin": "USDC"})
    return {
        (p["symbol"], p["side"]): Decimal(str(LIQUIDATION_FIELD[exchange](p["info"])))
        for p in positions
    }


def _comparison_tables(text: str) -> dict[str, list[list[str]]]:
    """The rows (cells) of each account's "NAME: alertd vs EXCHANGE" table."""
    tables: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if ": alertd vs " in line:
            current = tables.setdefault(line.strip().split(":")[0], [])
        elif current is not None and line.startswith("│"):
            current.append([cell.strip() for cell in line.strip("│").split("│")])
        elif line.startswith("└"):
            current = None
    return tables


# what the local exchanges serve (their defaults) in each real field: Binance positionRisk v3
# "adl": 2 of 0-4, Bybit "adlRankIndicator": 2 of 1-5, OKX "adl": "1" of 0-5, Gate
# "adl_ranking": "5" (the back of its 1-5 queue); Hyperliquid publishes none
ADL_RANKS = {
    "binanceusdm": "0.5",
    "bybit": "0.25",
    "okx": "0.2",
    "gate": "0",
    "hyperliquid": None,
}


@pytest.mark.parametrize("exchange", sorted(BOOKS))
def test_snapshot_then_calc_reproduces_the_exchanges_liquidation_prices(
    exchange: str,
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
) -> None:
    fake = fake_in_thread(exchange)
    book = BOOKS[exchange]
    _open_book(fake, exchange, book)
    config, env = _config(tmp_path, fake, exchange, book)

    # the table of every account and each account's snapshot file: independent processes,
    # run side by side
    with ThreadPoolExecutor(1 + len(book)) as pool:
        pending_table = pool.submit(alertd, "snapshot", "-c", str(config), env=env)
        pending_files = {
            name: pool.submit(
                alertd, "snapshot", "-c", str(config), "--json", "--account", name, env=env
            )
            for name in book
        }
        table = pending_table.result()
        written_files = {name: pending.result() for name, pending in pending_files.items()}
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr
    tables = _comparison_tables(table.stdout)
    assert sorted(tables) == sorted(book), table.stdout
    for name, holding in book.items():
        rows = tables[name]
        # every figure the exchange reports agrees with alertd's: no false mismatch
        assert rows and not [r for r in rows if r[-1] == "NO"], (name, table.stdout)
        for leg in holding.legs:
            symbol = leg.symbol(exchange)
            liquidation = [r for r in rows if r[0] == f"{symbol} {leg.side} liq. price"]
            assert len(liquidation) == 1 and liquidation[0][-1] == "yes", (name, table.stdout)

    for name, holding in book.items():
        written = written_files[name]
        assert written.returncode == 0, written.stderr
        path = tmp_path / f"{name}.json"
        path.write_text(written.stdout)
        # the snapshot carries the account's own taker rate where the exchange's formula
        # uses one (null: the profile's base rate)
        fees = {p["fee_rate"] for p in json.loads(written.stdout)["positions"]}
        assert fees == {holding.taker_fee or BASE_FEE[exchange]}, (exchange, name, fees)
        calc = alertd("calc", str(path), "--json", env=env)
        assert calc.returncode == 0, calc.stderr
        ours = {
            (p["symbol"], p["side"]): Decimal(p["liquidation_price"])
            for p in json.loads(calc.stdout, parse_float=Decimal)["positions"]
        }
        # each local exchange's ADL level in its real field and scale, on alertd's 0-1 scale
        ranks = {p["adl_rank"] for p in json.loads(calc.stdout)["positions"]}
        assert ranks == {ADL_RANKS[exchange]}, (exchange, ranks)
        theirs = asyncio.run(_reported_liquidations(fake, exchange, name))
        assert sorted(ours) == sorted(theirs) and len(ours) == len(holding.legs)
        for (symbol, side), reported in theirs.items():
            mine = ours[(symbol, side)]
            tick = fake.tick(symbol) if exchange in ROUNDS_TO_TICK else Decimal(0)
            allowed = max(abs(reported) * RELATIVE, tick)
            assert abs(mine - reported) <= allowed, (
                f"{exchange} {name} {symbol} {side}: alertd {mine}, exchange {reported}"
            )
