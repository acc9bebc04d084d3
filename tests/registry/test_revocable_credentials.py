"""Credentials that can be taken back, over HTTP: refresh tokens die with a password change, a
disabled user and a deleted robot, and users list and revoke them through the admin API; the
login limiter counts before it hashes, by (account, address) and by address, behind trusted
proxies only; the token endpoint bounds its requests and refuses non-canonical names."""

from __future__ import annotations

import asyncio
import time

import pytest

from auth.passwords import hash_secret
from hub.app import create_app
from hub.clientaddr import forwarded_client
from hub.config import load_config
from hub.db.identity import RobotRecord
from hub.handlers.token import MAX_REQUEST_BYTES, MAX_SCOPES
from hub.keys import AUTH, STORE

from .conftest import DATABASE_SETUP, METADATA_STORES, basic, claims


async def offline_login(hub, user: str, password: str, client_id: str = "test") -> str:
    r = await hub.post("/auth/token", data={"grant_type": "password", "username": user, "password": password,
                                            "client_id": client_id, "access_type": "offline"},
                       headers={"User-Agent": "tests/1.0"})
    assert r.status == 200, await r.text()
    return (await r.json())["refresh_token"]


async def refresh(hub, token: str, client_id: str = "test") -> int:
    r = await hub.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                            "client_id": client_id, "scope": "repository:team/app:pull"})
    return r.status


async def make_admin(hub) -> dict:
    app = hub.server.app
    await app[STORE].create_user("root", await app[AUTH].hash_password("root-pw-123"), is_admin=True)
    return basic("root", "root-pw-123")


# Refresh tokens ------------------------------------------------------------------------------
async def test_a_password_change_ends_every_refresh_token(hub):
    first, second = await offline_login(hub, "alice", "alice-pw"), await offline_login(hub, "alice", "alice-pw")
    assert await refresh(hub, first) == 200
    r = await hub.put("/api/v1/users/alice/password", json={"password": "alice-new-pw", "current_password": "alice-pw"},
                      headers=basic("alice", "alice-pw"))
    assert r.status == 204, await r.text()
    assert [await refresh(hub, t) for t in (first, second)] == [401, 401]
    # Changing it back does not bring them back either; a new login works.
    r = await hub.put("/api/v1/users/alice/password", json={"password": "alice-pw", "current_password": "alice-new-pw"},
                      headers=basic("alice", "alice-new-pw"))
    assert r.status == 204
    assert await refresh(hub, first) == 401
    assert await refresh(hub, await offline_login(hub, "alice", "alice-pw")) == 200


async def test_disabling_a_user_ends_their_refresh_tokens_for_good(hub):
    admin = await make_admin(hub)
    alice, gary = await offline_login(hub, "alice", "alice-pw"), await offline_login(hub, "gary", "gary-pw")
    r = await hub.patch("/api/v1/users/alice", json={"disabled": True}, headers=admin)
    assert r.status == 200
    assert await refresh(hub, alice) == 401
    r = await hub.patch("/api/v1/users/alice", json={"disabled": False}, headers=admin)
    assert r.status == 200
    assert await refresh(hub, alice) == 401  # re-enabled: the token issued before stays dead
    assert await refresh(hub, gary) == 200


async def test_a_deleted_robot_or_user_recreated_under_its_name_gets_no_old_token(hub):
    admin = await make_admin(hub)
    r = await hub.get("/auth/token", params={"offline_token": "true", "client_id": "ci", "service": "daohub"},
                      headers=basic("robot$team+ci", "robot-secret"))
    robot_token = (await r.json())["refresh_token"]
    assert await refresh(hub, robot_token, "ci") == 200
    store = hub.server.app[STORE]
    assert (await hub.delete("/api/v1/tenants/team/robots/ci", headers=admin)).status == 204
    assert await refresh(hub, robot_token, "ci") == 401
    await asyncio.sleep(0.01)  # the new robot is created after the token was issued
    await store.create_robot(RobotRecord("team", "ci", hash_secret("other-secret"), ("team/ci/*",), ("pull",),
                                         None, False, time.time()))
    assert await refresh(hub, robot_token, "ci") == 401

    gary = await offline_login(hub, "gary", "gary-pw")
    assert (await hub.delete("/api/v1/users/gary", headers=admin)).status == 204
    await store.create_user("gary", await hub.server.app[AUTH].hash_password("gary-pw"))
    assert await refresh(hub, gary) == 401


