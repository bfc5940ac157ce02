"""Routes, the outbox, retries, fallback and rate limits; the CLI's test-notify and silence."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

from alertd.config import DEADMAN, ConfigError, DeliverySettings, RouteConfig, Secret, expand_env
from alertd.daemon.store import NewMessage, Store
from alertd.delivery.deliverer import Deliverer
from alertd.delivery.routing import Receiver, route
from alertd.delivery.senders import Outgoing, SendResult, Transport
from alertd.delivery.senders.apprise import ApriseSender, why_refused
from alertd.delivery.senders.ping import PingSender
from alertd.delivery.system import digest, heartbeat
from alertd.rules.lifecycle import AlertEngine, AlertState, Phase
from alertd.rules.model import Condition, Rule, Scope, Severity, Subject

from .receivers import HttpReceiver, SmtpReceiver
from .support.aio import run
from .support.clock import ManualClock
from .support.configs import write_config
from .support.process import alertd


class ScriptedSender:
    """A transport whose answers a test scripts: the seam, as httpx's MockTransport."""

    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.calls: list[tuple[str, str, float]] = []
        self.now = 0.0

    async def send(self, url: Secret, message: Outgoing) -> SendResult:
        self.calls.append((url.reveal(), message.title, self.now))
        return self.results.pop(0) if self.results else SendResult(True)


def deliverer(
    tmp_path: Path, sender: ScriptedSender, clock: ManualClock, **receivers: float
) -> Deliverer:
    store = Store(tmp_path / "state.sqlite")
    recv = {
        name: Receiver(name, Secret(f"json://{name}"), interval, "json")
        for name, interval in (receivers or {"a": 0.0}).items()
    }
    return Deliverer(
        store,
        recv,
        [],
        DeliverySettings(retry_initial=2, retry_max=60),
        {transport: sender for transport in Transport},
        clock=clock,
    )


def msg(receiver: str, title: str = "t", fallback: str | None = None) -> NewMessage:
    return NewMessage(receiver, "warning", title, "body", {"fallback": fallback})


def test_routes_pick_receivers_by_severity_and_labels() -> None:
    routes = [
        RouteConfig(severities=["critical"], receivers=["phone", "mail"], fallback="mail"),
        RouteConfig(labels={"account": "desk"}, receivers=["slack"]),
    ]
    assert route(routes, ["phone", "mail", "slack"], {"account": "main"}, "critical") == [
        ("phone", "mail"),
        ("mail", "mail"),
    ]
    assert route(routes, ["phone", "mail", "slack"], {"account": "desk"}, "warning") == [
        ("slack", None)
    ]
    assert route(routes, ["phone"], {"account": "main"}, "info") == []
    assert route([], ["a", "b"], {}, "info") == [("a", None), ("b", None)]
    by_tag = [RouteConfig(tags=["oncall"], receivers=["mail"])]
    tagged = {"mail": (), "phone": ("oncall",), "pager": ("oncall", "night")}
    assert route(by_tag, tagged, {}, "warning") == [
        ("mail", None),
        ("phone", None),
        ("pager", None),
    ]


def test_delivered_once_and_retried_with_backoff(tmp_path: Path) -> None:
    clock = ManualClock()
    sender = ScriptedSender(SendResult(False, "down"), SendResult(False, "down"))
    d = deliverer(tmp_path, sender, clock)
    d.store.enqueue([msg("a")], clock())

    async def body() -> None:
        assert await d.deliver_due() == 0
        (row,) = d.store.pending()
        assert row.attempts == 1 and row.next_attempt_at == 1002  # 2 s
        assert await d.deliver_due() == 0  # not due yet
        clock.t = 1002
        await d.deliver_due()
        assert d.store.pending()[0].next_attempt_at == 1006  # 4 s
        clock.t = 1006
        assert await d.deliver_due() == 1
        assert d.store.pending() == []
        clock.t = 2000
        assert await d.deliver_due() == 0  # never sent twice

    run(body())
    assert len(sender.calls) == 3


def test_fallback_gets_a_copy_once(tmp_path: Path) -> None:
    clock = ManualClock()
    sender = ScriptedSender(SendResult(False, "down"), SendResult(True), SendResult(False, "down"))
    d = deliverer(tmp_path, sender, clock, a=0.0, b=0.0)
    d.store.enqueue([msg("a", fallback="b")], clock())

    async def body() -> None:
        await d.deliver_due()  # a fails: a copy for b is queued
        await d.deliver_due()  # b delivers
        clock.t = 1002
        await d.deliver_due()  # a fails again: no second copy
        clock.t = 1010
        await d.deliver_due()  # a delivers

    run(body())
    assert [c[0] for c in sender.calls] == ["json://a", "json://b", "json://a", "json://a"]
    assert d.store.pending() == []


