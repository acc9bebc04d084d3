"""Run a real registry process on loopback for end-to-end tests, crash tests and benchmarks.

`DaoHubProcess` runs `python -m hub serve` on a free port with its own data directory;
`DistributionProcess` runs CNCF distribution (Debian's `docker-registry`) the same way, for
side-by-side runs. Both expose `.url`, `.host`, `.start()`, `.stop()` (SIGTERM, then wait),
`.kill()` (SIGKILL), `.restart()` and work as context managers. The process's stdout and
stderr go to a log file under the data directory, and a failed start raises `ServerStartError`
with the tail of that log.

Only the standard library is used here, so benchmarks can import it outside pytest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerStartError(RuntimeError):
    """The server process exited or did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


class _ServerProcess:
    """Common life cycle: spawn, wait for a health URL, SIGTERM/SIGKILL, restart on the same port."""

    health_path = "/"
    name = "server"

    def __init__(self, data_dir: str | os.PathLike, *, port: int | None = None, host: str = "127.0.0.1",
                 env: Mapping[str, str] | None = None, startup_timeout: float = 30.0,
                 log_name: str | None = None, tls: TlsFiles | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.tls = tls
        if tls is not None:
            self.scheme = "https"
        self.bind_host = host
        self.port = port or free_port(host)
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.log_path = self.data_dir / (log_name or f"{self.name}.log")
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """`HOST:PORT`, as used in image references (`127.0.0.1:PORT/team/app:1`)."""
        return f"{self.bind_host}:{self.port}"

    scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """What the health check (and a test's client) trusts when the server speaks HTTPS."""
        return self.tls.client_context() if self.tls is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- to be provided by subclasses --------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    def prepare(self) -> None:
        """Called before each spawn (write config files and the like)."""

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> _ServerProcess:
        if self.running:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._log_file = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 (lives as long as the process)
        self._log_file.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name} on {self.host}\n".encode())
        self.proc = subprocess.Popen(
            self.command(), cwd=str(REPO_ROOT), env=self.environment(), stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the test runner's terminal does not reach the server,
            # so tests decide how it stops.
            start_new_session=True,
        )
        try:
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise ServerStartError(f"{self.name} exited with code {code} before becoming healthy; "
                                       f"log {self.log_path}:\n{_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2,
                                            context=self.ssl_context()) as response:
                    if response.status == 200:
                        return
                    last_error = f"status {response.status}"
            except urllib.error.HTTPError as exc:
                last_error = f"status {exc.code}"
            except OSError as exc:
                last_error = repr(exc)
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.name} not healthy at {self.url}{self.health_path} after "
                                       f"{timeout:.0f}s ({last_error}); log {self.log_path}:\n"
                                       f"{_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it has not exited after `timeout` seconds. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._finish()

    def restart(self, *, kill: bool = False) -> _ServerProcess:
        """Stop (or kill) and start again on the same port and data directory."""
        self.kill() if kill else self.stop()
        return self.start()

    def _finish(self) -> int | None:
        code = self.proc.returncode if self.proc else None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_text(self) -> str:
        return _tail(self.log_path, limit=1 << 20)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid} data={self.data_dir}>"


