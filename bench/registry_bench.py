#!/usr/bin/env python3
"""DaoHub vs CNCF distribution, side by side in one run.

    python3 bench/registry_bench.py [--quick] [--only NAME[,NAME...]] [--keep]

Starts both registries itself (fresh instance, fresh temp data dir, free loopback port for every
scenario), runs each scenario against distribution and then DaoHub -- never both at once, so they
do not compete for the cores -- stops them, prints a table to stdout and writes
bench/results/registry_bench-<time>[-quick].json.  Progress goes to stderr.  See bench/README.md.

Scenarios (--only takes these names): blob-push, blob-pull, skopeo, rps, rss.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DISTRIBUTION_BIN = os.environ.get("BENCH_DISTRIBUTION_BIN", "/usr/bin/docker-registry")
KINDS = ("distribution", "daohub")
MB = 1_000_000
MiB = 1 << 20
SUFFIX_LEN = 64  # every pushed blob ends with 64 unique random bytes, so no two pushes share a digest
CHUNK = 1 << 20
FOREIGN_WARN = 0.15  # cores used by other processes during a run above which it is flagged as noisy

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


# --------------------------------------------------------------------------------------------- utils

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench +{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class ScenarioError(Exception):
    """A registry answered wrongly (status, digest, length) or a client tool failed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    if n >= MB:
        return f"{n / MB:g} MB"
    return f"{n} B"


def tail(path: Path, lines: int = 15) -> str:
    try:
        data = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def run_cmd(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise ScenarioError(
            f"`{' '.join(argv)}` exited {proc.returncode}:\n{(proc.stderr or proc.stdout).strip()[-3000:]}"
        )
    return proc


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "not available"


# ------------------------------------------------------------------------------------ /proc sampling


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/PID/task/TID/children)."""
    pids, i = [pid], 0
    while i < len(pids):
        p = pids[i]
        i += 1
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                pass
    return pids


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """utime + stime of a process tree, in seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError, ValueError):
            pass
    return total / _CLK_TCK


class CpuMeter:
    """CPU seconds used by the server tree and by this (client) process over a `with` block."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.server_s = self.client_s = 0.0

    def __enter__(self) -> Self:
        self._s0, self._c0 = tree_cpu_s(self.pid), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server_s = round(tree_cpu_s(self.pid) - self._s0, 2)
        self.client_s = round(time.process_time() - self._c0, 2)


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:8]]
    return (sum(vals) - vals[3] - vals[4]) / _CLK_TCK


class ForeignLoad:
    """CPU used by processes that are not part of this benchmark while a scenario runs: machine
    busy time minus the server tree's, this process's and its finished children's (skopeo, wrk,
    the load generator).  Kernel write-back threads count as foreign too, so a little is normal."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.cores = 0.0

    @staticmethod
    def _children_s() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def __enter__(self) -> Self:
        self._t = time.monotonic()
        self._busy, self._srv = machine_busy_s(), tree_cpu_s(self.pid)
        self._self, self._kids = time.process_time(), self._children_s()
        return self

    def __exit__(self, *exc: object) -> None:
        ours = (tree_cpu_s(self.pid) - self._srv) + (time.process_time() - self._self) + \
            (self._children_s() - self._kids)
        elapsed = max(1e-6, time.monotonic() - self._t)
        self.cores = max(0.0, (machine_busy_s() - self._busy - ours) / elapsed)


def tree_rss_kb(pid: int) -> int:
    return sum(_status_kb(p, "VmRSS") for p in process_tree(pid))


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.samples = 0
        self.series: list[tuple[float, int]] = []  # (seconds, kB), one point per 0.25 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        last = -1.0
        while not self._stop.is_set():
            kb = tree_rss_kb(self.pid)
            self.samples += 1
            self.peak_kb = max(self.peak_kb, kb)
            now = time.monotonic() - t0
            if now - last >= 0.25:
                self.series.append((round(now, 2), kb))
                last = now
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------- registries


class Registry:
    """One registry process with its own data dir, port and log files."""

    def __init__(self, kind: str, workdir: Path, args: argparse.Namespace):
        self.kind = kind
        self.args = args
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
        self.data = self.dir / "data"
        self.data.mkdir()
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _argv(self) -> tuple[list[str], dict[str, str], Path]:
        if self.kind == "distribution":
            cache = "  cache:\n    blobdescriptor: inmemory\n" if self.args.dist_cache else ""
            cfg = self.dir / "config.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log:\n  level: error\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {self.data}\n"
                "  delete:\n    enabled: true\n"
                f"{cache}"
                f"http:\n  addr: {self.host}\n"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            return [DISTRIBUTION_BIN, "serve", str(cfg)], env, self.dir
        # DaoHub: the contract is `python3 -m hub serve --addr ... --data-dir ...` run from the repo root.
        # DAOHUB_* variables from the caller's environment are dropped so the run uses the defaults.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
        env["DAOHUB_AUTH_ENABLED"] = "false"  # distribution runs without auth too: compare like with like
        env["DAOHUB_APPSTORE_SEED_ON_FIRST_START"] = "false"  # an empty registry, as distribution's
        return [self.args.python, "-m", "hub", "serve", "--addr", self.host, "--data-dir", str(self.data)], env, ROOT

    def start(self, timeout: float = 60) -> None:
        argv, env, cwd = self._argv()
        # Logs (including both registries' default access logs) go to files, never to a pipe
        # nobody drains.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        ready_line = f"listening on http://{self.host}"
        probe = "/v2/" if self.kind == "distribution" else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ScenarioError(
                    f"{self.kind} exited with {self.proc.returncode} during start-up; stderr:\n{tail(self.stderr_path)}"
                )
            announced = self.kind == "distribution" or ready_line in self.stderr_path.read_text(errors="replace")
            if announced and self._probe(probe) == 200:
                log(f"{self.kind} ready on {self.host} (pid {self.pid})")
                return
            time.sleep(0.05)
        self.stop()
        raise ScenarioError(f"{self.kind} not ready after {timeout:.0f}s; stderr:\n{tail(self.stderr_path)}")

    def _probe(self, path: str) -> int | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
                head = s.recv(64).decode(errors="replace")
            m = re.match(r"HTTP/1\.[01] (\d{3})", head)
            return int(m.group(1)) if m else None
        except OSError:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                log(f"{self.kind} ignored SIGTERM for 40s; killing pid {self.pid}")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------------------- blob data on disk


