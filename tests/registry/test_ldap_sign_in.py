"""Sign-in with LDAP accounts over HTTP, against a real slapd: the token endpoint binds to the
directory, accounts are provisioned on first sign-in, groups map to tenant roles and are asked
again within the cache, refusals, and a directory outage (local admins still sign in)."""

from __future__ import annotations

import asyncio
import time

import pytest

from hub.app import create_app
from hub.config import load_config
from hub.keys import AUTH, STORE
from tests.helpers.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, people_ldif

from .conftest import DATABASE_SETUP, METADATA_STORES, basic, claims, push_image

OU = "http"
BASE = f"ou={OU},{SUFFIX}"
PEOPLE = {"alice": "alice-Dir-1", "bob": "bob-Dir-2", "carol": "carol-Dir-3", "dave": "dave-Dir-4",
          "root": "root-Dir-5"}
GROUPS = {"devs": ["alice", "carol"], "readers": ["alice", "carol"], "platform": ["bob"], "leavers": ["dave"]}
ROOT_PW = "root-Local-0"  # the local platform admin "root" (the directory has a "root" too)
CACHE_SECONDS = 1


def group(name: str) -> str:
    return f"cn={name},{BASE}"


@pytest.fixture(scope="module")
def directory(slapd):
    slapd.add(people_ldif(OU, PEOPLE, GROUPS))
    return slapd


@pytest.fixture(params=METADATA_STORES)
async def hub(request, directory, aiohttp_client, tmp_path):
    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False},
        "database": DATABASE_SETUP[request.param](request, tmp_path),
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "login_failure_limit": 3,
                 "providers": [{
                     "name": "corp", "type": "ldap", "cache_seconds": CACHE_SECONDS,
                     "ldap": {"url": directory.url, "start_tls": True, "ca_file": str(directory.pki.ca_file),
                              "bind_dn": ROOT_DN, "bind_password": ROOT_PASSWORD, "user_search_base": BASE},
                     "group_mappings": [
                         {"group": group("devs"), "tenant": "team-a", "role": "developer"},
                         {"group": group("readers").upper(), "tenant": "team-b", "role": "guest"},
                         {"group": group("readers"), "tenant": "ghost", "role": "admin"},  # no such tenant
                         {"group": group("platform"), "platform_admin": True},
                         {"group": group("leavers"), "tenant": "team-a", "role": "maintainer"},
                     ]}]},
    })
    client = await aiohttp_client(create_app(cfg))
    app = client.server.app
    store, auth = app[STORE], app[AUTH]
    for tenant in ("team-a", "team-b"):
        await store.create_tenant(tenant)
    await store.create_user("root", await auth.hash_password(ROOT_PW), is_admin=True)
    return client


async def token_response(client, user: str, password: str, *scopes: str, offline: bool = False):
    query = [("service", "daohub")] + [("scope", s) for s in scopes]
    if offline:
        query.append(("offline_token", "true"))
    return await client.get("/auth/token", params=query, headers=basic(user, password))


async def access(client, user: str, *scopes: str) -> dict[str, list[str]]:
    r = await token_response(client, user, PEOPLE[user], *scopes)
    assert r.status == 200, await r.text()
    return {a["name"]: a["actions"] for a in claims((await r.json())["token"])["access"]}


