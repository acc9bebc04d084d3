"""Multi-arch indexes: buildah manifest push --all, skopeo copy --all out and between repositories."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from .util import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Api,
    describe,
    pull_layout,
    run,
    sha256_bytes,
)

pytestmark = pytest.mark.e2e

LIST_FORMATS = {"oci": (OCI_INDEX, OCI_MANIFEST), "v2s2": (DOCKER_LIST, DOCKER_MANIFEST)}


@pytest.fixture(scope="module")
def api(registry) -> Api:
    return Api(registry.url)


def push_list(env, registry, arch_images, repo: str, fmt: str) -> str:
    """Create a manifest list of the arch images and push it with all its instances; return its digest."""
    list_name = f"localhost/daohub-e2e/list-{fmt}"
    run(["buildah", "manifest", "create", list_name], env=env)
    try:
        for img in arch_images.values():
            run(["buildah", "manifest", "add", list_name, img.storage_ref], env=env)
        digest_file = Path(tempfile.mkdtemp()) / "digest"
        run(["buildah", "manifest", "push", "--quiet", "--all", "--format", fmt, "--tls-verify=false",
             "--digestfile", str(digest_file), list_name, f"docker://{registry.host}/{repo}:1"], env=env)
        return digest_file.read_text().strip()
    finally:
        run(["buildah", "manifest", "rm", list_name], env=env, check=False)


@pytest.mark.parametrize("fmt", sorted(LIST_FORMATS))
def test_buildah_manifest_push_all(registry, containers_env, arch_images, api, workdir, fmt):
    repo = f"e2e/multi-{fmt}"
    digest = push_list(containers_env, registry, arch_images, repo, fmt)
    index_type, child_type = LIST_FORMATS[fmt]

    r = api.manifest(repo, "1")
    assert sha256_bytes(r.content) == digest
    assert r.headers["Content-Type"].split(";")[0] == index_type, describe(r)
    index = r.json()
    assert index["mediaType"] == index_type
    platforms = sorted(m["platform"]["architecture"] for m in index["manifests"])
    assert platforms == ["amd64", "arm64"]
    for child in index["manifests"]:
        assert child["mediaType"] == child_type
        cr = api.manifest(repo, child["digest"])
        assert cr.headers["Content-Type"].split(";")[0] == child_type, describe(cr)
        assert len(cr.content) == child["size"]
    api.check_image(repo, digest)

    # Pull everything back into an OCI layout: every child manifest and blob is there and hashes right.
    # (An oci: layout gets OCI manifests: skopeo converts a Docker list and its children on the way.)
    layout = pull_layout(registry, f"{repo}@{digest}", workdir / "all", containers_env, all_images=True)
    pulled = layout.json(layout.top()["digest"])
    if fmt == "oci":
        assert layout.top()["digest"] == digest
        assert {c["digest"] for c in pulled["manifests"]} == {c["digest"] for c in index["manifests"]}
    seen = set()
    for child in pulled["manifests"]:
        child_manifest = layout.json(child["digest"])
        config = layout.json(child_manifest["config"]["digest"])
        assert config["architecture"] == child["platform"]["architecture"]
        assert config["rootfs"]["diff_ids"] == arch_images[config["architecture"]].diff_ids
        seen.add(config["architecture"])
    assert seen == {"amd64", "arm64"}


def test_skopeo_copy_all_between_repositories(registry, containers_env, arch_images, api, workdir):
    digest = push_list(containers_env, registry, arch_images, "e2e/multi-src", "oci")
    run(["skopeo", "copy", "--quiet", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{registry.host}/e2e/multi-src@{digest}", f"docker://{registry.host}/e2e/multi-copy:1"],
        env=containers_env)
    r = api.manifest("e2e/multi-copy", "1")
    assert sha256_bytes(r.content) == digest
    assert r.json()["mediaType"] in INDEX_TYPES
    api.check_image("e2e/multi-copy", "1")


def test_pull_one_platform_from_index(registry, containers_env, arch_images, api, e2e_root):
    digest = push_list(containers_env, registry, arch_images, "e2e/multi-platform", "oci")
    (e2e_root / "s").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=e2e_root / "s", prefix=""))
    store = ["--root", str(path / "g"), "--runroot", str(path / "r"), "--storage-driver", "vfs"]
    ref = f"{registry.host}/e2e/multi-platform@{digest}"
    run(["podman", *store, "pull", "--quiet", "--tls-verify=false", "--arch", "arm64", ref], env=containers_env)
    info = json.loads(run(["podman", *store, "image", "inspect", ref], env=containers_env).stdout)[0]
    assert info["Architecture"] == "arm64"
    assert info["RootFS"]["Layers"] == arch_images["arm64"].diff_ids
