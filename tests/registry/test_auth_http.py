"""Token auth over HTTP: challenges, the token endpoint, scopes, tenants, robots, public repos."""

from __future__ import annotations

import base64
import json
import re

import pytest

from hub.keys import AUTH, STORE

from .conftest import basic, bearer, claims, push_image, token


async def test_challenge_without_token(hub):
    r = await hub.get("/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://{hub.server.host}:{hub.server.port}/auth/token",service="daohub"')
    r = await hub.get("/v2/team/app/manifests/latest")
    assert r.status == 401
    assert 'scope="repository:team/app:pull"' in r.headers["WWW-Authenticate"]
    assert (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
    r = await hub.post("/v2/team/app/blobs/uploads/")
    assert 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]


async def test_anonymous_token_passes_version_check_only(hub):
    tok = await token(hub, "repository:team/app:pull,push")
    assert claims(tok)["access"] == []
    assert (await hub.get("/v2/", headers=bearer(tok))).status == 200
    r = await hub.get("/v2/team/app/tags/list", headers=bearer(tok))
    assert r.status == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert (await r.json())["errors"][0]["code"] == "DENIED"


async def test_developer_push_and_pull_own_tenant_only(hub):
    tok = await token(hub, "repository:team/app:pull,push,delete", "repository:other/app:pull,push",
                      user="alice")
    c = claims(tok)
    assert c["sub"] == "alice" and c["aud"] == "daohub" and c["iss"] == "daohub"
    assert c["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    await push_image(hub, "team/app", tok)
    r = await hub.get("/v2/team/app/manifests/v1", headers=bearer(tok))
    assert r.status == 200
    r = await hub.delete("/v2/team/app/manifests/v1", headers=bearer(tok))
    assert r.status == 401  # developers do not delete
    r = await hub.post("/v2/other/app/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401 and (await r.json())["errors"][0]["code"] == "DENIED"


async def test_guest_pulls_but_cannot_push(hub):
    tok = await token(hub, "repository:team/app:pull,push", user="gary")
    assert claims(tok)["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    r = await hub.post("/v2/team/app/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401


async def test_token_for_repo_a_is_useless_on_repo_b(hub):
    tok = await token(hub, "repository:team/a:pull,push", user="alice")
    await push_image(hub, "team/a", tok)
    r = await hub.get("/v2/team/b/tags/list", headers=bearer(tok))
    assert r.status == 401


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"),            # signature
    lambda t: ".".join([t.split(".")[0], base64.urlsafe_b64encode(json.dumps(
        {**claims(t), "access": [{"type": "repository", "name": "other/app", "actions": ["pull", "push"]}]}
    ).encode()).decode().rstrip("="), t.split(".")[2]]),                           # tampered access claim
    lambda t: "not-a-jwt",
    lambda t: base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=") + "."
    + t.split(".")[1] + ".",                                                       # alg none
])
async def test_forged_tokens_are_refused(hub, mangle):
    tok = await token(hub, "repository:team/app:pull", user="alice")
    r = await hub.get("/v2/other/app/tags/list", headers=bearer(mangle(tok)))
    assert r.status == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_wrong_password_then_throttled(hub):
    r = await hub.get("/auth/token", headers=basic("alice", "wrong"))
    assert r.status == 401 and (await r.json())["errors"][0]["code"] == "UNAUTHORIZED"
    for _ in range(4):
        await hub.get("/auth/token", headers=basic("alice", "wrong"))
    r = await hub.get("/auth/token", headers=basic("alice", "alice-pw"))
    assert r.status == 429
    assert int(r.headers["Retry-After"]) > 0
    assert (await r.json())["errors"][0]["code"] == "TOOMANYREQUESTS"
    r = await hub.get("/auth/token", headers=basic("nobody", "x"))
    assert r.status in (401, 429)


async def test_robot_limited_to_its_patterns(hub):
    tok = await token(hub, "repository:team/ci/app:pull,push", "repository:team/app:pull",
                      user="robot$team+ci", password="robot-secret")
    assert claims(tok)["access"] == [{"type": "repository", "name": "team/ci/app", "actions": ["pull", "push"]}]
    await push_image(hub, "team/ci/app", tok)
    r = await hub.get("/auth/token", headers=basic("robot$team+ci", "wrong-secret"))
    assert r.status == 401


async def test_public_repository_anonymous_pull(hub):
    alice = await token(hub, "repository:team/pub:pull,push", user="alice")
    await push_image(hub, "team/pub", alice)
    anon = await token(hub, "repository:team/pub:pull,push")
    assert claims(anon)["access"] == []
    await hub.server.app[STORE].set_repository_public("team/pub", True)
    anon = await token(hub, "repository:team/pub:pull,push")
    assert claims(anon)["access"] == [{"type": "repository", "name": "team/pub", "actions": ["pull"]}]
    assert (await hub.get("/v2/team/pub/manifests/v1", headers=bearer(anon))).status == 200
    assert (await hub.post("/v2/team/pub/blobs/uploads/", headers=bearer(anon))).status == 401


async def test_catalog_lists_only_visible_repositories(hub):
    alice = await token(hub, "repository:team/app:pull,push", user="alice")
    await push_image(hub, "team/app", alice)
    bob = await token(hub, "repository:other/secret:pull,push", "repository:other/open:pull,push", user="bob")
    await push_image(hub, "other/secret", bob)
    await push_image(hub, "other/open", bob)
    await hub.server.app[STORE].set_repository_public("other/open", True)
    alice = await token(hub, "registry:catalog:*", user="alice")
    r = await hub.get("/v2/_catalog", headers=bearer(alice))
    assert (await r.json())["repositories"] == ["other/open", "team/app"]
    anon = await token(hub, "registry:catalog:*")
    r = await hub.get("/v2/_catalog", headers=bearer(anon))
    assert r.status == 401


async def test_digest_of_another_tenant_never_leaks(hub):
    alice = await token(hub, "repository:team/app:pull,push", user="alice")
    secret_config = await push_image(hub, "team/app", alice)
    bob = await token(hub, "repository:other/x:pull,push", "repository:team/app:pull", user="bob")
    r = await hub.head(f"/v2/other/x/blobs/{secret_config}", headers=bearer(bob))
    assert r.status == 404
    r = await hub.post(f"/v2/other/x/blobs/uploads/?mount={secret_config}&from=team/app", headers=bearer(bob))
    assert r.status == 202  # not mounted: a plain upload session instead
    r = await hub.post(f"/v2/other/x/blobs/uploads/?mount={secret_config}", headers=bearer(bob))
    assert r.status == 202
    r = await hub.head(f"/v2/other/x/blobs/{secret_config}", headers=bearer(bob))
    assert r.status == 404


async def test_oauth_password_and_refresh_grants(hub):
    r = await hub.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": "alice-pw",
                                            "client_id": "test", "access_type": "offline",
                                            "scope": "repository:team/app:pull", "service": "daohub"})
    assert r.status == 200, await r.text()
    body = await r.json()
    refresh = body["refresh_token"]
    assert claims(body["access_token"])["access"][0]["actions"] == ["pull"]
    r = await hub.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                            "client_id": "test", "scope": "repository:team/app:pull,push"})
    assert r.status == 200
    assert claims((await r.json())["access_token"])["access"][0]["actions"] == ["pull", "push"]
    # An access token is not a refresh token, and a revoked refresh token stops working.
    r = await hub.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "test",
                                            "refresh_token": body["access_token"]})
    assert r.status == 401
    await hub.server.app[AUTH].revoke_refresh_token(refresh)
    r = await hub.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                            "client_id": "test"})
    assert r.status == 401
    r = await hub.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": "alice-pw"})
    assert r.status == 400  # client_id is required


