"""The CLI makes its changes through the same rules and audit rows as the API."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from hub.app import create_app
from hub.cli import main

from .conftest import basic, call, make_config


@pytest.fixture(autouse=True)
def keep_logging():
    """main() installs its own root log handler; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