async def test_ldap_account_signs_in_with_roles_from_its_groups(hub):
    scopes = ("repository:team-a/app:pull,push", "repository:team-b/app:pull,push", "repository:ghost/app:pull,push")
    assert await access(hub, "alice", *scopes) == {"team-a/app": ["pull", "push"], "team-b/app": ["pull"]}
    r = await token_response(hub, "alice", PEOPLE["alice"], "repository:team-a/app:pull,push")
    await push_image(hub, "team-a/app", (await r.json())["token"])
    # Provisioned once, bound to its provider; the audit row has what the directory said.
    store = hub.server.app[STORE]
    user = await store.get_user("alice")
    assert user.password_hash == "!provider:corp" and not user.is_admin
    rows = [r for r in await store.audit_entries(50, None) if r.action == "user.provision"]
    assert [(r.target, r.detail_json) for r in rows] == [
        ("alice", '{"provider": "corp", "display_name": "Alice Example", "email": "alice@daohub.test"}')]
    r = await hub.get("/api/v1/users/alice", headers=basic("root", ROOT_PW))
    assert (await r.json())["provider"] == "corp"
    # /me shows the mapped memberships (the rule for a tenant that does not exist gives nothing).
    me = await (await hub.get("/api/v1/me", headers=basic("alice", PEOPLE["alice"]))).json()
    assert me["memberships"] == [{"tenant": "team-a", "role": "developer"}, {"tenant": "team-b", "role": "guest"}]
    # A role given in DaoHub adds to the mapped ones (the higher wins).
    await store.set_membership("team-b", "alice", "maintainer")
    assert (await access(hub, "alice", "repository:team-b/app:delete"))["team-b/app"] == ["delete"]


async def test_a_platform_admin_group(hub):
    assert await access(hub, "bob", "repository:anywhere/app:pull,push") == {"anywhere/app": ["pull", "push"]}
    r = await hub.get("/api/v1/users", headers=basic("bob", PEOPLE["bob"]))
    assert r.status == 200


@pytest.mark.parametrize("username, password", [
    ("alice", "wrong-password"),
    ("alice", ""),
    ("*)(uid=*", PEOPLE["alice"]),
    ("*", PEOPLE["alice"]),
    ("al*", PEOPLE["alice"]),
    ("nobody", "nobody-pw-1"),
])
async def test_wrong_empty_and_injected_credentials_are_refused(hub, username, password):
    r = await token_response(hub, username, password, "repository:team-a/app:pull")
    assert r.status == 401, await r.text()
    form = {"grant_type": "password", "client_id": "test", "username": username, "password": password,
            "service": "daohub", "scope": "repository:team-a/app:pull"}
    assert (await hub.post("/auth/token", data=form)).status == 401
    assert await hub.server.app[STORE].get_user(username) is None


async def test_wrong_directory_passwords_meet_the_same_login_limiter(hub):
    for _ in range(3):  # auth.login_failure_limit here
        assert (await token_response(hub, "carol", "wrong-password")).status == 401
    r = await token_response(hub, "carol", PEOPLE["carol"])
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200  # another account, same address


async def test_a_local_account_of_the_same_name_wins(hub):
    # "root" is a local platform admin and a directory entry: the directory's password is refused.
    assert (await token_response(hub, "root", PEOPLE["root"])).status == 401
    assert (await token_response(hub, "root", ROOT_PW)).status == 200


async def test_removing_the_user_from_the_group_revokes_push_within_the_cache(hub, directory):
    scope = "repository:team-a/app:pull,push"
    assert await access(hub, "carol", scope) == {"team-a/app": ["pull", "push"]}
    directory.ldapmodify(f"dn: {group('devs')}\nchangetype: modify\ndelete: member\nmember: uid=carol,{BASE}\n")
    try:
        # Asked again at every token request: at most cache_seconds later the directory's answer counts.
        granted = None
        for _ in range(60):
            granted = await access(hub, "carol", scope)
            if granted == {}:
                break
            assert granted == {"team-a/app": ["pull", "push"]}
            await asyncio.sleep(0.25)
        assert granted == {}
    finally:
        directory.ldapmodify(f"dn: {group('devs')}\nchangetype: modify\nadd: member\nmember: uid=carol,{BASE}\n")


