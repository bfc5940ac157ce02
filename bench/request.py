"""CPU of a calm reconcile's REST requests: alertd's side of each, through the path the daemon uses.

Starts the local exchange (tests/fake_exchange, its own process: its CPU is not counted) with
``--accounts`` accounts, builds each account's ccxt object as the feed manager does
(``make_exchange`` on a ``SharedExchange`` with its host's ``IpBudget``: the shared HTTP pool,
ccxt's per-account limiter and the IP's window, the market catalogue shared), and reads each
account's calm reconcile ``--reconciles`` times over, round robin, as a reconcile reads it: one
REST slot, then the adapter's ``fetch_mode``, ``fetch_positions`` and ``fetch_balance`` (Bybit:
account info, the USDT position list, the wallet; OKX: account config, positions, balance),
paced at ``--rate`` reconciles a second (1,000 accounts reconciled once a minute: about 17).

Prints the CPU time of this process (``time.process_time``: valid under load, wall-clock
figures are not) per reconcile and per request (the requests the local exchange received in
the measured window, from its own log), and the TCP connections the window opened (the peer
ports the local exchange saw). ``--profile OUT`` writes cProfile's stats of the window.

    python bench/request.py --exchange bybit [--accounts 200] [--reconciles 600] [--rate 17]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {"bybit": ("bybit", "FakeBybit"), "okx": ("okx", "FakeOKX")}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def window_requests(path: Path, start: float, end: float) -> tuple[dict[str, int], int, int]:
    """Each path's requests the local exchange received between ``start`` and ``end`` (its log:
    monotonic time, method, path, query, peer address, peer port), the TCP connections they
    came on, and how many of those the window opened (no request on them before it)."""
    counts: dict[str, int] = {}
    before: set[tuple[str, str]] = set()
    used: set[tuple[str, str]] = set()
    for line in path.read_text().splitlines():
        at, _, url_path, _, address, port = line.split("\t")
        if float(at) < start:
            before.add((address, port))
        elif float(at) <= end:
            counts[url_path] = counts.get(url_path, 0) + 1
            used.add((address, port))
    return counts, len(used), len(used - before)


async def measure(
    args: argparse.Namespace, urls: Any, options: Any, passphrase: str
) -> dict[str, Any]:
    from feeds import bench_accounts  # bench/feeds.py, beside this script

    from alertd.config import parse_config, read_secrets
    from alertd.exchanges.registry import get_spec
    from alertd.feeds.ccxt_exchange import IpBudget, SharedExchange, make_exchange, new_ssl_context

    accounts = bench_accounts(args.exchange, args.accounts, urls, options)
    for i in range(args.accounts):
        os.environ[f"BENCH_KEY_{i}"] = f"key{i}"
        os.environ[f"BENCH_SECRET_{i}"] = f"secret{i}"
        os.environ[f"BENCH_PASSWORD_{i}"] = passphrase
    config = parse_config(json.dumps({"version": 1, "accounts": accounts}))
    spec = get_spec(args.exchange)
    budget = IpBudget.of(spec.capabilities, args.exchange)
    shared = SharedExchange(
        f"{args.exchange} shared",
        lambda shared: make_exchange(config.accounts[0], {}, config.feeds, None, shared),
        new_ssl_context(),
        rest_concurrency=spec.capabilities.rest_concurrency,
        ip_budget=budget,
    )
    feeds = []
    for account_config in config.accounts:
        exchange = make_exchange(
            account_config, read_secrets(account_config), config.feeds, None, shared
        )
        await shared.share_markets(exchange)
        adapter = spec.new_adapter()
        adapter.tables = shared.tables
        feeds.append((exchange, adapter))

    async def reconcile(exchange: Any, adapter: Any) -> None:
        adapter.snapshot_begins(False)  # a calm reconcile, not a net (the feed's call)
        async with shared.rest_slot():
            await adapter.fetch_mode(exchange)
            await adapter.fetch_positions(exchange)
            await adapter.fetch_balance(exchange)

    # warm: connections open, each account's first reads' one-off work done
    await asyncio.gather(*(reconcile(exchange, adapter) for exchange, adapter in feeds))
    await asyncio.sleep(1)
    interval = 1 / args.rate if args.rate else 0.0
    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not wall
    buckets_before = own_buckets(feeds)
    started, cpu = time.monotonic(), time.process_time()
    if profiler is not None:
        profiler.enable()
    running = []
    for n in range(args.reconciles):
        # each its own task at its time, as the manager's jobs start them (a reconcile's
        # requests wait for its account's own limiter, not for the others')
        running.append(asyncio.create_task(reconcile(*feeds[n % len(feeds)])))
        if interval:
            await asyncio.sleep(max(0.0, started + (n + 1) * interval - time.monotonic()))
        else:
            await running[-1]
    await asyncio.gather(*running)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu_s, wall_s = time.process_time() - cpu, time.monotonic() - started
    ended = time.monotonic()
    at_once, debt_waits = (a - b for a, b in zip(own_buckets(feeds), buckets_before, strict=True))
    for exchange, _ in feeds:
        await exchange.close()
    await shared.close()
    return {
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "start": started,
        "end": ended,
        "at_once": at_once,
        "debt_waits": debt_waits,
    }


def own_buckets(feeds: list[tuple[Any, Any]]) -> tuple[int, int]:
    """The accounts' own buckets' requests admitted at their call and debt waits, so far."""
    at_once = debt_waits = 0
    for exchange, _ in feeds:
        own = getattr(exchange.throttler, "own", exchange.throttler)  # BothLimits: the bucket
        at_once += getattr(own, "at_once", 0)
        debt_waits += getattr(own, "debt_waits", 0)
    return at_once, debt_waits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchange", choices=sorted(SERVERS), default="bybit")
    parser.add_argument(
        "--accounts", type=int, default=200, help="each reconciled every accounts / rate s"
    )
    parser.add_argument("--markets", type=int, default=550, help="markets listed")
    parser.add_argument("--reconciles", type=int, default=600)
    parser.add_argument(
        "--rate", type=float, default=17.0, help="reconciles a second (0: back to back)"
    )
    parser.add_argument("--profile", metavar="OUT", help="cProfile of the measured window")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the local exchange lives with the tests
    import importlib

    module_name, class_name = SERVERS[args.exchange]
    module = f"tests.fake_exchange.{module_name}"
    server_class = getattr(importlib.import_module(module), class_name)
    options = server_class().ccxt_options
    requests_out = Path(tempfile.mkdtemp()) / "requests.tsv"
    fake_args = ["--port", str(free_port()), "--accounts", str(args.accounts)]
    fake_args += ["--markets", str(args.markets), "--requests-out", str(requests_out)]
    fake = subprocess.Popen(
        [sys.executable, "-m", module, *fake_args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        urls = json.loads(fake.stdout.readline())
        result = asyncio.run(measure(args, urls, options, getattr(server_class, "PASSPHRASE", "")))
    finally:
        fake.terminate()
        fake.wait(timeout=30)
    counts, connections, opened = window_requests(requests_out, result["start"], result["end"])
    requests = sum(counts.values())
    load = os.getloadavg()
    print(f"load {load[0]:.2f} {load[1]:.2f}; {args.exchange}, {args.accounts} accounts")
    print(f"{args.reconciles} reconciles in {result['wall_s']:.1f} s, requests {requests}:")
    for path, count in sorted(counts.items()):
        print(f"  {path} {count}")
    print(f"TCP connections the window's requests came on: {connections}, opened in it: {opened}")
    print(
        f"the accounts' own buckets: {result['at_once']} requests admitted at their call, "
        f"{result['debt_waits']} debt waits"
    )
    cpu_s = result["cpu_s"]
    print(
        f"CPU {cpu_s:.3f} s: {cpu_s / args.reconciles * 1000:.3f} ms a reconcile, "
        f"{cpu_s / max(requests, 1) * 1000:.3f} ms a request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
