"""dockerd with README's daemon.json (`registry-mirrors` = DaoHub) pulls a Docker Hub name through
DaoHub's default mirror, and pulls it again from DaoHub's cache once the upstream is down."""

from __future__ import annotations

import hashlib

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
