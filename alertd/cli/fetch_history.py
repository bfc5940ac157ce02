"""``alertd fetch-history``: download mark-price (or trade) candles into the CSV replay reads.

Download candles through ccxt, paged, into the CSV that alertd replay reads: the mark price
where the exchange publishes it, else trades.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console

from alertd.cli.common import (
    EXIT_OK,
)
from alertd.config import load_config
from alertd.errors import AlertdError, InputError, StartupError

NEEDS_CONFIG = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", metavar="SYMBOL", help="ccxt symbol, e.g. BTC/USDT:USDT")
    parser.add_argument("--exchange", default="binanceusdm", help="ccxt exchange id")
    parser.add_argument("--since", required=True, metavar="ISO")
    parser.add_argument("--until", required=True, metavar="ISO")
    parser.add_argument("--timeframe", default="1m", help="candle length")
    parser.add_argument(
        "--trades", action="store_true", help="trade candles even where marks exist"
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    parser.add_argument(
        "-c",
        "--config",
        metavar="CONFIG.yaml",
        default=argparse.SUPPRESS,  # keeps a -c given before the command
        help="reach the exchange as this config's --account does (urls, options)",
    )
    parser.add_argument("--account", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.progress import Progress

    from alertd.cli.replay import parse_time
    from alertd.config import AccountConfig, FeedSettings
    from alertd.exchanges.spec import Credential
    from alertd.feeds.ccxt_exchange import make_exchange
    from alertd.replay.fetch import fetch_history

    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    assert since is not None and until is not None
    if until < since:
        raise InputError("--until is before --since")
    if args.config:
        config = load_config(args.config)
        account = config.account(args.account) if args.account else config.accounts[0]
        # candles are public: no credentials
        account = account.model_copy(update={f"{c.value}_env": None for c in Credential})
        settings = config.feeds
    else:
        # candles are public: an account with no credentials (built without the checks
        # that a configured account's credentials are named)
        account = AccountConfig.model_construct(name="history", exchange=args.exchange)
        settings = FeedSettings()

    async def go() -> tuple[int, str]:
        exchange = make_exchange(account, {}, settings)
        try:
            with Progress(
                console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()
            ) as bar:
                task = bar.add_task("downloading", total=until - since)
                return await fetch_history(
                    exchange,
                    args.symbol,
                    since,
                    until,
                    Path(args.output),
                    timeframe=args.timeframe,
                    prefer_mark=not args.trades,
                    progress=lambda t: bar.update(task, completed=min(t, until) - since),
                )
        finally:
            await exchange.close()

    try:
        rows, kind = asyncio.run(go())
    except AlertdError:
        raise
    except Exception as exc:
        from alertd.feeds.ccxt_exchange import describe

        raise StartupError(f"fetch-history: {describe(exc)}") from exc
    print(f"{args.output}: {rows} {args.timeframe} {kind} candles of {args.symbol}")
    return EXIT_OK