def test_retry_after_and_rate_limits(tmp_path: Path) -> None:
    clock = ManualClock()
    sender = ScriptedSender(SendResult(False, "Too Many Requests: retry after 7, error=429", 7))
    d = deliverer(tmp_path, sender, clock, tg=3.0)
    d.store.enqueue([msg("tg", "one"), msg("tg", "two")], clock())

    async def body() -> None:
        await d.deliver_due()
        assert len(sender.calls) == 1
        rows = d.store.pending()
        assert rows[0].next_attempt_at == 1007  # retry_after beats the 2 s backoff
        assert rows[1].next_attempt_at == 1007  # the receiver is blocked as a whole
        clock.t = 1007
        await d.deliver_due()
        assert len(sender.calls) == 2  # then one per 3 s (its rate limit)
        clock.t = 1010
        await d.deliver_due()
        assert len(sender.calls) == 3

    run(body())
    assert d.store.pending() == []


def test_a_heartbeat_replaces_the_one_before_and_expires_undelivered(tmp_path: Path) -> None:
    clock = ManualClock()
    sender = ScriptedSender(SendResult(False, "down"), SendResult(True))
    d = deliverer(tmp_path, sender, clock)
    monitor = Receiver(DEADMAN, Secret("http://monitor/ping"), 0.0, "http", (), Transport.PING)
    d.receivers[DEADMAN] = monitor
    # routed messages never go to the dead-man's switch; the heartbeat goes only there
    assert [r.receiver for r in d.system_messages_for(digest(1, 0, [], clock()))] == ["a"]
    d.enqueue(heartbeat(DEADMAN, clock(), 60.0))
    (first,) = d.store.pending()
    assert first.receiver == DEADMAN and first.payload["expires_at"] == 1060.0

    async def body() -> None:
        await d.deliver_due()  # the monitor is down: retried in 2 s
        clock.t = 1059
        d.enqueue(heartbeat(DEADMAN, clock(), 60.0))  # the next one replaces it
        (second,) = d.store.history(0)
        assert second.id != first.id and second.attempts == 0
        await d.deliver_due()  # delivered
        clock.t = 1119
        d.enqueue(heartbeat(DEADMAN, clock(), 60.0))
        assert len(d.store.history(0)) == 1  # a delivered one is replaced too: one row
        clock.t = 1180  # not delivered within its interval: dropped, not sent late
        assert await d.deliver_due() == 0

    run(body())
    assert [c[0] for c in sender.calls] == ["http://monitor/ping"] * 2
    assert d.store.pending() == [] and d.store.history(0) == []


def test_the_ping_sender_against_a_real_monitor(http_receiver: HttpReceiver) -> None:
    sender = PingSender(timeout_s=5)
    url = Secret(f"http://127.0.0.1:{http_receiver.port}/ping/uuid-1234")
    assert run(sender.send(url, Outgoing("INFO alertd heartbeat", "body", "info"))).ok
    assert len(http_receiver.pings) == 1 and http_receiver.posts == []  # a GET, nothing posted
    http_receiver.fail_with, http_receiver.retry_after = 429, "7"
    limited = run(sender.send(url, Outgoing("t", "b", "info")))
    assert (limited.ok, limited.retry_after_s) == (False, 7.0) and "429" in limited.error
    http_receiver.retry_after = None
    assert run(sender.send(url, Outgoing("t", "b", "info"))).retry_after_s == 30.0  # 429 alone
    http_receiver.fail_with = 503
    down = run(sender.send(url, Outgoing("t", "b", "info")))
    assert (down.ok, down.retry_after_s) == (False, None) and "503" in down.error
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = Secret(f"http://127.0.0.1:{free.getsockname()[1]}/ping/uuid-1234")
    refused = run(sender.send(closed, Outgoing("t", "b", "info")))
    assert not refused.ok and "not reached" in refused.error
    assert all("uuid" not in r.error for r in (limited, down, refused))
    assert len(http_receiver.pings) == 1


def test_why_reads_apprise_log_lines() -> None:
    class Entry:
        def __init__(self, message: str) -> None:
            self.message = message

    class Service:
        def logs(self) -> list[Entry]:
            return [
                Entry(
                    "Failed to send Telegram notification to 1: Too Many Requests: "
                    "retry after 7, error=429."
                )
            ]

    result = why_refused([Service()])
    assert result.retry_after_s == 7 and not result.ok


