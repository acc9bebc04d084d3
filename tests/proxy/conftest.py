"""Fixtures of the pull-through cache tests.

Upstreams are real registries on 127.0.0.1, started once per session: CNCF distribution
(Debian's `docker-registry`, anonymous) and a DaoHub with token auth on (standing in for a
Hub that requires Bearer tokens; the cache logs in as a pull-only user). Each test gets a cold
in-process DaoHub of its own with the proxy configured as it asks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hub.app import create_app
from hub.config import load_config
from tests.e2e.util import need_tool
from tests.helpers.server import REPO_ROOT, DaoHubProcess, DistributionProcess

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


def _hub_cli(server: DaoHubProcess, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "hub", *args, "--data-dir", str(server.data_dir)],
                            cwd=REPO_ROOT, env=server.environment(), input=stdin, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"daohub {' '.join(args)} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def token_hub(proxy_root):
    """A DaoHub with auth on: tenant `up`, where `puller` is a guest (pull only)."""
    server = DaoHubProcess(proxy_root / "token-hub", env={
        "DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN[1],
        "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
        "DAOHUB_AUTH_LOGIN_FAILURE_LIMIT": "100000",
    })
    server.start()
    _hub_cli(server, "tenant", "create", "up")
    _hub_cli(server, "user", "create", PULLER[0], "--password-stdin", stdin=PULLER[1] + "\n")
    _hub_cli(server, "tenant", "member", "up", PULLER[0], "guest")
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
def proxy_hub(aiohttp_client, tmp_path):
    """make(upstreams, default_mirror=..., auth=..., **proxy options) -> a cold DaoHub test client."""
    async def make(upstreams: list[dict], *, default_mirror: str = "", auth: bool = False, **proxy):
        cfg = load_config(environ={}, overrides={
            "data_dir": str(tmp_path / "hub"),
            "log": {"access_log": False},
            "auth": {"enabled": auth, "password_memory_kib": 64, "password_time_cost": 1},
            "proxy": {"upstreams": upstreams, "default_mirror": default_mirror, **proxy},
        })
        return await aiohttp_client(create_app(cfg))

    return make

