#!/usr/bin/env python3
"""Garbage collection: DaoHub's online GC vs CNCF distribution's offline `registry garbage-collect`.

    .venv/bin/python bench/gc_bench.py [--blobs 100000] [--reps 3] [--stores filesystem,s3]
    .venv/bin/python bench/gc_bench.py --smoke        # tiny sizes: does it run at all

For each store (the filesystem, and S3 on one moto server the bench starts) and each repetition,
alternating which registry goes first, a fresh pair of registries gets the same kind of data:
--blobs small unique blobs as tagged images of --per-image blobs (layers and a config) in --repos
repositories. One image is pushed through the API; the others are written as a push writes them,
since pushing 100,000 blobs through moto takes hours on a small box: for DaoHub the bytes through
its storage driver and the links and tagged manifests through its store and Registry (the code
the handlers call), for distribution the objects of its storage layout (blob data, layer links,
manifest revision and tag links), checked against what the real push wrote. Then every manifest
is read back by tag (its digest checked) and deleted by digest through the API (distribution
with `storage.delete.enabled`), so the deletes and the review queue are the real ones. Then, timed:

- DaoHub: `daohub gc run --grace-seconds 0 --json` beside its running `serve` (metadata on
  SQLite for the filesystem, PostgreSQL for S3, as deployed): the manifest, link and blob
  reviews and the deletes of the bytes (DeleteObjects batches on S3);
- distribution: stopped (its GC is offline only), then `docker-registry garbage-collect` on its
  config: the mark over every repository and the sweep of every blob.

Each side's remaining blobs are counted in storage afterwards (every pushed blob must be gone),
and an image tagged before the deletes must still pull with its digests checked. The row is
blobs/s (pushed blobs collected over wall time); DaoHub / distribution is the ratio. The
issue's target is >= 500 blobs/s on S3.

Then, on DaoHub alone, for each store: the p99 latency of manifest GET and blob push (POST and
PUT of a small new blob) from a light load (one client of each, back to back) while a GC pass
collects a backlog of --blobs, against the same load for as long without GC (target: within
10 %). The pass is `daohub gc run` beside serve, or with --latency-gc serve serve's own passes
(restarted with gc.interval_seconds 0.5 and no grace period; timed until its daohub_gc_deleted_total
counts every blob). Prints the table and the load average, writes bench/results/gc_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from benchlib import (
    DISTRIBUTION_BIN,
    ROOT,
    OCI_MANIFEST,
    DaoHubProcess,
    DistributionProcess,
    Row,
    ScenarioError,
    _expect,
    client_session,
    common_options,
    distribution_missing,
    image_manifest,
    load_average,
    log,
    pull_image,
    push_blob,
    push_image,
    report,
    run_loop,
    sha256_digest,
    small_layer,
)
from s3_bench import DIST_ROOT, S3Distribution, daohub_on_s3, s3_keys

from tests.helpers.moto import MotoServer
from tests.helpers.postgres import PostgresCluster
from tests.helpers.server import blob_files

STORES = ("filesystem", "s3")
# serve's own passes keep out of the way (their grace period is a day anyway).
GC_ENV = {"DAOHUB_GC_INTERVAL_SECONDS": "3600"}
S3_TARGET = 500.0  # blobs/s, from the issue
LATENCY_TARGET = 1.10


class Bed:
    """moto and PostgreSQL (for the S3 runs), and every registry started, stopped by `close()`."""

    def __init__(self, workdir: Path, args: argparse.Namespace):
        self.workdir, self.args = workdir, args
        self.moto: MotoServer | None = None
        self.pg: PostgresCluster | None = None
        self.started: list = []
        self.count = 0

    def start(self) -> None:
        if "s3" in self.args.stores:
            self.moto = MotoServer(self.workdir / "moto", log_name="moto.log")
            self.moto.start()
            self.started.append(self.moto)
            self.pg = PostgresCluster()
            self.pg.start()
            self.started.append(self.pg)

    def registry(self, side: str, store: str):
        self.count += 1
        tag = f"{side}-{store}-{self.count}"
        if side == "daohub" and store == "filesystem":
            server = DaoHubProcess(self.workdir / tag, env=GC_ENV, python=self.args.python, startup_timeout=120)
        elif side == "daohub":
            server = daohub_on_s3(self.workdir / tag, self.moto, self.moto.create_bucket(tag),
                                  self.pg.create_database(), self.args.python)
            server.extra_env.update(GC_ENV)
        elif store == "filesystem":
            server = DistributionProcess(self.workdir / tag, binary=DISTRIBUTION_BIN)
        else:
            server = S3Distribution(self.workdir / tag, endpoint=self.moto.url, bucket=self.moto.create_bucket(tag))
        server.start()
        self.started.append(server)
        return server

    def done(self, server) -> None:
        server.stop()
        self.started.remove(server)
        if not self.args.keep:
            shutil.rmtree(server.data_dir, ignore_errors=True)

    def close(self) -> None:
        for server in reversed(self.started):
            try:
                server.stop()
            except Exception as exc:  # noqa: BLE001 (stop the rest)
                log(f"stopping {server!r}: {exc!r}")
        self.started.clear()


# ------------------------------------------------------------------------------------ the data


@dataclass
class Image:
    repo: str
    tag: str
    blobs: dict[str, bytes]  # layers and config
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def synthetic_images(args: argparse.Namespace, salt: str) -> list[Image]:
    images = []
    for i in range(max(1, args.blobs // args.per_image) - 1):  # one more is pushed through the API
        layers = [small_layer(f"gc bench {salt} image {i} layer {j} ".encode() + os.urandom(16))
                  for j in range(args.per_image - 1)]
        config, manifest = image_manifest(layers)
        blobs = {layer.digest: layer.body() for layer in layers} | {sha256_digest(config): config}
        images.append(Image(f"bench/gc{i % args.repos}", f"t{i}", blobs, manifest))
    return images


async def seed_daohub(bed: Bed, hub: DaoHubProcess, images: list[Image], parallel: int) -> None:
    """What pushes of `images` leave: the bytes through the hub's storage driver, the links and
    the tagged manifests through its store and Registry (the code the handlers call)."""
    import storage_backends
    from hub.db import create_store
    from hub.registry.names import parse_digest
    from hub.registry.service import Registry

    env = hub.extra_env
    store = create_store(env.get("DAOHUB_DATABASE_URL") or f"sqlite:///{hub.data_dir / 'daohub.db'}",
                         pool_min_size=1, pool_max_size=parallel)
    if env.get("DAOHUB_STORAGE_DRIVER") == "s3":
        storage = storage_backends.create("s3", bucket=env["DAOHUB_STORAGE_BUCKET"], endpoint=bed.moto.url,
                                          region=env["DAOHUB_STORAGE_REGION"], addressing_style="path",
                                          access_key="test", secret_key="test")
    else:
        storage = storage_backends.create("filesystem", root=str(hub.data_dir / "storage"))
    await store.open()
    gate = asyncio.Semaphore(parallel)
    try:
        registry = Registry(store, storage)

        async def one(image: Image) -> None:
            async with gate:
                for digest, data in image.blobs.items():
                    await storage.put_content(parse_digest(digest).blob_path, data)
                    await store.link_blob(image.repo, digest, len(data))
                await registry.put_manifest(image.repo, image.tag, image.manifest, OCI_MANIFEST)

        await asyncio.gather(*(one(image) for image in images))
    finally:
        await store.close()
        await storage.aclose()


def distribution_objects(image: Image) -> dict[str, bytes]:
    """The objects distribution 2.8's push of `image` writes (docs/spec/storage layout)."""
    repo = f"{DIST_ROOT}/repositories/{image.repo}"
    objects = {}
    for digest, data in [*image.blobs.items(), (image.digest, image.manifest)]:
        hexa = digest.split(":", 1)[1]
        objects[f"{DIST_ROOT}/blobs/sha256/{hexa[:2]}/{hexa}/data"] = data
    for digest in image.blobs:
        objects[f"{repo}/_layers/sha256/{digest.split(':', 1)[1]}/link"] = digest.encode()
    hexa = image.digest.split(":", 1)[1]
    objects[f"{repo}/_manifests/revisions/sha256/{hexa}/link"] = image.digest.encode()
    objects[f"{repo}/_manifests/tags/{image.tag}/current/link"] = image.digest.encode()
    objects[f"{repo}/_manifests/tags/{image.tag}/index/sha256/{hexa}/link"] = image.digest.encode()
    return objects


