"""Users: creation, reads, admin flags, disabling, deletion, passwords; credentials of every kind; /me."""

from __future__ import annotations

import pytest

from hub.app import create_app

from .conftest import audit_rows, basic, bearer, call, field_errors, make_config, seed, token

PW = "a-good-password"


async def login_status(client, user: str, password: str) -> int:
    r = await client.get("/api/v1/me", headers=basic(user, password))
    return r.status


async def test_create_user_and_log_in(bare):
    status, body, r = await call(bare, "POST", "/api/v1/users", json={"username": "newbie", "password": PW})
    assert status == 201 and r.headers["Location"] == "/api/v1/users/newbie"
    assert set(body) == {"username", "is_admin", "disabled", "created_at", "password_changed_at", "provider"}
    assert body["provider"] == "local"
    assert (body["username"], body["is_admin"], body["disabled"]) == ("newbie", False, False)
    assert PW not in await r.text() and "argon2" not in await r.text()
    assert await login_status(bare, "newbie", PW) == 200
    assert await login_status(bare, "newbie", "wrong-password") == 401
    status, _, _ = await call(bare, "POST", "/api/v1/users", json={"username": "newbie", "password": PW})
    assert status == 409
    status, body, _ = await call(bare, "POST", "/api/v1/users", json={"username": "boss", "password": PW,
                                                                        "is_admin": True})
    assert body["is_admin"] is True
    assert (await bare.get("/api/v1/users", headers=basic("boss", PW))).status == 200
    rows = await audit_rows(bare, "user.create")
    assert [(r.target, r.detail_json) for r in rows] == [("boss", '{"is_admin": true}'),
                                                         ("newbie", '{"is_admin": false}')]
    assert "a-good-password" not in str(await audit_rows(bare))


@pytest.mark.parametrize(("body", "pointer"), [
    ({"username": "x", "password": "short"}, "#/password"),
    ({"username": "x", "password": 12345678}, "#/password"),
    ({"username": "x"}, "#/password"),
    ({"password": PW}, "#/username"),
    ({"username": "Bad Name", "password": PW}, "#/username"),
    ({"username": "robot$team+x", "password": PW}, "#/username"),
    ({"username": "x", "password": PW, "is_admin": "yes"}, "#/is_admin"),
    ({"username": "x", "password": PW, "role": "admin"}, "#/role"),
])
async def test_create_user_validation(bare, body, pointer):
    status, problem, _ = await call(bare, "POST", "/api/v1/users", json=body)
    assert status == 422 and pointer in field_errors(problem)


async def test_list_and_read_users(bare):
    status, body, _ = await call(bare, "GET", "/api/v1/users?limit=3")
    assert status == 200 and [u["username"] for u in body["items"]] == ["ada", "admin", "alice"]
    status, body, _ = await call(bare, "GET", f"/api/v1/users?limit=500&cursor={body['next_cursor']}")
    assert [u["username"] for u in body["items"]] == ["bob", "gary", "mary", "root"] and body["next_cursor"] is None
    assert (await call(bare, "GET", "/api/v1/users/alice", "developer"))[1]["username"] == "alice"
    assert (await call(bare, "GET", "/api/v1/users/gary", "developer"))[0] == 403
    assert (await call(bare, "GET", "/api/v1/users/nobody"))[0] == 404
    assert (await call(bare, "GET", "/api/v1/users/nobody", "developer"))[0] == 403


async def test_disable_and_enable(bare):
    alice_token = await token(bare, user="alice", password="alice-pw-123")
    assert (await bare.get("/api/v1/me", headers=bearer(alice_token))).status == 200
    status, body, _ = await call(bare, "PATCH", "/api/v1/users/alice", json={"disabled": True})
    assert status == 200 and body["disabled"] is True
    assert await login_status(bare, "alice", "alice-pw-123") == 401
    assert (await bare.get("/api/v1/me", headers=bearer(alice_token))).status == 401  # her tokens stop too
    await call(bare, "PATCH", "/api/v1/users/alice", json={"disabled": False})
    assert await login_status(bare, "alice", "alice-pw-123") == 200
    rows = await audit_rows(bare, "user.update")
    assert [r.detail_json for r in rows] == ['{"disabled": false}', '{"disabled": true}']


async def test_make_admin_and_back(bare):
    await call(bare, "PATCH", "/api/v1/users/gary", json={"is_admin": True})
    assert (await call(bare, "GET", "/api/v1/users", "guest"))[0] == 200
    assert (await call(bare, "GET", "/api/v1/me", "guest"))[1]["is_admin"] is True
    await call(bare, "PATCH", "/api/v1/users/gary", json={"is_admin": False})
    assert (await call(bare, "GET", "/api/v1/users", "guest"))[0] == 403


async def test_platform_admin_cannot_lock_themself_out(bare):
    for body in ({"is_admin": False}, {"disabled": True}):
        status, problem, _ = await call(bare, "PATCH", "/api/v1/users/root", json=body)
        assert status == 409 and problem["type"] == "urn:daohub:problem:conflict"
    assert (await call(bare, "DELETE", "/api/v1/users/root"))[0] == 409
    assert (await call(bare, "PATCH", "/api/v1/users/root", json={"is_admin": True}))[0] == 200
    assert (await call(bare, "GET", "/api/v1/users"))[0] == 200


