"""The web catalog over HTTP (aiohttp's test client, SQLite): sessions, CSRF and origin checks,
security headers, escaping, private apps, field errors, download, and sign-in throttling. The
browser tests (test_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import json
import re
import time
from html import unescape

import pytest
import yaml

from hub.app import create_app
from hub.keys import STORE
from hub.web import session as sessions
from hub.web.pages import CSP
from tests.admin.conftest import headers, make_config, seed
from tests.appstore.hubs import PNG, metadata, publish_body

XSS = '<script>alert("t")</script><img src=x onerror=alert(1)>'


async def publish(client, repository: str, body: dict, role: str = "developer") -> None:
    r = await client.post(f"/api/v1/appstore/apps/{repository}/versions", json=body, headers=headers(role))
    assert r.status == 201, await r.text()


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    """Auth on, tests/admin's users; team/web public, team/private private, team/xss with hostile text."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    await seed(client, images=False)
    await publish(client, "team/web", publish_body("web", "1.0.0", with_icon=True))
    await publish(client, "team/web", publish_body("web", "1.1.0", with_icon=True))
    await client.server.app[STORE].set_repository_public("team/web", True)
    await publish(client, "team/private", publish_body("private", "2.0.0", title="Private thing",
                                                       categories=("secret-stuff",)))
    body = publish_body("xss", "1.0.0", title=XSS, description=f"Danger {XSS}")
    body["metadata"]["version"]["parameters"][1]["label"] = XSS
    await publish(client, "team/xss", body)
    await client.server.app[STORE].set_repository_public("team/xss", True)
    return client


def origin(client) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def get_page(client, path: str, expect: int = 200) -> str:
    r = await client.get(path)
    text = await r.text()
    assert r.status == expect, text[:2000]
    return text


async def sign_in(client, role: str = "developer") -> None:
    from tests.admin.conftest import CREDENTIALS

    token = csrf_of(await get_page(client, "/apps/login"))
    user, password = CREDENTIALS[role]
    r = await client.post("/apps/login", data={"csrf": token, "username": user, "password": password,
                                               "next": "/apps/"}, headers=origin(client), allow_redirects=False)
    assert r.status == 303, await r.text()
    assert r.headers["Location"] == "/apps/"