async def test_a_user_removed_from_the_directory_loses_access(hub, directory):
    r = await token_response(hub, "dave", PEOPLE["dave"], "repository:team-a/app:pull", offline=True)
    assert r.status == 200
    refresh = (await r.json())["refresh_token"]
    directory.ldapmodify(f"dn: uid=dave,{BASE}\nchangetype: delete\n")
    try:
        hub.server.app[AUTH].directory.forget()  # what cache_seconds does, without waiting for it
        assert (await token_response(hub, "dave", PEOPLE["dave"])).status == 401
        form = {"grant_type": "refresh_token", "client_id": "daohub", "refresh_token": refresh, "service": "daohub"}
        assert (await hub.post("/auth/token", data=form)).status == 401
        assert (await hub.get("/api/v1/me", headers=basic("dave", PEOPLE["dave"]))).status == 401
    finally:
        directory.add(people_ldif(OU, {"dave": PEOPLE["dave"]}, {}).split("\n\n", 1)[1])


async def test_a_directory_account_gets_no_local_password(hub):
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200
    r = await hub.put("/api/v1/users/alice/password", headers=basic("root", ROOT_PW),
                      json={"password": "a-local-password"})
    assert r.status == 409 and "identity provider 'corp'" in (await r.json())["detail"]
    r = await hub.put("/api/v1/users/alice/password", headers=basic("alice", PEOPLE["alice"]),
                      json={"password": "a-local-password", "current_password": PEOPLE["alice"]})
    assert r.status == 409


async def test_a_disabled_directory_account_stays_out_and_a_deleted_one_comes_back(hub):
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200
    admin = basic("root", ROOT_PW)
    r = await hub.patch("/api/v1/users/alice", headers=admin, json={"disabled": True})
    assert r.status == 200 and (await r.json())["provider"] == "corp"
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 401
    # Deleting the row is no ban: the next sign-in provisions the account again (docs/sign-in.md).
    assert (await hub.delete("/api/v1/users/alice", headers=admin)).status == 204
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200
    assert not (await hub.server.app[STORE].get_user("alice")).disabled


async def test_directory_down_local_admin_signs_in_ldap_users_get_503(hub, directory):
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200
    directory.stop()
    try:
        hub.server.app[AUTH].directory.forget()
        started = time.monotonic()
        r = await token_response(hub, "root", ROOT_PW, "repository:team-a/app:pull,push")
        assert r.status == 200
        assert claims((await r.json())["token"])["access"][0]["actions"] == ["pull", "push"]
        # More attempts than the login limit (3): an outage is no failed login, so never 429.
        for user in ("alice", "alice", "alice", "alice", "carol"):
            r = await token_response(hub, user, PEOPLE[user], "repository:team-a/app:pull")
            assert r.status == 503, await r.text()
            body = await r.json()
            assert body["errors"][0]["code"] == "UNAVAILABLE"
            assert "directory corp is unavailable" in body["errors"][0]["message"]
            assert r.headers["Retry-After"] == "30"
        # A name without a row may be a directory account: it is not refused as unknown either.
        assert (await token_response(hub, "newcomer", "newcomer-pw")).status == 503
        r = await hub.get("/api/v1/me", headers=basic("alice", PEOPLE["alice"]))
        assert r.status == 503 and "directory corp is unavailable" in (await r.json())["detail"]
        assert (await hub.get("/api/v1/me", headers=basic("root", ROOT_PW))).status == 200
        print(f"\noutage answers took {time.monotonic() - started:.2f}s")
    finally:
        directory.start()
    assert (await token_response(hub, "alice", PEOPLE["alice"])).status == 200


async def test_web_sign_in_with_an_ldap_account_and_while_the_directory_is_down(hub, directory):
    from tests.web.test_pages import csrf_of, get_page, origin

    async def sign_in(password: str):
        token = csrf_of(await get_page(hub, "/apps/login"))
        return await hub.post("/apps/login", data={"csrf": token, "username": "alice", "password": password,
                                                    "next": "/apps/"}, headers=origin(hub), allow_redirects=False)

    assert (await sign_in("wrong-password")).status == 401
    assert (await sign_in(PEOPLE["alice"])).status == 303
    assert "Signed in as <strong>alice</strong>" in await get_page(hub, "/apps/")
    directory.stop()
    try:
        hub.server.app[AUTH].directory.forget()
        # Browsing goes on (with a visitor's rights: nothing the directory would have to vouch
        # for), and the session is not ended...
        await get_page(hub, "/apps/")
        r = await sign_in(PEOPLE["alice"])
        assert r.status == 503 and "directory corp is unavailable" in await r.text()
    finally:
        directory.start()
    # ...so once the directory answers again, the same cookie is alice's again.
    assert "Signed in as <strong>alice</strong>" in await get_page(hub, "/apps/")


