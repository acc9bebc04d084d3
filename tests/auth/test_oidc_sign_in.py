"""Sign-in with OpenID Connect over HTTP: an in-process DaoHub (SQLite and PostgreSQL) against the
real test provider (pyop on loopback). The browser's part is played by an aiohttp session (the
provider's login form and consent page); tests/auth/test_oidc_browser.py does it in Chromium.

Shown: the authorization-code flow with PKCE and a server-side state bound to the browser, JIT
provisioning with display name and email, roles from the groups claim re-evaluated at each sign-in,
tampered and replayed states, replayed codes, bad ID tokens, the provider's own refusal, and
personal CLI secrets for the token endpoint (created, listed, revoked, an account disabled)."""

from __future__ import annotations

import json
import re
import ssl
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from hub.app import create_app
from hub.config import load_config
from hub.keys import AUTH, STORE
from tests.helpers.oidc_provider import OidcUser
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES, basic, claims

CLIENT, SECRET = "daohub-http", "http-client-secret"
ROOT_PW = "root-Local-0"
GROUPS = {"ivy": ["registry-devs", "registry-readers"], "pam": ["registry-platform"], "ned": []}


@pytest.fixture(scope="module")
def op(oidc_op):
    oidc_op.add_client(CLIENT, SECRET, [])
    for user, groups in GROUPS.items():
        oidc_op.add_user(user, OidcUser(f"{user}-pw", f"{user.title()} Example", f"{user}@example.test", list(groups)))
    oidc_op.add_user("imposter", OidcUser("imp-pw", "Imposter", "imp@example.test", [], username="root"))
    return oidc_op


@pytest.fixture(params=METADATA_STORES)
async def hub(request, op, aiohttp_client, tmp_path):
    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False},
        "database": DATABASE_SETUP[request.param](request, tmp_path),
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "providers": [{
            "name": "corp-sso", "type": "oidc",
            "oidc": {"issuer": op.issuer, "client_id": CLIENT, "client_secret": SECRET, "ca_file": str(op.ca_file),
                     "display_name": "Corp SSO"},
            "group_mappings": [
                {"group": "registry-devs", "tenant": "team-a", "role": "developer"},
                {"group": "registry-readers", "tenant": "team-b", "role": "guest"},
                {"group": "registry-platform", "platform_admin": True},
            ]}]},
    })
    client = await aiohttp_client(create_app(cfg))
    store, auth = client.server.app[STORE], client.server.app[AUTH]
    for tenant in ("team-a", "team-b"):
        await store.create_tenant(tenant)
    await store.create_user("root", await auth.hash_password(ROOT_PW), is_admin=True)
    op.clients[CLIENT]["redirect_uris"] = [f"{client.make_url('/apps/login/corp-sso/callback')}"]
    yield client
    op.mode = ""


