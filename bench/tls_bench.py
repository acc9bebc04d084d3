#!/usr/bin/env python3
"""DaoHub's native TLS vs CNCF distribution's (`http.tls`), same certificate, one run.

    python3 bench/tls_bench.py [--smoke] [--size-mib 1024] [--rounds 3] [--duration 10] [--conns 32]

Makes a private CA and a server certificate for 127.0.0.1 (hub/tls.py, as `daohub tls
self-signed` does), starts each registry over HTTPS with that pair (fresh data dir and port per
round, never both at once), and measures:

- blob push: one `--size-mib` blob, monolithic PUT from an aiohttp client;
- blob pull: the same blob with `curl --cacert` into /dev/null, and the server's CPU-seconds
  per GiB (TLS in userspace: there is no sendfile(2) through it);
- manifest GET by tag: req/s from `--conns` keep-alive TLS connections for `--duration` s
  (an aiohttp load generator in this process; wrk is not installed here).

Targets (from issue 21): pushes and manifest GETs at least even with distribution, pulls at
least 0.8x its throughput. Prints a table and writes bench/results/tls_bench-<time>.json.
A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    MB,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    BlobSource,
    CpuMeter,
    DaoHubProcess,
    DistributionProcess,
    MiB,
    Row,
    ScenarioError,
    common_options,
    distribution_missing,
    load_average,
    log,
    make_random_file,
    push_blob,
    put_manifest,
    report,
    run_loop,
    sha256_digest,
)

from hub.tls import create_ca, issue_certificate
from tests.helpers.server import TlsFiles

GiB = 1 << 30


def make_pki(root: Path) -> TlsFiles:
    ca = create_ca(root, "tls_bench CA")
    cert, key = issue_certificate(root, "server", "127.0.0.1", ("127.0.0.1", "localhost"), *ca)
    return TlsFiles(cert, key, root / "ca.crt")


def start(kind: str, workdir: Path, files: TlsFiles, python: str):
    if kind == "daohub":
        server = DaoHubProcess(workdir, tls=files, python=python, env={"DAOHUB_LOG_ACCESS_LOG": "false"})
    else:
        server = DistributionProcess(workdir, tls=files)
    return server.start()


def session(files: TlsFiles, conns: int = 64):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns, ssl=files.client_context()),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
                                 read_bufsize=4 * MiB, auto_decompress=False)


async def curl_pull(url: str, files: TlsFiles, length: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--cacert", str(files.ca_file), "-o", "/dev/null",
        "-w", "%{http_code} %{size_download}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if out.decode().split() != ["200", str(length)]:
        raise ScenarioError(f"curl {url}: {out.decode()!r} {err.decode()[-500:]}")


async def manifest_rps(url: str, files: TlsFiles, conns: int, duration: float) -> float:
    done = 0
    headers = {"Accept": OCI_MANIFEST}
    async with session(files, conns) as s:
        async def worker(deadline: float) -> None:
            nonlocal done
            while True:  # at least one request: the first rounds open the connections
                async with s.get(url, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise ScenarioError(f"manifest GET: {r.status}")
                done += 1
                if time.monotonic() >= deadline:
                    return

        # Open every connection (and its handshake) before the clock starts: keep-alive is measured.
        await asyncio.gather(*(worker(0) for _ in range(conns)))
        await asyncio.gather(*(worker(time.monotonic() + 0.5) for _ in range(conns)))
        done = 0
        start_time = time.monotonic()
        await asyncio.gather(*(worker(start_time + duration) for _ in range(conns)))
        return done / (time.monotonic() - start_time)


async def one_round(kind: str, workdir: Path, files: TlsFiles, source: BlobSource, args, rows: dict) -> None:
    side = "daohub" if kind == "daohub" else "other"
    server = start(kind, workdir, files, args.python)
    try:
        async with session(files) as s:
            digest, suffix = source.new_blob()
            began = time.monotonic()
            await push_blob(s, server.url, "bench/tls", digest, source.length, source.stream(suffix))
            seconds = time.monotonic() - began
            rows["push"].add(side, source.length / MB / seconds, seconds=seconds)
            config = b'{"architecture":"amd64","os":"linux"}'
            await push_blob(s, server.url, "bench/tls", sha256_digest(config), len(config), config)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_TAR, "digest": digest, "size": source.length}]}).encode()
            await put_manifest(s, server.url, "bench/tls", "v1", manifest)
        blob_url = f"{server.url}/v2/bench/tls/blobs/{digest}"
        await curl_pull(blob_url, files, source.length)  # warm the page cache
        with CpuMeter(server.pid) as cpu:
            began = time.monotonic()
            await curl_pull(blob_url, files, source.length)
            seconds = time.monotonic() - began
        rows["pull"].add(side, source.length / MB / seconds, seconds=seconds)
        rows["pull_cpu"].add(side, cpu.server_s * GiB / source.length, server_cpu_s=cpu.server_s)
        rps = await manifest_rps(f"{server.url}/v2/bench/tls/manifests/v1", files, args.conns, args.duration)
        rows["manifest"].add(side, rps)
        log(f"{kind}: push {rows['push'].samples[side][-1]:.0f} MB/s, "
            f"pull {rows['pull'].samples[side][-1]:.0f} MB/s "
            f"({rows['pull_cpu'].samples[side][-1]:.2f} CPU-s/GiB), manifest GET {rps:,.0f} req/s")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def main(args) -> int:
    if distribution_missing() or not shutil.which("curl"):
        return 2
    if args.smoke:
        args.size_mib, args.rounds, args.duration, args.conns = 8, 1, 1.0, 4
    work = Path(tempfile.mkdtemp(prefix="tls-bench-", dir=args.tmpdir))
    extra = {"load_average_start": load_average(), "ssl": ssl.OPENSSL_VERSION}
    other = "distribution (http.tls)"
    rows = {
        "push": Row("push", f"blob push {args.size_mib} MiB over TLS", "MB/s", other, ">=", 1.0),
        "pull": Row("pull", f"blob pull {args.size_mib} MiB over TLS (curl)", "MB/s", other, ">=", 0.8),
        "pull_cpu": Row("pull_cpu", "server CPU per GiB pulled over TLS", "CPU-s/GiB", other),
        "manifest": Row("manifest", f"manifest GET, {args.conns} keep-alive TLS connections", "req/s", other,
                        ">=", 1.0),
    }
    try:
        files = make_pki(work / "pki")
        data = work / "blob.bin"
        make_random_file(data, args.size_mib * MiB)
        source = BlobSource(data, args.size_mib * MiB)
        for round_ in range(args.rounds):
            for kind in ("distribution", "daohub"):
                try:
                    await one_round(kind, work / f"{kind}-{round_}", files, source, args, rows)
                except (ScenarioError, OSError) as exc:
                    for row in rows.values():
                        row.errors["daohub" if kind == "daohub" else "other"] = f"{type(exc).__name__}: {exc}"
        return 0 if report("tls_bench", list(rows.values()), args, extra) else 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_options(ap, "8 MiB, one round, 1 s of manifest GETs")
    ap.add_argument("--size-mib", type=int, default=1024, help="blob size (default 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each registry once per round (default 3)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of manifest GETs (default 10)")
    ap.add_argument("--conns", type=int, default=32, help="keep-alive connections for manifest GETs")
    sys.exit(run_loop(main(ap.parse_args())))
