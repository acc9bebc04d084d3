#!/usr/bin/env python3
"""DaoHub vs CNCF distribution, both storing blobs in S3 (one moto server), in one run.

    .venv/bin/python bench/s3_bench.py [--size-mib 1024] [--rounds 3] [--repos 10000]
    .venv/bin/python bench/s3_bench.py --smoke        # tiny sizes: does it run at all

Starts moto's standalone S3 server, a throwaway PostgreSQL cluster, DaoHub (PostgreSQL
metadata, `s3` driver) and distribution (its `s3` driver), each registry with its own bucket
on the same moto endpoint, then measures, alternating the two registries run by run:

- blob push, monolithic (POST + one PUT of the whole blob) and chunked (PATCHes of
  --chunk-mib with Content-Range, then PUT), in MB/s;
- blob pull (`curl -o /dev/null`, after one untimed pull that checks the sha256), in MB/s;
- listing a catalog of --repos repositories, each holding one small image: every page of
  `?n=1000` following the Link header, and one `?n=<repos>` request, in seconds. DaoHub's
  rows are copied in PostgreSQL from one pushed repository; distribution's from the S3
  objects one real push wrote (see bench/README.md).

Prints a table (medians) and writes bench/results/s3_bench-<time>.json with every sample.
Exit status 0 when every measurement ran on both sides, 1 when one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Awaitable
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from benchlib import (
    DISTRIBUTION_BIN,
    MB,
    BlobSource,
    DaoHubProcess,
    DistributionProcess,
    MiB,
    Row,
    ScenarioError,
    client_session,
    common_options,
    curl_pull,
    distribution_missing,
    head_blob,
    load_average,
    log,
    make_random_file,
    pull_blob,
    push_blob,
    push_blob_chunked,
    push_image,
    report,
    run_loop,
    small_layer,
    tree_cpu_s,
)

from tests.helpers.moto import REGION, MotoServer
from tests.helpers.postgres import PostgresCluster

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
DIST_ROOT = "docker/registry/v2"


class S3Distribution(DistributionProcess):
    """distribution with its s3 driver on a moto bucket, path-style (a `regionendpoint` makes
    distribution 2.8 use path addressing) and without redirects, so blob GETs are served by
    the registry itself, as DaoHub serves them (its `storage.redirect` is off by default)."""

    def __init__(self, data_dir: Path, *, endpoint: str, bucket: str, max_entries: int = 1000, **kwargs):
        super().__init__(data_dir, binary=DISTRIBUTION_BIN, **kwargs)
        self.endpoint, self.bucket, self.max_entries = endpoint, bucket, max_entries

    def prepare(self) -> None:
        self.config_path.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            "  s3:\n"
            "    accesskey: test\n    secretkey: test\n"
            f"    region: {REGION}\n    regionendpoint: {self.endpoint}\n"
            f"    bucket: {self.bucket}\n    secure: false\n    v4auth: true\n"
            "  redirect:\n    disable: true\n"
            "  delete:\n    enabled: true\n"
            # 2.8 refuses ?n= above catalog.maxentries (default 1000) with PAGINATION_NUMBER_INVALID.
            f"catalog:\n  maxentries: {self.max_entries}\n"
            f"http:\n  addr: {self.host}\n")

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in super().environment().items() if not k.startswith(("REGISTRY_", "AWS_"))}


def daohub_on_s3(data_dir: Path, moto: MotoServer, bucket: str, database_url: str, python: str) -> DaoHubProcess:
    env = {
        "DAOHUB_STORAGE_DRIVER": "s3", "DAOHUB_STORAGE_BUCKET": bucket, "DAOHUB_STORAGE_ENDPOINT": moto.url,
        "DAOHUB_STORAGE_REGION": REGION, "DAOHUB_STORAGE_ADDRESSING_STYLE": "path",
        "DAOHUB_STORAGE_ACCESS_KEY": "test", "DAOHUB_STORAGE_SECRET_KEY": "test",
        "DAOHUB_DATABASE_URL": database_url,
    }
    return DaoHubProcess(data_dir, env=env, python=python, startup_timeout=120)


class Bed:
    """moto, PostgreSQL and the two registries, started once and stopped by `close()`."""

    def __init__(self, workdir: Path, python: str):
        self.workdir = workdir
        self.python = python
        self.moto = MotoServer(workdir / "moto", log_name="moto.log")
        self.pg = PostgresCluster()  # its own short path under /tmp, open to the postgres user
        self.started: list = []

    def start(self) -> None:
        self.moto.start()
        self.started.append(self.moto)
        self.pg.start()
        self.started.append(self.pg)

    def registries(self, tag: str, max_entries: int = 1000) -> tuple[DaoHubProcess, S3Distribution]:
        """A fresh pair: own buckets, own database."""
        hub = daohub_on_s3(self.workdir / f"daohub-{tag}", self.moto, self.moto.create_bucket(f"daohub-{tag}"),
                           self.pg.create_database(), self.python)
        dist = S3Distribution(self.workdir / f"dist-{tag}", endpoint=self.moto.url,
                              bucket=self.moto.create_bucket(f"dist-{tag}"), max_entries=max_entries)
        for server in (hub, dist):
            server.start()
            self.started.append(server)
        return hub, dist

    def close(self) -> None:
        for server in reversed(self.started):
            try:
                server.destroy() if isinstance(server, PostgresCluster) else server.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                log(f"stopping {server!r}: {exc}")


# ---------------------------------------------------------------------------------- blob transfer


def sides(hub: DaoHubProcess, dist: S3Distribution, rnd: int) -> list[tuple[str, str]]:
    """Both registries, the one that goes first alternating round by round."""
    pair = [("other", dist.url), ("daohub", hub.url)]
    return pair if rnd % 2 == 0 else pair[::-1]


class Cpu:
    """CPU seconds used by the registry and by moto over a `with` block."""

    def __init__(self, registry_pid: int, moto_pid: int):
        self.pids = (registry_pid, moto_pid)
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> Self:
        self._start = [tree_cpu_s(p) for p in self.pids]
        return self

    def __exit__(self, *exc: object) -> None:
        end = [tree_cpu_s(p) for p in self.pids]
        self.seconds = {"registry_cpu_s": round(end[0] - self._start[0], 2),
                        "moto_cpu_s": round(end[1] - self._start[1], 2)}


async def transfer(hub: DaoHubProcess, dist: S3Distribution, source: BlobSource, moto: MotoServer,
                   args: argparse.Namespace, rows: dict[str, Row], parts: set[str]) -> None:
    size = source.length
    pids = {"daohub": hub.pid, "other": dist.pid}
    pushed: dict[str, str] = {}  # side -> digest of its latest monolithic push

    async def timed(key: str, side: str, rnd: int, run: Awaitable) -> None:
        with Cpu(pids[side], moto.pid) as cpu:
            t0 = time.perf_counter()
            await run
            elapsed = time.perf_counter() - t0
        rows[key].add(side, size / elapsed / MB, seconds=round(elapsed, 3), round=rnd, **cpu.seconds)
        log(f"round {rnd + 1} {side:6} {key:8} {size / elapsed / MB:7.1f} MB/s {cpu.seconds}")

    async with client_session() as session:
        for _, base in sides(hub, dist, 0):  # warm-up: connections, clients, code paths
            digest, suffix = source.new_blob()
            await push_blob(session, base, "bench/warm", digest, size, source.stream(suffix))
        for rnd in range(args.rounds):
            for side, base in sides(hub, dist, rnd):
                if "push" not in parts and side in pushed:
                    continue
                digest, suffix = source.new_blob()
                run = push_blob(session, base, "bench/mono", digest, size, source.stream(suffix))
                if "push" in parts:
                    await timed("push", side, rnd, run)
                else:
                    await run  # a blob for the pulls
                await head_blob(session, base, "bench/mono", digest, size)
                pushed[side] = digest
            for side, base in sides(hub, dist, rnd) if "chunked" in parts else ():
                digest, suffix = source.new_blob()
                await timed("chunked", side, rnd, push_blob_chunked(session, base, "bench/chunked", digest, source,
                                                                    suffix, args.chunk_mib * MiB))
                await head_blob(session, base, "bench/chunked", digest, size)
            for side, base in sides(hub, dist, rnd) if "pull" in parts else ():
                if rnd == 0:  # untimed: the bytes that come back are the bytes pushed
                    await pull_blob(session, base, "bench/mono", pushed[side], size, verify=True)
                await timed("pull", side, rnd, curl_pull(base, "bench/mono", pushed[side], size))


# ---------------------------------------------------------------------------------- catalog


def repo_name(i: int) -> str:
    return f"catalog/r{i:05d}"


async def seed_daohub_catalog(session: aiohttp.ClientSession, hub: DaoHubProcess, database_url: str,
                              repos: int) -> None:
    """One image pushed through the API, then its rows copied to repos-1 more repositories in SQL."""
    import asyncpg

    await push_image(session, hub.url, repo_name(0), "latest", [small_layer(b"layer of the catalog image\n")])
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            template = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", repo_name(0))
            await conn.execute(
                "INSERT INTO repositories (name, created_at) SELECT 'catalog/r' || lpad(i::text, 5, '0'), "
                "extract(epoch FROM now()) FROM generate_series(1, $1::int - 1) AS i", repos)
            others = "(SELECT id FROM repositories WHERE name LIKE 'catalog/r%' AND id <> $1)"
            await conn.execute(f"INSERT INTO repository_blobs (repository_id, digest, created_at) "
                               f"SELECT r.id, x.digest, x.created_at FROM repository_blobs x, {others} r "
                               "WHERE x.repository_id = $1", template)
            await conn.execute(f"INSERT INTO manifests (repository_id, digest, media_type, size, content, subject, "
                               "artifact_type, annotations, created_at) SELECT r.id, x.digest, x.media_type, "
                               "x.size, x.content, x.subject, x.artifact_type, x.annotations, x.created_at "
                               f"FROM manifests x, {others} r WHERE x.repository_id = $1", template)
            await conn.execute(f"INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, "
                               "child_kind) SELECT r.id, x.manifest_digest, x.child_digest, x.child_kind "
                               f"FROM manifest_references x, {others} r WHERE x.repository_id = $1", template)
            await conn.execute(f"INSERT INTO tags (repository_id, name, digest, updated_at) "
                               f"SELECT r.id, x.name, x.digest, x.updated_at FROM tags x, {others} r "
                               "WHERE x.repository_id = $1", template)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def s3_keys(session: aiohttp.ClientSession, endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix` (moto without auth takes unsigned requests)."""
    keys: list[str] = []
    token = None
    while True:
        query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
        async with session.get(f"{endpoint}/{bucket}?{urllib.parse.urlencode(query)}") as r:
            if r.status != 200:
                raise ScenarioError(f"listing {bucket}/{prefix}: HTTP {r.status}")
            root = ET.fromstring(await r.read())
        keys += [k.text for k in root.iter(f"{S3_NS}Key")]
        token = root.findtext(f"{S3_NS}NextContinuationToken")
        if not token:
            return keys


