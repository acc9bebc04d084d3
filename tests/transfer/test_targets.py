"""`daohub transfer` into each production blob store: S3 and OSS-style S3 (moto), and the nfs
driver (nfs-ganesha), with PostgreSQL metadata. An image pushed to the embedded default is
pulled back from a hub on the new stack, its large layer stored by multipart upload."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.cli import transfer
from hub.app import create_app
from hub.config import load_config
from tests.helpers.fixtures_s3 import moto_s3, s3_options, stop_moto_servers  # noqa: F401 (fixtures)

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Config keys only: the test options also carry driver-internal knobs.
_STORAGE_KEYS = {"bucket", "region", "endpoint", "internal_endpoint", "access_key", "secret_key",
                 "addressing_style", "prefix", "part_size_bytes"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def target_storage(kind: str, request) -> dict:
    if kind == "nfs":
        root = request.getfixturevalue("nfs_root")
        return {"driver": "nfs", "nfs_url": root.url, "nfs_threads": 2}
    request.getfixturevalue("moto_s3")
    options = {k: v for k, v in s3_options(kind).items() if k in _STORAGE_KEYS}
    # Blobs are served through the hub here; presigned redirects have tests of their own.
    return {"driver": kind, **options, "redirect": False}


def config(data_dir, storage: dict | None = None, database_url: str = ""):
    return load_config(environ={}, overrides={
        "data_dir": str(data_dir), "storage": storage or {}, "database": {"url": database_url, "pool_min_size": 1},
        "log": {"access_log": False}, "auth": {"enabled": False}})


async def push_image(client: TestClient, name: str, tag: str, blobs: list[bytes]) -> str:
    for data in blobs:
        r = await client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data)
        assert r.status == 201, await r.text()
    descriptors = [{"mediaType": "application/octet-stream", "digest": sha256(b), "size": len(b)} for b in blobs]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {**descriptors[0], "mediaType": "application/vnd.oci.image.config.v1+json"},
                "layers": descriptors[1:]}
    r = await client.put(f"/v2/{name}/manifests/{tag}", data=json.dumps(manifest).encode(),
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    return r.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("kind", ["s3", "oss", "nfs"])
async def test_transfer_into(kind, request, tmp_path, postgres_url):
    old_config = config(tmp_path / "old")
    blobs = [b'{"os": "linux"}', os.urandom(6 * MiB + 123), os.urandom(1000), b""]
    async with TestClient(TestServer(create_app(old_config))) as old:
        digest = await push_image(old, "team/app", "v1", blobs)

    new_config = config(tmp_path / "new", target_storage(kind, request), postgres_url)
    lines: list[str] = []
    await transfer.run(old_config, new_config, jobs=2, out=lines.append)
    assert lines[0].startswith(f"blobs: {len(blobs)} copied ({sum(map(len, blobs))} bytes)")
    # A second run finds the target in use and stops before copying anything.
    with pytest.raises(transfer.TransferError, match="not empty"):
        await transfer.run(old_config, new_config, out=lines.append)

    async with TestClient(TestServer(create_app(new_config))) as new:
        r = await new.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == digest
        for data in blobs:
            r = await new.get(f"/v2/team/app/blobs/{sha256(data)}")
            assert r.status == 200 and await r.read() == data
        await push_image(new, "team/app", "v2", [b'{"os": "plan9"}', os.urandom(2000)])
        r = await new.get("/v2/team/app/tags/list")
        assert (await r.json())["tags"] == ["v1", "v2"]
