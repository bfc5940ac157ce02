"""The state file: what one account's commit may touch."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from alertd.daemon.store import Store
from alertd.rules.lifecycle import AlertState, Phase
from alertd.rules.model import Subject


def firing(account: str, symbol: str | None = None) -> AlertState:
    subject = Subject(account, "binanceusdm", symbol)
    return AlertState("r", subject, Phase.FIRING, 5.0, Decimal("0.6"), notified=True)


def test_an_accounts_commit_leaves_accounts_whose_names_match_its_like_pattern(
    tmp_path: Path,
) -> None:
    # '_' and '%' are LIKE wildcards and '_' is legal in account names: committing `main_`
    # must not delete `main1`'s states, nor `m%` those of `main1`
    store = Store(tmp_path / "state.sqlite")
    try:
        kept = [
            firing("main1"),
            firing("main1", "BTC/USDT:USDT"),
            firing("mainX", "ETH/USDT:USDT"),
        ]
        store.commit_evaluation(kept, ["main1", "mainX"], [], 1.0)
        store.commit_evaluation([], ["main_"], [], 2.0)
        store.commit_evaluation([], ["m%"], [], 3.0)
        store.commit_evaluation([], ["main"], [], 4.0)
        assert sorted(s.subject.key for s in store.load_states()) == sorted(
            s.subject.key for s in kept
        )
        # and the account's own states, account-wide and per position, are replaced
        store.commit_evaluation([], ["main1"], [], 5.0)
        assert [s.subject.account for s in store.load_states()] == ["mainX"]
    finally:
        store.close()


def old_state_file(tmp_path: Path, *statements: str) -> Path:
    """A state file an older alertd wrote: its tables and rows as ``statements`` make them."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    return path


def test_acknowledgements_in_a_state_file_from_before_them(tmp_path: Path) -> None:
    """A state file whose silences table predates acknowledgements gains the column; an
    acknowledgement ends when its alert resolves, a plain silence does not."""
    from alertd.rules.model import Silence

    store = Store(
        old_state_file(
            tmp_path,
            "CREATE TABLE silences (id TEXT PRIMARY KEY, matchers TEXT NOT NULL, "
            "created_at REAL NOT NULL, ends_at REAL NOT NULL, comment TEXT NOT NULL DEFAULT '')",
            "INSERT INTO silences VALUES ('old', '{\"account\": \"main\"}', 0, 9000, 'x')",
        )
    )
    key = "ratio-warning|main"
    store.add_silence(Silence("ack", {"alertname": "ratio-warning"}, 9000, 0, "ack", key))
    assert {s.id: s.until_resolved for s in store.silences()} == {"old": None, "ack": key}
    assert store.end_acknowledgements(key, 100.0) == 1
    ends = {s.id: s.ends_at for s in store.silences()}
    assert ends == {"old": 9000, "ack": 100.0}
    store.close()


def test_ip_bans_in_a_state_file_from_before_the_end_told_was_kept_apart(tmp_path: Path) -> None:
    """A state file whose ip_bans table kept one end (the one told) gains the column; its ban
    reads with that end as both, a new one keeps its real end and the end told apart."""
    from alertd.daemon.store import SavedBan

    store = Store(
        old_state_file(
            tmp_path,
            "CREATE TABLE ip_bans (host TEXT PRIMARY KEY, status INTEGER NOT NULL, "
            "until_wall REAL NOT NULL)",
            "INSERT INTO ip_bans VALUES ('binanceusdm', 418, 600.0)",
        )
    )
    assert store.ip_bans() == {"binanceusdm": SavedBan(418, 600.0, 600.0)}
    store.save_ip_bans({"bybit": SavedBan(403, 700.0, 660.0)})
    assert store.ip_bans() == {"bybit": SavedBan(403, 700.0, 660.0)}
    # and, from before a ban's end named what aged, the column for it
    store.save_ip_bans({"api.binance.com": SavedBan(418, 700.0, 700.0, "the rates")})
    assert store.ip_bans() == {"api.binance.com": SavedBan(418, 700.0, 700.0, "the rates")}
    store.close()
