"""server.tls: settings from YAML and DAOHUB_SERVER_TLS_*, the errors `daohub serve` stops on
(exit 2, before anything starts), and `daohub tls self-signed`."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys

import pytest
from cryptography import x509

from hub.config import ConfigError, load_config
from tests.helpers.server import REPO_ROOT


def test_every_tls_key_from_the_environment(pki):
    config = load_config(environ={
        "DAOHUB_SERVER_TLS_CERT_FILE": str(pki.cert_file), "DAOHUB_SERVER_TLS_KEY_FILE": str(pki.key_file),
        "DAOHUB_SERVER_TLS_CLIENT_CA_FILE": str(pki.client_ca_file), "DAOHUB_SERVER_TLS_MIN_VERSION": "1.3",
        "DAOHUB_SERVER_TLS_RELOAD_INTERVAL_SECONDS": "2.5",
        "DAOHUB_SERVER_TLS_HEALTH_ADDR": "127.0.0.1:8081"})
    tls = config.server.tls
    assert (tls.cert_file, tls.key_file, tls.client_ca_file) == tuple(
        map(str, (pki.cert_file, pki.key_file, pki.client_ca_file)))
    assert (tls.min_version, tls.reload_interval_seconds, tls.health_addr) == ("1.3", 2.5, "127.0.0.1:8081")
    assert tls.enabled
    assert not load_config(environ={}).server.tls.enabled


def test_tls_from_yaml(pki, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"server:\n  tls:\n    cert_file: {pki.cert_file}\n    key_file: {pki.key_file}\n")
    assert load_config(path, environ={}).server.tls.cert_file == str(pki.cert_file)
    path.write_text("server:\n  tls:\n    cert: x\n")
    with pytest.raises(ConfigError, match="unknown configuration key: server.tls.cert"):
        load_config(path, environ={})


@pytest.mark.parametrize("settings, message", [
    ({"CERT_FILE": "{cert}"}, "cert_file and server.tls.key_file go together"),
    ({"KEY_FILE": "{key}"}, "cert_file and server.tls.key_file go together"),
    ({"CERT_FILE": "{cert}", "KEY_FILE": "/nonexistent/server.key"},
     "key_file: /nonexistent/server.key does not"),
    ({"CERT_FILE": "{cert}", "KEY_FILE": "{key}", "CLIENT_CA_FILE": "/nonexistent/ca.crt"}, "client_ca_file"),
    ({"CERT_FILE": "{cert}", "KEY_FILE": "{key}", "MIN_VERSION": "1.1"},
     'min_version must be "1.2" or "1.3"'),
    ({"CERT_FILE": "{cert}", "KEY_FILE": "{key}", "HEALTH_ADDR": "8081"}, "health_addr must be HOST:PORT"),
    ({"CERT_FILE": "{cert}", "KEY_FILE": "{key}", "RELOAD_INTERVAL_SECONDS": "-1"}, "must not be negative"),
    ({"HEALTH_ADDR": "127.0.0.1:8081"}, "need server.tls.cert_file"),
])
def test_bad_tls_settings_stop_serve_with_exit_2(pki, tmp_path, settings, message):
    env = {f"DAOHUB_SERVER_TLS_{k}": v.format(cert=pki.cert_file, key=pki.key_file)
           for k, v in settings.items()}
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)
    result = serve(tmp_path, env)
    assert result.returncode == 2 and message.split(":")[0] in result.stderr, result.stderr


def serve(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "serve", "--addr", "127.0.0.1:1", "--data-dir",
                           str(tmp_path / "data")], cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_key_that_does_not_match_the_certificate_stops_serve_before_it_starts(pki, tmp_path):
    result = serve(tmp_path, {"DAOHUB_SERVER_TLS_CERT_FILE": str(pki.cert_file),
                              "DAOHUB_SERVER_TLS_KEY_FILE": str(pki.client_cert[1])})
    assert result.returncode == 2, result.stderr
    assert "daohub: TLS error: server.tls.cert_file" in result.stderr
    assert "KEY_VALUES_MISMATCH" in result.stderr
    assert not (tmp_path / "data").exists(), "nothing starts (no database created) on a TLS error"


def test_self_signed_writes_a_ca_and_a_server_certificate_for_every_host(tmp_path):
    out = tmp_path / "tls"
    result = subprocess.run([sys.executable, "-m", "hub", "tls", "self-signed", "--host", "hub.example",
                             "--host", "127.0.0.1", "--host", "::1", "--out", str(out), "--days", "30"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["hub.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("::1")]
    assert 29 <= (server.not_valid_after_utc - server.not_valid_before_utc).days <= 31
    # The lines it prints are the config to use and where each client puts the CA.
    assert f"cert_file: {out / 'server.crt'}" in result.stdout
    assert f"DAOHUB_SERVER_TLS_KEY_FILE={out / 'server.key'}" in result.stdout
    assert "/etc/docker/certs.d/hub.example:5000/ca.crt" in result.stdout
    assert f"SSL_CERT_FILE={out / 'ca.crt'}" in result.stdout
    load_config(environ={"DAOHUB_SERVER_TLS_CERT_FILE": str(out / "server.crt"),
                         "DAOHUB_SERVER_TLS_KEY_FILE": str(out / "server.key")})


def test_tls_does_not_make_an_open_registry_acceptable_off_loopback(pki):
    tls = {"DAOHUB_SERVER_TLS_CERT_FILE": str(pki.cert_file), "DAOHUB_SERVER_TLS_KEY_FILE": str(pki.key_file)}
    with pytest.raises(ConfigError, match="refusing to serve without authentication on 0.0.0.0"):
        load_config(environ={**tls, "DAOHUB_AUTH_ENABLED": "false", "DAOHUB_SERVER_ADDR": "0.0.0.0:5000"})
    load_config(environ={**tls, "DAOHUB_SERVER_ADDR": "0.0.0.0:5000"})  # auth on: fine