async def test_browse_headers_and_cookie(hub):
    r = await hub.get("/apps/")
    assert r.status == 200
    html = await r.text()
    assert r.headers["Content-Security-Policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/;" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure (request.secure)
    assert 'name="viewport"' in html and '<main id="main"' in html
    assert "Web server" in html and "Private thing" not in html and "team/private" not in html
    for path in ("/apps/static/app.css", "/apps/static/app.js"):
        assert (await hub.get(path)).status == 200
    r = await hub.get("/apps/no/such/page")
    assert r.status == 404 and r.content_type == "text/html" and "Not found" in await r.text()
    assert r.headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize("path", ["/apps/static/..%2fpages.py", "/apps/static/pages.py", "/apps/static/templates%2fbase.html"])
async def test_static_serves_only_its_files(hub, path):
    assert (await hub.get(path)).status == 404


async def test_search_filter_and_paging(hub):
    html = await get_page(hub, "/apps/?q=web")
    assert "Web server" in html
    html = await get_page(hub, "/apps/?q=nothing-like-this")
    assert "No apps found." in html
    html = await get_page(hub, "/apps/?category=web")
    assert "team/web" in html
    html = await get_page(hub, "/apps/?category=no-such")
    assert "team/web" not in html


async def test_script_injection_is_escaped(hub):
    for path in ("/apps/", "/apps/app/team/xss"):
        html = await get_page(hub, path)
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


async def test_icons_are_served_as_images_only(hub):
    r = await hub.get("/apps/icon/team/web")
    assert r.status == 200 and r.content_type == "image/png" and await r.read() == PNG
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert r.headers["Cache-Control"].startswith("private")
    again = await hub.get("/apps/icon/team/web", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""
    # The pages that show it keep their own policy: images from this origin only.
    page = await hub.get("/apps/")
    assert page.headers["Content-Security-Policy"] == CSP and "img-src 'self'" in CSP


async def test_private_app_needs_a_member(hub):
    for path in ("/apps/app/team/private", "/apps/icon/team/private", "/apps/manage/team/private"):
        r = await hub.get(path, allow_redirects=False)
        assert r.status in (404, 303), path
        if r.status == 303:  # the manage page asks anonymous visitors to sign in first
            assert r.headers["Location"].startswith("/apps/login?next=")
    await sign_in(hub, "other_admin")  # another tenant's admin
    for path in ("/apps/app/team/private", "/apps/manage/team/private", "/apps/icon/team/private",
                 "/apps/app/team/private?version=2.0.0"):
        assert (await hub.get(path)).status == 404, path
    html = await get_page(hub, "/apps/")
    for path, data in (("/apps/app/team/private", {"version": "2.0.0"}),
                       ("/apps/manage/team/private", {"tag": "2.0.0", "action": "deprecate"}),
                       ("/apps/manage/team/private", {"tag": "2.0.0", "action": "delete", "confirm": "2.0.0"})):
        r = await hub.post(path, data={"csrf": csrf_of(html), **data}, headers=origin(hub))
        assert r.status == 404, (path, data)
        assert "Private thing" not in await r.text()
    assert "Private thing" not in await get_page(hub, "/apps/")
    hub.session.cookie_jar.clear()
    await sign_in(hub, "guest")
    assert "Private thing" in await get_page(hub, "/apps/")
    assert "Private thing" in await get_page(hub, "/apps/app/team/private")


async def render_form(hub, path: str = "/apps/app/team/web", **fields) -> tuple[str, dict]:
    html = await get_page(hub, path)
    form = {"csrf": csrf_of(html), "version": "1.1.0", "v_NGINX_TAG": "1.26", "v_HTTP_PORT": "9000",
            "v_GREETING": "hi there", "action": "render"}
    form.update(fields)
    return html, form


async def test_render_download_and_field_errors(hub):
    html, form = await render_form(hub)
    assert 'type="number" id="param-HTTP_PORT" name="v_HTTP_PORT" value="8080"' in html
    assert 'inputmode="numeric" max="65535" min="1" step="1"' in html
    assert '<label for="param-HTTP_PORT">HTTP port</label>' in html
    r = await hub.post("/apps/app/team/web", data=form, headers=origin(hub))
    text = await r.text()
    assert r.status == 200, text
    assert "image: nginx:1.26" in text and "9000:80" in text and "hi there" in text
    form["action"] = "download"
    r = await hub.post("/apps/app/team/web", data=form, headers=origin(hub))
    assert r.status == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="compose.yaml"'
    doc = yaml.safe_load(await r.text())
    assert doc["services"]["web"]["image"] == "nginx:1.26"
    assert doc["services"]["web"]["environment"]["GREETING"] == "hi there"
    form.update(action="render", v_HTTP_PORT="70000", v_GREETING="NOT-lowercase", v_NGINX_TAG="9.9")
    r = await hub.post("/apps/app/team/web", data=form, headers=origin(hub))
    text = await r.text()
    assert r.status == 422, text
    for name in ("HTTP_PORT", "GREETING", "NGINX_TAG"):
        assert f'id="param-{name}-error"' in text, name
    assert 'value="70000"' in text  # what was typed is kept for correcting


async def test_unknown_version_or_app_is_404_not_500(hub):
    assert (await hub.get("/apps/app/team/web?version=9.9.9")).status == 404
    assert (await hub.get("/apps/app/team/nope")).status == 404
    _, form = await render_form(hub, version="../../etc")
    assert (await hub.post("/apps/app/team/web", data=form, headers=origin(hub))).status == 404


@pytest.mark.parametrize("case", ["no token", "wrong token", "no origin", "other origin", "other referer",
                                  "token of another session"])
async def test_csrf_and_origin_checks(hub, aiohttp_client, case):
    _, form = await render_form(hub)
    extra = origin(hub)
    if case == "no token":
        del form["csrf"]
    elif case == "wrong token":
        form["csrf"] = form["csrf"][:-2] + ("AA" if not form["csrf"].endswith("AA") else "BB")
    elif case == "no origin":
        extra = {}
    elif case == "other origin":
        extra = {"Origin": "http://evil.example"}
    elif case == "other referer":
        extra = {"Referer": "http://evil.example/apps/"}
    elif case == "token of another session":
        hub.session.cookie_jar.clear()
    r = await hub.post("/apps/app/team/web", data=form, headers=extra)
    assert r.status == 403, await r.text()
    assert "image: nginx" not in await r.text()


async def test_referer_of_this_site_is_accepted(hub):
    _, form = await render_form(hub)
    r = await hub.post("/apps/app/team/web", data=form, headers={"Referer": str(hub.make_url("/apps/app/x"))})
    assert r.status == 200


async def test_sign_in_sign_out_and_forged_cookies(hub):
    token = csrf_of(await get_page(hub, "/apps/login"))
    r = await hub.post("/apps/login", data={"csrf": token, "username": "alice", "password": "wrong"},
                       headers=origin(hub))
    assert r.status == 401 and "Wrong username or password." in await r.text()
    await sign_in(hub, "developer")
    html = await get_page(hub, "/apps/")
    assert "Signed in as <strong>alice</strong>" in html and "Private thing" in html
    cookie = hub.session.cookie_jar.filter_cookies(hub.make_url("/apps/"))[sessions.COOKIE].value
    kid, body, mac = cookie.split(".")
    forged_body = sessions._b64(b'{"s":"root","n":"x","e":9999999999}')
    for forged in (f"{kid}.{forged_body}.{mac}", f"{kid}.{body}.{mac[:-3]}abc", "x.y.z", "garbage"):
        hub.session.cookie_jar.clear()
        hub.session.cookie_jar.update_cookies({sessions.COOKIE: forged})
        assert "Signed in as" not in await get_page(hub, "/apps/")
    hub.session.cookie_jar.clear()
    hub.session.cookie_jar.update_cookies({sessions.COOKIE: cookie})
    html = await get_page(hub, "/apps/")
    assert "Signed in as <strong>alice</strong>" in html
    r = await hub.post("/apps/logout", data={"csrf": csrf_of(html)}, headers=origin(hub), allow_redirects=False)
    assert r.status == 303
    assert "Signed in as" not in await get_page(hub, "/apps/")


NEXT_TARGETS = (
    ("//evil.example/x", "/apps/"), ("https://evil.example/", "/apps/"), ("javascript:alert(1)", "/apps/"),
    ("/apps/app/team/web", "/apps/app/team/web"), ("/apps/\\evil", "/apps/"),
    ("/apps//evil.example/x", "/apps/"), ("/apps/?q=a%0d%0ab", "/apps/?q=a%0d%0ab"),
    ("/apps/?q=https://x", "/apps/?q=https://x"),
    # Control characters: CR/LF would split the Location header (aiohttp then sends no reply at all).
    ("/apps/\r\nSet-Cookie: x=1", "/apps/"), ("/apps/x\ny", "/apps/"), ("/apps/x\ty", "/apps/"),
    ("/apps/x\x00y", "/apps/"), ("/apps/x\x7fy", "/apps/"), ("/apps/x\x85y", "/apps/"),
    ("/apps/x\u2028y", "/apps/"), ("/apps/" + "a" * 2000, "/apps/"),
)


async def test_sign_in_goes_only_to_catalog_pages(hub):
    for target, expected in NEXT_TARGETS:
        hub.session.cookie_jar.clear()
        token = csrf_of(await get_page(hub, "/apps/login"))
        r = await hub.post("/apps/login", data={"csrf": token, "username": "alice", "password": "alice-pw-123",
                                                "next": target}, headers=origin(hub), allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (303, expected)
    # The sign-in form carries the same choice in its hidden field.
    html = await get_page(hub, "/apps/login?next=%2Fapps%2Fx%0D%0ASet-Cookie%3A%20x%3D1")
    assert 'name="next" value="/apps/"' in html


async def test_sign_in_is_throttled_like_the_token_endpoint(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(make_config(tmp_path, login_failure_limit=2)))
    await seed(client, images=False)
    statuses = []
    for _ in range(3):
        token = csrf_of(await get_page(client, "/apps/login"))
        r = await client.post("/apps/login", data={"csrf": token, "username": "alice", "password": "bad"},
                              headers=origin(client))
        statuses.append(r.status)
    assert statuses == [401, 401, 429]
    assert int(r.headers["Retry-After"]) > 0
    # The right password is refused too while the lockout lasts.
    token = csrf_of(await get_page(client, "/apps/login"))
    r = await client.post("/apps/login", data={"csrf": token, "username": "alice", "password": "alice-pw-123"},
                          headers=origin(client), allow_redirects=False)
    assert r.status == 429


async def test_publish_deprecate_delete(hub):
    await sign_in(hub, "maintainer")
    html = await get_page(hub, "/apps/publish?repository=team/web")
    data = {"csrf": csrf_of(html), "repository": "team/web", "compose": publish_body()["compose_files"][0]["content"],
            "metadata": json.dumps(metadata("web", "1.2.0"))}
    r = await hub.post("/apps/publish", data=data, headers=origin(hub), allow_redirects=False)
    assert r.status == 303, await r.text()
    html = await get_page(hub, r.headers["Location"])
    assert "1.2.0: published" in html and "Deprecate 1.2.0" in html
    token = csrf_of(html)
    r = await hub.post("/apps/manage/team/web", data={"csrf": token, "tag": "1.2.0", "action": "deprecate"},
                       headers=origin(hub))
    assert r.status == 200 and "Undeprecate 1.2.0" in await r.text()
    # Deleting needs the confirmation box.
    r = await hub.post("/apps/manage/team/web", data={"csrf": token, "tag": "1.2.0", "action": "delete"},
                       headers=origin(hub))
    assert r.status == 422
    r = await hub.post("/apps/manage/team/web", data={"csrf": token, "tag": "1.2.0", "action": "delete",
                                                      "confirm": "1.2.0"}, headers=origin(hub))
    assert r.status == 200
    assert "Deprecate 1.2.0" not in await r.text()
    # The form starts from the latest version: a new number (and the kept icon) is all it takes.
    html = await get_page(hub, "/apps/publish?repository=team/web")
    fields = {name: unescape(value) for name, value in re.findall(r'<textarea id="(\w+)"[^>]*>(.*?)</textarea>',
                                                                   html, re.DOTALL)}
    assert json.loads(fields["metadata"])["version"]["version"] == "1.1.0"
    assert fields["compose"] == publish_body()["compose_files"][0]["content"]
    assert 'name="keep_icon" value="true" checked' in html
    r = await hub.post("/apps/publish", headers=origin(hub), allow_redirects=False, data={
        "csrf": csrf_of(html), "repository": "team/web", "version": "1.3.0", "keep_icon": "true", **fields})
    assert r.status == 303, await r.text()
    r = await hub.get("/apps/icon/team/web?version=1.3.0")
    assert r.status == 200 and await r.read() == PNG
    # Bad metadata: errors listed on the form, nothing published.
    data["metadata"] = json.dumps({"schemaVersion": 1, "app": {"key": "web"}})
    r = await hub.post("/apps/publish", data=data, headers=origin(hub))
    assert r.status == 422 and "The version was not published" in await r.text()


async def test_only_the_actions_a_role_allows_are_shown(hub):
    # A developer publishes but may neither deprecate nor delete: no such buttons, and a POST is refused.
    await sign_in(hub, "developer")
    html = await get_page(hub, "/apps/manage/team/web")
    assert "Publish a new version" in html and "Manage versions" in await get_page(hub, "/apps/app/team/web")
    assert "Delete 1.0.0" not in html and "Deprecate 1.0.0" not in html
    for data in ({"tag": "1.0.0", "action": "deprecate"}, {"tag": "1.0.0", "action": "delete", "confirm": "1.0.0"}):
        r = await hub.post("/apps/manage/team/web", data={"csrf": csrf_of(html), **data}, headers=origin(hub))
        assert r.status == 403, data
    hub.session.cookie_jar.clear()
    await sign_in(hub, "maintainer")
    html = await get_page(hub, "/apps/manage/team/web")
    assert "Delete 1.0.0" in html and "Deprecate 1.0.0" in html


@pytest.mark.parametrize("nested", ["[" * 1000 + "]" * 1000, '{"a":' * 5000 + "1" + "}" * 5000, "[" * 100_000])
async def test_publish_form_refuses_deeply_nested_metadata_with_a_400_page(hub, nested):
    await sign_in(hub, "maintainer")
    html = await get_page(hub, "/apps/publish?repository=team/web")
    data = {"csrf": csrf_of(html), "repository": "team/web", "compose": publish_body()["compose_files"][0]["content"],
            "metadata": '{"schemaVersion": 1, "deep": %s}' % nested}
    r = await hub.post("/apps/publish", data=data, headers=origin(hub), allow_redirects=False)
    text = await r.text()
    assert r.status == 400, text[:500]
    assert "metadata: not valid JSON (JSON nested deeper than 64 levels)" in text
    assert "The version was not published" in text
    assert "1.2.0" not in await get_page(hub, "/apps/manage/team/web")


async def test_guest_may_not_change_anything(hub):
    await sign_in(hub, "guest")
    assert "Manage versions" not in await get_page(hub, "/apps/app/team/web")
    await get_page(hub, "/apps/manage/team/web", expect=403)
    html = await get_page(hub, "/apps/")
    r = await hub.post("/apps/manage/team/web", data={"csrf": csrf_of(html), "tag": "1.0.0", "action": "deprecate"},
                       headers=origin(hub))
    assert r.status == 403


async def test_open_registry_pages(aiohttp_client, tmp_path):
    from hub.config import load_config

    cfg = load_config(environ={}, overrides={"data_dir": str(tmp_path), "log": {"access_log": False},
                                             "auth": {"enabled": False}})
    client = await aiohttp_client(create_app(cfg))
    r = await client.post("/api/v1/appstore/apps/team/web/versions", json=publish_body())
    assert r.status == 201
    html = await get_page(client, "/apps/")
    assert "Web server" in html and "Sign in" not in html
    assert (await client.get("/apps/login", allow_redirects=False)).status == 303


def test_session_cookie_round_trip_expiry_and_keys():
    keys = sessions.Keys.from_secret(b"k1")
    other = sessions.Keys.from_secret(b"k2")
    s = sessions.new_session(keys, "alice", now=1000)
    cookie = sessions.encode(keys, s)
    assert sessions.decode(keys, cookie, now=1001) == s
    assert sessions.decode(keys, cookie, now=1000 + sessions.TTL_SECONDS) is None
    assert sessions.decode(other, cookie, now=1001) is None
    token = sessions.csrf_token(keys, s)
    assert sessions.csrf_ok(keys, s, token)
    assert not sessions.csrf_ok(keys, sessions.new_session(keys, "alice"), token)
    assert not sessions.csrf_ok(keys, s, "") and not sessions.csrf_ok(keys, None, token)
    assert "alice" not in token and s.nonce not in token


def test_session_keys_follow_the_signing_key_ring():
    from auth.keys import KeyRing

    ring = KeyRing.generate()
    keys = sessions.Keys.from_ring(ring)
    cookie = sessions.encode(keys, sessions.new_session(keys, "alice"))
    rotated = sessions.Keys.from_ring(ring.rotate())
    assert sessions.decode(rotated, cookie).subject == "alice"  # the previous key still verifies
    assert sessions.decode(sessions.Keys.from_ring(KeyRing.generate()), cookie) is None
    assert time.time() < sessions.decode(rotated, cookie).expires


async def test_image_check_tells_only_what_the_visitor_may_know(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    await seed(client)  # with images: team/app:v1 (private), other/secret:v1 (private)
    url = client.make_url("")
    host = f"{url.host}:{url.port}"
    compose = (f"services:\n  a:\n    image: {host}/team/app:v1\n  b:\n    image: {host}/team/app:nope\n"
               f"  c:\n    image: {host}/other/secret:v1\n  d:\n    image: redis:7\n")
    body = {"compose_files": [{"name": "compose.yaml", "content": compose}], "metadata": metadata("stack")}
    body["metadata"]["version"]["parameters"] = []
    await publish(client, "team/stack", body)
    await client.server.app[STORE].set_repository_public("team/stack", True)

    async def checks() -> dict[str, tuple[str, str, str]]:
        html = await get_page(client, "/apps/app/team/stack")
        r = await client.post("/apps/app/team/stack", data={"csrf": csrf_of(html), "version": "1.0.0"},
                              headers=origin(client))
        text = await r.text()
        assert r.status == 200, text
        rows = re.findall(r'<td><code>(.*?)</code></td>.*?class="in-daohub">(.*?)</td>'
                          r'.*?class="pullable">(.*?)</td>.*?class="exists">(.*?)</td>', text, re.DOTALL)
        return {image.rsplit("/", 2)[-2] + "/" + image.rsplit("/", 1)[-1]: tuple(rest) for image, *rest in rows}

    assert await checks() == {
        "team/app:v1": ("yes", "no", "not told"), "team/app:nope": ("yes", "no", "not told"),
        "other/secret:v1": ("yes", "no", "not told"), "library/redis:7": ("no (elsewhere)", "not checked", "unknown")}
    await sign_in(client, "developer")
    assert await checks() == {
        "team/app:v1": ("yes", "yes", "yes"), "team/app:nope": ("yes", "yes", "no"),
        "other/secret:v1": ("yes", "no", "not told"), "library/redis:7": ("no (elsewhere)", "not checked", "unknown")}


async def test_cookie_is_secure_when_served_over_https(aiohttp_client, tmp_path):
    cfg = make_config(tmp_path)
    cfg.server.public_url = "https://hub.example"
    client = await aiohttp_client(create_app(cfg))
    r = await client.get("/apps/")
    assert "Secure" in r.headers["Set-Cookie"]


ALL_TYPES = """services:
  app:
    image: busybox
    command: ["sh", "-c", "echo ${NAME} ${COUNT} ${DEBUG} ${MODE} ${PASS} ${PORT} ${SECRET}"]
    environment:
      NOTES: ${NOTES}
"""


async def test_every_parameter_type_has_its_control(hub):
    body = {"compose_files": [{"name": "compose.yaml", "content": ALL_TYPES}], "metadata": {
        "schemaVersion": 1, "app": {"key": "types", "title": "Types"}, "version": {
            "version": "1.0.0", "composeFiles": ["compose.yaml"], "parameters": [
                {"name": "NAME", "type": "string", "required": True, "pattern": "[a-z]+", "label": "Name",
                 "description": "Lower-case letters."},
                {"name": "COUNT", "type": "int", "min": 2, "max": 9, "default": 3, "group": "Numbers"},
                {"name": "DEBUG", "type": "bool", "default": True},
                {"name": "MODE", "type": "enum", "options": [{"value": "a", "label": "Mode A"}, {"value": "b"}],
                 "default": "a"},
                {"name": "PASS", "type": "password", "default": "pw"},
                {"name": "PORT", "type": "port", "default": 8000, "group": "Numbers"},
                {"name": "SECRET", "type": "secret", "length": 12},
                {"name": "NOTES", "type": "multiline", "default": "x"}]}}}
    await publish(hub, "team/types", body)
    await sign_in(hub, "guest")
    html = await get_page(hub, "/apps/app/team/types")
    assert re.search(r'<input type="text" id="param-NAME" name="v_NAME" value="" pattern="\[a-z\]\+" required '
                     r'aria-describedby="param-NAME-help">', html)
    assert 'type="number" id="param-COUNT" name="v_COUNT" value="3" inputmode="numeric" max="9" min="2"' in html
    assert '<input type="checkbox" id="param-DEBUG" name="v_DEBUG" value="true" checked>' in html
    assert '<option value="a" selected>Mode A</option><option value="b">b</option>' in html
    assert '<input type="password" id="param-PASS" name="v_PASS" value="pw" autocomplete="new-password">' in html
    assert 'placeholder="left empty: 12 random characters"' in html
    assert '<textarea id="param-NOTES" name="v_NOTES" rows="4">x</textarea>' in html
    assert html.index("<legend>Settings</legend>") < html.index("<legend>Numbers</legend>")
    # An unticked box is false; an empty secret is generated; a missing required value is a field error.
    form = {"csrf": csrf_of(html), "version": "1.0.0", "v_NAME": "abc", "v_COUNT": "4", "v_MODE": "b",
            "v_PASS": "pw2", "v_PORT": "8001", "v_SECRET": "", "v_NOTES": "line1\nline2"}
    r = await hub.post("/apps/app/team/types", data={**form, "action": "download"}, headers=origin(hub))
    doc = yaml.safe_load(await r.text())
    words = doc["services"]["app"]["command"][2].split()
    assert words[:6] == ["echo", "abc", "4", "false", "b", "pw2"] and words[6] == "8001" and len(words[7]) == 12
    assert doc["services"]["app"]["environment"]["NOTES"] == "line1\nline2"
    r = await hub.post("/apps/app/team/types", data={**form, "v_NAME": ""}, headers=origin(hub))
    text = await r.text()
    assert r.status == 422 and '<p class="field-error" id="param-NAME-error">required</p>' in text


async def test_disabled_user_cookie_and_robots(hub):
    await sign_in(hub, "developer")
    assert "Private thing" in await get_page(hub, "/apps/")
    await hub.server.app[STORE].update_user("alice", {"disabled": True})
    html = await get_page(hub, "/apps/")  # the cookie no longer stands for anyone
    assert "Signed in as" not in html and "Private thing" not in html
    await hub.server.app[STORE].update_user("alice", {"disabled": False})
    hub.session.cookie_jar.clear()
    token = csrf_of(await get_page(hub, "/apps/login"))
    r = await hub.post("/apps/login", data={"csrf": token, "username": "robot$team+ci", "password": "robot-secret"},
                       headers=origin(hub), allow_redirects=False)
    assert r.status == 401 and "This account cannot sign in here." in await r.text()


async def test_oversized_form_is_an_html_413(hub):
    await sign_in(hub, "maintainer")
    html = await get_page(hub, "/apps/publish")
    r = await hub.post("/apps/publish", data={"csrf": csrf_of(html), "repository": "team/web",
                                              "compose": "x" * (5 * 1024 * 1024)}, headers=origin(hub))
    assert r.status == 413 and r.content_type == "text/html"
    assert "larger than this server accepts" in await r.text()


@pytest.mark.parametrize("path", ["/apps/login", "/apps/logout", "/apps/publish", "/apps/app/team/web",
                                  "/apps/manage/team/web"])
async def test_form_that_is_not_utf8_is_an_html_400(hub, path):
    # aiohttp's request.post() raised UnicodeDecodeError, a 500. Found by tests/fuzz (token_http).
    await sign_in(hub, "maintainer")
    r = await hub.post(path, data=b"csrf=\x9f&username=a", headers={
        **origin(hub), "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and r.content_type == "text/html"
    assert "could not be read" in await r.text()


async def test_publish_form_refuses_metadata_with_an_unpaired_surrogate(hub):
    await sign_in(hub, "maintainer")
    html = await get_page(hub, "/apps/publish?repository=team/web")
    body = publish_body("web", "1.2.0")
    body["metadata"]["app"]["title"] = "Web \ud800"
    data = {"csrf": csrf_of(html), "repository": "team/web", "compose": body["compose_files"][0]["content"],
            "metadata": json.dumps(body["metadata"])}  # ensure_ascii: the title holds the escape \ud800
    r = await hub.post("/apps/publish", data=data, headers=origin(hub), allow_redirects=False)
    text = await r.text()
    assert r.status == 400, text[:500]
    assert "half of a UTF-16 surrogate pair" in text


def _run_command(html: str, which: str = "compose-run") -> str:
    block = re.search(rf'<pre id="{which}"[^>]*><code>(.*?)</code></pre>', html, re.S)
    assert block, f"the app page shows how to run the version ({which})"
    return unescape(block.group(1))


async def test_app_page_shows_the_compose_command_for_its_version(hub):
    host = hub.make_url("").host + ":" + str(hub.make_url("").port)
    html = await get_page(hub, "/apps/app/team/web?version=1.0.0")
    # public, every parameter has a default or is optional: nothing to set, no login needed
    assert _run_command(html) == f"docker compose -f oci://{host}/team/web:1.0.0 up -d"
    assert "serve DaoHub with TLS" in html  # the test client speaks plain HTTP, which Compose refuses
    assert _run_command(html, "run-login") == f"docker login {host}"
    assert "a public app: only needed if its images are private" in html
    assert _run_command(html, "run-file") == "docker compose -f compose.yaml up -d"
    await sign_in(hub, "developer")
    html = await get_page(hub, "/apps/app/team/private")
    assert _run_command(html, "run-login") == f"docker login {host}"
    assert "a public app" not in html
    assert _run_command(html) == f"docker compose -f oci://{host}/team/private:2.0.0 up -d"


async def test_app_page_shows_the_template_and_the_changelog(hub):
    html = await get_page(hub, "/apps/app/team/web")
    template = _run_command(html, "template-1")
    assert "${HTTP_PORT-8080}:80" in template and "image: nginx:${NGINX_TAG-1.27}" in template
    changelog = html[html.index('id="changelog-heading"'):]
    assert changelog.index(">1.1.0</a>") < changelog.index(">1.0.0</a>")  # newest first
    assert "<p>Release 1.1.0</p>" in changelog and "<p>Release 1.0.0</p>" in changelog


async def test_app_page_names_the_variables_compose_needs(hub):
    body = publish_body("db", "1.0.0")
    parameters = body["metadata"]["version"]["parameters"]
    parameters.append({"name": "DB_PASSWORD", "type": "secret"})
    parameters.append({"name": "INIT", "type": "multiline", "default": "line one\nline two"})
    body["compose_files"][0]["content"] += "      DB_PASSWORD: ${DB_PASSWORD}\n      INIT: ${INIT}\n"
    await publish(hub, "team/db", body)
    await hub.server.app[STORE].set_repository_public("team/db", True)
    r = await hub.get("/api/v1/appstore/apps/team/db/versions/1.0.0", headers=headers("developer"))
    assert (await r.json())["compose_environment"] == ["DB_PASSWORD", "INIT"]
    html = await get_page(hub, "/apps/app/team/db")
    assert _run_command(html).endswith("DB_PASSWORD=… INIT=… docker compose -f oci://"
                                       f"{hub.make_url('').host}:{hub.make_url('').port}/team/db:1.0.0 up -d")
    assert "set <code>DB_PASSWORD</code>, <code>INIT</code> in the environment" in html


async def test_cards_show_a_plain_text_summary_and_the_app_page_the_markdown(hub):
    description = ("Runs **two** services:\n\n- `web`: serves [pages](https://example.org/p)\n- `db`: keeps data\n\n"
                   "## Details\n\n<b>raw</b> HTML stays text.")
    await publish(hub, "team/notes", publish_body("notes", "1.0.0", title="Notes", description=description))
    await hub.server.app[STORE].set_repository_public("team/notes", True)
    html = await get_page(hub, "/apps/?q=notes")
    card = re.search(r'<p class="summary">(.*?)</p>', html, re.S).group(1)
    assert card == "Runs two services: web: serves pages; db: keeps data"
    page = await get_page(hub, "/apps/app/team/notes")
    assert "<strong>two</strong>" in page and "<li><code>web</code>: serves <a href=\"https://example.org/p\"" in page
    assert "<h3>Details</h3>" in page and "&lt;b&gt;raw&lt;/b&gt; HTML stays text." in page


async def test_the_publish_form_builds_the_metadata_from_its_fields(hub):
    await sign_in(hub, "developer")
    html = await get_page(hub, "/apps/publish?repository=team/shop")
    assert 'name="key" value="shop"' in html  # a new app: its key from the repository
    compose = "services:\n  shop:\n    image: nginx:1.27\n    ports:\n      - \"${HTTP_PORT}:80\"\n" \
              "    environment:\n      MODE: ${MODE}\n      CODE: ${CODE}\n"
    form = {"csrf": csrf_of(html), "repository": "team/shop", "version": "1.0.0", "title": "Shop",
            "key": "shop", "description": "A **shop**.\n\n- one\n- two", "categories": "web, demo",
            "release_notes": "First *release*.", "compose": compose, "rows": "3"}
    r = await hub.post("/apps/publish", data={**form, "action": "from_compose"}, headers=origin(hub))
    html = await r.text()
    assert r.status == 200 and "The version was not published" not in html
    for i, name in enumerate(("HTTP_PORT", "MODE", "CODE")):
        assert f'name="p{i}_name" value="{name}"' in html
    rows = {"rows": "3", "p0_name": "HTTP_PORT", "p0_type": "port", "p0_label": "HTTP port", "p0_default": "eighty",
            "p1_name": "MODE", "p1_type": "enum", "p1_options": "fast, safe", "p1_default": "safe",
            "p2_name": "CODE", "p2_type": "string", "p2_extra": json.dumps({"pattern": "[A-Z]{3}"}),
            "p2_default": "abc"}
    r = await hub.post("/apps/publish", data={**form, **rows, "action": "publish"}, headers=origin(hub))
    html = unescape(await r.text())
    assert r.status == 422 and "The version was not published" in html
    assert "Parameter 1 (HTTP_PORT), default: must be a port number" in html
    assert "Parameter 3 (CODE), default: must be exactly 3 characters, using only uppercase letters" in html
    assert "[A-Z]" not in html.split('id="publish-errors"')[1].split("</div>")[0]  # no regex in the messages
    assert 'name="p0_default" value="eighty"' in html  # what was typed is kept
    rows.update(p0_default="8080", p2_default="ABC")
    r = await hub.post("/apps/publish", data={**form, **rows, "action": "publish"}, headers=origin(hub),
                       allow_redirects=False)
    assert r.status == 303, await r.text()
    r = await hub.get("/api/v1/appstore/apps/team/shop/versions/1.0.0", headers=headers("developer"))
    version = await r.json()
    assert (version["title"], version["categories"], version["release_notes"]) == ("Shop", ["web", "demo"],
                                                                                 "First *release*.")
    params = {p["name"]: p for p in version["parameters"]}
    assert params["HTTP_PORT"]["type"] == "port" and params["HTTP_PORT"]["default"] == 8080
    assert [o["value"] for o in params["MODE"]["options"]] == ["fast", "safe"] and params["MODE"]["default"] == "safe"
    assert params["CODE"]["pattern"] == "[A-Z]{3}"  # a field the form has no control for is kept
    # The next version starts from this one's fields.
    html = await get_page(hub, "/apps/publish?repository=team/shop")
    assert 'name="title" value="Shop"' in html and 'name="p1_options" value="fast, safe"' in html
    assert "the latest is 1.0.0" in html


async def test_the_import_page_previews_a_feed_then_publishes_the_chosen_apps(hub):
    import aiohttp

    from tests.appstore.feeds import feed

    await sign_in(hub, "developer")
    assert ">Import</a>" not in await get_page(hub, "/apps/")  # not a tenant admin: no link
    hub.session.cookie_jar.clear()
    await sign_in(hub, "tenant_admin")
    html = await get_page(hub, "/apps/import")
    assert ">Import</a>" in html and 'value="team"' in html
    assert "Importing by URL is off on this server" in html  # appstore.import_hosts is empty
    form = aiohttp.FormData()
    form.add_field("csrf", csrf_of(html))
    form.add_field("tenant", "team")
    form.add_field("action", "preview")
    form.add_field("feed_file", json.dumps(feed()).encode(), filename="templates.json",
                   content_type="application/json")
    r = await hub.post("/apps/import", data=form, headers=origin(hub))
    html = await r.text()
    assert r.status == 200, html
    assert 'name="only" value="static-site" checked' in html and 'name="only" value="kv-cache" checked' in html
    assert "git.example/stacks" in html and "title: required" in html  # why the others are not importable
    assert "image: nginx:1.27-alpine" in unescape(html)  # the compose file it would publish
    assert (await hub.get("/apps/app/team/static-site")).status == 404  # a preview publishes nothing
    carried = unescape(re.search(r'name="feed_json" value="([^"]*)"', html).group(1))
    r = await hub.post("/apps/import", headers=origin(hub), data={
        "csrf": csrf_of(html), "tenant": "team", "action": "import", "feed_json": carried,
        "source": "uploaded file templates.json", "only": "static-site"})
    html = await r.text()
    assert r.status == 200 and "Imported into team: 1 published." in html
    assert (await hub.get("/apps/app/team/static-site")).status == 200
    assert (await hub.get("/apps/app/team/kv-cache")).status == 404  # not chosen
    # Another tenant's admin may not import into team: 404, as for a tenant that does not exist.
    hub.session.cookie_jar.clear()
    await sign_in(hub, "other_admin")
    html = await get_page(hub, "/apps/import")
    r = await hub.post("/apps/import", headers=origin(hub), data={
        "csrf": csrf_of(html), "tenant": "team", "action": "preview", "feed_json": carried})
    assert r.status == 404


async def test_the_import_page_fetches_a_url_only_from_an_allowed_host(aiohttp_client, aiohttp_server, tmp_path):
    from aiohttp import web as aioweb

    from tests.appstore.feeds import feed

    asked = []

    async def serve(request):
        asked.append(request.path)
        return aioweb.json_response(feed())

    feeds = aioweb.Application()
    feeds.router.add_get("/{tail:.*}", serve)
    server = await aiohttp_server(feeds)
    host = f"{server.host}:{server.port}"
    config = make_config(tmp_path)
    config.appstore.import_hosts = [host]
    client = await aiohttp_client(create_app(config))
    await seed(client, images=False)
    await sign_in(client, "tenant_admin")
    html = await get_page(client, "/apps/import")
    assert f"Only from the hosts an admin allowed: {host}." in html
    for url, expect in ((f"http://{host}/templates.json", 200), ("http://feeds.example/templates.json", 422)):
        r = await client.post("/apps/import", data={"csrf": csrf_of(html), "tenant": "team", "action": "preview",
                                                    "url": url}, headers=origin(client))
        text = unescape(await r.text())
        assert r.status == expect, text[:500]
    assert "URL: feeds.example is not one of the hosts an admin allowed" in text
    assert asked == ["/templates.json"]


async def test_the_fields_keep_the_current_icon_when_asked(hub):
    await sign_in(hub, "developer")
    html = await get_page(hub, "/apps/publish?repository=team/web")
    assert 'name="icon_name" value="icon.png"' in html and 'name="keep_icon" value="true" checked' in html
    fields = {"csrf": csrf_of(html), "repository": "team/web", "title": "Web server", "key": "web", "rows": "3",
              "p0_name": "NGINX_TAG", "p0_type": "enum", "p0_options": "1.27", "p0_default": "1.27",
              "p1_name": "HTTP_PORT", "p1_type": "port", "p1_default": "8080", "p2_name": "GREETING",
              "compose": publish_body()["compose_files"][0]["content"], "icon_name": "icon.png", "action": "publish"}
    # Unticked, with a mistake: the page still offers the icon, unticked.
    r = await hub.post("/apps/publish", data={**fields, "version": ""}, headers=origin(hub))
    html = await r.text()
    assert r.status == 422 and 'name="keep_icon" value="true">' in html
    r = await hub.post("/apps/publish", data={**fields, "version": "1.5.0", "keep_icon": "true"}, headers=origin(hub),
                       allow_redirects=False)
    assert r.status == 303, await r.text()
    r = await hub.get("/apps/icon/team/web?version=1.5.0")
    assert r.status == 200 and await r.read() == PNG
