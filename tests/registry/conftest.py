"""In-process protocol tests: the app over every storage driver, SQLite metadata."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import pytest

from auth.passwords import hash_secret
from hub.app import create_app
from hub.config import load_config
from hub.db.identity import RobotRecord
from hub.keys import AUTH, STORE
from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401 (fixtures used by STORAGE_SETUP)
from tests.helpers.moto import REGION

# Backend profiles, (storage driver, metadata store): the protocol suite runs over each, and
# the auth and admin suites over each metadata store. A new backend is one line here plus, if
# it needs a server or settings, one entry in STORAGE_SETUP or DATABASE_SETUP below.
BACKEND_PROFILES = [
    ("memory", "sqlite"),
    ("filesystem", "sqlite"),
    ("filesystem", "postgres"),
    ("s3", "postgres"),
    ("nfs", "postgres"),
]
METADATA_STORES = list(dict.fromkeys(db for _, db in BACKEND_PROFILES))

# name -> function(request, tmp_path) -> the config section's overrides (may use fixtures).
STORAGE_SETUP = {
    "memory": lambda request, tmp_path: {"driver": "memory"},
    "filesystem": lambda request, tmp_path: {"driver": "filesystem"},
    "s3": lambda request, tmp_path: _s3_storage(request.getfixturevalue("moto_s3")),
    # nfs-ganesha (one per session) serving a fresh export subdirectory per test.
    "nfs": lambda request, tmp_path: {"driver": "nfs", "nfs_url": request.getfixturevalue("nfs_root").url,
                                      "nfs_threads": 2},
}


def _s3_storage(server) -> dict:
    """moto (one per session), a fresh bucket per test; parts at S3's 5 MiB minimum so that
    multipart paths run on the suite's small blobs too."""
    access_key, secret_key = server.credentials
    return {"driver": "s3", "endpoint": server.url, "region": REGION, "addressing_style": "path",
            "bucket": server.create_bucket(), "access_key": access_key, "secret_key": secret_key,
            "part_size_bytes": 5 * 1024 * 1024}
DATABASE_SETUP = {
    "sqlite": lambda request, tmp_path: {},  # the default: <data_dir>/daohub.db
    "postgres": lambda request, tmp_path: {"url": request.getfixturevalue("postgres_url"), "pool_min_size": 1},
}


def backend_overrides(request, tmp_path, storage: str = "filesystem", database: str = "sqlite") -> dict:
    """Config overrides selecting a storage driver and a metadata store, their servers started."""
    return {"storage": STORAGE_SETUP[storage](request, tmp_path),
            "database": DATABASE_SETUP[database](request, tmp_path)}


@pytest.fixture(params=BACKEND_PROFILES, ids=["-".join(p) for p in BACKEND_PROFILES])
def config(request, tmp_path):
    overrides = {
        "data_dir": str(tmp_path / "data"),
        **backend_overrides(request, tmp_path, *request.param),
        "log": {"access_log": False},
        "registry": {"max_manifest_bytes": 64 * 1024, "default_page_size": 100},
        "auth": {"enabled": False},  # the protocol suite exercises an open registry
    }
    return load_config(environ={}, overrides=overrides)


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


class Repo:
    """Small helpers to push content with the raw protocol."""

    def __init__(self, client, name: str):
        self.client = client
        self.name = name

    async def push_blob(self, data: bytes) -> str:
        digest = sha256(data)
        r = await self.client.post(f"/v2/{self.name}/blobs/uploads/?digest={digest}", data=data)
        assert r.status == 201, await r.text()
        return digest

    def descriptor(self, data: bytes, media_type: str) -> dict:
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

    async def push_image(self, tag: str | None = "latest", layers: int = 2, extra: dict | None = None,
                         media_type: str = "application/vnd.oci.image.manifest.v1+json") -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
                             "n": os.urandom(4).hex()}).encode()
        await self.push_blob(config)
        layer_media = ("application/vnd.oci.image.layer.v1.tar" if "oci" in media_type
                       else "application/vnd.docker.image.rootfs.diff.tar.gzip")
        config_media = ("application/vnd.oci.image.config.v1+json" if "oci" in media_type
                        else "application/vnd.docker.container.image.v1+json")
        layer_blobs = [os.urandom(1000 + i) for i in range(layers)]
        for blob in layer_blobs:
            await self.push_blob(blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": self.descriptor(config, config_media),
            "layers": [self.descriptor(b, layer_media) for b in layer_blobs],
        }
        manifest.update(extra or {})
        body = json.dumps(manifest).encode()
        ref = tag or sha256(body)
        r = await self.client.put(f"/v2/{self.name}/manifests/{ref}", data=body,
                                  headers={"Content-Type": media_type})
        assert r.status == 201, await r.text()
        return r.headers["Docker-Content-Digest"], body


async def error_code(response) -> str:
    body = await response.json(content_type=None)
    return body["errors"][0]["code"]


async def raw_request(client, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    """Send a request with the path exactly as given (HTTP clients normalise '..' away)."""
    import asyncio

    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        parsed = json.loads(payload) if payload else {}
    except ValueError:
        parsed = {}
    return status, parsed


# Token auth ------------------------------------------------------------------------------
def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=METADATA_STORES)
async def hub(request, aiohttp_client, tmp_path):
    cfg = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False},
        "database": DATABASE_SETUP[request.param](request, tmp_path),
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1,
                 "login_failure_limit": 5},
    })
    client = await aiohttp_client(create_app(cfg))
    app = client.server.app
    auth, store = app[AUTH], app[STORE]
    for tenant in ("team", "other"):
        await store.create_tenant(tenant)
    for user, tenant, role in (("alice", "team", "developer"), ("gary", "team", "guest"),
                               ("bob", "other", "admin")):
        await store.create_user(user, await auth.hash_password(f"{user}-pw"))
        await store.set_membership(tenant, user, role)
    await store.create_robot(RobotRecord("team", "ci", hash_secret("robot-secret"), ("team/ci/*",),
                                         ("pull", "push"), None, False, time.time()))
    return client


async def token(client, *scopes: str, user: str | None = None, password: str | None = None) -> str:
    headers = basic(user, password if password is not None else f"{user}-pw") if user else {}
    query = [("service", "daohub")] + [("scope", s) for s in scopes]
    r = await client.get("/auth/token", params=query, headers=headers)
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] >= 60 and body["issued_at"]
    return body["token"]


def claims(tok: str) -> dict:
    payload = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def push_image(client, name: str, tok: str, tag: str = "v1") -> str:
    config = json.dumps({"n": os.urandom(4).hex()}).encode()
    r = await client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(config)}", data=config, headers=bearer(tok))
    assert r.status == 201, await r.text()
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [],
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha256(config), "size": len(config)}}).encode()
    r = await client.put(f"/v2/{name}/manifests/{tag}", data=body,
                         headers={**bearer(tok), "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return sha256(config)


