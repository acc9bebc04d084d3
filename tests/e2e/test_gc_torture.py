"""GC under fire over HTTP, against real `daohub serve` processes: two replicas on PostgreSQL sharing
one moto S3 bucket, and one serve on SQLite and the filesystem with `daohub gc run` beside it.

Client workers push images that share layers (each blob monolithically, or mounted from another
worker's repository), push deleted images again, move tags by pushing another image onto them,
retag by digest, pull and delete, each request through a replica picked at random; all the while
every replica runs its own passes every 0.3 s with a 1 s grace period. Afterwards every tag that
should exist pulls whole through every replica (each blob checked against its digest; a few with
skopeo), and once a last pass with the sweep has run, storage and the blob rows hold exactly the
blobs the remaining tags reference, and every manifest no tag holds answers 404.

No request may answer 5xx or BLOB_UNKNOWN (nor MANIFEST_BLOB_UNKNOWN), with one exception the GC
contract allows: a manifest PUT more than a grace period after its first blob went up may find a
blob collected, as it should be; the push is then made again and counted, never hidden.

TORTURE_SECONDS (default 60: at 20 the SQLite variant's serve passes found nothing left by the CLI beside
them to delete, once) is the time each variant
runs; bench/gc_torture.sh runs them for 30 minutes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import urllib.request

import aiohttp
import pytest

from tests.db.test_gc_torture import image, sha
from tests.helpers.fixtures_s3 import moto_s3, stop_moto_servers  # noqa: F401 (fixtures)
from tests.helpers.scaleout import filesystem_backend, s3_backend
from tests.helpers.server import DaoHubProcess

from .test_gc import metadata, pull

pytestmark = pytest.mark.e2e

SECONDS = float(os.environ.get("TORTURE_SECONDS", "60"))
GRACE = 1.0
WORKERS = 4
IMAGES = 12
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GC_ENV = {"DAOHUB_GC_INTERVAL_SECONDS": "0.3", "DAOHUB_GC_GRACE_SECONDS": str(GRACE),
          "DAOHUB_GC_BATCH_SIZE": "20", "DAOHUB_REGISTRY_UPLOAD_PURGE_INTERVAL_SECONDS": "0"}


def referenced(n_of: dict[str, int]) -> set[str]:
    return {d for n in n_of.values() for d in image(n)[1]}


class Clients:
    """The workers' HTTP calls, each checked; what went wrong is collected, not raised, so one
    run reports every failure it saw."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], seed: int):
        self.session = session
        self.urls = urls
        self.rng = random.Random(seed)
        self.failures: list[str] = []
        self.counts = dict.fromkeys(("push", "repush_slow", "mount", "delete", "retag", "pull", "move"), 0)

    async def call(self, method: str, base: str, path: str, expect: tuple[int, ...], *, data: bytes | None = None,
                   headers: dict | None = None, allow_unknown: bool = False) -> tuple[int, dict, bytes]:
        async with self.session.request(method, base + path, data=data, headers=headers) as r:
            body = await r.read()
            status, got = r.status, dict(r.headers)
        unknown = b"BLOB_UNKNOWN" in body
        if status >= 500 or (unknown and not allow_unknown) or (status not in expect and not unknown):
            self.failures.append(f"{method} {path} on {base}: {status} {body[:300]!r}")
        return status, got, body

    async def push_blob(self, repo: str, digest: str, data: bytes, sources: list[str]) -> None:
        base = self.rng.choice(self.urls)
        if self.rng.random() < 0.3:
            source = self.rng.choice(sources)
            status, headers, _ = await self.call("POST", base, f"/v2/{repo}/blobs/uploads/?mount={digest}"
                                                 f"&from={source}", (201, 202))
            if status == 201:
                self.counts["mount"] += 1
                return
            if status == 202:
                location = headers["Location"]
                sep = "&" if "?" in location else "?"
                await self.call("PUT", base, f"{location}{sep}digest={digest}", (201,), data=data,
                                headers={"Content-Type": "application/octet-stream"})
                return
        await self.call("POST", base, f"/v2/{repo}/blobs/uploads/?digest={digest}", (201,), data=data,
                        headers={"Content-Type": "application/octet-stream"})

    async def push(self, repo: str, n: int, tag: str, sources: list[str]) -> None:
        body, blobs = image(n)
        for _attempt in range(5):
            started = time.monotonic()
            for digest, data in blobs.items():
                await self.push_blob(repo, digest, data, sources)
            status, headers, answer = await self.call(
                "PUT", self.rng.choice(self.urls), f"/v2/{repo}/manifests/{tag}", (201,), data=body,
                headers={"Content-Type": OCI_MANIFEST}, allow_unknown=True)
            if status == 201:
                if headers.get("Docker-Content-Digest") != sha(body):
                    self.failures.append(f"manifest PUT {repo}:{tag} answered {headers.get('Docker-Content-Digest')}")
                self.counts["push"] += 1
                return
            if b"BLOB_UNKNOWN" not in answer:
                return  # a failure call() recorded
            if time.monotonic() - started < GRACE:
                self.failures.append(f"PUT {repo}:{tag} within the grace period: {status} {answer[:300]!r}")
                return
            self.counts["repush_slow"] += 1  # slower than the grace period: its blobs may go
        self.failures.append(f"push of {repo}:{tag} outran the grace period five times")

    async def pull(self, repo: str, tag: str, n: int, base: str | None = None) -> None:
        body, blobs = image(n)
        bases = [base] if base else [self.rng.choice(self.urls)]
        for url in bases:
            status, headers, got = await self.call("GET", url, f"/v2/{repo}/manifests/{tag}", (200,),
                                                   headers={"Accept": OCI_MANIFEST})
            if status != 200:
                continue
            if got != body or headers.get("Docker-Content-Digest") != sha(body):
                self.failures.append(f"{repo}:{tag} on {url} is not image {n}")
            for digest in blobs:
                status, _, data = await self.call("GET", url, f"/v2/{repo}/blobs/{digest}", (200,))
                if status == 200 and sha(data) != digest:
                    self.failures.append(f"{repo}@{digest} on {url} does not hash to its name")
        self.counts["pull"] += 1