async def at_provider(op, url: str, user: str, consent: str = "yes") -> str:
    """The person at the provider: its login form, then its consent page; the redirect back."""
    context = ssl.create_default_context(cafile=str(op.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.get(url) as r:
            assert r.status == 200, await r.text()
            query = re.search(r'name="query" value="([^"]*)"', await r.text()).group(1).replace("&amp;", "&")
        async with http.post(f"{op.issuer}/login", data={"query": query, "username": user,
                                                         "password": f"{user}-pw" if user != "imposter" else "imp-pw"}) as r:
            cid = re.search(r'name=consent value="([^"]+)"', await r.text()).group(1)
        async with http.post(f"{op.issuer}/consent", data={"consent": cid, "allow": consent},
                             allow_redirects=False) as r:
            assert r.status == 302
            return r.headers["Location"]


async def start(hub, next_path: str = "/console/") -> str:
    r = await hub.get("/apps/login/corp-sso", params={"next": next_path}, allow_redirects=False)
    assert r.status == 302, await r.text()
    return r.headers["Location"]


async def callback(hub, location: str):
    parts = urlsplit(location)
    return await hub.get(f"{parts.path}?{parts.query}", allow_redirects=False)


async def sign_in(hub, op, user: str, next_path: str = "/console/"):
    return await callback(hub, await at_provider(op, await start(hub, next_path), user))


async def test_the_login_page_offers_the_provider(hub):
    r = await hub.get("/apps/login?next=/console/")
    text = await r.text()
    assert "Sign in with Corp SSO" in text
    assert 'href="/apps/login/corp-sso?next=%2Fconsole%2F"' in text


async def test_sign_in_provisions_the_account_with_roles_from_its_groups(hub, op):
    location = await start(hub)
    q = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{op.issuer}/authorize?")
    assert q["code_challenge_method"] == ["S256"] and q["client_id"] == [CLIENT] and q["nonce"] and q["state"]
    r = await callback(hub, await at_provider(op, location, "ivy"))
    assert r.status == 303 and r.headers["Location"] == "/console/", await r.text()
    store = hub.server.app[STORE]
    user = await store.get_user("ivy")
    assert user.password_hash == "!provider:corp-sso"
    account = await store.provider_account("ivy")
    assert (account.display_name, account.email, account.groups) == (
        "Ivy Example", "ivy@example.test", ("registry-devs", "registry-readers"))
    rows = [r for r in await store.audit_entries(50, None) if r.action == "user.provision"]
    assert [(r.target, json.loads(r.detail_json)) for r in rows] == [
        ("ivy", {"provider": "corp-sso", "display_name": "Ivy Example", "email": "ivy@example.test"})]
    # Signed in: the console shows who, and the roles the groups give.
    page = await (await hub.get("/console/account")).text()
    assert "ivy" in page and "Corp SSO" in page
    assert re.search(r"team-a</a>\s*</td>\s*<td>developer", page) and re.search(r"team-b</a>\s*</td>\s*<td>guest", page)


async def test_groups_are_read_again_at_each_sign_in(hub, op):
    await sign_in(hub, op, "ned")
    auth = hub.server.app[AUTH]
    assert (await auth.principal_for_subject("ned")).memberships == {}
    op.users["ned"].groups = ["registry-devs"]
    try:
        await sign_in(hub, op, "ned")
        assert {t: r.value for t, r in (await auth.principal_for_subject("ned")).memberships.items()} == {
            "team-a": "developer"}
    finally:
        op.users["ned"].groups = []
    await sign_in(hub, op, "ned")
    assert (await auth.principal_for_subject("ned")).memberships == {}


async def test_a_platform_admin_group(hub, op):
    await sign_in(hub, op, "pam")
    assert (await hub.server.app[AUTH].principal_for_subject("pam")).is_platform_admin


async def test_a_tampered_state_is_refused(hub, op):
    location = await at_provider(op, await start(hub), "ivy")
    tampered = re.sub(r"state=([^&]+)", lambda m: "state=" + m.group(1)[:-2] + "xx", location)
    r = await callback(hub, tampered)
    assert r.status == 401 and "not started here" in await r.text()
    assert await hub.server.app[STORE].get_user("ivy") is None
    # The real state still works once, then never again (a replayed callback).
    r = await callback(hub, location)
    assert r.status == 303
    r = await callback(hub, location)
    assert r.status == 401 and "not started here" in await r.text()


async def test_a_state_from_another_browser_is_refused(hub, op, aiohttp_client):
    # The attacker starts a sign-in in their browser and sends the victim the callback URL.
    location = await at_provider(op, await start(hub), "ivy")
    victim = await aiohttp_client(hub.server)
    r = await callback(victim, location)
    assert r.status == 401 and "not started here" in await r.text()


async def test_a_replayed_code_is_refused(hub, op):
    location = await at_provider(op, await start(hub), "ivy")
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert (await callback(hub, location)).status == 303
    # A new sign-in of this browser with the old code: the provider refuses it (used already, and
    # issued for another PKCE challenge; tests/auth/test_oidc.py replays it with its own verifier).
    fresh = parse_qs(urlsplit(await start(hub)).query)["state"][0]
    r = await hub.get("/apps/login/corp-sso/callback", params={"state": fresh, "code": code}, allow_redirects=False)
    assert r.status == 401 and "refused the sign-in" in await r.text()


@pytest.mark.parametrize("mode", ["wrong-aud", "expired", "alg-none", "hs256-public", "wrong-nonce"])
async def test_bad_id_tokens_sign_no_one_in(hub, op, mode):
    location = await at_provider(op, await start(hub), "ivy")
    op.mode = mode
    r = await callback(hub, location)
    assert r.status == 401 and "Sign-in refused" in await r.text()
    assert await hub.server.app[STORE].get_user("ivy") is None
    r = await hub.get("/console/account", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/apps/login")


async def test_the_provider_saying_no_and_a_name_taken_by_a_local_account(hub, op):
    r = await callback(hub, await at_provider(op, await start(hub), "ivy", consent="no"))
    assert r.status == 401 and "access_denied" in await r.text()
    # The provider's preferred_username is "root", a local account here: never taken over.
    r = await sign_in(hub, op, "imposter")
    assert r.status == 401 and "belongs to another account" in await r.text()
    assert (await hub.server.app[STORE].get_user("root")).is_admin


async def test_an_unknown_provider_and_an_open_redirect(hub, op):
    assert (await hub.get("/apps/login/nope", allow_redirects=False)).status == 404
    r = await sign_in(hub, op, "ivy", next_path="https://evil.example/")
    assert r.status == 303 and r.headers["Location"] == "/apps/"


async def test_a_cli_secret_signs_in_at_the_token_endpoint_until_revoked(hub, op):
    await sign_in(hub, op, "ivy")
    # Created in the console (signed in through the provider), shown once.
    page = await (await hub.get("/console/account")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = await hub.post("/console/account", data={"csrf": csrf, "action": "create", "name": "laptop"},
                       headers={"Origin": str(hub.make_url("")).rstrip("/")})
    text = await r.text()
    assert r.status == 200, text
    secret = re.search(r'id="new-secret"[^>]*>(dhcli_[^<]+)<', text).group(1)
    scope = "repository:team-a/app:pull,push"
    r = await hub.get("/auth/token", params={"service": "daohub", "scope": scope}, headers=basic("ivy", secret))
    assert r.status == 200, await r.text()
    assert claims((await r.json())["token"])["access"] == [{"type": "repository", "name": "team-a/app",
                                                           "actions": ["pull", "push"]}]
    # Someone else's name with it, a changed secret, the API: refused / listed without the secret.
    assert (await hub.get("/auth/token", params={"service": "daohub"}, headers=basic("pam", secret))).status == 401
    assert (await hub.get("/auth/token", params={"service": "daohub"},
                          headers=basic("ivy", secret[:-1] + "x"))).status == 401
    listed = await (await hub.get("/api/v1/users/ivy/cli-secrets", headers=basic("ivy", secret))).json()
    (item,) = listed["items"]
    assert item["name"] == "laptop" and "secret" not in item and item["last_used_at"]
    # A second one through the API; the admin revokes the first.
    r = await hub.post("/api/v1/users/ivy/cli-secrets", json={"name": "ci", "expires_in_days": 1},
                       headers=basic("ivy", secret))
    assert r.status == 201
    second = (await r.json())["secret"]
    assert (await hub.post("/api/v1/users/ivy/cli-secrets", json={"name": "x"},
                           headers=basic("root", ROOT_PW))).status == 403  # never for someone else
    r = await hub.delete(f"/api/v1/users/ivy/cli-secrets/{item['id']}", headers=basic("root", ROOT_PW))
    assert r.status == 204
    assert (await hub.get("/auth/token", params={"service": "daohub"}, headers=basic("ivy", secret))).status == 401
    assert (await hub.get("/auth/token", params={"service": "daohub"}, headers=basic("ivy", second))).status == 200
    actions = [(r.actor, r.action) for r in await hub.server.app[STORE].audit_entries(50, None)
               if r.action.startswith("user.cli_secret")]
    assert actions == [("root", "user.cli_secret.delete"), ("ivy", "user.cli_secret.create"),
                       ("ivy", "user.cli_secret.create")]
    # Disabled by the admin: the secret stops at the next token request.
    r = await hub.patch("/api/v1/users/ivy", json={"disabled": True}, headers=basic("root", ROOT_PW))
    assert r.status == 200
    assert (await hub.get("/auth/token", params={"service": "daohub"}, headers=basic("ivy", second))).status == 401


async def test_cli_secret_roles_follow_the_groups_of_the_last_sign_in(hub, op):
    await sign_in(hub, op, "ned")
    auth = hub.server.app[AUTH]
    made = await auth.create_cli_secret("ned", "t", "ned")
    scope = "repository:team-a/app:pull,push"

    async def granted():
        r = await hub.get("/auth/token", params={"service": "daohub", "scope": scope}, headers=basic("ned", made.secret))
        assert r.status == 200
        return claims((await r.json())["token"])["access"]

    assert await granted() == []
    op.users["ned"].groups = ["registry-devs"]
    try:
        assert await granted() == []  # the provider's change counts from the next sign-in
        await sign_in(hub, op, "ned")
        assert await granted() == [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]
    finally:
        op.users["ned"].groups = []
    await sign_in(hub, op, "ned")
    assert await granted() == []


async def test_a_provider_that_is_down_gives_503_and_local_accounts_keep_working(aiohttp_client, tmp_path):
    from tests.helpers.server import free_port

    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False},
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "providers": [{
            "name": "gone", "type": "oidc",
            "oidc": {"issuer": f"https://127.0.0.1:{free_port('127.0.0.1')}", "client_id": "c", "timeout_seconds": 2}}]},
    })
    hub = await aiohttp_client(create_app(cfg))
    store, auth = hub.server.app[STORE], hub.server.app[AUTH]
    await store.create_user("root", await auth.hash_password(ROOT_PW), is_admin=True)
    r = await hub.get("/apps/login/gone", allow_redirects=False)
    text = await r.text()
    assert r.status == 503 and "identity provider gone is unavailable" in text
    assert "Sign in with gone" in text  # the page still offers it, and the password form
    # Break-glass: the local platform admin signs in as always.
    r = await hub.get("/auth/token", params={"service": "daohub"}, headers=basic("root", ROOT_PW))
    assert r.status == 200
