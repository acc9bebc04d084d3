"""The routing rule, as a table: which upstream and which cache repository a request reaches."""

from __future__ import annotations

import pytest

from hub.config import UpstreamConfig
from hub.errors import NameInvalid, NameUnknown
from hub.proxy.routing import MIRROR, NS, PREFIX, Router, Upstream

UPSTREAMS = [
    Upstream.from_config(UpstreamConfig(name="docker.io", url="https://registry-1.docker.io",
                                        aliases=["index.docker.io", "registry-1.docker.io", "localhost:5000"])),
    Upstream.from_config(UpstreamConfig(name="ghcr.io", url="https://ghcr.io")),
]
TENANTS = {"team", "library2"}


async def _tenant_exists(name: str) -> bool:
    return name in TENANTS


def router(default: str = "docker.io") -> Router:
    return Router(UPSTREAMS, default, _tenant_exists)


@pytest.mark.parametrize("name,ns,expected", [
    # Mirror mode: not a tenant, not an upstream: the default mirror, whole name.
    ("library/nginx", None, ("docker.io", "library/nginx", "docker.io/library/nginx", MIRROR)),
    ("alpine", None, ("docker.io", "alpine", "docker.io/alpine", MIRROR)),
    # A tenant's repositories stay local.
    ("team/app", None, None),
    ("library2/x", None, None),
    # Path prefix: by name, or by an alias spelled as a name component.
    ("docker.io/library/nginx", None, ("docker.io", "library/nginx", "docker.io/library/nginx", PREFIX)),
    ("index.docker.io/library/nginx", None, ("docker.io", "library/nginx", "docker.io/library/nginx", PREFIX)),
    ("ghcr.io/org/tool", None, ("ghcr.io", "org/tool", "ghcr.io/org/tool", PREFIX)),
    # containerd's ns= selects by name or alias (any case), and the whole name is the upstream's.
    ("library/nginx", "docker.io", ("docker.io", "library/nginx", "docker.io/library/nginx", NS)),
    ("library/nginx", "Registry-1.Docker.IO", ("docker.io", "library/nginx", "docker.io/library/nginx", NS)),
    ("library/nginx", "localhost:5000", ("docker.io", "library/nginx", "docker.io/library/nginx", NS)),
    ("team/app", "ghcr.io", ("ghcr.io", "team/app", "ghcr.io/team/app", NS)),
    ("ghcr.io/x", "docker.io", ("docker.io", "ghcr.io/x", "docker.io/ghcr.io/x", NS)),
])
async def test_route(name, ns, expected):
    target = await router().route(name, ns)
    got = None if target is None else (target.upstream.name, target.remote, target.cache, target.via)
    assert got == expected


async def test_without_a_default_mirror_unknown_names_are_local():
    assert await router("").route("library/nginx") is None
    assert (await router("").route("ghcr.io/org/tool")).cache == "ghcr.io/org/tool"


@pytest.mark.parametrize("name,ns,error", [
    ("library/nginx", "quay.io", NameUnknown),   # an unknown ns is refused, never dialled
    ("docker.io", None, NameUnknown),            # an upstream with no repository under it
    ("a/" + "b" * 245, None, NameInvalid),       # the cache prefix would pass the length limit
])
async def test_route_errors(name, ns, error):
    with pytest.raises(error):
        await router().route(name, ns)


async def test_token_endpoint_view_ignores_ns_and_bad_names():
    r = router()
    assert (await r.access_for("library/nginx")).upstream == "docker.io"
    assert await r.access_for("team/app") is None
    assert await r.access_for("docker.io") is None
    assert await r.access_for("UPPER/case") is None