async def test_users_list_and_revoke_their_own_refresh_tokens(hub):
    admin = await make_admin(hub)
    alice = basic("alice", "alice-pw")
    tokens = [await offline_login(hub, "alice", "alice-pw", client_id=f"c{i}") for i in range(3)]
    bob_token = await offline_login(hub, "bob", "bob-pw")
    r = await hub.get("/api/v1/users/alice/refresh-tokens", headers=alice)
    assert r.status == 200
    items = (await r.json())["items"]
    assert sorted(i["client_id"] for i in items) == ["c0", "c1", "c2"]
    assert all(i["user_agent"] == "tests/1.0" and i["last_used_at"] is None for i in items)
    assert {i["id"] for i in items} == {claims(t)["jti"] for t in tokens}
    text = await r.text()
    assert not any(t in text for t in tokens)  # ids only, never the tokens
    # Someone else's are not theirs to see or revoke.
    assert (await hub.get("/api/v1/users/alice/refresh-tokens", headers=basic("bob", "bob-pw"))).status == 403
    jti = claims(tokens[0])["jti"]
    assert (await hub.delete(f"/api/v1/users/alice/refresh-tokens/{jti}", headers=basic("bob", "bob-pw"))
            ).status == 403
    assert (await hub.delete(f"/api/v1/users/alice/refresh-tokens/{jti}", headers=alice)).status == 204
    assert await refresh(hub, tokens[0], "c0") == 401 and await refresh(hub, tokens[1], "c1") == 200
    assert (await hub.delete(f"/api/v1/users/alice/refresh-tokens/{jti}", headers=alice)).status == 404
    r = await hub.get("/api/v1/users/alice/refresh-tokens", headers=alice)
    assert [i["last_used_at"] is not None for i in sorted((await r.json())["items"], key=lambda i: i["client_id"])
            ] == [True, False]
    # The platform admin revokes all of a user's at once; bob's stay.
    assert (await hub.delete("/api/v1/users/alice/refresh-tokens", headers=admin)).status == 204
    assert [await refresh(hub, t, f"c{i}") for i, t in enumerate(tokens)] == [401, 401, 401]
    assert await refresh(hub, bob_token) == 200
    r = await hub.get("/api/v1/audit", headers=admin)
    actions = [(e["action"], e["actor"], e["target"]) for e in (await r.json())["items"]]
    assert ("user.refresh_tokens.revoke", "root", "alice") in actions
    assert ("user.refresh_tokens.revoke", "alice", "alice") in actions


# The login limiter ----------------------------------------------------------------------------
def limited_config(request, tmp_path, **server):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "server": server,
        "database": DATABASE_SETUP[request.param](request, tmp_path),
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1,
                 "login_failure_limit": 5, "login_address_failure_limit": 12},
    })


async def _users(client, *names: str) -> None:
    app = client.server.app
    for name in names:
        await app[STORE].create_user(name, await app[AUTH].hash_password(f"{name}-pw"))


@pytest.fixture(params=METADATA_STORES)
async def proxied(request, aiohttp_client, tmp_path):
    """A hub behind a reverse proxy at 127.0.0.1 (the test client's address)."""
    client = await aiohttp_client(create_app(limited_config(request, tmp_path, trusted_proxies=["127.0.0.0/8"])))
    await _users(client, "alice", "bob", *(f"u{i}" for i in range(12)))
    return client


@pytest.fixture(params=METADATA_STORES)
async def direct(request, aiohttp_client, tmp_path):
    """A hub that trusts no proxy."""
    client = await aiohttp_client(create_app(limited_config(request, tmp_path)))
    await _users(client, "alice")
    return client


