"""End to end: the real ``alertd run`` process, the local exchange, a real SMTP server and a
real HTTP receiver. A price falls, recovers; a receiver goes down; the daemon is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .fake_exchange.binance import FakeBinanceUSDM
from .feed_harness import server_in_thread
from .receivers import HttpReceiver, SmtpReceiver

ROOT = Path(__file__).resolve().parent.parent
BTC = "BTC/USDT:USDT"

# A 1 BTC long at 60,000 with 2,000 USDT: the ratio is 0.12 at 60,000, about 0.67 at 58,350
# and about 0.93 at 58,250 (maintenance margin 0.4% of notional, no deduction in tier 1).
RULES = [
    {
        "name": "ratio-warning",
        "metric": "worst_ratio",
        "above": 0.5,
        "clear_below": 0.45,
        "severity": "warning",
    },
    {
        "name": "ratio-critical",
        "metric": "worst_ratio",
        "above": 0.8,
        "clear_below": 0.75,
        "severity": "critical",
    },
]


def wait_for(check: Callable[[], Any], timeout_s: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


class Daemon:
    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.args: list[str] = []  # more options for `alertd run`: -vv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "alertd", "run", "-c", str(self.config), *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            self.proc = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    fake = FakeBinanceUSDM(mark_interval_s=0.2)
    smtp = SmtpReceiver()
    http = HttpReceiver()
    smtp.start()
    http.start()
    with server_in_thread(fake):
        fake.add_account("key-e2e", "secret-e2e", wallet_balance="2000")
        fake.set_mark(BTC, "60000")
        fake.open_position("key-e2e", BTC, "long", "1", "60000")
        config = {
            "version": 1,
            "state_path": str(tmp_path / "state.sqlite"),
            "accounts": [
                {
                    "name": "main",
                    "exchange": "binanceusdm",
                    "api_key_env": "E2E_KEY",
                    "secret_env": "E2E_SECRET",
                    "urls": fake.ccxt_urls(),
                    "options": fake.ccxt_options,
                }
            ],
            "feeds": {
                "stale_after_s": 3,
                "reconcile_interval_s": 5,
                "backoff": {"initial_s": 0.1, "max_s": 1},
            },
            "rules": RULES,
            "receivers": [
                {"name": "mail", "url": smtp.url()},
                {"name": "hook", "url": "${E2E_HOOK_URL}"},
            ],
            "delivery": {"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
        }
        path = tmp_path / "config.yaml"
        path.write_text(json.dumps(config))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "E2E_KEY": "key-e2e",
            "E2E_SECRET": "secret-e2e",
            "E2E_HOOK_URL": http.url(),
        }
        daemon = Daemon(path, env, tmp_path / "alertd.log")
        try:
            yield {
                "fake": fake,
                "smtp": smtp,
                "http": http,
                "daemon": daemon,
                "path": path,
                "config": config,
            }
        finally:
            if daemon.proc is not None:
                daemon.stop(signal.SIGKILL)
            http.stop()
            smtp.stop()


def started(daemon: Daemon) -> None:
    daemon.start()
    wait_for(lambda: "bootstrapped" in daemon.text(), what="bootstrap\n" + daemon.text())


def test_price_falls_and_recovers_each_message_once(world: dict[str, Any]) -> None:
    fake, smtp, http, daemon = world["fake"], world["smtp"], world["http"], world["daemon"]
    started(daemon)
    time.sleep(1.5)
    assert http.posts == [] and smtp.mails == []  # healthy: silence

    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) >= 1 and len(smtp.mails) >= 1, what="warning")
    assert http.titles()[0].startswith("WARNING main: worst ratio 66.")
    assert smtp.subjects()[0] == http.titles()[0]
    body = http.posts[0]["message"]
    assert "BTC/USDT:USDT long 1 @ 58,350.00" in body and "→ add" in body

    fake.set_mark(BTC, "58250")
    wait_for(lambda: len(http.posts) >= 2 and len(smtp.mails) >= 2, what="critical")
    assert http.titles()[1].startswith("CRITICAL main: worst ratio 9")

    fake.set_mark(BTC, "60000")
    wait_for(lambda: len(http.posts) >= 4 and len(smtp.mails) >= 4, what="resolved")
    time.sleep(1.5)  # nothing more may arrive
    titles = http.titles()
    assert len(titles) == 4 and len(smtp.mails) == 4, titles
    assert sorted(t.split(":")[0] for t in titles[2:]) == ["RESOLVED main", "RESOLVED main"]
    assert sorted(smtp.subjects()) == sorted(titles)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_a_silent_feed_raises_a_stale_alert(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    started(daemon)
    fake.marks_paused = True  # the exchange stops pushing marks, the connection stays up
    wait_for(
        lambda: any("feed stale s" in t for t in http.titles()), what="stale alert", timeout_s=30
    )
    assert daemon.stop() == 0


def test_a_receiver_down_gets_the_alert_when_it_returns_once(world: dict[str, Any]) -> None:
    fake, smtp, http, daemon = world["fake"], world["smtp"], world["http"], world["daemon"]
    started(daemon)
    smtp.stop()
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) == 1, what="warning over HTTP")
    wait_for(
        lambda: "delivery #" in daemon.text() and "failed" in daemon.text(),
        what="a failed mail attempt",
    )
    smtp.start()  # same port
    wait_for(lambda: len(smtp.mails) == 1, what="mail after the server returned")
    time.sleep(2)
    assert len(smtp.mails) == 1 and len(http.posts) == 1
    assert daemon.stop() == 0


def test_killed_with_an_undelivered_alert_delivers_it_after_restart(world: dict[str, Any]) -> None:
    fake, smtp, http, daemon = world["fake"], world["smtp"], world["http"], world["daemon"]
    http.fail_with = 503
    started(daemon)
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(smtp.mails) == 1, what="warning by mail")
    wait_for(
        lambda: "delivery #" in daemon.text() and "to hook failed" in daemon.text(),
        what="a refused HTTP delivery",
    )
    daemon.stop(signal.SIGKILL)
    http.fail_with = None
    started(daemon)
    wait_for(lambda: len(http.posts) == 1, what="the queued warning after restart")
    time.sleep(2)
    # delivered once, and the restart did not fire the same alert again
    assert len(http.posts) == 1 and len(smtp.mails) == 1
    assert http.titles()[0].startswith("WARNING main: worst ratio")
    assert daemon.stop() == 0


def test_bad_config_exits_2_listing_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "accounts": [{"name": "x", "exchange": "bianance"}],
                "rules": [{"name": "r", "metric": "worst_ratoi", "above": 0.5}],
                "receivers": [{"name": "tg", "url": "tgram://${TOKEN}/1"}],
                "routes": [{"receivers": ["nobody"]}],
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "alertd", "run", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = result.stderr.strip().splitlines()
    assert (
        "alertd: accounts[0].exchange: unknown exchange 'bianance' (did you mean binanceusdm?)"
        in errors
    )
    assert any("rules[0]" in e and "did you mean worst_ratio?" in e for e in errors)
    assert "alertd: routes[0].receivers[0]: no receiver named 'nobody'" in errors
    assert "Traceback" not in result.stderr


def test_sighup_reloads_rules_keeps_alert_state_and_refuses_a_bad_file(
    world: dict[str, Any],
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    started(daemon)
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) == 1, what="warning")
    assert daemon.proc is not None

    path.write_text("version: 1\naccounts: [")  # broken
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: keeping the running config" in daemon.text(), what="refusal")

    extra = {"name": "ratio-new", "metric": "worst_ratio", "above": 0.6, "severity": "critical"}
    path.write_text(json.dumps({**config, "rules": [*RULES, extra]}))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in daemon.text(), what="reload")
    wait_for(lambda: len(http.posts) == 2, what="the new rule's alert")
    time.sleep(1.5)
    titles = http.titles()
    # the new rule fires; the warning that was already firing is not sent again
    assert len(titles) == 2 and titles[1].startswith("CRITICAL main: worst ratio"), titles
    assert daemon.stop() == 0


def test_secrets_stay_out_of_logs_and_the_state_file(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    started(daemon)
    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) == 1, what="warning")
    assert daemon.stop() == 0
    state = Path(world["config"]["state_path"]).read_bytes()
    for secret in ("secret-e2e", "key-e2e"):
        assert secret not in daemon.text()
        assert secret.encode() not in state


def test_deadmans_switch_is_pinged_only_while_healthy(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    url = f"http://127.0.0.1:{http.port}/ping"
    path.write_text(
        json.dumps({**config, "heartbeat": {"deadman_url": url, "deadman_interval": 0.3}})
    )
    started(daemon)
    wait_for(lambda: len(http.pings) >= 3, what="pings while healthy")
    fake.marks_paused = True  # the mark goes stale: alertd is no longer healthy
    wait_for(lambda: any("feed stale" in t for t in http.titles()), what="stale", timeout_s=30)
    time.sleep(1.0)
    count = len(http.pings)
    time.sleep(1.5)
    assert len(http.pings) == count  # silence at the monitor: it will raise the alarm
    assert daemon.stop() == 0


def test_the_daemon_and_replay_agree_on_the_same_prices(
    world: dict[str, Any], tmp_path: Path
) -> None:
    import re

    fake, http, daemon, path = world["fake"], world["http"], world["daemon"], world["path"]
    marks = ["60000", "58350", "58250", "58350", "60000"]
    started(daemon)
    for i, mark in enumerate(marks[1:], start=1):
        fake.set_mark(BTC, mark)
        wait_for(lambda i=i: len(http.posts) >= i, what=f"message {i}")  # type: ignore[misc]
    assert daemon.stop() == 0

    def live(post: dict[str, Any]) -> tuple[str, str]:
        rule = re.search(r"\((ratio-[a-z]+)\)", post["message"])
        assert rule is not None, post
        return rule.group(1), "resolved" if post["title"].startswith("RESOLVED") else "firing"

    prices = tmp_path / "prices.csv"
    start = 1_700_000_040_000
    prices.write_text(
        "timestamp,price\n" + "".join(f"{start + i * 60_000},{m}\n" for i, m in enumerate(marks))
    )
    # the same account: 1 BTC long at 60,000 with 2,000 USDT of cross margin (30x)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertd",
            "replay",
            str(prices),
            "--config",
            str(path),
            "--position",
            "BTC/USDT:USDT long 1 @ 60000 x30 cross",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=daemon.env,
    )
    assert result.returncode == 0, result.stderr
    replayed = [(a["rule"], a["kind"]) for a in json.loads(result.stdout)["alerts"]]
    assert (
        [live(p) for p in http.posts]
        == replayed
        == [
            ("ratio-warning", "firing"),
            ("ratio-critical", "firing"),
            ("ratio-critical", "resolved"),
            ("ratio-warning", "resolved"),
        ]
    )
