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
a tenant of the same name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable

from auth.policy import CacheAccess

from ..config import Secret, UpstreamConfig
from ..errors import NameUnknown, OciError
from ..registry.names import COMPONENT_RE, validate_name

MIRROR, NS, PREFIX = "mirror", "ns", "prefix"


@dataclasses.dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str  # no trailing slash
    aliases: tuple[str, ...]
    username: str
    password: Secret
    revalidate_seconds: int
    access: CacheAccess

    @classmethod
    def from_config(cls, cfg: UpstreamConfig) -> Upstream:
        return cls(cfg.name, cfg.url.rstrip("/"), tuple(cfg.aliases), cfg.username, cfg.password,
                   cfg.manifest_revalidate_seconds,
                   CacheAccess(cfg.name, frozenset(cfg.tenants), cfg.anonymous_pull))

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
                 tenant_exists: Callable[[str], Awaitable[bool]]):
        self.upstreams = {u.name: u for u in upstreams}
        self._hosts: dict[str, Upstream] = {}
        for up in self.upstreams.values():
            for host in (up.name, *up.aliases):
                self._hosts[host] = up
        # Path prefixes: names, and the aliases that can be spelled as a repository component.
        self._prefixes = {h: up for h, up in self._hosts.items() if COMPONENT_RE.fullmatch(h)}
        self.default = self.upstreams.get(default_mirror) if default_mirror else None
        self._tenant_exists = tenant_exists

    def by_host(self, host: str) -> Upstream | None:
        return self._hosts.get(host.strip().lower())

    async def route(self, name: str, ns: str | None = None) -> Target | None:
        """The target of a request for repository `name` (already validated), or None if local."""
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