async def seed_distribution_catalog(session: aiohttp.ClientSession, dist: S3Distribution, moto: MotoServer,
                                    repos: int, full: bool, parallel: int = 32) -> int:
    """One image pushed through the API, then objects that push wrote under its repository
    written again under repos-1 more names: all of them with `full` (layer, manifest revision
    and tag links), else only one layer link, which is all distribution's catalog walk looks
    for (a `_layers` directory). Returns the number of objects per repository."""
    await push_image(session, dist.url, repo_name(0), "latest", [small_layer(b"layer of the catalog image\n")])
    prefix = f"{DIST_ROOT}/repositories/{repo_name(0)}/"
    keys = await s3_keys(session, moto.url, dist.bucket, prefix)
    if not full:
        keys = [k for k in keys if k.startswith(prefix + "_layers/")][:1]
    bodies = {}
    for key in keys:
        async with session.get(f"{moto.url}/{dist.bucket}/{key}") as r:
            bodies[key[len(prefix):]] = await r.read()
    queue = [(i, rel) for i in range(1, repos) for rel in bodies]
    gate = asyncio.Semaphore(parallel)

    async def put(i: int, rel: str) -> None:
        async with gate, session.put(f"{moto.url}/{dist.bucket}/{DIST_ROOT}/repositories/{repo_name(i)}/{rel}",
                                     data=bodies[rel]) as r:
            if r.status != 200:
                raise ScenarioError(f"seeding distribution's bucket: HTTP {r.status}")

    await asyncio.gather(*(put(i, rel) for i, rel in queue))
    return len(bodies)


