"""The web catalog in headless Chromium (tests/web/conftest.py: one DaoHub, one browser per session):
browse, search, filter, open an app, fill its form, render and download; sign in to see a private
app; publish, deprecate and delete through the pages; hostile text shown as text; a phone-sized
screen without horizontal scrolling. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import json

import yaml

from tests.appstore.hubs import COMPOSE, metadata

from .conftest import OUTSIDER, PNG, USERS, XSS


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def sign_in(page, user: str, password: str, next_path: str = "/apps/") -> None:
    page.goto(f"/apps/login?next={next_path}")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}")
    assert page.get_by_text(f"Signed in as {user}").is_visible()


def card_titles(page) -> list[str]:
    return page.locator(".card h3").all_inner_texts()


def test_browse_search_filter_render_download(new_page, artifacts, tmp_path):
    page = new_page()
    page.goto("/apps/")
    titles = card_titles(page)
    for title in ("Voting App", "WordPress", "Redis", "PostgreSQL", "nginx", "Gitea"):
        assert title in titles
    assert "Private Notes" not in titles
    assert page.locator(".card img").first.get_attribute("alt") == ""  # decorative: the title is beside it
    shot(page, artifacts, "browse")

    page.get_by_label("Search apps").fill("postgres")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**q=postgres**")
    assert "PostgreSQL" in card_titles(page) and "WordPress" not in card_titles(page)

    page.goto("/apps/")
    page.get_by_role("navigation", name="Categories").get_by_role("link", name="cms").click()
    page.wait_for_url("**category=cms**")
    assert card_titles(page) == ["WordPress"]
    shot(page, artifacts, "browse-category-cms")

    page.get_by_role("link", name="WordPress").click()
    page.wait_for_url("**/apps/app/library/wordpress")
    assert page.get_by_role("heading", name="WordPress", level=1).is_visible()
    assert page.get_by_role("group", name="Database").is_visible()  # parameters grouped in fieldsets
    page.get_by_label("HTTP port").fill("18080")
    page.get_by_label("WordPress image tag").select_option("6.4")
    page.get_by_label("Domain prefix").fill("my-blog")
    page.get_by_label("Database password").fill("s3cret-db-pass")
    page.get_by_role("button", name="Render compose file").click()
    compose = page.locator("#compose-text")
    compose.wait_for()
    text = compose.inner_text()
    assert "wordpress:6.4" in text and "18080:80" in text and "http://my-blog" in text
    assert page.get_by_role("cell", name="wordpress:6.4").is_visible()  # the image check table
    assert page.get_by_label("HTTP port").input_value() == "18080"  # the form keeps what was filled
    shot(page, artifacts, "app-rendered")

    with page.expect_download() as info:
        page.get_by_role("button", name="Download compose.yaml").click()
    download = info.value
    assert download.suggested_filename == "compose.yaml"
    target = tmp_path / "compose.yaml"
    download.save_as(target)
    doc = yaml.safe_load(target.read_text())
    web = doc["services"]["web"]
    assert web["image"] == "wordpress:6.4" and web["ports"] == ["18080:80"]
    assert web["labels"]["aliyun.routing.port_80"] == "http://my-blog"
    assert web["environment"]["WORDPRESS_DB_PASSWORD"] == "s3cret-db-pass"
    assert len(doc["services"]["db"]["environment"]["MYSQL_ROOT_PASSWORD"]) == 32  # generated


def test_field_errors_next_to_fields(new_page, artifacts):
    page = new_page()
    page.goto("/apps/app/library/wordpress")
    page.get_by_label("HTTP port").fill("80")  # below the parameter's min of 1024
    page.get_by_label("Domain prefix").fill("Not A Host!")
    page.get_by_role("button", name="Render compose file").click()
    page.locator("#param-HTTP_PORT-error").wait_for()
    assert page.locator("#param-DOMAIN_PREFIX-error").is_visible()
    assert page.get_by_label("HTTP port").get_attribute("aria-invalid") == "true"
    assert "param-HTTP_PORT-error" in page.get_by_label("HTTP port").get_attribute("aria-describedby")
    assert page.locator("#compose-text").count() == 0
    shot(page, artifacts, "app-field-errors")


def test_copy_button(new_page):
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.goto("/apps/app/library/redis")
    page.get_by_role("button", name="Render compose file").click()
    button = page.get_by_role("button", name="Copy to clipboard")
    button.click()
    page.get_by_text("Copied.").wait_for()
    assert "services:" in page.evaluate("navigator.clipboard.readText()")


def test_private_app_needs_signing_in(new_page, artifacts):
    page = new_page()
    page.goto("/apps/")
    assert "Private Notes" not in card_titles(page)
    response = page.goto("/apps/app/team/private-notes")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert page.goto("/apps/icon/team/private-notes").status == 404

    other = new_page()
    sign_in(other, *OUTSIDER)
    assert "Private Notes" not in card_titles(other)
    assert other.goto("/apps/app/team/private-notes").status == 404

    sign_in(page, "gary", USERS["gary"][0], "/apps/app/team/private-notes")
    assert page.get_by_role("heading", name="Private Notes", level=1).is_visible()
    page.goto("/apps/")
    assert "Private Notes" in card_titles(page)
    shot(page, artifacts, "browse-signed-in")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/apps/")
    assert "Private Notes" not in card_titles(page)


def test_publish_deprecate_delete_through_the_pages(new_page, artifacts, tmp_path):
    page = new_page()
    sign_in(page, "mary", USERS["mary"][0])
    page.goto("/apps/app/team/private-notes")
    page.get_by_role("link", name="Manage versions").click()
    page.get_by_role("link", name="Publish a new version").click()
    assert page.get_by_label("Repository").input_value() == "team/private-notes"
    doc = metadata("private-notes", "1.1.0", title="Private Notes", categories=("notes",), icon="notes.png")
    (tmp_path / "notes.png").write_bytes(PNG)
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    page.get_by_label("Upload a file").first.set_input_files(str(tmp_path / "compose.yaml"))
    # The advanced way: the metadata document as JSON instead of the fields.
    page.get_by_text("Advanced: the metadata document as JSON").click()
    page.get_by_label("Publish with this JSON document instead of the fields").check()
    page.locator("#metadata").fill(json.dumps(doc, indent=2))
    page.get_by_label("Icon", exact=True).set_input_files(str(tmp_path / "notes.png"))
    shot(page, artifacts, "publish-form")
    page.get_by_role("button", name="Publish").click()
    page.get_by_text("1.1.0: published").wait_for()
    assert page.get_by_role("rowheader", name="1.1.0").is_visible()
    shot(page, artifacts, "manage-published")

    # The next version from the form's fields as they open (the latest version's): a new number is enough.
    page.get_by_role("link", name="Publish a new version").click()
    assert page.get_by_label("Title").input_value() == "Private Notes"
    assert page.get_by_label("Parameter 2 name").input_value() == "HTTP_PORT"
    assert '"version": "1.1.0"' in page.locator("#metadata").input_value()  # the JSON, behind "Advanced"
    page.get_by_label("Version (required)").fill("1.2.0")
    assert page.get_by_label("Keep the current icon (notes.png) when no file is chosen").is_checked()
    page.get_by_role("button", name="Publish").click()
    page.get_by_text("1.2.0: published").wait_for()

    page.get_by_role("button", name="Deprecate 1.2.0").click()
    page.get_by_text("1.2.0: deprecated").wait_for()
    page.goto("/apps/app/team/private-notes")
    versions = page.get_by_role("region", name="Versions")
    assert versions.get_by_text("deprecated").count() == 1
    assert versions.get_by_role("link").all_inner_texts() == ["1.2.0", "1.1.0", "1.0.0"]  # newest first
    # The page shows the newest version not deprecated, 1.1.0; 1.2.0 kept its icon.
    assert page.get_by_text("version 1.1.0").is_visible()
    versions.get_by_role("link", name="1.2.0").click()
    page.wait_for_url("**version=1.2.0")
    assert page.locator(".app-head img").get_attribute("alt") == "Private Notes icon"

    page.goto("/apps/manage/team/private-notes")
    page.get_by_label("Yes, delete 1.2.0 and its tags").check()
    page.get_by_role("button", name="Delete 1.2.0").click()
    page.get_by_text("1.2.0: deleted").wait_for()
    assert page.get_by_role("rowheader", name="1.2.0").count() == 0
    assert page.get_by_role("rowheader", name="1.1.0").is_visible()
    assert page.get_by_role("rowheader", name="1.0.0").is_visible()


def test_hostile_text_is_shown_as_text(new_page, artifacts):
    page = new_page()
    page.goto("/apps/?q=xss")
    assert card_titles(page) == [XSS]
    page.get_by_role("link", name=XSS).click()
    page.wait_for_url("**/apps/app/team/xss")
    assert page.get_by_role("heading", name=XSS, level=1).is_visible()
    assert page.get_by_text(f"Look: {XSS}").is_visible()
    assert page.get_by_label(XSS).is_visible()  # the parameter label, still tied to its input
    page.get_by_role("button", name="Render compose file").click()
    page.locator("#compose-text").wait_for()
    assert page.locator("script:not([src])").count() == 0 and page.locator("img[onerror]").count() == 0
    assert page.dialogs == []
    shot(page, artifacts, "hostile-text")


def test_phone_screen_has_no_horizontal_overflow(new_page, artifacts):
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    for path, name in (("/apps/", "phone-browse"), ("/apps/app/library/voting-app", "phone-app")):
        page.goto(path)
        assert page.evaluate(overflow) <= 0, path
        shot(page, artifacts, name)
    page.get_by_role("button", name="Render compose file").click()
    page.locator("#compose-text").wait_for()
    assert page.evaluate(overflow) <= 0
    shot(page, artifacts, "phone-app-rendered")


def test_keyboard_and_labels(new_page):
    page = new_page()
    page.goto("/apps/app/library/wordpress")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => e.labels.length === 0).map(e => e.name)""")
    assert unlabelled == []
    assert page.evaluate("[...document.images].filter(i => !i.hasAttribute('alt')).length") == 0
    # Focus moves through the form by keyboard, and the focused control has a visible outline.
    page.get_by_label("WordPress image tag").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.id")
    assert focused.startswith("param-")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_landing_page_shows_this_address_and_its_links_work(new_page, live_hub, artifacts):
    page = new_page()
    page.goto("/")
    host = f"127.0.0.1:{live_hub.port}"
    assert page.locator("#host").inner_text() == host
    assert page.get_by_text(f"docker push {host}/team/alpine:3.20").is_visible()
    assert page.get_by_text(f"podman pull --tls-verify=false {host}/team/alpine:3.20").is_visible()
    shot(page, artifacts, "landing")
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(overflow) <= 0
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("navigation", name="Main").get_by_role("link", name="App store").click()
    page.wait_for_url("**/apps/")
    assert "WordPress" in card_titles(page)

    page.go_back()
    with page.expect_response("**/api/v1/openapi.json") as response:
        page.get_by_role("link", name="The API document").click()
    assert response.value.status == 200 and response.value.json()["openapi"].startswith("3.")
    # A page that is not HTML for the browser is the registry's JSON answer, as for any API client.
    api = page.request.get("/", headers={"Accept": "application/json"})
    assert api.status == 404 and api.json()["errors"][0]["code"] == "UNSUPPORTED"
