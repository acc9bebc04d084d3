"""pytest plugin: one nfs-ganesha server per test session, and a fresh export directory per test.

Loaded for the whole suite through `pytest_plugins` in tests/conftest.py, so any test directory
can use the fixtures:

- `ganesha` (session): the running `GaneshaServer` (started on first use, stopped at session end).
- `nfs_root` (function): an `NfsRoot` with `.url` (nfs://127.0.0.1/<export>/<dir>?...) and `.path`,
  the same directory on the local disk, for checking what the driver left there.

`nfs_driver_options(tmp_path)` gives the options for `storage_backends.create("nfs", ...)` to
plain functions that get no fixtures (the storage conformance suite's DRIVERS table).

Where ganesha cannot run (not root, packages missing) the tests skip, except under CI=true,
where that is a failure: CI must prove the NFS driver works.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import pytest

from .ganesha import GaneshaError, GaneshaServer, NfsRoot

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")
DRIVER_THREADS = 2  # this machine has 2 cores; more threads only add connections per test

_server: GaneshaServer | None = None
_start_error: str | None = None


def _unavailable(reason: str):
    message = f"nfs-ganesha unavailable: {reason}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def ganesha_server() -> GaneshaServer:
    """The session's server, started on first use. A failed start is not retried."""
    global _server, _start_error
    if _start_error is not None:
        _unavailable(_start_error)
    if _server is None:
        for attempt in (1, 2):  # the second time on other ports, in case one was taken meanwhile
            server = GaneshaServer()
            try:
                server.start()
                break
            except GaneshaError as exc:
                server.close()
                if attempt == 2:
                    _start_error = str(exc)
                    _unavailable(_start_error)
        atexit.register(stop_ganesha)  # also covers runs that bypass the session hook
        _server = server
        print(f"\nnfs-ganesha started in {server.start_seconds[0] * 1000:.0f} ms: {server.url()}", file=sys.stderr)
    return _server


def stop_ganesha() -> None:
    global _server
    if _server is not None:
        server, _server = _server, None
        server.close()


def new_nfs_root(label: str) -> NfsRoot:
    return ganesha_server().new_root(label)


def nfs_driver_options(tmp_path: Path) -> dict:
    """Options for the nfs driver on a fresh directory; `root` (the local path) is for leftover checks."""
    root = new_nfs_root(tmp_path.name)
    return {"url": root.url, "threads": DRIVER_THREADS, "root": str(root.path)}


@pytest.fixture(scope="session")
def ganesha() -> GaneshaServer:
    return ganesha_server()


@pytest.fixture
def nfs_root(ganesha, request) -> NfsRoot:
    return ganesha.new_root(request.node.name)


def pytest_sessionfinish(session, exitstatus) -> None:
    stop_ganesha()
