"""HTTPS fixtures: the session's private PKI, and a `daohub serve` with TLS and auth on."""

from __future__ import annotations

import pytest

from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401
from tests.helpers.server import DaoHubProcess
from tests.helpers.tls import Pki, make_pki

PASSWORD = "alice-Secret-1"


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def secured_hub(data_dir, pki: Pki, *, mutual: bool = False, env: dict | None = None) -> DaoHubProcess:
    """A started DaoHub over HTTPS with auth on; user alice is a developer of tenant team."""
    hub = DaoHubProcess(data_dir, tls=pki.server_files(mutual=mutual),
                        env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": "admin-Secret-0",
                             **(env or {})})
    hub.start()
    hub.cli("tenant", "create", "team")
    hub.cli("user", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    hub.cli("tenant", "member", "team", "alice", "developer")
    return hub


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory, pki):
    hub = secured_hub(tmp_path_factory.mktemp("tls-hub"), pki)
    yield hub
    assert hub.stop() == 0, hub.log_text()[-3000:]
