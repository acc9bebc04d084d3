"""Runnable container images built in memory, without buildah or a network.

`runnable_image()` returns a Docker schema 2 image (the media types every client pulls:
dockerd, containerd, podman, skopeo): a gzipped layer holding static busybox and a few applet
links, a second layer with one random payload file, and a config whose `rootfs.diff_ids`
match the uncompressed layers (docker and containerd check them when they unpack). Tests push
its blobs and manifest to a registry with the raw protocol.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "echo", "cat", "sha256sum", "true")
PAYLOAD_PATH = "/data/payload.bin"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def find_busybox() -> str | None:
    return next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None)


@dataclass
class BuiltImage:
    manifest: bytes
    config: bytes
    layers: list[bytes]                     # compressed, in manifest order
    payload: bytes                          # the bytes at PAYLOAD_PATH inside the image
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        """What docker and podman show as the image ID."""
        return sha256(self.config)


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info, None


def runnable_image(busybox: str, *, payload_size: int = 128 * 1024,
                   cmd: tuple[str, ...] = ("/bin/sh", "-c", "echo hello from the mirror")) -> BuiltImage:
    """A linux/amd64 image that runs `cmd` with busybox; the payload is random, so every call
    gives a different image."""
    with open(busybox, "rb") as f:
        busybox_bytes = f.read()
    base = _tar([_dir("bin"), _file("bin/busybox", busybox_bytes, 0o755),
                 *(_symlink(f"bin/{applet}", "busybox") for applet in APPLETS)])
    payload = os.urandom(payload_size)
    data = _tar([_dir("data"), _file(PAYLOAD_PATH.lstrip("/"), payload)])
    diff_ids = [sha256(base), sha256(data)]
    # mtime=0 keeps the gzip bytes a function of the tar alone.
    layers = [gzip.compress(base, compresslevel=1, mtime=0), gzip.compress(data, compresslevel=1, mtime=0)]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "busybox"}, {"created_by": "payload"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers],
    }, indent=3).encode()
    blobs = {sha256(b): b for b in (config, *layers)}
    return BuiltImage(manifest=manifest, config=config, layers=layers, payload=payload, blobs=blobs)