def _get_json(url: str, timeout: float) -> tuple[dict, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read()), r.headers.get("Link", "")
    except urllib.error.HTTPError as exc:
        raise ScenarioError(f"GET {url}: HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}") from None


async def list_catalog(base: str, n: int, timeout: float, budget: float) -> tuple[list[str], int, bool]:
    """The pages of /v2/_catalog?n=N, following Link headers, until the last one or until
    `budget` seconds have passed. Returns (names, pages, whether the listing is complete).

    urllib in a thread, not aiohttp: aiohttp sends a GET again when its connection breaks,
    and a second walk of distribution's bucket running beside the first doubles its time."""
    names: list[str] = []
    url = f"{base}/v2/_catalog?n={n}"
    pages = 0
    deadline = time.monotonic() + budget
    while url:
        if pages and time.monotonic() > deadline:
            return names, pages, False
        try:
            body, link = await asyncio.to_thread(_get_json, url, timeout)
        except OSError as exc:
            if "timed out" in str(exc):
                raise TimeoutError(str(exc)) from None
            raise ScenarioError(f"GET {url}: {exc}") from None
        names += body["repositories"]
        pages += 1
        url = ""
        if link:
            target = link.split(";", 1)[0].strip().strip("<>")
            url = target if target.startswith("http") else base + target
    return names, pages, True


