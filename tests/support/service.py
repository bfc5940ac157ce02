"""The daemon's ``Service`` in-process, without the network: started up (state file, rules,
delivery, feeds built), never served. For tests of what the service does between ticks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alertd.config import load_config
from alertd.daemon.service import Service
from tests.support.configs import write_config

# the service's wall clock: just before 08:00 UTC (a digest at "08:00" is 30 s away)
NOON = dt.datetime(2026, 11, 25, 7, 59, 30, tzinfo=dt.UTC).timestamp()
# a receiver on a port nothing listens on (tagged "all"): rows are queued, never delivered
HOOK = {"name": "hook", "url": "json://127.0.0.1:9/x", "tags": ["all"]}


def make(tmp_path: Path, **sections: object) -> Service:
    """One Hyperliquid account (no secrets), the receiver ``HOOK``, the wall clock at
    ``NOON``, and any other top-level config ``sections``."""
    path = write_config(tmp_path, receivers=[HOOK], **sections)
    service = Service(
        load_config(path), config_path=path, secrets={"hl": {}}, wall_clock=lambda: NOON
    )
    service._startup()
    return service
