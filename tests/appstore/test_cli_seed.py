"""`daohub app seed`: the seed catalog published through the publish path, over SQLite and PostgreSQL;
what it publishes is then served by the API (public to anonymous callers with --public only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys

import pytest

from hub.app import create_app
from hub.cli import main
from hub.cli.seed import seed_folders
from tests.admin.conftest import headers, make_config
from tests.registry.conftest import METADATA_STORES

SEED_KEYS = {"gitea", "nginx", "postgresql", "redis", "voting-app", "wordpress"}

# main() installs its own root log handler.
pytestmark = pytest.mark.usefixtures("keep_logging")


def test_the_shipped_seeds_are_found():
    assert SEED_KEYS <= {p.name for p in seed_folders()}


@pytest.mark.parametrize("database", METADATA_STORES)
async def test_seed_publishes_every_app_and_is_idempotent(database, request, aiohttp_client, tmp_path, capsys):
    db = {"url": request.getfixturevalue("postgres_url")} if database == "postgres" else {}
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "database": db, "auth": {
        "enabled": True, "password_memory_kib": 64, "password_time_cost": 1}}))

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, ["app", "seed", *args, "--config", str(config_file)])

    assert await cli("--tenant", "shelf") == 0
    out = capsys.readouterr().out
    assert "created tenant shelf" in out
    published = {line.split()[1].split(":")[0] for line in out.splitlines() if line.startswith("published ")}
    assert published == {f"shelf/{key}" for key in SEED_KEYS}
    assert await cli("--tenant", "shelf", "--public") == 0  # again: same content, nothing replaced
    assert "exists with other content" not in capsys.readouterr().out

    client = await aiohttp_client(create_app(make_config(tmp_path, db)))
    r = await client.get("/api/v1/appstore/apps", params={"tenant": "shelf", "limit": "100"})
    body = await r.json()
    assert r.status == 200 and {a["key"] for a in body["items"]} == SEED_KEYS
    wordpress = next(a for a in body["items"] if a["key"] == "wordpress")
    assert wordpress["public"] and wordpress["icon"]
    r = await client.get(wordpress["icon"])
    assert r.status == 200 and r.content_type == "image/png"
    # Every seed renders with its defaults through the API.
    for app in body["items"]:
        r = await client.post(f"/api/v1/appstore/apps/{app['repository']}/versions/{app['latest_tag']}/render",
                              json={"values": {}}, headers=headers("anonymous"))
        assert r.status == 200, (app["key"], await r.text())
        assert "services:" in (await r.json())["compose"]


async def test_seed_without_public_stays_private(aiohttp_client, tmp_path):
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "auth": {
        "enabled": True, "password_memory_kib": 64, "password_time_cost": 1}}))
    assert await asyncio.to_thread(main, ["app", "seed", "--config", str(config_file)]) == 0
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    r = await client.get("/api/v1/appstore/apps")
    assert r.status == 200 and (await r.json())["items"] == []
    r = await client.get("/api/v1/appstore/apps/apps/redis")
    assert r.status == 404


def test_seed_as_a_process_refuses_a_bad_tenant(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hub", "app", "seed", "--tenant", "Not/Valid", "--data-dir",
                           str(tmp_path)], check=False, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "DAOHUB_AUTH_ENABLED": "false"})
    assert done.returncode == 2 and "--tenant" in done.stderr


def test_seed_refuses_a_tenant_named_like_a_cache_upstream(tmp_path):
    """The seed creates its tenant through the admin path: `/v2/<upstream>/...` belongs to the
    cache, so a tenant of that name could never be pulled from. Nothing is created."""
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "auth": {"enabled": False}, "proxy": {
        "upstreams": [{"name": "mirror.test", "url": "http://127.0.0.1:9", "aliases": ["mirrorapps"]}]}}))
    for name in ("mirror.test", "mirrorapps"):
        done = subprocess.run([sys.executable, "-m", "hub", "app", "seed", "--tenant", name, "--config",
                               str(config_file)], check=False, capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 1 and "pull-through cache upstream" in done.stderr, done.stderr
        assert "published" not in done.stdout
    with contextlib.closing(sqlite3.connect(tmp_path / "daohub.db")) as db:
        assert db.execute("SELECT name FROM tenants").fetchall() == []
