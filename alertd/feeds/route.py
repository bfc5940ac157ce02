"""The machine's address an account's connections leave from when it names none: the source
address the kernel picks for the route to its exchange's host.

An account without a ``source_address`` (and no ``feeds.source_addresses``) lets the kernel
choose; another account may name that very address (a key whitelisted for the VPS's only IP).
The exchange sees one IP: both must share one per-IP budget (docs/scaling.md, "Several source
addresses on one machine"). The kernel's choice is read as it makes it for a connection: a UDP
socket connected to the host's resolved address takes the route's source address, read back
with ``getsockname`` (connect(2) on a datagram socket sets its peer and local address and sends
no packet: ip(7), udp(7)).
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import socket
import urllib.parse
from typing import Any

import ccxt

from alertd.config import AccountConfig

DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def exchange_host(account: AccountConfig) -> tuple[str, int]:
    """The host (and port) most of the account's API URLs name: its own ``urls`` where it
    has them (a proxy, a local exchange in tests: where it connects), else ccxt's
    ``urls['api']`` of its exchange (its sandbox's where ``sandbox``). One host stands for the
    exchange's several (Binance's fapi, fstream, api): a machine's routes to one exchange's
    hosts are alike but for policy routing. Raises ValueError where it names none."""
    exchange: Any = getattr(ccxt, account.exchange)({})
    if account.sandbox:
        exchange.set_sandbox_mode(True)
    urls = account.urls if _strings(account.urls) else exchange.urls["api"]
    hosts: collections.Counter[tuple[str, int]] = collections.Counter()
    for url in _strings(urls):
        parts = urllib.parse.urlsplit(exchange.implode_hostname(url))
        if parts.hostname and parts.scheme in DEFAULT_PORTS:
            hosts[(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])] += 1
    if not hosts:
        raise ValueError(f"{account.exchange} names no API host")
    # the most named, the first in order among those alike: one answer for one config
    return min(hosts, key=lambda host: (-hosts[host], host))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@functools.lru_cache(maxsize=64)
def route_source_address(host: str, port: int) -> tuple[str | None, str]:
    """The source address of the kernel's route to ``host``'s first resolved address (the one
    a connection tries first), IPv4 or IPv6, and "" ; or None and why it cannot be had (the
    name unresolved, no route). Once per host and port in a process: a name that does not
    resolve costs the resolver's timeout (a second or more), once."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, peer = found[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(peer)  # a datagram socket: the route chosen, nothing sent
            local = probe.getsockname()[0]
    except (OSError, IndexError) as exc:
        return None, str(exc) or type(exc).__name__
    return str(ipaddress.ip_address(local.split("%")[0])), ""


def default_route_address(account: AccountConfig) -> tuple[str | None, str]:
    """The address ``account``'s connections leave from when it names none (see the module),
    and ""; or None and why alertd cannot tell (its host named, the reason)."""
    try:
        host, port = exchange_host(account)
    except (ValueError, ccxt.BaseError) as exc:
        return None, str(exc)
    address, problem = route_source_address(host, port)
    return address, f"{host}: {problem}" if address is None else ""
