"""HTTPS fixtures: the session's private PKI, and a `daohub serve` with TLS and auth on."""

from __future__ import annotations

import pytest

from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401
from tests.helpers.tls import Pki, make_pki, secured_hub


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory, pki):
    hub = secured_hub(tmp_path_factory.mktemp("tls-hub"), pki)
    yield hub
    assert hub.stop() == 0, hub.log_text()[-3000:]