async def test_jwks_and_key_rotation(hub):
    tok = await token(hub, "repository:team/app:pull", user="alice")
    header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    r = await hub.get("/auth/jwks.json")
    kids = [k["kid"] for k in (await r.json())["keys"]]
    assert header["kid"] in kids
    assert all("d" not in k for k in (await r.json())["keys"])  # no private parts
    await hub.server.app[AUTH].rotate_keys()
    r = await hub.get("/v2/team/app/tags/list", headers=bearer(tok))
    assert r.status == 404  # old token still valid after rotation (repo just has no tags)
    new = await token(hub, "repository:team/app:pull", user="alice")
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] != header["kid"]


async def test_unknown_service_is_refused(hub):
    r = await hub.get("/auth/token", params={"service": "elsewhere"})
    assert r.status == 400


def _challenge_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


async def _follow(hub, response, user: str) -> str:
    """What a client that follows challenges does: ask the realm for the challenge's scopes."""
    params = _challenge_params(response.headers["WWW-Authenticate"])
    r = await hub.get("/auth/token", params={"service": params["service"], "scope": params["scope"]},
                      headers=basic(user, f"{user}-pw"))
    assert r.status == 200, await r.text()
    return (await r.json())["token"]


async def test_mount_challenge_names_the_source_and_the_mount_happens(hub):
    alice = await token(hub, "repository:team/app:pull,push", user="alice")
    config = await push_image(hub, "team/app", alice)
    url = f"/v2/team/copy/blobs/uploads/?mount={config}&from=team/app"
    r = await hub.post(url)
    assert r.status == 401
    assert _challenge_params(r.headers["WWW-Authenticate"])["scope"] == \
        "repository:team/copy:pull,push repository:team/app:pull"
    followed = await _follow(hub, r, "alice")
    assert {(a["name"], tuple(a["actions"])) for a in claims(followed)["access"]} == {
        ("team/copy", ("pull", "push")), ("team/app", ("pull",))}
    r = await hub.post(url, headers=bearer(followed))
    assert r.status == 201, await r.text()
    assert (await hub.head(f"/v2/team/copy/blobs/{config}", headers=bearer(followed))).status == 200


