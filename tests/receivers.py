"""Real local notification receivers: an SMTP server (aiosmtpd) and an HTTP endpoint."""

from __future__ import annotations

import asyncio
import email
import json
import threading
import time
from email import policy
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller


class _EphemeralController(Controller):
    def _trigger_server(self) -> None:  # type: ignore[override]
        # aiosmtpd's self-check connects to the configured port: learn the real one first
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpReceiver:
    """Records every mail; can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.mails: list[dict[str, str]] = []
        self.port = 0
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        body = message.get_body(("plain",))
        self.mails.append(
            {
                "subject": str(message["Subject"]),
                "body": body.get_content() if body is not None else "",
                "to": ",".join(envelope.rcpt_tos),
            }
        )
        return "250 OK"

    def start(self) -> None:
        controller = _EphemeralController(self, hostname="127.0.0.1", port=self.port)
        controller.start()
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=alertd@example.com&to=trader@example.com"
            "&format=text"
        )

    def subjects(self) -> list[str]:
        return [m["subject"] for m in self.mails]


class LoopbackServer:
    """An aiohttp app on 127.0.0.1, on its own event loop in its own thread (so that a test's
    synchronous code and the real daemon can both talk to it); :meth:`routes` says what it
    serves."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> None:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            self.routes(app)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


class HttpReceiver(LoopbackServer):
    """An HTTP endpoint in its own thread, recording apprise's JSON posts."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []
        self.pings: list[float] = []  # GETs: a dead-man's switch
        self.fail_with: int | None = None  # answer every request with this status
        self.retry_after: str | None = None  # ... and this Retry-After header

    def _refusal(self) -> web.Response | None:
        if self.fail_with is None:
            return None
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        return web.Response(status=self.fail_with, text="refused", headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        self.posts.append({**json.loads(await request.text()), "received_at": time.time()})
        return web.Response(text="ok")

    async def _ping(self, request: web.Request) -> web.Response:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        self.pings.append(time.time())
        return web.Response(text="ok")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._handle)
        app.router.add_get("/{tail:.*}", self._ping)

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        return [p["title"] for p in self.posts]
