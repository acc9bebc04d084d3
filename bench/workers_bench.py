"""server.workers (issue 20 target 5): manifest GET by tag and a mixed 32-client workload
against DaoHub with 1 and 2 workers and CNCF distribution, side by side in one run.

Method: the three servers start once (open registries, SQLite and filesystem for DaoHub, the
filesystem driver for distribution) and get the same small image. Each repetition runs every
(placement, workload) against the three targets in an order rotated by one per repetition, for
`--duration` seconds each with wrk -c32; the result is the median of the repetitions. Two
placements: `shared` (nothing pinned: client and servers share the machine, what one box gets)
and `split` (`taskset`: every server thread on CPU 0, wrk on CPU 1, so the server's numbers are
those of one core of its own: the per-core figure to scale from).

Workloads:
- manifest-get: GET /v2/bench/app/manifests/latest (Accept: OCI manifest).
- mixed: per 10 requests, 6 manifest GETs by tag, 2 GETs of a 4 KiB blob, 1 tags/list and 1
  manifest PUT by tag (one of 64 tags, the same bytes: a metadata write each time; on SQLite
  every process writes through the one database writer lock).

The load average is recorded at the start of every run; the machine is shared, so read the
numbers with it. Requires Debian's wrk and docker-registry (a clear message if missing).

    .venv/bin/python bench/workers_bench.py [--reps 5] [--duration 5] [--smoke]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(ROOT), str(BENCH_DIR)]

import requests  # noqa: E402

from benchlib import DISTRIBUTION_BIN, RESULTS_DIR, machine, tool_version, venv_python  # noqa: E402
from registry_bench import parse_wrk  # noqa: E402
from tests.helpers.server import DaoHubProcess, DistributionProcess  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO, TAG = "bench/app", "latest"
PUT_TAGS = 64

MIXED_LUA = r"""
local reqs = {}
local n = 0
init = function(args)
  local f = io.open(args[1], "rb"); local manifest = f:read("*a"); f:close()
  local repo, tag, blob, tags = args[2], args[3], args[4], tonumber(args[5])
  local get_m = wrk.format("GET", "/v2/" .. repo .. "/manifests/" .. tag, {["Accept"] = "%s"})
  local get_b = wrk.format("GET", "/v2/" .. repo .. "/blobs/" .. blob)
  local list = wrk.format("GET", "/v2/" .. repo .. "/tags/list")
  local puts = {}
  for i = 1, tags do
    puts[i] = wrk.format("PUT", "/v2/" .. repo .. "/manifests/t" .. i, {["Content-Type"] = "%s"}, manifest)
  end
  reqs = {get_m, get_m, get_m, get_m, get_m, get_m, get_b, get_b, list, puts}
