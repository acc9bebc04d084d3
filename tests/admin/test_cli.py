"""The CLI makes its changes through the same rules and audit rows as the API."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hub.app import create_app, open_registry
from hub.cli import main
from hub.config import load_config
from hub.db.proxy_store import UpstreamRecord

from .conftest import basic, call, make_config

# main() installs its own root log handler.
pytestmark = pytest.mark.usefixtures("keep_logging")


async def test_cli_and_api_share_rules_and_audit(aiohttp_client, tmp_path, capsys, monkeypatch):
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "auth": {
        "enabled": True, "password_memory_kib": 64, "password_time_cost": 1}}))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("alice-password\nshort\n"))

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, [*args, "--config", str(config_file)])

    assert await cli("tenant", "create", "team") == 0
    assert await cli("tenant", "create", "Team") == 1
    assert "name: must be lowercase" in capsys.readouterr().err
    assert await cli("user", "create", "alice", "--password-stdin") == 0
    assert await cli("user", "create", "bob", "--password-stdin") == 1  # "short": under 8 characters
    assert await cli("tenant", "member", "team", "alice", "admin") == 0
    assert await cli("robot", "create", "team", "ci", "--repo", "other/*", "--action", "pull") == 1
    assert "must stay inside the tenant" in capsys.readouterr().err
    assert await cli("robot", "create", "team", "ci", "--repo", "team/../other/app", "--action", "pull") == 1
    assert "no '.', '..' or empty segments" in capsys.readouterr().err
    assert await cli("robot", "create", "team", "ci", "--repo", "team/ci/*", "--action", "pull") == 0
    robot = json.loads(capsys.readouterr().out)

    client = await aiohttp_client(create_app(make_config(tmp_path)))
    r = await client.get("/api/v1/tenants/team/robots/ci", headers=basic("alice", "alice-password"))
    assert r.status == 200 and (await r.json())["account"] == robot["account"]
    assert (await client.get("/api/v1/me", headers=basic(robot["account"], robot["secret"]))).status == 200
    status, body, _ = await call(client, "GET", "/api/v1/audit?tenant=team", extra=basic("alice", "alice-password"))
    assert status == 200
    assert [(e["actor"], e["action"], e["target"]) for e in body["items"]] == [
        ("cli", "robot.create", "robot$team+ci"), ("cli", "tenant.member", "team/alice"),
        ("cli", "tenant.create", "team")]


async def test_cli_refuses_a_tenant_named_like_an_upstream(tmp_path, capsys):
    """The API's rule, in the one place both use: no tenant named like an upstream or an alias,
    whether the upstream is in the config file or was created through the API (stored)."""
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "proxy": {"upstreams": [
        {"name": "docker.io", "url": "https://registry-1.docker.io", "aliases": ["index.docker.io"]}]}}))

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, [*args, "--config", str(config_file)])

    assert await cli("tenant", "create", "team") == 0  # creates and migrates the database too
    async with open_registry(load_config(environ={}, overrides={"data_dir": str(tmp_path)})) as registry:
        now = time.time()
        assert await registry.store.create_upstream(UpstreamRecord(
            "ghcr.io", "https://ghcr.io", ("ghcr.example",), "", "", 60, (), True, None, None, now, now))
    capsys.readouterr()
    for name, which, upstream in (("docker.io", "the name", "docker.io"), ("index.docker.io", "an alias", "docker.io"),
                                  ("ghcr.io", "the name", "ghcr.io"), ("ghcr.example", "an alias", "ghcr.io")):
        assert await cli("tenant", "create", name) == 1, name
        assert f"{name!r} is {which} of the pull-through cache upstream {upstream!r}" in capsys.readouterr().err
    assert await cli("tenant", "create", "docker.iox") == 0
    async with open_registry(load_config(environ={}, overrides={"data_dir": str(tmp_path)})) as registry:
        tenants = [t.name for t in await registry.store.list_tenants(100, None)]
    assert sorted(tenants) == ["docker.iox", "team"]
