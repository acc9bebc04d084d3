"""Fixtures of the pull-through cache tests.

Upstreams are real registries on 127.0.0.1, started once per session: CNCF distribution
(Debian's `docker-registry`, anonymous) and a DaoHub with token auth on (standing in for a
Hub that requires Bearer tokens; the cache logs in as a pull-only user). Each test gets a cold
in-process DaoHub of its own with the proxy configured as it asks.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from hub.app import create_app
from hub.config import load_config
from tests.e2e.util import need_tool
from tests.helpers.fixtures_mirror import mirror_bed, mirror_containerd, mirror_dockerd, mirror_root  # noqa: F401
from tests.helpers.server import DaoHubProcess, DistributionProcess
from tests.registry.conftest import DATABASE_SETUP

from .util import AccessLog, Upstream

ADMIN = ("admin", "admin-Secret-0")
PULLER = ("puller", "puller-Secret-1")
# Names of the upstreams in the DaoHub under test.
DIST = "dist.test"
HUB = "hub.test"


@pytest.fixture(scope="session")
def proxy_root():
    root = Path(tempfile.mkdtemp(prefix="dh-proxy-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def distribution(proxy_root):
    need_tool("docker-registry")
    server = DistributionProcess(proxy_root / "distribution")
    server.start()
    yield server
    server.stop()


def _admin_api(server: DaoHubProcess, method: str, path: str, body: dict) -> None:
    r = requests.request(method, f"{server.url}/api/v1{path}", json=body, auth=ADMIN, timeout=30)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="session")
def token_hub(proxy_root):
    """A DaoHub with auth on: tenant `up`, where `puller` is a guest (pull only)."""
    server = DaoHubProcess(proxy_root / "token-hub", env={
        "DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN[1],
        "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
        "DAOHUB_AUTH_LOGIN_FAILURE_LIMIT": "100000",
    })
    server.start()
    _admin_api(server, "POST", "/tenants", {"name": "up"})
    _admin_api(server, "POST", "/users", {"username": PULLER[0], "password": PULLER[1]})
    _admin_api(server, "PUT", f"/tenants/up/members/{PULLER[0]}", {"role": "guest"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dist(distribution) -> Upstream:
    return Upstream(distribution.url)


@pytest.fixture(scope="session")
def hub_up(token_hub) -> Upstream:
    return Upstream(token_hub.url, ADMIN)


@pytest.fixture(scope="session")
def hub_log(token_hub) -> AccessLog:
    return AccessLog(token_hub.log_path, token_hub.url)


def dist_upstream(distribution, **extra) -> dict:
    return {"name": DIST, "url": distribution.url, "aliases": [distribution.host], **extra}


def hub_upstream(token_hub, **extra) -> dict:
    return {"name": HUB, "url": token_hub.url, "aliases": [token_hub.host], "username": PULLER[0],
            "password": PULLER[1], **extra}


@pytest.fixture
def proxy_hub(aiohttp_client, tmp_path, request):
    """make(upstreams, default_mirror=..., auth=..., database=..., storage=..., **proxy options) -> a cold DaoHub
    test client (a second call reopens the same data: a restart)."""
    databases: dict[str, dict] = {}

    async def make(upstreams: list[dict], *, default_mirror: str = "", auth: bool = False,
                   database: str = "sqlite", storage: str = "filesystem", **proxy):
        if database not in databases:
            databases[database] = DATABASE_SETUP[database](request, tmp_path)
        cfg = load_config(environ={}, overrides={
            "data_dir": str(tmp_path / "hub"),
            "database": databases[database],
            # filesystem: clients follow the upload file; memory (like S3): a spool.
            "storage": {"driver": storage},
            "log": {"access_log": False},
            "auth": {"enabled": auth, "password_memory_kib": 64, "password_time_cost": 1},
            "proxy": {"upstreams": upstreams, "default_mirror": default_mirror, **proxy},
        })
        return await aiohttp_client(create_app(cfg))

    return make

