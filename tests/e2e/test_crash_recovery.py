"""Uploads survive a client that vanishes mid-PATCH and a server killed (SIGKILL) mid-upload.

Raw sockets send the broken requests (no HTTP client lets a body stop halfway); `requests` does
the rest. Every resumed blob is checked by digest, and after the crash every blob file in the
data directory must hash to its own name.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.helpers.server import DaoHubProcess, blob_files

from .util import Api, describe, file_digest, sha256_bytes

pytestmark = pytest.mark.e2e

MiB = 1 << 20


@pytest.fixture
def daohub_only(is_daohub):
    if not is_daohub:
        pytest.skip("crash recovery tests exercise DaoHub itself")


# --------------------------------------------------------------------------------------------
# Small protocol helpers
# --------------------------------------------------------------------------------------------
def start_upload(api: Api, repo: str) -> str:
    r = api.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, describe(r)
    assert r.headers.get("Location"), describe(r)
    return urljoin(api.base + "/", r.headers["Location"])


def upload_status(api: Api, location: str, timeout: float = 30):
    """(response, offset): offset is the number of bytes the registry holds, from `Range: 0-<offset-1>`."""
    r = api.session.get(location, timeout=timeout)
    offset = None
    if r.status_code == 204:
        match = re.fullmatch(r"0-(\d+)", r.headers.get("Range", ""))
        assert match, describe(r)
        offset = int(match.group(1)) + 1
    return r, offset


def settled_status(api: Api, location: str, *, deadline: float = 20.0, quiet: float = 0.5):
    """Poll the upload status until its offset stops changing for `quiet` seconds (the server may still
    be writing what the broken request delivered)."""
    end = time.monotonic() + deadline
    last = None
    since = time.monotonic()
    while True:
        r, offset = upload_status(api, location)
        assert r.status_code == 204, describe(r)
        if offset != last:
            last, since = offset, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return r, offset
        if time.monotonic() > end:
            return r, offset
        time.sleep(0.1)


def raw_connect(location: str) -> tuple[socket.socket, str]:
    parts = urlsplit(location)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return sock, target


def finish_upload(api: Api, location: str, data: bytes, offset: int) -> requests.Response:
    """Send data[offset:] as one chunk (Content-Range) and close the upload with PUT ?digest=."""
    if offset < len(data):
        r = api.session.patch(location, data=data[offset:], timeout=120, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{len(data) - 1}",
        })
        assert r.status_code == 202, describe(r)
        assert r.headers.get("Range") == f"0-{len(data) - 1}", describe(r)
        location = urljoin(api.base + "/", r.headers["Location"])
    digest = sha256_bytes(data)
    sep = "&" if "?" in location else "?"
    r = api.session.put(f"{location}{sep}digest={digest}", timeout=120)
    assert r.status_code == 201, describe(r)
    assert r.headers.get("Docker-Content-Digest") == digest, describe(r)
    return r


def check_all_blob_files(data_dir: Path) -> set[str]:
    files = blob_files(data_dir)
    assert files, f"no blob files under {data_dir}"
    digests = set()
    for path in files:
        algorithm = path.parent.parent.name
        expected = f"{algorithm}:{path.name}"
        assert path.parent.name == path.name[:2], f"misplaced blob file {path}"
        assert file_digest(path, algorithm) == expected, f"blob file {path} does not hash to its name"
        digests.add(expected)
    return digests


# --------------------------------------------------------------------------------------------
# (a) the client disconnects halfway through a PATCH body
# --------------------------------------------------------------------------------------------
def test_client_disconnect_mid_patch_leaves_resumable_upload(registry, daohub_only):
    api = Api(registry.url)
    repo = "e2e/crash-disconnect"
    data = os.urandom(6 * MiB + 12345)
    digest = sha256_bytes(data)
    location = start_upload(api, repo)
    uuid = location.rstrip("/").split("?")[0].rsplit("/", 1)[-1]

    sent = 3 * MiB + 777
    sock, target = raw_connect(location)
    sock.sendall((f"PATCH {target} HTTP/1.1\r\nHost: {registry.host}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
                  f"Content-Range: 0-{len(data) - 1}\r\n\r\n").encode())
    sock.sendall(data[:sent])
    sock.close()                      # the rest of the promised body never comes

    r, offset = settled_status(api, location)
    assert r.headers.get("Docker-Upload-UUID") == uuid, describe(r)
    assert offset is not None and 0 < offset <= sent, f"offset {offset} after sending {sent} bytes: {describe(r)}"
    # Nothing half-written is visible as a blob.
    head = api.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 404, describe(head)

    resume_at = urljoin(api.base + "/", r.headers.get("Location") or location)
    finish_upload(api, resume_at, data, offset)
    assert api.blob(repo, digest) == data
    r, _ = upload_status(api, location)
    assert r.status_code == 404, describe(r)


# --------------------------------------------------------------------------------------------
# (b) SIGKILL in the middle of a streamed PATCH, restart on the same data directory, resume
# --------------------------------------------------------------------------------------------
@pytest.fixture
def crash_hub(e2e_root, daohub_only):
    server = DaoHubProcess(e2e_root / "crash-hub")
    server.start()
    yield server
    server.kill()


def test_sigkill_mid_upload_then_restart_and_resume(crash_hub):
    api = Api(crash_hub.url)
    repo = "e2e/crash-kill"
    # Some finished content first, which must survive the crash untouched.
    committed = {}
    for size in (1, 1000, 3 * MiB + 5):
        blob = os.urandom(size)
        digest = sha256_bytes(blob)
        r = api.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data=blob,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, describe(r)
        committed[digest] = blob

    # A big streamed PATCH (Transfer-Encoding: chunked, as docker sends), killed halfway.
    data = os.urandom(48 * MiB)
    location = start_upload(api, repo)
    sock, target = raw_connect(location)
    sock.sendall((f"PATCH {target} HTTP/1.1\r\nHost: {crash_hub.host}\r\n"
                  "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    sent = 0
    for _ in range(16):
        piece = data[sent:sent + MiB]
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent += len(piece)
    # Give the server the chance to store some of it.
    time.sleep(1.5)
    crash_hub.kill()
    sock.close()

    crash_hub.start()
    r, offset = upload_status(api, location)
    assert r.status_code == 204, f"upload session lost after SIGKILL and restart: {describe(r)}"
    assert offset is not None and 0 < offset <= sent, f"offset {offset} after sending {sent}: {describe(r)}"

    resume_at = urljoin(api.base + "/", r.headers.get("Location") or location)
    finish_upload(api, resume_at, data, offset)
    big_digest = sha256_bytes(data)
    got = api.get(f"/v2/{repo}/blobs/{big_digest}")
    assert got.status_code == 200, describe(got)
    assert hashlib.sha256(got.content).hexdigest() == big_digest.split(":")[1]
    for digest, blob in committed.items():
        assert api.blob(repo, digest) == blob

    # Every blob file on disk hashes to its name, and all the above are there.
    on_disk = check_all_blob_files(crash_hub.data_dir)
    assert set(committed) | {big_digest} <= on_disk

    # A graceful restart keeps it all too.
    assert crash_hub.stop() == 0, crash_hub.log_text()[-3000:]
    crash_hub.start()
    for digest, blob in {**committed, big_digest: data}.items():
        assert api.blob(repo, digest) == blob


# --------------------------------------------------------------------------------------------
# (c) a status request while another connection's PATCH is stalled
# --------------------------------------------------------------------------------------------
def test_status_answers_while_a_patch_is_stalled(registry, daohub_only):
    """A client whose connection hung reconnects and asks where to resume: it must get an answer."""
    api = Api(registry.url)
    location = start_upload(api, "e2e/crash-stalled")
    sock, target = raw_connect(location)
    try:
        sock.sendall((f"PATCH {target} HTTP/1.1\r\nHost: {registry.host}\r\n"
                      "Content-Type: application/octet-stream\r\nContent-Length: 4194304\r\n"
                      "Content-Range: 0-4194303\r\n\r\n").encode() + os.urandom(MiB))
        time.sleep(0.5)
        r, offset = upload_status(api, location, timeout=5)
        assert r.status_code == 204, describe(r)
        assert offset is not None and offset <= MiB
    finally:
        sock.close()