class BlobSource:
    """Blobs of `length` bytes streamed from a random data file on disk.

    Each blob is the file's first length-64 bytes followed by 64 fresh random bytes, so every push
    has a new digest (no "blob already exists" short cuts in either registry) while the sha256 of
    the shared prefix is computed only once.
    """

    def __init__(self, path: Path, length: int):
        if length > path.stat().st_size + SUFFIX_LEN or length <= SUFFIX_LEN:
            raise ValueError("blob length does not fit the data file")
        self.path, self.length = path, length
        self.prefix_len = length - SUFFIX_LEN
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            left = self.prefix_len
            while left:
                chunk = f.read(min(8 * MiB, left))
                if not chunk:
                    raise ValueError("data file too short")
                h.update(chunk)
                left -= len(chunk)
        self._prefix_hash = h

    def new_blob(self) -> tuple[str, bytes]:
        suffix = os.urandom(SUFFIX_LEN)
        h = self._prefix_hash.copy()
        h.update(suffix)
        return "sha256:" + h.hexdigest(), suffix

    def stream(self, suffix: bytes) -> AsyncIterator[bytes]:
        return self.stream_range(suffix, 0, self.length)

    async def stream_range(self, suffix: bytes, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob made with `suffix` (chunked uploads send it in pieces)."""
        prefix_end = min(end, self.prefix_len)
        if start < prefix_end:
            # Blocking reads, but from the page cache (the file was just written and hashed).
            with open(self.path, "rb", buffering=0) as f:  # noqa: ASYNC230
                f.seek(start)
                left = prefix_end - start
                while left:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError("data file shrank")
                    left -= len(chunk)
                    yield chunk
        if end > self.prefix_len:
            yield suffix[max(0, start - self.prefix_len):end - self.prefix_len]


def make_random_file(path: Path, size: int) -> None:
    log(f"writing {human_bytes(size)} of random data to {path}")
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(16 * MiB, left)
            f.write(os.urandom(n))
            left -= n


# ------------------------------------------------------------------------------------- HTTP helpers


def client_session(limit: int = 64) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
        read_bufsize=4 * MiB,
        auto_decompress=False,
    )


async def _expect(resp: aiohttp.ClientResponse, statuses: tuple[int, ...], what: str) -> None:
    if resp.status not in statuses:
        body = (await resp.read())[:1000].decode(errors="replace")
        raise ScenarioError(f"{what}: {resp.method} {resp.url} -> {resp.status} (expected {statuses}): {body}")


def _with_digest(location: str, base: str, digest: str) -> URL:
    loc = location if location.startswith("http") else base + location
    sep = "&" if "?" in loc else "?"
    return URL(f"{loc}{sep}digest={digest.replace(':', '%3A')}", encoded=True)


async def push_blob(session: aiohttp.ClientSession, base: str, repo: str, digest: str, length: int,
                    body: AsyncIterator[bytes] | bytes) -> None:
    """Monolithic upload: POST to open a session, one PUT with the whole body and ?digest=."""
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, (202,), "open upload")
        location = r.headers.get("Location")
        if not location:
            raise ScenarioError(f"open upload: POST {r.url} -> 202 without a Location header")
        await r.read()
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
    async with session.put(_with_digest(location, base, digest), data=body, headers=headers) as r:
        await _expect(r, (201,), "monolithic PUT")
        got = r.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise ScenarioError(f"monolithic PUT: Docker-Content-Digest {got} != {digest}")
        await r.read()


async def head_blob(session: aiohttp.ClientSession, base: str, repo: str, digest: str, length: int) -> None:
    async with session.head(f"{base}/v2/{repo}/blobs/{digest}") as r:
        await _expect(r, (200,), "blob HEAD after push")
        if r.headers.get("Content-Length") != str(length):
            raise ScenarioError(f"blob HEAD {digest}: Content-Length {r.headers.get('Content-Length')} != {length}")


class _Hasher:
    """sha256 in a second thread, fed batches of >= 1 MiB, so hashing (which releases the GIL)
    overlaps reading the socket: inline hashing halves what a Python client can pull."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.batch: list[bytes] = []
        self.batch_len = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            for chunk in item:
                self.h.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.batch.append(chunk)
        self.batch_len += len(chunk)
        if self.batch_len >= MiB:
            self.q.put(self.batch)
            self.batch, self.batch_len = [], 0

    def hexdigest(self) -> str:
        self.q.put(self.batch)
        self.q.put(None)
        self.thread.join()
        return self.h.hexdigest()


async def pull_blob(session: aiohttp.ClientSession, base: str, repo: str, digest: str, length: int,
                    verify: bool = True) -> None:
    """GET the blob, read and discard it, checking its length and (with `verify`) its sha256.

    The timed pulls do not hash: a Python client hashes at about 1.1 GB/s on this machine,
    below what both servers deliver, so a hashing client would time itself. The untimed
    warm-up pull verifies the digest.
    """
    h = _Hasher() if verify else None
    n = 0
    try:
        async with session.get(f"{base}/v2/{repo}/blobs/{digest}") as r:
            await _expect(r, (200,), "blob GET")
            async for chunk in r.content.iter_any():
                if h is not None:
                    h.update(chunk)
                n += len(chunk)
    finally:
        got = h.hexdigest() if h is not None else digest.split(":", 1)[1]
    if n != length or "sha256:" + got != digest:
        raise ScenarioError(f"blob GET {digest}: got {n} bytes with sha256:{got} (want {length} bytes)")


async def curl_pull(base: str, repo: str, digest: str, length: int) -> None:
    """GET the blob with curl into /dev/null, checking status and length.

    curl is the client because it is cheap: a Python client spends ~0.75 s of CPU per GiB and
    would cap both servers at its own speed. The digest is verified by an untimed pull first.
    """
    if not shutil.which("curl"):
        return await _pull_with_aiohttp(base, repo, digest, length)
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", f"{base}/v2/{repo}/blobs/{digest}",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    status, _, got = out.decode().partition(" ")
    if status != "200" or int(got or 0) != length:
        raise ScenarioError(f"curl blob GET {digest}: status {status}, {got} bytes (want {length})")


async def _pull_with_aiohttp(base: str, repo: str, digest: str, length: int) -> None:
    async with client_session() as s:
        await pull_blob(s, base, repo, digest, length, verify=False)


async def put_manifest(session: aiohttp.ClientSession, base: str, repo: str, ref: str, body: bytes,
                       media_type: str = OCI_MANIFEST) -> None:
    async with session.put(f"{base}/v2/{repo}/manifests/{ref}", data=body,
                           headers={"Content-Type": media_type}) as r:
        await _expect(r, (201,), "manifest PUT")
        await r.read()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------- results


@dataclass
class Metric:
    key: str  # row id
    label: str  # row label in the table
    unit: str
    higher_is_better: bool
    target: str = ""  # e.g. "ratio >= 1.5" or "DaoHub <= 150 MB"
    worst_of_rounds: bool = False  # peak memory: report the worst round, not the best
    values: dict[str, float | None] = field(default_factory=dict)  # kind -> headline value
    rounds: dict[str, list[dict]] = field(default_factory=dict)  # kind -> one {value, details...} per round
    errors: dict[str, str] = field(default_factory=dict)  # kind -> failure text

    def record(self, kind: str, value: float, details: dict) -> None:
        self.rounds.setdefault(kind, []).append({"value": value, **details})

    def fail(self, kind: str, text: str) -> None:
        self.errors.setdefault(kind, text)

    def finalize(self) -> None:
        """Headline per registry: the best round (the worst for peak memory); FAILED if any round failed."""
        for kind in KINDS:
            vals = [r["value"] for r in self.rounds.get(kind, [])]
            if kind in self.errors or not vals:
                self.values[kind] = None
            elif self.worst_of_rounds:
                self.values[kind] = max(vals) if not self.higher_is_better else min(vals)
            else:
                self.values[kind] = best(vals, self.higher_is_better)

    def ratio(self) -> float | None:
        d, h = self.values.get("distribution"), self.values.get("daohub")
        if not d or not h:
            return None
        return h / d if self.higher_is_better else d / h

    def target_met(self) -> bool | None:
        m = re.fullmatch(r"ratio >= ([\d.]+)", self.target)
        if m:
            r = self.ratio()
            return None if r is None else r >= float(m.group(1))
        m = re.fullmatch(r"DaoHub <= ([\d.]+) MB", self.target)
        if m:
            v = self.values.get("daohub")
            return None if v is None else v <= float(m.group(1))
        return None

    def to_json(self) -> dict:
        return {
            "key": self.key, "label": self.label, "unit": self.unit,
            "better": "higher" if self.higher_is_better else "lower",
            "target": self.target or None, "ratio_daohub_better": self.ratio(), "target_met": self.target_met(),
            "values": self.values, "rounds": self.rounds, "errors": self.errors,
        }


@dataclass
class Ctx:
    args: argparse.Namespace
    workdir: Path
    p: dict  # size/duration parameters for this mode
    _data_file: Path | None = None
    _sources: dict[int, BlobSource] = field(default_factory=dict)
    skopeo_images: Any = None

    def source(self, length: int) -> BlobSource:
        if length not in self._sources:
            if self._data_file is None:
                self._data_file = self.workdir / "random.bin"
                make_random_file(self._data_file, self.p["data_file"])
            self._sources[length] = BlobSource(self._data_file, length)
        return self._sources[length]


def best(samples: list[float], higher_is_better: bool) -> float:
    """The headline value of repeated timed runs: the best one.  Other load on the machine only
    ever makes a run slower, so on a shared 2-core box the best run is the most repeatable
    number; the median and every sample are in the JSON too."""
    return max(samples) if higher_is_better else min(samples)


# ------------------------------------------------------------------------------------------ scenarios
# Each scenario is `async def (reg, ctx) -> {metric_key: (value, details)}` and runs against one
# fresh registry; the runner calls it for distribution, then for DaoHub.


def drop_dirty_pages() -> None:
    """Write back dirty pages so one timed rep's write-back does not land in the next rep."""
    os.sync()


async def scn_blob_push(reg: Registry, ctx: Ctx) -> dict:
    size, reps = ctx.p["blob_size"], ctx.p["blob_reps"]
    src = ctx.source(size)
    warm = ctx.source(ctx.p["warm_size"])
    speeds: list[float] = []
    cpus: list[dict] = []
    async with client_session() as s:
        d, suf = warm.new_blob()
        await push_blob(s, reg.base, "bench/warm", d, warm.length, warm.stream(suf))
        for i in range(reps):
            d, suf = src.new_blob()
            drop_dirty_pages()
            with CpuMeter(reg.pid) as cpu:
                t0 = time.perf_counter()
                await push_blob(s, reg.base, "bench/blob", d, size, src.stream(suf))
                dt = time.perf_counter() - t0
            await head_blob(s, reg.base, "bench/blob", d, size)
            speeds.append(size / MB / dt)
            cpus.append({"server_cpu_s": cpu.server_s, "client_cpu_s": cpu.client_s, "wall_s": round(dt, 3)})
            log(f"  {reg.kind} push {i + 1}/{reps}: {human_bytes(size)} in {dt:.2f}s = {speeds[-1]:.0f} MB/s "
                f"(cpu: server {cpu.server_s:.2f}s, client {cpu.client_s:.2f}s)")
    return {"blob_push": (best(speeds, True), {"samples_MBps": speeds, "median": statistics.median(speeds),
                                               "bytes": size, "cpu": cpus})}


async def scn_blob_pull(reg: Registry, ctx: Ctx) -> dict:
    size, reps = ctx.p["blob_size"], ctx.p["pull_reps"]
    src = ctx.source(size)
    speeds: list[float] = []
    cpus: list[dict] = []
    async with client_session() as s:
        d, suf = src.new_blob()
        await push_blob(s, reg.base, "bench/blob", d, size, src.stream(suf))  # setup, untimed
        drop_dirty_pages()
        await pull_blob(s, reg.base, "bench/blob", d, size)  # warm-up, digest verified (and the page cache)
        for i in range(reps):
            with CpuMeter(reg.pid) as cpu:
                t0 = time.perf_counter()
                await curl_pull(reg.base, "bench/blob", d, size)
                dt = time.perf_counter() - t0
            speeds.append(size / MB / dt)
            cpus.append({"server_cpu_s": cpu.server_s, "client_cpu_s": cpu.client_s, "wall_s": round(dt, 3)})
            log(f"  {reg.kind} pull {i + 1}/{reps}: {human_bytes(size)} in {dt:.2f}s = {speeds[-1]:.0f} MB/s "
                f"(cpu: server {cpu.server_s:.2f}s, client {cpu.client_s:.2f}s)")
    return {"blob_pull": (best(speeds, True), {"samples_MBps": speeds, "median": statistics.median(speeds),
                                               "bytes": size, "cpu": cpus})}


# ---- skopeo


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = sha256_digest(data)
    (blobs / digest.split(":", 1)[1]).write_bytes(data)
    return digest, len(data)


def build_oci_layout(dest: Path, tag: str, layer_size: int, layers: int, payload: bytes) -> str:
    """An OCI image layout with `layers` uncompressed tar layers of about `layer_size` bytes each.

    Each layer is a valid tar holding one file: 64 unique random bytes followed by `payload`
    (shared random bytes), so every layer of every image has its own digest.  Returns the
    manifest digest.
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    file_size = layer_size - 3 * 512  # minus the tar header and end-of-archive blocks
    layer_descs = []
    for i in range(layers):
        tmp = dest / f"layer{i}.tar"
        content = os.urandom(SUFFIX_LEN) + payload[: file_size - SUFFIX_LEN]
        info = tarfile.TarInfo(f"layer{i}/data.bin")
        info.size, info.mode, info.mtime = len(content), 0o644, 1_700_000_000
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.addfile(info, io.BytesIO(content))
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(8 * MiB), b""):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        size = tmp.stat().st_size
        tmp.rename(blobs / digest.split(":", 1)[1])
        layer_descs.append({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": size})
    config = json.dumps({
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [ld["digest"] for ld in layer_descs]},
    }, separators=(",", ":")).encode()
    cdigest, csize = _write_blob(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": csize},
        "layers": layer_descs,
    }, separators=(",", ":")).encode()
    mdigest, msize = _write_blob(blobs, manifest)
    (dest / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return mdigest


def skopeo(*args: str) -> None:
    # --insecure-policy: no dependency on /etc/containers/policy.json.
    # --preserve-digests: skopeo must not gzip the uncompressed layers on the way (it would by
    #   default for a docker:// destination, and then the timing would mostly be gzip).
    run_cmd(["skopeo", "--insecure-policy", "copy", "--quiet", "--preserve-digests", *args], timeout=900)


def skopeo_push(layout: Path, tag: str, reg: Registry, repo_ref: str) -> float:
    t0 = time.perf_counter()
    skopeo("--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{reg.host}/{repo_ref}")
    return time.perf_counter() - t0


def skopeo_pull(reg: Registry, repo_ref: str, out: Path, tag: str, want_digest: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    # --dest-oci-accept-uncompressed-layers: keep the layers as they are (no gzip on the way in).
    skopeo("--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers",
           f"docker://{reg.host}/{repo_ref}", f"oci:{out}:{tag}")
    dt = time.perf_counter() - t0
    got = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
    if got != want_digest:
        raise ScenarioError(f"skopeo pull of {repo_ref}: manifest digest {got} != pushed {want_digest}")
    shutil.rmtree(out, ignore_errors=True)
    return dt


class SkopeoImages:
    """Pre-built OCI layouts, one per timed or warm-up push, shared by both registries (a
    registry never sees the same image twice, so skopeo cannot skip or mount any blob)."""

    def __init__(self, ctx: Ctx):
        p = ctx.p
        self.dir = ctx.workdir / "oci"
        self.dir.mkdir(exist_ok=True)
        payload = os.urandom(p["skopeo_layer"])
        total = p["skopeo_layer"] * p["skopeo_layers"]
        log(f"building {p['skopeo_reps'] + 1} OCI layouts of {p['skopeo_layers']} x {human_bytes(p['skopeo_layer'])}")
        self.warm = self.dir / "warm"
        self.warm_digest = build_oci_layout(self.warm, "v1", 1 * MiB, 2, payload)
        self.images = []
        for i in range(p["skopeo_reps"]):
            d = self.dir / f"img{i}"
            self.images.append((d, build_oci_layout(d, "v1", p["skopeo_layer"], p["skopeo_layers"], payload)))
        self.total = total


async def scn_skopeo(reg: Registry, ctx: Ctx) -> dict:
    if not shutil.which("skopeo"):
        raise ScenarioError("skopeo is not installed (apt-get install -y skopeo)")
    if ctx.skopeo_images is None:
        ctx.skopeo_images = SkopeoImages(ctx)
    imgs: SkopeoImages = ctx.skopeo_images
    out = reg.dir / "pulled"
    # warm-up: a small image both ways
    skopeo_push(imgs.warm, "v1", reg, "bench/warm:v1")
    skopeo_pull(reg, "bench/warm:v1", out, "v1", imgs.warm_digest)
    pushes, pulls = [], []
    for i, (layout, digest) in enumerate(imgs.images):
        drop_dirty_pages()
        pushes.append(skopeo_push(layout, "v1", reg, f"bench/img:r{i}"))
        log(f"  {reg.kind} skopeo push {i + 1}/{len(imgs.images)}: {pushes[-1]:.2f}s")
    last_digest = imgs.images[-1][1]
    for i in range(len(imgs.images)):
        drop_dirty_pages()
        pulls.append(skopeo_pull(reg, f"bench/img:r{len(imgs.images) - 1}", out, "v1", last_digest))
        log(f"  {reg.kind} skopeo pull {i + 1}/{len(imgs.images)}: {pulls[-1]:.2f}s")
    info = {"image_bytes": imgs.total, "layers": ctx.p["skopeo_layers"]}
    return {
        "skopeo_push": (best(pushes, False), {"samples_s": pushes, "median": statistics.median(pushes), **info}),
        "skopeo_pull": (best(pulls, False), {"samples_s": pulls, "median": statistics.median(pulls), **info}),
    }


# ---- requests/s


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(out: str) -> dict:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise ScenarioError(f"could not parse wrk output:\n{out}")
    res: dict[str, Any] = {"rps": float(m.group(1))}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        if m:
            res[f"p{pct}_ms"] = round(float(m.group(1)) * _WRK_UNITS[m.group(2)], 3)
    return res


def load_generate(url: str, method: str, headers: dict[str, str], duration: float, conns: int,
                  workdir: Path, threads: int, tool: str) -> dict:
    """Runs a load generator in its own process: wrk, or this script's raw-socket one."""
    if tool == "wrk":
        argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
        for k, v in headers.items():
            argv += ["-H", f"{k}: {v}"]
        out = run_cmd(argv + [url], timeout=duration + 60).stdout
        res = parse_wrk(out)
        res["tool"] = f"wrk -t{threads} -c{conns}"
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), "--_loadgen",
                json.dumps({"url": url, "method": method, "headers": headers, "duration": duration, "conns": conns})]
        res = json.loads(run_cmd(argv, timeout=duration + 60).stdout)
        res["tool"] = f"python raw-socket loadgen c={conns}"
    if res.get("non_2xx"):
        raise ScenarioError(f"{method} {url}: {res['non_2xx']} of {res.get('requests')} responses were not "
                            f"2xx/3xx ({res['tool']})")
    if not res.get("requests"):
        raise ScenarioError(f"{method} {url}: no request completed in {duration:g}s ({res['tool']}): {res}")
    if any(res.get("socket_errors", {}).values()):
        res["warning"] = f"socket errors: {res['socket_errors']}"
    return res


