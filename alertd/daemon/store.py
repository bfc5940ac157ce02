"""alertd's state in one SQLite file: alert states, silences, the outbox, account snapshots and
modes.

A notification is written to the outbox in the same transaction as the alert state that
produced it, so after a crash there is never an alert marked "notified" whose message is
missing, nor a message for a state that was never saved. The outbox row is marked delivered
once the receiver accepted it; undelivered rows are retried after a restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from alertd.redact import redact
from alertd.rules.lifecycle import AlertState
from alertd.rules.model import Silence

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_states (
    rule TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (rule, subject)
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, created_at REAL NOT NULL,
    ends_at REAL NOT NULL, comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    receiver TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    delivered_at REAL,
    fallback_of INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_attempt_at);
CREATE TABLE IF NOT EXISTS snapshots (
    account TEXT PRIMARY KEY, updated_at REAL NOT NULL, snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS modes (
    account TEXT PRIMARY KEY, updated_at REAL NOT NULL, mode TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ip_bans (
    host TEXT PRIMARY KEY, status INTEGER NOT NULL, until_wall REAL NOT NULL, told_wall REAL,
    holds TEXT
);
"""
SCHEMA_VERSION = "1"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message in the durable outbox: what to send where, and how delivery has gone."""

    id: int
    created_at: float
    receiver: str
    severity: str
    title: str
    body: str
    payload: Mapping[str, Any]
    attempts: int
    next_attempt_at: float
    last_error: str | None
    delivered_at: float | None
    fallback_of: int | None


@dataclass(frozen=True, slots=True)
class NewMessage:
    receiver: str
    severity: str
    title: str
    body: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SavedSnapshot:
    updated_at: float
    snapshot: str  # JSON, as alertd snapshot writes it


class SavedBan(NamedTuple):
    """An exchange's ban of this host's IP: the HTTP status it was answered with, its real end
    (epoch seconds: what a restart waits for) and the end told to the operator (a later
    refusal moving the end by less than the minute told is not told again); ``holds``: where
    only one shared read of alertd's goes to the host, what ages (its end, told after a
    restart, names it)."""

    status: int
    until_wall: float
    told_wall: float
    holds: str | None = None


@dataclass(frozen=True, slots=True)
class SavedMode:
    """An account's mode as the exchange last reported it, and what alertd did with it."""

    updated_at: float
    mode: str  # the mode's label ("multi-assets (multiAssetsMargin true)")
    coverage: str  # Coverage's value ("computed by alertd", "exchange's own ratio", ...)
    limits: str | None  # what alertd does not compute in it; None where it computes all
    exchange_ratio: Decimal | None  # the exchange's own account ratio, where it reports one


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a written alert survives a power cut
        self.db.executescript(SCHEMA)
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(silences)")}
        if "until_resolved" not in columns:  # a state file from before acknowledgements
            self.db.execute("ALTER TABLE silences ADD COLUMN until_resolved TEXT")
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(ip_bans)")}
        if "told_wall" not in columns:  # a state file from before the real end was kept apart
            self.db.execute("ALTER TABLE ip_bans ADD COLUMN told_wall REAL")
        if "holds" not in columns:  # a state file from before a ban's end named what aged
            self.db.execute("ALTER TABLE ip_bans ADD COLUMN holds TEXT")
        self.db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )
        # bumped by every write to the outbox from this process: readers re-read it only then
        self.outbox_changes = 0

    def close(self) -> None:
        self.db.close()

    # --- alert states and their notifications, together ----------------------------------

    def load_states(self) -> list[AlertState]:
        rows = self.db.execute("SELECT state FROM alert_states").fetchall()
        return [AlertState.from_json(json.loads(r["state"])) for r in rows]

    def commit_evaluation(
        self,
        states: Iterable[AlertState],
        accounts: Iterable[str],
        messages: Sequence[NewMessage],
        now: float,
    ) -> list[int]:
        """Replace the states of ``accounts`` and queue ``messages``, atomically."""
        accounts = list(accounts)
        ids = []
        with self._transaction():
            for account in accounts:
                # a prefix compare, not LIKE: '_' (legal in names) and '%' are LIKE wildcards
                prefix = account + "/"
                self.db.execute(
                    "DELETE FROM alert_states WHERE subject = ? OR substr(subject, 1, ?) = ?",
                    (account, len(prefix), prefix),
                )
            for state in states:
                if state.subject.account in accounts:
                    self.db.execute(
                        "INSERT OR REPLACE INTO alert_states (rule, subject, state) VALUES (?,?,?)",
                        (state.rule, state.subject.key, json.dumps(state.to_json())),
                    )
            for m in messages:
                ids.append(self._insert(m, now))
        return ids

    def _insert(self, m: NewMessage, now: float, fallback_of: int | None = None) -> int:
        self.outbox_changes += 1
        cur = self.db.execute(
            "INSERT INTO outbox (created_at, receiver, severity, title, body, payload, "
            "next_attempt_at, fallback_of) VALUES (?,?,?,?,?,?,?,?)",
            (now, m.receiver, m.severity, m.title, m.body, json.dumps(m.payload), now, fallback_of),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def enqueue(
        self,
        messages: Sequence[NewMessage],
        now: float,
        fallback_of: int | None = None,
        *,
        replace_kind: str | None = None,
    ) -> list[int]:
        """Queue ``messages``; with ``replace_kind``, first remove every earlier row of that
        payload kind to the same receivers (delivered or not: the heartbeat keeps one row)."""
        with self._transaction():
            if replace_kind is not None:
                for receiver in {m.receiver for m in messages}:
                    self.db.execute(
                        "DELETE FROM outbox WHERE receiver = ? "
                        "AND json_extract(payload, '$.kind') = ?",
                        (receiver, replace_kind),
                    )
            return [self._insert(m, now, fallback_of) for m in messages]

    def discard(self, row_id: int) -> None:
        """Remove an undelivered row that is no longer worth sending (an expired heartbeat)."""
        self.outbox_changes += 1
        self.db.execute("DELETE FROM outbox WHERE id = ? AND delivered_at IS NULL", (row_id,))

    # --- the outbox ---------------------------------------------------------------------

    def due(self, now: float, limit: int = 100) -> list[OutboxRow]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def pending(self) -> list[OutboxRow]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY id"
        ).fetchall()
        return [_row(r) for r in rows]

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) AS t FROM outbox WHERE delivered_at IS NULL"
        ).fetchone()
        return None if row["t"] is None else float(row["t"])

    def mark_delivered(self, row_id: int, now: float) -> None:
        self.outbox_changes += 1
        self.db.execute(
            "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
            "WHERE id = ? AND delivered_at IS NULL",
            (now, row_id),
        )

    def mark_failed(self, row_id: int, error: str, next_attempt_at: float) -> None:
        self.outbox_changes += 1
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
            "WHERE id = ?",
            (redact(error)[:500], next_attempt_at, row_id),
        )

    def has_fallback(self, row_id: int) -> bool:
        row = self.db.execute("SELECT 1 FROM outbox WHERE fallback_of = ?", (row_id,)).fetchone()
        return row is not None

    def delivered_to(self, receiver: str) -> list[OutboxRow]:
        """Every message delivered to ``receiver``, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE receiver = ? AND delivered_at IS NOT NULL ORDER BY id",
            (receiver,),
        ).fetchall()
        return [_row(r) for r in rows]

    def history(self, since: float) -> list[OutboxRow]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE created_at >= ? ORDER BY id", (since,)
        ).fetchall()
        return [_row(r) for r in rows]

    # --- silences -----------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO silences "
            "(id, matchers, created_at, ends_at, comment, until_resolved) VALUES (?,?,?,?,?,?)",
            (
                silence.id,
                json.dumps(dict(silence.matchers)),
                silence.created_at,
                silence.ends_at,
                silence.comment,
                silence.until_resolved,
            ),
        )

    def silences(self) -> list[Silence]:
        rows = self.db.execute("SELECT * FROM silences ORDER BY created_at").fetchall()
        return [
            Silence(
                r["id"],
                json.loads(r["matchers"]),
                r["ends_at"],
                r["created_at"],
                r["comment"],
                r["until_resolved"],
            )
            for r in rows
        ]

    def end_acknowledgements(self, alert_key: str, now: float) -> int:
        """The alert ``alert_key`` resolved: the silences that were to last until then end."""
        cur = self.db.execute(
            "UPDATE silences SET ends_at = ? WHERE until_resolved = ? AND ends_at > ?",
            (now, alert_key, now),
        )
        return cur.rowcount

    def expire_silence(self, silence_id: str, now: float) -> bool:
        cur = self.db.execute(
            "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
            (now, silence_id, now),
        )
        return cur.rowcount > 0

    # --- snapshots ----------------------------------------------------------------------

    def snapshots(self) -> dict[str, SavedSnapshot]:
        rows = self.db.execute("SELECT account, updated_at, snapshot FROM snapshots").fetchall()
        return {r["account"]: SavedSnapshot(r["updated_at"], r["snapshot"]) for r in rows}

    def save_snapshot(self, account: str, snapshot: Mapping[str, Any], now: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO snapshots (account, updated_at, snapshot) VALUES (?,?,?)",
            (account, now, json.dumps(snapshot)),
        )

    def modes(self) -> dict[str, SavedMode]:
        rows = self.db.execute("SELECT account, updated_at, mode FROM modes").fetchall()
        found = {}
        for r in rows:
            saved = json.loads(r["mode"])
            ratio = saved.get("exchange_ratio")
            found[r["account"]] = SavedMode(
                r["updated_at"],
                saved["mode"],
                saved["coverage"],
                saved.get("limits"),
                None if ratio is None else Decimal(ratio),
            )
        return found

    def save_mode(self, account: str, mode: SavedMode) -> None:
        saved = {
            "mode": mode.mode,
            "coverage": mode.coverage,
            "limits": mode.limits,
            "exchange_ratio": None if mode.exchange_ratio is None else str(mode.exchange_ratio),
        }
        self.db.execute(
            "INSERT OR REPLACE INTO modes (account, updated_at, mode) VALUES (?,?,?)",
            (account, mode.updated_at, json.dumps(saved)),
        )

    # --- IP bans ------------------------------------------------------------------------

    def ip_bans(self) -> dict[str, SavedBan]:
        """The bans told and not yet told over, by exchange host (what a restart restores)."""
        rows = self.db.execute("SELECT host, status, until_wall, told_wall, holds FROM ip_bans")
        # a row from before told_wall kept the end told only: both
        return {
            r["host"]: SavedBan(
                r["status"], r["until_wall"], r["told_wall"] or r["until_wall"], r["holds"]
            )
            for r in rows
        }

    def save_ip_bans(self, bans: Mapping[str, SavedBan]) -> None:
        """Replace the bans kept with ``bans``."""
        with self._transaction():
            self.db.execute("DELETE FROM ip_bans")
            self.db.executemany(
                "INSERT INTO ip_bans (host, status, until_wall, told_wall, holds) "
                "VALUES (?,?,?,?,?)",
                [(host, b.status, b.until_wall, b.told_wall, b.holds) for host, b in bans.items()],
            )

    def _transaction(self) -> _Tx:
        return _Tx(self.db)

    def batch(self) -> _Tx:
        """Several writes as one commit: one sync of the file, not one per write (every
        account's snapshot and mode, each health interval)."""
        return self._transaction()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _row(r: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        created_at=r["created_at"],
        receiver=r["receiver"],
        severity=r["severity"],
        title=r["title"],
        body=r["body"],
        payload=json.loads(r["payload"]),
        attempts=r["attempts"],
        next_attempt_at=r["next_attempt_at"],
        # masked again on the way out: a state file written before the mask existed
        last_error=None if r["last_error"] is None else redact(r["last_error"]),
        delivered_at=r["delivered_at"],
        fallback_of=r["fallback_of"],
    )
