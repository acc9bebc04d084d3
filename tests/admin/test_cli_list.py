"""`daohub tenant|user|robot|repo list [--json]` and the mutating commands' messages, against a running
`daohub serve` (tests/helpers/server.py) whose data the admin API, the registry API and the CLI change
together: the CLI lists what the server wrote, in the admin API's item shape."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from tests.helpers.server import REPO_ROOT, DaoHubProcess
from tests.proxy.util import Upstream

ADMIN = ("admin", "admin-Secret-0")


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="dh-cli-list-", dir="/tmp"))
    hub = DaoHubProcess(root, env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN[1],
                                   "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1"})
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


def cli(server: DaoHubProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real command line on the server's data directory, while it serves."""
    return subprocess.run([sys.executable, "-m", "hub", *args, "--data-dir", str(server.data_dir)],
                          cwd=REPO_ROOT, env=server.environment(), input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)


def ok(server: DaoHubProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = cli(server, *args, stdin=stdin)
    assert result.returncode == 0, (args, result.stderr)
    return result


def api(server: DaoHubProcess, method: str, path: str, body: dict | None = None) -> dict:
    r = requests.request(method, f"{server.url}/api/v1{path}", json=body, auth=ADMIN, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


def api_items(server: DaoHubProcess, path: str) -> list[dict]:
    return api(server, "GET", path)["items"]


def test_mutating_commands_say_what_they_did_and_lists_show_it(server):
    # Made with the CLI (each says what it did) ...
    assert ok(server, "tenant", "create", "team", "--quota-bytes", "1048576").stdout == \
        "created tenant team with a quota of 1048576 bytes\n"
    created = ok(server, "user", "create", "alice", "--password-stdin", stdin="alice-Secret-1\n")
    assert json.loads(created.stdout) == {"username": "alice", "admin": False}
    assert "created user alice" in created.stderr
    assert ok(server, "user", "password", "alice", stdin="alice-Secret-2\n").stdout == \
        "set the password of user alice\n"
    assert ok(server, "tenant", "member", "team", "alice", "developer").stdout == \
        "alice is now developer of tenant team\n"
    robot = ok(server, "robot", "create", "team", "ci", "--repo", "team/app", "--action", "pull", "--action", "push")
    assert json.loads(robot.stdout)["account"] == "robot$team+ci"
    assert "created robot robot$team+ci (pull, push on team/app); its secret above is shown once" in robot.stderr
    assert ok(server, "repo", "visibility", "team/app", "public").stdout == "repository team/app is now public\n"
    # ... and with the APIs of the running server.
    api(server, "POST", "/tenants", {"name": "other", "display_name": "Other team"})
    api(server, "POST", "/users", {"username": "bob", "password": "bob-Secret-123"})
    api(server, "PUT", "/tenants/team/members/bob", {"role": "guest"})
    registry = Upstream(server.url, ("alice", "alice-Secret-2"))
    image = registry.push_image("team/app", "1.0")
    registry.push_image("team/tools/lint", "v2", layer_sizes=(100,))
    r = requests.get(f"{server.url}/v2/team/app/manifests/1.0", timeout=30,
                     headers={"Accept": image.media_type, **registry._headers("team/app")})
    assert r.status_code == 200

    tenants = json.loads(ok(server, "tenant", "list", "--json").stdout)
    assert [t["name"] for t in tenants] == ["other", "team"]
    team = tenants[1]
    assert {k: team[k] for k in ("name", "display_name", "quota_bytes")} == {
        "name": "team", "display_name": "", "quota_bytes": 1048576}
    assert team["usage_bytes"] > 0 and team["created_at"].endswith("Z")
    # The admin API's items, with the CLI's extra keys.
    assert [{k: v for k, v in t.items() if k != "usage_bytes"} for t in tenants] == api_items(server, "/tenants")

    users = json.loads(ok(server, "user", "list", "--json").stdout)
    assert users == api_items(server, "/users")
    assert [(u["username"], u["is_admin"]) for u in users] == [("admin", True), ("alice", False), ("bob", False)]

    robots = json.loads(ok(server, "robot", "list", "team", "--json").stdout)
    assert robots == api_items(server, "/tenants/team/robots")
    assert [(r["account"], r["actions"], r["active"]) for r in robots] == [("robot$team+ci", ["pull", "push"], True)]
    assert "secret" not in json.dumps(robots)

    repos = json.loads(ok(server, "repo", "list", "team", "--json").stdout)
    assert [r["name"] for r in repos] == ["team/app", "team/tools/lint"]
    app, lint = repos
    assert app["public"] is True and lint["public"] is False and app["tag_count"] == lint["tag_count"] == 1
    assert app["last_pushed_at"] and app["last_pulled_at"] and lint["last_pulled_at"] is None
    assert [{k: v for k, v in r.items() if not k.startswith("last_")} for r in repos] == \
        api_items(server, "/tenants/team/repositories")


def test_tables_for_people_and_clear_errors(server):
    table = ok(server, "repo", "list", "team").stdout.splitlines()
    assert table[0].split() == ["NAME", "PUBLIC", "TAGS", "SIZE", "LAST", "PUSH", "LAST", "PULL"]
    assert table[1].split()[:3] == ["team/app", "yes", "1"] and "KiB" in table[1]
    assert table[2].split()[:3] == ["team/tools/lint", "no", "1"] and table[2].rstrip().endswith("-")
    tenants = ok(server, "tenant", "list").stdout
    assert "1.0 MiB" in tenants and "Other team" in tenants
    assert "robot$team+ci" in ok(server, "robot", "list", "team").stdout
    assert ok(server, "robot", "list", "other").stdout == "no robots in tenant other\n"
    assert json.loads(ok(server, "repo", "list", "other", "--json").stdout) == []
    missing = cli(server, "repo", "list", "nosuch")
    assert missing.returncode == 1 and "no tenant 'nosuch'" in missing.stderr and missing.stdout == ""
    removed = ok(server, "tenant", "member", "team", "bob", "none")
    assert removed.stdout == "removed bob from tenant team\n"


def test_every_positional_argument_has_help(monkeypatch):
    """Every positional argument of every command says what it is in --help."""
    import argparse

    from hub.cli import main

    parsers: list[argparse.ArgumentParser] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        parsers.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    walk(child)

    def capture(self, *args, **kwargs):  # the whole tree, once main() has built it
        walk(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        main(["version"])
    missing = [f"{p.prog} {a.dest}" for p in parsers for a in p._actions
               if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert len(parsers) > 30 and not missing, missing