def pick_loadgen(method: str, choice: str) -> str:
    """wrk cannot do HEAD (its response parser waits for the body a HEAD response announces)."""
    if choice == "python" or method == "HEAD" or not shutil.which("wrk"):
        return "python"
    return "wrk"


class _RawHTTPConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending the same request back to back.

    Minimal on purpose: finds the end of the headers, skips Content-Length body bytes (none for
    HEAD, which is what wrk cannot do: its parser waits for a HEAD response's body).
    """

    def __init__(self, req: bytes, head_only: bool, st: dict, deadline: float, done: asyncio.Future):
        self.req, self.head_only, self.st, self.deadline, self.done = req, head_only, st, deadline, done
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.need = -1  # body bytes still to skip; -1 while reading headers
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.req)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                head = bytes(self.buf[:i])
                del self.buf[: i + 4]
                status = int(head[9:12])
                self.st["ok" if 200 <= status < 400 else "non_2xx"] += 1
                if self.head_only:
                    self.need = 0
                else:
                    m = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
                    if not m:
                        self.st["errors"] += 1  # chunked or close-delimited: not supported here
                        self.transport.close()
                        return
                    self.need = int(m.group(1))
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = -1
            self.st["lat"].append(time.perf_counter() - self.sent)
            if self.loop.time() >= self.deadline:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None or self.loop.time() < self.deadline:
            self.st["errors"] += 1
        if not self.done.done():
            self.done.set_result(None)


async def _loadgen_main(spec: dict) -> None:
    """Load generator used where wrk is not (HEAD, or no wrk installed): `conns` keep-alive
    connections sending back-to-back requests for `duration` seconds.  Prints JSON."""
    url = URL(spec["url"])
    lines = [f"{spec['method']} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{k}: {v}" for k, v in spec["headers"].items()]
    req = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    st: dict[str, Any] = {"ok": 0, "non_2xx": 0, "errors": 0, "lat": []}
    t0 = loop.time()
    deadline = t0 + spec["duration"]
    dones = []
    for _ in range(spec["conns"]):
        done = loop.create_future()
        dones.append(done)
        await loop.create_connection(lambda d=done: _RawHTTPConn(req, spec["method"] == "HEAD", st, deadline, d),
                                     url.host, url.port)
    await asyncio.gather(*dones)
    elapsed = loop.time() - t0
    total = st["ok"] + st["non_2xx"]
    lat = sorted(st["lat"])
    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None
    print(json.dumps({"rps": total / elapsed, "requests": total, "non_2xx": st["non_2xx"],
                      "socket_errors": {"client": st["errors"]} if st["errors"] else {},
                      "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))


def _loadgen_entry(spec_json: str) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(_loadgen_main(json.loads(spec_json)))
    except ImportError:
        asyncio.run(_loadgen_main(json.loads(spec_json)))


async def scn_rps(reg: Registry, ctx: Ctx) -> dict:
    repo, tag = "bench/rps", "latest"
    async with client_session() as s:
        layer = os.urandom(4096)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
        for blob in (layer, config):
            await push_blob(s, reg.base, repo, sha256_digest(blob), len(blob), blob)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_TAR, "digest": sha256_digest(layer), "size": len(layer)}],
        }).encode()
        await put_manifest(s, reg.base, repo, tag, manifest)
        # sanity check what the load generator will hit
        async with s.get(f"{reg.base}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}) as r:
            await _expect(r, (200,), "manifest GET by tag")
            if await r.read() != manifest:
                raise ScenarioError("manifest GET by tag returned different bytes than were pushed")
        await head_blob(s, reg.base, repo, sha256_digest(layer), len(layer))
    targets = {
        "manifest_get": ("GET", f"{reg.base}/v2/{repo}/manifests/{tag}", {"Accept": OCI_MANIFEST}),
        "blob_head": ("HEAD", f"{reg.base}/v2/{repo}/blobs/{sha256_digest(layer)}", {}),
    }
    res = {}
    for key, (method, url, headers) in targets.items():
        lg = {"conns": ctx.p["conns"], "workdir": reg.dir, "threads": ctx.args.wrk_threads,
              "tool": pick_loadgen(method, ctx.args.loadgen)}
        load_generate(url, method, headers, ctx.p["warm_duration"], **lg)  # warm-up
        runs = []
        for i in range(ctx.p["rps_reps"]):
            with CpuMeter(reg.pid) as cpu:
                r = load_generate(url, method, headers, ctx.p["duration"], **lg)
            r["server_cpu_s"] = cpu.server_s
            runs.append(r)
            log(f"  {reg.kind} {method} {key} {i + 1}/{ctx.p['rps_reps']}: {r['rps']:.0f} req/s "
                f"(p50 {r.get('p50_ms', '?')} ms, p99 {r.get('p99_ms', '?')} ms, server cpu {cpu.server_s:.1f}s, "
                f"{r['tool']}){' ' + r['warning'] if 'warning' in r else ''}")
        top = max(runs, key=lambda x: x["rps"])
        res[key] = (top["rps"], {**top, "samples_rps": [x["rps"] for x in runs], "runs": runs})
    if not reg.alive():
        raise ScenarioError(f"{reg.kind} died during the load test; stderr:\n{tail(reg.stderr_path)}")
    return res


# ---- RSS


async def scn_rss(reg: Registry, ctx: Ctx) -> dict:
    n, size = ctx.p["rss_uploads"], ctx.p["rss_size"]
    src = ctx.source(size)
    async with client_session(limit=n + 4) as s:
        d, suf = src.new_blob()
        await push_blob(s, reg.base, "bench/warm", d, size, src.stream(suf))  # warm-up
        await asyncio.sleep(0.5)
        baseline_kb = tree_rss_kb(reg.pid)
        blobs = [src.new_blob() for _ in range(n)]
        drop_dirty_pages()
        with RssSampler(reg.pid) as sampler:
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(push_blob(s, reg.base, f"bench/rss{i}", d, size, src.stream(suf)) for i, (d, suf) in enumerate(blobs)),
                return_exceptions=True,
            )
            dt = time.perf_counter() - t0
            await asyncio.sleep(0.3)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise ScenarioError(f"{len(failures)} of {n} concurrent uploads failed; first: {failures[0]!r}")
        for i, (d, _) in enumerate(blobs):
            await head_blob(s, reg.base, f"bench/rss{i}", d, size)
    pids = process_tree(reg.pid)
    hwm_kb = _status_kb(reg.pid, "VmHWM")
    peak_kb = max(sampler.peak_kb, hwm_kb)
    def mb(kb):
        return kb * 1024 / MB
    log(f"  {reg.kind}: {n} x {human_bytes(size)} in {dt:.1f}s ({n * size / MB / dt:.0f} MB/s); peak RSS "
        f"{mb(peak_kb):.0f} MB (sampled tree peak {mb(sampler.peak_kb):.0f}, main VmHWM {mb(hwm_kb):.0f}, "
        f"idle before {mb(baseline_kb):.0f}; {len(pids)} process(es))")
    return {"rss_peak": (peak_kb * 1024 / MB, {
        "peak_MB": peak_kb * 1024 / MB, "sampled_tree_peak_MB": sampler.peak_kb * 1024 / MB,
        "main_vmhwm_MB": hwm_kb * 1024 / MB, "idle_before_MB": baseline_kb * 1024 / MB,
        "processes": len(pids), "samples": sampler.samples, "upload_seconds": dt,
        "aggregate_MBps": n * size / MB / dt, "series_kB": sampler.series,
    })}


# ---------------------------------------------------------------------------------------------- main


def params(quick: bool) -> dict:
    if quick:
        return {"rounds": 1, "blob_size": 256 * MiB, "blob_reps": 2, "pull_reps": 3, "warm_size": 16 * MiB,
                "skopeo_layers": 4, "skopeo_layer": 10 * MB, "skopeo_reps": 3,
                "duration": 3, "warm_duration": 1, "conns": 32, "rps_reps": 1,
                "rss_uploads": 20, "rss_size": 25 * MB, "data_file": 256 * MiB}
    return {"rounds": 2, "blob_size": 1 << 30, "blob_reps": 2, "pull_reps": 3, "warm_size": 64 * MiB,
            "skopeo_layers": 4, "skopeo_layer": 50 * MB, "skopeo_reps": 2,
            "duration": 10, "warm_duration": 2, "conns": 32, "rps_reps": 1,
            "rss_uploads": 20, "rss_size": 100 * MB, "data_file": 1 << 30}


def scenario_table(p: dict) -> dict[str, tuple[Callable, list[Metric]]]:
    skopeo_img = f"{p['skopeo_layers']}x{human_bytes(p['skopeo_layer'])} image"
    return {
        "blob-push": (scn_blob_push, [Metric("blob_push", f"blob push {human_bytes(p['blob_size'])}", "MB/s", True,
                                             "ratio >= 1.0")]),
        "blob-pull": (scn_blob_pull, [Metric("blob_pull", f"blob pull {human_bytes(p['blob_size'])}", "MB/s",
                                             True, "ratio >= 1.5")]),
        "skopeo": (scn_skopeo, [Metric("skopeo_push", f"skopeo push {skopeo_img}", "s", False),
                                Metric("skopeo_pull", f"skopeo pull {skopeo_img}", "s", False)]),
        "rps": (scn_rps, [Metric("manifest_get", f"manifest GET by tag, c={p['conns']}, {p['duration']}s", "req/s",
                                 True, "ratio >= 3"),
                          Metric("blob_head", f"blob HEAD, c={p['conns']}, {p['duration']}s", "req/s", True)]),
        "rss": (scn_rss, [Metric("rss_peak", f"peak RSS, {p['rss_uploads']} concurrent x "
                                             f"{human_bytes(p['rss_size'])} uploads", "MB", False, "DaoHub <= 150 MB",
                                 worst_of_rounds=True)]),
    }


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "FAILED"
    if unit == "s":
        return f"{v:.2f} s"
    if v >= 100:
        return f"{v:,.0f} {unit}"
    return f"{v:.1f} {unit}"


def render_table(metrics: list[Metric], quick: bool) -> str:
    head = ["scenario" + (" [--quick sizes]" if quick else ""), "distribution", "DaoHub",
            "ratio (>1 = DaoHub better)", "target", "met"]
    rows = []
    for m in metrics:
        r = m.ratio()
        met = m.target_met()
        rows.append([m.label, fmt(m.values.get("distribution"), m.unit), fmt(m.values.get("daohub"), m.unit),
                     f"{r:.2f}x" if r is not None else "-", m.target or "-",
                     {True: "yes", False: "NO", None: "-"}[met]])
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    out.append("ratio = DaoHub/distribution for MB/s and req/s, distribution/DaoHub for seconds and MB "
               "(so >1 always means DaoHub is better).")
    return "\n".join(out)


def versions(args: argparse.Namespace) -> dict:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "hub"], capture_output=True,
                               text=True, check=False).stdout.strip()
        rev += "+dirty" if dirty else ""
    except OSError:
        rev = "?"
    return {
        "daohub_git": rev,
        "distribution": tool_version([DISTRIBUTION_BIN, "--version"]),
        "skopeo": tool_version(["skopeo", "--version"]),
        "wrk": tool_version(["wrk", "-v"]) if shutil.which("wrk") else "not installed (aiohttp fallback)",
        "python": platform.python_version(),
        "daohub_python": args.python,
        "aiohttp": aiohttp.__version__,
    }


def machine() -> dict:
    model, mem_kb = "?", 0
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "?")
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = int(next(x for x in meminfo if x.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_MB": mem_kb * 1024 // MB, "kernel": platform.release()}


async def run_one(name: str, fn: Callable, ms: list[Metric], kind: str, rnd: int, rounds: int, workdir: Path,
                  ctx: Ctx) -> bool:
    """One scenario, one round, one registry: fresh registry, run, stop, clean up.  False on failure."""
    args = ctx.args
    log(f"== {name} on {kind}" + (f" (round {rnd}/{rounds})" if rounds > 1 else ""))
    reg = Registry(kind, workdir, args)
    started = False
    try:
        reg.start()
        started = True
        with ForeignLoad(reg.pid) as foreign:
            res = await fn(reg, ctx)
        if foreign.cores > FOREIGN_WARN:
            log(f"warning: other processes used {foreign.cores:.2f} of the {os.cpu_count()} cores "
                f"during {name} on {kind}; its numbers are noisy")
        for m in ms:
            value, details = res[m.key]
            m.record(kind, value, {**details, "round": rnd, "foreign_load_cores": round(foreign.cores, 2)})
        return True
    except Exception as exc:  # noqa: BLE001 -- one failure must not end the whole run
        text = str(exc) if isinstance(exc, ScenarioError) else traceback.format_exc()
        if started and not reg.alive():
            text += f"\n({kind} exited with {reg.proc.returncode}; stderr tail:\n{tail(reg.stderr_path)})"
        log(f"!! {name} failed on {kind}: {text}")
        for m in ms:
            m.fail(kind, text)
        return False
    finally:
        was_alive = reg.alive()
        rc = reg.stop()
        if was_alive and rc not in (0, -signal.SIGTERM):
            log(f"note: {kind} exited with status {rc} on SIGTERM")
        if args.keep:
            log(f"kept {reg.dir}")
        else:
            reg.cleanup()


async def run_all(args: argparse.Namespace) -> int:
    p = params(args.quick)
    table = scenario_table(p)
    selected = list(table) if not args.only else [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in selected if x not in table]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {', '.join(table)}", file=sys.stderr)
        return 2
    base_tmp = args.tmpdir or None
    workdir = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=base_tmp))
    ctx = Ctx(args=args, workdir=workdir, p=p)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rounds = args.rounds or p["rounds"]
    log(f"mode {'quick' if args.quick else 'full'}; scenarios {', '.join(selected)}; {rounds} round(s); "
        f"work dir {workdir}")
    metrics: list[Metric] = []
    failed = False
    try:
        for name in selected:
            fn, ms = table[name]
            metrics.extend(ms)
            for rnd in range(1, rounds + 1):
                for kind in KINDS:
                    failed |= not await run_one(name, fn, ms, kind, rnd, rounds, workdir, ctx)
    finally:
        if args.keep:
            log(f"kept work dir {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for m in metrics:
        m.finalize()

    print(render_table(metrics, args.quick))
    busy = [f"{m.key}/{k}{'#' + str(r['round']) if rounds > 1 else ''} {r['foreign_load_cores']:.2f}"
            for m in metrics for k, rs in m.rounds.items() for r in rs if r["foreign_load_cores"] > FOREIGN_WARN]
    if busy:
        print(f"note: other processes were busy during some runs (cores used, of {os.cpu_count()}): " + ", ".join(busy))
    errors = [(m.label, k, e) for m in metrics for k, e in m.errors.items()]
    seen = set()
    for label, kind, err in errors:
        if (kind, err) in seen:
            continue
        seen.add((kind, err))
        print(f"\nFAILED on {kind} ({label}):\n{err}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS_DIR / f"registry_bench-{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full", "scenarios": selected, "rounds": rounds, "params": p,
        "distribution_config": {"blobdescriptor_cache": "inmemory" if args.dist_cache else "none"},
        "machine": machine(), "versions": versions(args),
        "ratio_note": "ratio > 1 means DaoHub is better (DaoHub/distribution for throughput, "
                      "distribution/DaoHub for seconds and memory)",
        "metrics": [m.to_json() for m in metrics],
    }, indent=2))
    log(f"results written to {out.relative_to(ROOT)}")
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--_loadgen":
        _loadgen_entry(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, shorter durations (well under 3 min)")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="run only these: blob-push, blob-pull, skopeo, rps, rss")
    ap.add_argument("--rounds", type=int, metavar="N",
                    help="run each scenario N times, alternating distribution and DaoHub, best round counts "
                         "(default 2, --quick 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (data, registry logs)")
    ap.add_argument("--tmpdir", help="where to make the work dir (default: $TMPDIR or /tmp)")
    venv_python = ROOT / ".venv" / "bin" / "python"
    ap.add_argument("--python", default=str(venv_python) if venv_python.exists() else sys.executable,
                    help="interpreter that runs `-m hub serve` (default: the repo's .venv/bin/python, made by "
                         "scripts/serve.sh or scripts/test.sh, else the one running this script)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave a core to the server)")
    ap.add_argument("--loadgen", choices=("auto", "python"), default="auto",
                    help="requests/s load generator: auto = wrk for GET when installed, the built-in "
                         "raw-socket one for HEAD; python = the built-in one for both")
    ap.add_argument("--dist-cache", action="store_true",
                    help="give distribution the in-memory blob descriptor cache (off in the default config)")
    args = ap.parse_args()
    if not os.path.exists(DISTRIBUTION_BIN):
        print(f"{DISTRIBUTION_BIN} not found (apt-get install -y docker-registry)", file=sys.stderr)
        return 2
    if not (ROOT / "hub" / "__main__.py").exists():
        print("hub/__main__.py not found: DaoHub is not there to benchmark", file=sys.stderr)
        return 2
    try:
        import uvloop  # type: ignore[import-not-found]

        return uvloop.run(run_all(args))
    except ImportError:
        return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
