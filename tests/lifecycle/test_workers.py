"""server.workers: 2, with real `daohub serve` processes, on SQLite and on PostgreSQL.

A connection stays with the worker that accepted it, and /healthz names that worker, so a test
pins a requests.Session (one connection) to each worker and sends each step where it wants it.
What holds across replicas must hold across workers: one upload started on one worker and
finished on the other, one blob from many concurrent pushes, one login limit, one upstream
fetch for a cold pull, periodic jobs in one process, and a worker killed with SIGKILL comes
back without losing anything.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.helpers.server import DaoHubProcess
from tests.proxy.conftest import (  # noqa: F401 (fixtures: the counting upstream of the cache tests)
    ADMIN, HUB, hub_log, hub_up, hub_upstream, proxy_root, token_hub)
from tests.proxy.util import content_requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DATABASES = ("sqlite", "postgres")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def worker_env(extra: dict | None = None) -> dict:
    return {
        "DAOHUB_SERVER_WORKERS": "2",
        "DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": ADMIN[1],
        "DAOHUB_AUTH_PASSWORD_MEMORY_KIB": "64", "DAOHUB_AUTH_PASSWORD_TIME_COST": "1",
        "DAOHUB_AUTH_LOGIN_FAILURE_LIMIT": "4",
        "DAOHUB_GC_INTERVAL_SECONDS": "0.5", "DAOHUB_GC_GRACE_SECONDS": "0",
        **(extra or {}),
    }


class Hub:
    """A DaoHubProcess with server.workers: 2 and sessions pinned to its workers."""

    def __init__(self, process: DaoHubProcess):
        self.process = process
        self._tokens: dict[str, str] = {}

    def session(self) -> requests.Session:
        s = requests.Session()
        s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
        return s

    def worker_of(self, s: requests.Session) -> int:
        return s.get(self.process.url + "/healthz", timeout=10).json()["worker"]

    def pinned(self, worker: int, tries: int = 200) -> requests.Session:
        """A session whose connection the given worker accepted (new connections until one is)."""
        for _ in range(tries):
            s = self.session()
            if self.worker_of(s) == worker:
                return s
            s.close()
        raise AssertionError(f"no connection reached worker {worker} in {tries} tries")

    def token(self, scope: str, s: requests.Session | None = None, auth=ADMIN) -> str:
        r = (s or requests).get(self.process.url + "/auth/token", params={"service": "daohub", "scope": scope},
                                auth=auth, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def headers(self, repo: str, s: requests.Session | None = None) -> dict[str, str]:
        if repo not in self._tokens:
            self._tokens[repo] = self.token(f"repository:{repo}:pull,push,delete", s)
        return {"Authorization": f"Bearer {self._tokens[repo]}"}

    def wait_for_workers(self) -> list[int]:
        """Both workers up (the parent logs it once both listen); their pids."""
        deadline = time.monotonic() + 60
        while True:
            pids = children(self.process.pid)
            if len(pids) == 2 and self.process.log_text().count("workers serving on port") >= 1:
                seen = {self.worker_of(self.session()) for _ in range(64)}
                if seen == {0, 1}:
                    return pids
            assert time.monotonic() < deadline, self.process.log_text()[-3000:]
            time.sleep(0.1)


def start_hub(tmp: Path, database: str, postgres_cluster, extra: dict | None = None) -> Hub:
    env = worker_env(extra)
    if database == "postgres":
        from tests.conftest import TEMPLATE_DB

        env["DAOHUB_DATABASE_URL"] = postgres_cluster.create_database(template=TEMPLATE_DB)
    hub = Hub(DaoHubProcess(tmp, env=env))
    hub.process.start()
    hub.wait_for_workers()
    return hub


@pytest.fixture(scope="module", params=DATABASES)
def hub(request, tmp_path_factory, token_hub):  # noqa: F811
    cluster = request.getfixturevalue("postgres_cluster") if request.param == "postgres" else None
    upstreams = json.dumps([hub_upstream(token_hub)])
    started = start_hub(tmp_path_factory.mktemp(f"workers-{request.param}"), request.param, cluster,
                        {"DAOHUB_PROXY_UPSTREAMS": upstreams})
    yield started
    started.process.stop()


def push_blob(hub: Hub, s: requests.Session, repo: str, data: bytes, finish: requests.Session | None = None) -> str:
    """POST on `s`, PUT (the whole body, monolithic) on `finish` (default the same session)."""
    digest = sha256(data)
    url = hub.process.url
    r = s.post(f"{url}/v2/{repo}/blobs/uploads/", headers=hub.headers(repo), timeout=30)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location = location if location.startswith("http") else url + location
    r = (finish or s).put(location, params={"digest": digest}, data=data,
                          headers={**hub.headers(repo), "Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 201, r.text
    return digest


def push_image(hub: Hub, sessions: list[requests.Session], repo: str, tag: str) -> tuple[str, dict[str, bytes]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    layers = [os.urandom(300_000), os.urandom(70_000)]
    blobs = {}
    for i, data in enumerate([config, *layers]):
        # Each upload starts on one worker and is finished on the other.
        start, finish = sessions[i % 2], sessions[(i + 1) % 2]
        blobs[push_blob(hub, start, repo, data, finish)] = data
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(d), "size": len(d)}
                   for d in layers]}).encode()
    r = sessions[1].put(f"{hub.process.url}/v2/{repo}/manifests/{tag}", data=manifest,
                        headers={**hub.headers(repo), "Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    return sha256(manifest), blobs


def pull_image(hub: Hub, s: requests.Session, repo: str, ref: str, headers: dict) -> tuple[str, dict[str, bytes]]:
    url = hub.process.url
    r = s.get(f"{url}/v2/{repo}/manifests/{ref}", headers={**headers, "Accept": OCI_MANIFEST}, timeout=60)
    assert r.status_code == 200, r.text
    manifest = r.json()
    blobs = {}
    for item in [manifest["config"], *manifest["layers"]]:
        b = s.get(f"{url}/v2/{repo}/blobs/{item['digest']}", headers=headers, timeout=60)
        assert b.status_code == 200, b.text
        assert sha256(b.content) == item["digest"]
        blobs[item["digest"]] = b.content
    return r.headers["Docker-Content-Digest"], blobs


def test_requests_land_on_both_workers_and_a_push_goes_through_both(hub):
    one, two = hub.pinned(0), hub.pinned(1)
    assert (hub.worker_of(one), hub.worker_of(two)) == (0, 1)
    digest, blobs = push_image(hub, [one, two], "team/app", "1")
    for s in (one, two):  # each worker serves what the other committed
        assert pull_image(hub, s, "team/app", "1", hub.headers("team/app")) == (digest, blobs)
    assert (hub.worker_of(one), hub.worker_of(two)) == (0, 1)  # the steps really were split


def test_concurrent_pushes_of_one_blob_from_many_clients_leave_one_blob(hub):
    data = os.urandom(1 << 20)
    digest = sha256(data)
    sessions = [hub.pinned(i % 2) for i in range(12)]
    hub.headers("team/same")

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        pushed = list(pool.map(lambda s: push_blob(hub, s, "team/same", data), sessions))
    assert pushed == [digest] * 12
    files = [p for p in hub.process.blob_files() if p.name == digest.split(":")[1]]
    assert len(files) == 1 and hashlib.sha256(files[0].read_bytes()).hexdigest() == digest.split(":")[1]
    uploads = [p for p in hub.process.data_dir.rglob("uploads/*") if p.is_file()]
    assert uploads == []
    for worker in (0, 1):
        r = hub.pinned(worker).head(f"{hub.process.url}/v2/team/same/blobs/{digest}",
                                    headers=hub.headers("team/same"), timeout=30)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)


def test_the_login_limiter_counts_failures_on_both_workers(hub):
    admin = hub.pinned(0)
    token = hub.token("", admin)
    name = f"limited{os.urandom(3).hex()}"
    r = admin.post(f"{hub.process.url}/api/v1/users", json={"username": name, "password": "Right-Password-1"},
                   auth=ADMIN, timeout=30)
    assert r.status_code in (200, 201), r.text
    assert token
    sessions = [hub.pinned(0), hub.pinned(1)]
    for i in range(4):  # limit 4 per account and address, two failures on each worker
        r = sessions[i % 2].get(f"{hub.process.url}/auth/token", params={"service": "daohub"},
                                auth=(name, "wrong"), timeout=30)
        assert r.status_code == 401, r.text
    for s in sessions:  # the right password is refused now, on either worker
        r = s.get(f"{hub.process.url}/auth/token", params={"service": "daohub"}, auth=(name, "Right-Password-1"),
                  timeout=30)
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) > 0


def test_a_token_one_worker_signs_is_good_on_the_other(hub):
    one, two = hub.pinned(0), hub.pinned(1)
    token = hub.token("repository:team/app:pull", one)
    r = two.get(f"{hub.process.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["tags"] == ["1"], r.text


def test_a_key_rotated_by_another_process_is_accepted_by_both_workers(hub):
    """`daohub keys rotate` (a process of its own, as a third worker would be): a token signed
    with the new key is good on both workers, each reloading its ring for the unknown kid."""
    import asyncio

    from auth.keys import KeyRing, SigningKey
    from auth.scopes import ResourceScope
    from auth.tokens import TokenIssuer
    from hub.config import load_config
    from hub.db import create_store

    kid = json.loads(hub.process.cli("keys", "rotate"))["kid"]
    env = {k: v for k, v in hub.process.environment().items() if k.startswith("DAOHUB_")}
    config = load_config(environ=env, overrides={"data_dir": str(hub.process.data_dir)})

    async def newest_key() -> SigningKey:
        store = create_store(config.database_url)
        await store.open()
        try:
            record = (await store.signing_keys())[0]
        finally:
            await store.close()
        return SigningKey.from_pem(record.private_pem)

    key = asyncio.run(newest_key())
    assert key.kid == kid
    issuer = TokenIssuer(KeyRing(key), config.auth.issuer, config.auth.service)
    token = issuer.issue("admin", [ResourceScope("repository", "team/app", frozenset({"pull"}))]).token
    for worker in (0, 1):
        r = hub.pinned(worker).get(f"{hub.process.url}/v2/team/app/tags/list",
                                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200 and r.json()["tags"] == ["1"], (worker, r.text)
    forged = TokenIssuer(KeyRing(SigningKey.generate()), config.auth.issuer, config.auth.service)
    bad = forged.issue("admin", [ResourceScope("repository", "team/app", frozenset({"pull"}))]).token
    for worker in (0, 1):  # and a key nobody stored is still refused
        r = hub.pinned(worker).get(f"{hub.process.url}/v2/team/app/tags/list",
                                   headers={"Authorization": f"Bearer {bad}"}, timeout=30)
        assert r.status_code == 401, (worker, r.text)


def test_a_cold_pull_on_both_workers_at_once_makes_one_upstream_fetch(hub, hub_up, hub_log, request):  # noqa: F811
    repo = f"up/flight-{request.node.callspec.id}"
    image = hub_up.push_image(repo, "1", (2 << 20, 1 << 20))
    cached = f"{HUB}/{repo}"
    headers = {"Authorization": f"Bearer {hub.token(f'repository:{cached}:pull')}"}
    sessions = [hub.pinned(i % 2) for i in range(8)]
    mark = hub_log.mark()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pulled = list(pool.map(lambda s: pull_image(hub, s, cached, "1", headers), sessions))
    for digest, blobs in pulled:
        assert digest == image.digest and blobs == image.blobs
    counts = content_requests(hub_log.since(mark), "GET")
    assert counts == {("GET", f"/v2/{repo}/manifests/1"): 1,
                      **{("GET", f"/v2/{repo}/blobs/{d}"): 1 for d in image.blobs}}, counts
    assert {hub.worker_of(s) for s in sessions} == {0, 1}


def samples(hub: Hub, via: int, name: str) -> dict[str, float]:
    """worker label -> the sum of `name`'s samples, from /metrics as worker `via` answers it."""
    from prometheus_client.parser import text_string_to_metric_families

    text = hub.pinned(via).get(hub.process.url + "/metrics", timeout=30).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                sums[sample.labels["worker"]] = sums.get(sample.labels["worker"], 0) + sample.value
    return sums


