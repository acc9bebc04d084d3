"""Several `daohub serve` processes sharing one PostgreSQL database and one store.

`cluster` (package-scoped, one per backend) starts REPLICAS processes on their own ports and data
directories, with the same database and one store: a moto S3 bucket, an nfs-ganesha export spoken
to by the nfs driver, or one filesystem directory (the way replicas use a shared NFS mount). Tests push through any replica and record what they pushed in
`cluster.ledger`. When the cluster is torn down, every replica must serve exactly that and nothing
else: the same catalog, the same tags, each manifest and blob with the right bytes and size; the
store, read without DaoHub, must hold exactly the ledger's blobs, each hashing to its name, and no
upload data.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401 (fixtures)
from tests.helpers.scaleout import Backend, filesystem_backend, leftover_uploads, nfs_backend, s3_backend
from tests.helpers.server import DaoHubProcess

REPLICAS = 2
BACKENDS = ("s3", "filesystem", "nfs")
MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Ledger:
    """What the tests pushed: the state every replica must show at the end."""

    blobs: dict[str, dict[str, int]] = field(default_factory=dict)      # repo -> digest -> size
    manifests: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> digest -> bytes
    tags: dict[str, dict[str, str]] = field(default_factory=dict)       # repo -> tag -> digest

    def blob(self, repo: str, digest: str, size: int) -> None:
        self.blobs.setdefault(repo, {})[digest] = size

    def manifest(self, repo: str, body: bytes, tag: str | None = None) -> str:
        digest = sha256(body)
        self.manifests.setdefault(repo, {})[digest] = body
        if tag is not None:
            self.tags.setdefault(repo, {})[tag] = digest
        return digest

    def all_blobs(self) -> dict[str, int]:
        return {digest: size for blobs in self.blobs.values() for digest, size in blobs.items()}


@dataclass
class Cluster:
    backend: Backend
    replicas: list[DaoHubProcess]
    ledger: Ledger = field(default_factory=Ledger)

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def ensure_running(self) -> None:
        """Restart any replica a test killed (same port, same data directory)."""
        for replica in self.replicas:
            if not replica.running:
                replica.start()


@pytest.fixture(scope="package", params=BACKENDS)
def cluster(request, postgres_cluster, tmp_path_factory) -> Cluster:
    kind = request.param
    base = tmp_path_factory.mktemp(f"replicas-{kind}")
    database_url = postgres_cluster.create_database()  # empty: `serve` migrates it
    if kind == "s3":
        backend = s3_backend(request.getfixturevalue("moto_s3"), database_url)
    elif kind == "nfs":
        backend = nfs_backend(request.getfixturevalue("ganesha").new_root("replicas"), database_url)
    else:
        backend = filesystem_backend(base / "shared-storage", database_url)
    # The background purge must not race the tests' checks of upload data. A body left stalled on
    # purpose (the replica killed mid-upload) must stay stalled until the kill, however slow a
    # loaded machine makes the polling before it: the idle timeout is not what these tests check
    # (tests/registry does), and at its 60 s default it answered 408 first on a run at load 8.
    env = backend.env(DAOHUB_REGISTRY_UPLOAD_PURGE_INTERVAL_SECONDS="0", DAOHUB_SERVER_BODY_IDLE_TIMEOUT="900")
    replicas = [DaoHubProcess(base / f"replica-{i}", env=env) for i in range(REPLICAS)]
    try:
        # At once: a start is mostly Python imports, and concurrent migrations are safe (tests/db).
        with concurrent.futures.ThreadPoolExecutor(len(replicas)) as pool:
            for started in [pool.submit(replica.start) for replica in replicas]:
                started.result()
        running = Cluster(backend, replicas)
        yield running
        running.ensure_running()
        asyncio.run(verify(running))
    finally:
        codes = {replica.url: replica.stop() for replica in replicas}
    assert all(code in (0, None) for code in codes.values()), f"replicas exited with {codes}"


async def verify(cluster: Cluster) -> None:
    """Every replica serves exactly the ledger; the store holds exactly its blobs and no upload data."""
    ledger = cluster.ledger
    expected_catalog = sorted(ledger.manifests)
    async with aiohttp.ClientSession() as session:
        for url in cluster.urls:
            hub = Hub(session, url)
            catalog = await hub.json("/v2/_catalog?n=10000")
            assert catalog["repositories"] == expected_catalog, f"catalog on {url}"
            for repo, manifests in ledger.manifests.items():
                tags = await hub.json(f"/v2/{repo}/tags/list?n=10000")
                assert (tags.get("tags") or []) == sorted(ledger.tags.get(repo, {})), f"tags of {repo} on {url}"
                for tag, digest in ledger.tags.get(repo, {}).items():
                    assert sha256(await hub.get_manifest(repo, tag)) == digest, f"{repo}:{tag} on {url}"
                for digest, body in manifests.items():
                    assert await hub.get_manifest(repo, digest) == body, f"{repo}@{digest} on {url}"
            for repo, blobs in ledger.blobs.items():
                for digest, size in blobs.items():
                    assert await hub.head_blob(repo, digest) == size, f"HEAD {repo}@{digest} on {url}"
                    data = await hub.get_blob(repo, digest)
                    assert (len(data), sha256(data)) == (size, digest), f"GET {repo}@{digest} on {url}"
    assert cluster.backend.stored_blobs() == ledger.all_blobs(), "the store's blobs differ from what was pushed"
    assert leftover_uploads(cluster.backend) == [], "upload data left in the store"


class Hub:
    """The raw protocol against one replica (or the load balancer)."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session = session
        self.url = url.rstrip("/")

    async def json(self, path: str) -> dict:
        async with self.session.get(self.url + path) as r:
            assert r.status == 200, f"GET {path} -> {r.status} {await r.text()}"
            return await r.json()

    async def push_blob(self, repo: str, data: bytes) -> str:
        """One monolithic POST ?digest=."""
        digest = sha256(data)
        async with self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/?digest={digest}", data=data) as r:
            assert r.status == 201, f"monolithic push to {self.url}: {r.status} {await r.text()}"
            assert r.headers["Docker-Content-Digest"] == digest
        return digest

    async def start_upload(self, repo: str) -> str:
        async with self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/") as r:
            assert r.status == 202, await r.text()
            return r.headers["Location"]

    async def patch(self, location: str, data: bytes | AsyncIterator[bytes], start: int, length: int) -> str:
        headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + length - 1}",
                   "Content-Length": str(length)}
        async with self.session.patch(self.url + location, data=data, headers=headers) as r:
            assert r.status == 202, f"PATCH on {self.url}: {r.status} {await r.text()}"
            assert r.headers["Range"] == f"0-{start + length - 1}"
            return r.headers["Location"]

    async def upload_offset(self, location: str) -> int:
        """Bytes the replica says it holds for an upload (from `Range: 0-<last>`)."""
        async with self.session.get(self.url + location) as r:
            assert r.status == 204, f"upload status on {self.url}: {r.status} {await r.text()}"
            return int(r.headers["Range"].split("-")[1]) + 1

    async def finish_upload(self, location: str, digest: str) -> None:
        separator = "&" if "?" in location else "?"
        async with self.session.put(f"{self.url}{location}{separator}digest={digest}") as r:
            assert r.status == 201, f"PUT on {self.url}: {r.status} {await r.text()}"
            assert r.headers["Docker-Content-Digest"] == digest

    async def put_manifest(self, repo: str, ref: str, body: bytes) -> str:
        async with self.session.put(f"{self.url}/v2/{repo}/manifests/{ref}", data=body,
                                    headers={"Content-Type": OCI_MANIFEST}) as r:
            assert r.status == 201, f"manifest PUT on {self.url}: {r.status} {await r.text()}"
            return r.headers["Docker-Content-Digest"]

    async def get_manifest(self, repo: str, ref: str) -> bytes:
        async with self.session.get(f"{self.url}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}) as r:
            assert r.status == 200, f"GET {repo}/manifests/{ref} on {self.url}: {r.status} {await r.text()}"
            body = await r.read()
            assert r.headers["Docker-Content-Digest"] == sha256(body)
            return body

    async def head_blob(self, repo: str, digest: str) -> int:
        async with self.session.head(f"{self.url}/v2/{repo}/blobs/{digest}") as r:
            assert r.status == 200, f"HEAD {repo}@{digest} on {self.url}: {r.status}"
            return int(r.headers["Content-Length"])

    async def get_blob(self, repo: str, digest: str) -> bytes:
        async with self.session.get(f"{self.url}/v2/{repo}/blobs/{digest}") as r:
            assert r.status == 200, f"GET {repo}@{digest} on {self.url}: {r.status}"
            return await r.read()

    async def tags(self, repo: str) -> list[str]:
        return (await self.json(f"/v2/{repo}/tags/list"))["tags"] or []


def image_manifest(config: bytes, layers: Iterable[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers],
    }).encode()


async def push_image(hub: Hub, ledger: Ledger, repo: str, tag: str | None, layers: Iterable[bytes]) -> str:
    """A config and `layers` as monolithic blobs, then the manifest (by tag, or by digest if no tag)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()}).encode()
    layers = list(layers)
    for blob in (config, *layers):
        ledger.blob(repo, await hub.push_blob(repo, blob), len(blob))
    body = image_manifest(config, layers)
    digest = ledger.manifest(repo, body, tag)
    assert await hub.put_manifest(repo, tag or digest, body) == digest
    return digest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        yield s


@pytest.fixture
def hubs(cluster, session) -> list[Hub]:
    """A client per replica, every replica running."""
    cluster.ensure_running()
    return [Hub(session, url) for url in cluster.urls]