async def seed_distribution(bed: Bed, dist: DistributionProcess, session: aiohttp.ClientSession,
                            images: list[Image], parallel: int) -> None:
    gate = asyncio.Semaphore(parallel * 2)

    async def put(key: str, data: bytes) -> None:
        async with gate, session.put(f"{bed.moto.url}/{dist.bucket}/{key}", data=data) as r:
            await _expect(r, (200,), f"seeding {key}")
            await r.read()

    for image in images:
        objects = distribution_objects(image)
        if isinstance(dist, S3Distribution):
            await asyncio.gather(*(put(key, data) for key, data in objects.items()))
            continue
        for key, data in objects.items():
            path = dist.data_dir / "storage" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


async def dist_stored(bed: Bed, dist, session: aiohttp.ClientSession, key: str) -> bool:
    if isinstance(dist, S3Distribution):
        return key in await s3_keys(session, bed.moto.url, dist.bucket, key)
    return (dist.data_dir / "storage" / key).exists()


async def build_backlog(bed: Bed, server, session: aiohttp.ClientSession, args: argparse.Namespace,
                        salt: str) -> int:
    """One image of --per-image blobs pushed through the API, the rest of --blobs written as its
    push writes them (see the README), then every manifest deleted by digest through the API.
    Returns the blobs pushed."""
    layers = [small_layer(f"gc bench {salt} pushed layer {j} ".encode() + os.urandom(16))
              for j in range(args.per_image - 1)]
    config, manifest = image_manifest(layers)
    real = Image("bench/gc0", "pushed", {x.digest: x.body() for x in layers} | {sha256_digest(config): config},
                 manifest)
    await push_image(session, server.url, real.repo, real.tag, layers)
    if isinstance(server, DistributionProcess):
        # The layout written below is the one this push wrote.
        for key in distribution_objects(real):
            if not await dist_stored(bed, server, session, key):
                raise ScenarioError(f"distribution's push did not write {key}: the seeded layout is wrong")
    images = synthetic_images(args, salt)
    t0 = time.monotonic()
    if isinstance(server, DaoHubProcess):
        await seed_daohub(bed, server, images, args.parallel)
    else:
        await seed_distribution(bed, server, session, images, args.parallel)
    images.append(real)
    log(f"  {len(images) * args.per_image} blobs in {len(images)} images, written in {time.monotonic() - t0:.1f}s")
    gate = asyncio.Semaphore(args.parallel)

    async def delete(image: Image) -> None:
        async with gate:
            async with session.get(f"{server.url}/v2/{image.repo}/manifests/{image.tag}",
                                   headers={"Accept": OCI_MANIFEST}) as r:
                await _expect(r, (200,), "manifest GET")
                if sha256_digest(await r.read()) != image.digest:
                    raise ScenarioError(f"{image.repo}:{image.tag} is not the image written")
            async with session.delete(f"{server.url}/v2/{image.repo}/manifests/{image.digest}") as r:
                await _expect(r, (202,), "manifest DELETE")
                await r.read()

    t0 = time.monotonic()
    await asyncio.gather(*(delete(image) for image in images))
    log(f"  {len(images)} manifests deleted through the API in {time.monotonic() - t0:.1f}s")
    return len(images) * args.per_image


