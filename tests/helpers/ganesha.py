"""A userspace NFSv3 server (Debian's nfs-ganesha with its VFS backend) on loopback, for tests.

`GaneshaServer` exports one temp directory over NFSv3 on 127.0.0.1. The kernel here has no
NFS client, so nothing is mounted: the `nfs` storage driver speaks the protocol itself.

Ports: ganesha must register with rpcbind to start (NFSv3 needs `rpcbind -f -w`; one that is
already running is reused, and one started here is stopped at `close()`), but it listens on
ports chosen here rather than 2049, and the URLs handed out carry them (`?nfsport=&mountport=`,
libnfs's own URL arguments), so clients never ask the portmapper. Two test sessions on one
machine therefore each get their own server, and the second one's registration does not
matter to the first.

One server per test session, with subdirectories of the one export as separate roots
(`new_root()`), so tests never wait for a restart. `restart()` stops and starts it on the same
ports and directory, for outage tests.

Only the standard library is used, so benchmarks can import it outside pytest. Readiness is
checked with a real MOUNT call (ONC RPC over TCP, a few lines of XDR below), not by reading logs.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .server import free_port

GANESHA = "ganesha.nfsd"
RPCBIND = "rpcbind"
HOST = "127.0.0.1"

_MOUNT_PROGRAM, _MOUNT_V3, _MOUNTPROC3_MNT = 100005, 3, 1
_AUTH_NULL, _AUTH_SYS = 0, 1


class GaneshaError(RuntimeError):
    """ganesha (or rpcbind) could not be started, or the export does not answer."""


@dataclass(frozen=True)
class NfsRoot:
    """A fresh directory inside the export: the URL for the nfs driver and its local path."""

    url: str
    path: Path


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-limit:].decode("utf-8", "replace")


def _port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _xdr_string(value: bytes) -> bytes:
    return struct.pack("!I", len(value)) + value + b"\0" * (-len(value) % 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return bytes(data)


def mount_status(port: int, export: str, host: str = HOST, timeout: float = 2.0) -> int:
    """Ask mountd (MOUNT v3, MNT) for `export`; returns the mountstat3 (0 = the export is served)."""
    cred = struct.pack("!I", 0) + _xdr_string(b"daohub-tests") + struct.pack("!III", 0, 0, 0)
    call = (
        struct.pack("!IIIIII", 0x0DA0_0001, 0, 2, _MOUNT_PROGRAM, _MOUNT_V3, _MOUNTPROC3_MNT)
        + struct.pack("!I", _AUTH_SYS) + _xdr_string(cred)
        + struct.pack("!II", _AUTH_NULL, 0)
        + _xdr_string(export.encode())
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!I", 0x8000_0000 | len(call)) + call)
        reply = b""
        last = False
        while not last:  # a reply may come in several record fragments
            (marker,) = struct.unpack("!I", _recv_exact(sock, 4))
            last = bool(marker & 0x8000_0000)
            reply += _recv_exact(sock, marker & 0x7FFF_FFFF)
    _xid, msg_type, reply_stat = struct.unpack("!III", reply[:12])
    if msg_type != 1 or reply_stat != 0:
        raise OSError(f"MOUNT call denied (reply_stat {reply_stat})")
    _flavor, verf_len = struct.unpack("!II", reply[12:20])
    pos = 20 + verf_len + (-verf_len % 4)
    accept_stat, status = struct.unpack("!II", reply[pos : pos + 8])
    if accept_stat != 0:
        raise OSError(f"MOUNT call not accepted (accept_stat {accept_stat})")
    return status


def _config(export_dir: Path, export_id: int, nfs_port: int, mount_port: int) -> str:
    # NLM, RQUOTA and UDP are off: nothing here uses them, and each would need more ports.
    # Graceless: no NFSv4 grace period after a (re)start. Kerberos off: no keytab here.
    return f"""\