def test_metrics_from_either_worker_show_both_labelled(hub):
    for via in (0, 1):
        counts = samples(hub, via, "daohub_http_requests_total")
        assert set(counts) == {"0", "1"} and all(v > 0 for v in counts.values()), counts


def test_periodic_gc_runs_in_one_worker_only(hub):
    deadline = time.monotonic() + 60
    while samples(hub, 1, "daohub_gc_runs_total").get("0", 0) < 3:  # passes every 0.5 s in worker 0
        assert time.monotonic() < deadline, "worker 0 ran no GC pass"
        time.sleep(0.2)
    for via in (0, 1):
        assert samples(hub, via, "daohub_gc_runs_total").get("1", 0) == 0


def test_a_killed_worker_is_restarted_and_nothing_is_lost(hub):
    before = children(hub.process.pid)
    victim = before[1]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = children(hub.process.pid)
        if len(now) == 2 and victim not in now and hub.process.log_text().count("is up") >= 3:
            break
        assert time.monotonic() < deadline, hub.process.log_text()[-3000:]
        time.sleep(0.1)
    assert hub.process.running
    assert "died (signal SIGKILL)" in hub.process.log_text()
    one, two = hub.pinned(0), hub.pinned(1)  # both answer again
    for s in (one, two):  # what was pushed before is all there
        digest, blobs = pull_image(hub, s, "team/app", "1", hub.headers("team/app"))
        assert len(blobs) == 3
    push_image(hub, [one, two], "team/after-kill", "1")


