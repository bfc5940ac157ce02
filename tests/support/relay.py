"""A loopback TCP relay whose new connections are slow to open, as a distant exchange's are.

A request sent on a new connection reaches a distant exchange only after the TCP and TLS
handshakes (a few round trips), one sent on a kept-alive connection after one trip: the
relay holds each new connection's first bytes ``opening_delay_s`` before passing them on,
and passes everything else at once. A cold start's requests, each on a connection of its own,
then arrive late, and the next ones, on the same connections, on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.fake_exchange.base import LOOPBACK


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Bytes from ``reader`` to ``writer`` until either closes, the first ones ``delay_s``
    late."""
    try:
        first = True
        while data := await reader.read(65536):
            if first and delay_s:
                await asyncio.sleep(delay_s)
            first = False
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def slow_openings_relay(port: int, opening_delay_s: float) -> AsyncIterator[int]:
    """A relay to ``LOOPBACK:port`` while the block runs; yields the relay's own port."""
    pipes: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, port)
        for task in (
            asyncio.create_task(_pipe(reader, upstream_writer, opening_delay_s)),
            asyncio.create_task(_pipe(upstream_reader, writer, 0.0)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(accepted, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()