NFS_CORE_PARAM {{
    Protocols = 3;
    Bind_addr = {HOST};
    NFS_Port = {nfs_port};
    MNT_Port = {mount_port};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    Graceless = true;
}}
NFS_KRB5 {{
    Active_krb5 = false;
}}
EXPORT {{
    Export_Id = {export_id};
    Path = {export_dir};
    Pseudo = {export_dir};
    Protocols = 3;
    Transports = TCP;
    Access_Type = NONE;
    Squash = no_root_squash;
    SecType = sys;
    CLIENT {{
        Clients = {HOST};
        Access_Type = RW;
    }}
    FSAL {{
        Name = VFS;
    }}
}}
"""


class GaneshaServer:
    """nfs-ganesha serving `<base_dir>/export` over NFSv3 on loopback. Needs root."""

    def __init__(self, base_dir: str | os.PathLike | None = None, *, startup_timeout: float = 30.0):
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="daohub-ganesha-")).resolve()
        self.export_dir = self.base_dir / "export"
        self.config_path = self.base_dir / "ganesha.conf"
        self.log_path = self.base_dir / "ganesha.log"
        self.pid_path = self.base_dir / "ganesha.pid"
        self.startup_timeout = startup_timeout
        self.nfs_port = free_port()
        self.mount_port = free_port()
        while self.mount_port == self.nfs_port:
            self.mount_port = free_port()
        # Unique among this machine's test servers, though each server has only this export.
        self.export_id = 1000 + os.getpid() % 60000
        self.proc: subprocess.Popen | None = None
        self._rpcbind: subprocess.Popen | None = None
        self._roots = itertools.count(1)
        self.start_seconds: list[float] = []  # wall time of each start, until the export answered

    # -- addresses ----------------------------------------------------------------------------
    def url(self, subdir: str = "") -> str:
        path = f"{self.export_dir}/{subdir}" if subdir else str(self.export_dir)
        return f"nfs://{HOST}{path}?nfsport={self.nfs_port}&mountport={self.mount_port}"

    def new_root(self, label: str = "root") -> NfsRoot:
        """A new empty directory in the export, as an nfs:// URL plus its local path."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60].strip(".") or "root"
        name = f"{next(self._roots):04d}-{safe}"
        path = self.export_dir / name
        path.mkdir()
        return NfsRoot(self.url(name), path)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------------
    def _ensure_rpcbind(self) -> None:
        if _port_open(111):
            return
        if shutil.which(RPCBIND) is None:
            raise GaneshaError("rpcbind is not installed (Debian package rpcbind)")
        # -w: warm start, keeps registrations of programs that are already running.
        self._rpcbind = subprocess.Popen([RPCBIND, "-f", "-w"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 10
        while not _port_open(111):
            if self._rpcbind.poll() is not None or time.monotonic() > deadline:
                raise GaneshaError(f"rpcbind did not start (exit code {self._rpcbind.poll()})")
            time.sleep(0.02)

    def start(self) -> Self:
        if self.running:
            raise GaneshaError(f"ganesha already running (pid {self.proc.pid})")
        if os.geteuid() != 0:
            raise GaneshaError("nfs-ganesha must run as root (it binds ports and opens files by handle)")
        if shutil.which(GANESHA) is None:
            raise GaneshaError("ganesha.nfsd is not installed (Debian packages nfs-ganesha, nfs-ganesha-vfs)")
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_config(self.export_dir, self.export_id, self.nfs_port, self.mount_port))
        began = time.monotonic()
        self._ensure_rpcbind()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [GANESHA, "-F", "-f", str(self.config_path), "-L", str(self.log_path), "-p", str(self.pid_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop(timeout=5)
            raise
        self.start_seconds.append(time.monotonic() - began)
        return self

    def _wait_ready(self, began: float) -> None:
        last = "no answer yet"
        while True:
            if self.proc.poll() is not None:
                raise GaneshaError(f"ganesha exited with code {self.proc.returncode} before serving; "
                                   f"log {self.log_path}:\n{_tail(self.log_path)}")
            try:
                status = mount_status(self.mount_port, str(self.export_dir))
                if status == 0:
                    return
                last = f"mountstat3 {status}"
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() - began > self.startup_timeout:
                raise GaneshaError(f"ganesha export not mountable after {self.startup_timeout:.0f}s ({last}); "
                                   f"log {self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(0.02)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after `timeout` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> Self:
        """Stop and start again on the same ports and export (clients see an outage)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop ganesha, the rpcbind started here (if any), and remove the temp directory."""
        try:
            self.stop()
        finally:
            if self._rpcbind is not None:
                if self._rpcbind.poll() is None:
                    self._rpcbind.terminate()
                    try:
                        self._rpcbind.wait(10)
                    except subprocess.TimeoutExpired:
                        self._rpcbind.kill()
                        self._rpcbind.wait()
                self._rpcbind = None
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_text(self) -> str:
        return _tail(self.log_path, limit=1 << 20)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<GaneshaServer {self.url()} pid={pid}>"
