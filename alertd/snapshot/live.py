"""``alertd snapshot``: bootstrap each account once over REST and hand back its state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from alertd.config import AccountConfig, Config, read_secrets
from alertd.engine.model import Account
from alertd.errors import StartupError
from alertd.feeds.ccxt_exchange import describe
from alertd.feeds.feed import AccountFeed
from alertd.feeds.state import AccountState
from alertd.snapshot.compare import Comparison


@dataclass(frozen=True)
class LiveSnapshot:
    account: Account
    state: AccountState
    comparison: Comparison  # alertd's figures beside the exchange's own, as the daemon checks


async def _one(config: Config, account: AccountConfig) -> LiveSnapshot:
    feed = AccountFeed(account, read_secrets(account), config.feeds)
    try:
        # a bounded wait: ccxt retries inside, and a user at a terminal should get an answer
        timeout = config.feeds.request_timeout_s * 4
        await asyncio.wait_for(feed.bootstrap(), timeout)
    except TimeoutError:
        raise StartupError(
            f"{account.name}: no answer from {account.exchange} in {timeout:.0f}s"
        ) from None
    except NotImplementedError as exc:
        raise StartupError(f"{account.name}: {exc}") from None
    except Exception as exc:
        raise StartupError(f"{account.name}: cannot read the account: {describe(exc)}") from exc
    finally:
        await feed.close()
    if problems := feed.state.missing():
        raise StartupError(f"{account.name}: incomplete account: {'; '.join(problems)}")
    # the bootstrap's resync compared the complete account, as every reconcile does
    assert feed.comparison is not None
    return LiveSnapshot(feed.state.to_account(), feed.state, feed.comparison)


async def take_snapshots(config: Config, accounts: Sequence[AccountConfig]) -> list[LiveSnapshot]:
    return list(await asyncio.gather(*(_one(config, a) for a in accounts)))
