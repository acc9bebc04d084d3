#!/usr/bin/env python3
"""DaoHub's pull-through cache vs pulling straight from the upstream and vs distribution's
pull-through cache, in one run.

    .venv/bin/python bench/proxy_bench.py [--layers 4] [--layer-mb 50] [--rounds 3]
    .venv/bin/python bench/proxy_bench.py --smoke        # tiny image: does it run at all

Starts CNCF distribution (Debian's `docker-registry`, filesystem storage) as the upstream,
DaoHub on its defaults (SQLite, filesystem) with `proxy.upstreams` naming that distribution,
and a second distribution configured as a pull-through cache of the first (a top-level
`proxy: {remoteurl: <upstream>}`, filesystem storage; distribution 2.8 has no `ttl` setting).
Every round pushes a new image (--layers layers of --layer-mb MB, new digests) to the
upstream, untimed, then times with one client:

- cold: the first pull of that image through DaoHub's path-prefix form
  (`/v2/<upstream>/<repo>/...`): manifest and every blob come from distribution through the
  cache, which stores them as it streams them;
- direct: the same pull straight from the upstream;
- cold through distribution's cache: the first pull of the same image through the
  distribution proxy (`/v2/<repo>/...`);
- warm: the next pulls through DaoHub (all of it from DaoHub's own storage), each paired
  with a direct pull, with a pull through distribution's cache once it has stored the image,
  and with a pull of the same image pushed into an ordinary DaoHub repository (for scale).

DaoHub's cold pull goes between the other two, and the order reverses every round; each
warm pair alternates which goes first. After each cache's cold pull the bench waits, untimed,
until that cache has stored every blob (DaoHub: `daohub_proxy_fetches_in_flight` back to 0;
distribution: every blob's `data` file in its storage), so no pull overlaps a cache still
writing. The pulls are the manifest, then config and layers 4 at a time with
`curl --parallel` into /dev/null (status and length checked), or with aiohttp
(`--client aiohttp`). One untimed aiohttp pull per round and cache checks every digest of the
cached copy. Targets: cold <= 1.15x direct, warm <= 1.0x direct; the rows against
distribution's cache have none. Prints a table (medians) and writes
bench/results/proxy_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from typing import Self

from benchlib import (
    DISTRIBUTION_BIN,
    DOCKER_MANIFEST,
    MB,
    OCI_MANIFEST,
    BlobSource,
    DaoHubProcess,
    DistributionProcess,
    Layer,
    Row,
    ScenarioError,
    _expect,
    client_session,
    common_options,
    distribution_missing,
    image_manifest,
    load_average,
    log,
    machine_busy_s,
    make_random_file,
    pull_image,
    push_image,
    report,
    run_loop,
    sha256_digest,
    source_layer,
    tree_cpu_s,
)
from registry_bench import skopeo_pull

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


def distribution_cache(data_dir: Path, upstream: DistributionProcess) -> DistributionProcess:
    """distribution as a pull-through cache of `upstream` (which refuses pushes); 2.8 keeps
    what it fetched for 7 days (not configurable in 2.8)."""
    return DistributionProcess(data_dir, binary=DISTRIBUTION_BIN, extra_config=f"proxy:\n  remoteurl: {upstream.url}\n")


async def proxy_metric(session, base: str, name: str) -> float:
    """A DaoHub proxy metric for the upstream (its /metrics), 0 when not reported yet."""
    async with session.get(f"{base}/metrics") as r:
        await _expect(r, (200,), "GET /metrics")
        text = await r.text()
    prefix = f'{name}{{upstream="{UPSTREAM}"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def image_blobs(layers: list[Layer], manifest_digest: str) -> list[tuple[str, int]]:
    """(digest, size) of everything a pull of the image brings: manifest, config, layers."""
    config, manifest = image_manifest(layers)
    return [(manifest_digest, len(manifest)), (sha256_digest(config), len(config)),
            *((x.digest, x.size) for x in layers)]


def not_stored(cache: DistributionProcess, blobs: list[tuple[str, int]]) -> list[str]:
    """The digests of `blobs` that distribution has not committed to its filesystem storage."""
    root = cache.data_dir / "storage" / "docker" / "registry" / "v2" / "blobs"
    missing = []
    for digest, size in blobs:
        alg, hex_ = digest.split(":", 1)
        path = root / alg / hex_[:2] / hex_ / "data"
        if not path.is_file() or path.stat().st_size != size:
            missing.append(digest)
    return missing


async def wait_until(done, what: str, timeout: float = 120.0) -> None:
    """Poll the coroutine function `done` until it returns true; ScenarioError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise ScenarioError(f"{what} not done after {timeout:.0f} s")
        await asyncio.sleep(0.05)


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


