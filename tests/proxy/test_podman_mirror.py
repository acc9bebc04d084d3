"""podman with README's registries.conf mirror pulls a docker.io image through DaoHub, and skopeo
runs README's path-prefix command."""

from __future__ import annotations

import hashlib
import json
import shlex
import tomllib
from pathlib import Path

import pytest

from tests.e2e.util import Layout, need_tool, run
from tests.helpers.containers import isolated_containers_env
from tests.helpers.fixtures_mirror import MIRROR_REPO, MIRROR_TAG, NS_REPO, NS_TAG, NS_UPSTREAM
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


EXISTING_REGISTRIES_CONF = """# This machine's own settings: kept by client setup.
unqualified-search-registries = ["registry.example"]

[[registry]]
location = "quay.io"
blocked = true
"""


def test_client_setup_merges_registries_conf_that_podman_pulls_through(mirror_bed, mirror_root):
    """`daohub client setup --podman --write` adds DaoHub as the mirror of Docker Hub (mirror mode) and of
    the upstream's host:port (by its path prefix) to an existing registries.conf, keeping what was there;
    podman pulls both images through DaoHub."""
    need_tool("podman")
    bed = mirror_bed
    base = mirror_root / "ps"
    env = isolated_containers_env(base, EXISTING_REGISTRIES_CONF)
    conf = base / "registries.conf"
    out = bed.client_setup("--podman", "--write", "--podman-config", str(conf))
    (backup,) = base.glob("registries.conf.bak-*")
    assert backup.read_text() == EXISTING_REGISTRIES_CONF and f"podman: wrote {conf}" in out
    merged = conf.read_text()
    assert merged.startswith(EXISTING_REGISTRIES_CONF.splitlines()[0])   # comments kept (tomlkit)
    document = tomllib.loads(merged)
    assert document["unqualified-search-registries"] == ["registry.example"]
    registries = {r["location"]: r for r in document["registry"]}
    assert registries["quay.io"] == {"location": "quay.io", "blocked": True}
    assert registries["docker.io"]["mirror"] == [{"location": bed.hub.host, "insecure": True}]
    assert registries[bed.upstream.host]["mirror"] == [{"location": f"{bed.hub.host}/{NS_UPSTREAM}",
                                                        "insecure": True}]

    for ref, served, image in ((f"docker.io/{MIRROR_REPO}:{MIRROR_TAG}", MIRROR_REPO, bed.image),
                               (f"{bed.upstream.host}/{NS_REPO}:{NS_TAG}", f"{NS_UPSTREAM}/{NS_REPO}", bed.ns_image)):
        mark = bed.log.mark()
        image_id = run(["podman", "pull", "--quiet", ref], env=env).stdout.strip()
        assert f"sha256:{image_id}" == image.config_digest
        manifests = {(e["method"], e["path"], e["status"]) for e in bed.log.since(mark)
                     if "/manifests/" in (e.get("path") or "")}
        assert manifests and all(p.startswith(f"/v2/{served}/manifests/") and status == 200
                                 for _, p, status in manifests), manifests