@dataclass
class TlsFiles:
    """PEM files for a server that speaks HTTPS: its pair, the CA clients trust, and, for mutual
    TLS, the client CA it requires and a client pair the health check presents."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    client_ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert:
            context.load_cert_chain(*map(str, self.client_cert))
        return context


class DaoHubProcess(_ServerProcess):
    """`python -m hub serve --addr 127.0.0.1:PORT --data-dir DIR [--config FILE] [extra args]`.

    With `tls=TlsFiles(...)` it serves HTTPS (server.tls from DAOHUB_SERVER_TLS_* variables),
    `.url` is https and the health check trusts `tls.ca_file`.

    DAOHUB_* variables of the calling environment are dropped (an unknown one is a startup
    error, and tests should not depend on the caller's setup); pass `env=` to set some, or
    `inherit_daohub_env=True` to keep them (for running a suite against PostgreSQL, say).

    With `netns=NAME` it serves inside that network namespace (`ip netns exec NAME python -m hub
    serve ...`, see tests/helpers/netns.py), on `host`, an address there; `cli()` stays here.
    """

    health_path = "/healthz"
    name = "daohub"

    def __init__(self, data_dir: str | os.PathLike, *, port: int | None = None, host: str = "127.0.0.1",
                 config: str | os.PathLike | None = None, extra_args: Iterable[str] = (),
                 env: Mapping[str, str] | None = None, inherit_daohub_env: bool = False,
                 python: str = sys.executable, startup_timeout: float = 30.0, log_name: str = "daohub.log",
                 tls: TlsFiles | None = None, netns: str | None = None):
        if netns is not None and port is None:
            port = free_port()  # nothing listens in a namespace of the test's own: any port is free there
        super().__init__(data_dir, port=port, host=host, env=env, startup_timeout=startup_timeout,
                         log_name=log_name, tls=tls)
        self.netns = netns
        self.config = str(config) if config else None
        self.extra_args = list(extra_args)
        self.inherit_daohub_env = inherit_daohub_env
        self.python = python

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "hub", "serve", "--addr", self.host, "--data-dir", str(self.data_dir)]
        if self.config:
            cmd += ["--config", self.config]
        # `ip netns exec` execs the command: SIGTERM and SIGKILL still reach the server itself.
        prefix = [shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.netns] if self.netns else []
        return prefix + cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if self.inherit_daohub_env or not k.startswith("DAOHUB_")}
        # `python -m hub` must find this checkout even when it is not pip-installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        # Auth is on by default; tests of the registry core run an open one unless they ask.
        if not self.inherit_daohub_env:
            env["DAOHUB_AUTH_ENABLED"] = "false"
        # A first start would publish the seed apps; tests that want them ask (env=).
        env.setdefault("DAOHUB_APPSTORE_SEED_ON_FIRST_START", "false")
        if self.tls is not None:
            env["DAOHUB_SERVER_TLS_CERT_FILE"] = str(self.tls.cert_file)
            env["DAOHUB_SERVER_TLS_KEY_FILE"] = str(self.tls.key_file)
            if self.tls.client_ca_file:
                env["DAOHUB_SERVER_TLS_CLIENT_CA_FILE"] = str(self.tls.client_ca_file)
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """`python -m hub ARGS --data-dir DIR` in this server's environment; its stdout (raises on
        an error)."""
        result = subprocess.run([self.python, "-m", "hub", *args, "--data-dir", str(self.data_dir)],
                                cwd=REPO_ROOT, env=self.environment(), input=stdin, capture_output=True,
                                text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"daohub {' '.join(args)} exited with {result.returncode}:\n"
                               f"{result.stderr[-3000:]}")
        return result.stdout

    def blob_files(self) -> list[Path]:
        """Every committed blob file under the data directory (`.../blobs/<alg>/<2 hex>/<hex>`)."""
        return blob_files(self.data_dir)


def blob_files(root: str | os.PathLike) -> list[Path]:
    """Files laid out as `blobs/<alg>/<2 hex>/<hex>` anywhere under `root`."""
    found = []
    for blobs in Path(root).rglob("blobs"):
        if not blobs.is_dir():
            continue
        for alg_dir in blobs.iterdir():
            if not alg_dir.is_dir() or alg_dir.name not in ("sha256", "sha512"):
                continue
            for prefix_dir in alg_dir.iterdir():
                if prefix_dir.is_dir() and len(prefix_dir.name) == 2:
                    found.extend(p for p in prefix_dir.iterdir() if p.is_file())
    return sorted(found)


class DistributionProcess(_ServerProcess):
    """CNCF distribution (`docker-registry serve config.yml`), filesystem storage, deletes enabled;
    with `tls=TlsFiles(...)` it serves HTTPS (`http.tls`) with that pair."""

    health_path = "/v2/"
    name = "distribution"

    def __init__(self, data_dir: str | os.PathLike, *, port: int | None = None, host: str = "127.0.0.1",
                 binary: str = "docker-registry", extra_config: str = "", env: Mapping[str, str] | None = None,
                 startup_timeout: float = 30.0, log_name: str = "distribution.log",
                 tls: TlsFiles | None = None):
        super().__init__(data_dir, port=port, host=host, env=env, startup_timeout=startup_timeout,
                         log_name=log_name, tls=tls)
        self.binary = binary
        self.extra_config = extra_config
        self.config_path = self.data_dir / "config.yml"

    def prepare(self) -> None:
        self.config_path.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.data_dir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            "http:\n"
            f"  addr: {self.host}\n"
            + (f"  tls:\n    certificate: {self.tls.cert_file}\n    key: {self.tls.key_file}\n"
               if self.tls else "")
            + self.extra_config
        )

    def command(self) -> list[str]:
        return [self.binary, "serve", str(self.config_path)]
