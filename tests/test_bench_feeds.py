"""bench/feeds.py's reading of alertd's log: when every account streams."""

from __future__ import annotations

import time

from bench.feeds import all_live, blindness, window_rates

# alertd.daemon.service's health line, as measure12's Bybit run 2 logged it at 939 s: 19
# accounts whose login was refused never streamed (counted stale, not "not live")
BLIND = (
    "2026-12-07 12:15:00 INFO alertd.daemon.service: health: 1000 accounts, 981 fresh, "
    "19 stale (acct1, acct2, acct3, acct4, acct5), 0 not live, 0 stopped, 812 positions, "
    "1 engine update, worst ratio 12% (acct7), 19 alerts firing, 0 messages queued"
)
LIVE = BLIND.replace(
    "981 fresh, 19 stale (acct1, acct2, acct3, acct4, acct5)", "1000 fresh, 0 stale"
)
WAITING = LIVE.replace("1000 fresh", "400 fresh").replace("0 not live", "600 not live")


def test_all_live_needs_no_account_stale_nor_not_live() -> None:
    """ "All live" is a health line with no account not live and none stale (before: 0 not
    live alone, so measure12 reported 19 blind accounts all live, rv measure12 probe)."""
    assert not all_live(BLIND)
    assert not all_live(WAITING)
    assert all_live(LIVE)
    assert all_live(f"{WAITING}\n{LIVE}") and not all_live(f"{LIVE}\n{BLIND}")
    assert not all_live("")
    one = LIVE.replace("1000 accounts, 1000 fresh", "1 account, 1 fresh")
    assert all_live(one)


def test_the_window_s_rates_come_from_the_health_lines_within_it() -> None:
    """Engine updates and evaluations a second over the window, from the running counts of
    the health lines logged in it (firing14: a firing daemon's CPU is its evaluations, and how
    many it does a second falls under load, when ticks queue and one evaluation takes several:
    the window's CPU alone compared runs with different work)."""

    def line(at: str, updates: str, evaluations: str) -> str:
        return LIVE.replace("2026-12-07 12:15:00", f"2026-12-07 {at},000").replace(
            "1 engine update,", f"{updates} engine updates, {evaluations} evaluations,"
        )

    log = "\n".join(
        [
            line("12:14:00", "100", "50"),  # before the window
            line("12:15:00", "1,000", "500"),
            line("12:16:00", "121,000", "60,500"),
            line("12:17:00", "241,000", "120,500"),
            line("12:18:00", "999,999", "999,999"),  # after it
        ]
    )

    def wall(at: str) -> float:
        return time.mktime(time.strptime(f"2026-12-07 {at}", "%Y-%m-%d %H:%M:%S"))

    rates = window_rates(log, wall("12:14:30"), wall("12:17:30"))
    assert rates == "2000 engine updates/s, 1000 evaluations/s (health lines 120 s apart)"
    assert window_rates(log, wall("12:14:30"), wall("12:15:30")) is None  # one line in it


def test_blindness_counts_refused_logins_and_feed_down_left_firing_by_account() -> None:
    """The accounts whose private login was refused as expired (Bybit's "Params Error", OKX's
    60006, as alertd logs the streams they failed) and each account's ``feed-down`` fired,
    resolved and left firing at the end (bench17: blind16's fix measured at 1,000 accounts;
    lines as alertd logged them in a run of the local Bybit before that fix)."""
    stamp = "2026-12-08 03:03:35,223 WARNING alertd.feeds.feed: "
    fired = "2026-12-08 03:04:33,071 INFO alertd.daemon.evaluation: firing feed-down: "
    log = "\n".join(
        [
            f"{stamp}acct0: positions stream error: ExchangeError: bybit Params Error",
            f"{stamp}acct0: positions stream lost (ExchangeError: bybit Params Error); "
            "reconnecting in 1.2s",
            f"{stamp}acct0: balance stream error: ExchangeError: bybit Params Error",
            f"{stamp}acct7: positions stream lost (ExchangeError: okx "
            '{"event":"error","code":"60006","msg":"Timestamp request expired"}); '
            "reconnecting in 1.0s",
            f"{stamp}acct9: positions stream lost (NetworkError: closed); reconnecting in 1.0s",
            f"{fired}CRITICAL acct0: feed down for 61s",
            f"{fired}CRITICAL acct12: feed down for 61s",
            fired.replace("firing", "resolved") + "CRITICAL acct12: feed down for 61s",
            fired.replace("firing", "repeat") + "CRITICAL acct0: feed down for 3600s",
        ]
    )
    assert blindness(log) == [
        "logins       : 2 accounts had a private login refused as expired",
        "feed-down    : 2 fired (2 accounts), 1 resolved, 1 firing at the end: acct0",
    ]
    assert blindness("") == [
        "logins       : 0 accounts had a private login refused as expired",
        "feed-down    : 0 fired (0 accounts), 0 resolved, 0 firing at the end",
    ]
