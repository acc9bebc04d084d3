"""Which requests go to which upstream, and the one cache repository they all share.

Three ways in, one naming scheme. A request for repository `<name>` goes to upstream U as
upstream repository R, cached locally as the ordinary repository `<U.name>/<R>`:

1. containerd's `?ns=<host>`: U is the upstream whose name or alias is `<host>` (an unknown
   host is NAME_UNKNOWN and nothing is dialled); R is the whole `<name>`.
2. Path prefix: the first component of `<name>` is an upstream's name (or an alias that is a
   valid name component); R is the rest.
3. Mirror mode: the first component is neither an upstream nor an existing tenant, and a
   default mirror is configured; U is the default mirror and R the whole `<name>` (Docker
   itself sends `library/<image>` for official images).

Anything else is a local repository, served as if no proxy existed. So with a default
mirror, local repositories must live under an existing tenant; and an upstream's name shadows
a tenant of the same name (the admin API refuses to create either while the other exists).

The upstreams are the union of the config file's and those created through the admin API
(metadata store). The store's change counter is checked at most every `refresh_seconds`, so
every replica routes by the same set shortly after a change, without a restart; a change made
on this replica applies to its next request. A stored upstream whose name or alias is taken
by a config upstream is left out (config wins) with a warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from auth.policy import CacheAccess

from ..errors import NameUnknown, OciError
from ..registry.names import COMPONENT_RE, validate_name
from ..secret import Secret
from .settings import UpstreamSpec

MIRROR, NS, PREFIX = "mirror", "ns", "prefix"
CONFIG, API = "config", "api"

log = logging.getLogger("daohub.proxy")


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str  # no trailing slash
    aliases: tuple[str, ...]
    username: str
    password: Secret
    revalidate_seconds: int
    access: CacheAccess
    max_size_bytes: int = 0  # 0: no cap
    ttl_days: float = 0.0  # 0: no TTL
    source: str = CONFIG  # CONFIG | API

    @classmethod
    def from_config(cls, spec: UpstreamSpec, source: str = CONFIG) -> Upstream:
        """From the config file's upstream (`source` CONFIG) or one of the admin API's (API)."""
        return cls(spec.name, spec.url.rstrip("/"), tuple(spec.aliases), spec.username, spec.password,
                   spec.manifest_revalidate_seconds,
                   CacheAccess(spec.name, frozenset(spec.tenants), spec.anonymous_pull),
                   spec.max_size_bytes, spec.ttl_days, source)

    def same_connection(self, other: Upstream) -> bool:
        """True if a client made for `other` may serve this one (same place, same credentials)."""
        return (self.url, self.username, self.password.reveal()) == (
            other.url, other.username, other.password.reveal())

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.url!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: `remote` at `upstream`, cached in the repository `cache`."""

    upstream: Upstream
    remote: str
    cache: str
    via: str  # MIRROR | NS | PREFIX


class Router:
    def __init__(self, upstreams: Iterable[Upstream], default_mirror: str,
                 tenant_exists: Callable[[str], Awaitable[bool]], *,
                 stored: Callable[[], Awaitable[list[Upstream]]] | None = None,
                 version: Callable[[], Awaitable[int]] | None = None, refresh_seconds: float = 5.0,
                 on_change: Callable[[dict[str, Upstream]], None] | None = None):
        self._configured = list(upstreams)
        self.config_names = frozenset(u.name for u in self._configured)
        self._default_name = default_mirror
        self._tenant_exists = tenant_exists
        self._stored = stored
        self._version = version
        self._refresh_seconds = refresh_seconds
        self._on_change = on_change
        self._seen_version: int | None = None
        self._next_check = 0.0
        self._reloading = asyncio.Lock()
        self._build([])

    def _build(self, stored: list[Upstream]) -> None:
        upstreams = {u.name: u for u in self._configured}
        hosts: dict[str, Upstream] = {}
        for up in self._configured:
            for host in (up.name, *up.aliases):
                hosts[host] = up
        for up in stored:
            taken = [h for h in (up.name, *up.aliases) if h in hosts]
            if taken:
                log.warning("upstream %r from the metadata store is ignored: %s already name(s) another upstream",
                            up.name, ", ".join(taken))
                continue
            upstreams[up.name] = up
            for host in (up.name, *up.aliases):
                hosts[host] = up
        # Swapped whole, so a request routes by one consistent set.
        self.upstreams, self._hosts = upstreams, hosts
        # Path prefixes: names, and the aliases that can be spelled as a repository component.
        self._prefixes = {h: up for h, up in hosts.items() if COMPONENT_RE.fullmatch(h)}
        self.default = upstreams.get(self._default_name) if self._default_name else None

    def invalidate(self) -> None:
        """Reload on the next request (this replica changed the stored set)."""
        self._next_check = 0.0
        self._seen_version = None

    async def refresh(self, *, force: bool = False) -> None:
        """Reload the stored upstreams if the store's change counter moved (checked at most
        every refresh_seconds unless forced)."""
        if self._version is None or self._stored is None:
            return
        if not force and time.monotonic() < self._next_check:
            return
        async with self._reloading:
            if not force and time.monotonic() < self._next_check:
                return  # another request reloaded while this one waited
            try:
                version = await self._version()
                if version != self._seen_version:
                    self._build(await self._stored())
                    self._seen_version = version
                    if self._on_change is not None:
                        self._on_change(self.upstreams)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the last set
                # Keep routing by the last known set; the store's own errors show elsewhere.
                log.warning("could not reload the upstreams from the metadata store: %s: %s",
                            type(exc).__name__, exc)
            self._next_check = time.monotonic() + self._refresh_seconds

    def by_host(self, host: str) -> Upstream | None:
        return self._hosts.get(host.strip().lower())

    async def route(self, name: str, ns: str | None = None) -> Target | None:
        """The target of a request for repository `name` (already validated), or None if local."""
        await self.refresh()
        if ns:
            upstream = self.by_host(ns)
            if upstream is None:
                raise NameUnknown(f"unknown upstream registry {ns[:200]!r} (ns=): no upstream of this "
                                  "registry answers to it", detail={"ns": ns[:200]})
            return self._target(upstream, name, NS)
        first, _, rest = name.partition("/")
        upstream = self._prefixes.get(first)
        if upstream is not None:
            if not rest:
                raise NameUnknown(f"{first!r} is an upstream registry: name a repository under it, "
                                  f"such as {first}/library/alpine", detail={"name": name})
            return self._target(upstream, rest, PREFIX)
        if self.default is None or await self._tenant_exists(first):
            return None
        return self._target(self.default, name, MIRROR)

    @staticmethod
    def _target(upstream: Upstream, remote: str, via: str) -> Target:
        cache = f"{upstream.name}/{remote}"
        validate_name(cache)  # the prefix may take it past the length limit
        return Target(upstream, remote, cache, via)

    async def access_for(self, name: str) -> CacheAccess | None:
        """For the token endpoint: the cache rules of the namespace `name` reaches (without ns=)."""
        try:
            validate_name(name)
            target = await self.route(name)
        except OciError:
            return None
        return target.upstream.access if target is not None else None
