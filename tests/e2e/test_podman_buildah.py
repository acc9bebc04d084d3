"""podman push in both manifest formats and pull by tag and digest; buildah push and pull."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from .util import DOCKER_MANIFEST, OCI_MANIFEST, Api, describe, pull_layout, run, sha256_bytes

pytestmark = pytest.mark.e2e

FORMATS = {"oci": OCI_MANIFEST, "v2s2": DOCKER_MANIFEST}
LAYER_TYPES = {
    "oci": ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar"),
    "v2s2": ("application/vnd.docker.image.rootfs.diff.tar.gzip",),
}
CONFIG_TYPES = {"oci": "application/vnd.oci.image.config.v1+json",
                "v2s2": "application/vnd.docker.container.image.v1+json"}


@pytest.fixture(scope="module")
def api(registry) -> Api:
    return Api(registry.url)


@pytest.fixture
def fresh_store(e2e_root) -> list[str]:
    """podman/buildah flags for an empty store: every pull really downloads and unpacks.

    Kept short: podman refuses a runroot path longer than 50 characters.
    """
    (e2e_root / "s").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=e2e_root / "s", prefix=""))
    return ["--root", str(path / "g"), "--runroot", str(path / "r"), "--storage-driver", "vfs"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_podman_push_format(registry, containers_env, image, api, workdir, fmt):
    repo = f"e2e/podman-{fmt}"
    run(["podman", "push", "--quiet", "--tls-verify=false", "--format", fmt, image.name,
         f"{registry.host}/{repo}:1"], env=containers_env)

    # What the registry stores and serves: the requested format, with a matching Content-Type.
    r = api.manifest(repo, "1")
    assert r.headers["Content-Type"].split(";")[0] == FORMATS[fmt], describe(r)
    body = r.json()
    assert body["mediaType"] == FORMATS[fmt]
    assert body["config"]["mediaType"] == CONFIG_TYPES[fmt]
    assert all(layer["mediaType"] in LAYER_TYPES[fmt] for layer in body["layers"]), body["layers"]
    assert len(body["layers"]) == len(image.diff_ids)
    # skopeo sees the very same bytes.
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:1"],
              env=containers_env).stdout.encode()
    assert raw == r.content
    # HEAD agrees with GET.
    head = api.head(f"/v2/{repo}/manifests/1", headers={"Accept": FORMATS[fmt]})
    assert head.status_code == 200, describe(head)
    assert head.headers["Docker-Content-Digest"] == sha256_bytes(r.content)
    assert int(head.headers["Content-Length"]) == len(r.content)
    api.check_image(repo, "1")
    pull_layout(registry, f"{repo}:1", workdir / "pulled", containers_env)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_podman_pull_by_tag_and_digest(registry, containers_env, image, api, fresh_store, fmt):
    repo = f"e2e/podman-pull-{fmt}"
    run(["podman", "push", "--quiet", "--tls-verify=false", "--format", fmt, image.name,
         f"{registry.host}/{repo}:1"], env=containers_env)
    manifest = api.manifest(repo, "1")
    digest = sha256_bytes(manifest.content)
    config_digest = manifest.json()["config"]["digest"]

    store = fresh_store
    for ref in (f"{registry.host}/{repo}:1", f"{registry.host}/{repo}@{digest}"):
        run(["podman", *store, "pull", "--quiet", "--tls-verify=false", ref], env=containers_env)
        info = json.loads(run(["podman", *store, "image", "inspect", ref], env=containers_env).stdout)[0]
        # The image id is the config digest; the layer diff ids were recomputed from the unpacked bytes.
        assert "sha256:" + info["Id"] == config_digest
        assert info["RootFS"]["Layers"] == image.diff_ids
        assert f"{registry.host}/{repo}@{digest}" in info["RepoDigests"]
        run(["podman", *store, "rmi", "--force", ref], env=containers_env)


def test_buildah_push_and_pull(registry, containers_env, image, api, workdir, fresh_store):
    repo = "e2e/buildah"
    digest_file = workdir / "digest"
    run(["buildah", "push", "--quiet", "--tls-verify=false", "--digestfile", str(digest_file), image.name,
         f"docker://{registry.host}/{repo}:1"], env=containers_env)
    digest = digest_file.read_text().strip()
    manifest = api.manifest(repo, "1")
    assert sha256_bytes(manifest.content) == digest
    api.check_image(repo, digest)

    store = fresh_store
    run(["buildah", *store, "pull", "--quiet", "--tls-verify=false", f"{registry.host}/{repo}@{digest}"],
        env=containers_env)
    info = json.loads(run(["buildah", *store, "inspect", "--type", "image", f"{registry.host}/{repo}@{digest}"],
                          env=containers_env).stdout)
    assert info["OCIv1"]["rootfs"]["diff_ids"] == image.diff_ids
    assert info["OCIv1"]["architecture"] == "amd64"
