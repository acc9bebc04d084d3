"""Helpers of the pull-through cache tests: seed upstream registries over the raw protocol,
pull through DaoHub with digests checked, and count what an upstream was asked."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hub.keys import PROXY
from tests.e2e.util import ACCEPT_ALL

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ACCEPT_ALL


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    name: str
    tag: str
    digest: str
    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    children: list[Image] = field(default_factory=list)


class Upstream:
    """A registry the tests seed with the raw protocol (`requests`), with or without a token."""

    def __init__(self, url: str, credentials: tuple[str, str] | None = None):
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.session = requests.Session()

    def _headers(self, name: str) -> dict[str, str]:
        if self.credentials is None:
            return {}
        r = self.session.get(f"{self.url}/auth/token", params={"service": "daohub",
                                                               "scope": f"repository:{name}:pull,push"},
                             auth=self.credentials, timeout=30)
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def push_blob(self, name: str, data: bytes, headers: dict[str, str]) -> str:
        digest = sha256(data)
        r = self.session.post(f"{self.url}/v2/{name}/blobs/uploads/", headers=headers, timeout=60)
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        sep = "&" if "?" in location else "?"
        r = self.session.put(f"{location}{sep}digest={digest}", data=data, timeout=120,
                             headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return digest

    def push_manifest(self, name: str, ref: str, body: bytes, media_type: str, headers: dict[str, str]) -> str:
        r = self.session.put(f"{self.url}/v2/{name}/manifests/{ref}", data=body, timeout=60,
                             headers={**headers, "Content-Type": media_type})
        assert r.status_code == 201, r.text
        return sha256(body)

    def push_image(self, name: str, tag: str, layer_sizes: tuple[int, ...] = (3000, 5000),
                   layers: list[bytes] | None = None) -> Image:
        headers = self._headers(name)
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
                             "nonce": uuid.uuid4().hex}).encode()
        layers = layers if layers is not None else [os.urandom(size) for size in layer_sizes]
        blobs = {}
        for data in (config, *layers):
            blobs[self.push_blob(name, data, headers)] = data
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(d), "size": len(d)}
                       for d in layers],
        }).encode()
        digest = self.push_manifest(name, tag, manifest, OCI_MANIFEST, headers)
        return Image(name, tag, digest, manifest, OCI_MANIFEST, blobs)

    def push_index(self, name: str, tag: str, platforms: tuple[str, ...] = ("amd64", "arm64")) -> Image:
        children = [self.push_image(name, f"{tag}-{arch}", (2000,)) for arch in platforms]
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": c.digest, "size": len(c.manifest),
             "platform": {"architecture": arch, "os": "linux"}} for c, arch in zip(children, platforms, strict=True)]}
        ).encode()
        digest = self.push_manifest(name, tag, index, OCI_INDEX, self._headers(name))
        return Image(name, tag, digest, index, OCI_INDEX, {}, children)


async def pull(client, name: str, ref: str, *, query: str = "", headers: dict | None = None) -> Image:
    """Pull a single-platform image through DaoHub (aiohttp test client), checking every digest."""
    headers = dict(headers or {})
    r = await client.get(f"/v2/{name}/manifests/{ref}{query}", headers={**headers, "Accept": ACCEPT})
    body = await r.read()
    assert r.status == 200, body[:2000]
    digest = sha256(body)
    assert r.headers["Docker-Content-Digest"] == digest
    manifest = json.loads(body)
    blobs = {}
    for desc in [manifest["config"], *manifest["layers"]]:
        r = await client.get(f"/v2/{name}/blobs/{desc['digest']}{query}", headers=headers)
        data = await r.read()
        assert r.status == 200, data[:2000]
        assert sha256(data) == desc["digest"] and len(data) == desc["size"]
        blobs[desc["digest"]] = data
    # Blobs go out once verified, while the cache may still be storing them: tests that look at
    # the cache next wait for that.
    await client.server.app[PROXY].settled()
    return Image(name, ref, digest, body, manifest["mediaType"], blobs)


async def error_of(response) -> dict:
    body = await response.json(content_type=None)
    return body["errors"][0]


class AccessLog:
    """The requests a DaoHubProcess logged (its JSON access log), between two marks.

    The log is written in batches, so a mark is a marker request whose line is waited for:
    every request made before it is in the log by then."""

    def __init__(self, log_path: Path, base_url: str):
        self.path = Path(log_path)
        self.base_url = base_url

    def _sync(self, start: int, timeout: float = 30.0) -> tuple[list[dict], int]:
        """(entries from `start` up to a fresh marker, the offset just after the marker's line)."""
        marker = f"marker-{uuid.uuid4().hex}"
        requests.get(f"{self.base_url}/healthz", headers={"X-Request-Id": marker}, timeout=10)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read()
            entries, offset = [], start
            for raw in data.splitlines(keepends=True):
                offset += len(raw)
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or entry.get("logger") != "daohub.access":
                    continue
                if entry.get("request_id") == marker:
                    return entries, offset
                entries.append(entry)
            assert time.monotonic() < deadline, f"marker request never reached {self.path}"
            time.sleep(0.05)

    def mark(self) -> int:
        return self._sync(self.path.stat().st_size)[1]

    def since(self, mark: int) -> list[dict]:
        return self._sync(mark)[0]

    async def asince(self, mark: int) -> list[dict]:
        return await asyncio.to_thread(self.since, mark)


def content_requests(entries: list[dict], method: str | None = None) -> dict[tuple[str, str], int]:
    """Count manifest and blob requests by (method, path)."""
    counts: dict[tuple[str, str], int] = {}
    for e in entries:
        path = e.get("path") or ""
        if "/manifests/" not in path and "/blobs/" not in path:
            continue
        if method is not None and e["method"] != method:
            continue
        key = (e["method"], path)
        counts[key] = counts.get(key, 0) + 1
    return counts


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