async def churn(urls: list[str], seconds: float) -> tuple[dict[tuple[str, str], int], set[tuple[str, int]],
                                                         Clients]:
    """The workers, for `seconds`: (repo, tag) -> the image it must hold; every (repo, image) pushed."""
    repos = [f"team/w{w}-{i}" for w in range(WORKERS) for i in range(2)]
    expected: dict[tuple[str, str], int] = {}
    pushed: set[tuple[str, int]] = set()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        clients = Clients(session, urls, seed=15)
        rng = clients.rng

        async def worker(w: int) -> None:
            mine = [r for r in repos if r.startswith(f"team/w{w}-")]
            others = [r for r in repos if r not in mine]
            while time.monotonic() < deadline:
                repo, tag = rng.choice(mine), f"t{rng.randrange(3)}"
                held = expected.get((repo, tag))
                op = rng.random()
                if op < 0.45 or held is None:
                    n = rng.randrange(IMAGES)
                    clients.counts["move"] += held is not None and held != n
                    await clients.push(repo, n, tag, others)
                    expected[(repo, tag)] = n
                    pushed.add((repo, n))
                elif op < 0.65:
                    # A delete by digest takes every tag of that manifest in the repository.
                    await clients.call("DELETE", rng.choice(urls), f"/v2/{repo}/manifests/{sha(image(held)[0])}",
                                       (202,))
                    for key in [k for k, v in expected.items() if k[0] == repo and v == held]:
                        del expected[key]
                    clients.counts["delete"] += 1
                elif op < 0.8:
                    other = f"t{rng.randrange(3)}"
                    digest = sha(image(held)[0])
                    status, _, body = await clients.call("GET", rng.choice(urls), f"/v2/{repo}/manifests/{digest}",
                                                         (200,), headers={"Accept": OCI_MANIFEST})
                    if status == 200:
                        await clients.call("PUT", rng.choice(urls), f"/v2/{repo}/manifests/{other}", (201,),
                                           data=body, headers={"Content-Type": OCI_MANIFEST})
                        expected[(repo, other)] = held
                        clients.counts["retag"] += 1
                else:
                    await clients.pull(repo, tag, held)

        await asyncio.gather(*(worker(w) for w in range(WORKERS)))
        # Past the grace period, every tag that should exist pulls whole through every replica.
        await asyncio.sleep(GRACE + 0.2)
        for (repo, tag), n in sorted(expected.items()):
            for url in urls:
                await clients.pull(repo, tag, n, base=url)
    return expected, pushed, clients


