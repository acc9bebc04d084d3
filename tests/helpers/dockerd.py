"""A private dockerd: its own socket, data root, daemon.json and client config, nothing of the machine's.

`running_dockerd(base, config)` starts `dockerd --storage-driver=vfs --iptables=false
--bridge=none` under `base` (keep it short: the unix socket path must stay under ~100 bytes)
with `config` as its daemon.json, waits until it answers, yields a `DockerDaemon` that runs the
docker CLI against it, and stops it (SIGTERM, then SIGKILL) and removes `base` on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.util import need_tool, run
from tests.helpers.daemon import daemon_process


@dataclass
class DockerDaemon:
    sock: Path
    docker: str
    env: dict
    log_path: Path

    def __call__(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.docker, "-H", f"unix://{self.sock}", *args], env=self.env, timeout=timeout, check=check)

    @property
    def config_path(self) -> Path:
        """The daemon.json this dockerd reads (at start, and again on `reload()`)."""
        return self.sock.parent / "daemon.json"

    def reload(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        """SIGHUP: dockerd reads daemon.json again (registry-mirrors, insecure-registries and a few
        more reload live); waits until `ready()` says the new settings are in force."""
        os.kill(int((self.sock.parent / "dockerd.pid").read_text().strip()), signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not apply {self.config_path} within {timeout:.0f}s:\n"
                                     f"{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)


def docker_cli() -> str:
    # Prefer the CLI packaged with the daemon (docker.io); another docker on PATH may be far newer.
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    return need_tool("docker")


@contextlib.contextmanager
def running_dockerd(base: Path, config: dict | None = None) -> Iterator[DockerDaemon]:
    dockerd_bin = need_tool("dockerd")
    docker = docker_cli()
    base.mkdir(parents=True)
    sock = base / "docker.sock"
    assert len(str(sock)) < 100, f"unix socket path too long: {sock}"
    # Always a file of our own: the machine's /etc/docker/daemon.json is never read.
    (base / "daemon.json").write_text(json.dumps(config or {}, indent=2) + "\n")
    (base / "config").mkdir()
    env = dict(os.environ)
    env["DOCKER_CONFIG"] = str(base / "config")     # no credentials or settings from ~/.docker
    env.pop("DOCKER_HOST", None)
    log_path = base / "dockerd.log"
    argv = [dockerd_bin, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--config-file", str(base / "daemon.json"),
            "--host", f"unix://{sock}", "--data-root", str(base / "root"), "--exec-root", str(base / "exec"),
            "--pidfile", str(base / "dockerd.pid")]
    daemon = DockerDaemon(sock=sock, docker=docker, env=env, log_path=log_path)
    try:
        with daemon_process("dockerd", argv, log_path, env=env, ready=lambda: sock.exists() and daemon(
                "version", timeout=20, check=False).returncode == 0):
            yield daemon
    finally:
        # A vfs data root holds plain directories only; nothing stays mounted once dockerd exits.
        shutil.rmtree(base, ignore_errors=True)