def login(client, user: str, password: str, address: str | None = None):
    headers = basic(user, password) | ({"X-Forwarded-For": f"203.0.113.99, {address}"} if address else {})
    return client.get("/auth/token", headers=headers)


async def test_parallel_wrong_passwords_get_exactly_the_limit_through(direct):
    statuses = [r.status for r in await asyncio.gather(*(login(direct, "alice", f"guess-{i}") for i in range(30)))]
    assert sorted(statuses) == [401] * 5 + [429] * 25
    assert (await login(direct, "alice", "alice-pw")).status == 429


async def test_parallel_right_passwords_are_never_throttled(direct):
    statuses = [r.status for r in await asyncio.gather(*(login(direct, "alice", "alice-pw") for _ in range(30)))]
    assert statuses == [200] * 30


async def test_a_lockout_from_one_address_leaves_others_alone(proxied):
    for i in range(5):
        assert (await login(proxied, "alice", f"guess-{i}", "10.0.0.1")).status == 401
    assert (await login(proxied, "alice", "alice-pw", "10.0.0.1")).status == 429
    assert (await login(proxied, "alice", "alice-pw", "10.0.0.2")).status == 200
    assert (await login(proxied, "bob", "bob-pw", "10.0.0.1")).status == 200  # the address is not locked


async def test_an_address_guessing_at_many_accounts_is_locked_out(proxied):
    for i in range(12):
        assert (await login(proxied, f"u{i}", "wrong", "10.0.0.7")).status == 401
    assert (await login(proxied, "alice", "alice-pw", "10.0.0.7")).status == 429
    assert (await login(proxied, "alice", "alice-pw", "10.0.0.8")).status == 200


async def test_a_success_forgets_that_accounts_failures_from_that_address(proxied):
    for _ in range(2):  # 8 failures in all: the second 4 pass only because the success forgot the first
        for i in range(4):
            assert (await login(proxied, "alice", f"typo-{i}", "10.0.0.3")).status == 401
        assert (await login(proxied, "alice", "alice-pw", "10.0.0.3")).status == 200


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(direct):
    for i in range(5):
        assert (await login(direct, "alice", "wrong", f"10.0.1.{i}")).status == 401
    assert (await login(direct, "alice", "alice-pw", "10.0.1.200")).status == 429


async def test_the_web_sign_in_shares_the_limiter(proxied):
    for i in range(5):
        assert (await login(proxied, "alice", f"guess-{i}", "10.0.0.4")).status == 401
    r = await proxied.get("/apps/login", headers={"X-Forwarded-For": "10.0.0.4"})
    csrf = (await r.text()).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    origin = str(proxied.make_url("")).rstrip("/")
    form = {"csrf": csrf, "username": "alice", "password": "alice-pw", "next": "/apps/"}
    r = await proxied.post("/apps/login", data=form, headers={"Origin": origin, "X-Forwarded-For": "10.0.0.4"},
                           allow_redirects=False)
    assert r.status == 429
    r = await proxied.post("/apps/login", data=form, headers={"Origin": origin, "X-Forwarded-For": "10.0.0.5"},
                           allow_redirects=False)
    assert r.status == 303


TRUSTED = ["10.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("peer, forwarded, client", [
    ("192.0.2.1", ["198.51.100.7"], "192.0.2.1"),  # an untrusted peer: its header is the client's own text
    ("10.0.0.1", [], "10.0.0.1"),  # a proxy sending no header is the client
    ("10.0.0.1", ["198.51.100.7"], "198.51.100.7"),
    ("10.0.0.1", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),  # the left part is the client's to write
    ("10.0.0.1", ["6.6.6.6, 198.51.100.7, 10.1.2.3"], "198.51.100.7"),  # two trusted hops
    ("10.0.0.1", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # several header lines: one list
    ("10.0.0.1", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),  # trusted all the way: the farthest one
    ("10.0.0.1", ["198.51.100.7, not-an-ip"], "10.0.0.1"),  # garbage: the last hop that vouched
    ("::1", ["2001:db8::1"], "2001:db8::1"),
    ("::ffff:10.0.0.1", ["198.51.100.7"], "198.51.100.7"),  # IPv4 on a dual-stack socket
    ("10.0.0.1", ["[2001:db8::2]:4711"], "2001:db8::2"),
])
def test_forwarded_client(peer, forwarded, client):
    from hub.clientaddr import _networks

    assert forwarded_client(peer, forwarded, _networks(tuple(TRUSTED))) == client


