"""The local endpoint under a hostile client: auth first, 4xx for bad headers, bounded
connections and header time. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from alertd.config import ConfigError, parse_config
from alertd.daemon.http import GuardedSite, serve_http

from .support import aio
from .support.process import alertd
from .support.service import make

TOKEN = "Zk3pQ9vX2mL7nR4sT8wYb6Jd"


async def request(port: int, data: bytes, timeout_s: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout_s)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def get(path: str, *headers: bytes) -> bytes:
    return b"\r\n".join([f"GET {path} HTTP/1.1".encode(), b"Host: x", *headers, b"", b""])


def with_endpoint(
    tmp_path: Path, body: Callable[[web.AppRunner, int], Awaitable[None]], **limits: float
) -> None:
    service = make(tmp_path)

    async def serve() -> None:
        runner = await serve_http(service.view, "127.0.0.1", 0, TOKEN, **limits)
        site = next(iter(runner.sites))
        assert isinstance(site, GuardedSite)
        try:
            await body(runner, site.port)
        finally:
            await runner.cleanup()

    try:
        aio.run(serve())
    finally:
        assert service.store is not None
        service.store.close()


AUTH = b"Authorization: Bearer " + TOKEN.encode()


def test_the_token_is_checked_before_anything_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(runner: web.AppRunner, port: int) -> None:
        # no token: 401 whatever the path or method, before routing says 404 or 405
        assert status_of(await request(port, get("/status"))) == 401
        assert status_of(await request(port, get("/no-such-page"))) == 401
        post = b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        assert status_of(await request(port, post)) == 401
        # non-UTF-8 bytes, a wrong token, two tokens: 401, never a 500
        for bad in (
            b"Authorization: Bearer \xff\xfe\x80",
            b"Authorization: \xc3\x28" + TOKEN.encode(),
            b"Authorization: Bearer " + TOKEN.encode()[:-1],
            b"Authorization: bearer " + TOKEN.encode(),
        ):
            assert status_of(await request(port, get("/metrics", bad))) == 401, bad
        assert status_of(await request(port, get("/metrics", AUTH, AUTH))) == 401
        response = await request(port, get("/metrics", AUTH))
        assert status_of(response) == 200 and b"alertd_engine_updates_total" in response
        assert status_of(await request(port, get("/no-such-page", AUTH))) == 404

    with caplog.at_level(logging.DEBUG):
        with_endpoint(tmp_path, body)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "raw",
    [
        get("/metrics", AUTH, b"Bad Header"),
        get("/metrics", AUTH, b"X-\xff: 1"),
        get("/metrics", AUTH, b"X-Long: " + b"a" * 9000),
        get("/metrics", AUTH, b" folded continuation"),
        get("/metrics", AUTH, b"Content-Length: -1"),
        get("/\xff\xfe", AUTH),
        b"\x00\x01\x02\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        get("/metrics", *[b"X-%d: 1" % i for i in range(200)]),
    ],
    ids=[
        "no-colon",
        "non-ascii-name",
        "line-too-long",
        "obs-fold",
        "negative-length",
        "non-utf8-path",
        "binary",
        "bad-version",
        "too-many-headers",
    ],
)
def test_malformed_requests_get_a_4xx_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    async def body(runner: web.AppRunner, port: int) -> None:
        code = status_of(await request(port, raw))
        assert 400 <= code < 500, code

    with caplog.at_level(logging.DEBUG):
        with_endpoint(tmp_path, body)
    # the endpoint's own records (alertd's, aiohttp's): a ccxt client another test left to the
    # garbage collector may warn about its unclosed session at any moment, here too
    mine = [r for r in caplog.records if r.name.startswith(("alertd", "aiohttp"))]
    assert not [r for r in mine if r.levelno >= logging.WARNING]
    assert not [r for r in mine if r.exc_info]  # no traceback even at DEBUG
    assert TOKEN not in caplog.text


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_half_open_connections_cannot_exhaust_file_descriptors(tmp_path: Path) -> None:
    limit, idle = 8, 40

    async def body(runner: web.AppRunner, port: int) -> None:
        site = next(iter(runner.sites))
        assert isinstance(site, GuardedSite)
        before = open_fds()
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(idle)]
        for _, writer in clients[: idle // 2]:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        await asyncio.sleep(0.1)  # the server accepts them all
        # the clients' own sockets are in this process too: the server holds at most `limit`
        assert open_fds() - before - idle <= limit
        assert len(site.guard.open) <= limit
        # a real client still gets an answer, however many idle ones there are
        response = await request(port, get("/metrics", AUTH))
        assert status_of(response) == 200
        # and after the header timeout, every idle connection has been closed by the server
        for reader, _ in clients:
            assert await asyncio.wait_for(reader.read(), 2) == b""
        assert site.guard.timed_out + site.guard.dropped >= idle
        for _, writer in clients:
            writer.close()
        await asyncio.sleep(0.05)
        assert len(site.guard.open) == 0

    with_endpoint(tmp_path, body, max_connections=limit, header_timeout_s=0.3)


def test_a_kept_alive_connection_must_send_each_requests_headers_in_time(tmp_path: Path) -> None:
    async def body(runner: web.AppRunner, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/metrics", AUTH))
        first = await reader.readuntil(b"\r\n\r\n")
        assert status_of(first) == 200
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # the next request, never finished
        await asyncio.wait_for(reader.read(), 2)  # the rest of the first, then closed
        assert reader.at_eof()
        writer.close()

    with_endpoint(tmp_path, body, header_timeout_s=0.3)


@pytest.mark.parametrize("name", ['""', "MY-TOKEN", "1TOKEN", "'${X}'", "'A B'"])
def test_token_env_must_name_a_variable(name: str) -> None:
    base = "version: 1\naccounts: [{name: h, exchange: hyperliquid, wallet_address: '0x1'}]\n"
    for host in ("0.0.0.0", "127.0.0.1"):
        with pytest.raises(ConfigError) as info:
            parse_config(base + f"http: {{enabled: true, host: {host}, token_env: {name}}}")
        (problem,) = info.value.problems
        assert problem.startswith("http.token_env:") and "environment variable name" in problem


def test_check_refuses_a_non_loopback_bind_without_a_set_token(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    base = (
        "version: 1\n"
        "accounts: [{name: h, exchange: hyperliquid, wallet_address: '0x1'}]\n"
        f"state_path: {tmp_path / 'state.sqlite'}\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def check(http: str, **extra: str) -> subprocess.CompletedProcess[str]:
        path.write_text(base + f"http: {http}\n")
        return alertd("check", "-c", str(path), env={**env, **extra})

    for http in (
        "{enabled: true, host: 0.0.0.0}",
        '{enabled: true, host: 0.0.0.0, token_env: ""}',
        "{enabled: true, host: 0.0.0.0, token_env: MY-TOKEN}",
        "{enabled: true, host: 0.0.0.0, token_env: ALERTD_HTTP_TOKEN}",  # not set
    ):
        result = check(http)
        assert result.returncode == 2, (http, result)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("alertd: http"), result.stderr
    unset = check("{enabled: true, host: 0.0.0.0, token_env: ALERTD_HTTP_TOKEN}")
    assert "ALERTD_HTTP_TOKEN is not set" in unset.stderr
    ok = check(
        "{enabled: true, host: 0.0.0.0, token_env: ALERTD_HTTP_TOKEN}", ALERTD_HTTP_TOKEN="x" * 24
    )
    assert ok.returncode == 0, ok.stderr
