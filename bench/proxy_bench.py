#!/usr/bin/env python3
"""DaoHub's pull-through cache vs pulling straight from the upstream, in one run.

    .venv/bin/python bench/proxy_bench.py [--layers 4] [--layer-mb 50] [--rounds 3]
    .venv/bin/python bench/proxy_bench.py --smoke        # tiny image: does it run at all

Starts CNCF distribution (Debian's `docker-registry`, filesystem storage) as the upstream and
DaoHub on its defaults (SQLite, filesystem) with `proxy.upstreams` naming that distribution.
Every round pushes a new image (--layers layers of --layer-mb MB, new digests) to
distribution, untimed, then times with one client:

- cold: the first pull of that image through DaoHub's path-prefix form
  (`/v2/<upstream>/<repo>/...`): manifest and every blob come from distribution through the
  cache, which stores them as it streams them;
- direct: the same pull straight from distribution;
- warm: the second pull through DaoHub (all of it from DaoHub's own storage);
- local: a pull of the same image pushed into an ordinary DaoHub repository (for scale).

Cold and direct alternate which goes first. The pulls are the manifest, then config and
layers 4 at a time with `curl --parallel` into /dev/null (status and length checked), or with
aiohttp (`--client aiohttp`). One untimed aiohttp pull per round checks every digest of the
cached copy. Targets: cold <= 1.15x direct, warm <= 1.0x direct. Prints a table (medians) and
writes bench/results/proxy_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    DISTRIBUTION_BIN,
    DOCKER_MANIFEST,
    MB,
    OCI_MANIFEST,
    BlobSource,
    DaoHubProcess,
    DistributionProcess,
    Row,
    ScenarioError,
    _expect,
    client_session,
    common_options,
    distribution_missing,
    load_average,
    log,
    make_random_file,
    pull_image,
    push_image,
    report,
    run_loop,
    sha256_digest,
    source_layer,
)

UPSTREAM = "dist.bench"


def daohub_with_upstream(data_dir: Path, upstream: DistributionProcess, python: str,
                         spool_dir: str | None) -> DaoHubProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "config.yaml"
    spool = f"  spool_dir: {spool_dir}\n" if spool_dir else ""
    config.write_text(f"proxy:\n{spool}  upstreams:\n    - name: {UPSTREAM}\n      url: {upstream.url}\n")
    return DaoHubProcess(data_dir, config=config, python=python, startup_timeout=60)


class _Removed:
    """A directory removed when the benchmark's servers stop."""

    def __init__(self, path: str):
        self.path = path

    def stop(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


async def bytes_fetched(session, base: str) -> float:
    """DaoHub's count of blob bytes received from the upstream (its /metrics)."""
    async with session.get(f"{base}/metrics") as r:
        await _expect(r, (200,), "GET /metrics")
        text = await r.text()
    prefix = f'daohub_proxy_bytes_fetched_total{{upstream="{UPSTREAM}"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


async def curl_pull_image(session, base: str, repo: str, ref: str, want_digest: str, parallel: int = 4) -> int:
    """Manifest with aiohttp, then every blob with one `curl --parallel` into /dev/null."""
    async with session.get(f"{base}/v2/{repo}/manifests/{ref}",
                           headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"}) as r:
        await _expect(r, (200,), "manifest GET")
        body = await r.read()
    if sha256_digest(body) != want_digest:
        raise ScenarioError(f"manifest {repo}:{ref}: digest {sha256_digest(body)} != {want_digest}")
    manifest = json.loads(body)
    blobs = [manifest["config"], *manifest["layers"]]
    argv = ["curl", "-sS", "--no-progress-meter", "--parallel", "--parallel-max", str(parallel), "-w", "%{http_code} %{size_download}\\n"]
    for desc in blobs:
        argv += [f"{base}/v2/{repo}/blobs/{desc['digest']}", "-o", "/dev/null"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    # --parallel reports transfers as they finish, so compare as multisets.
    got = sorted(out.decode().split("\n")[:-1])
    want = sorted(f"200 {d['size']}" for d in blobs)
    if proc.returncode != 0 or got != want:
        raise ScenarioError(f"curl pull of {repo}:{ref} from {base}: exit {proc.returncode}, got {got}, want {want}")
    return len(body) + sum(d["size"] for d in blobs)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="proxy-bench-", dir=args.tmpdir))
    extra: dict = {"load_average_start": load_average()}
    log(f"work dir {workdir}; load average {extra['load_average_start']}")
    size_mb = args.layers * args.layer_mb
    image = f"{args.layers} layers x {args.layer_mb} MB"
    rows = {
        "cold": Row("cold", f"cold pull through the cache, {image}", "s", "direct pull from distribution",
                    "<=", 1.15),
        "warm": Row("warm", f"warm pull from the cache, {image}", "s", "direct pull from distribution",
                    "<=", 1.0),
        "local": Row("local", f"warm pull from the cache, {image}", "s", "pull of a local DaoHub repository"),
    }
    started: list = []
    failed = False
    try:
        layer_len = args.layer_mb * MB
        data = workdir / "random.bin"
        make_random_file(data, layer_len)
        source = BlobSource(data, layer_len)
        dist = DistributionProcess(workdir / "distribution", binary=DISTRIBUTION_BIN)
        dist.start()
        started.append(dist)
        spool = None
        if args.spool_dir:
            spool = tempfile.mkdtemp(prefix="proxy-bench-spool-", dir=args.spool_dir)
            started.append(_Removed(spool))
        hub = daohub_with_upstream(workdir / "daohub", dist, args.python, spool)
        hub.start()
        started.append(hub)
        async with client_session() as session:

            async def pull(base: str, repo: str, ref: str, digest: str) -> float:
                t0 = time.perf_counter()
                if args.client == "curl":
                    await curl_pull_image(session, base, repo, ref, digest)
                else:
                    await pull_image(session, base, repo, ref, want_digest=digest)
                return time.perf_counter() - t0

            def record(key: str, side: str, seconds: float, rnd: int) -> None:
                rows[key].add(side, seconds, mb_per_s=round(size_mb / seconds, 1), round=rnd)
                log(f"round {rnd + 1} {key:5} {side:6} {seconds:.3f} s ({size_mb / seconds:,.0f} MB/s)")

            # Warm-up, untimed: both servers and every path (miss, hit, direct) once on a small image.
            warm_layers = [source_layer(BlobSource(data, min(layer_len, 1 << 20)))]
            digest = await push_image(session, dist.url, "bench/warmup", "v1", warm_layers)
            for base, repo in ((hub.url, f"{UPSTREAM}/bench/warmup"), (hub.url, f"{UPSTREAM}/bench/warmup"),
                               (dist.url, "bench/warmup")):
                await pull(base, repo, "v1", digest)
            for rnd in range(args.rounds):
                tag = f"r{rnd}"
                layers = [source_layer(source) for _ in range(args.layers)]
                digest = await push_image(session, dist.url, "bench/img", tag, layers)
                cached = f"{UPSTREAM}/bench/img"
                order = [("cold", "daohub"), ("cold", "other")]
                for key, side in order if rnd % 2 == 0 else order[::-1]:
                    if side == "daohub":
                        before = await bytes_fetched(session, hub.url)
                        record(key, side, await pull(hub.url, cached, tag, digest), rnd)
                        fetched = await bytes_fetched(session, hub.url) - before
                        if fetched < args.layers * layer_len:
                            raise ScenarioError(f"the cold pull fetched {fetched:.0f} bytes from the upstream, "
                                                f"not the image's {args.layers * layer_len}: it was not cold")
                    else:
                        record(key, side, await pull(dist.url, "bench/img", tag, digest), rnd)
                # The bytes the cache kept are the bytes distribution has.
                await pull_image(session, hub.url, cached, tag, verify=True, want_digest=digest)
                # Only now: layers already in DaoHub's storage would be linked, not fetched, by a cold pull.
                await push_image(session, hub.url, "local/img", tag, layers)
                for rep in range(args.warm_reps):
                    order = [("daohub", hub.url, cached), ("other", dist.url, "bench/img")]
                    for side, base, repo in order if (rnd + rep) % 2 == 0 else order[::-1]:
                        record("warm", side, await pull(base, repo, tag, digest), rnd)
                    order = [("daohub", hub.url, cached), ("other", hub.url, "local/img")]
                    for side, base, repo in order if (rnd + rep) % 2 == 0 else order[::-1]:
                        record("local", side, await pull(base, repo, tag, digest), rnd)
    except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
        failed = True
        for row in rows.values():
            row.errors.setdefault("run", f"{type(exc).__name__}: {exc}")
        log(f"failed: {type(exc).__name__}: {exc}")
    finally:
        for server in reversed(started):
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    complete = report("proxy_bench", list(rows.values()), args, extra)
    return 0 if complete and not failed else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4, help="layers per image (default 4)")
    ap.add_argument("--layer-mb", type=int, default=50, help="MB per layer (default 50: a 200 MB image)")
    ap.add_argument("--rounds", type=int, default=3, help="cold pulls per side, each of a new image (default 3)")
    ap.add_argument("--warm-reps", type=int, default=3, help="warm pulls per side per round (default 3)")
    ap.add_argument("--client", choices=("curl", "aiohttp"), default="curl" if shutil.which("curl") else "aiohttp",
                    help="what pulls the blobs (default curl when installed)")
    ap.add_argument("--spool-dir", help="parent of DaoHub's proxy.spool_dir (e.g. /dev/shm); default: DaoHub's "
                                        "default, <data_dir>/proxy-spool")
    common_options(ap, "2 layers of 2 MB, 1 round, 1 warm rep")
    args = ap.parse_args()
    if args.smoke:
        args.layers, args.layer_mb, args.rounds, args.warm_reps = 2, 2, 1, 1
    if min(args.layers, args.layer_mb, args.rounds, args.warm_reps) < 1:
        ap.error("sizes and counts must be positive")
    if distribution_missing():
        return 2
    return run_loop(run(args))


if __name__ == "__main__":
    sys.exit(main())
