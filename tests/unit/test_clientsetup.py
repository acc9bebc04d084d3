"""The client set-up files (hub/proxy/clientsetup.py) and `daohub client setup --write`'s merging and
backups (hub/cli/client.py), on files in a temporary directory. tests/proxy/ applies the written files
to real dockerd, containerd and podman."""

from __future__ import annotations

import argparse
import json
import os
import tomllib

import pytest

from hub.cli import client
from hub.proxy import clientsetup
from hub.proxy.clientsetup import Mirror, Setup, SetupError

HUB = Setup("http", "hub.example:5000", (Mirror.of("docker.io", ["index.docker.io", "registry-1.docker.io"], True),
                                          Mirror.of("ghcr", ["ghcr.io"]), Mirror.of("internal")))
TLS = Setup("https", "hub.example", HUB.mirrors)


def test_namespaces_are_the_host_like_names_with_docker_hub_as_docker_io():
    assert [m.namespaces for m in HUB.mirrors] == [("docker.io",), ("ghcr.io",), ()]
    assert Mirror.of("byhost", ["127.0.0.1:5001", "localhost", "plain"]).namespaces == ("127.0.0.1:5001", "localhost")


def test_daemon_json_needs_a_default_mirror_and_marks_plain_http_insecure():
    assert clientsetup.daemon_json(HUB) == {"registry-mirrors": ["http://hub.example:5000"],
                                            "insecure-registries": ["hub.example:5000"]}
    assert clientsetup.daemon_json(TLS) == {"registry-mirrors": ["https://hub.example"]}
    assert clientsetup.daemon_json(Setup("http", "h:1", (Mirror.of("ghcr.io"),))) == {}
    assert json.loads(clientsetup.daemon_json_text(HUB)) == clientsetup.daemon_json(HUB)


@pytest.mark.parametrize("existing, expected", [
    ("", {"registry-mirrors": ["https://hub.example"]}),
    ('{"debug": true, "log-opts": {"max-size": "10m"}}',
     {"debug": True, "log-opts": {"max-size": "10m"}, "registry-mirrors": ["https://hub.example"]}),
    ('{"registry-mirrors": ["https://other.example", "https://hub.example"]}',
     {"registry-mirrors": ["https://hub.example", "https://other.example"]}),   # ours first, once
])
def test_merging_daemon_json_keeps_every_other_key_and_mirror(existing, expected):
    merged = clientsetup.merge_daemon_json(existing, TLS)
    assert json.loads(merged) == expected
    assert clientsetup.merge_daemon_json(merged, TLS) == merged   # idempotent


@pytest.mark.parametrize("existing, message", [
    ("{not json", "not valid JSON"), ("[]", "not a JSON object"),
    ('{"registry-mirrors": "https://x"}', "'registry-mirrors' is not a list")])
def test_a_daemon_json_that_cannot_be_merged_is_refused(existing, message):
    with pytest.raises(SetupError, match=message):
        clientsetup.merge_daemon_json(existing, TLS)


def test_hosts_toml_per_namespace_names_the_registry_itself_as_server():
    files = clientsetup.containerd_files(HUB)
    assert list(files) == ["docker.io", "ghcr.io"]
    docker, ghcr = (tomllib.loads(files[n]) for n in files)
    assert docker["server"] == "https://registry-1.docker.io" and ghcr["server"] == "https://ghcr.io"
    assert docker["host"] == ghcr["host"] == {"http://hub.example:5000": {"capabilities": ["pull", "resolve"]}}


def test_registries_conf_mirrors_the_default_by_address_and_others_by_path_prefix():
    document = tomllib.loads(clientsetup.registries_conf(HUB))
    assert document["registry"] == [
        {"location": "docker.io", "mirror": [{"location": "hub.example:5000", "insecure": True}]},
        {"location": "ghcr.io", "mirror": [{"location": "hub.example:5000/ghcr", "insecure": True}]}]
    assert "insecure" not in clientsetup.registries_conf(TLS)


EXISTING = """# site settings
unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"

[[registry]]
location = "docker.io"
blocked = false

[[registry.mirror]]
location = "mirror.corp.example"

[[registry]]
prefix = "quay.io"
location = "quay.corp.example"
"""


def test_merging_registries_conf_puts_this_registry_first_and_keeps_the_rest():
    merged = clientsetup.merge_registries_conf(EXISTING, TLS)
    assert merged.startswith("# site settings\n")
    document = tomllib.loads(merged)
    assert document["short-name-mode"] == "enforcing" and document["unqualified-search-registries"] == ["docker.io"]
    registries = document["registry"]
    assert registries[0] == {"location": "docker.io", "blocked": False, "mirror": [
        {"location": "hub.example"}, {"location": "mirror.corp.example"}]}
    assert registries[1] == {"prefix": "quay.io", "location": "quay.corp.example"}
    assert registries[2] == {"location": "ghcr.io", "mirror": [{"location": "hub.example/ghcr"}]}
    assert clientsetup.merge_registries_conf(merged, TLS) == merged   # idempotent
    assert tomllib.loads(clientsetup.merge_registries_conf("", HUB)) == tomllib.loads(clientsetup.registries_conf(HUB))


