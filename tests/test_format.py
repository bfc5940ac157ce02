"""The one number format: money, prices, sizes, percents, durations, JSON strings."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import alertd.views.format as fmt

D = Decimal


@pytest.mark.parametrize(
    ("value", "unit", "up", "text"),
    [
        (D("168.6666"), "USDT", True, "168.67 USDT"),  # an amount to add is never short
        (D("168.6641"), "USDT", False, "168.66 USDT"),
        (D("1234567.891"), "", False, "1,234,567.89"),
        (D("-2250"), "USDT", False, "-2,250.00 USDT"),
        (D("0.0000043300962256"), "BTC", False, "0.0000043301 BTC"),  # not "0.00 BTC"
        (D("0.00131729"), "USDT", False, "0.00131729 USDT"),
        (D("0.5"), "", False, "0.50"),
        (D("0"), "", False, "0.00"),
        (D("-0.0000000001"), "", False, "-0.0000000001"),
        (D("Infinity"), "", False, "∞"),
        (None, "USDT", False, "-"),
    ],
)
def test_money(value: Decimal | None, unit: str, up: bool, text: str) -> None:
    assert fmt.money(value, unit, up=up) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("58350"), "58,350.00"),
        (D("25100.4"), "25,100.40"),
        (D("74.43120"), "74.4312"),
        (D("0.11358231"), "0.113582"),
        (D("0.000012345678"), "0.0000123457"),
        (D("999.9999"), "1,000.00"),
        (None, "--"),  # no liquidation price, as the exchanges show it
    ],
)
def test_price(value: Decimal | None, text: str) -> None:
    assert fmt.price(value) == text


def test_sizes_as_held_and_to_cut() -> None:
    assert fmt.quantity(D("10000")) == "10,000"
    assert fmt.quantity(D("0.500")) == "0.5"
    assert fmt.quantity(D("1E+1")) == "10"
    # issue 16: this cut used to print as 0.001147137212496384289639264094
    assert fmt.size_to_cut(D("0.001147137212496384289639264094")) == "0.001148"
    assert fmt.size_to_cut(D("0.0011471"), lot=D("0.001")) == "0.002"
    assert fmt.size_to_cut(D("3"), lot=D("1")) == "3"
    assert fmt.size_to_cut(D("0")) == "0"


def test_percents_and_ratios() -> None:
    assert fmt.percent(D("0.667"), 1) == "66.7%"
    assert fmt.percent(D("-0.1234"), signed=True) == "-12.34%"
    assert fmt.percent(D("-0.00001"), signed=True) == "+0.00%"  # never "-0.00%"
    assert fmt.percent(D(12), 0) == "1,200%"
    assert fmt.ratio(D("Infinity")) == "LIQUIDATED"
    assert fmt.percent(D("Infinity")) == "∞"
    assert fmt.ratio(None) == "-"


def _pct(value: Decimal, places: int, rounding: str) -> str:
    return fmt.percent(value, places, rounding=rounding)


def test_a_value_is_never_shown_rounded_onto_its_threshold() -> None:
    # issue 16: "3.0%" beside "below 3.0%"
    assert fmt.apart(D("0.0296"), D("0.03"), _pct, 1) == "2.96%"
    assert fmt.apart(D("0.0299999"), D("0.03"), _pct, 1) == "2.99%"  # floored: below 3
    assert fmt.apart(D("0.03001"), D("0.03"), _pct, 1) == "3.01%"
    assert fmt.apart(D("0.667"), D("0.5"), _pct, 1) == "66.7%"  # already apart: as is
    assert fmt.apart(D("0.5"), D("0.5"), _pct, 1) == "50.0%"  # equal is shown equal


@given(
    st.decimals(min_value=D("0.0001"), max_value=D(2), places=6),
    st.decimals(min_value=D("0.001"), max_value=D(2), places=3),
)
def test_apart_reads_on_the_values_side_of_the_threshold(
    value: Decimal, threshold: Decimal
) -> None:
    text = fmt.apart(value, threshold, _pct, 1)
    places = len(text.rstrip("%").partition(".")[2])
    limit = fmt.percent(threshold, places, rounding=ROUND_HALF_EVEN)
    shown = D(text.rstrip("%").replace(",", ""))
    if value < threshold:
        assert text != limit and shown < threshold * 100
    elif value > threshold:
        assert text != limit and shown > threshold * 100
    else:
        assert text == limit


def test_json_decimal_strings_durations_and_times() -> None:
    assert fmt.decimal_str(D("1.50E+3")) == "1500"
    assert fmt.decimal_str(D("-0.000")) == "0"
    assert fmt.decimal_str(D("Infinity")) == "Infinity"
    assert fmt.decimal_str(None) is None
    assert [fmt.duration(s) for s in (45, 600, 7500)] == ["45s", "10m", "2h05m"]
    assert fmt.seconds(D("45.4")) == "45s"
    assert fmt.minutes(750) == "12 min" and fmt.minutes(None) == "-"
    assert fmt.leverage(D("11.1234")) == "11.12x" and fmt.leverage(D("Infinity")) == "∞"
    assert fmt.timestamp(None) == "-"
    assert len(fmt.timestamp(0).split()) == 3  # date, time and the zone's name
