"""What the pull-through cache is given to run: `ProxySettings` (hub.config builds it from the `proxy`
section) and `UpstreamSpec`, one upstream registry as the config file or the admin API describes it.

Plain values (docs/architecture.md, L0): the proxy never sees the whole `Config`, and this module imports
nothing of the project but `hub.secret`.
"""

from __future__ import annotations

import dataclasses

from ..secret import Secret


@dataclasses.dataclass
class UpstreamSpec:
    """One upstream registry of the pull-through cache (a `proxy.upstreams` item, or an API upstream)."""

    # The cache namespace: one repository-name component such as `docker.io`. Cached content
    # lives in the repositories `<name>/<upstream repository>`, and `/v2/<name>/...` reaches it.
    name: str = ""
    # Where the upstream's /v2/ API is, e.g. https://registry-1.docker.io (config only: never
    # taken from a request).
    url: str = ""
    # Other registry hosts it answers to in containerd's `?ns=` (and as a path prefix when the
    # host is a valid name component), e.g. index.docker.io, registry-1.docker.io.
    aliases: list[str] = dataclasses.field(default_factory=list)
    # Credentials for the upstream's token dance; empty: anonymous.
    username: str = ""
    password: Secret = Secret("")  # noqa: RUF009 (immutable)
    # A manifest pulled by tag is checked upstream (one HEAD) at most this often.
    manifest_revalidate_seconds: int = 300
    # With auth on: members of these tenants may pull through this upstream (empty: any
    # signed-in user or robot)...
    tenants: list[str] = dataclasses.field(default_factory=list)
    # ...and anonymous clients too, if this is true.
    anonymous_pull: bool = False
    # Cache bounds, enforced by the periodic eviction (proxy.eviction_interval_seconds) and by
    # `daohub proxy evict`: the bytes of the distinct blobs cached from this upstream (0: no
    # cap), least recently pulled images evicted first; and the days an image may go unpulled
    # before it is evicted (0: kept while it fits).
    max_size_bytes: int = 0
    ttl_days: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProxySettings:
    """The `proxy` section, checked, with what it depends on elsewhere resolved (see hub/config.py's
    ProxyConfig for each value's meaning and default)."""

    upstreams: tuple[UpstreamSpec, ...]
    default_mirror: str
    connect_timeout_seconds: float
    read_timeout_seconds: float
    spool_dir: str                     # never empty: <data_dir>/proxy-spool when the config leaves it out
    eviction_interval_seconds: int
    pull_record_seconds: int
    upstream_refresh_seconds: float
    max_manifest_bytes: int            # registry.max_manifest_bytes: the largest manifest fetched upstream
