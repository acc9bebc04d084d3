"""DaoHub processes on the scale-out backends: PostgreSQL metadata plus S3 (moto), nfs (ganesha) or a
filesystem directory shared by replicas.

A `Backend` says where a set of replicas keeps its state. `.env()` gives the DAOHUB_* variables for
`DaoHubProcess(env=...)`, so every replica started with it shares one database and one store.
`.stored_blobs()` reads every committed blob back from the storage itself (boto for S3, the local
disk for nfs and filesystem: not through DaoHub), checks that each hashes to its own name, and
returns their sizes, so tests can prove nothing was lost, duplicated or left half-written.

Only the standard library (and botocore, installed with aiobotocore, for S3) is used here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .moto import REGION, MotoServer
from .server import blob_files

MiB = 1 << 20
_BLOB_KEY = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]{2})/([0-9a-f]+)$")


@dataclass
class Backend:
    kind: str                                   # s3 | nfs | filesystem
    database_url: str
    storage: dict[str, str | int | bool] = field(default_factory=dict)  # storage.* settings
    local_root: Path | None = None              # nfs and filesystem: the same directory on this disk
    moto: MotoServer | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {"DAOHUB_DATABASE_URL": self.database_url,
               # Replicas of a test share one small cluster with every other test.
               "DAOHUB_DATABASE_POOL_MIN_SIZE": "1", "DAOHUB_DATABASE_POOL_MAX_SIZE": "8"}
        for key, value in self.storage.items():
            env[f"DAOHUB_STORAGE_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env.update(extra)
        return env

    def stored_blobs(self) -> dict[str, int]:
        """digest -> size of every committed blob in the store, each checked against its name."""
        if self.kind == "s3":
            return self._s3_blobs()
        assert self.local_root is not None
        found = {}
        for path in blob_files(self.local_root):
            algorithm = path.parent.parent.name
            digest = f"{algorithm}:{path.name}"
            assert _file_digest(path, algorithm) == digest, f"corrupt blob file {path}"
            found[digest] = path.stat().st_size
        return found

    def _s3_blobs(self) -> dict[str, int]:
        assert self.moto is not None
        bucket = str(self.storage["bucket"])
        client = _s3_client(self.moto)
        found = {}
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="blobs/"):
                for obj in page.get("Contents", []):
                    match = _BLOB_KEY.match(obj["Key"])
                    if not match:
                        continue  # side objects of the driver (a writer's state) are not blobs
                    algorithm, _, hex_digest = match.groups()
                    h = hashlib.new(algorithm)
                    body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
                    for chunk in iter(lambda: body.read(MiB), b""):  # noqa: B023 (consumed at once)
                        h.update(chunk)
                    digest = f"{algorithm}:{hex_digest}"
                    assert f"{algorithm}:{h.hexdigest()}" == digest, f"corrupt blob object {obj['Key']}"
                    found[digest] = obj["Size"]
        finally:
            client.close()
        return found


def leftover_uploads(backend: Backend) -> list[str]:
    """Upload data still in the store: keys or files under uploads/, and unfinished S3 multipart uploads."""
    if backend.kind != "s3":
        assert backend.local_root is not None
        uploads = backend.local_root / "uploads"
        return sorted(str(p.relative_to(backend.local_root)) for p in uploads.rglob("*") if p.is_file())
    assert backend.moto is not None
    bucket = str(backend.storage["bucket"])
    client = _s3_client(backend.moto)
    try:
        keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                         Prefix="uploads/")
                for obj in page.get("Contents", [])]
        multipart = [f"multipart:{u['Key']}" for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    finally:
        client.close()
    return sorted(keys + multipart)


def _s3_client(server: MotoServer):
    import botocore.session

    access_key, secret_key = server.credentials
    return botocore.session.get_session().create_client(
        "s3", region_name=REGION, endpoint_url=server.url, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key)


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def s3_backend(server: MotoServer, database_url: str, *, bucket: str | None = None, **storage) -> Backend:
    """A fresh bucket (or `bucket`) on `server`, path addressing (a child process cannot resolve
    *.localhost names)."""
    access_key, secret_key = server.credentials
    settings = {"driver": "s3", "endpoint": server.url, "region": REGION,
                "bucket": bucket or server.create_bucket(), "addressing_style": "path", "access_key": access_key,
                "secret_key": secret_key, "part_size_bytes": 5 * MiB, **storage}
    return Backend("s3", database_url, settings, moto=server)


def nfs_backend(root, database_url: str, threads: int = 2) -> Backend:
    """`root` is a tests.helpers.ganesha.NfsRoot (its `.url` for the hub, its `.path` for checks)."""
    return Backend("nfs", database_url, {"driver": "nfs", "nfs_url": root.url, "nfs_threads": threads},
                   local_root=Path(root.path))


def filesystem_backend(root: Path, database_url: str) -> Backend:
    """One directory shared by every replica (as an NFS mount would be)."""
    return Backend("filesystem", database_url, {"driver": "filesystem", "root": str(root)}, local_root=root)
