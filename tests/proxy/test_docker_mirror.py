"""dockerd with README's daemon.json (`registry-mirrors` = DaoHub) pulls a Docker Hub name through
DaoHub's default mirror, and pulls it again from DaoHub's cache once the upstream is down."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers.fixtures_mirror import MIRROR_REPO, MIRROR_TAG
from tests.helpers.images import PAYLOAD_PATH, sha256

pytestmark = pytest.mark.e2e

# Docker Hub's short form: dockerd sends /v2/library/alpine/... to its mirrors.
IMAGE = f"{MIRROR_REPO.removeprefix('library/')}:{MIRROR_TAG}"


def _check_local_image(dockerd, bed) -> None:
    """The pulled image is the upstream's, byte for byte, and runs."""
    image_id = dockerd("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    assert image_id == bed.image.config_digest
    repo_digests = dockerd("image", "inspect", "--format", "{{json .RepoDigests}}", IMAGE).stdout
    assert f"{MIRROR_REPO.removeprefix('library/')}@{bed.image.digest}" in repo_digests
    out = dockerd("run", "--rm", "--network", "none", IMAGE).stdout
    assert out.strip() == "hello from the mirror"
    out = dockerd("run", "--rm", "--network", "none", IMAGE, "sha256sum", PAYLOAD_PATH).stdout
    assert out.split()[0] == hashlib.sha256(bed.image.payload).hexdigest()


def _content_paths(entries: list[dict]) -> set[tuple[str, str, int]]:
    return {(e["method"], e["path"], e["status"]) for e in entries
            if "/manifests/" in (e.get("path") or "") or "/blobs/" in (e.get("path") or "")}


def _assert_served(seen: set[tuple[str, str, int]], bed, *, first: bool) -> None:
    """DaoHub answered the pull in mirror form (no upstream prefix in the path), blobs included."""
    # dockerd resolves the tag (a HEAD, or a GET), then fetches the manifest by digest unless its
    # own content store kept it (and maybe the config) from an earlier pull.
    by_tag, by_digest = (f"/v2/{MIRROR_REPO}/manifests/{ref}" for ref in (MIRROR_TAG, bed.image.digest))
    assert {("HEAD", by_tag, 200), ("GET", by_tag, 200)} & seen, sorted(seen)
    if first:
        assert {("GET", by_tag, 200), ("GET", by_digest, 200)} & seen, sorted(seen)
    # The layers, at least, are fetched again after `docker rmi`.
    for digest in bed.image.blobs if first else map(sha256, bed.image.layers):
        assert ("GET", f"/v2/{MIRROR_REPO}/blobs/{digest}", 200) in seen, (digest, sorted(seen))
    assert all(status == 200 for _, _, status in seen), sorted(seen)


def test_docker_pulls_a_hub_name_through_the_mirror_then_from_cache_with_the_upstream_down(
        mirror_bed, mirror_dockerd):
    bed, dockerd = mirror_bed, mirror_dockerd
    info = dockerd("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout
    assert bed.hub.url in info, info   # README's daemon.json was read

    mark = bed.log.mark()
    dockerd("pull", IMAGE)
    _assert_served(_content_paths(bed.log.since(mark)), bed, first=True)
    # The manifest and each blob came from the upstream exactly once: for this pull, or for
    # the other clients' tests if they pulled this image through the same upstream first.
    after = bed.upstream_gets(bed.mirror_name)
    assert after.get("manifest") == 1 and after.get("blob") == len(bed.image.blobs), after
    _check_local_image(dockerd, bed)

    # Upstream down, image gone locally: the next pull is served from DaoHub's cache alone.
    dockerd("rmi", IMAGE)
    assert bed.image.config_digest not in dockerd("images", "-q", "--no-trunc").stdout
    bed.upstream.stop()
    try:
        mark = bed.log.mark()
        dockerd("pull", IMAGE)
        _assert_served(_content_paths(bed.log.since(mark)), bed, first=False)
        assert bed.upstream_gets(bed.mirror_name) == after
        _check_local_image(dockerd, bed)
    finally:
        bed.upstream.start()


UNUSED_MIRROR = "http://127.0.0.1:9"   # the discard port: nothing answers there


def _plain(urls: list[str]) -> list[str]:
    return [u.rstrip("/") for u in urls]


def test_client_setup_writes_daemon_json_that_dockerd_pulls_through(mirror_bed, mirror_dockerd):
    """`daohub client setup --docker --write` merges registry-mirrors into a daemon.json that has other
    settings (kept, the old file backed up); dockerd reloads it and pulls through the mirror."""
    bed, dockerd = mirror_bed, mirror_dockerd
    path = dockerd.config_path
    original = path.read_text()

    def mirrors() -> list[str]:
        return json.loads(dockerd("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout) or []

    try:
        # A daemon.json of someone else's: another mirror (nothing listens there), a setting of its own.
        # (dockerd keeps the value of a key the file leaves out: the mirror list is replaced, not dropped.)
        theirs = {"max-concurrent-downloads": 2, "registry-mirrors": [UNUSED_MIRROR]}
        path.write_text(json.dumps(theirs) + "\n")
        dockerd.reload(lambda: _plain(mirrors()) == [UNUSED_MIRROR])
        printed = bed.client_setup("--docker")
        assert json.loads(printed) == {"registry-mirrors": [bed.hub.url], "insecure-registries": [bed.hub.host]}
        out = bed.client_setup("--docker", "--write", "--docker-config", str(path))
        backups = sorted(path.parent.glob("daemon.json.bak-*"))
        assert len(backups) == 1 and json.loads(backups[0].read_text()) == theirs
        assert f"docker: wrote {path} (the previous file is {backups[0]})" in out and "SIGHUP" in out
        assert json.loads(path.read_text()) == {"max-concurrent-downloads": 2,
                                                "registry-mirrors": [bed.hub.url, UNUSED_MIRROR],
                                                "insecure-registries": [bed.hub.host]}
        # Run again: nothing to change, no second backup.
        assert "unchanged" in bed.client_setup("--docker", "--write", "--docker-config", str(path))
        assert sorted(path.parent.glob("daemon.json.bak-*")) == backups
        dockerd.reload(lambda: _plain(mirrors()) == [bed.hub.url, UNUSED_MIRROR])

        dockerd("rmi", "--force", IMAGE, check=False)
        mark = bed.log.mark()
        dockerd("pull", IMAGE)
        seen = _content_paths(bed.log.since(mark))
        by_tag = f"/v2/{MIRROR_REPO}/manifests/{MIRROR_TAG}"
        assert {("HEAD", by_tag, 200), ("GET", by_tag, 200)} & seen, sorted(seen)
        for digest in map(sha256, bed.image.layers):
            assert ("GET", f"/v2/{MIRROR_REPO}/blobs/{digest}", 200) in seen, (digest, sorted(seen))
        assert dockerd("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip() == bed.image.config_digest
    finally:
        path.write_text(original)
        for backup in path.parent.glob("daemon.json.bak-*"):
            backup.unlink()
        dockerd.reload(lambda: _plain(mirrors()) == [bed.hub.url])
