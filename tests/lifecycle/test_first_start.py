"""The first `daohub serve` of an empty registry publishes the seed app catalog (public, tenant
`apps`); `appstore.seed_on_first_start: false` turns that off; nothing is published again on
later starts, so an app deleted after the first start stays deleted. Real processes on SQLite."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request

from hub.cli.seed import seed_folders
from tests.helpers.server import REPO_ROOT, DaoHubProcess

SEEDS = {p.name for p in seed_folders()}
ADMIN_PASSWORD = "first-start-admin-pw"
AUTH = {"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
        "DAOHUB_ADMIN_PASSWORD": ADMIN_PASSWORD, "DAOHUB_LOG_ACCESS_LOG": "false"}


class OperatorsHub(DaoHubProcess):
    """`daohub serve` with the seed switch as an operator gets it: DaoHubProcess turns it off
    for every other test, and this puts the default back (or `seed` says)."""

    def __init__(self, data_dir, seed: str | None = None):
        super().__init__(data_dir, env=AUTH)
        self.seed = seed

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop("DAOHUB_APPSTORE_SEED_ON_FIRST_START")
        if self.seed is not None:
            env["DAOHUB_APPSTORE_SEED_ON_FIRST_START"] = self.seed
        return env


hub = OperatorsHub


def request(server: DaoHubProcess, method: str, path: str, *, admin: bool = False) -> tuple[int, bytes]:
    headers = {"Accept": "text/html"} if path.startswith("/apps") else {}
    if admin:
        headers["Authorization"] = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + path, method=method, headers=headers),
                                    timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def anonymous_apps(server: DaoHubProcess) -> set[str]:
    status, body = request(server, "GET", "/api/v1/appstore/apps?limit=100")
    assert status == 200, body
    return {item["repository"] for item in json.loads(body)["items"]}


def test_first_start_publishes_the_seed_catalog_once(tmp_path):
    server = hub(tmp_path / "data").start()
    try:
        assert anonymous_apps(server) == {f"apps/{key}" for key in SEEDS}
        status, page = request(server, "GET", "/apps/")
        assert status == 200 and b"WordPress" in page and b"Gitea" in page
        status, body = request(server, "DELETE", "/api/v1/repositories/apps/redis", admin=True)
        assert status == 204, body
    finally:
        server.stop()
    assert "publishing the seed app catalog" in server.log_text()

    server.start()  # a later start: the deleted app stays deleted, nothing is published again
    try:
        assert anonymous_apps(server) == {f"apps/{key}" for key in SEEDS - {"redis"}}
    finally:
        server.stop()
    assert server.log_text().count("publishing the seed app catalog") == 1


def test_switched_off_publishes_nothing_then_or_later(tmp_path):
    server = hub(tmp_path / "data", seed="false").start()
    try:
        assert anonymous_apps(server) == set()
        status, tenants = request(server, "GET", "/api/v1/tenants", admin=True)
        assert status == 200 and json.loads(tenants)["items"] == []
    finally:
        server.stop()
    # Switching it on afterwards changes nothing: the first start has been and gone.
    again = hub(tmp_path / "data", seed="true").start()
    try:
        assert anonymous_apps(again) == set()
    finally:
        again.stop()


def test_a_registry_with_content_before_its_first_start_is_left_as_it_is(tmp_path):
    data_dir = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "DAOHUB_AUTH_ENABLED": "true"}
    done = subprocess.run([sys.executable, "-m", "hub", "tenant", "create", "team", "--data-dir", str(data_dir)],
                          check=False, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    server = hub(data_dir).start()
    try:
        assert anonymous_apps(server) == set()
    finally:
        server.stop()
    assert "publishing the seed app catalog" not in server.log_text()