end
request = function()
  n = n + 1
  local r = reqs[(n %% 10) + 1]
  if type(r) == "table" then return r[(math.floor(n / 10) %% #r) + 1] end
  return r
end
""" % (OCI_MANIFEST, OCI_MANIFEST)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def seed(url: str) -> dict:
    """One image (4 KiB layer, config, manifest) at bench/app:latest; its manifest and layer digest."""
    layer = os.urandom(4096)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    s = requests.Session()
    for blob in (layer, config):
        r = s.post(f"{url}/v2/{REPO}/blobs/uploads/", timeout=30)
        r.raise_for_status()
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else url + loc
        r = s.put(loc, params={"digest": sha256(blob)}, data=blob,
                  headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)}]}).encode()
    r = s.put(f"{url}/v2/{REPO}/manifests/{TAG}", data=manifest, headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    r = s.get(f"{url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert r.content == manifest
    return {"manifest": manifest, "layer": sha256(layer)}


def wait_for_workers(url: str, count: int) -> None:
    """Until new connections have reached every worker (/healthz names the one answering)."""
    deadline = time.monotonic() + 60
    while len({requests.get(url + "/healthz", timeout=10).json().get("worker") for _ in range(32)}) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not come up at {url}")
        time.sleep(0.1)


def threads_of(pid: int) -> list[int]:
    """Every thread of `pid` and of its descendants."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.append(int(task.name))
        children = (task / "children").read_text().split()
        for child in children:
            out += threads_of(int(child))
    return out


def pin(pid: int, cpus: set[int]) -> None:
    for tid in threads_of(pid):
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            pass


def wrk(url: str, workload: str, duration: float, conns: int, client_cpus: set[int] | None, lua: Path,
        manifest_file: Path, layer: str, strict: bool) -> dict:
    """One wrk run. `strict`: any non-2xx response is an error (DaoHub); otherwise it is counted
    (distribution 2.8 answers some concurrent PUTs of one tag with 500 UNKNOWN: a race in its
    filesystem tag links)."""
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
    if workload == "manifest-get":
        argv += ["-H", f"Accept: {OCI_MANIFEST}", f"{url}/v2/{REPO}/manifests/{TAG}"]
    else:
        argv += ["-s", str(lua), url, "--", str(manifest_file), REPO, TAG, layer, str(PUT_TAGS)]
    if client_cpus is not None:
        argv = ["taskset", "-c", ",".join(map(str, sorted(client_cpus)))] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    res = parse_wrk(out.stdout)
    if strict and res.get("non_2xx"):
        raise RuntimeError(f"{workload} on {url}: {res['non_2xx']} non-2xx responses")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--placements", default="shared,split")
    ap.add_argument("--smoke", action="store_true", help="1 rep of 1 s: does it run at all")
    ap.add_argument("--python", default=venv_python())
    ap.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    for tool, package in (("wrk", "wrk"), ("taskset", "util-linux"), (DISTRIBUTION_BIN, "docker-registry")):
        if not shutil.which(tool):
            print(f"{tool} not found: apt-get install -y {package}", file=sys.stderr)
            return 2
    if args.smoke:
        args.reps, args.duration = 1, 1.0
    cpus = sorted(os.sched_getaffinity(0))
    placements = args.placements.split(",")
    if "split" in placements and len(cpus) < 2:
        print("split placement needs 2 CPUs; running shared only", file=sys.stderr)
        placements = ["shared"]
    work = Path(tempfile.mkdtemp(prefix="dh-workers-bench-"))
    env = {"DAOHUB_LOG_ACCESS_LOG": "false", "DAOHUB_LOG_LEVEL": "WARNING", "DAOHUB_GC_ENABLED": "false"}
    servers = {
        "daohub-1w": DaoHubProcess(work / "dh1", python=args.python, env={**env, "DAOHUB_SERVER_WORKERS": "1"}),
        "daohub-2w": DaoHubProcess(work / "dh2", python=args.python, env={**env, "DAOHUB_SERVER_WORKERS": "2"}),
        "distribution": DistributionProcess(work / "dist", binary=DISTRIBUTION_BIN),
    }
    runs: list[dict] = []
    spread_counts: dict = {}
    try:
        seeds = {}
        for name, server in servers.items():
            server.start()
            seeds[name] = seed(server.url)
        wait_for_workers(servers["daohub-2w"].url, 2)
        spread = [requests.get(servers["daohub-2w"].url + "/healthz", timeout=10).json()["worker"]
                  for _ in range(320)]
        spread_counts = {str(w): spread.count(w) for w in (0, 1)}  # fresh connections per worker
        print(f"320 fresh connections to 2 workers: {spread_counts}", flush=True)
        lua = work / "mixed.lua"
        lua.write_text(MIXED_LUA)
        names = list(servers)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for placement in placements:
                server_cpus = {cpus[0]} if placement == "split" else set(cpus)
                client_cpus = {cpus[1]} if placement == "split" else None
                for server in servers.values():
                    pin(server.pid, server_cpus)
                for workload in ("manifest-get", "mixed"):
                    for name in order:
                        manifest_file = work / f"{name}.manifest.json"
                        manifest_file.write_bytes(seeds[name]["manifest"])
                        load = [round(x, 2) for x in os.getloadavg()]
                        res = wrk(servers[name].url, workload, args.duration, args.conns, client_cpus, lua,
                                  manifest_file, seeds[name]["layer"], strict=name != "distribution")
                        run = {"rep": rep, "placement": placement, "workload": workload, "target": name,
                               "load_avg": load, **res}
                        runs.append(run)
                        print(f"rep {rep} {placement:6} {workload:12} {name:13} {res['rps']:9.0f} req/s "
                              f"p99 {res.get('p99_ms')} ms  non-2xx {res.get('non_2xx')}  load {load[0]}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for placement in placements:
        for workload in ("manifest-get", "mixed"):
            row = {}
            for name in servers:
                sel = [r for r in runs if (r["placement"], r["workload"], r["target"]) == (placement, workload, name)]
                row[name] = {"rps_median": round(statistics.median(r["rps"] for r in sel)),
                             "p99_ms_median": statistics.median(r.get("p99_ms") or 0 for r in sel),
                             "rps_samples": [round(r["rps"]) for r in sel],
                             "non_2xx": sum(r.get("non_2xx", 0) for r in sel)}
            d1, d2, dist = (row[n]["rps_median"] for n in ("daohub-1w", "daohub-2w", "distribution"))
            row["ratios"] = {"2w_over_1w": round(d2 / d1, 2), "1w_over_distribution": round(d1 / dist, 2),
                             "2w_over_distribution": round(d2 / dist, 2)}
            summary[f"{placement}/{workload}"] = row
            print(f"{placement}/{workload}: " + "  ".join(f"{n} {row[n]['rps_median']}" for n in servers)
                  + f"  ratios {row['ratios']}")
    loads = [r["load_avg"][0] for r in runs]
    result = {
        "bench": "workers_bench", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {"reps": args.reps, "duration_s": args.duration, "conns": args.conns, "placements": placements,
                   "cpus": cpus, "put_tags": PUT_TAGS},
        "machine": machine(), "distribution": tool_version([DISTRIBUTION_BIN, "--version"]),
        "wrk": tool_version(["wrk", "--version"]),
        "load_avg_1m": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "fresh_connections_per_worker_of_320": spread_counts, "summary": summary, "runs": runs,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"workers_bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.smoke else ''}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
