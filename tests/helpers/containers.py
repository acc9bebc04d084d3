"""An environment for podman, buildah and skopeo that ignores the machine's storage and config."""

from __future__ import annotations

import os
from pathlib import Path


def isolated_containers_env(base: Path, registries_conf: str) -> dict[str, str]:
    """vfs storage under `base` (no overlay or fuse needed), `registries_conf` as registries.conf,
    a containers.conf without systemd or journald, and an empty auth file.

    podman refuses a runroot path longer than 50 characters: keep `base` short."""
    (base / "root").mkdir(parents=True)
    (base / "run").mkdir()
    (base / "tmp").mkdir()
    storage_conf = base / "storage.conf"
    storage_conf.write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f'graphroot = "{base / "root"}"\n'
        f'runroot = "{base / "run"}"\n'
    )
    (base / "registries.conf").write_text(registries_conf)
    containers_conf = base / "containers.conf"
    containers_conf.write_text(
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "none"\n'
        f'tmp_dir = "{base / "tmp"}"\n'
    )
    auth = base / "auth.json"
    auth.write_text('{"auths": {}}\n')
    env = dict(os.environ)
    env.update({
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
        "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
        "CONTAINERS_CONF": str(containers_conf),
        "REGISTRY_AUTH_FILE": str(auth),
        "STORAGE_DRIVER": "vfs",
        "BUILDAH_ISOLATION": "chroot",
        "TMPDIR": str(base / "tmp"),
        "XDG_RUNTIME_DIR": str(base / "run"),
    })
    return env
