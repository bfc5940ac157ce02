"""bench/feeds.py's reading of alertd's log: when every account streams."""

from __future__ import annotations

from bench.feeds import all_live

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
