"""`daohub app publish DIR`, `app list [--json]`, `app render REPO:VERSION` (a published version read
from the registry) and `app import FILE|URL`, on one SQLite data directory, then served by the API."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import yaml

from hub.app import create_app
from hub.cli import main
from hub.cli.seed import SEEDS
from hub.keys import STORE
from tests.admin.conftest import headers, make_config

from .feeds import feed

pytestmark = pytest.mark.usefixtures("keep_logging")  # main() installs its own root log handler


async def run(capsys, tmp_path, *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, [*args, "--data-dir", str(tmp_path)])
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_publish_list_render_import(capsys, tmp_path, aiohttp_client, monkeypatch):
    for key in list(os.environ):
        if key.startswith("DAOHUB_"):
            monkeypatch.delenv(key)

    async def cli(capsys, tmp_path, *args: str) -> tuple[int, str, str]:
        return await run(capsys, tmp_path, "app", *args)

    code, out, _ = await cli(capsys, tmp_path, "publish", str(SEEDS / "nginx"), "--tenant", "shop", "--public")
    assert code == 0 and out.splitlines() == ["published shop/nginx:1.0.0", "published shop/nginx:1.1.0",
                                              "made shop/nginx public"]
    code, out, _ = await cli(capsys, tmp_path, "publish", str(SEEDS / "redis"), "--repository", "shop/kv")
    assert code == 0 and out.splitlines() == ["published shop/kv:7.2.0"]
    code, out, _ = await cli(capsys, tmp_path, "publish", str(SEEDS / "redis"), "--repository", "shop/kv")
    assert code == 0 and "exists with other content" not in out  # the same content again: nothing replaced

    code, out, _ = await cli(capsys, tmp_path, "list", "--json")
    listed = {a["repository"]: a for a in json.loads(out)}
    assert code == 0 and set(listed) == {"shop/nginx", "shop/kv"}
    assert listed["shop/nginx"]["latest_version"] == "1.1.0" and listed["shop/nginx"]["public"]
    code, out, _ = await cli(capsys, tmp_path, "list", "--tenant", "shop")
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "VERSION", "VISIBILITY", "TITLE"]
    assert any(line.split()[:4] == ["shop/nginx", "1.1.0", "(+1)", "public"] for line in lines)

    # A published version, not a folder: the compose file comes from the registry's artifact.
    code, out, _ = await cli(capsys, tmp_path, "render", "shop/nginx:1.0.0", "--set", "HTTP_PORT=9090")
    assert code == 0 and yaml.safe_load(out)["services"]["web"]["ports"] == ["9090:80"]
    code, out, _ = await cli(capsys, tmp_path, "render", "shop/nginx")  # no version: the latest
    assert code == 0 and yaml.safe_load(out)["services"]["web"]["image"] == "nginx:1.27-alpine"
    code, out, err = await cli(capsys, tmp_path, "render", "shop/nginx:9.9.9")
    assert code == 2 and "no such app version" in err and out == ""
    code, _, err = await cli(capsys, tmp_path, "render", "shop/nginx:1.0.0", "--set", "HTTP_PORT=99999")
    assert code == 2 and "HTTP_PORT" in err

    assert (await run(capsys, tmp_path, "tenant", "create", "shop"))[0] == 0
    (tmp_path / "feed.json").write_text(json.dumps(feed()))
    code, out, err = await cli(capsys, tmp_path, "import", str(tmp_path / "feed.json"), "--tenant", "shop", "--dry-run")
    assert code == 1 and "not importable: template 4 (title: required)" in err  # one template is broken
    assert "would publish shop/static-site:1.0.0" in out and "would publish shop/kv-cache:1.0.0" in out
    code, out, err = await cli(capsys, tmp_path, "import", str(tmp_path / "feed.json"), "--tenant", "shop",
                         "--only", "static-site")
    assert "published shop/static-site:1.0.0" in out and "skipped shop/kv-cache:1.0.0 (not chosen)" in err
    code, _, err = await cli(capsys, tmp_path, "import", "https://feeds.example/t.json", "--tenant", "shop")
    assert code == 2 and "appstore.import_hosts is empty" in err

    client = await aiohttp_client(create_app(make_config(tmp_path)))
    r = await client.get("/api/v1/appstore/apps/shop/nginx", headers=headers("anonymous"))
    assert r.status == 200 and [v["version"] for v in (await r.json())["versions"]] == ["1.1.0", "1.0.0"]
    rows = await client.server.app[STORE].audit_entries(100, None)
    assert [(r.actor, r.action, r.target) for r in rows if r.action == "appstore.import"] == [
        ("cli", "appstore.import", "shop")]
