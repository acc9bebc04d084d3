"""A private containerd: its own root, state, socket and config; no CRI plugin.

`running_containerd(base)` starts Debian's `containerd` under `base` (short: the socket path
must stay under ~100 bytes), waits until `ctr version` answers, yields a `Containerd` that
runs `ctr` against it in a namespace of its own, and stops it (SIGTERM, then SIGKILL) and
removes `base` on exit. Images are unpacked with the `native` snapshotter, which needs no
overlay or other kernel support.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.util import need_tool, run
from tests.helpers.daemon import daemon_process

NAMESPACE = "daohub-test"
SNAPSHOTTER = "native"


@dataclass
class Containerd:
    sock: Path
    ctr_bin: str
    log_path: Path

    def ctr(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.ctr_bin, "--address", str(self.sock), "--namespace", NAMESPACE, *args],
                   timeout=timeout, check=check)


def dump_config(config_toml: str, workdir: Path) -> str:
    """`containerd config dump` of `config_toml`: the configuration containerd makes of that file
    merged with its defaults (a misspelt key is dropped, so its value is then missing)."""
    path = workdir / "dump-config.toml"
    path.write_text(config_toml)
    return run([need_tool("containerd"), "--config", str(path), "config", "dump"]).stdout


@contextlib.contextmanager
def running_containerd(base: Path) -> Iterator[Containerd]:
    containerd_bin = need_tool("containerd")
    ctr_bin = need_tool("ctr")
    base.mkdir(parents=True)
    sock = base / "c.sock"
    assert len(str(sock)) < 100, f"unix socket path too long: {sock}"
    config = base / "config.toml"
    # The machine's /etc/containerd/config.toml is never read; nothing lands in /opt/containerd.
    config.write_text(
        "version = 2\n"
        f'root = "{base / "root"}"\n'
        f'state = "{base / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{sock}"\n'
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f'  path = "{base / "opt"}"\n'
    )
    log_path = base / "containerd.log"
    daemon = Containerd(sock=sock, ctr_bin=ctr_bin, log_path=log_path)
    try:
        with daemon_process("containerd", [containerd_bin, "--config", str(config)], log_path, ready=lambda: (
                sock.exists() and daemon.ctr("version", timeout=20, check=False).returncode == 0)):
            yield daemon
    finally:
        # Snapshots of the native snapshotter are plain directories; nothing stays mounted.
        shutil.rmtree(base, ignore_errors=True)
