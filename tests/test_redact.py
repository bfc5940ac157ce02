"""The one redaction layer: real-looking secrets in the shapes they take in alertd's and its
libraries' text, at every log level, in stored errors and in feed reasons."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd import redact
from alertd.config import Secret
from alertd.daemon.store import NewMessage, Store
from alertd.delivery.senders.apprise import why_refused
from alertd.feeds.ccxt_exchange import describe

from .fake_exchange.binance import FakeBinanceUSDM
from .receivers import HttpReceiver
from .support.aio import run
from .support.endpoint import free_port, get
from .support.fakes import server_in_thread
from .support.fixtures import BTC, started
from .support.poll import wait_for
from .support.process import alertd

# Shaped like the real thing: a Telegram bot token and a group chat id, a Binance listen key
# (64 characters), Binance API key and secret (64 each), a Slack and a Discord webhook.
BOT_TOKEN = "7712345678:AAHd3Kx9fPq2Lm8Zr4Tb6Vn1Wc5Ys0Ue7Io"
CHAT_ID = "-1001987654321"
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SLACK_TOKEN = "Xy7kQ9mZ2pL4nR8sT1vW3bC5"
DISCORD_ID, DISCORD_TOKEN = (
    "1234567890123456789",
    "AbCdEf0123456789_GhIjKlMnOpQrStUvWxYz-0123456789abcdefghijklmnop",
)
TOPIC = "alertd-7Kq2xVm9Lp"

LEAKS = [
    (
        f"main: positions stream error: NetworkError: binanceusdm 400, message='Invalid "
        f"response status', url='ws://127.0.0.1:8765/private/ws?listenKey={LISTEN_KEY}'",
        [LISTEN_KEY],
    ),
    (f"connection closed: wss://fstream.binance.com/ws/{LISTEN_KEY}", [LISTEN_KEY]),
    (f'{{"listenKey":"{LISTEN_KEY}"}}', [LISTEN_KEY]),
    # urllib3 at DEBUG (-vv), under apprise's Telegram plugin
    (
        f'https://api.telegram.org:443 "POST /bot{BOT_TOKEN}/sendMessage HTTP/1.1" 200 None',
        [BOT_TOKEN],
    ),
    (f"Telegram POST URL: https://api.telegram.org/bot{BOT_TOKEN}/sendMessage", [BOT_TOKEN]),
    (f"Unparseable URL tgram://{BOT_TOKEN}/{CHAT_ID}", [BOT_TOKEN, CHAT_ID]),
    (f"https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/{SLACK_TOKEN}", [SLACK_TOKEN]),
    (
        f"POST https://discord.com/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN} failed",
        [DISCORD_ID, DISCORD_TOKEN],
    ),
    (
        "binanceusdm GET https://fapi.binance.com/fapi/v2/positionRisk?timestamp=1764800000000"
        "&signature=9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        ["9f8e7d6c5b4a39281706f5e4d3c2b1a0"],
    ),
    (f"headers={{'X-MBX-APIKEY': '{API_KEY}'}}", [API_KEY]),
    ("Authorization: Bearer t0ken-Zk3pQ9vX2mL7", ["t0ken-Zk3pQ9vX2mL7"]),
    ("Authorization: Basic YWxlcnRkOmh1bnRlcjI=", ["YWxlcnRkOmh1bnRlcjI="]),
    ("https://alertd:hunter2hunter2@ntfy.example.org/x", ["hunter2hunter2"]),
]

KEPT = [
    "health: 1 account, 1 fresh, 0 stale, 0 not live, 0 stopped, 1 position, 52 engine updates, "
    "worst ratio 12.00% (main), 0 alerts firing, 0 messages queued",
    "HTTP endpoint on http://127.0.0.1:9108 (/healthz, /metrics, /status)",
    "binanceusdm GET https://fapi.binance.com/fapi/v2/positionRisk 401",
    "mark stream wss://fstream.binance.com/ws/btcusdt@markPrice@1s lost",
    "accounts[0].secret_env: environment variable BINANCE_SECRET is not set",
    "http.token_env: 'MY-TOKEN' is not an environment variable name",
    "delivery #3 to hook failed (attempt 2): the receiver refused; retrying in 4s",
]


@pytest.mark.parametrize("text, secrets", LEAKS)
def test_secret_shapes_are_masked(text: str, secrets: list[str]) -> None:
    clean = redact.redact(text)
    for secret in secrets:
        assert secret not in clean, clean
    assert redact.MASK in clean


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    # by the shape rules: which values are registered depends on what other tests in this
    # process revealed (a receiver URL's parts, say), so the registry is tested on its own
    assert redact.mask_shapes(text) == text


def test_revealed_secrets_are_masked_wherever_they_appear() -> None:
    url = Secret(f"tgram://{BOT_TOKEN}/{CHAT_ID}")
    key = Secret(API_SECRET)
    url.reveal(), key.reveal()
    # later, the values turn up on their own: an exception, a reply, a repr of a request
    text = redact.redact(f"HMAC({API_SECRET}) for chat {CHAT_ID} by bot {BOT_TOKEN}")
    for secret in (API_SECRET, CHAT_ID, BOT_TOKEN):
        assert secret not in text
    assert redact.redact("0 alerts firing") == "0 alerts firing"


def test_secrets_revealed_within_scoped_secrets_are_forgotten_at_its_end() -> None:
    """A process running one configuration after another (the test suite: test_hostile's
    fuzzed receiver URL "position" was revealed by `alertd check`, and a later test on that
    worker read "gap_risk is a *** metric") forgets what each revealed; what was registered
    before stays."""
    before = Secret("scoped-secret-kept-1")
    before.reveal()
    with redact.scoped_secrets():
        Secret("scoped-secret-gone-2").reveal()
        assert redact.redact("scoped-secret-gone-2 scoped-secret-kept-1") == "*** ***"
    assert redact.redact("scoped-secret-gone-2 scoped-secret-kept-1") == (
        "scoped-secret-gone-2 ***"
    )


def one_pattern(secrets: list[str], text: str) -> str:
    """What masking did as one regex of every secret, longest first (alertd before
    2026-12-07): the reference the index must agree with."""
    pattern = "|".join(re.escape(s) for s in sorted(set(secrets), key=len, reverse=True))
    return re.sub(pattern, redact.MASK, text)


# secrets of few letters, so that they overlap, contain one another and meet in the text
SECRET = st.text(alphabet="ab", min_size=redact.MIN_SECRET_CHARS, max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(SECRET, min_size=1, max_size=8), st.data())
def test_the_secret_index_masks_as_one_pattern_of_every_secret_longest_first(
    secrets: list[str], data: st.DataObject
) -> None:
    pieces = st.one_of(st.sampled_from(secrets), st.text(alphabet="abx", max_size=5))
    text = "".join(data.draw(st.lists(pieces, max_size=12)))
    index = redact.SecretIndex()
    for secret in secrets:
        index.add(secret)
    assert index.mask(text) == one_pattern(secrets, text)


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    index = redact.SecretIndex()
    for secret in ("abcdef", "xxabcdefyy", "abcdefgh"):
        index.add(secret)
    assert index.mask("1 xxabcdefyy 2 abcdef 3 abcdefg 4 abcdefgh") == "1 *** 2 *** 3 ***g 4 ***"
    assert "short" not in redact.SecretIndex() and redact.SecretIndex().mask("abc") == "abc"
    with pytest.raises(ValueError):
        index.add("abc")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A handler on the root logger, as ``alertd -vv`` has one, with the filter installed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    redact.install()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize(
    "logger",
    [
        "alertd.feeds.feed",
        "ccxt.base.exchange",
        "urllib3.connectionpool",
        "aiohttp.client",
        "apprise",
    ],
)
def test_every_record_at_every_level_is_masked(captured: io.StringIO, logger: str) -> None:
    Secret(API_KEY).reveal()
    log = logging.getLogger(logger)
    log.propagate = True
    try:
        for level in (
            logging.DEBUG,
            logging.INFO,
            logging.WARNING,
            logging.ERROR,
            logging.CRITICAL,
        ):
            for text, _ in LEAKS:
                log.log(level, "%s", text)
            log.log(level, "key %s in a %%-argument", API_KEY)
        try:
            raise ccxt.AuthenticationError(f"binanceusdm {{'apiKey': '{API_KEY}'}} {LEAKS[0][0]}")
        except ccxt.AuthenticationError:
            log.exception("in a traceback")
    finally:
        if logger == "apprise":
            log.propagate = False
    out = captured.getvalue()
    assert "in a traceback" in out and "Traceback" in out
    for _, secrets in LEAKS:
        for secret in secrets:
            assert secret not in out
    assert API_KEY not in out


def test_apprise_failure_text_loses_the_chat_id_and_topic() -> None:
    class Entry:
        def __init__(self, message: str) -> None:
            self.message = message

    class Service:
        def __init__(self, *lines: str) -> None:
            self.lines = lines

        def logs(self) -> list[Entry]:
            return [Entry(line) for line in self.lines]

    telegram = Service(
        f"Failed to send Telegram notification to {CHAT_ID}: Bad Request: chat not found, "
        "error=400."
    )
    result = why_refused([telegram], Secret(f"tgram://{BOT_TOKEN}/{CHAT_ID}"))
    assert CHAT_ID not in result.error and "chat not found" in result.error
    ntfy = Service(
        f"Failed to send ntfy notification to topic '{TOPIC}': Too Many Requests, error=429.",
        f"A Connection error occurred sending ntfy:https://ntfy.sh/{TOPIC} notification.",
    )
    result = why_refused([ntfy], Secret(f"ntfys://{TOPIC}"))
    assert TOPIC not in result.error and "error=429" in result.error
    assert result.retry_after_s == 30.0
    # a short topic is masked as a word of its own, not inside other words
    short = Service("Failed to send ntfy notification to topic 'eyes': no eyes here, error=500.")
    result = why_refused([short], Secret("ntfy://eyes"))
    assert (
        result.error == "Failed to send ntfy notification to topic '***': no *** here, error=500."
    )
    result = why_refused([Service("a topic of keyes")], Secret("ntfy://eyes"))
    assert result.error == "a topic of keyes"


def test_stored_errors_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    (row_id,) = store.enqueue([NewMessage("tg", "warning", "t", "b", {})], 1.0)
    store.mark_failed(row_id, f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage: 502", 2.0)
    (row,) = store.pending()
    assert row.last_error is not None and BOT_TOKEN not in row.last_error
    store.close()
    for file in tmp_path.iterdir():  # the database and any WAL left beside it
        assert BOT_TOKEN.split(":")[1].encode() not in file.read_bytes()


def test_a_feeds_reason_loses_the_listen_key_aiohttp_puts_in_its_url() -> None:
    # the real failure: a user-data websocket refused, as ccxt reports it
    fake = FakeBinanceUSDM()
    with server_in_thread(fake):
        url = f"ws://127.0.0.1:{fake.port}/private/ws?listenKey={LISTEN_KEY}"

        async def dial() -> BaseException:
            async with aiohttp.ClientSession() as session:
                try:
                    await session.ws_connect(url)
                except aiohttp.WSServerHandshakeError as exc:
                    return exc
            raise AssertionError("the fake accepted an unknown listen key")

        exc = run(dial())
    assert LISTEN_KEY in str(exc)
    reason = describe(ccxt.NetworkError(f"binanceusdm {exc!r}"))
    assert LISTEN_KEY not in reason and "NetworkError" in reason


# --- everything alertd writes, with real-looking secrets configured -------------------------

NTFY_PASSWORD = "Xb7Qp2Lz9Vr4hunter"
HOOK_TOKEN = SLACK_TOKEN
HTTP_TOKEN = "t0ken-Zk3pQ9vX2mL7nR4s"


def leaked(text: str | bytes, secrets: list[str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in secrets if s.encode() in data]


def failing_receivers(down: HttpReceiver) -> list[dict[str, str]]:
    """An ntfy topic behind a password and a webhook with its token in the path, both down."""
    return [
        {"name": "phone", "url": f"ntfy://alertd:${{NTFY_PASS}}@127.0.0.1:{down.port}/{TOPIC}"},
        {"name": "webhook", "url": f"json://127.0.0.1:{down.port}/hooks/${{HOOK_TOKEN}}"},
    ]


def test_cli_outputs_hold_no_secret_even_at_debug(tmp_path: Path) -> None:
    down = HttpReceiver()
    down.start()
    down.fail_with = 500
    try:
        path = tmp_path / "config.yaml"
        path.write_text(
            json.dumps(
                {
                    "version": 1,
                    "state_path": str(tmp_path / "state.sqlite"),
                    "accounts": [
                        {"name": "hl", "exchange": "hyperliquid", "wallet_address": "0x1"}
                    ],
                    "receivers": failing_receivers(down),
                }
            )
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NTFY_PASS": NTFY_PASSWORD,
            "HOOK_TOKEN": HOOK_TOKEN,
        }
        secrets = [NTFY_PASSWORD, HOOK_TOKEN, TOPIC]
        for args in (("test-notify", "-vv"), ("check", "-vv"), ("status", "-vv", "--json")):
            result = alertd(*args, "-c", str(path), env=env)
            assert "Traceback" not in result.stderr, result.stderr
            assert not leaked(result.stdout + result.stderr, secrets), (args, result)
        # the failures were seen, at DEBUG too: urllib3 logged each request line
        notify = alertd("test-notify", "-vv", "-c", str(path), env=env)
        assert "phone: FAILED" in notify.stdout and "error=500" in notify.stdout
        assert "urllib3.connectionpool" in notify.stderr
    finally:
        down.stop()


def test_the_daemon_at_debug_keeps_secrets_out_of_logs_state_endpoint_and_status(
    world: dict[str, Any], tmp_path: Path
) -> None:
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    path, config = world["path"], world["config"]
    down = HttpReceiver()
    down.start()
    down.fail_with = 500
    port = free_port()
    try:
        path.write_text(
            json.dumps(
                {
                    **config,
                    "receivers": [*config["receivers"], *failing_receivers(down)],
                    "http": {"enabled": True, "port": port, "token_env": "E2E_HTTP_TOKEN"},
                }
            )
        )
        daemon.env.update(E2E_HTTP_TOKEN=HTTP_TOKEN, NTFY_PASS=NTFY_PASSWORD, HOOK_TOKEN=HOOK_TOKEN)
        daemon.args = ["-vv"]
        started(daemon)
        key = wait_for(lambda: fake._account("key-e2e").listen_key, what="a listen key")
        wait_for(
            lambda: any(c.listen_key == key for c in fake._connections_of("private")),
            what="the user-data stream",
        )
        fake.expire_listen_key("key-e2e")  # the feed goes on over a fresh listen key
        fake.set_mark(BTC, "58350")
        wait_for(lambda: len(http.posts) >= 1, what="the warning")
        wait_for(lambda: daemon.text().count("failed (attempt") >= 4, what="failed deliveries")
        listen_keys = [key, fake._account("key-e2e").listen_key]
        base = f"http://127.0.0.1:{port}"
        outputs = {
            "/metrics": get(f"{base}/metrics", HTTP_TOKEN)[1],
            "/status": get(f"{base}/status", HTTP_TOKEN)[1],
            "/healthz": get(f"{base}/healthz", HTTP_TOKEN)[1],
        }
        for args in (("status", "--json"), ("status",), ("history", "--since", "1h", "--json")):
            result = alertd(*args, "-c", str(path), env=daemon.env)
            assert result.returncode == 0, result.stderr
            outputs[" ".join(args)] = result.stdout + result.stderr
        status = json.loads(outputs["/status"])
        errors = [row["last_error"] for row in status["undelivered"]]
        assert errors and all(errors), status  # the failures are there, masked
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None:
            daemon.stop()
        down.stop()
    secrets = [
        "key-e2e",
        "secret-e2e",
        HTTP_TOKEN,
        NTFY_PASSWORD,
        HOOK_TOKEN,
        TOPIC,
        *[k for k in listen_keys if k],
    ]
    log = daemon.text()
    assert " DEBUG " in log and "delivery #" in log  # it did log, at every level
    assert not leaked(log, secrets), [line for line in log.splitlines() if leaked(line, secrets)]
    for name, text in outputs.items():
        assert not leaked(text, secrets), (name, text)
    for file in Path(config["state_path"]).parent.glob("state.sqlite*"):
        assert not leaked(file.read_bytes(), secrets), file
