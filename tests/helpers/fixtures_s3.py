"""pytest plugin: moto S3 servers for the session and options for the `s3` and `oss` drivers.

Load it from a conftest, either `pytest_plugins = ["tests.helpers.fixtures_s3"]` in the
root conftest, or by importing the fixtures into a directory's conftest:

    from tests.helpers.fixtures_s3 import moto_s3, moto_s3_auth, stop_moto_servers  # noqa: F401

Servers start on first use and stop at the end of the session (`stop_moto_servers`).
`s3_options(...)` gives `storage_backends.create(kind, **options)` arguments for a fresh
bucket on the shared server; `oss` uses virtual-hosted addressing on `*.localhost` names
(see tests/helpers/moto.py for how they resolve), a key prefix, and a separate internal
endpoint, so every OSS-specific code path runs.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

from .moto import (
    REGION,
    MotoServer,
    resolve_localhost_subdomains,
    restore_resolution,
    shared_moto,
    stop_shared,
)

MiB = 1 << 20
OSS_REGION = "cn-test"


def require_moto() -> None:
    """Skip (or, under CI=true, fail) when moto's server is not installed."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        message = "moto[server] is not installed: pip install 'moto[server]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def s3_options(kind: str = "s3", *, server: MotoServer | None = None, bucket: str | None = None,
               **overrides: Any) -> dict[str, Any]:
    """Driver options for `kind` ("s3" or "oss") on a fresh bucket of the shared moto server."""
    if server is None:
        require_moto()
        server = shared_moto()
    access_key, secret_key = server.credentials
    options: dict[str, Any] = {
        "bucket": bucket or server.create_bucket(),
        "access_key": access_key,
        "secret_key": secret_key,
        "part_size_bytes": 5 * MiB,  # S3's minimum, so multipart paths run on small data
        "redirect": True,
        "retry_base_delay": 0.01,
    }
    if kind == "s3":
        options.update(endpoint=server.url, region=REGION, addressing_style="path")
    elif kind == "oss":
        resolve_localhost_subdomains()
        options.update(
            endpoint=f"http://oss-{OSS_REGION}.localhost:{server.port}",
            internal_endpoint=f"http://oss-{OSS_REGION}-internal.localhost:{server.port}",
            region=OSS_REGION,
            prefix="registry/data",
        )
    else:
        raise ValueError(kind)
    options.update(overrides)
    return options


@pytest.fixture(scope="session")
def moto_s3() -> MotoServer:
    """moto without signature checks (any credentials); presigned URLs work here."""
    require_moto()
    return shared_moto()


@pytest.fixture(scope="session")
def moto_s3_auth() -> MotoServer:
    """moto checking SigV4 signatures against one IAM user (`.credentials`)."""
    require_moto()
    return shared_moto(auth=True)


@pytest.fixture(scope="session", autouse=True)
def stop_moto_servers():
    """Stop the moto servers this session started (none, if no test used S3)."""
    yield
    stop_shared()
    restore_resolution()