@pytest.mark.parametrize("body", [{}, {"disabled": "no"}, {"is_admin": None}, {"password": PW}])
async def test_update_user_validation(bare, body):
    status, problem, _ = await call(bare, "PATCH", "/api/v1/users/alice", json=body)
    assert status == 422 and field_errors(problem)


async def test_delete_user(bare):
    assert (await call(bare, "DELETE", "/api/v1/users/alice"))[0] == 204
    assert (await call(bare, "GET", "/api/v1/users/alice"))[0] == 404
    assert await login_status(bare, "alice", "alice-pw-123") == 401
    members = (await call(bare, "GET", "/api/v1/tenants/team/members"))[1]["items"]
    assert "alice" not in [m["username"] for m in members]
    assert (await call(bare, "DELETE", "/api/v1/users/alice"))[0] == 404
    [row] = await audit_rows(bare, "user.delete")
    assert (row.actor, row.target) == ("root", "alice")


async def test_change_own_password(bare):
    path = "/api/v1/users/alice/password"
    status, problem, _ = await call(bare, "PUT", path, "developer", json={"password": PW})
    assert status == 422 and "#/current_password" in field_errors(problem)
    status, problem, _ = await call(bare, "PUT", path, "developer",
                                    json={"password": PW, "current_password": "not-it"})
    assert status == 403 and "current password" in problem["detail"]
    status, problem, _ = await call(bare, "PUT", path, "developer",
                                    json={"password": "short", "current_password": "alice-pw-123"})
    assert status == 422 and "#/password" in field_errors(problem)
    status, _, _ = await call(bare, "PUT", path, "developer", json={"password": PW, "current_password": "alice-pw-123"})
    assert status == 204
    assert await login_status(bare, "alice", PW) == 200
    assert await login_status(bare, "alice", "alice-pw-123") == 401
    # Not someone else's.
    assert (await bare.put("/api/v1/users/gary/password", json={"password": PW, "current_password": "x"},
                           headers=basic("alice", PW))).status == 403
    [row] = await audit_rows(bare, "user.password")
    assert (row.actor, row.target) == ("alice", "alice")


async def test_platform_admin_sets_any_password_without_the_current_one(bare):
    assert (await call(bare, "PUT", "/api/v1/users/gary/password", json={"password": PW}))[0] == 204
    assert await login_status(bare, "gary", PW) == 200
    assert (await call(bare, "PUT", "/api/v1/users/root/password", json={"password": PW}))[0] == 204
    assert await login_status(bare, "root", PW) == 200
    assert (await bare.put("/api/v1/users/nobody/password", json={"password": PW},
                           headers=basic("root", PW))).status == 404


async def test_me(bare):
    status, body, _ = await call(bare, "GET", "/api/v1/me", "tenant_admin")
    assert status == 200 and body == {"kind": "user", "name": "ada", "is_admin": False,
                                      "memberships": [{"tenant": "team", "role": "admin"}], "robot": None}
    status, body, _ = await call(bare, "GET", "/api/v1/me", "robot")
    assert body == {"kind": "robot", "name": "robot$team+ci", "is_admin": False, "memberships": [],
                    "robot": {"tenant": "team", "repositories": ["team/ci/*"], "actions": ["pull", "push"],
                              "expires_at": None}}


async def test_bearer_tokens(bare):
    root = await token(bare, user="root", password="root-pw-123")
    assert (await bare.get("/api/v1/users", headers=bearer(root))).status == 200
    robot = await token(bare, user="robot$team+ci", password="robot-secret")
    assert (await bare.get("/api/v1/me", headers=bearer(robot))).status == 200
    r = await bare.get("/api/v1/tenants", headers=bearer(robot))
    assert r.status == 403 and "robot" in (await r.json(content_type=None))["detail"]
    anonymous = await token(bare)
    assert (await bare.get("/api/v1/me", headers=bearer(anonymous))).status == 401
    for bad in ("not-a-jwt", root[:-4] + "AAAA"):
        r = await bare.get("/api/v1/users", headers=bearer(bad))
        assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="daohub"'


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + "bm9jb2xvbg==", "Digest x", "Bearer "])
async def test_malformed_credentials(bare, header):
    r = await bare.get("/api/v1/me", headers={"Authorization": header})
    assert r.status == 401
    assert (await r.json(content_type=None))["type"] == "urn:daohub:problem:authentication-required"


async def test_basic_auth_is_throttled(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(make_config(tmp_path, login_failure_limit=3)))
    await seed(client, images=False)
    for _ in range(3):
        r = await client.get("/api/v1/tenants", headers=basic("ada", "wrong"))
        assert r.status == 401
    r = await client.get("/api/v1/tenants", headers=basic("ada", "ada-pw-1234"))
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    problem = await r.json(content_type=None)
    assert problem["type"] == "urn:daohub:problem:too-many-requests" and problem["status"] == 429
