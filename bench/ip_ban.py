"""An IP ban of a host with many accounts: how many requests meet it, what stops, when all resume.

N Binance USDⓈ-M accounts on the local exchange (one IP, loopback), all live and quiet; the
exchange bans the IP for BAN seconds (418 with Retry-After, as Binance answers: "General
Info", Limits); every account reconciles at once. Prints the requests the ban refused, the
accounts stopped, how long until every reconcile returned, and how many are connected after.

    python bench/ip_ban.py [--accounts 20] [--ban 3]

In-process (the feed manager and the local exchange on one loop); bounded: every wait has a
timeout, the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--ban", type=float, default=3.0, help="the ban's length, seconds")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the local exchange lives with the tests
    from tests.fake_exchange.binance import FakeBinanceUSDM
    from tests.support.aio import background, run
    from tests.support.fakes import started
    from tests.support.poll import eventually
    from tests.test_shared_exchange import SETTINGS, Built, manager_for, market_requests

    count = args.accounts

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            # no periodic run: the reconciles below are the only REST work during the ban
            quiet = SETTINGS.model_copy(
                update={"reconcile_interval_s": 600, "listen_key_renew_interval_s": 600}
            )
            manager = manager_for(fake, "binanceusdm", Built(), count=count, settings=quiet)
            feeds = list(manager.feeds.values())
            async with background(manager.run()):
                await eventually(
                    lambda: (
                        all(f.state.bootstrapped and f.state.connected for f in feeds)
                        and market_requests(fake, "/fapi/v1/openAlgoOrders") == count
                    ),
                    what="every account live and resynced",
                    timeout_s=300,
                )
                fake.ban_ip(args.ban)
                started_at = time.monotonic()
                reconciles = asyncio.gather(*(f.reconcile() for f in feeds))
                await asyncio.wait_for(reconciles, args.ban + 60)
                took = time.monotonic() - started_at
                await asyncio.sleep(args.ban + 0.5)  # past the ban, whatever happened
                stopped = sum(f.state.fatal is not None for f in feeds)
                connected = sum(f.state.connected for f in feeds)
                print(f"{count} accounts, an IP ban of {args.ban:g} s, every account reconciling")
                print(f"requests refused by the ban: {fake.refused_while_banned}")
                print(f"accounts stopped: {stopped}")
                print(f"every reconcile returned after: {took:.2f} s")
                print(f"connected after the ban: {connected}/{count}")

    run(body(), timeout_s=args.ban + 600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
