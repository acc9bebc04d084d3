"""Helpers shared by the end-to-end tests: running client tools, checking bytes by digest, raw HTTP."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT_ALL = ", ".join(MANIFEST_TYPES)


def need_tool(name: str) -> str:
    """Path of a required executable. Missing: a failure under CI, a skip elsewhere."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path:
        return path
    message = f"{name} is not installed (scripts/test.sh installs it)"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def need_module(name: str):
    """Import a required Python module. Missing: a failure under CI, a skip elsewhere."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"Python module {name} is missing ({exc}); pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 180, check: bool = True,
        input: bytes | None = None, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run a command (text output); on failure raise with its exit code, stdout and stderr."""
    if "/" not in cmd[0]:
        need_tool(cmd[0])
    try:
        result = subprocess.run(cmd, check=False, env=env, capture_output=True, timeout=timeout, input=input,
                                cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"timed out after {timeout}s: {shlex.join(cmd)}\n"
                             f"stdout: {_text(exc.stdout)[-3000:]}\nstderr: {_text(exc.stderr)[-3000:]}") from None
    result.stdout = _text(result.stdout)
    result.stderr = _text(result.stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"command failed with exit code {result.returncode}: {shlex.join(cmd)}\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def skopeo_push_built(image, ref: str, workdir: Path, env: dict, *, creds: str | None = None) -> None:
    """A built image (tests.helpers.images: .manifest and .blobs) written as a `dir:` layout under
    `workdir` and copied with skopeo to `ref` (`HOST:PORT/name:tag`, plain HTTP)."""
    layout = workdir / f"layout-{hashlib.sha256(image.manifest).hexdigest()[:16]}"
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "version").write_text("Directory Transport Version: 1.1\n")
    (layout / "manifest.json").write_bytes(image.manifest)
    for digest, data in image.blobs.items():
        (layout / digest.split(":", 1)[1]).write_bytes(data)
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *(["--dest-creds", creds] if creds else []),
         f"dir:{layout}", f"docker://{ref}"], env=env)


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


