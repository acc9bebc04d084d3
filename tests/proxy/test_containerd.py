"""A real containerd (Debian's `containerd` and `ctr`) pulls through DaoHub with README's `hosts.toml`:
a Docker Hub name, and a registry by `host:port`, which DaoHub routes by containerd's `?ns=`.
README's containerd `config.toml`, kind and k3s snippets are checked against containerd itself."""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.helpers.containerd import SNAPSHOTTER, dump_config
from tests.helpers.fixtures_mirror import MIRROR_REPO, MIRROR_TAG, NS_REPO, NS_TAG, NS_UPSTREAM
from tests.helpers.mirror_docs import PLACEHOLDER

pytestmark = pytest.mark.e2e


def _hosts_dir(base: Path, registry_host: str, hosts_toml: str) -> Path:
    """A `config_path` directory holding one `<registry host>/hosts.toml`."""
    (base / registry_host).mkdir(parents=True)
    (base / registry_host / "hosts.toml").write_text(hosts_toml)
    return base


def _pull(containerd, hosts_dir: Path, ref: str) -> list[tuple[str, str]]:
    """`ctr images pull --hosts-dir`; returns (method, URL) of every request ctr sent (--http-dump)."""
    out = containerd.ctr("images", "pull", "--hosts-dir", str(hosts_dir), "--snapshotter", SNAPSHOTTER,
                         "--http-dump", ref)
    # ctr logs each dumped line as its own `msg="..."`: a request line, then the Host header.
    lines = re.findall(r'msg="(.*)"$', out.stdout + out.stderr, re.MULTILINE)
    sent = []
    for line, following in itertools.pairwise(lines):
        request = re.fullmatch(r"(GET|HEAD|POST|PUT) (\S+) HTTP/1\.1(?:\\r)?", line)
        host = re.fullmatch(r"Host: (\S+?)(?:\\r)?", following)
        if request and host:
            sent.append((request.group(1), f"http://{host.group(1)}{request.group(2)}"))
    assert sent, f"no request in ctr's --http-dump output:\n{lines[:40]}"
    return sent


def _image_digest(containerd, ref: str) -> str:
    rows = containerd.ctr("images", "ls").stdout.splitlines()
    for row in rows[1:]:
        cols = row.split()
        if cols and cols[0] == ref:
            return next(c for c in cols if c.startswith("sha256:"))
    raise AssertionError(f"{ref} not in ctr images ls:\n{rows}")


def _check_requests(sent: list[tuple[str, str]], hub_host: str, repo: str, ns: str) -> None:
    """Every registry request went to DaoHub, for `repo` in its own name, with ?ns=<ns>."""
    registry = [(method, urlsplit(url)) for method, url in sent if "/v2/" in url]
    assert registry, sent
    for method, url in registry:
        assert url.netloc == hub_host, (method, url.geturl())
        if url.path != "/v2/":
            assert url.path.startswith(f"/v2/{repo}/"), (method, url.geturl())
            assert parse_qs(url.query).get("ns") == [ns], (method, url.geturl())


def test_containerd_pulls_a_hub_name_through_the_mirror(mirror_bed, mirror_containerd, tmp_path):
    bed = mirror_bed
    hosts_dir = _hosts_dir(tmp_path / "certs.d", "docker.io", bed.snippet("hosts_toml"))
    ref = f"docker.io/{MIRROR_REPO}:{MIRROR_TAG}"
    before = bed.cache_results(bed.mirror_name)
    sent = _pull(mirror_containerd, hosts_dir, ref)
    _check_requests(sent, bed.hub.host, MIRROR_REPO, "docker.io")
    assert _image_digest(mirror_containerd, ref) == bed.image.digest
    # Served by the default mirror's cache (fetched, or already cached by another client's pull).
    after = bed.cache_results(bed.mirror_name)
    assert sum(after.values()) > sum(before.values()), (before, after)


def test_containerd_pulls_a_registry_by_host_port_routed_by_ns(mirror_bed, mirror_containerd, tmp_path):
    bed = mirror_bed
    registry = bed.upstream.host
    # README's hosts.toml, for the upstream's own host:port instead of Docker Hub.
    hosts_toml = bed.snippet("hosts_toml").replace("https://registry-1.docker.io", bed.upstream.url)
    hosts_dir = _hosts_dir(tmp_path / "certs.d", registry, hosts_toml)
    ref = f"{registry}/{NS_REPO}:{NS_TAG}"
    mark = bed.log.mark()
    before, cache_before = bed.upstream_gets(NS_UPSTREAM), bed.cache_results(NS_UPSTREAM)
    sent = _pull(mirror_containerd, hosts_dir, ref)
    _check_requests(sent, bed.hub.host, NS_REPO, registry)
    assert _image_digest(mirror_containerd, ref) == bed.ns_image.digest
    # DaoHub saw the plain name (no prefix: ns= alone chose the upstream), fetched the manifest
    # once from the upstream that answers to that host:port, and each blob containerd asked for
    # at most once. (containerd does not ask for a layer its store holds already, such as the
    # busybox layer when another test's pull came first; nor does DaoHub fetch bytes it holds:
    # it links them once the upstream confirms the digest.)
    entries = bed.log.since(mark)
    paths = {e["path"] for e in entries if "/manifests/" in (e.get("path") or "")}
    assert paths and all(p.startswith(f"/v2/{NS_REPO}/manifests/") for p in paths), paths
    asked = {e["path"].rsplit("/", 1)[1] for e in entries
             if e["method"] == "GET" and e["path"].startswith(f"/v2/{NS_REPO}/blobs/") and e["status"] == 200}
    assert set(bed.ns_image.blobs) - set(bed.image.blobs) <= asked <= set(bed.ns_image.blobs), asked
    after, cache_after = bed.upstream_gets(NS_UPSTREAM), bed.cache_results(NS_UPSTREAM)
    assert after.get("manifest", 0) - before.get("manifest", 0) == 1, (before, after)
    blob_lookups = {r: cache_after.get(("blob", r), 0) - cache_before.get(("blob", r), 0)
                    for r in ("miss", "linked", "hit")}
    assert sum(blob_lookups.values()) == len(asked), blob_lookups
    assert after.get("blob", 0) - before.get("blob", 0) == blob_lookups["miss"], (before, after)
    # Pulled again by a fresh containerd store: from cache, nothing more upstream.
    mirror_containerd.ctr("images", "rm", "--sync", ref)
    _pull(mirror_containerd, hosts_dir, ref)
    assert bed.upstream_gets(NS_UPSTREAM) == after


