"""The console (/console/) in headless Chromium, on the web tests' one DaoHub (tests/web/conftest.py).

A tenant admin signs in, creates a robot and copies its secret from the page; skopeo pushes a
two-platform image with that robot; the admin finds it in the repository list, opens the tag
(layers, platforms, config, source revision, pull commands) and deletes a tag. A guest sees no
Delete button and a direct POST is refused; an admin of another tenant sees none of team's
private repositories or audit rows on any page, by search or by URL (404). axe-core runs on the
main pages; screenshots of them go to test-artifacts/console/ (docs/screenshots/ with
DAOHUB_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.server import REPO_ROOT

from .conftest import ADMIN_PASSWORD, IN_CI, OUTSIDER, USERS, api

TENANT_ADMIN = ("tess", "tess-pw-123")
# The committed screenshots are rewritten only when asked (DAOHUB_UPDATE_SCREENSHOTS=1); otherwise a run
# writes them under test-artifacts/, so a test run leaves the work tree clean.
SCREENSHOTS = (
    REPO_ROOT / "docs" / "screenshots"
    if os.environ.get("DAOHUB_UPDATE_SCREENSHOTS") == "1"
    else REPO_ROOT / "test-artifacts" / "console"
)
AXE = REPO_ROOT / ".cache" / "node" / "node_modules" / "axe-core" / "axe.min.js"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SOURCE = "https://git.example/team/web"


def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(root: Path) -> Path:
    """An OCI layout holding tag `1.0`: an index of linux/amd64 and linux/arm64 images, each one
    layer, with env, entrypoint, labels (source revision and URL) and history in the config."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    manifests = []
    for arch in ("amd64", "arm64"):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            data = f"hello from {arch}\n".encode() * 200
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        layer_bytes = gzip.compress(raw.getvalue(), mtime=0)
        config = {"architecture": arch, "os": "linux", "created": "2026-12-01T00:00:00Z",
                  "config": {"Env": ["PATH=/usr/bin", "GREETING=hello"], "Entrypoint": ["/bin/hello"],
                             "Cmd": ["--loud"], "Labels": {"org.opencontainers.image.revision": REVISION,
                                                           "org.opencontainers.image.source": SOURCE}},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
                  "history": [{"created": "2026-12-01T00:00:00Z", "created_by": "COPY hello.txt /"}]}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               **_blob(root, json.dumps(config).encode())},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                **_blob(root, layer_bytes)}]}
        manifests.append({"mediaType": manifest["mediaType"], **_blob(root, json.dumps(manifest).encode()),
                          "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    top = _blob(root, json.dumps(index).encode())
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": index["mediaType"], **top, "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]}))
    return root