async def push_kept(session: aiohttp.ClientSession, base: str) -> str:
    """An image that stays tagged: it must pull intact after the GC."""
    layers = [small_layer(b"kept layer " + os.urandom(16)) for _ in range(3)]
    return await push_image(session, base, "bench/kept", "latest", layers)


async def stored_blobs(bed: Bed, server, session: aiohttp.ClientSession) -> int:
    if isinstance(server, S3Distribution):
        keys = await s3_keys(session, bed.moto.url, server.bucket, f"{DIST_ROOT}/blobs/")
        return sum(1 for k in keys if k.endswith("/data"))
    if isinstance(server, DistributionProcess):
        root = server.data_dir / "storage" / DIST_ROOT / "blobs"
        return sum(1 for p in root.glob("*/*/*/data")) if root.exists() else 0
    bucket = server.extra_env.get("DAOHUB_STORAGE_BUCKET")
    if bucket:
        return len(await s3_keys(session, bed.moto.url, bucket, "blobs/"))
    return len(blob_files(server.data_dir))


def daohub_gc(hub: DaoHubProcess, python: str) -> tuple[float, dict]:
    cmd = [python, "-m", "hub", "gc", "run", "--grace-seconds", "0", "--json", "--data-dir", str(hub.data_dir)]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=hub.environment(), capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise ScenarioError(f"daohub gc run exited {done.returncode}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["errors"]:
        raise ScenarioError(f"daohub gc run: errors {result['errors'][:5]}")
    return wall, result


def distribution_gc(dist: DistributionProcess) -> tuple[float, str]:
    dist.stop()  # offline only
    t0 = time.monotonic()
    done = subprocess.run([DISTRIBUTION_BIN, "garbage-collect", str(dist.config_path)], env=dist.environment(),
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise ScenarioError(f"garbage-collect exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    dist.start()  # to pull the kept image
    return wall, done.stdout + done.stderr


# ------------------------------------------------------------------------------------ one run


async def collect(bed: Bed, side: str, store: str, session: aiohttp.ClientSession, row: Row,
                  args: argparse.Namespace) -> float:
    server = bed.registry(side, store)
    try:
        kept = await push_kept(session, server.url)
        pushed = await build_backlog(bed, server, session, args, f"{side}-{store}-{bed.count}")
        before = await stored_blobs(bed, server, session)
        if side == "daohub":
            wall, result = daohub_gc(server, args.python)
            details = {"pass_seconds": result["duration_seconds"], "counts": result["counts"]}
            if result["counts"]["blobs_deleted"] != pushed:
                raise ScenarioError(f"daohub deleted {result['counts']['blobs_deleted']} blobs of {pushed}")
        else:
            wall, output = distribution_gc(server)
            details = {"eligible_lines": output.count("blob eligible for deletion")}
        after = await stored_blobs(bed, server, session)
        # distribution also stores each manifest as a blob: those go too.
        left = after - (before - pushed - (0 if side == "daohub" else pushed // args.per_image))
        if left:
            raise ScenarioError(f"{side} on {store}: {left} deleted blobs still stored ({before} -> {after})")
        await pull_image(session, server.url, "bench/kept", "latest", verify=True, want_digest=kept)
        row.add("daohub" if side == "daohub" else "other", pushed / wall, seconds=wall, blobs=pushed, stored_before=before, stored_after=after,
                load_average=load_average(), **details)
        log(f"  {side} on {store}: {pushed} blobs in {wall:.1f}s = {pushed / wall:,.0f} blobs/s")
        return wall
    finally:
        bed.done(server)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def light_load(session: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> dict[str, list[float]]:
    """One client GETting the kept manifest, one pushing small new blobs, back to back, until `stop`."""
    got: dict[str, list[float]] = {"get": [], "push": []}
    accept = "application/vnd.oci.image.manifest.v1+json"

    async def getter() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            async with session.get(f"{base}/v2/bench/kept/manifests/latest", headers={"Accept": accept}) as r:
                await _expect(r, (200,), "manifest GET")
                await r.read()
            got["get"].append((time.perf_counter() - t0) * 1000)

    async def pusher() -> None:
        while not stop.is_set():
            data = b"pushed during the bench " + os.urandom(16)
            t0 = time.perf_counter()
            await push_blob(session, base, "bench/load", sha256_digest(data), len(data), data)
            got["push"].append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(getter(), pusher())
    return got


async def serve_collected(session: aiohttp.ClientSession, hub: DaoHubProcess, blobs: int) -> tuple[float, dict]:
    """Seconds until serve's passes have deleted `blobs` blobs (daohub_gc_deleted_total)."""
    t0 = time.monotonic()
    while True:
        async with session.get(f"{hub.url}/metrics") as r:
            text = await r.text()
        deleted = sum(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith('daohub_gc_deleted_total{kind="blobs"}'))
        if deleted >= blobs:
            return time.monotonic() - t0, {"counts": {"blobs_deleted": int(deleted)}}
        if time.monotonic() - t0 > 3600:
            raise ScenarioError(f"serve's passes deleted {deleted} blobs of {blobs} in an hour")
        await asyncio.sleep(0.5)


async def latency(bed: Bed, store: str, session: aiohttp.ClientSession, rows: dict[str, Row],
                  args: argparse.Namespace, window: float) -> None:
    hub = bed.registry("daohub", store)
    try:
        await push_kept(session, hub.url)
        pushed = await build_backlog(bed, hub, session, args, f"latency-{store}")
        # The load alone for as long as a pass takes, then the load while a pass runs.
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(window, stop.set)
        quiet = await light_load(session, hub.url, stop)
        if args.latency_gc == "serve":  # serve's own passes, in the process that serves the load
            hub.stop()
            hub.extra_env |= {"DAOHUB_GC_INTERVAL_SECONDS": "0.5", "DAOHUB_GC_GRACE_SECONDS": "0"}
            hub.start()
        stop = asyncio.Event()
        load = asyncio.create_task(light_load(session, hub.url, stop))
        if args.latency_gc == "serve":
            wall, result = await serve_collected(session, hub, pushed)
        else:
            wall, result = await asyncio.to_thread(daohub_gc, hub, args.python)
        stop.set()
        busy = await load
        for op in ("get", "push"):
            row = rows[f"{op}-p99-{store}"]
            row.add("daohub", p99(busy[op]), samples=len(busy[op]), median_ms=statistics.median(busy[op]),
                    gc_seconds=wall, blobs_deleted=result["counts"]["blobs_deleted"])
            row.add("other", p99(quiet[op]), samples=len(quiet[op]), median_ms=statistics.median(quiet[op]))
        log(f"  latency on {store}: GC pass {wall:.1f}s under load; p99 GET {rows[f'get-p99-{store}'].samples}, "
            f"push {rows[f'push-p99-{store}'].samples} (with, without) ms")
    finally:
        bed.done(hub)


def make_rows(args: argparse.Namespace) -> dict[str, Row]:
    rows = {}
    for store in args.stores:
        rows[f"gc-{store}"] = Row(f"gc-{store}", f"GC of {args.blobs:,} unreferenced blobs, {store}", "blobs/s",
                                  "distribution garbage-collect (offline)")
    for store in args.stores:
        for op, what in (("get", "manifest GET"), ("push", "blob push")):
            rows[f"{op}-p99-{store}"] = Row(f"{op}-p99-{store}", f"p99 {what} during GC ({args.latency_gc}), {store}",
                                            "ms",
                                            "DaoHub without GC", "<=", LATENCY_TARGET)
    return rows


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="gc-bench-", dir=args.tmpdir))
    extra: dict = {"load_average_start": load_average(), "uptime_start": _uptime()}
    bed = Bed(workdir, args)
    rows = make_rows(args)
    try:
        bed.start()
        async with client_session(limit=args.parallel * 2) as session:
            walls: dict[str, list[float]] = {s: [] for s in args.stores}
            for rep in range(args.reps):
                for store in args.stores:
                    order = ("distribution", "daohub") if rep % 2 == 0 else ("daohub", "distribution")
                    for side in (x for x in order if x in args.sides):
                        log(f"rep {rep + 1}/{args.reps}, {store}, {side}")
                        row = rows[f"gc-{store}"]
                        try:
                            wall = await collect(bed, side, store, session, row,
                                                 args)
                            if side == "daohub":
                                walls[store].append(wall)
                        except (ScenarioError, aiohttp.ClientError, OSError) as exc:
                            row.errors["daohub" if side == "daohub" else "other"] = repr(exc)
                            log(f"  FAILED: {exc!r}")
            for store in args.stores if args.latency else ():
                log(f"latency, {store}")
                window = max(5.0, statistics.median(walls[store]) if walls[store] else args.latency_window)
                try:
                    await latency(bed, store, session, rows, args, window)
                except (ScenarioError, aiohttp.ClientError, OSError) as exc:
                    rows[f"get-p99-{store}"].errors["daohub"] = repr(exc)
                    log(f"  FAILED: {exc!r}")
    finally:
        bed.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if "s3" in args.stores:
        s3 = rows["gc-s3"].median("daohub")
        extra["s3_target_blobs_per_s"] = S3_TARGET
        extra["s3_target_met"] = s3 is not None and s3 >= S3_TARGET
        print(f"DaoHub on S3: {fmt_rate(s3)} (target >= {S3_TARGET:.0f} blobs/s: "
              f"{'met' if extra['s3_target_met'] else 'NOT met'})")
    extra["uptime_end"] = _uptime()
    print(f"uptime at start: {extra['uptime_start']}\nuptime at end:   {extra['uptime_end']}")
    return 0 if report("gc_bench", list(rows.values()), args, extra) else 1


def fmt_rate(value: float | None) -> str:
    return "FAILED" if value is None else f"{value:,.0f} blobs/s"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_options(ap, "--blobs 400 --reps 1")
    ap.add_argument("--blobs", type=int, default=100_000, help="unreferenced blobs per run (default 100,000)")
    ap.add_argument("--per-image", type=int, default=100, help="blobs per image, config included (default 100)")
    ap.add_argument("--repos", type=int, default=10, help="repositories the images spread over (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per store (default 3)")
    ap.add_argument("--parallel", type=int, default=16, help="images pushed at once (default 16)")
    ap.add_argument("--stores", default=",".join(STORES), help="filesystem,s3 (default both)")
    ap.add_argument("--sides", default="daohub,distribution", help="which registries to run (default both)")
    ap.add_argument("--no-latency", dest="latency", action="store_false", help="skip the latency runs")
    ap.add_argument("--latency-gc", choices=("cli", "serve"), default="cli",
                    help="the pass under the latency load: `daohub gc run` beside serve (default), or serve's own")
    ap.add_argument("--latency-window", type=float, default=30.0,
                    help="seconds of load without GC when --reps 0 gives no pass time to match (default 30)")
    args = ap.parse_args()
    args.stores = [s for s in args.stores.split(",") if s]
    args.sides = [s for s in args.sides.split(",") if s]
    if set(args.stores) - set(STORES) or args.per_image < 2:
        ap.error(f"--stores takes {','.join(STORES)}; --per-image at least 2")
    if args.smoke:
        args.blobs, args.reps, args.per_image = 400, 1, 20
    if distribution_missing():
        return 2
    return run_loop(run(args))


if __name__ == "__main__":
    sys.exit(main())