def test_readme_containerd_config_sets_config_path(mirror_bed, tmp_path):
    config_path = tomllib.loads(mirror_bed.docs["containerd_config"].text)["plugins"][
        "io.containerd.grpc.v1.cri"]["registry"]["config_path"]
    assert config_path == "/etc/containerd/certs.d"
    dumped = tomllib.loads(dump_config(mirror_bed.docs["containerd_config"].text, tmp_path))
    assert dumped["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == config_path


def test_readme_kind_cluster_patches_containerd_and_mounts_the_hosts_dir(mirror_bed, tmp_path):
    cluster = yaml.safe_load(mirror_bed.docs["kind_cluster"].text)
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (patch,) = cluster["containerdConfigPatches"]
    # kind merges the patch into the node's version 2 config.toml.
    dumped = tomllib.loads(dump_config("version = 2\n" + patch + "\n", tmp_path))
    config_path = dumped["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"]
    assert config_path == "/etc/containerd/certs.d"
    for node in cluster["nodes"]:
        assert {"hostPath": "./certs.d", "containerPath": config_path} in node["extraMounts"], node


def test_readme_k3s_registries_yaml_names_the_hosts_toml_mirror(mirror_bed):
    """k3s writes `certs.d/<registry>/hosts.toml` from registries.yaml (not run here: no k3s);
    its mirror must be the registry and endpoint of the hosts.toml that containerd pulled with."""
    registries = yaml.safe_load(mirror_bed.docs["k3s_registries"].text)
    hosts = tomllib.loads(mirror_bed.docs["hosts_toml"].text)
    assert list(registries["mirrors"]) == ["docker.io"]
    assert registries["mirrors"]["docker.io"]["endpoint"] == list(hosts["host"])
    assert list(hosts["host"]) == [f"http://{PLACEHOLDER}"]
    assert hosts["host"][f"http://{PLACEHOLDER}"]["capabilities"] == ["pull", "resolve"]
    assert json.loads(mirror_bed.docs["daemon_json"].text)["registry-mirrors"] == list(hosts["host"])


def test_client_setup_writes_hosts_toml_per_namespace_that_containerd_pulls_through(
        mirror_bed, mirror_containerd, tmp_path):
    """`daohub client setup --containerd --write` writes one hosts.toml per mirrored registry (Docker Hub,
    and the upstream that answers to its host:port), backing up one that was there; containerd pulls
    both images through DaoHub with them."""
    bed, containerd = mirror_bed, mirror_containerd
    certs = tmp_path / "certs.d"
    old = 'server = "https://registry-1.docker.io"\n'
    (certs / "docker.io").mkdir(parents=True)
    (certs / "docker.io" / "hosts.toml").write_text(old)
    out = bed.client_setup("--containerd", "--write", "--containerd-dir", str(certs))
    written = {p.parent.name: p.read_text() for p in certs.glob("*/hosts.toml")}
    assert set(written) == {"docker.io", bed.upstream.host}, written
    assert written["docker.io"] == bed.snippet("hosts_toml")   # README's, for this DaoHub
    assert tomllib.loads(written[bed.upstream.host])["host"] == {
        bed.hub.url: {"capabilities": ["pull", "resolve"]}}
    (backup,) = (certs / "docker.io").glob("hosts.toml.bak-*")
    assert backup.read_text() == old
    assert f"containerd: wrote {certs / bed.upstream.host / 'hosts.toml'} (new file)" in out
    printed = bed.client_setup("--containerd")
    assert f"# {Path('/etc/containerd/certs.d') / bed.upstream.host / 'hosts.toml'}" in printed

    for ref, repo, ns, image in ((f"docker.io/{MIRROR_REPO}:{MIRROR_TAG}", MIRROR_REPO, "docker.io", bed.image),
                                 (f"{bed.upstream.host}/{NS_REPO}:{NS_TAG}", NS_REPO, bed.upstream.host,
                                  bed.ns_image)):
        containerd.ctr("images", "rm", "--sync", ref, check=False)
        sent = _pull(containerd, certs, ref)
        _check_requests(sent, bed.hub.host, repo, ns)
        assert _image_digest(containerd, ref) == image.digest
