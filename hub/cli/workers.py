"""`server.workers: N`: a supervising parent and N serving processes on one port.

The parent reserves the port (a socket bound with SO_REUSEPORT that never listens: it resolves
port 0 and keeps the port ours while a worker restarts), then forks the workers. Each worker
runs the whole app with a listener of its own on that port (SO_REUSEPORT: the kernel spreads
new connections across the listeners) and reports on a pipe once it listens. Worker 0 starts
alone and the rest after it is up, so the first start's one-time work (migrations, the first
signing key and admin, the seed catalog) is done once; worker 0 alone runs the periodic
background jobs (hub/app.py runs_jobs). docs/design/workers.md says why.

The parent forwards SIGTERM/SIGINT (graceful drain) and SIGHUP (TLS reload) to every worker,
restarts a worker that dies, and gives up with exit code 1 when a worker dies before it is up
START_FAILURES times in a row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("daohub.workers")

START_FAILURES = 3  # consecutive deaths before readiness that make the parent give up
RESTART_DELAY_MAX = 5.0  # seconds between restarts of a worker that keeps dying
EARLY_DEATH_SECONDS = 10.0  # a worker dying this soon after it was up is restarted after a backoff


@dataclass
class WorkerSlot:
    """What a worker process knows of itself: its index, the port, and the pipe it reports on."""

    index: int
    count: int
    port: int
    ready_fd: int
    parent: int = 0  # the supervisor's pid

    def metrics_socket(self, index: int) -> str:
        """Worker `index`'s private metrics listener: an abstract Unix socket (no file to leave
        behind; it shows only what /metrics on the port shows anyway)."""
        return f"\0daohub-{self.parent}-worker-{index}-metrics"

    def ready(self) -> None:
        """Tell the parent this worker listens (once)."""
        if self.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, b"R")
                os.close(self.ready_fd)
            self.ready_fd = -1


@dataclass
class _Worker:
    index: int
    pid: int = 0
    pipe: int = -1  # the parent's end of the readiness pipe; -1 once read to the end
    ready: bool = False
    failures: int = 0  # deaths before readiness, in a row
    early_deaths: int = 0  # deaths within EARLY_DEATH_SECONDS of being up, in a row
    up_at: float = 0.0
    restart_at: float | None = None  # when a dead worker is due to start again
    exited: list[int] = field(default_factory=list)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT that never listens: the workers bind
    their listeners beside it. Port 0 picks a free port once, for all of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.set_inheritable(False)
    sock.bind((host, port))
    return sock


class Supervisor:
    """The parent of `count` workers; `serve(slot)` is the worker's body (returns its exit code)."""

    def __init__(self, count: int, host: str, port: int, serve: Callable[[WorkerSlot], int]) -> None:
        self.count = count
        self.host = host
        self.requested_port = port
        self.serve = serve
        self.workers = [_Worker(i) for i in range(count)]
        self.stopping = False
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self.port = port

    # -- the parent's loop ---------------------------------------------------------------------
    def run(self) -> int:
        try:
            reserved = reserve_port(self.host, self.requested_port)
        except OSError as exc:
            log.error("cannot bind %s:%d: %s", self.host, self.requested_port, exc)
            return 1
        self.port = reserved.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._note_signal) for sig in handled}
        try:
            return self._loop()
        finally:
            self._stop_all(signal.SIGKILL, wait=False)  # only a worker still running after the loop
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            reserved.close()

    def _note_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def _loop(self) -> int:
        log.info("starting %d workers on port %d", self.count, self.port)
        self._start(self.workers[0])
        announced = False
        while True:
            self._handle_signals()
            code = self._reap()
            if code is not None:
                return code
            if self.stopping:
                if not any(w.pid for w in self.workers):
                    log.info("all workers stopped")
                    return 0
            else:
                now = time.monotonic()
                first_up = self.workers[0].ready
                for worker in self.workers:
                    # The others start once worker 0 (the first start's one-time work) is up.
                    due = worker.restart_at is not None and worker.restart_at <= now
                    if not worker.pid and (due or (first_up and worker.restart_at is None and not worker.exited)):
                        self._start(worker)
                if not announced and all(w.ready for w in self.workers):
                    announced = True
                    log.info("%d workers serving on port %d (pids %s)", self.count, self.port,
                             " ".join(str(w.pid) for w in self.workers))
            self._wait()

    def _wait(self) -> None:
        pipes = [w.pipe for w in self.workers if w.pipe >= 0]
        timeout = 1.0
        pending = [w.restart_at for w in self.workers if w.restart_at is not None and not w.pid]
        if pending:
            timeout = max(0.0, min(pending) - time.monotonic())
        try:
            readable, _, _ = select.select([self._wake_r, *pipes], [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
                continue
            worker = next(w for w in self.workers if w.pipe == fd)
            data = b""
            with contextlib.suppress(OSError):
                data = os.read(fd, 16)
            if data.startswith(b"R"):
                worker.ready, worker.failures, worker.up_at = True, 0, time.monotonic()
                log.info("worker %d (pid %d) is up", worker.index, worker.pid)
            if not data or data.startswith(b"R"):
                os.close(fd)
                worker.pipe = -1

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    log.info("%s: stopping %d workers gracefully", signal.Signals(signum).name, self.count)
                self.stopping = True
                self._stop_all(signum)
            elif signum == signal.SIGHUP:
                self._stop_all(signal.SIGHUP)  # each worker reloads its TLS certificate

    def _reap(self) -> int | None:
        """Collect dead workers; schedule restarts; the parent's exit code when it must give up."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            was_ready = worker.ready
            worker.pid, worker.ready = 0, False
            worker.exited.append(code)
            if worker.pipe >= 0:
                os.close(worker.pipe)
                worker.pipe = -1
            if self.stopping:
                log.info("worker %d exited (%s)", worker.index, _describe(code))
                continue
            if not was_ready:
                worker.failures += 1
            log.error("worker %d (pid %d) died (%s)%s", worker.index, pid, _describe(code),
                      "" if was_ready else f" before it was up ({worker.failures} in a row)")
            if worker.failures >= START_FAILURES:
                log.error("worker %d keeps dying at start: giving up", worker.index)
                self.stopping = True
                self._stop_all(signal.SIGTERM)
                self._wait_all()
                return 1
            now = time.monotonic()
            if was_ready and now - worker.up_at < EARLY_DEATH_SECONDS:
                worker.early_deaths += 1  # up, then dead again at once: a crash loop, slowed down
            elif was_ready:
                worker.early_deaths = 0
            delay = 0.1 * (2 ** worker.failures) - 0.1 + (0.5 * 2 ** (worker.early_deaths - 1) if worker.early_deaths
                                                          else 0.0)
            worker.restart_at = now + min(RESTART_DELAY_MAX, delay)

    def _start(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        slot = WorkerSlot(worker.index, self.count, self.port, write_fd, parent=os.getpid())
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                if not _follow_parent(slot.parent):
                    os._exit(1)  # the parent died in the moment since fork
                for fd in [self._wake_r, self._wake_w, *(w.pipe for w in self.workers if w.pipe >= 0)]:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                code = self.serve(slot)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", worker.index)
            finally:
                with contextlib.suppress(Exception):
                    logging.shutdown()
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        worker.pid, worker.pipe, worker.ready, worker.restart_at = pid, read_fd, False, None
        log.info("worker %d started (pid %d)", worker.index, pid)

    def _stop_all(self, signum: int, *, wait: bool = False) -> None:
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)
        if wait:
            self._wait_all()

    def _wait_all(self) -> None:
        for worker in self.workers:
            if worker.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
                worker.pid = 0


def _follow_parent(parent: int) -> bool:
    """Have the kernel send this worker SIGTERM when the parent dies (even by SIGKILL), so no
    worker outlives its supervisor holding the port; it then drains as on a forwarded SIGTERM.
    False if the parent is already gone."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
