"""Session fixtures of the registry-mirror tests (tests/proxy/test_docker_mirror.py,
test_containerd.py, test_podman_mirror.py): real clients configured with README.md's snippets.

One session-wide test bed: a CNCF distribution (`docker-registry`) standing in for Docker Hub,
seeded with a runnable `library/alpine:3.20` (static busybox and a random payload, built in
memory: nothing comes from the network), and a `daohub serve` process with auth on, configured
with README's `proxy:` block (only the upstream URL changed) plus a second upstream for
containerd's `ns=` routing to a registry by its `host:port`. The private dockerd and containerd
are session fixtures too, started only by the tests that use them.

Loaded by tests/proxy/conftest.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.util import IN_CI, need_tool, run
from tests.helpers.containerd import running_containerd
from tests.helpers.dockerd import running_dockerd
from tests.helpers.images import BuiltImage, find_busybox, runnable_image
from tests.helpers.mirror_docs import Block, blocks
from tests.helpers.server import REPO_ROOT, DaoHubProcess, DistributionProcess
from tests.proxy.util import AccessLog, Upstream

# The image README's examples pull, as the stand-in Docker Hub holds it.
MIRROR_REPO, MIRROR_TAG = "library/alpine", "3.20"
# The second upstream, reached only by containerd's ns=<its host:port>.
NS_UPSTREAM, NS_REPO, NS_TAG = "byhost", "team/app", "1"


@dataclass
class MirrorBed:
    hub: DaoHubProcess
    upstream: DistributionProcess
    image: BuiltImage          # MIRROR_REPO:MIRROR_TAG upstream
    ns_image: BuiltImage       # NS_REPO:NS_TAG upstream
    docs: dict[str, Block]
    log: AccessLog

    @property
    def mirror_name(self) -> str:
        """The default mirror upstream's name, as README configures it."""
        return yaml.safe_load(self.docs["daohub_config"].text)["proxy"]["default_mirror"]

    def snippet(self, kind: str) -> str:
        """README's snippet of `kind` pointing at this DaoHub."""
        return self.docs[kind].for_hub(self.hub.host)

    def client_setup(self, *args: str) -> str:
        """`daohub client setup --server <this DaoHub> ARGS` (the real command line); its stdout."""
        return run([sys.executable, "-m", "hub", "client", "setup", "--server", self.hub.url, *args],
                   cwd=REPO_ROOT).stdout

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        r = requests.get(f"{self.hub.url}/metrics", timeout=30)
        r.raise_for_status()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(r.text) for s in family.samples}

    def upstream_gets(self, upstream: str) -> dict[str, float]:
        """kind -> upstream GETs DaoHub made to `upstream` that succeeded, per kind (manifest, blob)."""
        counts: dict[str, float] = {}
        for (name, labels), value in self.metrics().items():
            d = dict(labels)
            if (name == "daohub_proxy_upstream_requests_total" and d["upstream"] == upstream
                    and d["method"] == "GET" and d["status"] == "200"):
                counts[d["kind"]] = counts.get(d["kind"], 0) + value
        return counts

    def cache_results(self, upstream: str) -> dict[tuple[str, str], float]:
        """(kind, result) -> cache lookups of `upstream` (hit, miss, revalidated, stale...)."""
        return {(dict(labels)["kind"], dict(labels)["result"]): value
                for (name, labels), value in self.metrics().items()
                if name == "daohub_proxy_cache_requests_total" and dict(labels)["upstream"] == upstream}


def _fail_or_skip(message: str):
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _push(upstream: Upstream, name: str, tag: str, image: BuiltImage) -> None:
    for data in image.blobs.values():
        upstream.push_blob(name, data, {})
    upstream.push_manifest(name, tag, image.manifest, "application/vnd.docker.distribution.manifest.v2+json", {})


@pytest.fixture(scope="session")
def mirror_root():
    root = Path(tempfile.mkdtemp(prefix="dh-mir-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mirror_bed(mirror_root) -> MirrorBed:
    need_tool("docker-registry")
    busybox = find_busybox()
    if busybox is None:
        _fail_or_skip("busybox (Debian package busybox-static) is needed to build the test images")
    docs = blocks()
    upstream = DistributionProcess(mirror_root / "upstream")
    upstream.start()
    try:
        image, ns_image = runnable_image(busybox), runnable_image(busybox, payload_size=64 * 1024)
        seed = Upstream(upstream.url)
        _push(seed, MIRROR_REPO, MIRROR_TAG, image)
        _push(seed, NS_REPO, NS_TAG, ns_image)
        config = yaml.safe_load(docs["daohub_config"].text)
        mirror = next(u for u in config["proxy"]["upstreams"] if u["name"] == config["proxy"]["default_mirror"])
        mirror["url"] = upstream.url
        config["proxy"]["upstreams"].append({"name": NS_UPSTREAM, "url": upstream.url, "aliases": [upstream.host],
                                             "anonymous_pull": True})
        config_path = mirror_root / "daohub.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        hub = DaoHubProcess(mirror_root / "hub", config=config_path, env={"DAOHUB_AUTH_ENABLED": "true"})
        hub.start()
    except BaseException:
        upstream.stop()
        raise
    try:
        yield MirrorBed(hub=hub, upstream=upstream, image=image, ns_image=ns_image, docs=docs,
                        log=AccessLog(hub.log_path, hub.url))
    finally:
        code = hub.stop()
        upstream.stop()
    assert code == 0, f"daohub exited with code {code} on SIGTERM; log tail:\n{hub.log_text()[-4000:]}"


@pytest.fixture(scope="session")
def mirror_dockerd(mirror_root, mirror_bed):
    """A dockerd whose daemon.json is README's, pointing at the DaoHub of `mirror_bed`."""
    with running_dockerd(mirror_root / "docker", json.loads(mirror_bed.snippet("daemon_json"))) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def mirror_containerd(mirror_root):
    with running_containerd(mirror_root / "containerd") as daemon:
        yield daemon
