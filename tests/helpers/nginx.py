"""Run deploy/nginx/daohub.conf, the production load-balancer config, in front of test servers.

    with NginxProcess(["127.0.0.1:5001", "127.0.0.1:5002"]) as lb:
        urllib.request.urlopen(lb.url + "/v2/")

`render()` fills the config's two placeholders: `${DAOHUB_LB_LISTEN}` with the listen address,
and the line holding `${DAOHUB_LB_BACKEND}` once per backend address (its passive-health
parameters come along). `NginxProcess` renders into a fresh prefix directory, runs
`nginx -p PREFIX -c PREFIX/daohub.conf -g 'daemon off;'` in the foreground (the life cycle of
tests/helpers/server.py: `start`, `stop`, `kill`, context manager), waits until the port
accepts connections, and on `stop()` ends nginx (SIGQUIT, graceful; SIGKILL to its process
group if that hangs) and removes the prefix.

Only the standard library is used here, so benchmarks can import it outside pytest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.helpers.server import REPO_ROOT, ServerStartError, _ServerProcess, _tail

CONF_TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "daohub.conf"
LISTEN_PLACEHOLDER = "${DAOHUB_LB_LISTEN}"
BACKEND_PLACEHOLDER = "${DAOHUB_LB_BACKEND}"


def render(backends: Sequence[str], listen: str, template: str | None = None) -> str:
    """The config with `listen` filled in and the backend line repeated for every address."""
    if not backends:
        raise ValueError("at least one backend address is needed")
    text = CONF_TEMPLATE.read_text() if template is None else template
    lines = []
    for line in text.splitlines(keepends=True):
        # The header comment names the placeholders too; only directives are filled in.
        if line.lstrip().startswith("#"):
            lines.append(line)
        elif BACKEND_PLACEHOLDER in line:
            lines.extend(line.replace(BACKEND_PLACEHOLDER, address) for address in backends)
        else:
            lines.append(line.replace(LISTEN_PLACEHOLDER, listen))
    rendered = "".join(lines)
    leftover = [line for line in rendered.splitlines() if "${" in line and not line.lstrip().startswith("#")]
    if leftover:
        raise ValueError(f"unfilled placeholders in the nginx config: {leftover}")
    return rendered


class NginxProcess(_ServerProcess):
    """Debian's nginx with the rendered DaoHub config, on loopback, as an unprivileged-path process.

    Its data directory is the nginx prefix: a fresh directory under the system temp dir (nginx's
    workers, `nobody` when started as root, must reach it), removed on `stop()` unless `keep`.
    """

    name = "nginx"

    def __init__(self, backends: Sequence[str], *, port: int | None = None, host: str = "127.0.0.1",
                 binary: str = "nginx", startup_timeout: float = 30.0, keep: bool = False,
                 template: str | None = None):
        prefix = Path(tempfile.mkdtemp(prefix="daohub-nginx-"))
        prefix.chmod(0o755)
        super().__init__(prefix, port=port, host=host, startup_timeout=startup_timeout, log_name="nginx.log")
        self.backends = list(backends)
        self.binary = binary
        self.keep = keep
        # Another config text in place of deploy/nginx/daohub.conf (to check that a test can fail).
        self.template = template

    @property
    def prefix(self) -> Path:
        return self.data_dir

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "daohub.conf"

    def prepare(self) -> None:
        self.conf_path.write_text(render(self.backends, self.host, self.template))

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.data_dir}/", "-c", str(self.conf_path), *(extra or ("-g", "daemon off;"))]

    def check_config(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the rendered config; returns the finished process (output in .stderr)."""
        self.prepare()
        return subprocess.run(self.command("-t"), check=False, capture_output=True, text=True, timeout=60)

    def wait_healthy(self, timeout: float) -> None:
        # Listening is enough: what answers behind nginx is the backends' business.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerStartError(f"nginx exited with code {self.proc.returncode if self.proc else None} "
                                       f"before listening on {self.host}:\n{self.log_text()}")
            try:
                socket.create_connection((self.bind_host, self.port), timeout=1).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"nginx not listening on {self.host} after {timeout:.0f}s "
                                           f"({exc!r}):\n{self.log_text()}") from None
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful stop (SIGQUIT lets running requests finish), else SIGKILL to the process group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        code = self._finish()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def kill(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            # The master is not reaped yet, so its process group id is still ours; its workers
            # would otherwise keep the port.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self._finish()

    def log_text(self) -> str:
        """nginx's error log and access log (one JSON line per request) so far."""
        return _tail(self.log_path, limit=1 << 20)
