"""Who may pull through the cache: the policy rules, and the same rules over HTTP with auth on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from auth.policy import CacheAccess, Principal, RepositoryInfo, RobotGrant, allowed_actions
from hub.keys import AUTH, STORE
from tests.registry.conftest import basic, bearer

from .conftest import DIST, dist_upstream
from .util import error_of, pull

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPEN = CacheAccess("docker.io")
TEAMS = CacheAccess("docker.io", frozenset({"team"}))
ANON = CacheAccess("docker.io", anonymous=True)


def robot(tenant: str, actions=("pull",), expired: bool = False) -> Principal:
    expires = NOW - timedelta(days=1) if expired else None
    return Principal.for_robot(f"robot${tenant}+ci", RobotGrant(tenant, (f"{tenant}/**",), frozenset(actions), expires))


@pytest.mark.parametrize("principal,access,expected", [
    (Principal.anonymous(), OPEN, set()),
    (Principal.anonymous(), TEAMS, set()),
    (Principal.anonymous(), ANON, {"pull"}),
    (Principal.user("u"), OPEN, {"pull"}),  # any signed-in user, member of nothing
    (Principal.user("u"), TEAMS, set()),
    (Principal.user("u", {"team": "guest"}), TEAMS, {"pull"}),
    (Principal.user("u", {"other": "admin"}), TEAMS, set()),
    (Principal.user("root", is_platform_admin=True), TEAMS, {"pull"}),  # pull only, even for the admin
    (Principal.user("u", {"team": "admin"}), OPEN, {"pull"}),
    (robot("team"), TEAMS, {"pull"}),
    (robot("other"), TEAMS, set()),
    (robot("team", ("push",)), OPEN, set()),
    (robot("team", expired=True), ANON, set()),
])
def test_cache_policy(principal, access, expected):
    repo = RepositoryInfo("docker.io/library/nginx", "docker.io", cache=access)
    assert allowed_actions(principal, repo, NOW) == expected


async def _secured_hub(proxy_hub, distribution, **upstream):
    client = await proxy_hub([dist_upstream(distribution, **upstream)], default_mirror=DIST, auth=True)
    app = client.server.app
    auth, store = app[AUTH], app[STORE]
    for tenant in ("team", "other"):
        await store.create_tenant(tenant)
    for user, tenant in (("tina", "team"), ("otto", "other")):
        await store.create_user(user, await auth.hash_password(f"{user}-pw"))
        await store.set_membership(tenant, user, "guest")
    return client


async def _token(client, scope: str, user: str | None = None) -> str:
    headers = basic(user, f"{user}-pw") if user else {}
    r = await client.get("/auth/token", params={"service": "daohub", "scope": scope}, headers=headers)
    assert r.status == 200, await r.text()
    return (await r.json())["token"]


async def test_allow_list_over_http(proxy_hub, distribution, dist):
    image = dist.push_image("library/guarded", "1")
    client = await _secured_hub(proxy_hub, distribution, tenants=["team"])
    name = f"{DIST}/library/guarded"
    # Without a token: a challenge naming the cache repository.
    r = await client.get(f"/v2/{name}/manifests/1")
    assert r.status == 401
    assert f'scope="repository:{name}:pull"' in r.headers["WWW-Authenticate"]
    # A member of an allowed tenant pulls; a member of another tenant and anonymous callers do not.
    tok = await _token(client, f"repository:{name}:pull,push", "tina")
    assert (await pull(client, name, "1", headers=bearer(tok))).digest == image.digest
    for tok in (await _token(client, f"repository:{name}:pull", "otto"),
                await _token(client, f"repository:{name}:pull")):
        r = await client.get(f"/v2/{name}/manifests/1", headers=bearer(tok))
        assert r.status == 401 and (await error_of(r))["code"] == "DENIED"
    # Push is refused before authorization, whoever asks.
    r = await client.post(f"/v2/{name}/blobs/uploads/", headers=bearer(tok))
    assert r.status == 405


async def test_mirror_mode_token_is_for_the_name_docker_sends(proxy_hub, distribution, dist):
    image = dist.push_image("library/mirrored", "1")
    client = await _secured_hub(proxy_hub, distribution, anonymous_pull=True)
    # dockerd asks for the name it pulls (library/...), not for the cache repository.
    tok = await _token(client, "repository:library/mirrored:pull")
    assert (await pull(client, "library/mirrored", "1", headers=bearer(tok))).digest == image.digest
    # That token is no good for another repository.
    r = await client.get(f"/v2/{DIST}/library/other/manifests/1", headers=bearer(tok))
    assert r.status == 401


async def test_ns_requests_need_a_token_for_the_cache_repository(proxy_hub, distribution, dist, token_hub):
    from .conftest import HUB, hub_upstream

    dist.push_image("library/nsguard", "1")
    client = await proxy_hub([dist_upstream(distribution, anonymous_pull=True),
                              hub_upstream(token_hub, tenants=["team"])], default_mirror=DIST, auth=True)
    await client.server.app[STORE].create_tenant("team")
    # An anonymous token for `library/nsguard` comes from the default mirror's rules (open)...
    tok = await _token(client, "repository:library/nsguard:pull")
    r = await client.get("/v2/library/nsguard/manifests/1", headers=bearer(tok))
    assert r.status == 200
    # ...and must not open the same name on another upstream chosen with ns=.
    r = await client.get(f"/v2/library/nsguard/manifests/1?ns={HUB}", headers=bearer(tok))
    assert r.status == 401
    assert f'scope="repository:{HUB}/library/nsguard:pull"' in r.headers["WWW-Authenticate"]
