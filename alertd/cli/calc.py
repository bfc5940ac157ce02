"""``alertd calc``: margin metrics of a snapshot file, with what-if prices.

Compute an account's margin from a snapshot (JSON, schema 2 or 1): every cross pool, with its
collateral; --mark moves positions and the coins valued at that symbol.
"""

from __future__ import annotations

import argparse
import difflib
import json
from decimal import Decimal

from alertd.cli.common import (
    EXIT_OK,
    console,
    decimal_arg,
    warn,
)
from alertd.engine.margin import compute
from alertd.errors import InputError
from alertd.rules.messages import book_notes
from alertd.snapshot.format import load_book, load_snapshot
from alertd.views.format import fee_gap_line
from alertd.views.report import fee_gap_json, metrics_json, render

NEEDS_CONFIG = False
JSON_HELP = "print the result as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", metavar="SNAPSHOT.json")
    parser.add_argument(
        "--mark",
        action="append",
        default=[],
        metavar="SYMBOL=PRICE",
        help="replace a symbol's mark price (repeatable)",
    )
    parser.add_argument(
        "--move",
        metavar="PCT",
        help="move every mark by PCT percent after --mark, e.g. -10 for a 10%% drop",
    )
    parser.add_argument(
        "--book",
        action="append",
        default=[],
        metavar="FILE",
        help="the order book of a held symbol: ccxt's fetch_order_book answer saved as JSON "
        "(it names its symbol); shows the close slippage and the gap risk (in place of the "
        "snapshot's order_books entry for that symbol; not moved by --mark/--move)",
    )
    parser.add_argument(
        "--target-ratio",
        metavar="R",
        default="0.5",
        help="ratio that 'margin to add' and 'size to cut' aim for",
    )


def run(args: argparse.Namespace) -> int:
    loaded = load_snapshot(args.snapshot)
    pools = loaded.pools or (loaded.account,)
    symbols = list(dict.fromkeys(s for pool in pools for s in pool.price_symbols))

    marks: dict[str, Decimal] = {}
    for item in args.mark:
        symbol, sep, price_text = item.rpartition("=")
        if not sep or not symbol:
            raise InputError(f"--mark {item!r}: expected SYMBOL=PRICE")
        price = decimal_arg(price_text, f"--mark {symbol}")
        if price <= 0:
            raise InputError(f"--mark {symbol}: price must be positive (got {price_text})")
        if symbol not in symbols:
            close = difflib.get_close_matches(symbol, symbols, n=1, cutoff=0.4)
            hint = f" (did you mean {close[0]}?)" if close else f" (held: {', '.join(symbols)})"
            raise InputError(f"--mark {symbol}: no position or collateral at that symbol{hint}")
        marks[symbol] = price
    if marks:
        pools = tuple(pool.with_marks(marks) for pool in pools)
    if args.move is not None:
        pct = decimal_arg(args.move, "--move")
        if pct <= -100:
            raise InputError(f"--move: a price cannot fall by {pct}% (must be above -100)")
        pools = tuple(pool.moved(pct / 100) for pool in pools)
    target = decimal_arg(args.target_ratio, "--target-ratio")
    if not 0 < target <= 1:
        raise InputError(f"--target-ratio: must be above 0 and at most 1 (got {target})")

    held = [p for pool in pools for p in pool.positions]
    books = dict(loaded.books)
    books.update(load_book(path, held) for path in args.book)

    for warning in loaded.warnings:
        warn(warning)
    gap = loaded.fee_gap
    if gap is not None:
        # at the marks computed (after --mark and --move)
        warn(f"{loaded.account.name}: {fee_gap_line(pools, gap)}")
    main, *more = [compute(pool, target) for pool in pools]
    if args.json:
        out, *others = [metrics_json(m, books, book_notes) for m in (main, *more)]
        if gap is not None:
            for pool, written in zip(pools, (out, *others), strict=True):
                written["fee_gap"] = fee_gap_json(pool, gap)
        if others:
            # the other margin assets' pools, each computed on its own
            out["pools"] = others
        print(json.dumps(out, indent=2))
    else:
        for m in (main, *more):
            render(m, console(), books, book_notes)
    return EXIT_OK
