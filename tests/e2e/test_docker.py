"""docker (a private dockerd) pulls, pushes, pulls back and runs an image from the registry."""

from __future__ import annotations

import hashlib
import re

import pytest

from .util import DOCKER_MANIFEST, Api, describe, pull_layout, run, sha256_bytes

pytestmark = pytest.mark.e2e


def test_docker_pull_push_pull_run(registry, containers_env, image, dockerd, workdir):
    api = Api(registry.url)
    src = f"{registry.host}/e2e/docker-src:1"
    dst = f"{registry.host}/e2e/docker-dst:1"
    # dockerd cannot read containers-storage: skopeo puts the local image into the registry first.
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.storage_ref, f"docker://{src}"],
        env=containers_env)

    dockerd("pull", src)
    dockerd("tag", src, dst)
    pushed = dockerd("push", dst).stdout
    match = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", pushed)
    assert match, pushed
    digest, size = match.group(1), int(match.group(2))

    # docker pushes Docker schema 2; the registry serves those exact bytes.
    r = api.manifest("e2e/docker-dst", "1")
    assert sha256_bytes(r.content) == digest and len(r.content) == size
    assert r.headers["Content-Type"].split(";")[0] == DOCKER_MANIFEST, describe(r)
    body = api.check_image("e2e/docker-dst", digest)
    assert len(body["layers"]) == len(image.diff_ids)
    layout = pull_layout(registry, f"e2e/docker-dst@{digest}", workdir / "pulled", containers_env)
    assert layout.json(body["config"]["digest"])["rootfs"]["diff_ids"] == image.diff_ids

    # Forget everything locally, then pull back by digest and by tag, and run it.
    dockerd("rmi", src, dst)
    assert dockerd("images", "-q").stdout.strip() == ""
    dockerd("pull", f"{registry.host}/e2e/docker-dst@{digest}")
    dockerd("pull", dst)
    repo_digests = dockerd("image", "inspect", "--format", "{{json .RepoDigests}}", dst).stdout
    assert f"{registry.host}/e2e/docker-dst@{digest}" in repo_digests

    out = dockerd("run", "--rm", "--network", "none", dst, "echo", "hello").stdout
    assert out.strip() == "hello"
    out = dockerd("run", "--rm", "--network", "none", dst).stdout
    assert out.strip() == "hello from daohub-e2e"
    # The random payload layers arrived intact.
    for in_image, local in image.payloads.items():
        out = dockerd("run", "--rm", "--network", "none", dst, "sha256sum", in_image).stdout
        assert out.split()[0] == hashlib.sha256(local.read_bytes()).hexdigest(), in_image
