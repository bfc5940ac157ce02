"""Tier tables: lookup at the boundaries, order checks, and the deduction recursion check."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from alertd.engine.tiers import (
    Tier,
    TierBasis,
    TierTable,
    TierTableError,
    deduction_warnings,
    derive_deductions,
)

D = Decimal
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def table(*rows: tuple[str | None, str, str]) -> TierTable:
    return TierTable.build([Tier(D(c) if c else None, D(m), D(d)) for c, m, d in rows])


def test_a_cap_belongs_to_its_own_tier() -> None:
    t = table(("50000", "0.004", "0"), ("600000", "0.005", "50"), (None, "0.0065", "950"))
    assert t.index_for(D(0)) == 0
    assert t.index_for(D(50000)) == 0
    assert t.index_for(D("50000.01")) == 1
    assert t.index_for(D(600000)) == 1
    assert t.index_for(D(10**12)) == 2


def test_past_a_fully_capped_table_the_last_tier_applies() -> None:
    t = table(("50000", "0.004", "0"), ("600000", "0.005", "50"))
    assert t.index_for(D(10**9)) == 1


@pytest.mark.parametrize(
    ("rows", "index", "reason"),
    [
        ([("500", "0.01", "0"), ("400", "0.02", "5")], 1, "tiers out of order"),
        ([("500", "0.01", "0"), (None, "0.02", "5"), ("900", "0.03", "14")], 1, "only the last"),
        ([("500", "1.2", "0")], 0, "must be in [0, 1)"),
        ([("0", "0.01", "0")], 0, "must be positive"),
    ],
)
def test_bad_tables_name_the_tier(
    rows: list[tuple[str | None, str, str]], index: int, reason: str
) -> None:
    with pytest.raises(TierTableError) as info:
        table(*rows)
    assert info.value.index == index
    assert reason in info.value.reason


def test_recursion_warning_names_the_tier() -> None:
    t = table(("50000", "0.004", "0"), ("600000", "0.005", "50"), (None, "0.0065", "900"))
    assert [i for i, _ in deduction_warnings(t)] == [2]
    message = deduction_warnings(t)[0][1]
    assert "tier 3 deduction is 900, the recursion gives 950" in message


def test_first_tier_must_have_no_deduction() -> None:
    t = table(("50000", "0.004", "5"), (None, "0.005", "55"))
    assert [i for i, _ in deduction_warnings(t)] == [0]


def test_derived_deductions_never_warn() -> None:
    caps: list[Decimal | None] = [D(20000), D(50000), D(100000), None]
    mmrs = [D("0.004"), D("0.0045"), D("0.005"), D("0.007")]
    deductions = derive_deductions(caps, mmrs)
    t = TierTable.build([Tier(c, m, d) for c, m, d in zip(caps, mmrs, deductions, strict=True)])
    assert deduction_warnings(t) == []


def test_contract_basis_is_kept() -> None:
    t = TierTable.build(
        [Tier(D(100), D("0.004"), D(0)), Tier(None, D("0.01"), D(0))], TierBasis.CONTRACTS
    )
    assert t.basis is TierBasis.CONTRACTS
    assert t.index_for(D(150)) == 1


def _binance_tables() -> dict[str, TierTable]:
    # Real Binance USDⓈ-M brackets, September 2026 (../shared/data, see its README); the raw
    # bracket with its `cum` is under `info`, since ccxt's unified tiers drop the deduction.
    raw = json.loads(
        (SHARED_DATA / "binance_usdm_leverage_tiers_freqtrade-2026.9.json").read_text()
    )
    out = {}
    for symbol, rows in raw.items():
        tiers = []
        for k, row in enumerate(rows):
            info = row["info"]
            cap = None if k == len(rows) - 1 else D(str(info["notionalCap"]))
            tiers.append(Tier(cap, D(str(info["maintMarginRatio"])), D(str(info["cum"]))))
        out[symbol] = TierTable.build(tiers)
    return out


def test_every_real_binance_table_satisfies_the_recursion() -> None:
    tables = _binance_tables()
    assert len(tables) == 907
    broken = {s: deduction_warnings(t) for s, t in tables.items() if deduction_warnings(t)}
    assert broken == {}
