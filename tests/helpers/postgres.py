"""A throwaway PostgreSQL cluster on loopback for tests and benchmarks.

`PostgresCluster` runs initdb and pg_ctl (PostgreSQL 15's binaries in /usr/lib/postgresql/15/bin,
or $DAOHUB_PG_BIN) in a temp directory, listening on 127.0.0.1 and a unix socket there, with
trust auth and durability off (fsync=off: a crash loses the cluster, which is thrown away
anyway). `create_database()` hands out a fresh database in ~10-60 ms (a copy of a template
when one is named). initdb refuses to run as root, so as root the binaries run as the
`postgres` user and the directory is given to it.

Only the standard library is used here, so benchmarks can import it outside pytest: the few
statements the fixture needs (CREATE/DROP DATABASE) go over a minimal client of PostgreSQL's
simple query protocol instead of a driver or a `psql` process per call.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Self

from .server import free_port

PG_BIN = Path(os.environ.get("DAOHUB_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """The cluster failed to start or stop, or a statement failed (`code` is the SQLSTATE)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code or ""


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _SimpleClient:
    """Just enough of the frontend/backend protocol v3 for trust auth and simple queries."""

    def __init__(self, host: str, port: int, user: str, database: str, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                          for k, v in (("user", user), ("database", database))) + b"\0"
        body = struct.pack("!I", 196608) + params  # protocol 3.0
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        self._until_ready(startup=True)

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise PostgresError("connection closed by the server")  # no SQLSTATE: reconnectable
            data += chunk
        return bytes(data)

    def _until_ready(self, startup: bool = False) -> None:
        error = None
        while True:
            kind, length = struct.unpack("!cI", self._recv_exact(5))
            payload = self._recv_exact(length - 4)
            if kind == b"R" and struct.unpack("!I", payload[:4])[0] != 0:
                raise PostgresError("the test cluster must use trust authentication")
            if kind == b"E":
                fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
                error = PostgresError(f"{fields.get(b'C', '?')}: {fields.get(b'M', '')}", fields.get(b"C"))
                if startup or error.code.startswith("57P"):
                    raise error  # the server ends the session after these
            if kind == b"Z":
                if error is not None:
                    raise error
                return

    def execute(self, sql: str) -> None:
        body = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
        self._until_ready()

    def close(self) -> None:
        try:
            self.sock.sendall(b"X" + struct.pack("!I", 4))
        except OSError:
            pass
        self.sock.close()


class PostgresCluster:
    """One PostgreSQL server in its own directory. `.start()`, `.stop()`, `.restart()`, `.url(db)`."""

    def __init__(self, base_dir: str | os.PathLike | None = None, *, port: int | None = None,
                 max_connections: int = 300):
        # A short path under /tmp: the unix socket lives there and its path must stay under ~100 bytes.
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="dh-pg-", dir="/tmp"))
        self._own_base = base_dir is None
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.max_connections = max_connections
        self._names = itertools.count(1)
        self._admin: _SimpleClient | None = None
        self._admin_lock = threading.Lock()
        # One thread prepares the next copy of a template and drops used databases while a
        # test runs, so a test waits for neither.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pg-admin")
        self._spares: dict[str, concurrent.futures.Future] = {}
        self.running = False

    # -- processes ---------------------------------------------------------------------------------
    def _as_owner(self) -> dict:
        """Run the binaries as `postgres` when we are root (initdb and postgres refuse root)."""
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(SUPERUSER)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": os.getgrouplist(SUPERUSER, pw.pw_gid),
                "env": {**os.environ, "HOME": pw.pw_dir, "USER": SUPERUSER}}

    def _run(self, *args: str, timeout: float = 60.0) -> str:
        result = subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True,
                                timeout=timeout, cwd=self.base_dir, **self._as_owner())
        if result.returncode != 0:
            raise PostgresError(f"{Path(args[0]).name} failed ({result.returncode}):\n"
                                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n{self._log_tail()}")
        return result.stdout

    def _log_tail(self, limit: int = 3000) -> str:
        try:
            return "server log tail:\n" + self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no server log)"

    def _init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise PostgresError(f"no PostgreSQL binaries in {PG_BIN} (install Debian's postgresql)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SUPERUSER)
            os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
        self._run(PG_BIN / "initdb", "-D", self.data_dir, "-U", SUPERUSER, "-A", "trust", "--no-sync",
                  "-E", "UTF8", "--no-locale")

    def start(self) -> PostgresCluster:
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        options = (f"-k {self.base_dir} -h {self.host} -p {self.port} -c fsync=off -c full_page_writes=off "
                   f"-c synchronous_commit=off -c max_connections={self.max_connections}")
        self._run(PG_BIN / "pg_ctl", "-w", "-t", "60", "-D", self.data_dir, "-l", self.log_path, "-o", options,
                  "start")
        self.running = True
        return self

    def stop(self) -> None:
        """Stop fast (open sessions are terminated, as when a server goes down under clients)."""
        with contextlib.suppress(RuntimeError):  # RuntimeError: destroyed already
            self._worker.submit(lambda: None).result()  # the one worker thread has finished what came before
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None
        if self.running:
            self._run(PG_BIN / "pg_ctl", "-w", "-t", "60", "-D", self.data_dir, "-m", "fast", "stop")
            self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop and delete the directory (if this object made it)."""
        try:
            self.stop()
        finally:
            self._worker.shutdown(wait=True)
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- databases ---------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str) -> None:
        """Run statements in the `postgres` database over a kept connection."""
        with self._admin_lock:
            for attempt in (1, 2):
                if self._admin is None:
                    self._admin = _SimpleClient(self.host, self.port, SUPERUSER, "postgres")
                try:
                    self._admin.execute(sql)
                    return
                except (OSError, PostgresError) as exc:
                    if isinstance(exc, PostgresError) and exc.code and not exc.code.startswith("57P"):
                        raise
                    # The kept connection died (server restarted): reconnect once.
                    self._admin.close()
                    self._admin = None
                    if attempt == 2:
                        raise

    def create_database(self, template: str | None = None, name: str | None = None) -> str:
        """A new database (a copy of `template` if given); returns its URL.

        Copies of a template come from a spare made in the background after the previous call."""
        if template is None or name is not None:
            return self._create(template, name)
        spare = self._spares.pop(template, None)
        try:
            url = spare.result() if spare is not None else None
        except (OSError, PostgresError):
            url = None  # made before a restart or a failure: make one now instead
        if url is None:
            url = self._create(template)
        self._spares[template] = self._worker.submit(self._create, template)
        return url

    def _create(self, template: str | None = None, name: str | None = None) -> str:
        name = name or f"t{os.getpid()}_{next(self._names)}"
        # FILE_COPY: a plain directory copy, faster than WAL_LOG for small templates with fsync off.
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template:
            sql += f" TEMPLATE {_quote_ident(template)} STRATEGY FILE_COPY"
        self.execute(sql)
        return self.url(name)

    def drop_database(self, name: str, *, wait: bool = True) -> None:
        sql = f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)"
        if wait:
            self.execute(sql)
        else:
            self._worker.submit(self.execute, sql)

    def mark_template(self, name: str) -> None:
        """Make `name` a template (no connections to it may remain while it is copied)."""
        self.execute(f"ALTER DATABASE {_quote_ident(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")


__all__ = ["PostgresCluster", "PostgresError"]
