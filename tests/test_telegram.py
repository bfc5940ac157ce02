"""Telegram through alertd's own bot, against a local Telegram Bot API server
(tests/fake_telegram.py) that python-telegram-bot's own client code talks to unmodified."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from alertd.config import ConfigError, DeliverySettings, Secret, parse_config
from alertd.daemon.store import NewMessage, Store
from alertd.delivery.deliverer import Deliverer
from alertd.delivery.routing import Receiver, build_receivers
from alertd.delivery.senders import Outgoing, Transport
from alertd.delivery.senders.telegram import TelegramSender, render_html
from tests.fake_telegram import TOKEN, LocalBotApi
from tests.receivers import HttpReceiver
from tests.support.clock import ManualClock
from tests.support.configs import fake_account, write_config
from tests.support.fixtures import BTC, RULES, btc_long
from tests.support.poll import wait_for
from tests.support.process import Daemon, alertd, e2e_env

CHAT = 424242
STRANGER = 999


@pytest.fixture
def bot_api() -> Iterator[LocalBotApi]:
    api = LocalBotApi()
    api.start()
    api.add_chat(CHAT)
    try:
        yield api
    finally:
        api.stop()


def sender(api: LocalBotApi) -> TelegramSender:
    return TelegramSender(Secret(TOKEN), f"http://127.0.0.1:{api.port}")


WARNING = Outgoing(
    "WARNING main: worst ratio 66.0%",
    "above 50.0% (ratio-warning)\nBTC/USDT:USDT long 1 @ 58,350.00 · liq 58,232.93 (0.2%)",
    "warning",
    {"kind": "firing"},
)


def test_html_first_line_is_the_title_and_text_is_escaped() -> None:
    text = render_html(Outgoing("CRITICAL a<b>: 1 & 2", "x < y", "critical"))
    assert text == "<b>CRITICAL a&lt;b&gt;: 1 &amp; 2</b>\nx &lt; y"
    long = render_html(Outgoing("t", "x" * 5000, "info"))
    assert len(long) == 4096 and long.endswith("…")


def test_a_message_reaches_the_chat(bot_api: LocalBotApi) -> None:
    result = asyncio.run(sender(bot_api).send(Secret(str(CHAT)), WARNING))
    assert result.ok, result.error
    (message,) = bot_api.messages_to(CHAT)
    title = "WARNING main: worst ratio 66.0%"
    assert message["text"].startswith(title + "\n")  # HTML, as Telegram shows it
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": len(title)}]
    assert "reply_markup" not in message  # no alert behind it: no buttons


def test_rate_limits_blocks_and_unknown_chats_are_failures_with_reasons(
    bot_api: LocalBotApi,
) -> None:
    s = sender(bot_api)
    bot_api.limit_next = [7]
    limited = asyncio.run(s.send(Secret(str(CHAT)), WARNING))
    assert not limited.ok and limited.retry_after_s == 7.0
    assert "retry after 7s" in limited.error
    bot_api.block(CHAT)
    blocked = asyncio.run(s.send(Secret(str(CHAT)), WARNING))
    assert not blocked.ok and "bot was blocked by the user" in blocked.error
    unknown = asyncio.run(s.send(Secret(str(STRANGER)), WARNING))
    assert not unknown.ok and "chat not found" in unknown.error.lower()
    for result in (limited, blocked, unknown):
        assert TOKEN not in result.error
    wrong = TelegramSender(Secret("1:wrong"), f"http://127.0.0.1:{bot_api.port}")
    refused = asyncio.run(wrong.send(Secret(str(CHAT)), WARNING))
    assert not refused.ok and "1:wrong" not in refused.error


def test_the_outbox_waits_out_retry_after_and_loses_nothing(
    tmp_path: Path, bot_api: LocalBotApi
) -> None:
    store = Store(tmp_path / "state.sqlite")
    clock = ManualClock()
    phone = Receiver("phone", Secret(str(CHAT)), 0.0, "telegram", (), Transport.TELEGRAM)
    deliverer = Deliverer(
        store,
        {"phone": phone},
        [],
        DeliverySettings(retry_initial=1, retry_max=5),
        {Transport.TELEGRAM: sender(bot_api)},
        clock=clock,
    )
    bot_api.limit_next = [30]
    store.enqueue([NewMessage("phone", "warning", WARNING.title, WARNING.body, {})], clock.t)
    assert asyncio.run(deliverer.deliver_due()) == 0
    (row,) = store.pending()
    assert row.next_attempt_at == 1030.0  # Telegram's retry_after, not the 1 s backoff
    clock.t = 1010.0
    assert asyncio.run(deliverer.deliver_due()) == 0 and bot_api.messages_to(CHAT) == []
    clock.t = 1031.0
    assert asyncio.run(deliverer.deliver_due()) == 1
    assert len(bot_api.messages_to(CHAT)) == 1 and store.pending() == []
    store.close()


def test_a_blocked_bot_falls_back_to_the_routes_fallback(
    tmp_path: Path, bot_api: LocalBotApi, http_receiver: HttpReceiver
) -> None:
    bot_api.block(CHAT)
    config = parse_config(
        json.dumps(
            {
                "version": 1,
                "accounts": [{"name": "hl", "exchange": "hyperliquid", "wallet_address": "0x1"}],
                "telegram": {"token_env": "TG_TOKEN", "chats": [CHAT], "api_url": "http://x"},
                "receivers": [
                    {"name": "phone", "type": "telegram", "chat": CHAT},
                    {"name": "hook", "url": http_receiver.url()},
                ],
                "routes": [{"receivers": ["phone"], "fallback": "hook"}],
            }
        )
    )
    receivers = build_receivers(config)
    assert receivers["phone"].transport is Transport.TELEGRAM
    from alertd.delivery.senders.apprise import ApriseSender

    store = Store(tmp_path / "state.sqlite")
    deliverer = Deliverer(
        store,
        receivers,
        config.routes,
        DeliverySettings(retry_initial=60, retry_max=60),
        {Transport.TELEGRAM: sender(bot_api), Transport.APPRISE: ApriseSender()},
    )
    rows = deliverer._routed({"alertname": "x"}, "warning", WARNING.title, WARNING.body, {})
    store.enqueue(rows, 0.0)
    asyncio.run(deliverer.deliver_due())  # the bot is blocked: the fallback copy is queued
    asyncio.run(deliverer.deliver_due())
    assert http_receiver.titles() == [WARNING.title]
    store.close()


@pytest.mark.parametrize(
    ("telegram", "receiver", "problem"),
    [
        (None, {"chat": CHAT}, "receivers[0]: a telegram receiver needs the telegram: section"),
        (
            {"token_env": "TG", "chats": [1]},
            {"chat": CHAT},
            f"receivers[0].chat: {CHAT} is not in telegram.chats",
        ),
        (
            {"token_env": "TG", "chats": [CHAT]},
            {"url": "tgram://x/y"},
            "a telegram receiver names the chat the bot writes to",
        ),
        ({"chats": [CHAT]}, {"chat": CHAT}, "exactly one of token_env or token_file"),
        ({"token_env": "TG", "chats": []}, {"chat": CHAT}, "telegram.chats"),
    ],
)
def test_config_problems(
    telegram: dict[str, Any] | None, receiver: dict[str, Any], problem: str
) -> None:
    data: dict[str, Any] = {
        "version": 1,
        "accounts": [{"name": "hl", "exchange": "hyperliquid", "wallet_address": "0x1"}],
        "receivers": [{"name": "phone", "type": "telegram", **receiver}],
    }
    if telegram is not None:
        data["telegram"] = telegram
    with pytest.raises(ConfigError) as info:
        parse_config(json.dumps(data))
    assert any(problem in p for p in info.value.problems), info.value.problems


def bot_daemon(
    tmp_path: Path,
    fake: Any,
    bot_api: LocalBotApi,
    rules: list[dict[str, Any]],
    fallback_url: str | None = None,
) -> tuple[Path, Daemon]:
    """``alertd run`` (not started) on the fake's account, its alerts to the bot's chat (and,
    when the chat cannot be reached, to ``fallback_url``)."""
    receivers: list[dict[str, Any]] = [{"name": "phone", "type": "telegram", "chat": CHAT}]
    routes: dict[str, Any] = {}
    if fallback_url is not None:
        receivers.append({"name": "hook", "url": fallback_url})
        routes["routes"] = [{"receivers": ["phone"], "fallback": "hook"}]
    path = write_config(
        tmp_path,
        [fake_account(fake, "main", "binanceusdm", "E2E_KEY", "E2E_SECRET")],
        feeds={"stale_after_s": 10, "reconcile_interval_s": 5, "backoff": {"max_s": 1}},
        rules=rules,
        telegram={"token_env": "TG_TOKEN", "chats": [CHAT], "api_url": bot_api.base_url[:-4]},
        receivers=receivers,
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
        **routes,
    )
    return path, Daemon(path, e2e_env(TG_TOKEN=TOKEN), tmp_path / "alertd.log")


def test_alertd_run_sends_the_alert_and_answers_the_allowed_chat(
    tmp_path: Path, fake_in_thread: Any, bot_api: LocalBotApi
) -> None:
    """The real daemon: the price falls past the warning; one message in the chat; the
    token is nowhere in the log."""
    fake = btc_long(fake_in_thread)
    path, daemon = bot_daemon(tmp_path, fake, bot_api, RULES)
    daemon.args = ["-v"]

    def replies() -> list[str]:
        return [m["text"] for m in bot_api.messages_to(CHAT)]

    try:
        daemon.start()
        wait_for(lambda: "bootstrapped" in daemon.text(), what="bootstrap", timeout_s=60)
        fake.set_mark(BTC, "58350")
        wait_for(replies, what="the warning in the chat", timeout_s=60)
        (warning,) = bot_api.messages_to(CHAT)
        assert warning["text"].startswith("WARNING main: worst ratio")
        assert warning["entities"][0]["type"] == "bold"
        labels = [text for text, _ in bot_api.buttons(warning)]
        assert labels == ["Ack", "Silence 1h", "Silence until resolved"]

        # asking: the figures the daemon sees
        bot_api.user_says(CHAT, "/positions")
        wait_for(lambda: len(replies()) == 2, what="/positions answered", timeout_s=30)
        assert "BTC/USDT:USDT long 1 @ 58,350.00 · liq 58,232.93" in replies()[1]
        bot_api.user_says(CHAT, "/status")
        wait_for(lambda: len(replies()) == 3, what="/status answered", timeout_s=30)
        assert "main (binanceusdm): ratio" in replies()[2] and "1 alert firing" in replies()[2]
        # what if: the engine on the account as the feed holds it
        bot_api.user_says(CHAT, "   ")  # nothing to answer, and nothing breaks
        bot_api.user_says(CHAT, "/calc main BTC/USDT:USDT=58200")
        wait_for(lambda: len(replies()) == 4, what="/calc answered", timeout_s=30)
        assert replies()[3].startswith("main: ratio 66.") and "(liquidated)" in replies()[3]
        # Ack: no more repeats; the message says who and when, its buttons go
        (ack,) = [data for text, data in bot_api.buttons(warning) if text == "Ack"]
        bot_api.user_presses(CHAT, warning["message_id"], ack)
        wait_for(lambda: bot_api.answers, what="the button answered", timeout_s=30)
        assert bot_api.answers[0]["text"] == "acknowledged"
        wait_for(lambda: "edit_date" in warning, what="the message edited", timeout_s=30)
        assert "Trader: acknowledged at" in warning["text"] and "reply_markup" not in warning
        # a stranger gets nothing
        bot_api.user_says(STRANGER, "/status")
        # the alert resolves: the resolution is news, and the acknowledgement ends with it
        fake.set_mark(BTC, "60000")
        wait_for(
            lambda: any(t.startswith("RESOLVED main") for t in replies()),
            what="the resolution",
            timeout_s=60,
        )
        bot_api.user_says(CHAT, "/silence account=main 2h")
        wait_for(lambda: replies()[-1].startswith("silence "), what="/silence", timeout_s=30)
        assert bot_api.messages_to(STRANGER) == []
        assert "ignoring a chat not in telegram.chats" in daemon.text()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    # the bot's silence is alertd's silence: the CLI lists it
    listed = alertd("silence", "-c", str(path), "list").stdout.splitlines()
    (acked,) = [line for line in listed if "alertname=ratio-warning, account=main" in line]
    assert " expired " in acked and "# ack: Trader" in acked  # ended when the alert resolved
    (muted,) = [line for line in listed if line.endswith("account=main  # telegram: Trader")]
    assert " active " in muted
    assert TOKEN not in daemon.text()


def test_alertd_run_waits_out_retry_after_then_falls_back_when_the_bot_is_blocked(
    tmp_path: Path, fake_in_thread: Any, bot_api: LocalBotApi, http_receiver: HttpReceiver
) -> None:
    """The real daemon: Telegram answers the warning with 429 retry_after 3 s (the outbox
    backoff alone would retry within 1 s); the warning arrives once, after the wait. Then the
    user blocks the bot: the resolution reaches the route's fallback instead, and the chat gets
    nothing more."""
    fake = btc_long(fake_in_thread)
    bot_api.limit_next = [3]
    _, daemon = bot_daemon(tmp_path, fake, bot_api, RULES, fallback_url=http_receiver.url())
    try:
        daemon.start()
        wait_for(lambda: "bootstrapped" in daemon.text(), what="bootstrap", timeout_s=60)
        fake.set_mark(BTC, "58350")
        wait_for(lambda: bot_api.messages_to(CHAT), what="the warning after the wait", timeout_s=60)
        (warning,) = bot_api.messages_to(CHAT)
        assert warning["text"].startswith("WARNING main: worst ratio")
        # held for retry_after (as the server saw it), not re-sent on the 0.2-1 s backoff
        (limited_at,) = bot_api.limited_at
        assert bot_api.sent_at[warning["message_id"]] - limited_at >= 3
        assert "retry after 3" in daemon.text() and "retrying in 3s" in daemon.text()
        assert http_receiver.titles() == []  # a rate limit is not a reason to fall back

        bot_api.block(CHAT)
        fake.set_mark(BTC, "60000")
        wait_for(
            lambda: any(t.startswith("RESOLVED main") for t in http_receiver.titles()),
            what="the resolution at the fallback",
            timeout_s=60,
        )
        assert len(bot_api.messages_to(CHAT)) == 1
        assert "bot was blocked by the user" in daemon.text()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert TOKEN not in daemon.text()
    # the warning to the chat and the resolution to the fallback, once each; the resolution's
    # copy for the blocked chat stays in the outbox, retried until the user unblocks the bot
    assert "2 delivered, 1 undelivered" in daemon.text()


def test_command_answers_are_built_from_the_view() -> None:
    from alertd.daemon.bot import answer
    from tests.support.views import account, view

    current = view(account(), now=1000.0)  # a warning firing on main for 1,000 s
    status = answer("/status", current, [], 1000.0)
    assert status is not None
    assert "main (binanceusdm): ratio 66.0%, feed fresh" in status.text
    alerts = answer("/alerts@alertd_test_bot", current, [], 1000.0)
    assert alerts is not None and "warning ratio-warning main for 16m" in alerts.text
    assert answer("hello", current, [], 1000.0) is None  # not a command: no answer
    silence = answer("/silence account=main severity=warning 2h", current, [], 1000.0, "Ann")
    assert silence is not None and silence.silence is not None
    assert dict(silence.silence.matchers) == {"account": "main", "severity": "warning"}
    assert silence.silence.ends_at == 1000.0 + 7200 and silence.silence.comment == "telegram: Ann"
    for bad in ("/silence 2h", "/silence account 2h", "/silence account=main forever"):
        reply = answer(bad, current, [], 1000.0)
        assert reply is not None and reply.silence is None
    positions = answer("/positions other", current, [], 1000.0)
    assert positions is not None and positions.text == "no account named other"
    help_text = answer("/help", current, [], 1000.0)
    assert help_text is not None and "/silence" in help_text.text


def test_what_if_on_the_live_account() -> None:
    from alertd.daemon.bot import what_if
    from tests.support.snapshots import account, position, snapshot, tiers

    main = account(
        snapshot(
            "binanceusdm",
            "2000",
            [position(BTC, "long", "1", "60000", "58350", tiers([(None, "0.004", "0")]))],
        )
    )
    accounts = {"main": main, "new": None}
    moved = what_if("move", ["-1%", "main"], accounts)
    # at 58,350 x 0.99 = 57,766.50 the equity is 2,000 - 2,233.50 < 0: liquidated
    assert moved.splitlines()[0].startswith("<b>main</b>: ratio 66.")
    assert "(liquidated)" in moved and "@ 57,766.50" in moved
    calm = what_if("calc", ["main", f"{BTC}=60000"], accounts)
    assert calm.splitlines()[0] == "<b>main</b>: ratio 66.7% → 12.0%"
    assert what_if("move", ["-5%"], accounts).endswith("new: no complete data yet")
    assert what_if("calc", ["nope", f"{BTC}=1"], accounts) == "no account named nope"
    for bad in (["x"], ["-100%"], ["nan"], ["-5%", "main", "extra"]):
        assert what_if("move", bad, accounts).startswith(("usage", "a move"))
    for bad in (["main"], ["main", "BTC=abc"], ["main", f"{BTC}=-1"], ["main", "55000"]):
        assert what_if("calc", bad, accounts).startswith("usage")


def test_ack_stops_repeats_an_escalation_still_comes_and_silence_1h_holds_it(
    tmp_path: Path, fake_in_thread: Any, bot_api: LocalBotApi
) -> None:
    """Through the real daemon, with repeats every 2 s: Ack ends the warning's repeats; the
    critical (another rule) still comes; Silence 1h on it holds its repeats."""
    fake = btc_long(fake_in_thread)
    rules = [{**rule, "repeat": "2s"} for rule in RULES]
    _, daemon = bot_daemon(tmp_path, fake, bot_api, rules)

    def sent(head: str) -> list[dict[str, Any]]:
        return [m for m in bot_api.messages_to(CHAT) if m["text"].startswith(head)]

    def drained() -> bool:
        with closing(sqlite3.connect(tmp_path / "state.sqlite")) as db:
            undelivered = "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"
            (left,) = db.execute(undelivered).fetchone()
        return bool(left == 0)

    def press(message: dict[str, Any], label: str, answered: int) -> None:
        (data,) = [d for text, d in bot_api.buttons(message) if text == label]
        bot_api.user_presses(CHAT, message["message_id"], data)
        wait_for(lambda: len(bot_api.answers) == answered, what=f"{label} answered", timeout_s=30)
        # the press took effect before its answer; a repeat queued before it may still be on
        # its way: counted once the outbox is empty
        wait_for(drained, what="the outbox drained", timeout_s=30)

    try:
        daemon.start()
        wait_for(lambda: "bootstrapped" in daemon.text(), what="bootstrap", timeout_s=60)
        fake.set_mark(BTC, "58350")  # ratio about 0.67: the warning, then its repeats
        wait_for(lambda: len(sent("WARNING main")) >= 2, what="a repeat", timeout_s=60)
        press(sent("WARNING main")[0], "Ack", 1)
        assert bot_api.answers[0]["text"] == "acknowledged"
        warnings = len(sent("WARNING main"))
        time.sleep(6)  # three repeat intervals
        assert len(sent("WARNING main")) == warnings, "the acknowledged alert repeated"

        fake.set_mark(BTC, "58250")  # ratio about 0.93: the critical rule, not acknowledged
        wait_for(lambda: sent("CRITICAL main"), what="the escalation", timeout_s=60)
        press(sent("CRITICAL main")[0], "Silence 1h", 2)
        assert bot_api.answers[1]["text"] == "silenced for 1h"
        criticals = len(sent("CRITICAL main"))
        time.sleep(6)
        assert len(sent("CRITICAL main")) == criticals, "the silenced alert repeated"
        assert daemon.stop() == 0
    finally:
        daemon.kill()
