"""The proxy is built from ProxySettings, which hub.config makes out of the `proxy` section (the proxy
package never imports hub.config: tests/unit/test_import_rules.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hub.config import ConfigError, Secret, UpstreamConfig, load_config
from hub.proxy.names import HOST_PORT
from hub.proxy.routing import CONFIG, Upstream
from hub.proxy.settings import ProxySettings, UpstreamSpec
from hub.secret import Secret as SecretItself


def test_settings_carry_the_section_and_what_it_depends_on(tmp_path):
    config = load_config(environ={
        "DAOHUB_DATA_DIR": str(tmp_path),
        "DAOHUB_PROXY_UPSTREAMS": ('[{"name": "docker.io", "url": "https://registry-1.docker.io/", '
                                   '"username": "u", "password": "p", '
                                   '"aliases": ["Index.Docker.IO", "docker.io"]}]'),
        "DAOHUB_PROXY_DEFAULT_MIRROR": "docker.io", "DAOHUB_PROXY_READ_TIMEOUT_SECONDS": "7",
        "DAOHUB_REGISTRY_MAX_MANIFEST_BYTES": "12345", "DAOHUB_PROXY_UPSTREAM_REFRESH_SECONDS": "2.5"})
    settings = config.proxy_settings()
    assert isinstance(settings, ProxySettings)
    assert settings.spool_dir == str(Path(tmp_path) / "proxy-spool")
    assert (settings.default_mirror, settings.read_timeout_seconds) == ("docker.io", 7.0)
    assert (settings.connect_timeout_seconds, settings.upstream_refresh_seconds) == (10.0, 2.5)
    assert settings.max_manifest_bytes == 12345
    assert (settings.pull_record_seconds, settings.eviction_interval_seconds) == (300, 3600)
    (spec,) = settings.upstreams
    assert spec.aliases == ["index.docker.io"]          # normalised by the config's checks
    assert isinstance(spec.password, SecretItself) and repr(spec.password) == "Secret('***')"
    upstream = Upstream.from_config(spec)
    assert (upstream.url, upstream.source) == ("https://registry-1.docker.io", CONFIG)
    assert upstream.aliases == ("index.docker.io",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.spool_dir = "/elsewhere"  # type: ignore[misc]


def test_an_explicit_spool_dir_is_kept(tmp_path):
    config = load_config(environ={"DAOHUB_DATA_DIR": str(tmp_path), "DAOHUB_PROXY_SPOOL_DIR": "/var/x"})
    assert config.proxy_settings().spool_dir == "/var/x"
    assert config.proxy_settings().upstreams == ()


def test_old_names_still_work():
    assert UpstreamConfig is UpstreamSpec and Secret is SecretItself


@pytest.mark.parametrize("host,ok", [("index.docker.io", True), ("localhost:5000", True),
                                     ("[::1]:5000", True), ("Docker.io", False), ("-a.io", False),
                                     ("a.io:123456", False), ("", False)])
def test_host_port_grammar(host, ok):
    assert bool(HOST_PORT.fullmatch(host)) is ok


def test_a_bad_alias_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a registry host"):
        load_config(environ={
            "DAOHUB_DATA_DIR": str(tmp_path),
            "DAOHUB_PROXY_UPSTREAMS": '[{"name": "x", "url": "https://x.io", "aliases": ["a b"]}]'})