async def skopeo_pull_image(base: str, repo: str, ref: str, want_digest: str, out: Path) -> float:
    """`skopeo copy` of the image into an OCI layout (skopeo checks every digest and writes every
    byte, as a container engine does); returns the seconds skopeo took."""
    registry = SimpleNamespace(host=base.removeprefix("http://"))
    return await asyncio.to_thread(skopeo_pull, registry, f"{repo}:{ref}", out, ref, want_digest)


class CpuUse:
    """CPU seconds over a `with` block: each named server's process tree, the client (this
    process and the curl it ran), and the whole machine (every CPU's busy time)."""

    def __init__(self, **pids: int):
        self.pids = pids
        self.seconds: dict[str, float] = {}

    @staticmethod
    def _client() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def __enter__(self) -> Self:
        self._start = {name: tree_cpu_s(pid) for name, pid in self.pids.items()}
        self._client0, self._machine0 = self._client(), machine_busy_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = {f"{name}_cpu_s": round(tree_cpu_s(pid) - self._start[name], 3)
                        for name, pid in self.pids.items()}
        self.seconds["client_cpu_s"] = round(self._client() - self._client0, 3)
        self.seconds["machine_cpu_s"] = round(machine_busy_s() - self._machine0, 3)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="proxy-bench-", dir=args.tmpdir))
    extra: dict = {"load_average_start": load_average()}
    log(f"work dir {workdir}; load average {extra['load_average_start']}")
    size_mb = args.layers * args.layer_mb
    image = f"{args.layers} layers x {args.layer_mb} MB"
    rows = {
        "cold": Row("cold", f"cold pull through the cache, {image}", "s", "direct pull from distribution",
                    "<=", 1.15),
        "cold_dist_cache": Row("cold_dist_cache", f"cold pull through the cache, {image}", "s",
                               "cold pull through distribution as pull-through cache"),
        "warm": Row("warm", f"warm pull from the cache, {image}", "s", "direct pull from distribution",
                    "<=", 1.0),
        "warm_dist_cache": Row("warm_dist_cache", f"warm pull from the cache, {image}", "s",
                               "warm pull from distribution as pull-through cache"),
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
        cache = distribution_cache(workdir / "distribution-cache", dist)
        cache.start()
        started.append(cache)
        async with client_session() as session:

            async def pull(base: str, repo: str, ref: str, digest: str) -> float:
                if args.client == "skopeo":
                    return await skopeo_pull_image(base, repo, ref, digest, workdir / "skopeo-out")
                t0 = time.perf_counter()
                if args.client == "curl":
                    await curl_pull_image(session, base, repo, ref, digest)
                else:
                    await pull_image(session, base, repo, ref, want_digest=digest)
                return time.perf_counter() - t0

            def record(key: str, side: str, seconds: float, rnd: int, cpu: CpuUse | None = None) -> None:
                used = cpu.seconds if cpu is not None else {}
                rows[key].add(side, seconds, mb_per_s=round(size_mb / seconds, 1), round=rnd, **used)
                spent = " ".join(f"{name.removesuffix('_cpu_s')} {value:.2f}" for name, value in used.items())
                log(f"round {rnd + 1} {key:15} {side:6} {seconds:.3f} s ({size_mb / seconds:,.0f} MB/s)"
                    + (f" cpu s: {spent}" if spent else ""))

            async def timed_pull(base: str, repo: str, ref: str, digest: str, **pids: int) -> tuple[float, CpuUse]:
                with CpuUse(upstream=dist.pid, **pids) as cpu:
                    seconds = await pull(base, repo, ref, digest)
                return seconds, cpu

            async def daohub_settled() -> None:
                # Every fetch from the upstream committed to DaoHub's storage.
                async def idle() -> bool:
                    return await proxy_metric(session, hub.url, "daohub_proxy_fetches_in_flight") == 0

                await wait_until(idle, "DaoHub's fetches from the upstream")

            async def cache_settled(blobs: list[tuple[str, int]]) -> None:
                # distribution's cache stores a blob in the background, from a second download of its
                # own: a pull before that lands would be served from the upstream again.
                async def stored() -> bool:
                    return not not_stored(cache, blobs)

                await wait_until(stored, "distribution's cache storing the image")

            # Warm-up, untimed: every server and every path (miss, hit, direct) once on a small image.
            warm_layers = [source_layer(BlobSource(data, min(layer_len, 1 << 20)))]
            digest = await push_image(session, dist.url, "bench/warmup", "v1", warm_layers)
            for base, repo in ((hub.url, f"{UPSTREAM}/bench/warmup"), (cache.url, "bench/warmup"),
                               (dist.url, "bench/warmup")):
                await pull(base, repo, "v1", digest)
            await daohub_settled()
            await cache_settled(image_blobs(warm_layers, digest))
            await pull(hub.url, f"{UPSTREAM}/bench/warmup", "v1", digest)
            await pull(cache.url, "bench/warmup", "v1", digest)
            for rnd in range(args.rounds):
                tag = f"r{rnd}"
                layers = [source_layer(source) for _ in range(args.layers)]
                digest = await push_image(session, dist.url, "bench/img", tag, layers)
                blobs = image_blobs(layers, digest)
                cached = f"{UPSTREAM}/bench/img"
                if len(not_stored(cache, blobs)) != len(blobs):
                    raise ScenarioError("distribution's cache holds blobs of a new image: its pull would not be cold")
                # DaoHub in the middle, so it goes after each other side in one round and before it in the next.
                order = ["direct", "daohub", "dist_cache"]
                for side in order if rnd % 2 == 0 else order[::-1]:
                    if side == "daohub":
                        before = await proxy_metric(session, hub.url, "daohub_proxy_bytes_fetched_total")
                        seconds, cpu = await timed_pull(hub.url, cached, tag, digest, cache=hub.pid)
                        record("cold", side, seconds, rnd, cpu)
                        rows["cold_dist_cache"].add(side, seconds, mb_per_s=round(size_mb / seconds, 1), round=rnd,
                                                    **cpu.seconds)
                        fetched = await proxy_metric(session, hub.url, "daohub_proxy_bytes_fetched_total") - before
                        if fetched < args.layers * layer_len:
                            raise ScenarioError(f"the cold pull fetched {fetched:.0f} bytes from the upstream, "
                                                f"not the image's {args.layers * layer_len}: it was not cold")
                        await daohub_settled()
                    elif side == "direct":
                        seconds, cpu = await timed_pull(dist.url, "bench/img", tag, digest)
                        record("cold", "other", seconds, rnd, cpu)
                    else:
                        seconds, cpu = await timed_pull(cache.url, "bench/img", tag, digest, cache=cache.pid)
                        record("cold_dist_cache", "other", seconds, rnd, cpu)
                        await cache_settled(blobs)
                # The bytes each cache kept are the bytes the upstream has.
                await pull_image(session, hub.url, cached, tag, verify=True, want_digest=digest)
                await pull_image(session, cache.url, "bench/img", tag, verify=True, want_digest=digest)
                # Only now: layers already in DaoHub's storage would be linked, not fetched, by a cold pull.
                await push_image(session, hub.url, "local/img", tag, layers)
                others = (("warm", dist.url, "bench/img"), ("warm_dist_cache", cache.url, "bench/img"),
                          ("local", hub.url, "local/img"))
                for rep in range(args.warm_reps):
                    for key, other_base, other_repo in others:
                        order = [("daohub", hub.url, cached), ("other", other_base, other_repo)]
                        for side, base, repo in order if (rnd + rep) % 2 == 0 else order[::-1]:
                            record(key, side, await pull(base, repo, tag, digest), rnd)
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
    ap.add_argument("--client", choices=("curl", "aiohttp", "skopeo"), default="curl" if shutil.which("curl") else "aiohttp",
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