@pytest.mark.parametrize("database", DATABASES)
def test_sigterm_drains_both_workers(tmp_path, database, request):
    cluster = request.getfixturevalue("postgres_cluster") if database == "postgres" else None
    hub = start_hub(tmp_path, database, cluster)
    try:
        pids = children(hub.process.pid)
        # An upload on each worker, its body half sent when SIGTERM arrives: both finish.
        data = os.urandom(4 << 20)
        digest = sha256(data)
        sessions = [hub.pinned(0), hub.pinned(1)]
        repo = "team/drain"
        hub.headers(repo)
        locations = []
        for s in sessions:
            r = s.post(f"{hub.process.url}/v2/{repo}/blobs/uploads/", headers=hub.headers(repo), timeout=30)
            assert r.status_code == 202
            locations.append(hub.process.url + r.headers["Location"])
        sent = [concurrent.futures.Future() for _ in sessions]

        def body(i):
            yield data[: len(data) // 2]
            sent[i].set_result(True)
            time.sleep(0.5)  # SIGTERM lands while the rest of the body is on its way
            yield data[len(data) // 2:]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            puts = [pool.submit(s.put, locations[i], params={"digest": digest}, data=body(i),
                                headers={**hub.headers(repo), "Content-Type": "application/octet-stream"},
                                timeout=60) for i, s in enumerate(sessions)]
            for f in sent:
                f.result(30)
            hub.process.proc.send_signal(signal.SIGTERM)
            assert [f.result(60).status_code for f in puts] == [201, 201]
        assert hub.process.proc.wait(60) == 0
        log = hub.process.log_text()
        assert log.count("daohub: stopped") >= 2 or log.count(" stopped") >= 2, log[-3000:]
        assert "all workers stopped" in log
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        hub.process.stop()


def test_workers_follow_a_parent_killed_with_sigkill(tmp_path):
    hub = start_hub(tmp_path, "sqlite", None)
    pids = children(hub.process.pid)
    hub.process.kill()  # SIGKILL to the parent alone: no forwarding happens
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
        time.sleep(0.1)
    assert "daohub: stopped" in hub.process.log_text()  # each drained (SIGTERM from the kernel)


def test_workers_that_keep_dying_at_start_make_the_parent_exit_non_zero(tmp_path):
    # Nothing listens on port 1: every worker dies opening the metadata store.
    process = DaoHubProcess(tmp_path, env=worker_env({"DAOHUB_DATABASE_URL": "postgresql://127.0.0.1:1/none"}),
                            startup_timeout=120)
    with pytest.raises(Exception, match="exited with code 1"):
        process.start()
    log = process.log_text()
    assert log.count("before it was up") == 3 and "keeps dying at start: giving up" in log, log[-3000:]
