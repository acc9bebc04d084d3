"""The storage driver conformance harness.

Every driver runs the same suite. A new backend joins by adding one entry to DRIVERS:
a function from pytest's tmp_path to the options for `storage_backends.create(name, ...)`.
It may call `pytest.skip(...)` when the backend is not reachable (say, no S3 endpoint
in the environment). When the options carry a local `root` (filesystem, NFS), teardown
also checks that nothing at all is left on disk beneath it: no files, no directories,
no temp files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import storage_backends
from tests.helpers.fixtures_nfs import nfs_driver_options
from tests.helpers.fixtures_s3 import moto_s3, moto_s3_auth, s3_options, stop_moto_servers  # noqa: F401

DRIVERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "memory": lambda tmp_path: {},
    "filesystem": lambda tmp_path: {"root": str(tmp_path / "store")},
    # moto's S3 server, a fresh bucket per test; oss = virtual-hosted names, prefix, internal endpoint
    "s3": lambda tmp_path: s3_options("s3"),
    "oss": lambda tmp_path: s3_options("oss"),
    # nfs-ganesha (one per session) serving a fresh export subdirectory, checked on disk via `root`
    "nfs": nfs_driver_options,
}


def leftovers_on_disk(root: str | os.PathLike) -> list[str]:
    """Every file and directory below `root` (root itself excluded), as relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


@pytest.fixture(params=list(DRIVERS))
async def driver(request, tmp_path):
    """A fresh driver, created by name through the registry (so wrapped by CheckedDriver).

    Each test must delete what it created: after the test the store must be empty.
    """
    options = dict(DRIVERS[request.param](tmp_path))
    # The nfs options carry the export's local path as `root`, for the on-disk check: no nfs setting
    # (the driver refuses unknown settings).
    disk_root = options.pop("root") if request.param == "nfs" else options.get("root")
    store = storage_backends.create(request.param, **options)
    try:
        yield store
        left = [info.path async for info in store.walk("")]
        assert left == [], f"{request.param}: test left objects behind: {left}"
        assert await store.list("") == [], f"{request.param}: test left entries at the root"
        if disk_root is not None:
            on_disk = leftovers_on_disk(disk_root)
            assert on_disk == [], f"{request.param}: test left files or directories on disk: {on_disk}"
    finally:
        await store.aclose()


@pytest.fixture
async def filesystem(tmp_path):
    """The filesystem driver and its root, for on-disk checks; teardown requires an empty root."""
    root = tmp_path / "store"
    store = storage_backends.create("filesystem", root=str(root))
    try:
        yield store, root
        on_disk = leftovers_on_disk(root)
        assert on_disk == [], f"test left files or directories on disk: {on_disk}"
    finally:
        await store.aclose()