def skopeo_push(layout: Path, host: str, creds: str, ref: str) -> None:
    if not os.path.exists("/usr/bin/skopeo"):
        if IN_CI:
            pytest.fail("the console test needs skopeo (CI=true)")
        pytest.skip("the console test needs skopeo")
    done = subprocess.run(["skopeo", "copy", "--all", "--quiet", "--dest-tls-verify=false", "--dest-creds", creds,
                           f"oci:{layout}:1.0", f"docker://{host}/{ref}"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def sign_in(page, user: str, password: str) -> None:
    """Sign in through /apps/login and land on the console's first page."""
    page.goto("/apps/login?next=/console/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.url.endswith("/console/") and page.get_by_text(f"Signed in as {user}").is_visible()


def shot(page, name: str) -> None:
    """A small PNG of the visible part of the page (committed: the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def axe(page) -> list[str]:
    """Serious and critical axe-core violations on the page, one line each."""
    if not AXE.exists():
        if IN_CI:
            pytest.fail(f"axe-core is missing at {AXE} (scripts/test.sh installs it with npm)")
        pytest.skip(f"axe-core is missing at {AXE}: npm install --prefix .cache/node axe-core")
    # The page's CSP (script-src 'self') refuses an added inline script: the pages axe checks are
    # opened in a context with bypass_csp (the CSP itself is checked by test_browser.py).
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result if v["impact"] in ("serious", "critical")]


@pytest.fixture(scope="module")
def console_hub(live_hub, tmp_path_factory):
    """live_hub plus tess, the admin of tenant team (mary is its maintainer, gary its guest)."""
    api(live_hub, "POST", "users", {"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]})
    api(live_hub, "PUT", f"tenants/team/members/{TENANT_ADMIN[0]}", {"role": "admin"})
    live_hub.layout = oci_layout(tmp_path_factory.mktemp("oci") / "layout")
    return live_hub


def test_a_tenant_admin_creates_a_robot_pushes_with_it_and_deletes_a_tag(console_hub, new_page):
    page = new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True, permissions=["clipboard-read", "clipboard-write"])
    sign_in(page, *TENANT_ADMIN)
    assert page.get_by_role("link", name="team", exact=True).is_visible()
    shot(page, "console-home")
    page.get_by_role("link", name="team", exact=True).click()
    page.get_by_role("link", name="Robots").click()
    page.wait_for_url("**/console/t/team/robots")
    page.get_by_label("Name").fill("ci")
    page.get_by_label("Repositories").fill("team/web")
    page.get_by_label("push").check()
    page.get_by_role("button", name="Create robot").click()
    secret_shown = page.locator("#robot-secret").inner_text()
    username = page.locator("#robot-username").inner_text()
    assert username == "robot$team+ci" and len(secret_shown) >= 32
    page.get_by_role("button", name="Copy secret").click()
    page.get_by_text("Copied.").wait_for()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert secret == secret_shown
    shot(page, "console-robot-created")
    page.reload()  # a GET of the list never shows it again
    assert secret not in page.content() and page.get_by_role("cell", name="robot$team+ci").is_visible()

    skopeo_push(console_hub.layout, console_hub.host, f"{username}:{secret}", "team/web:1.0")
    skopeo_push(console_hub.layout, console_hub.host, f"{username}:{secret}", "team/web:old")

    page.goto("/console/t/team/")
    page.get_by_label("Search repositories").fill("web")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**q=web**")
    rows = page.locator("#repositories tbody tr")
    assert rows.count() == 1 and "team/web" in rows.first.inner_text() and "private" in rows.first.inner_text()
    shot(page, "console-repositories")
    assert axe(page) == []

    page.get_by_role("link", name="team/web").click()
    page.wait_for_url("**/console/r/team/web")
    tags = page.locator("#tags tbody tr")
    assert tags.count() == 2
    assert "linux/amd64, linux/arm64" in tags.first.inner_text()
    pull = page.locator("#pull-docker").inner_text()
    assert re.fullmatch(rf"docker pull {re.escape(console_hub.host)}/team/web:(1\.0|old)", pull), pull
    assert "ctr images pull --plain-http" in page.locator("#pull-ctr").inner_text()
    assert page.locator("#pull-podman").inner_text().startswith("podman pull --tls-verify=false ")
    shot(page, "console-repository")
    assert axe(page) == []

    page.get_by_role("link", name="1.0").click()
    page.wait_for_url("**/-/manifests/sha256:*")
    assert page.locator("#platforms").inner_text() == "linux/amd64, linux/arm64"
    page.locator("#children").get_by_role("link").first.click()  # the linux/amd64 image
    page.wait_for_url("**/-/manifests/sha256:*")
    assert page.locator("#layers tbody tr").count() == 1
    text = page.locator("main").inner_text()
    for expected in (REVISION, SOURCE, "GREETING=hello", '["/bin/hello"]', "COPY hello.txt /", "linux/amd64"):
        assert expected in text, expected
    shot(page, "console-manifest")
    assert axe(page) == []

    page.goto("/console/r/team/web")
    page.get_by_role("button", name="Delete tag old").click()
    page.get_by_text("old: deleted").wait_for()
    assert page.locator("#tags tbody tr").count() == 1

    page.goto("/console/t/team/audit?action=tag.delete")
    assert page.get_by_role("cell", name="team/web:old").is_visible()
    page.goto("/console/t/team/audit?actor=nobody")
    assert page.get_by_text("No entries match.").is_visible()
    page.goto("/console/t/team/audit")
    shot(page, "console-audit")
    assert axe(page) == []
    page.goto("/console/t/team/admin")
    assert page.locator("meter").count() in (0, 1) and page.get_by_role("cell", name="tess").is_visible()
    shot(page, "console-tenant")
    assert axe(page) == []


def test_a_guest_sees_no_delete_button_and_a_direct_post_is_refused(console_hub, new_page):
    page = new_page()
    sign_in(page, "gary", USERS["gary"][0])
    page.goto("/console/r/team/web")
    assert page.locator("#tags tbody tr").count() >= 1
    assert page.get_by_role("button", name=re.compile("Delete")).count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")  # the sign-out form's
    response = page.request.post("/console/r/team/web", form={"csrf": csrf, "action": "delete-tag", "tag": "1.0"},
                                 headers={"Origin": console_hub.url})
    assert response.status == 403
    # A maintainer may delete, and sees the buttons; but not without the page's token, nor from elsewhere.
    mary = new_page()
    sign_in(mary, "mary", USERS["mary"][0])
    mary.goto("/console/r/team/web")
    assert mary.get_by_role("button", name="Delete tag 1.0").is_visible()
    token = mary.locator("input[name=csrf]").first.get_attribute("value")
    for form, origin in (({"action": "delete-tag", "tag": "1.0"}, console_hub.url),
                         ({"csrf": token, "action": "delete-tag", "tag": "1.0"}, "https://evil.example")):
        response = mary.request.post("/console/r/team/web", form=form, headers={"Origin": origin})
        assert response.status == 403, form
    page.reload()
    assert page.locator("#tags tbody tr").count() >= 1
    # Robots and the audit log are the tenant admins': a guest is told so.
    assert page.goto("/console/t/team/robots").status == 403


def test_another_tenants_admin_sees_nothing_private_of_team(console_hub, new_page):
    page = new_page()
    sign_in(page, *OUTSIDER)
    assert page.get_by_role("link", name="elsewhere", exact=True).is_visible()
    assert page.get_by_role("link", name="team", exact=True).count() == 0
    for path in ("/console/r/team/web", "/console/r/team/web/-/manifests/sha256:" + "0" * 64,
                 "/console/r/team/private-notes", "/console/t/team/robots", "/console/t/team/audit",
                 "/console/t/team/admin", "/console/platform"):
        response = page.goto(path)
        assert response.status == 404, path
        assert page.locator("#tags, #layers, #robots, #audit, #members").count() == 0, path
    page.goto("/console/t/team/?q=web")
    assert page.locator("#repositories tbody tr").count() == 0 and page.get_by_text("No repositories found").is_visible()
    page.goto("/console/t/team/")
    names = page.locator("#repositories tbody tr").all_inner_texts()
    assert not any("team/web" in n or "private-notes" in n for n in names)
    assert any("team/xss" in n for n in names)  # public repositories are listed for anyone
    page.goto("/console/t/elsewhere/audit")
    assert "team/" not in page.locator("#audit").inner_text()
    # A guessed POST fails the same way.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post("/console/r/team/web", form={"csrf": csrf, "action": "delete-tag", "tag": "1.0"},
                                 headers={"Origin": console_hub.url})
    assert response.status == 404


def test_the_platform_admin_sees_tenants_users_and_keys(console_hub, new_page):
    page = new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    sign_in(page, "admin", ADMIN_PASSWORD)
    page.goto("/console/platform")
    for table, expected in (("#tenants", "team"), ("#users", "tess"), ("#keys", "signs new tokens")):
        assert expected in page.locator(table).inner_text(), table
    shot(page, "console-platform")
    assert axe(page) == []


def test_the_landing_page_and_the_phone_layout(console_hub, new_page):
    page = new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    page.goto("/")
    shot(page, "landing")
    assert axe(page) == []
    assert page.goto("/login").url.endswith("/apps/login?next=/console/")
    phone = new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
    sign_in(phone, *TENANT_ADMIN)
    phone.goto("/console/r/team/web")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    shot(phone, "console-repository-phone")


def test_the_administration_pages_in_a_browser(console_hub, new_page):
    """Promotions (a pending one, approved with its button), members, retention (the dry-run
    preview), GC runs and the platform's GC history: no serious axe violations."""
    api(console_hub, "PUT", "tenants/team/promotion-gates",
        {"gates": [{"repositories": "team/prod", "approval": {"role": "admin"}}]})
    promotions = []
    for target in ("team/prod:old", "team/prod:1.0.0"):
        request = urllib.request.Request(
            f"{console_hub.url}/api/v1/promotions", method="POST",
            data=json.dumps({"source": "team/xss:1.0.0", "target": target}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(
                f"mary:{USERS['mary'][0]}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 202
            promotions.append(json.loads(response.read()))
    page = new_page(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    sign_in(page, *TENANT_ADMIN)
    page.goto("/console/t/team/promotions")
    assert "team/prod:1.0.0" in page.locator("main").inner_text()
    shot(page, "console-promotions")
    assert axe(page) == []
    for promotion in promotions:  # team/prod:old first: the older push
        page.get_by_label("Reason (optional)").first.fill("ship it")
        page.get_by_role("button", name=f"Approve promotion {promotion['id']}").click()
        page.get_by_text(f"promotion {promotion['id']} to {promotion['target']}: completed").wait_for()
    # Only team/prod's older tag is kept by no rule: even a scheduled run in between would take nothing else.
    api(console_hub, "PUT", "tenants/team/retention-policy", {
        "rules": [{"repositories": "**", "tags": {"glob": "**"}, "keep": {"always": True}}],
        "overrides": [{"repositories": "team/prod", "rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 1}}]}]})
    page.goto("/console/t/team/members")
    assert axe(page) == []
    shot(page, "console-members")
    page.goto("/console/t/team/gc")
    page.get_by_role("button", name="Preview: what would GC free here?").click()
    page.get_by_text("nothing was changed").wait_for()
    assert axe(page) == []
    shot(page, "console-gc")
    page.goto("/console/t/team/retention")
    page.get_by_role("button", name="Preview: what would a run delete?").click()
    page.get_by_role("heading", name="Dry run").wait_for()
    assert page.locator("table.preview tbody tr").all_inner_texts()[0].startswith("team/prod\told")
    assert page.locator("#retention-rules tbody tr").all_inner_texts()[1].startswith("overrides[0].rules[0]")
    shot(page, "console-retention")
    assert axe(page) == []
    delete = urllib.request.Request(f"{console_hub.url}/api/v1/tenants/team/retention-policy", method="DELETE",
                                    headers={"Authorization": "Basic " + base64.b64encode(
                                        f"admin:{ADMIN_PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(delete, timeout=60) as response:
        assert response.status == 204
    admin = new_page(bypass_csp=True)
    sign_in(admin, "admin", ADMIN_PASSWORD)
    admin.goto("/console/platform/gc")
    assert axe(admin) == []


def test_the_administration_pages_fit_a_phone(console_hub, new_page):
    phone = new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
    sign_in(phone, *TENANT_ADMIN)
    for path in ("/console/t/team/promotions", "/console/t/team/members", "/console/t/team/retention",
                 "/console/t/team/gc"):
        phone.goto(path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