@pytest.mark.parametrize("existing, message", [
    ("[[registry]\n", "not valid TOML"),
    ('[registries.search]\nregistries = ["docker.io"]\n', "version 1 format"),
    ('registry = "x"\n', "not an array of tables")])
def test_a_registries_conf_that_cannot_be_merged_is_refused(existing, message):
    with pytest.raises(SetupError, match=message):
        clientsetup.merge_registries_conf(existing, HUB)


def _answer(name="x", namespaces=("x.io",), host="h:1") -> dict:
    return {"scheme": "http", "host": host, "mirrors": [{"name": name, "namespaces": list(namespaces)}]}


@pytest.mark.parametrize("data", [
    None, [], {"scheme": "ftp", "host": "h"}, {"scheme": "http", "host": "a/b"}, _answer(namespaces=["a b"]),
    # A hostile server: nothing it says may name a file outside certs.d/ or break out of a TOML string.
    _answer(namespaces=[".."]), _answer(namespaces=["../etc"]), _answer(namespaces=["x.io/../../etc"]),
    _answer(namespaces=['x.io" evil = "1']), _answer(name="../x"), _answer(name='x"'), _answer(host='h"]\n[x'),
    _answer(host="h:1/path")])
def test_a_server_answer_that_is_not_a_set_up_is_refused(data):
    with pytest.raises(SetupError, match="not understood"):
        Setup.from_dict(data)


def test_the_server_answer_round_trips():
    assert Setup.from_dict(json.loads(json.dumps(HUB.as_dict()))) == HUB


def _args(tmp_path, write=True) -> argparse.Namespace:
    return argparse.Namespace(write=write, docker_config=str(tmp_path / "docker" / "daemon.json"),
                              containerd_dir=str(tmp_path / "certs.d"),
                              podman_config=str(tmp_path / "containers" / "registries.conf"))


def test_write_backs_up_each_changed_file_and_keeps_its_mode(tmp_path, capsys):
    args = _args(tmp_path)
    daemon = tmp_path / "docker" / "daemon.json"
    daemon.parent.mkdir()
    daemon.write_text('{"debug": true}\n')
    os.chmod(daemon, 0o600)
    planned = client.plan(HUB, client.CLIENTS, args, warn=print)
    assert [(p.client, p.path.name) for p in planned] == [
        ("docker", "daemon.json"), ("containerd", "hosts.toml"), ("containerd", "hosts.toml"),
        ("podman", "registries.conf")]
    for p in planned:
        backup = client.write_file(p.path, p.text, p.current)
        assert (backup is None) == (p.current is None)
    (backup,) = daemon.parent.glob("daemon.json.bak-*")
    assert backup.read_text() == '{"debug": true}\n' and backup.name.endswith("Z")
    assert json.loads(daemon.read_text())["debug"] is True and daemon.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "certs.d" / "ghcr.io" / "hosts.toml").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in daemon.parent.iterdir()) == ["daemon.json", backup.name]  # no temp file left
    # A second backup in the same second gets a suffix instead of overwriting the first.
    assert client.backup_path(daemon, now=0).name == "daemon.json.bak-19700101T000000Z"
    (daemon.parent / "daemon.json.bak-19700101T000000Z").write_text("")
    assert client.backup_path(daemon, now=0).name == "daemon.json.bak-19700101T000000Z-2"


def test_plan_refuses_a_server_that_mirrors_nothing_and_docker_without_a_default_mirror(tmp_path):
    args = _args(tmp_path)
    with pytest.raises(SetupError, match="mirrors no upstream"):
        client.plan(Setup("http", "h:1"), client.CLIENTS, args, warn=print)
    no_default = Setup("http", "h:1", (Mirror.of("ghcr.io"),))
    with pytest.raises(SetupError, match="no default mirror"):
        client.plan(no_default, ("docker",), args, warn=print)
    warnings: list[str] = []
    planned = client.plan(no_default, client.CLIENTS, args, warn=warnings.append)
    assert [p.client for p in planned] == ["containerd", "podman"] and "docker skipped" in warnings[0]


@pytest.mark.parametrize("server", ["ftp://hub.example", "http://hub.example/v2/", "http://"])
def test_a_server_that_is_not_a_registry_url_is_refused(server):
    with pytest.raises(SetupError, match="is not a registry URL"):
        client.fetch_setup(server)


def test_without_server_the_config_names_this_registry(tmp_path):
    from hub.config import load_config

    def config(**server):
        return load_config(environ={}, overrides={"data_dir": str(tmp_path), "server": server})

    assert client.default_server(config(public_url="https://registry.acme.test")) == "https://registry.acme.test"
    assert client.default_server(config(addr="10.0.0.7:5000")) == "http://10.0.0.7:5000"
    with pytest.raises(SetupError, match="name this server with --server URL"):
        client.default_server(config(addr="0.0.0.0:5000"))
