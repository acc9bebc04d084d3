"""podman with README's registries.conf mirror pulls a docker.io image through DaoHub, and skopeo
runs README's path-prefix command."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from tests.e2e.util import Layout, need_tool, run
from tests.helpers.containers import isolated_containers_env
from tests.helpers.fixtures_mirror import MIRROR_REPO, MIRROR_TAG
from tests.helpers.images import PAYLOAD_PATH, sha256
from tests.helpers.mirror_docs import KINDS, blocks

pytestmark = pytest.mark.e2e


def test_every_readme_mirror_snippet_is_of_a_kind_these_tests_run():
    assert set(blocks()) == set(KINDS)


def test_podman_pulls_docker_io_through_the_registries_conf_mirror(mirror_bed, mirror_root):
    need_tool("podman")
    bed = mirror_bed
    env = isolated_containers_env(mirror_root / "podman", bed.snippet("registries_conf"))
    ref = f"docker.io/{MIRROR_REPO}:{MIRROR_TAG}"
    cache_before = bed.cache_results(bed.mirror_name)
    mark = bed.log.mark()
    image_id = run(["podman", "pull", "--quiet", ref], env=env).stdout.strip()
    assert f"sha256:{image_id}" == bed.image.config_digest
    # The mirror was asked in mirror form (registries.conf swaps docker.io for DaoHub's address),
    # and DaoHub's cache of the default mirror served it.
    paths = {(e["method"], e["path"], e["status"]) for e in bed.log.since(mark)}
    assert ("GET", f"/v2/{MIRROR_REPO}/manifests/{MIRROR_TAG}", 200) in paths \
        or ("GET", f"/v2/{MIRROR_REPO}/manifests/{bed.image.digest}", 200) in paths, paths
    assert sum(bed.cache_results(bed.mirror_name).values()) > sum(cache_before.values())
    digests = run(["podman", "image", "inspect", "--format", "{{json .RepoDigests}}", ref], env=env).stdout
    assert f"docker.io/{MIRROR_REPO}@{bed.image.digest}" in digests
    # The unpacked payload layer (containers are not run: crun cannot set rlimits in some sandboxes).
    root = Path(run(["podman", "image", "mount", ref], env=env).stdout.strip())
    try:
        out = hashlib.sha256((root / PAYLOAD_PATH.lstrip("/")).read_bytes()).hexdigest()
    finally:
        run(["podman", "image", "unmount", ref], env=env)
    assert out == hashlib.sha256(bed.image.payload).hexdigest()


def test_readme_skopeo_command_pulls_through_the_path_prefix(mirror_bed, tmp_path):
    bed = mirror_bed
    env = isolated_containers_env(tmp_path / "containers", "unqualified-search-registries = []\n")
    (cmd,) = [line for line in bed.snippet("skopeo").splitlines() if line.strip()]
    argv = shlex.split(cmd)
    dest = argv[-1]
    assert dest.startswith("oci:"), cmd
    mark = bed.log.mark()
    run(argv, env=env, cwd=tmp_path)
    layout = Layout(tmp_path / dest.split(":")[1])   # every blob checked against its digest
    layout.verify()
    # skopeo rewrites manifest and config in OCI form for an oci: layout; the layers are the upstream's.
    manifest = layout.json(layout.top()["digest"])
    assert [d["digest"] for d in manifest["layers"]] == [sha256(layer) for layer in bed.image.layers]
    config = layout.json(manifest["config"]["digest"])
    assert config["rootfs"]["diff_ids"] == json.loads(bed.image.config)["rootfs"]["diff_ids"]
    manifests = {e["path"] for e in bed.log.since(mark) if "/manifests/" in (e.get("path") or "")}
    assert manifests and all(p.startswith(f"/v2/{bed.mirror_name}/{MIRROR_REPO}/manifests/") for p in manifests)
