"""End-to-end fixtures: one running registry, isolated podman/buildah/skopeo storage, a private dockerd,
and locally built images (no network: images are built `FROM scratch` around busybox-static).

Under CI=true a missing client tool is a failure, not a skip: CI must prove the clients work.

Set DAOHUB_E2E_TARGET=distribution to run the client tests against CNCF distribution instead of
DaoHub (useful to tell a client-side problem from a server bug); tests that need DaoHub itself
(crash recovery) skip then.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.containers import isolated_containers_env
from tests.helpers.dockerd import running_dockerd
from tests.helpers.server import DaoHubProcess, DistributionProcess

from .util import IN_CI, file_digest, need_tool, run

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
IMAGE_NAME = "localhost/daohub-e2e/app:latest"


# --------------------------------------------------------------------------------------------
# Scratch space
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def e2e_root():
    """A short directory under /tmp (dockerd's unix socket path must stay under ~100 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="dh-e2e-", dir="/tmp"))
    yield root
    if os.environ.get("DAOHUB_E2E_KEEP"):
        print(f"\nkept e2e scratch dir {root}")
        return
    shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The registry under test
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def registry(e2e_root):
    """One registry process for the whole session; data in a temp dir, log at `<data>/daohub.log`."""
    target = os.environ.get("DAOHUB_E2E_TARGET", "daohub")
    if target == "distribution":
        need_tool("docker-registry")
        server = DistributionProcess(e2e_root / "distribution")
    elif target == "daohub":
        server = DaoHubProcess(e2e_root / "daohub")
    else:
        raise pytest.UsageError(f"DAOHUB_E2E_TARGET must be daohub or distribution, not {target!r}")
    server.start()
    yield server
    code = server.stop()
    if isinstance(server, DaoHubProcess):
        assert code == 0, f"daohub exited with code {code} on SIGTERM; log tail:\n{server.log_text()[-4000:]}"
        # Whatever the clients did, every blob file the registry kept hashes to its own name.
        for path in server.blob_files():
            algorithm = path.parent.parent.name
            assert file_digest(path, algorithm) == f"{algorithm}:{path.name}", f"corrupt blob file {path}"


@pytest.fixture(scope="session")
def is_daohub(registry) -> bool:
    return isinstance(registry, DaoHubProcess)


# --------------------------------------------------------------------------------------------
# podman / buildah / skopeo with storage and config of their own
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def containers_env(e2e_root, registry) -> dict[str, str]:
    """Environment for podman, buildah and skopeo that ignores the machine's storage and config.

    vfs storage (no overlay or fuse needed), a registries.conf that marks the registry under test
    insecure and allows no short-name search, a containers.conf without systemd or journald.
    """
    return isolated_containers_env(e2e_root / "containers", (
        "unqualified-search-registries = []\n"
        'short-name-mode = "permissive"\n'
        "[[registry]]\n"
        f'location = "{registry.host}"\n'
        "insecure = true\n"
    ))


@dataclass
class LocalImage:
    """An image in the isolated containers-storage."""

    name: str                                  # e.g. localhost/daohub-e2e/app:latest
    diff_ids: list[str] = field(default_factory=list)
    architecture: str = "amd64"
    payloads: dict[str, Path] = field(default_factory=dict)   # path in the image -> local copy

    @property
    def storage_ref(self) -> str:
        return f"containers-storage:{self.name}"


def _busybox() -> str:
    for candidate in BUSYBOX_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    message = "busybox (Debian package busybox-static) is needed to build the test images"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _rootfs(base: Path) -> Path:
    """A tiny root filesystem: static busybox plus the applet links the tests call."""
    rootfs = base / "rootfs"
    if not rootfs.exists():
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(_busybox(), rootfs / "bin" / "busybox")
        for applet in ("sh", "echo", "cat", "ls", "sha256sum", "true"):
            os.symlink("busybox", rootfs / "bin" / applet)
    return rootfs


def _inspect_diff_ids(env, name: str) -> list[str]:
    out = run(["buildah", "inspect", "--type", "image", name], env=env).stdout
    return json.loads(out)["OCIv1"]["rootfs"]["diff_ids"]


def build_image(env, workdir: Path, name: str, *, arch: str = "amd64", extra_layers: int = 2,
                sizes: tuple[int, ...] = (256 * 1024, 64 * 1024), cmd: list[str] | None = None) -> LocalImage:
    """Build `name` FROM scratch: a busybox layer, then one layer per random file, each its own commit."""
    need_tool("buildah")
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = _rootfs(workdir)
    cmd = cmd or ["/bin/sh", "-c", "echo hello from daohub-e2e"]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name.split("/", 1)[-1])
    payloads = {}
    stage = f"{name}-stage0"
    container = run(["buildah", "from", "scratch"], env=env).stdout.strip()
    run(["buildah", "copy", "-q", container, f"{rootfs}/", "/"], env=env)
    run(["buildah", "config", "--arch", arch, "--os", "linux", "--env", "PATH=/bin",
         "--cmd", json.dumps(cmd), "--label", "org.opencontainers.image.title=daohub-e2e", container], env=env)
    run(["buildah", "commit", "-q", "--format", "oci", "--rm", container, stage], env=env)
    for i in range(extra_layers):
        payload = workdir / f"{slug}-{i}.bin"
        payload.write_bytes(os.urandom(sizes[i % len(sizes)]))
        payloads[f"/data/{payload.name}"] = payload
        container = run(["buildah", "from", stage], env=env).stdout.strip()
        run(["buildah", "copy", "-q", container, str(payload), f"/data/{payload.name}"], env=env)
        next_stage = name if i == extra_layers - 1 else f"{name}-stage{i + 1}"
        run(["buildah", "commit", "-q", "--format", "oci", "--rm", container, next_stage], env=env)
        stage = next_stage
    if extra_layers == 0:
        run(["buildah", "tag", stage, name], env=env)
    return LocalImage(name=name, diff_ids=_inspect_diff_ids(env, name), architecture=arch, payloads=payloads)


@pytest.fixture(scope="session")
def image(containers_env, e2e_root) -> LocalImage:
    """A 3-layer linux/amd64 image (busybox + two random files) in the isolated containers-storage."""
    img = build_image(containers_env, e2e_root / "build", IMAGE_NAME)
    assert len(img.diff_ids) >= 3, img
    return img


@pytest.fixture(scope="session")
def arch_images(containers_env, e2e_root) -> dict[str, LocalImage]:
    """Two small single-arch images (amd64 and arm64 in their config) for multi-arch indexes."""
    images = {}
    for arch in ("amd64", "arm64"):
        images[arch] = build_image(containers_env, e2e_root / "build", f"localhost/daohub-e2e/multi:{arch}",
                                   arch=arch, extra_layers=1, sizes=(32 * 1024,))
    return images


# --------------------------------------------------------------------------------------------
# A private dockerd
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dockerd(e2e_root):
    with running_dockerd(e2e_root / "docker") as daemon:
        yield daemon


# --------------------------------------------------------------------------------------------
# Small conveniences
# --------------------------------------------------------------------------------------------
@pytest.fixture
def workdir(e2e_root, request) -> Path:
    """A per-test scratch directory under the short e2e root."""
    path = e2e_root / "t" / request.node.name[:60].replace("/", "_").replace("[", "_").replace("]", "_")
    path.mkdir(parents=True, exist_ok=False)
    return path
