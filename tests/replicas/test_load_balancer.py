"""skopeo pushes and pulls through nginx (deploy/nginx/daohub.conf) in front of the replicas.

The image is an OCI layout written here (tar layers of random files), so no image build is needed.
The pulls are checked blob by blob against their digests, and each replica's own metrics show that
it served part of them: the balancer really spread the pull over the replicas.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.util import Layout, need_tool, run
from tests.helpers.nginx import NginxProcess

from .conftest import OCI_CONFIG, OCI_MANIFEST, sha256

pytestmark = pytest.mark.timeout(300)
# Compressed already: skopeo would otherwise compress the layers on push, changing every digest.
OCI_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_PULL_ROUTE = re.compile(r'^daohub_http_requests_total\{([^}]*)\} ([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def balancer(cluster):
    nginx = need_tool("nginx")
    cluster.ensure_running()
    with NginxProcess([replica.host for replica in cluster.replicas], binary=nginx) as lb:
        yield lb


@pytest.fixture
def skopeo_env(tmp_path) -> dict[str, str]:
    """No credentials or registry settings of this machine's user."""
    (tmp_path / "auth.json").write_text('{"auths": {}}\n')
    (tmp_path / "registries.conf").write_text("unqualified-search-registries = []\n")
    return {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "registries.conf"), "TMPDIR": str(tmp_path)}


def _tar_layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """A layer: its gzip-compressed bytes and the uncompressed tar (whose digest is the diff id)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), compresslevel=1, mtime=0), out.getvalue()


def write_layout(path: Path, tag: str, sizes: tuple[int, ...]) -> tuple[bytes, dict[str, bytes]]:
    """An OCI image layout with one tagged image of gzipped tar layers; returns the manifest and blobs."""
    built = [_tar_layer({f"data/{i}.bin": os.urandom(size)}) for i, size in enumerate(sizes)]
    layers = [compressed for compressed, _ in built]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(tar) for _, tar in built]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_GZIP_LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers],
    }).encode()
    blobs = {sha256(blob): blob for blob in (config, *layers)}
    (path / "blobs" / "sha256").mkdir(parents=True)
    for digest, blob in {**blobs, sha256(manifest): manifest}.items():
        (path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(blob)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return manifest, blobs


def pull_requests(replica) -> int:
    """GETs of blobs and manifests this replica has answered (its own /metrics, not the balancer's)."""
    with urllib.request.urlopen(replica.url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    total = 0
    for labels, value in _PULL_ROUTE.findall(text):
        if 'method="GET"' in labels and re.search(r'route="get_(blob|manifest)"', labels):
            total += int(float(value))
    return total


def test_skopeo_push_and_pull_through_the_balancer(cluster, balancer, skopeo_env, tmp_path):
    skopeo = need_tool("skopeo")
    repo = "team/balanced"
    manifest, blobs = write_layout(tmp_path / "src", "v1", (3 << 20, 700_000, 40_000))
    digest = sha256(manifest)
    run([skopeo, "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1",
         f"docker://{balancer.host}/{repo}:v1"], env=skopeo_env)
    for blob_digest, blob in blobs.items():
        cluster.ledger.blob(repo, blob_digest, len(blob))
    assert cluster.ledger.manifest(repo, manifest, "v1") == digest

    before = [pull_requests(replica) for replica in cluster.replicas]
    for i, ref in enumerate((f"{repo}:v1", f"{repo}@{digest}", f"{repo}:v1")):
        out = tmp_path / f"pulled-{i}"
        run([skopeo, "copy", "--quiet", "--insecure-policy", "--src-tls-verify=false",
             f"docker://{balancer.host}/{ref}", f"oci:{out}"], env=skopeo_env)
        layout = Layout(out)  # every blob checked against its digest
        layout.verify()
        assert layout.top()["digest"] == digest
        assert layout.read(digest) == manifest
        assert {d: layout.read(d) for d in blobs} == blobs
    served = [after - prior for after, prior in zip((pull_requests(r) for r in cluster.replicas), before,
                                                    strict=True)]
    assert all(n > 0 for n in served), f"pull requests served per replica: {served}"
    # The balancer's own log names both replicas as upstreams too.
    upstreams = set(re.findall(r'"upstream":"([^"]+)"', balancer.log_text()))
    assert {replica.host for replica in cluster.replicas} <= upstreams, upstreams
