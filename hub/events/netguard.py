"""Where a webhook may send: the outbound checks (docs/events.md, "Destinations").

A URL is http or https with a host and nothing that would hide where it goes (no userinfo, no
fragment). Its address must be global (not loopback, link-local, private, shared, reserved,
multicast or unspecified) unless one of webhooks.allowed_networks holds it. The check runs when a
subscription is created or changed (`check_url`) and again on every delivery, on the addresses
the name resolves to at that moment (`GuardedResolver`, which aiohttp's connector uses: it only
ever connects to addresses returned by it, so a name that resolves to a public address at
creation and to 127.0.0.1 later, DNS rebinding, is refused then). URLs with an IP literal skip
aiohttp's resolver, so the delivery checks those itself (`check_literal`)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForbiddenDestination(OSError):
    """The destination is not allowed (an OSError, so aiohttp's connector reports it as the cause
    of its ClientConnectorError)."""


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def address_allowed(address: str | IPAddress, allowed: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == n.version and ip in n for n in allowed):
        return True
    return ip.is_global and not ip.is_multicast


def parse_url(url: str) -> URL:
    """The URL if its form is acceptable; ValueError saying why not."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be a string of at most {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
        host = parsed.host
    except Exception:  # yarl raises IndexError too, on "http://[...]@/" (found by the fuzz target)
        raise ValueError("is not a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not host:
        raise ValueError("must name a host")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError("must not hold credentials")
    if parsed.fragment:
        raise ValueError("must not have a fragment")
    return parsed


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(url: URL, allowed: tuple[Network, ...]) -> None:
    ip = literal(url.host or "")
    if ip is not None and not address_allowed(ip, allowed):
        raise ForbiddenDestination(f"{ip} is not an allowed destination (webhooks.allowed_networks)")


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (the system's, by default) and keeps only allowed addresses; none
    left: ForbiddenDestination."""

    def __init__(self, allowed: tuple[Network, ...], inner: AbstractResolver | None = None):
        self.allowed = allowed
        self.inner = inner or ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        kept = [r for r in found if address_allowed(r["host"], self.allowed)]
        if not kept:
            shown = ", ".join(sorted({r["host"] for r in found})) or "nothing"
            raise ForbiddenDestination(f"{host} resolves to {shown}: not an allowed destination "
                                       "(webhooks.allowed_networks)")
        return kept

    async def close(self) -> None:
        await self.inner.close()


async def check_url(url: str, allowed: tuple[Network, ...], resolver: AbstractResolver | None = None) -> URL:
    """A subscription's URL as it is created or changed: the form, and every address its host has
    now (ValueError or ForbiddenDestination). A name that does not resolve is refused too."""
    parsed = parse_url(url)
    check_literal(parsed, allowed)
    if literal(parsed.host or "") is None:
        guard = GuardedResolver(allowed, resolver)
        try:
            found = await guard.inner.resolve(parsed.host, parsed.port or 0, socket.AF_UNSPEC)
        except OSError as exc:
            raise ValueError(f"its host does not resolve: {exc}") from None
        bad = sorted({r["host"] for r in found if not address_allowed(r["host"], allowed)})
        if bad or not found:
            raise ForbiddenDestination(f"{parsed.host} resolves to {', '.join(bad) or 'nothing'}: not an allowed "
                                       "destination (webhooks.allowed_networks)")
    return parsed
