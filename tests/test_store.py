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
