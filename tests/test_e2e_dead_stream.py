"""End to end, a private stream dead while its socket lives (issue 11/14): the real ``alertd
run`` against the local OKX (session 14's case: a login refused, the connection open, the
watches pending for ever). The local OKX stops pushing on the account's private connections
open now, which stay open and answer pings; a position is opened on it. Within one reconcile
the built-in ``private-stream-missed`` warning is sent, naming the account, the position it
missed and how late; ``/status`` says it (``private_stream_missed``) without calling the account
stale, so ``/healthz`` stays healthy (the reconcile read the account; the warning carries the
miss); the private stream is reopened and, at its next position push, the warning resolves."""

from __future__ import annotations

import json
from typing import Any

from tests.fake_exchange.okx import FakeOKX
from tests.support.endpoint import computed_account, get, status_account
from tests.support.fixtures import started, status_world_fixture, stopped_cleanly
from tests.support.poll import wait_for

KEYS = ("key-dead", "secret-dead")
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
TITLE = "WARNING main: private stream missed a change"
RESOLVED = "RESOLVED main: private stream delivering again"


def _long(fake: FakeOKX) -> None:
    """0.5 BTC long at 60,000 on 10,000 USDT: no ratio alert."""
    fake.set_mark(BTC, "60000")
    fake.open_position(KEYS[0], BTC, "long", "50", "60000")


world = status_world_fixture("okx", KEYS, "10000", _long)


def _position_reads(fake: FakeOKX) -> int:
    return sum(1 for _, path in fake.requests if path.endswith("/account/positions"))


def _missed(base: str) -> list[str]:
    said = status_account(base)["private_stream_missed"]
    return [said] if said else []


def test_a_dead_private_stream_is_warned_within_a_reconcile_reopened_and_resolved(
    world: dict[str, Any],
) -> None:
    fake, http, daemon, base = world["fake"], world["http"], world["daemon"], world["base"]
    config = dict(world["config"])
    # a reconcile every 2 s, a push given 1 s to come after the REST answer
    config["feeds"] = {**config["feeds"], "reconcile_interval_s": 2, "missed_push_grace_s": 1}
    world["path"].write_text(json.dumps(config))
    started(daemon)
    wait_for(lambda: computed_account(base), what="alertd's own figures")
    wait_for(lambda: {"positions", "account"} <= fake.subscriptions(), what="private streams")
    # quiet reconciles (each reads the positions): nothing said
    read = _position_reads(fake)
    wait_for(lambda: _position_reads(fake) >= read + 3, what="three reconciles")
    assert http.posts == [] and _missed(base) == []
    connections = fake.ws_connections
    fake.mute_pushes(KEYS[0])
    fake.set_mark(ETH, "3000")
    fake.open_position(KEYS[0], ETH, "long", "20", "3000")  # 2 ETH: 20 contracts of 0.1
    wait_for(lambda: TITLE in http.titles(), what="the warning")
    body = http.posts[http.titles().index(TITLE)]["message"]
    assert "private stream missed ETH/USDT:USDT long opened (20 contracts)" in body, body
    assert "alertd reopens it" in body, body
    assert status_account(base)["stale"] == []
    assert get(f"{base}/healthz")[0] == 200
    wait_for(lambda: fake.ws_connections > connections, what="the private stream reopened")
    wait_for(lambda: {"positions", "account"} <= fake.subscriptions(), what="subscribed again")
    # a position push on the reopened stream ends it (the subscription's own snapshot may
    # already have)
    fake.open_position(KEYS[0], ETH, "long", "30", "3000")
    wait_for(lambda: RESOLVED in http.titles(), what="the resolution")
    assert _missed(base) == []
    stopped_cleanly(daemon)
    assert http.titles() == [TITLE, RESOLVED], http.titles()
