"""Web sessions can be taken back, over HTTP: a copy of a signed-in cookie stops working when
that session signs out, and every session of a user ends when their password changes or they
are disabled."""

from __future__ import annotations

import pytest

from hub.keys import STORE
from hub.web import session as sessions
from tests.admin.conftest import headers

from .test_pages import csrf_of, get_page, hub, origin, sign_in  # noqa: F401 (hub is a fixture)

SIGNED_IN = "Signed in as <strong>alice</strong>"


def cookie_of(client) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/apps/"))[sessions.COOKIE].value


def use_cookie(client, cookie: str) -> None:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({sessions.COOKIE: cookie})


async def signed_in_cookie(client) -> str:
    client.session.cookie_jar.clear()
    await sign_in(client, "developer")
    assert SIGNED_IN in await get_page(client, "/apps/")
    return cookie_of(client)


async def test_a_copied_cookie_stops_working_after_sign_out(hub):  # noqa: F811
    other = await signed_in_cookie(hub)
    copy = await signed_in_cookie(hub)
    html = await get_page(hub, "/apps/")
    r = await hub.post("/apps/logout", data={"csrf": csrf_of(html)}, headers=origin(hub), allow_redirects=False)
    assert r.status == 303
    use_cookie(hub, copy)
    html = await get_page(hub, "/apps/")
    assert "Signed in as" not in html and "Private thing" not in html
    assert (await hub.get("/apps/publish", allow_redirects=False)).status == 303  # to the sign-in page
    use_cookie(hub, other)  # the same user's other session is still signed in
    assert SIGNED_IN in await get_page(hub, "/apps/")


@pytest.mark.parametrize("change", ["password", "disable"])
async def test_a_password_change_or_disabling_ends_every_session(hub, change):  # noqa: F811
    first, second = await signed_in_cookie(hub), await signed_in_cookie(hub)
    if change == "password":
        r = await hub.put("/api/v1/users/alice/password",
                          json={"password": "alice-new-pw", "current_password": "alice-pw-123"},
                          headers=headers("developer"))
        assert r.status == 204, await r.text()
    else:
        assert (await hub.patch("/api/v1/users/alice", json={"disabled": True},
                                headers=headers("platform_admin"))).status == 200
        assert (await hub.patch("/api/v1/users/alice", json={"disabled": False},
                                headers=headers("platform_admin"))).status == 200
    for cookie in (first, second):
        use_cookie(hub, cookie)
        assert "Signed in as" not in await get_page(hub, "/apps/")


async def test_a_session_is_stored_only_as_a_hash(hub):  # noqa: F811
    cookie = await signed_in_cookie(hub)
    session = sessions.decode(sessions.Keys.from_ring(_ring(hub)), cookie)
    assert session is not None and session.sid
    store = hub.server.app[STORE]
    assert await store.web_session_live(session.sid_hash, "alice")
    assert not await store.web_session_live(session.sid, "alice")


def _ring(client):
    from hub.keys import AUTH

    return client.server.app[AUTH].verifier_keyring()


async def test_a_cookie_signed_before_sessions_had_rows_is_refused(hub):  # noqa: F811
    keys = sessions.Keys.from_ring(_ring(hub))
    old = sessions.Session("alice", "nonce", 9_999_999_999, keys.current_kid)  # no session id
    use_cookie(hub, sessions.encode(keys, old))
    assert "Signed in as" not in await get_page(hub, "/apps/")