async def test_mount_with_a_token_for_the_target_only_asks_for_the_source(hub):
    alice = await token(hub, "repository:team/app:pull,push", user="alice")
    config = await push_image(hub, "team/app", alice)
    # A token from an earlier challenge, on a request that named only the target.
    r = await hub.head(f"/v2/team/copy2/blobs/{config}")
    target_only = await _follow(hub, r, "alice")
    url = f"/v2/team/copy2/blobs/uploads/?mount={config}&from=team/app"
    r = await hub.post(url, headers=bearer(target_only))
    assert r.status == 401 and (await r.json())["errors"][0]["code"] == "DENIED"
    params = _challenge_params(r.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:team/copy2:pull,push repository:team/app:pull"
    r = await hub.post(url, headers=bearer(await _follow(hub, r, "alice")))
    assert r.status == 201, await r.text()
    # A token without push on the target: the insufficient-scope challenge names both, too.
    gary = await token(hub, "repository:team/copy3:pull", user="gary")
    r = await hub.post(f"/v2/team/copy3/blobs/uploads/?mount={config}&from=team/app", headers=bearer(gary))
    assert r.status == 401
    assert _challenge_params(r.headers["WWW-Authenticate"])["scope"] == \
        "repository:team/copy3:pull,push repository:team/app:pull"


@pytest.mark.parametrize("source", ['team/app",scope="registry:catalog:*', "Team/App", "team/../app", ""])
async def test_mount_source_that_is_no_repository_name_stays_out_of_the_challenge(hub, source):
    r = await hub.post("/v2/team/copy/blobs/uploads/", params={"mount": "sha256:" + "a" * 64, "from": source})
    assert r.status == 401
    assert _challenge_params(r.headers["WWW-Authenticate"])["scope"] == "repository:team/copy:pull,push"


async def test_token_form_that_is_not_utf8_is_a_400(hub):
    # aiohttp's request.post() raised UnicodeDecodeError, a 500. Found by tests/fuzz (token_http).
    r = await hub.post("/auth/token", data=b"grant_type=password&client_id=x&username=alice\x9f&password=p",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400
    assert (await r.json())["errors"][0]["detail"] == {"error": "invalid_request"}


@pytest.mark.parametrize("path", ["/auth/token?service=daohub", "/api/v1/users"])
async def test_basic_credentials_that_are_not_ascii_are_a_401(hub, path):
    # base64.b64decode raises a plain ValueError for non-ASCII text, a 500. Found by tests/fuzz (token_http).
    r = await hub.get(path, headers={"Authorization": "Basic YWxpY2U6é"})
    assert r.status == 401
