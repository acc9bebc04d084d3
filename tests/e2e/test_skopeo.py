"""skopeo against the registry: copy in and out by tag and digest, inspect, list-tags, delete, repo-to-repo copy."""

from __future__ import annotations

import gzip
import json

import pytest

from .util import OCI_MANIFEST, Api, describe, pull_layout, run, sha256_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(registry) -> Api:
    return Api(registry.url)


def push(env, image, registry, ref: str, *extra: str) -> None:
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra, image.storage_ref,
         f"docker://{registry.host}/{ref}"], env=env)


def raw_manifest(env, registry, ref: str) -> bytes:
    out = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{ref}"], env=env)
    return out.stdout.encode()


def uncompressed_digest(data: bytes) -> str:
    return sha256_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def test_push_then_pull_by_tag_and_by_digest(registry, containers_env, image, api, workdir):
    push(containers_env, image, registry, "e2e/skopeo:v1")
    raw = raw_manifest(containers_env, registry, "e2e/skopeo:v1")
    digest = sha256_bytes(raw)
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert len(manifest["layers"]) == len(image.diff_ids) >= 3

    by_tag = pull_layout(registry, "e2e/skopeo:v1", workdir / "by-tag", containers_env)
    assert by_tag.top()["digest"] == digest
    by_digest = pull_layout(registry, f"e2e/skopeo@{digest}", workdir / "by-digest", containers_env)
    assert by_digest.top()["digest"] == digest

    # The pulled layers are exactly the layers built locally: uncompressed, they hash to the diff_ids.
    assert [uncompressed_digest(by_digest.read(layer["digest"])) for layer in manifest["layers"]] == image.diff_ids
    config = by_digest.json(manifest["config"]["digest"])
    assert config["rootfs"]["diff_ids"] == image.diff_ids
    # And straight over HTTP: manifest and every blob, each checked against its digest.
    api.check_image("e2e/skopeo", "v1")
    api.check_image("e2e/skopeo", digest)


def test_inspect(registry, containers_env, image, api):
    push(containers_env, image, registry, "e2e/inspect:v1")
    digest = sha256_bytes(raw_manifest(containers_env, registry, "e2e/inspect:v1"))
    info = json.loads(run(["skopeo", "inspect", "--tls-verify=false",
                           f"docker://{registry.host}/e2e/inspect:v1"], env=containers_env).stdout)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert "v1" in info["RepoTags"]
    assert len(info["Layers"]) == len(image.diff_ids)
    assert info["Labels"]["org.opencontainers.image.title"] == "daohub-e2e"
    config = json.loads(run(["skopeo", "inspect", "--config", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/inspect@{digest}"], env=containers_env).stdout)
    assert config["rootfs"]["diff_ids"] == image.diff_ids


def test_list_tags(registry, containers_env, image):
    tags = ["v1", "v2", "latest", "1.0.0-rc.1"]
    for tag in tags:
        push(containers_env, image, registry, f"e2e/tags:{tag}")
    out = json.loads(run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry.host}/e2e/tags"],
                         env=containers_env).stdout)
    assert out["Repository"] == f"{registry.host}/e2e/tags"
    assert sorted(out["Tags"]) == sorted(tags)


def test_delete(registry, containers_env, image, api):
    push(containers_env, image, registry, "e2e/delete:doomed")
    digest = sha256_bytes(raw_manifest(containers_env, registry, "e2e/delete:doomed"))
    run(["skopeo", "delete", "--tls-verify=false", f"docker://{registry.host}/e2e/delete:doomed"],
        env=containers_env)

    gone = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/e2e/delete:doomed"],
               env=containers_env, check=False)
    assert gone.returncode != 0, "manifest still readable by tag after skopeo delete"
    r = api.get(f"/v2/e2e/delete/manifests/{digest}")
    assert r.status_code == 404, describe(r)
    assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN", describe(r)
    tags = api.get("/v2/e2e/delete/tags/list")
    assert tags.status_code in (200, 404), describe(tags)
    if tags.status_code == 200:
        assert "doomed" not in (tags.json().get("tags") or [])

    # Pushing the same content again works and gives the same digest.
    push(containers_env, image, registry, "e2e/delete:again")
    assert sha256_bytes(raw_manifest(containers_env, registry, "e2e/delete:again")) == digest


def test_copy_between_repositories(registry, containers_env, image, api, workdir):
    push(containers_env, image, registry, "e2e/copy-src:v1")
    src_digest = sha256_bytes(raw_manifest(containers_env, registry, "e2e/copy-src:v1"))
    # Registry to registry: skopeo tries cross-repository mounts for blobs it knows live in copy-src.
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{registry.host}/e2e/copy-src:v1", f"docker://{registry.host}/team-b/copied/app:v1"],
        env=containers_env)
    assert sha256_bytes(raw_manifest(containers_env, registry, "team-b/copied/app:v1")) == src_digest
    body = api.check_image("team-b/copied/app", "v1")
    layout = pull_layout(registry, "team-b/copied/app:v1", workdir / "copied", containers_env)
    assert layout.top()["digest"] == src_digest

    # The mount itself, over the raw protocol: 201 and the blob is now in the target repository.
    layer = body["layers"][0]["digest"]
    r = api.request("POST", f"/v2/e2e/mounted/blobs/uploads/?mount={layer}&from=e2e/copy-src")
    assert r.status_code == 201, describe(r)
    assert r.headers["Location"].endswith(f"/v2/e2e/mounted/blobs/{layer}"), describe(r)
    assert r.headers.get("Docker-Content-Digest") == layer, describe(r)
    head = api.head(f"/v2/e2e/mounted/blobs/{layer}")
    assert head.status_code == 200, describe(head)
    assert int(head.headers["Content-Length"]) == body["layers"][0]["size"]
    api.blob("e2e/mounted", layer)
