"""End to end: the real ``alertd run`` process, the local exchange, a real SMTP server and a
real HTTP receiver. A price falls, recovers; a receiver goes down; the daemon is killed."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from .support.fixtures import BTC, RULES, started
from .support.poll import wait_for
from .support.process import alertd

# A bound for one step of an end-to-end test (a price move to a delivered message): generous,
# because on a loaded machine the daemon's first send also imports apprise. Only the wait
# grows; what is asserted stays.
STEP_S = 60.0


def test_price_falls_and_recovers_each_message_once(world: dict[str, Any]) -> None:
    fake, smtp, http, daemon = world["fake"], world["smtp"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    # This test is about the ratio alerts, not staleness: with the world's 3 s a starved fake
    # (2 shared cores) raised a real feed-stale alert and reconnect mid-test. The production
    # default keeps staleness out of it; test_a_silent_feed_raises_a_stale_alert covers it.
    path.write_text(json.dumps({**config, "feeds": {**config["feeds"], "stale_after_s": 30}}))
    started(daemon)
    time.sleep(1.5)
    assert http.posts == [] and smtp.mails == []  # healthy: silence

    fake.set_mark(BTC, "58350")
    wait_for(lambda: len(http.posts) >= 1 and len(smtp.mails) >= 1, STEP_S, "warning")
    assert http.titles()[0].startswith("WARNING main: worst ratio 66.")
    assert smtp.subjects()[0] == http.titles()[0]
    body = http.posts[0]["message"]
    assert "BTC/USDT:USDT long 1 @ 58,350.00" in body and "→ add" in body

    fake.set_mark(BTC, "58250")
    wait_for(lambda: len(http.posts) >= 2 and len(smtp.mails) >= 2, STEP_S, "critical")
    assert http.titles()[1].startswith("CRITICAL main: worst ratio 9")

    fake.set_mark(BTC, "60000")
    wait_for(lambda: len(http.posts) >= 4 and len(smtp.mails) >= 4, STEP_S, "resolved")
    time.sleep(1.5)  # nothing more may arrive
    # stopping drains the outbox: a message queued twice, however late, is delivered by now
    assert daemon.stop() == 0
    titles = http.titles()
    assert len(titles) == 4 and len(smtp.mails) == 4, titles
    assert sorted(t.split(":")[0] for t in titles[2:]) == ["RESOLVED main", "RESOLVED main"]
    assert sorted(smtp.subjects()) == sorted(titles)
    # and the state file agrees: four messages to each receiver, each delivered once
    with contextlib.closing(sqlite3.connect(config["state_path"])) as db:
        rows = db.execute(
            "SELECT receiver, COUNT(*), SUM(delivered_at IS NOT NULL) FROM outbox "
            "GROUP BY receiver ORDER BY receiver"
        ).fetchall()
    assert rows == [("hook", 4, 4), ("mail", 4, 4)], rows
    assert "Traceback" not in daemon.text()


def test_a_silent_feed_raises_a_stale_alert(world: dict[str, Any]) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    started(daemon)
    fake.marks_paused = True  # the exchange stops pushing marks, the connection stays up
    wait_for(
        lambda: any("feed stale for" in t for t in http.titles()), what="stale alert", timeout_s=30
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
    result = alertd("run", "-c", str(path))
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
    # each heartbeat went through the outbox, replacing the one before: one row, delivered
    with contextlib.closing(sqlite3.connect(config["state_path"])) as db:
        rows = db.execute("SELECT delivered_at FROM outbox WHERE receiver = 'deadman'").fetchall()
    assert len(rows) == 1, rows
    # a silence on the heartbeat stops it like any message (the monitor then raises the alarm)
    silence = alertd(
        "silence", "add", "-c", str(path), "--match", "alertname=heartbeat", "--for", "1h"
    )
    assert silence.returncode == 0 and silence.stderr == "", silence.stderr
    silenced_id = silence.stdout.split()[1]
    time.sleep(1.5)  # the daemon reads silences once a second
    count = len(http.pings)
    time.sleep(1.5)
    assert len(http.pings) == count
    assert alertd("silence", "expire", "-c", str(path), silenced_id).returncode == 0
    wait_for(lambda: len(http.pings) > count, what="pings again once the silence expired")
    fake.marks_paused = True  # the mark goes stale: alertd is no longer healthy
    wait_for(lambda: any("feed stale" in t for t in http.titles()), what="stale", timeout_s=30)
    time.sleep(1.0)
    count = len(http.pings)
    time.sleep(1.5)
    assert len(http.pings) == count  # silence at the monitor: it will raise the alarm
    # the user's receivers never got a heartbeat
    assert not any("heartbeat" in t for t in http.titles())
    assert daemon.stop() == 0


def test_the_daemon_and_replay_agree_on_the_same_prices(
    world: dict[str, Any], tmp_path: Path
) -> None:
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
    result = alertd(
        "replay",
        str(prices),
        "--config",
        str(path),
        "--position",
        "BTC/USDT:USDT long 1 @ 60000 x30 cross",
        "--json",
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


def zigzag_candles(count: int, low: str, high: str) -> list[tuple[int, str, str, str, str]]:
    """``count`` 1-minute candles up to the running one, each swinging between ``low`` and
    ``high``, turn by turn."""
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    candles = []
    for k in range(count):
        o, c = (low, high) if k % 2 else (high, low)
        candles.append((now_ms - (count - 1 - k) * 60_000, o, high, low, c))
    return candles


def test_a_predictive_rule_fires_from_the_seeded_history(world: dict[str, Any]) -> None:
    # the real process: at startup the mark hub seeds BTC's window from the exchange's
    # mark-price candles, so the probability means something before a minute of marks
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    # an hour of 1-minute candles swinging 0.5% a minute around 60,000: about 3.9% an hour
    fake.set_klines(BTC, zigzag_candles(90, "60000", "60300"))
    likely = {
        "name": "liquidation-likely",
        "metric": "liquidation_probability",
        "scope": "position",
        "above": 0.2,
        "horizon": "1h",
        "severity": "warning",
    }
    path.write_text(json.dumps({**config, "rules": [likely]}))
    started(daemon)
    wait_for(lambda: len(http.posts) >= 1, what="the probability alert", timeout_s=30)
    title = http.titles()[0]
    # liquidation near 58,233 from 60,000: 3.0% away, about 0.77 hourly deviations: ~44%
    assert re.fullmatch(
        r"WARNING main BTC/USDT:USDT long: liquidation probability (\d+\.\d)%", title
    ), title
    value = float(title.rsplit(" ", 1)[1].rstrip("%"))
    assert 40 < value < 48, title
    assert "/fapi/v1/markPriceKlines" in {p for _, p in fake.requests}
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()


def test_the_adl_warning_fires_in_a_fast_market_and_resolves(world: dict[str, Any]) -> None:
    # the real process on the local Binance: 1 BTC long in profit, Binance's ADL quantile at 4
    # (the top of its 0-4 scale), the mark swinging ~3.9% an hour: the built-in "adl-front"
    # warning; the quantile back to 1 at the next reconcile: resolved
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    fake.set_klines(BTC, zigzag_candles(30, "61000", "61300"))
    fake.set_mark(BTC, "61000")  # 1,000 USDT of profit on the long
    fake.set_adl(BTC, 4)
    # only the built-ins: the ratio rules and the 20x leverage warning are not this test's
    builtin = {"leverage": False, "adl_window": "15m"}
    path.write_text(json.dumps({**config, "rules": [], "builtin_rules": builtin}))
    started(daemon)
    wait_for(lambda: len(http.posts) >= 1, STEP_S, "the ADL warning")
    title = http.titles()[0]
    assert (
        title == "WARNING main BTC/USDT:USDT long: first in the ADL queue (100.0%) in a fast market"
    )
    body = http.posts[0]["message"]
    assert "at the front of the ADL queue" in body
    assert "→ take some profit or lower its leverage to move back in the queue" in body
    fake.set_adl(BTC, 1)  # Binance moved it back in the queue: read at the next reconcile
    wait_for(lambda: len(http.posts) >= 2, STEP_S, "the ADL warning resolved")
    assert http.titles()[1] == "RESOLVED main BTC/USDT:USDT long: out of the ADL danger zone"
    time.sleep(1.0)
    assert daemon.stop() == 0
    assert len(http.posts) == 2, http.titles()
    assert "Traceback" not in daemon.text()


def test_a_sharp_insurance_fund_drop_warns_and_recovers(world: dict[str, Any]) -> None:
    # the real process polling the local Binance's public insurance fund endpoint (on: it is
    # off by default) every half second: the fund behind BTC falls 30%, then refills
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    fake.set_insurance_fund(BTC, "1000000")
    builtin = {
        "leverage": False,
        "insurance_fund": True,
        "insurance_fund_interval": 0.5,
        "insurance_fund_window": "1h",
        "insurance_fund_drop_above": 0.2,
    }
    path.write_text(json.dumps({**config, "rules": [], "builtin_rules": builtin}))
    started(daemon)

    def polls() -> int:
        return sum(p == "/fapi/v1/insuranceBalance" for _, p in fake.requests)

    wait_for(lambda: polls() >= 2, STEP_S, "two insurance fund reads")
    assert http.posts == []  # a steady fund: nothing to say
    fake.set_insurance_fund(BTC, "700000")
    wait_for(lambda: len(http.posts) >= 1, STEP_S, "the insurance fund warning")
    assert http.titles()[0] == "WARNING main BTC/USDT:USDT long: insurance fund down 30.0%"
    assert "deleverages profitable positions" in http.posts[0]["message"]
    fake.set_insurance_fund(BTC, "1000000")
    wait_for(lambda: len(http.posts) >= 2, STEP_S, "the fund refilled")
    assert http.titles()[1] == "RESOLVED main BTC/USDT:USDT long: insurance fund recovered"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()
