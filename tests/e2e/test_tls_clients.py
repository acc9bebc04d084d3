"""Real clients against `daohub serve` over HTTPS with a private CA made in the test session:
skopeo, podman and buildah (`--cert-dir`), containerd (`ctr` with hosts.toml `ca`) and docker
(`certs.d/<host:port>/ca.crt`, against a hub in a network namespace of the test's own, as dockerd
checks no certificate on loopback) each log in, push and pull; without the CA each is refused by
its own certificate check; with mutual TLS skopeo presents client.cert/client.key."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.containerd import SNAPSHOTTER, running_containerd
from tests.helpers.netns import netns_host
from tests.helpers.server import TlsFiles
from tests.helpers.tls import PASSWORD, cert_dir, make_pki, secured_hub

from .util import run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(e2e_root):
    return make_pki(e2e_root / "pki")


@pytest.fixture(scope="module")
def tls_hub(e2e_root, pki):
    hub = secured_hub(e2e_root / "tls-hub", pki)
    yield hub
    assert hub.stop() == 0, hub.log_text()[-3000:]


@pytest.fixture(scope="module")
def certs(e2e_root, pki) -> Path:
    """A cert dir with the CA only (what --cert-dir takes)."""
    return cert_dir(pki, e2e_root / "tls-certs")


@pytest.fixture
def env(containers_env, workdir) -> dict[str, str]:
    """containers_env with an auth file of the test's own (the TLS hub is not marked insecure)."""
    env = dict(containers_env)
    (workdir / "auth.json").write_text('{"auths": {}}\n')
    env["REGISTRY_AUTH_FILE"] = str(workdir / "auth.json")
    return env


def login(tool: str, env, hub, certs: Path) -> None:
    run([tool, "login", "--cert-dir", str(certs), "-u", "alice", "--password-stdin", hub.host], env=env,
        input=PASSWORD.encode())


def assert_refused_for_the_certificate(result) -> None:
    assert result.returncode != 0, result.stdout
    assert "certificate signed by unknown authority" in result.stderr, result.stderr


def test_skopeo_logs_in_pushes_and_pulls_with_cert_dir(tls_hub, certs, env, image, workdir):
    login("skopeo", env, tls_hub, certs)
    ref = f"docker://{tls_hub.host}/team/skopeo:1"
    run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), image.storage_ref, ref], env=env)
    run(["skopeo", "copy", "--quiet", "--src-cert-dir", str(certs), ref, f"oci:{workdir / 'pulled'}:1"],
        env=env)
    index = json.loads((workdir / "pulled" / "index.json").read_text())
    assert len(index["manifests"]) == 1
    assert_refused_for_the_certificate(run(["skopeo", "inspect", ref], env=env, check=False))


def test_podman_logs_in_pushes_and_pulls_with_cert_dir(tls_hub, certs, env, image):
    login("podman", env, tls_hub, certs)
    ref = f"{tls_hub.host}/team/podman:1"
    run(["podman", "push", "--quiet", "--cert-dir", str(certs), image.name, ref], env=env)
    run(["podman", "rmi", "--ignore", ref], env=env, check=False)
    run(["podman", "pull", "--quiet", "--cert-dir", str(certs), ref], env=env)
    run(["podman", "rmi", "--ignore", ref], env=env, check=False)
    assert_refused_for_the_certificate(run(["podman", "pull", "--quiet", ref], env=env, check=False))


def test_buildah_logs_in_pushes_and_pulls_with_cert_dir(tls_hub, certs, env, image):
    login("buildah", env, tls_hub, certs)
    ref = f"{tls_hub.host}/team/buildah:1"
    run(["buildah", "push", "--quiet", "--cert-dir", str(certs), image.name, f"docker://{ref}"], env=env)
    run(["buildah", "rmi", "--force", ref], env=env, check=False)
    run(["buildah", "pull", "--quiet", "--cert-dir", str(certs), ref], env=env)
    run(["buildah", "rmi", "--force", ref], env=env, check=False)
    assert_refused_for_the_certificate(run(["buildah", "pull", "--quiet", ref], env=env, check=False))


def hosts_dir(base: Path, host: str, ca: Path | None) -> Path:
    (base / host).mkdir(parents=True)
    lines = [f'server = "https://{host}"', f'[host."https://{host}"]',
             '  capabilities = ["pull", "resolve", "push"]']
    if ca is not None:
        lines.append(f'  ca = "{ca}"')
    (base / host / "hosts.toml").write_text("\n".join(lines) + "\n")
    return base