def gc_metric(replica: DaoHubProcess, sample: str) -> float:
    with urllib.request.urlopen(f"{replica.url}/metrics", timeout=30) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(sample + " "))


def check_the_end(replicas: list[DaoHubProcess], backend, database_url: str, expected, pushed, clients,
                  containers_env, tmp_path) -> None:
    assert clients.failures == [], "\n".join(clients.failures[:40])
    counts = clients.counts
    print(f"torture: {counts} in {SECONDS:g}s; {len(expected)} tags at the end")
    assert counts["push"] > 20 and min(counts["delete"], counts["mount"], counts["retag"]) > 2, counts

    # Every replica's own passes ran and collected while the clients worked.
    for replica in replicas:
        deleted = gc_metric(replica, 'daohub_gc_deleted_total{kind="blobs"}')
        assert gc_metric(replica, 'daohub_gc_runs_total{mode="run"}') > 5 and deleted > 0, replica.url
    # A last pass without grace, with the sweep: what nothing references goes, from storage and rows.
    done = json.loads(replicas[0].cli("gc", "run", "--json", "--grace-seconds", "0", "--sweep"))
    assert done["errors"] == [], done["errors"]
    keep = referenced(expected)
    assert set(backend.stored_blobs()) == keep
    every = {d for n in range(IMAGES) for d in image(n)[1]}
    assert metadata(database_url, lambda store: store.gc_known_blobs(sorted(every))) == keep

    async def after() -> list[str]:
        wrong = []
        async with aiohttp.ClientSession() as session:
            for url in [r.url for r in replicas]:
                for repo, n in sorted(pushed):
                    digest = sha(image(n)[0])
                    held = any(k[0] == repo and v == n for k, v in expected.items())
                    async with session.get(f"{url}/v2/{repo}/manifests/{digest}",
                                           headers={"Accept": OCI_MANIFEST}) as r:
                        if r.status != (200 if held else 404):
                            wrong.append(f"{repo}@{digest} (image {n}, held {held}) on {url}: {r.status}")
        return wrong

    assert asyncio.run(after()) == []
    for i, ((repo, tag), n) in enumerate(sorted(expected.items())[:2]):  # and with a real client
        body, blobs = image(n)
        assert pull(replicas[i % len(replicas)], f"{repo}:{tag}", tmp_path / f"pull-{i}", containers_env) \
            == (body, blobs)


def stop_all(replicas: list[DaoHubProcess]) -> None:
    codes = [replica.stop() for replica in replicas]
    assert codes == [0] * len(replicas), "\n".join(r.log_text()[-3000:] for r in replicas)


def test_two_replicas_on_postgres_and_s3(postgres_cluster, moto_s3, containers_env, tmp_path):  # noqa: F811
    database_url = postgres_cluster.create_database()
    backend = s3_backend(moto_s3, database_url)
    replicas = [DaoHubProcess(tmp_path / f"replica-{i}", env=backend.env(**GC_ENV)) for i in range(2)]
    for replica in replicas:
        replica.start()
    try:
        expected, pushed, clients = asyncio.run(churn([r.url for r in replicas], SECONDS))
        check_the_end(replicas, backend, database_url, expected, pushed, clients, containers_env, tmp_path)
    finally:
        stop_all(replicas)


def test_sqlite_serve_with_gc_run_beside_it(containers_env, tmp_path):
    """serve's own passes, and `daohub gc run` in processes of their own beside it (the pass lock
    and the writer that background writes give way to, across processes)."""
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'daohub.db'}"
    backend = filesystem_backend(data, database_url)  # serve's default storage, under its data dir
    server = DaoHubProcess(data, env=GC_ENV)
    server.start()
    stop = threading.Event()
    cli_errors: list[str] = []

    def beside() -> None:
        while not stop.wait(1.0):
            report = json.loads(server.cli("gc", "run", "--json", "--grace-seconds", str(GRACE)))
            cli_errors.extend(report["errors"])

    thread = threading.Thread(target=beside, daemon=True)
    thread.start()
    try:
        expected, pushed, clients = asyncio.run(churn([server.url], SECONDS))
        stop.set()
        thread.join()
        assert cli_errors == []
        check_the_end([server], backend, database_url, expected, pushed, clients, containers_env, tmp_path)
    finally:
        stop.set()
        stop_all([server])