# --------------------------------------------------------------------------------------------
# OCI image layouts (what `skopeo copy ... oci:DIR` writes)
# --------------------------------------------------------------------------------------------
class Layout:
    """An OCI image layout on disk whose every blob has been checked against its name."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.index = json.loads((self.path / "index.json").read_text())
        self.blobs: dict[str, Path] = {}
        for alg_dir in (self.path / "blobs").iterdir():
            for blob in alg_dir.iterdir():
                digest = f"{alg_dir.name}:{blob.name}"
                actual = file_digest(blob, alg_dir.name)
                assert actual == digest, f"blob {blob} holds {actual}, not {digest}"
                self.blobs[digest] = blob

    def read(self, digest: str) -> bytes:
        assert digest in self.blobs, f"{digest} missing from layout {self.path}"
        return self.blobs[digest].read_bytes()

    def json(self, digest: str) -> dict:
        return json.loads(self.read(digest))

    def check_descriptor(self, desc: dict) -> None:
        blob = self.blobs.get(desc["digest"])
        assert blob is not None, f"{desc['digest']} ({desc.get('mediaType')}) missing from layout {self.path}"
        assert blob.stat().st_size == desc["size"], f"size of {desc['digest']} differs from its descriptor"

    def walk(self, desc: dict) -> list[dict]:
        """Check `desc` and everything it references; return every manifest descriptor met on the way."""
        self.check_descriptor(desc)
        seen = [desc]
        body = self.json(desc["digest"])
        if body.get("mediaType") in INDEX_TYPES or "manifests" in body:
            for child in body["manifests"]:
                seen += self.walk(child)
        else:
            self.check_descriptor(body["config"])
            for layer in body["layers"]:
                self.check_descriptor(layer)
        return seen

    def verify(self) -> list[dict]:
        """Every descriptor reachable from index.json exists with the right size (digests were checked)."""
        seen = []
        for desc in self.index["manifests"]:
            seen += self.walk(desc)
        return seen

    def top(self) -> dict:
        assert len(self.index["manifests"]) == 1, self.index
        return self.index["manifests"][0]


def pull_layout(registry, ref: str, dest: Path, env: dict, *, all_images: bool = False) -> Layout:
    """`skopeo copy docker://HOST/<ref> oci:<dest>`, then check every blob by digest."""
    cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false"]
    if all_images:
        cmd.append("--all")
    run(cmd + [f"docker://{registry.host}/{ref}", f"oci:{dest}"], env=env)
    layout = Layout(dest)
    layout.verify()
    return layout


# --------------------------------------------------------------------------------------------
# Raw HTTP against the registry
# --------------------------------------------------------------------------------------------
class Api:
    """A thin `requests` wrapper for checks the client tools do not show."""

    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.session.get(self.base + path, **kw)

    def head(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.session.head(self.base + path, **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.session.request(method, self.base + path, **kw)

    def manifest(self, name: str, ref: str, accept: str = ACCEPT_ALL) -> requests.Response:
        r = self.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": accept})
        assert r.status_code == 200, describe(r)
        digest = sha256_bytes(r.content)
        assert r.headers.get("Docker-Content-Digest") == digest, describe(r)
        if ref.startswith("sha256:"):
            assert digest == ref, f"GET manifest {ref} returned bytes hashing to {digest}"
        return r

    def blob(self, name: str, digest: str) -> bytes:
        r = self.get(f"/v2/{name}/blobs/{digest}")
        assert r.status_code == 200, describe(r)
        assert sha256_bytes(r.content) == digest, f"GET blob {digest} returned other bytes"
        return r.content

    def check_image(self, name: str, ref: str) -> dict:
        """Fetch a manifest (and, for an index, every child) and every blob; check all by digest."""
        r = self.manifest(name, ref)
        body = r.json()
        if body.get("mediaType") in INDEX_TYPES or "manifests" in body:
            for child in body["manifests"]:
                child_r = self.manifest(name, child["digest"])
                assert len(child_r.content) == child["size"]
                self.check_image(name, child["digest"])
        else:
            for desc in [body["config"], *body["layers"]]:
                data = self.blob(name, desc["digest"])
                assert len(data) == desc["size"], f"size of {desc['digest']} differs"
        return body


def describe(r: requests.Response) -> str:
    """A failed request, with enough detail to report a server bug."""
    req = r.request
    headers = {k: v for k, v in r.headers.items()
               if k.lower() in ("content-type", "location", "range", "docker-content-digest",
                                "docker-upload-uuid", "oci-subject", "oci-filters-applied", "x-request-id")}
    return (f"{req.method} {req.url} -> {r.status_code} {r.reason}\n"
            f"response headers: {headers}\nresponse body: {r.text[:2000]}")


def insecure_registry_env(base_env: dict[str, str], host: str, scratch: Path, name: str) -> dict[str, str]:
    """`base_env` (an isolated podman/skopeo environment) plus `host` marked insecure (plain HTTP)
    in a registries.conf of its own and an empty auth file of its own, both written to `scratch`
    as `<name>-registries.conf` and `<name>-auth.json`."""
    env = dict(base_env)
    conf = scratch / f"{name}-registries.conf"
    conf.write_text(Path(env["CONTAINERS_REGISTRIES_CONF"]).read_text()
                    + f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    auth_file = scratch / f"{name}-auth.json"
    auth_file.write_text('{"auths": {}}\n')
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    return env


def skopeo(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["skopeo", *args], env=env, check=check)


def podman_login(env, host: str, user: str, password: str, *, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", "login", "--tls-verify=false", "-u", user, "--password-stdin", host], env=env,
               input=password.encode(), check=check)


def podman_login_push_pull(env, host: str, user: str, password: str, local_image: str, ref: str) -> None:
    """podman logs in to `host`, pushes `local_image` (a containers-storage name) as `ref`, removes
    its local copy of `ref`, pulls it back, and logs out."""
    podman_login(env, host, user, password)
    run(["podman", "push", "--tls-verify=false", local_image, ref], env=env)
    run(["podman", "rmi", "--ignore", ref], env=env, check=False)
    run(["podman", "pull", "--tls-verify=false", ref], env=env)
    run(["podman", "logout", host], env=env)


def docker_login_push_pull_refused(dockerd, env, host: str, user: str, password: str, image, repo: str,
                                   refused_ref: str) -> str:
    """skopeo puts `image` at `<host>/<repo>:1` as `user`; docker logs in as `user`, pulls it, pushes
    it again as `<repo>:2`, is refused a push of it as `refused_ref`, and logs out. Returns docker's
    message for the refusal. The images are removed from the (shared) daemon afterwards."""
    ref = f"{host}/{repo}:1"
    skopeo(env, "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"{user}:{password}",
           image.storage_ref, f"docker://{ref}")
    login = run([dockerd.docker, "-H", f"unix://{dockerd.sock}", "login", "-u", user, "--password-stdin", host],
                env=dockerd.env, input=password.encode())
    assert "Login Succeeded" in login.stdout
    tags = [ref, f"{host}/{repo}:2", refused_ref]
    try:
        dockerd("pull", ref)
        dockerd("tag", ref, tags[1])
        dockerd("push", tags[1])
        dockerd("tag", ref, refused_ref)
        refused = dockerd("push", refused_ref, check=False)
        assert refused.returncode != 0
        message = (refused.stdout + refused.stderr).lower()
        assert "denied" in message or "unauthorized" in message, message
        dockerd("logout", host)
        return (refused.stdout + refused.stderr).strip()
    finally:
        dockerd("rmi", "--force", *tags, check=False)
