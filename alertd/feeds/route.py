"""The machine's addresses an account's connections may leave from when it names none: the
source address the kernel picks for the route to its exchange's host, one per address family
the host resolves to.

An account without a ``source_address`` (and no ``feeds.source_addresses``) lets the kernel
choose; another account may name that very address (a key whitelisted for the VPS's only IP).
The exchange sees one IP: both must share one per-IP budget (docs/scaling.md, "Several source
addresses on one machine"). The kernel's choice is read as it makes it for a connection: a UDP
socket connected to a resolved address of the host takes the route's source address, read back
with ``getsockname`` (connect(2) on a datagram socket sets its peer and local address and sends
no packet: ip(7), udp(7)).
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

import ccxt

from alertd.config import AccountConfig
from alertd.exchanges.registry import get_spec

DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def exchange_host(account: AccountConfig) -> tuple[str, int]:
    """The host (and port) most of the account's API URLs name: its own ``urls`` where it
    has them (a proxy, a local exchange in tests: where it connects), else ccxt's
    ``urls['api']`` of its exchange (its sandbox's where ``sandbox``): the one its feed's REST
    requests go to where the spec names it (``ExchangeSpec.api_url``: Binance USDⓈ-M's fapi,
    not the spot and sapi hosts its other URLs name), else the most named. One host stands for
    the exchange's several (Binance's fapi, fstream): a machine's routes to one exchange's
    hosts are alike but for policy routing. Raises ValueError where it names none."""
    exchange: Any = getattr(ccxt, account.exchange)({})
    if account.sandbox:
        exchange.set_sandbox_mode(True)
    urls = account.urls if _strings(account.urls) else exchange.urls["api"]
    own = get_spec(account.exchange).api_url
    if urls is exchange.urls["api"] and own is not None and _strings(urls.get(own)):
        urls = urls[own]
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


# (host, port) -> getaddrinfo's answers for a datagram socket: (family, type, proto, canonname,
# sockaddr) in the order a connection tries them; a parameter, so a test can give a dual-stack
# name its two families without a resolver of its own
Resolve = Callable[[str, int], list[tuple[Any, ...]]]


def resolve_datagram(host: str, port: int) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` of ``host`` for a datagram socket, every family (AF_UNSPEC)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)


@functools.lru_cache(maxsize=64)
def route_source_addresses(
    host: str, port: int, resolve: Resolve = resolve_datagram
) -> tuple[tuple[str, ...], str]:
    """The source address of the kernel's route to ``host``'s first resolved address of each
    family (IPv4, IPv6; in the resolver's order, those alike once), and ""; or () and why
    none can be had (the name unresolved, no route). Every family, not the first address
    alone: alertd's connector (:func:`~alertd.feeds.ccxt_exchange.bound_connector`, with no
    address: AF_UNSPEC, happy eyeballs with no delay) dials every resolved address at once
    and keeps the first to connect, so a host with an AAAA record whose IPv6 path is slow or
    broken is reached over IPv4: the route of each family is one the connections may take.
    A family without a route (no IPv6 on the machine) is left out. Once per host and port in
    a process: a name that does not resolve costs the resolver's timeout, once."""
    try:
        found = resolve(host, port)
    except OSError as exc:
        return (), str(exc) or type(exc).__name__
    sources: list[str] = []
    problem = "no address" if not found else ""
    tried: set[int] = set()
    for family, _, _, _, peer in found:
        if family in tried:
            continue  # the first address of a family stands for it (one route per family)
        tried.add(family)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(peer)  # a datagram socket: the route chosen, nothing sent
                local = probe.getsockname()[0]
        except OSError as exc:
            problem = problem or str(exc) or type(exc).__name__
            continue
        address = str(ipaddress.ip_address(local.split("%")[0]))
        if address not in sources:
            sources.append(address)
    return tuple(sources), "" if sources else problem


def default_route_address(
    account: AccountConfig, resolve: Resolve = resolve_datagram
) -> tuple[tuple[str, ...], str]:
    """The addresses ``account``'s connections may leave from when it names none (one per
    family its exchange's host resolves to: see :func:`route_source_addresses`), and ""; or
    () and why alertd cannot tell (its host named, the reason)."""
    try:
        host, port = exchange_host(account)
    except (ValueError, ccxt.BaseError) as exc:
        return (), str(exc)
    addresses, problem = route_source_addresses(host, port, resolve)
    return addresses, "" if addresses else f"{host}: {problem}"
