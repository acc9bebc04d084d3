"""Run a long-lived daemon (dockerd, containerd) for a test session and always stop it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def daemon_process(name: str, argv: list[str], log_path: Path, ready: Callable[[], bool], *,
                   env: dict | None = None, timeout: float = 60) -> Iterator[subprocess.Popen]:
    """Start `argv` (output to `log_path`), poll `ready()` until it is true, yield the process;
    on exit SIGTERM it, then SIGKILL after 30 s. A daemon that exits or is not ready in time
    raises with the tail of its log."""
    log = open(log_path, "ab")  # noqa: SIM115 (closed in the finally below)
    # Own session: a Ctrl-C in the test runner's terminal does not reach the daemon.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-6000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within {timeout:.0f}s:\n{log_path.read_text()[-6000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
