"""Session-wide fixtures: one throwaway PostgreSQL cluster and one slapd, started when a test first needs them.

Each test that asks for `postgres_url` gets a database of its own, copied from a template that
is migrated once per session (~50 ms a test). Under CI=true a cluster that does not start is a
failure; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import subprocess

import pytest

from tests.helpers.postgres import PostgresCluster, PostgresError
from tests.helpers.slapd import Slapd, SlapdError

pytest_plugins = ["tests.helpers.fixtures_nfs"]
IN_CI = os.environ.get("CI") == "true"
TEMPLATE_DB = "daohub_template"


async def _migrate(url: str) -> None:
    from hub.db import create_store

    store = create_store(url, pool_min_size=1, pool_max_size=1)
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()


def _start_or_skip(server, what: str, errors: tuple[type[Exception], ...]) -> None:
    """Start a test service; if it cannot start, fail under CI=true, else skip the tests that need it."""
    try:
        server.start()
    except (*errors, OSError, subprocess.SubprocessError) as exc:
        server.destroy()
        if IN_CI:
            pytest.fail(f"{what} did not start: {exc}")
        pytest.skip(f"{what} is not available here: {exc}")


@pytest.fixture(scope="session")
def postgres_cluster():
    cluster = PostgresCluster()
    _start_or_skip(cluster, "PostgreSQL", (PostgresError,))
    try:
        cluster.create_database(name=TEMPLATE_DB)
        # On a thread of its own: this may be set up from inside a running test's event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(_migrate(cluster.url(TEMPLATE_DB)))).result()
        cluster.mark_template(TEMPLATE_DB)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh, migrated database of its own for this test."""
    url = postgres_cluster.create_database(template=TEMPLATE_DB)
    yield url
    if postgres_cluster.running:
        postgres_cluster.drop_database(url.rsplit("/", 1)[1], wait=False)


@pytest.fixture(scope="session")
def oidc_op(tmp_path_factory):
    """One OpenID Connect provider for the session (tests/helpers/oidc_provider.py: pyop behind a
    small HTTPS server on 127.0.0.1, its certificate from `oidc_op.ca_file`, a private CA). Each
    module registers its own client and users; a test that sets `mode` (bad ID tokens) sets it back
    before it ends."""
    from tests.helpers.oidc_provider import OidcTestProvider
    from tests.helpers.tls import make_pki

    op = OidcTestProvider(make_pki(tmp_path_factory.mktemp("oidc-pki"))).start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory):
    """One OpenLDAP server for the session (tests/helpers/slapd.py), with StartTLS and an ldaps://
    port whose certificate comes from `slapd.pki` (a private CA). Each module adds its own ou
    (`people_ldif`), so modules do not see each other's people. A test that stops it starts it
    again before it ends."""
    from tests.helpers.tls import make_pki

    pki = make_pki(tmp_path_factory.mktemp("ldap-pki"))
    server = Slapd(pki=pki)
    _start_or_skip(server, "slapd", (SlapdError,))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def keep_logging():
    """For tests that call the CLI's main() in process: it installs its own root log handler
    and level; pytest's are put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