async def test_a_stalled_directory_holds_up_no_local_sign_in(aiohttp_client, tmp_path):
    """A directory that accepts connections and never answers: every exchange runs into its
    timeout, and local sign-ins still go through at once (they do not queue behind them)."""
    import socket

    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(64)  # the kernel completes connections; nothing ever reads them
        cfg = load_config(environ={}, overrides={
            "data_dir": str(tmp_path), "log": {"access_log": False},
            "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "providers": [{
                "name": "stalled", "type": "ldap", "ldap": {
                    "url": f"ldap://127.0.0.1:{stalled.getsockname()[1]}", "user_search_base": BASE,
                    "timeout_seconds": 2}}]}})
        client = await aiohttp_client(create_app(cfg))
        app = client.server.app
        await app[STORE].create_user("root", await app[AUTH].hash_password(ROOT_PW), is_admin=True)
        waiting = [asyncio.create_task(token_response(client, f"user{i}", "user-password-1")) for i in range(6)]
        await asyncio.sleep(0.3)  # let them reach the directory first
        r = await token_response(client, "root", ROOT_PW, "repository:team-a/app:pull,push")
        assert r.status == 200
        done = [await t.result().text() for t in waiting if t.done()]
        assert not done, done
        for response in await asyncio.gather(*waiting):
            assert response.status == 503
            assert "directory stalled is unavailable" in (await response.json())["errors"][0]["message"]


async def test_admin_api_shows_providers_without_secrets_and_looks_users_up(hub, directory):
    admin = basic("root", ROOT_PW)
    r = await hub.get("/api/v1/identity-providers", headers=admin)
    assert r.status == 200
    text = await r.text()
    assert ROOT_PASSWORD not in text
    (corp,) = (await r.json())["items"]
    assert (corp["name"], corp["source"], corp["read_only"], corp["ldap"]["bind_password_set"]) == (
        "corp", "config", True, True)
    assert corp["ldap"]["bind_dn"] == ROOT_DN and "bind_password" not in corp["ldap"]
    assert corp["group_mappings"][3] == {"group": group("platform"), "tenant": None, "role": None,
                                         "platform_admin": True}
    assert (await hub.get("/api/v1/identity-providers/corp", headers=admin)).status == 200
    assert (await hub.get("/api/v1/identity-providers/nope", headers=admin)).status == 404
    r = await hub.post("/api/v1/identity-providers/corp/lookup", headers=admin, json={"username": "alice"})
    body = await r.json()
    assert body["available"] and body["account"]["memberships"] == [
        {"tenant": "team-a", "role": "developer"}, {"tenant": "team-b", "role": "guest"}]
    assert body["account"]["groups"] == sorted([group("devs").lower(), group("readers").lower()])
    assert await hub.server.app[STORE].get_user("alice") is None  # a lookup provisions nothing
    r = await hub.post("/api/v1/identity-providers/corp/lookup", headers=admin, json={"username": "nobody"})
    assert (await r.json())["account"] is None
    # Only the platform admin; a directory user who is not one gets 403.
    r = await hub.get("/api/v1/identity-providers", headers=basic("alice", PEOPLE["alice"]))
    assert r.status == 403
    directory.stop()
    try:
        r = await hub.post("/api/v1/identity-providers/corp/lookup", headers=admin, json={"username": "alice"})
        assert (await r.json()) == {"provider": "corp", "available": False, "account": None,
                                    "error": "directory corp is unavailable"}
    finally:
        directory.start()
