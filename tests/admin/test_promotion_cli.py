"""`daohub promote` and `daohub promotion`: the CLI promotes through the same gates, records and audit
rows as the API, as the operator ("cli"), and may not approve its own promotion."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.app import create_app
from hub.cli import main

from .conftest import audit_rows, call, make_config, seed
from .test_promotions_api import REVISION, gates, manifest_of, push

pytestmark = pytest.mark.usefixtures("keep_logging")  # main() installs its own root log handler


async def test_promote_from_the_command_line(aiohttp_client, tmp_path, capsys):
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path), "webhooks": {"enabled": False}}))

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, [*args, "--config", str(config_file)])

    client = await aiohttp_client(create_app(make_config(tmp_path)))
    await seed(client, images=False)
    await gates(client, {"gates": [{"repositories": "team/prod", "annotations": [REVISION],
                                    "approval": {"role": "admin"}}]})
    await push(client, "team/app", "bare")
    digest = await push(client, "team/app", "1.2", annotations={REVISION: "abc"})
    assert await cli("promote", "team/app:bare", "team/prod:1.2") == 1
    assert f"annotation or label {REVISION} is missing" in capsys.readouterr().err
    assert await cli("promote", "team/app:1.2", "team/prod") == 1
    assert "target: must be REPOSITORY:TAG" in capsys.readouterr().err
    assert await cli("promote", "team/app:1.2", "team/prod:1.2") == 0
    line = capsys.readouterr().out
    assert f"team/app@{digest} -> team/prod:1.2 pending (waits for an approval: role admin)" in line, line
    promotion = int(line.split()[1].rstrip(":"))
    assert await cli("promotion", "approve", str(promotion)) == 1
    assert "another user must approve it" in capsys.readouterr().err
    assert await cli("promotion", "show", str(promotion)) == 0
    assert json.loads(capsys.readouterr().out)["requested_by"] == "cli"
    status, done, _ = await call(client, "POST", f"/api/v1/promotions/{promotion}/approve", "tenant_admin")
    assert status == 200 and done["state"] == "completed", done
    assert await manifest_of(client, "team/prod", "1.2") == (200, digest)
    assert await cli("promotion", "list", "--state", "completed") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "STATE", "SOURCE"] and table[1].split()[:2] == [str(promotion), "completed"]
    assert await cli("promotion", "list", "--state", "rejected") == 0
    assert capsys.readouterr().out == "no promotions rejected\n"
    assert await cli("promotion", "list", "--json") == 0
    assert [p["id"] for p in json.loads(capsys.readouterr().out)] == [promotion]
    assert [(r.actor, r.action) for r in await audit_rows(client) if r.action.startswith("promotion.")] == [
        ("ada", "promotion.complete"), ("ada", "promotion.approve"), ("cli", "promotion.request"),
        ("cli", "promotion.refuse")]
