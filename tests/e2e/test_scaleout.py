"""Real clients against DaoHub on the scale-out backends: PostgreSQL + S3 (moto) and PostgreSQL + nfs
(nfs-ganesha, spoken to by the nfs driver itself).

Each profile is one `daohub serve` process for this module, on a fresh database (migrated by `serve`
itself) and a fresh bucket or export directory. The scenarios are the ones the embedded-default
registry runs in test_skopeo, test_podman_buildah and test_docker, called unchanged on this process:
skopeo push and pull with digest checks, podman push and pull in OCI and Docker formats, docker
pull, push, pull back and run. On S3 blob GETs answer 307 to presigned URLs, so the clients fetch
layers from the bucket itself. At the end the storage is read back without DaoHub: every blob there
hashes to its name, and none was written to the process's local disk.
"""

from __future__ import annotations

import pytest

from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401 (fixtures)
from tests.helpers.scaleout import nfs_backend, s3_backend
from tests.helpers.server import DaoHubProcess

from . import test_docker, test_podman_buildah, test_skopeo
from .test_podman_buildah import fresh_store  # noqa: F401 (fixture)
from .util import Api

pytestmark = pytest.mark.e2e

PROFILES = ("postgres-s3", "postgres-nfs")


@pytest.fixture(scope="module", params=PROFILES)
def scaleout_registry(request, e2e_root, postgres_cluster):
    database_url = postgres_cluster.create_database()
    if request.param == "postgres-s3":
        backend = s3_backend(request.getfixturevalue("moto_s3"), database_url, redirect=True)
    else:
        backend = nfs_backend(request.getfixturevalue("ganesha").new_root("e2e"), database_url)
    server = DaoHubProcess(e2e_root / f"daohub-{request.param}", env=backend.env())
    server.start()
    yield server
    code = server.stop()
    assert code == 0, f"daohub exited with code {code} on SIGTERM; log tail:\n{server.log_text()[-4000:]}"
    assert backend.stored_blobs(), f"no blob reached {backend.kind} storage"
    assert server.blob_files() == [], "blobs were written to the local data directory"


@pytest.fixture
def api(scaleout_registry) -> Api:
    return Api(scaleout_registry.url)


def test_skopeo_push_then_pull_by_tag_and_digest(scaleout_registry, containers_env, image, api, workdir):
    test_skopeo.test_push_then_pull_by_tag_and_by_digest(scaleout_registry, containers_env, image, api, workdir)


@pytest.mark.parametrize("fmt", sorted(test_podman_buildah.FORMATS))
def test_podman_push_then_pull_by_tag_and_digest(scaleout_registry, containers_env, image, api, request, fmt):
    test_podman_buildah.test_podman_pull_by_tag_and_digest(scaleout_registry, containers_env, image, api,
                                                           request.getfixturevalue("fresh_store"), fmt)


def test_docker_pull_push_pull_run(scaleout_registry, containers_env, image, dockerd, workdir):
    # The scenario starts from a daemon without images; the session's dockerd keeps what earlier
    # tests pulled (the same image, under other registries' names).
    forget_docker_images(dockerd)
    try:
        test_docker.test_docker_pull_push_pull_run(scaleout_registry, containers_env, image, dockerd, workdir)
    finally:
        forget_docker_images(dockerd)


def forget_docker_images(dockerd) -> None:
    ids = set(dockerd("images", "-q").stdout.split())
    if ids:
        dockerd("rmi", "--force", *sorted(ids))
