"""README.md's quick start: its first screen (40 lines) says how to start, log in, push and pull
with docker and podman, how names work, that the server runs in the foreground, where `daohub`
and the app store are; its `daohub` commands run as written; what it says about the platform
admin holds; and the `app seed` lines name the CLI's default tenant."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path

import pytest

from hub import cli
from hub.app import open_registry
from hub.config import load_config
from hub.cli.seed import DEFAULT_TENANT
from tests.admin.conftest import make_config, seed
from tests.registry.conftest import push_image, token

README = Path(__file__).resolve().parents[2] / "README.md"
FIRST_SCREEN = 40


def first_screen() -> str:
    return "\n".join(README.read_text().splitlines()[:FIRST_SCREEN])


@pytest.mark.parametrize("needle", [
    "./scripts/serve.sh", "foreground", "docker login 127.0.0.1:5000", "docker push 127.0.0.1:5000/team/",
    "docker pull 127.0.0.1:5000/team/", "podman login --tls-verify=false", "podman push --tls-verify=false",
    "podman pull --tls-verify=false 127.0.0.1:5000/team/", "`<tenant>/<path>`", "platform admin may push anywhere",
    "`daohub` is in `.venv/bin`", "http://127.0.0.1:5000/apps/", "DAOHUB_ADMIN_PASSWORD"])
def test_the_first_screen_shows(needle):
    assert needle in first_screen()


@pytest.mark.usefixtures("keep_logging")
def test_the_quick_starts_daohub_commands_run_as_written(tmp_path, monkeypatch, capsys):
    commands = [shlex.split(c) for c in re.findall(r"`\.venv/bin/(daohub [^`]+)`", first_screen())]
    assert [c[1:3] for c in commands] == [["tenant", "create"], ["user", "create"], ["tenant", "member"]]
    monkeypatch.setenv("DAOHUB_AUTH_PASSWORD_MEMORY_KIB", "64")
    monkeypatch.setenv("DAOHUB_AUTH_PASSWORD_TIME_COST", "1")
    for argv in commands:
        assert cli.main([*argv[1:], "--data-dir", str(tmp_path)]) == 0, argv
    assert "password" in capsys.readouterr().out.lower()  # `user create` printed the generated one

    async def memberships() -> dict:
        async with open_registry(load_config(environ={}, overrides={"data_dir": str(tmp_path)})) as registry:
            return await registry.store.memberships("alice")

    assert asyncio.run(memberships()) == {"team": "developer"}


async def test_the_platform_admin_pushes_under_a_tenant_that_does_not_exist(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app_with_admin(tmp_path))
    await seed(client, images=False)  # `root` is a platform admin; alice a developer of team
    admin = await token(client, "repository:nosuch/app:pull,push", user="root", password="root-pw-123")
    await push_image(client, "nosuch/app", admin)
    r = await client.get("/api/v1/tenants/nosuch", headers={"Authorization": f"Bearer {admin}"})
    assert r.status == 404  # no tenant was created
    r = await client.get("/v2/nosuch/app/manifests/v1", headers={"Authorization": f"Bearer {admin}"})
    assert r.status == 200


def create_app_with_admin(tmp_path):
    from hub.app import create_app

    return create_app(make_config(tmp_path))


def test_the_app_seed_lines_name_the_clis_default_tenant(capsys):
    text = README.read_text()
    assert "--tenant library" not in text
    # The command-line summary says `[--tenant T]`, and what T defaults to; the app store names it.
    assert set(re.findall(r"daohub app seed \[--tenant (\w+)\]", text)) == {"T", DEFAULT_TENANT}
    assert f"into T (default {DEFAULT_TENANT})" in text
    with pytest.raises(SystemExit):
        cli.main(["app", "seed", "--help"])
    assert f"default {DEFAULT_TENANT}" in capsys.readouterr().out
