"""Config: defaults < YAML < environment < flags; unknown keys are errors; secrets hidden."""

from __future__ import annotations

import pytest

from hub.config import Config, ConfigError, Secret, load_config


def test_safe_defaults():
    cfg = load_config(environ={})
    assert cfg.server.addr == "127.0.0.1:5000"
    assert cfg.data_dir == "./data"
    assert cfg.storage.driver == "filesystem"
    assert cfg.database_url.startswith("sqlite:////")
    assert cfg.registry.max_manifest_bytes == 4 * 1024 * 1024


def test_precedence(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("server:\n  addr: 127.0.0.1:6000\nlog:\n  level: DEBUG\ndata_dir: /from/file\n")
    cfg = load_config(path, environ={"DAOHUB_LOG_LEVEL": "WARNING", "DAOHUB_DATA_DIR": "/from/env"},
                      overrides={"data_dir": "/from/flag"})
    assert cfg.server.addr == "127.0.0.1:6000"
    assert cfg.log.level == "WARNING"
    assert cfg.data_dir == "/from/flag"


@pytest.mark.parametrize("yaml_text,message", [
    ("bogus: 1\n", "unknown configuration key: bogus"),
    ("server:\n  port: 80\n", "unknown configuration key: server.port"),
    ("server:\n  addr: nope\n", "HOST:PORT"),
    ("registry:\n  max_manifest_bytes: lots\n", "expected an integer"),
    ("log:\n  access_log: maybe\n", "expected a boolean"),
    ("log:\n  format: xml\n", "log.format"),
    ("- a\n- b\n", "expected a mapping"),
    ("server: [1\n", "not valid YAML"),
    ("database:\n  url: mysql://x\n", "unsupported scheme"),
])
def test_bad_files(tmp_path, yaml_text, message):
    path = tmp_path / "c.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


@pytest.mark.parametrize("env,message", [
    ({"DAOHUB_SERVER_PORT": "1"}, "unknown configuration variable: DAOHUB_SERVER_PORT"),
    ({"DAOHUB_NOPE": "1"}, "unknown configuration variable"),
    ({"DAOHUB_REGISTRY_MAX_BLOB_BYTES": "x"}, "expected an integer"),
])
def test_bad_environment(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)


def test_every_key_settable_from_environment():
    import dataclasses
    import typing

    def check(obj, prefix: str) -> None:
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue  # storage.writes: the driver sections (tests/storage/test_params.py checks them)
            name, default = f"{prefix}_{f.name}".upper(), getattr(obj, f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                check(default, name)  # a nested section: DAOHUB_SERVER_TLS_<KEY>
            elif prefix != "DAOHUB":
                # Setting the variable to its own default must be accepted.
                value = (str(default).lower() if isinstance(default, bool)
                         else ",".join(default) if isinstance(default, list) else str(default))
                load_config(environ={name: value})

    check(Config(), "DAOHUB")


def test_secret_is_hidden():
    s = Secret("hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in repr({"password": s})
    assert s.reveal() == "hunter2"


def test_auth_is_on_by_default_and_open_mode_is_loopback_only():
    assert load_config(environ={}).auth.enabled is True
    load_config(environ={"DAOHUB_AUTH_ENABLED": "false"})  # loopback: fine
    with pytest.raises(ConfigError, match="refusing to serve without authentication on 0.0.0.0"):
        load_config(environ={"DAOHUB_AUTH_ENABLED": "false", "DAOHUB_SERVER_ADDR": "0.0.0.0:5000"})
    cfg = load_config(environ={"DAOHUB_AUTH_ENABLED": "false", "DAOHUB_SERVER_ADDR": "0.0.0.0:5000",
                               "DAOHUB_AUTH_ALLOW_OPEN_NON_LOOPBACK": "true"})
    assert cfg.auth.enabled is False
    load_config(environ={"DAOHUB_SERVER_ADDR": "0.0.0.0:5000"})  # auth on: any address


# Pull-through cache upstreams: a list of mappings -------------------------------------------
_UPSTREAMS_YAML = """
proxy:
  default_mirror: docker.io
  upstreams:
    - name: docker.io
      url: https://registry-1.docker.io
      aliases: [index.docker.io, Registry-1.Docker.io]
      username: bot
      password: s3cret-pw
      manifest_revalidate_seconds: 600
      anonymous_pull: true
    - name: ghcr.io
      url: https://ghcr.io/
      tenants: [team]
"""


def test_proxy_upstreams_from_yaml(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text(_UPSTREAMS_YAML)
    cfg = load_config(path, environ={})
    hub, ghcr = cfg.proxy.upstreams
    assert (hub.name, hub.url, hub.username, hub.manifest_revalidate_seconds) == (
        "docker.io", "https://registry-1.docker.io", "bot", 600)
    assert hub.aliases == ["index.docker.io", "registry-1.docker.io"]  # hosts compare lowercased
    assert isinstance(hub.password, Secret) and hub.password.reveal() == "s3cret-pw"
    assert "s3cret-pw" not in repr(cfg)
    assert hub.anonymous_pull is True and ghcr.anonymous_pull is False
    assert ghcr.tenants == ["team"] and ghcr.manifest_revalidate_seconds == 300
    assert cfg.proxy.default_mirror == "docker.io"


def test_proxy_upstreams_from_environment_as_yaml():
    cfg = load_config(environ={"DAOHUB_PROXY_UPSTREAMS": '[{"name": "quay.io", "url": "https://quay.io"}]',
                               "DAOHUB_PROXY_DEFAULT_MIRROR": "quay.io"})
    assert [u.name for u in cfg.proxy.upstreams] == ["quay.io"]
    assert load_config(environ={"DAOHUB_PROXY_UPSTREAMS": "[]"}).proxy.upstreams == []


@pytest.mark.parametrize("upstreams,extra,message", [
    ('[{"name": "Docker.io", "url": "https://x"}]', {}, "repository-name component"),
    ('[{"name": "a", "url": "ftp://x"}]', {}, "http"),
    ('[{"name": "a", "url": "https://u:p@x"}]', {}, "without a path, credentials"),
    ('[{"name": "a", "url": "https://x/v2"}]', {}, "without a path"),
    ('[{"name": "a", "url": "https://x:99999"}]', {}, "port"),
    ('[{"name": "a", "url": "https://x", "username": "u"}]', {}, "username and password go together"),
    ('[{"name": "a", "url": "https://x", "manifest_revalidate_seconds": -1}]', {}, "must not be negative"),
    ('[{"name": "a", "url": "https://x", "aliases": ["bad host"]}]', {}, "host"),
    ('[{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]', {}, "already names"),
    ('[{"name": "a", "url": "https://x", "aliases": ["b"]}, {"name": "b", "url": "https://y"}]', {},
     "already names"),
    ('[{"name": "a", "url": "https://x", "tenants": ["Bad!"]}]', {}, "not a tenant name"),
    ('[{"name": "a", "url": "https://x", "bogus": 1}]', {},
     r"unknown configuration key: DAOHUB_PROXY_UPSTREAMS\[0\].bogus"),
    ('["a"]', {}, "expected a mapping"),
    ('{"name": "a"}', {}, "expected a list"),
    ("[a", {}, "not a valid YAML list"),
    ('[{"name": "a", "url": "https://x"}]', {"DAOHUB_PROXY_DEFAULT_MIRROR": "b"}, "no upstream is named 'b'"),
    ("[]", {"DAOHUB_PROXY_READ_TIMEOUT_SECONDS": "0"}, "must be positive"),
])
def test_bad_proxy_config(upstreams, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"DAOHUB_PROXY_UPSTREAMS": upstreams, **extra})


def test_appstore_import_hosts():
    assert load_config(environ={}).appstore.import_hosts == []  # by default no host is dialled for a feed
    config = load_config(environ={"DAOHUB_APPSTORE_IMPORT_HOSTS": "Feeds.Example.org, 127.0.0.1:8443,[::1]:9"})
    assert config.appstore.import_hosts == ["feeds.example.org", "127.0.0.1:8443", "[::1]:9"]
    for bad in ("https://feeds.example.org", "feeds.example.org/path", "user@host", "*.example.org"):
        with pytest.raises(ConfigError, match="appstore.import_hosts"):
            load_config(environ={"DAOHUB_APPSTORE_IMPORT_HOSTS": bad})