async def catalog(bed: Bed, args: argparse.Namespace, rows: dict[str, Row]) -> dict:
    hub, dist = bed.registries("catalog", max_entries=max(1000, args.repos))
    database_url = hub.extra_env["DAOHUB_DATABASE_URL"]
    info: dict = {}
    async with client_session(limit=32) as session:
        t0 = time.perf_counter()
        await seed_daohub_catalog(session, hub, database_url, args.repos)
        info["daohub_seed_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        info["distribution_objects_per_repository"] = await seed_distribution_catalog(
            session, dist, bed.moto, args.repos, args.dist_seed == "full")
        info["distribution_seed_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"catalog seeded: {args.repos} repositories on each side ({info})")
        want = [repo_name(i) for i in range(args.repos)]
        for rnd in range(max(args.catalog_rounds, args.dist_catalog_rounds)):
            for side, base in sides(hub, dist, rnd):
                if rnd >= (args.catalog_rounds if side == "daohub" else args.dist_catalog_rounds):
                    continue
                for key, n in (("catalog_one", args.repos), ("catalog_pages", args.page_size)):
                    t0 = time.perf_counter()
                    try:
                        names, pages, complete = await list_catalog(base, n, args.catalog_timeout, args.catalog_budget)
                    except TimeoutError:
                        rows[key].errors[side] = f"no answer within --catalog-timeout {args.catalog_timeout:g}s"
                        log(f"round {rnd + 1} {side:6} {key}: timed out")
                        continue
                    except ScenarioError as exc:  # this listing failed; the others still run
                        rows[key].errors[side] = str(exc)
                        log(f"round {rnd + 1} {side:6} {key}: {exc}")
                        continue
                    elapsed = time.perf_counter() - t0
                    if names != want[:len(names)] or (complete and len(names) != len(want)):
                        raise ScenarioError(f"{side} catalog ?n={n}: {len(names)} names, not the {len(want)} seeded")
                    if not complete:
                        # Stopped: what it took so far is a lower bound of the listing's time.
                        rows[key].at_least.add(side)
                    rows[key].add(side, elapsed, pages=pages, round=rnd, complete=complete, names=len(names))
                    log(f"round {rnd + 1} {side:6} {key} (n={n}, {pages} requests{'' if complete else ', stopped'}): "
                        f"{elapsed:.3f} s")
    return info


# ---------------------------------------------------------------------------------- main


def make_rows(args: argparse.Namespace) -> dict[str, Row]:
    size = f"{args.size_mib} MiB" if args.size_mib < 1024 else f"{args.size_mib / 1024:g} GiB"
    dist = "distribution (s3)"
    return {
        "push": Row("push", f"blob push, monolithic, {size}", "MB/s", dist, ">=", 1.0),
        "chunked": Row("chunked", f"blob push, chunked ({args.chunk_mib} MiB PATCHes), {size}", "MB/s", dist,
                       ">=", 1.0),
        "pull": Row("pull", f"blob pull, {size} (curl)", "MB/s", dist, ">=", 1.0),
        "catalog_pages": Row("catalog_pages", f"catalog of {args.repos:,} repositories, pages of "
                             f"n={args.page_size}", "s", dist),
        "catalog_one": Row("catalog_one", f"catalog of {args.repos:,} repositories, one n={args.repos} request",
                           "s", dist),
    }


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="s3-bench-", dir=args.tmpdir))
    rows = make_rows(args)
    only = set(args.only.split(",")) if args.only else {"transfer", "catalog"}
    if "transfer" in only:
        only |= {"push", "chunked", "pull"}
    parts = only & {"push", "chunked", "pull"}
    extra: dict = {"load_average_start": load_average()}
    failed = False
    bed = Bed(workdir, args.python)
    log(f"work dir {workdir}; load average {extra['load_average_start']}")
    try:
        bed.start()
        if parts:
            data = workdir / "random.bin"
            make_random_file(data, args.size_mib * MiB)
            source = BlobSource(data, args.size_mib * MiB)
            hub, dist = bed.registries("blobs")
            try:
                await transfer(hub, dist, source, bed.moto, args, rows, parts)
            except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
                failed = True
                for key in ("push", "chunked", "pull"):
                    rows[key].errors.setdefault("run", f"{type(exc).__name__}: {exc}")
                log(f"transfer failed: {exc}")
            hub.stop()
            dist.stop()
        if "catalog" in only:
            try:
                extra["catalog_seed"] = await catalog(bed, args, rows)
            except Exception as exc:  # noqa: BLE001
                failed = True
                for key in ("catalog_pages", "catalog_one"):
                    rows[key].errors.setdefault("run", f"{type(exc).__name__}: {exc}")
                log(f"catalog failed: {exc}")
    finally:
        bed.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    shown = [r for r in rows.values() if any(r.samples.values()) or r.errors]
    complete = report("s3_bench", shown, args, extra)
    return 0 if complete and not failed else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="blob size for push and pull (default 1024)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="PATCH size of the chunked push (default 16)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs per side, alternating (default 3)")
    ap.add_argument("--repos", type=int, default=10_000, help="repositories in the catalog (default 10000)")
    ap.add_argument("--page-size", type=int, default=1000, help="n of the paginated catalog listing (default 1000)")
    ap.add_argument("--catalog-rounds", type=int, default=3, help="catalog listings per side (default 3)")
    ap.add_argument("--dist-catalog-rounds", type=int, default=1,
                    help="catalog listings for distribution (default 1: one walk of 10,000 repositories on "
                         "moto takes minutes)")
    ap.add_argument("--dist-seed", choices=("minimal", "full"), default="minimal",
                    help="objects per repository in distribution's bucket: one `_layers` link (default), or "
                         "every object a push writes")
    ap.add_argument("--catalog-budget", type=float, default=600,
                    help="seconds after which a paginated listing stops following pages; its time then counts "
                         "as a lower bound (default 600)")
    ap.add_argument("--catalog-timeout", type=float, default=1800, help="seconds one catalog request may take")
    ap.add_argument("--only", help="any of push, chunked, pull, catalog; transfer = the first three "
                                   "(default: all)")
    common_options(ap, "8 MiB blobs, 5 MiB chunks, 1 round, 20 repositories")
    args = ap.parse_args()
    if args.smoke:
        (args.size_mib, args.chunk_mib, args.rounds, args.repos, args.page_size, args.catalog_rounds,
         args.dist_catalog_rounds) = 8, 5, 1, 20, 7, 1, 1
    if args.size_mib < 1 or args.chunk_mib < 5 or args.rounds < 1 or args.repos < 1:
        ap.error("sizes and counts must be positive; chunks at least 5 MiB (S3's part minimum)")
    if distribution_missing():
        return 2
    return run_loop(run(args))


if __name__ == "__main__":
    sys.exit(main())
