"""End to end, the fee-gap warning (issue 11): the real ``alertd run`` against the local Bybit,
for a kyc=IND account whose GST no read can tell (fills and key information refused, 10005).
The gap was only shown (``status``, ``/status``, snapshots, ``calc``); now it is a signal: the
``alertd_fee_gap`` gauge on ``/metrics`` (the share of alertd's maintenance margin left out),
and the built-in ``fee-gap`` warning, sent once, naming what is missing and the maintenance
margin it leaves out, resolved once a read tells the GST; ``builtin_rules.fee_gap: false``
turns the warning off, not the gauge."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tests.fake_exchange.bybit import FakeBybit
from tests.support.endpoint import computed_account, get
from tests.support.fixtures import started, status_world_fixture, stopped_cleanly
from tests.support.poll import wait_for

KEYS = ("key-e2e", "secret-e2e")
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
TITLE = "WARNING main: maintenance margin low, a fee rate unread"


def _india(fake: FakeBybit) -> None:
    """A kyc=IND account paying India's 18% GST (0.5 BTC long at 60,000 on 10,000 USDT: no
    ratio alert), whose fills and key information its key may not read."""
    fake.set_mark(BTC, "60000")
    fake.open_position(KEYS[0], BTC, "long", "0.5", "60000")
    fake.set_gst(KEYS[0], "0.18")
    fake.script_fills(KEYS[0], refuse=10005)
    fake.script_key_info(KEYS[0], refuse=10005)


world = status_world_fixture("bybit", KEYS, "10000", _india)


def _config(world: dict[str, Any], **builtin: Any) -> None:
    """Reconcile every second (a trade is read soon), with ``builtin`` rule settings."""
    config = dict(world["config"])
    config["feeds"] = {**config["feeds"], "reconcile_interval_s": 1}
    config["builtin_rules"] = builtin
    world["path"].write_text(json.dumps(config))


def _gauge(base: str) -> Decimal | None:
    status, text = get(f"{base}/metrics")
    assert status == 200, text
    found = re.search(r'^alertd_fee_gap\{account="main"\} (\S+)$', text, re.MULTILINE)
    return None if found is None else Decimal(found.group(1))


def test_an_unread_gst_is_a_gauge_and_a_warning_sent_once_and_resolved_when_read(
    world: dict[str, Any],
) -> None:
    fake, http, daemon, base = world["fake"], world["http"], world["daemon"], world["base"]
    _config(world)
    started(daemon)
    wait_for(lambda: computed_account(base), what="alertd's own figures")
    wait_for(lambda: len(http.posts) >= 1, what="fee-gap warning")
    # MM 0.5 x 60,000 x 0.5% = 150, the fee to close at the bankruptcy price 0.5 x 54,000 x
    # 0.055% = 14.85; its GST 18% of that: 2.673, 1.7% of alertd's 164.85
    assert http.titles() == [TITLE], http.titles()
    body = http.posts[0]["message"]
    assert "fee to close without the GST an India-KYC account pays (18% on the fee)" in body
    assert "maintenance margin up to 2.68 USDT (1.7%) low" in body
    gauge = _gauge(base)
    assert gauge is not None and gauge.quantize(Decimal("1e-6")) == Decimal("0.016215")
    assert "2.68 USDT" in (computed_account(base) or {})["fee_gap"]

    # the marks move: the warning is not sent again
    fake.set_mark(BTC, "59000")
    wait_for(lambda: (_gauge(base) or 0) != gauge, what="the gauge following the marks")
    # the key may read its KYC region now; the account trades another symbol, so alertd
    # asks again at the next reconcile: kyc=IND tells the GST, the warning resolves
    fake.script_key_info(KEYS[0], refuse=None)
    fake.set_kyc_region(KEYS[0], "IND")
    fake.set_mark(ETH, "3000")
    fake.open_position(KEYS[0], ETH, "short", "1", "3000")
    wait_for(lambda: len(http.posts) >= 2, what="fee-gap resolution")
    assert http.titles()[1:] == ["RESOLVED main: fee rates complete again"], http.titles()
    assert _gauge(base) == 0
    assert (computed_account(base) or {})["fee_gap"] is None
    stopped_cleanly(daemon)
    assert len(http.posts) == 2, http.titles()


def test_the_warning_turned_off_leaves_the_gauge(world: dict[str, Any]) -> None:
    http, daemon, base = world["http"], world["daemon"], world["base"]
    _config(world, fee_gap=False)
    started(daemon)
    wait_for(lambda: computed_account(base) and _gauge(base), what="the fee-gap gauge")
    stopped_cleanly(daemon)
    assert http.posts == [], http.titles()