@pytest.mark.parametrize("value, error", [("10.0.0.0/8,192.168.1.1", None), ("10.0.0.0/33", "not an IP"),
                                          ("proxy.example", "not an IP")])
def test_trusted_proxies_from_the_environment(value, error):
    from hub.config import ConfigError

    if error is None:
        assert load_config(environ={"DAOHUB_SERVER_TRUSTED_PROXIES": value}).server.trusted_proxies == [
            "10.0.0.0/8", "192.168.1.1"]
    else:
        with pytest.raises(ConfigError, match=error):
            load_config(environ={"DAOHUB_SERVER_TRUSTED_PROXIES": value})


# Bounds and names at the token endpoint -----------------------------------------------------------
async def error_of(r) -> dict:
    body = await r.json()
    assert body["errors"][0]["code"] == "UNSUPPORTED", body
    return body["errors"][0]


async def test_too_many_scopes_are_refused(hub):
    scopes = [("scope", f"repository:team/r{i}:pull") for i in range(MAX_SCOPES)]
    r = await hub.get("/auth/token", params=[("service", "daohub"), *scopes], headers=basic("alice", "alice-pw"))
    assert r.status == 200
    r = await hub.get("/auth/token", params=[*scopes, ("scope", "repository:team/one-more:pull")],
                      headers=basic("alice", "alice-pw"))
    assert r.status == 400
    error = await error_of(r)
    assert error["detail"] == {"error": "invalid_scope"} and f"at most {MAX_SCOPES}" in error["message"]
    r = await hub.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": "alice-pw",
                                            "client_id": "t", "scope": " ".join(v for _, v in scopes) + " x:y:z"})
    assert r.status == 400 and (await error_of(r))["detail"] == {"error": "invalid_scope"}


async def test_large_requests_are_refused(hub):
    base = {"grant_type": "password", "username": "alice", "password": "alice-pw", "client_id": "t"}
    r = await hub.post("/auth/token", data={**base, "padding": "x" * MAX_REQUEST_BYTES})
    assert r.status == 400
    assert f"over {MAX_REQUEST_BYTES} bytes" in (await error_of(r))["message"]

    async def chunked():
        yield b"grant_type=password&username=alice&password=alice-pw&client_id=t&padding="
        for _ in range(MAX_REQUEST_BYTES // 4096 + 1):
            yield b"x" * 4096

    r = await hub.post("/auth/token", data=chunked(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and "bytes" in (await error_of(r))["message"]
    r = await hub.post("/auth/token", data={**base, "padding": "x" * 1000})
    assert r.status == 200


@pytest.mark.parametrize("scope", [
    "repository:team/../other/x:pull", "repository:team/./app:pull,push", "repository:team//app:pull",
    "repository:/team/app:pull", "repository:team/app/:pull", "repository:Team/App:pull",
    "repository:team/../other/x:bogus",  # no known action: still a name to refuse
])
async def test_non_canonical_names_are_refused(hub, scope):
    r = await hub.get("/auth/token", params={"scope": scope}, headers=basic("alice", "alice-pw"))
    assert r.status == 400
    error = await error_of(r)
    assert error["detail"] == {"error": "invalid_scope"} and "not a valid repository name" in error["message"]
    r = await hub.post("/auth/token", data={"grant_type": "password", "username": "alice", "password": "alice-pw",
                                            "client_id": "t", "scope": scope})
    assert r.status == 400
