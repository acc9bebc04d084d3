"""The address clients should use for this registry, as the web pages show it: `server.public_url`'s,
else the request's Host when that looks like a host[:port] (Host is whatever the client sent, so it
is for display only, autoescaped; it is never linked or redirected to), else a placeholder."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from ..keys import CONFIG

# A DNS name, an IPv4 address or a bracketed IPv6 address, with an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
PLACEHOLDER = "registry.example:5000"


def address(request: web.Request) -> tuple[str, str]:
    """(scheme, host[:port]) clients should use: server.public_url's, else the request's."""
    public_url = request.app[CONFIG].server.public_url
    if public_url:
        parts = urlsplit(public_url)
        scheme, host = parts.scheme.lower(), parts.netloc
    else:
        scheme, host = ("https" if request.secure else "http"), request.headers.get("Host", "")
    host = host.strip()
    return scheme, host if len(host) <= 260 and _HOST.fullmatch(host) else PLACEHOLDER
