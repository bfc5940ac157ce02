"""Retry-After (RFC 9110, section 10.2.3: ``Retry-After = HTTP-date / delay-seconds``,
``delay-seconds = 1*DIGIT``, DIGIT being ASCII 0-9 by RFC 5234's core rules) as alertd reads
it from the exchanges and the receivers it delivers to: a header no parser should choke on
is ignored or capped, never an exception in place of the answer's own error."""

from __future__ import annotations

import ccxt
import pytest

from alertd.delivery.senders import RECEIVER_MAX_RETRY_AFTER_S, http_call
from alertd.exchanges.registry import get_spec
from alertd.feeds.ccxt_exchange import (
    BAN_MAX_S,
    EXCHANGE_MAX_RETRY_AFTER_S,
    ErrorKind,
    IpBudget,
    _guarded_class,
    classify,
    retry_after_of,
)
from alertd.retry_after import reset_in, retry_after_s
from tests.receivers import HttpReceiver
from tests.support.aio import run
from tests.support.clock import ManualClock

# what Python's int() refuses: a superscript digit, an Arabic-Indic one (both isdigit()), and
# more digits than int() converts from text (its 4,300-digit limit, CVE-2020-10735)
HOSTILE = ["\u00b2", "\u0663", "9" * 5000]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (" 7 ", 7.0),
        ("0", 0.0),
        ("\u00b2", None),
        ("\u0663", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the HTTP-date form: the caller's backoff
        ("-5", None),
        ("", None),
        (None, None),
        ("9" * 5000, RECEIVER_MAX_RETRY_AFTER_S),
        ("0" * 5000 + "7", 7.0),
    ],
    ids=[
        "seven",
        "zero",
        "superscript",
        "arabic-indic",
        "date",
        "negative",
        "empty",
        "none",
        "5000 digits",
        "zeros then 7",
    ],
)
def test_retry_after_reads_ascii_seconds_only(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, RECEIVER_MAX_RETRY_AFTER_S) == seconds


def _guarded_binance_at(receiver: HttpReceiver) -> ccxt.Exchange:
    """alertd's guarded Binance USDⓈ-M class, every REST base URL on ``receiver``."""
    exchange: ccxt.Exchange = _guarded_class("binanceusdm")({"enableRateLimit": False})
    for api in list(exchange.urls["api"]):
        exchange.urls["api"][api] = f"http://127.0.0.1:{receiver.port}/fapi/v1"
    return exchange


async def _raised(exchange: ccxt.Exchange) -> BaseException:
    try:
        await exchange.fapiPublicGetTime()
    except Exception as exc:
        return exc
    finally:
        await exchange.close()
    raise AssertionError("the refusal raised nothing")


@pytest.mark.parametrize(
    ("header", "ban_s"),
    [("\u00b2", 120.0), ("\u0663", 120.0), ("9" * 5000, float(BAN_MAX_S))],
    ids=["superscript", "arabic-indic", "5000 digits"],
)
def test_a_418_with_a_hostile_retry_after_stays_a_ban_of_the_host(
    http_receiver: HttpReceiver, header: str, ban_s: float
) -> None:
    """Binance answers 418 to an IP it banned ("General Info", Limits:
    https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info): ccxt's
    DDoSProtection, transient, the host waiting out the ban (IpBudget). A Retry-After int()
    cannot read (from a proxy in front, say) made the guarded handle_errors raise ValueError in
    its place; unreadable, the ban lasts Binance's shortest (2 minutes), at most its longest."""
    http_receiver.fail_with, http_receiver.retry_after = 418, header
    exchange = _guarded_binance_at(http_receiver)
    budget = IpBudget.of(get_spec("binanceusdm").capabilities, "binanceusdm", ManualClock(0.0))
    exchange.alertd_ip_budget = budget
    exc = run(_raised(exchange))
    assert isinstance(exc, ccxt.DDoSProtection), repr(exc)
    assert classify(exc) is ErrorKind.TRANSIENT
    ban = budget.banned()
    assert ban is not None and ban.until == ban_s


def test_a_429_with_a_hostile_retry_after_is_retried_on_the_backoff(
    http_receiver: HttpReceiver,
) -> None:
    http_receiver.fail_with, http_receiver.retry_after = 429, "\u00b2"
    exc = run(_raised(_guarded_binance_at(http_receiver)))
    assert isinstance(exc, ccxt.DDoSProtection), repr(exc)  # ccxt's error for Binance's 429
    assert classify(exc) is ErrorKind.TRANSIENT
    assert retry_after_of(exc) == 0.0  # nothing usable asked: the backoff's delay


@pytest.mark.parametrize("header", HOSTILE, ids=["superscript", "arabic-indic", "5000 digits"])
def test_a_receiver_s_answer_with_a_hostile_retry_after_is_read(
    http_receiver: HttpReceiver, header: str
) -> None:
    """delivery's http_call read the same header with the same parser: a 200 with such a
    header was "not reached: ValueError"."""
    http_receiver.fail_with, http_receiver.retry_after = 200, header
    url = f"http://127.0.0.1:{http_receiver.port}/ping/x"
    answer = run(http_call("GET", url, timeout_s=5))
    assert answer.status == 200
    assert answer.retry_after_s in (None, RECEIVER_MAX_RETRY_AFTER_S)


@pytest.mark.parametrize(("header", "capped"), [("30", False), ("3000", True)])
def test_an_exchange_s_retry_after_is_capped_shorter_than_a_receiver_s(
    http_receiver: HttpReceiver, header: str, capped: bool
) -> None:
    """A retry of the exchange waits at most EXCHANGE_MAX_RETRY_AFTER_S (a CDN's 503 asking
    an hour parked a bootstrap for an hour under the receivers' cap); a receiver's own wait
    keeps the receivers' cap (a webhook's 429 asking 50 min is honoured)."""
    http_receiver.fail_with, http_receiver.retry_after = 429, header
    exc = run(_raised(_guarded_binance_at(http_receiver)))
    asked = float(header)
    assert retry_after_of(exc) == (EXCHANGE_MAX_RETRY_AFTER_S if capped else asked)
    assert asked > EXCHANGE_MAX_RETRY_AFTER_S or not capped
    url = f"http://127.0.0.1:{http_receiver.port}/ping/x"
    assert run(http_call("GET", url, timeout_s=5)).retry_after_s == asked


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000030", 30.0),  # epoch seconds
        ("1700000030000", 30.0),  # epoch milliseconds (the local Gate's)
        ("1700000000", None),  # now: Gate's value on an answer within the limit
        ("1699999990", None),  # past
        ("1700009999", 120.0),  # capped
        ("soon", None),
        ("9" * 40, None),  # not a time
    ],
)
def test_a_reset_timestamp_is_read_as_the_wait_until_it(value: str, expected: float | None) -> None:
    """Gate's X-Gate-RateLimit-Reset-Timestamp ("Rate limit", Gate API v4 docs), any case."""
    headers = {"x-gate-ratelimit-reset-timestamp": value}
    assert reset_in(headers, "X-Gate-RateLimit-Reset-Timestamp", 1_700_000_000.0, 120) == expected