def test_containerd_pulls_and_pushes_with_hosts_toml_ca(tls_hub, pki, certs, env, image, workdir):
    run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), "--dest-creds", f"alice:{PASSWORD}",
         image.storage_ref, f"docker://{tls_hub.host}/team/ctr:1"], env=env)
    trusted = hosts_dir(workdir / "hosts", tls_hub.host, pki.ca_file)
    untrusted = hosts_dir(workdir / "hosts-no-ca", tls_hub.host, None)
    with running_containerd(workdir / "c") as containerd:
        user = ("--user", f"alice:{PASSWORD}")
        ref = f"{tls_hub.host}/team/ctr:1"
        containerd.ctr("images", "pull", "--hosts-dir", str(trusted), *user, "--snapshotter", SNAPSHOTTER,
                       ref)
        containerd.ctr("images", "tag", ref, f"{tls_hub.host}/team/ctr:2")
        containerd.ctr("images", "push", "--hosts-dir", str(trusted), *user, f"{tls_hub.host}/team/ctr:2")
        refused = containerd.ctr("images", "pull", "--hosts-dir", str(untrusted), *user, "--snapshotter",
                                 SNAPSHOTTER, f"{tls_hub.host}/team/ctr:2", check=False)
        assert_refused_for_the_certificate(refused)
    # What ctr pushed is there, through another client.
    run(["skopeo", "inspect", "--cert-dir", str(certs), "--creds", f"alice:{PASSWORD}",
         f"docker://{tls_hub.host}/team/ctr:2"], env=env)


def test_skopeo_with_mutual_tls_presents_the_client_certificate(e2e_root, pki, env, image, workdir):
    hub = secured_hub(e2e_root / "mtls-hub", pki, mutual=True)
    try:
        with_client = cert_dir(pki, workdir / "with-client", client=True)
        ca_only = cert_dir(pki, workdir / "ca-only")
        ref = f"docker://{hub.host}/team/mtls:1"
        run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(with_client), "--dest-creds",
             f"alice:{PASSWORD}", image.storage_ref, ref], env=env)
        run(["skopeo", "inspect", "--cert-dir", str(with_client), "--creds", f"alice:{PASSWORD}", ref],
            env=env)
        refused = run(["skopeo", "inspect", "--cert-dir", str(ca_only), "--creds", f"alice:{PASSWORD}", ref],
                      env=env, check=False)
        assert refused.returncode != 0
        assert "certificate required" in refused.stderr, refused.stderr
    finally:
        assert hub.stop() == 0, hub.log_text()[-3000:]


@pytest.fixture
def docker_hub(e2e_root, pki, workdir):
    """A TLS hub on a test host of this test's own (a network namespace over a veth): dockerd treats
    every 127.0.0.0/8 registry as insecure and would never check the CA there. Yields the hub and
    its /etc/docker/certs.d/<host:port>/ directory (not created); both go away, also on failure."""
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(netns_host())
        cert, key = pki.issue_server_pair(workdir / "server", "daohub-docker", (host.address,))
        hub = secured_hub(e2e_root / "docker-hub", pki, host=host.address, netns=host.name,
                          files=TlsFiles(cert, key, pki.ca_file))
        stack.callback(assert_stopped, hub)  # before the namespace goes
        # dockerd reads /etc/docker/certs.d/<host:port>/ on every pull and push; the directory
        # names this test's own address and port and goes away with it.
        certs_d = Path("/etc/docker/certs.d") / hub.host
        stack.callback(shutil.rmtree, certs_d, ignore_errors=True)
        yield hub, certs_d


def assert_stopped(hub) -> None:
    assert hub.stop() == 0, hub.log_text()[-3000:]


def docker_login(dockerd, hub, check: bool = True):
    return run([dockerd.docker, "-H", f"unix://{dockerd.sock}", "login", "-u", "alice", "--password-stdin",
                hub.host], env=dockerd.env, input=PASSWORD.encode(), check=check)


def test_docker_logs_in_pushes_and_pulls_with_certs_d(docker_hub, pki, certs, env, image, dockerd):
    hub, certs_d = docker_hub
    try:
        run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), "--dest-creds", f"alice:{PASSWORD}",
             image.storage_ref, f"docker://{hub.host}/team/docker:1"], env=env)
        ref = f"{hub.host}/team/docker:1"
        login = docker_login(dockerd, hub, check=False)
        assert_refused_for_the_certificate(login)
        certs_d.mkdir(parents=True)
        shutil.copy(pki.ca_file, certs_d / "ca.crt")
        login = docker_login(dockerd, hub)
        assert "Login Succeeded" in login.stdout
        dockerd("pull", ref)
        dockerd("tag", ref, f"{hub.host}/team/docker:2")
        dockerd("push", f"{hub.host}/team/docker:2")
        dockerd("logout", hub.host)
    finally:
        dockerd("rmi", "--force", f"{hub.host}/team/docker:1", f"{hub.host}/team/docker:2", check=False)
