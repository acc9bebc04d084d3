"""Fetching a Portainer template feed by URL, for the import (appstore.service.AppStore.import_portainer).

Only hosts an admin listed in `appstore.import_hosts` are dialled: the URL comes from a request,
and a registry that fetched whatever URL it was handed would let anyone make it reach hosts
behind its firewall. The check is on the URL's host and port exactly as written (no DNS lookup is
needed to refuse); redirects are not followed (a redirect's target would be a host nobody
listed); the body is read up to MAX_FEED_BYTES and must be JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from hub import safejson

from .errors import ModelError

# Portainer's own feed is about 200 KB. At 1 MiB a feed also fits, form-encoded (at most 3 bytes per
# byte), in the import page's publish step, which carries it back (client_max_size: 4 MiB).
MAX_FEED_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 20


class FeedFetchError(ModelError):
    """The feed could not be fetched: the message says why (never the response body)."""

    def __init__(self, message: str):
        super().__init__({"url": message})


def host_of(url: str) -> str:
    """`host` or `host:port` of an http(s) URL as it is matched against import_hosts. Raises
    FeedFetchError for anything that is not a plain http(s) URL."""
    if not isinstance(url, str) or len(url) > 2000 or any(ord(c) < 33 for c in url):
        raise FeedFetchError("must be an http or https URL without spaces")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FeedFetchError("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise FeedFetchError("must not carry credentials")
    try:
        port = parts.port
    except ValueError:
        raise FeedFetchError("has an invalid port") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else host


def check_allowed(url: str, allowed_hosts: list[str] | tuple[str, ...]) -> str:
    """The URL's host if an admin listed it (appstore.import_hosts), else FeedFetchError."""
    host = host_of(url)
    if host not in {h.lower() for h in allowed_hosts}:
        if not allowed_hosts:
            raise FeedFetchError("importing by URL is off on this server (appstore.import_hosts is empty): "
                                 "upload the feed as a file")
        raise FeedFetchError(f"{host} is not one of the hosts an admin allowed for imports "
                             "(appstore.import_hosts)")
    return host


async def fetch_feed(url: str, allowed_hosts: list[str] | tuple[str, ...]) -> Any:
    """The JSON document at `url` (an allowed host only; no redirects; size and time bounded)."""
    check_allowed(url, allowed_hosts)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            async with session.get(url, allow_redirects=False, headers={"Accept": "application/json"}) as response:
                if 300 <= response.status < 400:
                    raise FeedFetchError(f"the server answered with a redirect ({response.status}); import the "
                                         "URL it points to, if its host is allowed")
                if response.status != 200:
                    raise FeedFetchError(f"the server answered {response.status} {response.reason or ''}".strip())
                if response.content_length is not None and response.content_length > MAX_FEED_BYTES:
                    raise FeedFetchError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
                body = await response.content.read(MAX_FEED_BYTES + 1)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise FeedFetchError(f"could not be fetched: {type(exc).__name__}") from None
    if len(body) > MAX_FEED_BYTES:
        raise FeedFetchError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
    return parse_feed(body)


def parse_feed(data: bytes | str) -> Any:
    """A feed file's JSON (nesting bounded), or ModelError."""
    try:
        return safejson.loads(data, unpaired_surrogates=False)
    except (ValueError, UnicodeDecodeError) as exc:
        detail = str(exc) if isinstance(exc, (safejson.JsonTooDeep, safejson.UnpairedSurrogate)) else "not valid JSON"
        raise ModelError({"feed": f"is not a JSON document ({detail})"}) from None
