"""Session fixtures of the browser tests: one DaoHub process (auth on, SQLite) seeded with
`daohub app seed` and through the JSON API, and one headless Chromium driven by Playwright.

Debian's chromium runs through `executable_path`; `playwright install` is never run. Under
CI=true a missing chromium or playwright package is a failure; elsewhere those tests skip.
Screenshots go to test-artifacts/web/ (git-ignored); the path is printed at session start.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.appstore.hubs import PNG, publish_body
from tests.helpers.server import REPO_ROOT, DaoHubProcess

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = "/usr/bin/chromium"
ADMIN_PASSWORD = "admin-pw-web-1"
USERS = {"mary": ("mary-pw-123", "maintainer"), "gary": ("gary-pw-123", "guest")}
OUTSIDER = ("olga", "olga-pw-123")  # admin of another tenant
XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
ENV = {"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
       "DAOHUB_LOG_ACCESS_LOG": "false"}


def _cli(data_dir: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
    env.update(ENV)
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run([sys.executable, "-m", "hub", *args, "--data-dir", str(data_dir)], check=False,
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, f"daohub {' '.join(args)}: {done.stdout}{done.stderr}"


def api(hub: DaoHubProcess, method: str, path: str, body: dict, user: str = "admin",
        password: str = ADMIN_PASSWORD) -> None:
    request = urllib.request.Request(
        f"{hub.url}/api/v1/{path}", data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status in (200, 201), (path, response.status)


@pytest.fixture(scope="session")
def live_hub(tmp_path_factory):
    """The seed catalog public in tenant `library`; `team/private-notes` private to team; `team/xss`
    public with hostile text in its title, description and a parameter label."""
    data_dir = tmp_path_factory.mktemp("web-hub")
    _cli(data_dir, "app", "seed", "--tenant", "library", "--public")
    # No users yet: the server creates the platform admin `admin` with DAOHUB_ADMIN_PASSWORD.
    hub = DaoHubProcess(data_dir, env={**ENV, "DAOHUB_ADMIN_PASSWORD": ADMIN_PASSWORD})
    hub.start()
    try:
        for tenant in ("team", "elsewhere"):
            api(hub, "POST", "tenants", {"name": tenant})
        for user, (password, role) in USERS.items():
            api(hub, "POST", "users", {"username": user, "password": password})
            api(hub, "PUT", f"tenants/team/members/{user}", {"role": role})
        api(hub, "POST", "users", {"username": OUTSIDER[0], "password": OUTSIDER[1]})
        api(hub, "PUT", f"tenants/elsewhere/members/{OUTSIDER[0]}", {"role": "admin"})
        private = publish_body("private-notes", "1.0.0", title="Private Notes", categories=("notes",),
                               description="Only **team** sees this.")
        api(hub, "POST", "appstore/apps/team/private-notes/versions", private, "mary", USERS["mary"][0])
        hostile = publish_body("xss", "1.0.0", title=XSS, description=f"Look: {XSS}", categories=("web",))
        hostile["metadata"]["version"]["parameters"][1]["label"] = XSS
        api(hub, "POST", "appstore/apps/team/xss/versions", hostile)
        api(hub, "PATCH", "repositories/team/xss", {"public": True})
        yield hub
    finally:
        hub.stop()


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"browser tests need {reason} (CI=true)")
    pytest.skip(f"browser tests need {reason}")


# Module scope, not session: while Playwright's sync API runs, its event loop counts as running
# on the main thread, and every asyncio test after it would fail ("cannot be called from a running
# event loop"). Only test_browser.py drives the browser, so this is still one browser per run.
@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        _unavailable(f"Debian's chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield instance
        finally:
            instance.close()


ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
_SHOTS_TAKEN = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _SHOTS_TAKEN.append(ARTIFACTS)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    # Printed in the summary, where captured output does not hide it.
    if _SHOTS_TAKEN:
        terminalreporter.write_line(f"web catalog screenshots: {ARTIFACTS}")


@pytest.fixture
def new_page(browser, live_hub):
    """new_page(**context options): a page in a fresh context (no cookies), that records dialogs."""
    contexts = []

    def make(**options):
        context = browser.new_context(base_url=live_hub.url, accept_downloads=True, **options)
        contexts.append(context)
        page = context.new_page()
        page.dialogs = []

        def on_dialog(dialog):
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        return page

    yield make
    for context in contexts:
        context.close()


__all__ = ["OUTSIDER", "PNG", "USERS", "XSS"]