def test_states_and_messages_commit_together_and_survive(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    state = AlertState(
        "r",
        Subject("main", "binanceusdm"),
        Phase.FIRING,
        5.0,
        Decimal("0.6"),
        notified=True,
        last_notified_at=5.0,
    )
    store.commit_evaluation([state], ["main"], [msg("a", "hello")], 5.0)
    store.close()
    again = Store(path)
    (loaded,) = again.load_states()
    assert loaded.subject == state.subject and loaded.notified
    assert [r.title for r in again.pending()] == ["hello"]
    # another account's commit leaves these alone
    again.commit_evaluation([], ["other"], [], 6.0)
    assert len(again.load_states()) == 1
    again.commit_evaluation([], ["main"], [], 7.0)
    assert again.load_states() == []


def test_expand_env_never_stores_the_secret_in_text() -> None:
    url = expand_env("tgram://${TG_TOKEN}/42", "receivers[0].url", {"TG_TOKEN": "123:abc"})
    assert url.reveal() == "tgram://123:abc/42" and "abc" not in repr(url)
    try:
        expand_env("tgram://${NOPE}/1", "receivers[0].url", {})
    except ConfigError as exc:
        assert exc.problems == ["receivers[0].url: environment variable NOPE is not set"]
    else:
        raise AssertionError("a missing variable must be an error")


def _config(tmp_path: Path, receivers: list[dict[str, str]]) -> Path:
    return write_config(tmp_path, receivers=receivers)


def test_test_notify_reaches_real_receivers(
    tmp_path: Path, smtp_receiver: SmtpReceiver, http_receiver: HttpReceiver
) -> None:
    smtp, http = smtp_receiver, http_receiver
    path = _config(
        tmp_path,
        [
            {"name": "mail", "url": smtp.url()},
            {"name": "hook", "url": http.url()},
            {"name": "dead", "url": "json://127.0.0.1:9/nothing"},
        ],
    )
    result = alertd("test-notify", "-c", str(path), "--receiver", "mail")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "mail: OK"
    assert smtp.subjects() == ["INFO alertd test message"]
    result = alertd("test-notify", "-c", str(path))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[:2] == ["mail: OK", "hook: OK"]
    assert lines[2].startswith("dead: FAILED")
    assert http.titles() == ["INFO alertd test message"]
    assert "1 of 3 receivers failed" in result.stderr
    # the dead-man's switch is the receiver "deadman": one ping, no message posted
    monitor = {"deadman_url": f"http://127.0.0.1:{http.port}/ping/check-1"}
    path = write_config(
        tmp_path, receivers=[{"name": "mail", "url": smtp.url()}], heartbeat=monitor
    )
    result = alertd("test-notify", "-c", str(path), "--receiver", "deadman")
    assert (result.returncode, result.stdout.strip()) == (0, "deadman: OK"), result.stderr
    assert len(http.pings) == 1 and len(http.posts) == 1


def test_silence_commands_and_the_engine_sees_them(tmp_path: Path) -> None:
    path = _config(tmp_path, [])
    added = alertd(
        "silence",
        "-c",
        str(path),
        "add",
        "--match",
        "account=hl",
        "--for",
        "2h",
        "--comment",
        "maintenance",
    )
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[1]
    listed = alertd("silence", "-c", str(path), "list")
    assert silence_id in listed.stdout and "active" in listed.stdout
    assert "maintenance" in listed.stdout

    store = Store(tmp_path / "state.sqlite")
    rule = Rule(
        "r", Condition("worst_ratio", Scope.ACCOUNT, above=Decimal("0.5")), Severity.WARNING
    )
    engine = AlertEngine([rule], silences=store.silences())
    import time

    assert engine.silenced(rule, Subject("hl", "hyperliquid"), time.time())
    store.close()

    expired = alertd("silence", "-c", str(path), "expire", silence_id)
    assert expired.returncode == 0
    again = alertd("silence", "-c", str(path), "expire", silence_id)
    assert again.returncode == 2 and "no active silence" in again.stderr
    bad = alertd("silence", "-c", str(path), "add", "--match", "nolabel", "--for", "1h")
    assert bad.returncode == 2 and "expected LABEL=VALUE" in bad.stderr


def test_the_worker_prepares_apprise_receivers_at_start_not_at_the_first_alert(
    tmp_path: Path,
) -> None:
    """apprise's import and a receiver's plugin cost about 170 ms at first use: the outbox
    worker has them built when it starts, so the first alert after start does not wait."""
    sender = ApriseSender()
    store = Store(tmp_path / "state.sqlite")
    url = Secret("json://127.0.0.1:9/hook")
    worker = Deliverer(
        store,
        {
            "hook": Receiver("hook", url, 0.0, "json"),
            # a URL apprise cannot use is left for sending to report (with its retry)
            "odd": Receiver("odd", Secret("nosuchscheme://x"), 0.0, "json"),
        },
        [],
        DeliverySettings(),
        {transport: sender for transport in Transport},
    )
    assert sender._instances == {}
    run(worker.prepare())
    assert set(sender._instances) == {url.reveal()}
