"""The client's address, as the login limiter counts it: the peer, or behind trusted reverse
proxies (`server.trusted_proxies`) the right-most X-Forwarded-For entry that is not one of them.

Only a proxy in the list is believed: from any other peer, X-Forwarded-For is whatever the
client wrote and is ignored. Each trusted proxy appends the address it received the request
from, so reading from the right and skipping trusted hops stops at the first address a trusted
proxy vouched for and no client chose.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from aiohttp import web

from .keys import CONFIG

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:a.b.c.d, as a dual-stack socket reports IPv4
    return mapped or ip


def _trusted(ip: Address, networks: Iterable[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def forwarded_client(peer: str, forwarded_for: Iterable[str], trusted: Iterable[Network]) -> str:
    """The client behind `peer`, given the X-Forwarded-For header values in order."""
    networks = tuple(trusted)
    hop = _address(peer)
    if hop is None or not _trusted(hop, networks):
        return str(hop) if hop is not None else peer
    entries = [e for value in forwarded_for for e in value.split(",") if e.strip()]
    for entry in reversed(entries):
        ip = _address(entry)
        if ip is None:
            break  # not an address: the hop before it is the last one vouched for
        hop = ip
        if not _trusted(ip, networks):
            break
    return str(hop)


def client_address(request: web.Request) -> str:
    """The address of the client that sent `request` (see the module's docstring)."""
    peer = request.remote or "-"
    cidrs = tuple(request.app[CONFIG].server.trusted_proxies)
    if not cidrs:
        return peer
    return forwarded_client(peer, request.headers.getall("X-Forwarded-For", []), _networks(cidrs))
