"""Retention benchmarks (issue 16).

1. dry-run: a retention dry run over 100,000 tags in 1,000 repositories (100 per repository: 70
   `sha-*` CI tags, 25 releases, 5 release candidates; a third pulled), on SQLite and on
   PostgreSQL, under the issue's policy ("newest 2 patches of each minor, anything pulled in 7
   days, newest 5 sha-*"). Target: 5 s each. The rows are written straight into a migrated
   database (a push of 100,000 manifests would take most of the run and measure something else);
   the run is `Retention.run(dry_run=True)`, as `daohub retention run --dry-run` calls it: the
   store's read of every tag with its pull time, the engine, the report. Median of --rounds.
2. pull-cost: manifest GET by tag against a real `daohub serve` with pull recording on
   (retention.record_pulls, the default) and off, in alternating repetitions (off, on, off, on,
   ...), each a fresh server, N concurrent clients over 100 tags for --seconds; req/s medians and
   the load average at each repetition. Target: on costs at most 5% of req/s.

    python3 bench/retention_bench.py                     # both, full size
    python3 bench/retention_bench.py --only dry-run --tags 10000
    python3 bench/retention_bench.py --only pull-cost --reps 5 --seconds 10

Results go to bench/results/retention_bench-<time>.json (and stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from hub.db import create_store  # noqa: E402
from hub.registry.retention import Retention  # noqa: E402
from tests.helpers.postgres import PostgresCluster  # noqa: E402
from tests.helpers.server import DaoHubProcess  # noqa: E402

DAY = 86400.0
OCI = "application/vnd.oci.image.manifest.v1+json"
POLICY = {"rules": [
    {"tags": {"semver": ">=0.0.0"}, "keep": {"semver_line": {"per": "minor", "count": 2}}},
    {"tags": {"glob": "**"}, "keep": {"pulled_within_days": 7}},
    {"tags": {"glob": "sha-*"}, "keep": {"latest_pushed": 5}},
]}


def _rows(repos: int, per_repo: int, now: float):
    """(repository rows, manifest rows, tag rows, pull rows) of the synthetic tenant `bench`."""
    repositories, manifests, tags, pulls = [], [], [], []
    for r in range(repos):
        repo_id = r + 1
        repositories.append((repo_id, f"bench/app{r:04d}", now))
        for i in range(per_repo):
            if i < per_repo * 70 // 100:
                tag = f"sha-{hashlib.sha1(f'{r}-{i}'.encode()).hexdigest()[:10]}"
            elif i < per_repo * 95 // 100:
                k = i - per_repo * 70 // 100
                tag = f"v1.{k // 5}.{k % 5}"
            else:
                tag = f"v2.0.0-rc.{i}"
            content = json.dumps({"schemaVersion": 2, "mediaType": OCI, "r": r, "i": i}).encode()
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            pushed = now - (per_repo - i) * 3600.0
            manifests.append((repo_id, digest, OCI, len(content), content, "application/vnd.oci.image.config.v1+json",
                              pushed))
            tags.append((repo_id, tag, digest, pushed))
            if i % 3 == 0:
                pulls.append((repo_id, tag, now - (i % 20) * DAY))
    return repositories, manifests, tags, pulls


async def _seed(store, rows) -> None:
    repositories, manifests, tags, pulls = rows
    if store.dialect == "sqlite":
        def write(conn):
            conn.executemany("INSERT INTO repositories (id, name, created_at) VALUES (?, ?, ?)", repositories)
            conn.executemany("INSERT INTO manifests (repository_id, digest, media_type, size, content, "
                             "artifact_type, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", manifests)
            conn.executemany("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)", tags)
            conn.executemany("INSERT INTO tag_pulls (repository_id, tag, pulled_at) VALUES (?, ?, ?)", pulls)

        await store._write(write)
        return

    async def write(conn):
        await conn.copy_records_to_table("repositories", records=repositories, columns=["id", "name", "created_at"])
        await conn.copy_records_to_table("manifests", records=manifests, columns=[
            "repository_id", "digest", "media_type", "size", "content", "artifact_type", "created_at"])
        await conn.copy_records_to_table("tags", records=tags, columns=["repository_id", "name", "digest",
                                                                         "updated_at"])
        await conn.copy_records_to_table("tag_pulls", records=pulls, columns=["repository_id", "tag", "pulled_at"])
        await conn.execute("ANALYZE")

    await store._write(write)


async def dry_run(url: str, args) -> dict:
    store = create_store(url, pool_min_size=1, pool_max_size=4)
    await store.open()
    try:
        await store.migrate()
        now = time.time()
        t0 = time.perf_counter()
        await _seed(store, _rows(args.repos, args.tags // args.repos, now))
        seeded = time.perf_counter() - t0
        await store.set_retention_policy("bench", POLICY, "bench")
        retention = Retention(types.SimpleNamespace(store=store))
        reads, runs, report = [], [], None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            await store.retention_inventory("bench")
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = await retention.run(dry_run=True, tenant="bench")
            runs.append(time.perf_counter() - t0)
        assert report is not None and not report.errors, report and report.errors
        return {"tags": report.counts["tags"], "would_delete": report.counts["deleted"],
                "seed_seconds": round(seeded, 2), "read_seconds_median": round(statistics.median(reads), 3),
                "dry_run_seconds": [round(x, 3) for x in runs],
                "dry_run_seconds_median": round(statistics.median(runs), 3), "load_average": os.getloadavg()}
    finally:
        await store.close()


async def _load(url: str, seconds: float, clients: int, tags: list[str]) -> float:
    done = 0
    stop = time.monotonic() + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = k
        while time.monotonic() < stop:
            async with session.get(f"{url}/v2/bench/app/manifests/{tags[i % len(tags)]}",
                                   headers={"Accept": OCI}) as r:
                await r.read()
                assert r.status == 200, r.status
            done += 1
            i += clients

    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))
    return done / (time.monotonic() - start)


async def _push_tags(url: str, tags: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        for n, tag in enumerate(tags):
            config = json.dumps({"n": n}).encode()
            digest = "sha256:" + hashlib.sha256(config).hexdigest()
            async with session.post(f"{url}/v2/bench/app/blobs/uploads/?digest={digest}", data=config) as r:
                assert r.status == 201, await r.text()
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": [], "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                "size": len(config)}}).encode()
            async with session.put(f"{url}/v2/bench/app/manifests/{tag}", data=body,
                                   headers={"Content-Type": OCI}) as r:
                assert r.status == 201, await r.text()


async def pull_cost(args, workdir: Path) -> dict:
    tags = [f"t{i:03d}" for i in range(100)]
    results: dict[str, list[float]] = {"off": [], "on": []}
    loads: list[tuple[str, list[float]]] = []
    for rep in range(args.reps * 2 + 1):  # off, on, off, ..., off: every "on" between two "off"
        side = "off" if rep % 2 == 0 else "on"
        data = workdir / f"pull-{rep}"
        env = {"DAOHUB_RETENTION_RECORD_PULLS": "true" if side == "on" else "false",
               "DAOHUB_LOG_ACCESS_LOG": "false", "DAOHUB_GC_ENABLED": "false",
               "DAOHUB_RETENTION_ENABLED": "false"}
        server = DaoHubProcess(data, env=env, python=args.python)
        server.start()
        try:
            await _push_tags(server.url, tags)
            await _load(server.url, 2.0, args.clients, tags)  # warm up
            rate = await _load(server.url, args.seconds, args.clients, tags)
        finally:
            server.stop()
        results[side].append(rate)
        loads.append((side, [round(x, 2) for x in os.getloadavg()]))
        print(f"  pull-cost rep {rep}: record_pulls {side}: {rate:.0f} req/s, load {loads[-1][1]}", flush=True)
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    # The machine is shared: its load moves between repetitions by more than the effect. Each "on"
    # repetition is compared with the "off" ones just before and after it, and the median taken.
    offs = results["off"]
    paired = [on_rate / statistics.mean(offs[i:i + 2]) for i, on_rate in enumerate(results["on"])]
    return {"req_per_s_off": [round(x) for x in results["off"]], "req_per_s_on": [round(x) for x in results["on"]],
            "median_off": round(off), "median_on": round(on), "cost_percent": round(100 * (off - on) / off, 2),
            "paired_on_over_off": [round(x, 3) for x in paired],
            "paired_cost_percent_median": round(100 * (1 - statistics.median(paired)), 2),
            "note_microseconds": _note_cost(), "load_average": loads, "clients": args.clients,
            "seconds": args.seconds}


def _note_cost() -> float:
    """What the hot path adds per request: one TagPulls.note (µs, median of 5 x 100,000 calls)."""
    from hub.registry.pulls import TagPulls

    pulls = TagPulls(None, flush_entries=10 ** 9)
    keys = [f"t{i:03d}" for i in range(100)]
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(100_000):
            pulls.note("bench/app", keys[i % 100], False)
        samples.append((time.perf_counter() - t0) / 100_000 * 1e6)
    return round(statistics.median(samples), 3)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["dry-run", "pull-cost"])
    ap.add_argument("--tags", type=int, default=100_000)
    ap.add_argument("--repos", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="pull-cost repetitions of each side")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python")
                    if (ROOT / ".venv").exists() else sys.executable)
    args = ap.parse_args()
    out: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
                 "load_average_start": os.getloadavg(), "params": vars(args)}
    with tempfile.TemporaryDirectory(prefix="retention-bench-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "dry-run"):
            out["dry_run_sqlite"] = await dry_run(f"sqlite:///{workdir}/bench.db", args)
            print("dry run, SQLite:", json.dumps(out["dry_run_sqlite"]), flush=True)
            cluster = PostgresCluster()
            cluster.start()
            try:
                out["dry_run_postgres"] = await dry_run(cluster.create_database(name="bench"), args)
            finally:
                cluster.destroy()
            print("dry run, PostgreSQL:", json.dumps(out["dry_run_postgres"]), flush=True)
        if args.only in (None, "pull-cost"):
            out["pull_cost"] = await pull_cost(args, workdir)
            print("pull cost:", json.dumps({k: v for k, v in out["pull_cost"].items() if k != "load_average"}),
                  flush=True)
    results = BENCH_DIR / "results" / f"retention_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
