"""Webhook benchmarks (issue 17).

1. push-cost: image pushes (a small layer, a config, a tagged manifest; 2 events each) per second
   against a real `daohub serve` (SQLite) with no webhook subscription and with 3 (all matching,
   to a receiver of the benchmark's own on 127.0.0.1), in alternating repetitions (none, three,
   none, ...), each a fresh server, N concurrent clients for --seconds. Target: with 3 the push
   rate is at most 5% lower. Each "three" repetition is compared with the "none" ones around it.
2. latency: one subscription; tag pushes (a manifest PUT moving a tag: one event each) paced at
   --rate per second for --seconds; for each event the time from its commit (the CloudEvent's
   `time`) to its receipt at the receiver. p50 and p95; target p95 < 2 s at 100 events/s.

    python3 bench/webhooks_bench.py                           # both
    python3 bench/webhooks_bench.py --only latency --rate 100 --seconds 20
    python3 bench/webhooks_bench.py --smoke                   # tiny sizes: does it run at all

Results go to bench/results/webhooks_bench-<time>.json (and stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import aiohttp  # noqa: E402
from benchlib import push_image, put_manifest, small_layer, venv_python  # noqa: E402

from hub.db import create_store  # noqa: E402
from tests.helpers.server import DaoHubProcess  # noqa: E402

SERVE_ENV = {"DAOHUB_LOG_ACCESS_LOG": "false", "DAOHUB_GC_ENABLED": "false", "DAOHUB_RETENTION_ENABLED": "false",
             "DAOHUB_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", "DAOHUB_LOG_LEVEL": "WARNING"}


class ReceiverProcess:
    """tests/events/receiver.py as a process of its own, logging what it accepts (one JSON line each)."""

    def __init__(self, workdir: Path, python: str):
        self.log = workdir / "received.jsonl"
        port_file = workdir / "receiver.port"
        self.proc = subprocess.Popen([python, "-m", "tests.events.receiver", str(self.log), str(port_file)],
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/hook"

    def accepted(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.endswith("}")]

    def clear(self) -> None:
        self.log.write_text("")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _subscribe(server: DaoHubProcess, url: str, count: int) -> None:
    """`count` platform-wide subscriptions to `url`, straight into the store (auth is off)."""
    store = create_store(f"sqlite:///{server.data_dir / 'daohub.db'}")
    await store.open()
    try:
        for i in range(count):
            await store.create_webhook(tenant=None, name=f"bench-{i}", url=url, event_types=[], repositories=[],
                                       secret="bench-secret-0123456", actor="bench")
    finally:
        await store.close()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _push_rate(base: str, seconds: float, clients: int) -> tuple[float, int]:
    done = 0
    stop = time.monotonic() + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            await push_image(session, base, f"bench/c{k}", f"t{i}", [small_layer(os.urandom(512))])
            i += 1
            done += 1

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))
    return done / (time.monotonic() - started), done


async def push_cost(args, workdir: Path, receiver: ReceiverProcess) -> dict:
    results: dict[str, list[float]] = {"none": [], "three": []}
    cpu: dict[str, list[float]] = {"none": [], "three": []}  # serve's CPU ms per push, deliveries included
    loads = []
    for rep in range(args.reps * 2 + 1):
        side = "none" if rep % 2 == 0 else "three"
        server = DaoHubProcess(workdir / f"push-{rep}", env=SERVE_ENV, python=args.python)
        server.start()
        try:
            if side == "three":
                await _subscribe(server, receiver.url, 3)
            await _push_rate(server.url, min(1.0, args.seconds / 2), args.clients)  # warm up
            await asyncio.sleep(args.settle)  # the warm-up's deliveries go out
            cpu_before = _cpu_seconds(server.pid)
            rate, pushes = await _push_rate(server.url, args.seconds, args.clients)
            await asyncio.sleep(args.settle * 1.5)  # and these (their CPU counts)
            cpu[side].append(round((_cpu_seconds(server.pid) - cpu_before) * 1000 / pushes, 2))
        finally:
            server.stop()
        results[side].append(rate)
        loads.append((side, [round(x, 2) for x in os.getloadavg()]))
        print(f"  push-cost rep {rep}: {side} subscriptions: {rate:.1f} pushes/s, serve CPU {cpu[side][-1]} ms "
              f"per push, load {loads[-1][1]}", flush=True)
    none = results["none"]
    paired = [r / statistics.mean(none[i:i + 2]) for i, r in enumerate(results["three"])]
    return {"pushes_per_s_none": [round(x, 1) for x in none],
            "pushes_per_s_three": [round(x, 1) for x in results["three"]],
            "paired_three_over_none": [round(x, 3) for x in paired],
            "paired_cost_percent_median": round(100 * (1 - statistics.median(paired)), 2),
            "serve_cpu_ms_per_push_none": cpu["none"], "serve_cpu_ms_per_push_three": cpu["three"],
            "target": "cost <= 5%", "target_met": statistics.median(paired) >= 0.95,
            "load_average": loads, "clients": args.clients, "seconds": args.seconds}


async def latency(args, workdir: Path, receiver: ReceiverProcess) -> dict:
    receiver.clear()
    server = DaoHubProcess(workdir / "latency", env=SERVE_ENV, python=args.python)
    server.start()
    try:
        await _subscribe(server, receiver.url, 1)
        base = server.url
        async with aiohttp.ClientSession() as session:
            await push_image(session, base, "bench/app", "seed", [small_layer(b"latency")])
            async with session.get(f"{base}/v2/bench/app/manifests/seed",
                                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}) as r:
                manifest = await r.read()
            total = int(args.rate * args.seconds)
            start = time.monotonic()
            sends = []
            for i in range(total):  # paced: event i is sent at start + i / rate
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sends.append(asyncio.create_task(put_manifest(session, base, "bench/app", f"l{i}", manifest)))
            await asyncio.gather(*sends)
            achieved = total / (time.monotonic() - start)
        deadline = time.monotonic() + 60
        while len({r["id"] for r in receiver.accepted() if r["type"] == "io.daohub.tag.pushed"
                   and r["data"]["tag"].startswith("l")}) < total:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        server.stop()
    delays = []
    for event in receiver.accepted():
        if event["type"] == "io.daohub.tag.pushed" and event["data"]["tag"].startswith("l"):
            committed = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
            delays.append(event["at"] - committed)
    delays.sort()
    by_type: dict[str, int] = {}
    for event in receiver.accepted():
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1

    def q(p: float) -> float | None:
        return round(delays[min(len(delays) - 1, int(p * len(delays)))], 3) if delays else None

    return {"events": total, "received": len(delays), "accepted_by_type": by_type, "rate_asked": args.rate, "rate_achieved": round(achieved, 1),
            "p50_seconds": q(0.50), "p95_seconds": q(0.95), "max_seconds": q(1.0),
            "target": "p95 < 2 s", "target_met": bool(delays) and q(0.95) < 2.0 and len(delays) == total}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["push-cost", "latency"])
    ap.add_argument("--reps", type=int, default=3, help="push-cost repetitions of the 'three' side")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=100.0, help="latency: events per second")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (1 rep, 1 s, 20 events/s): does it run at all")
    ap.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    ap.add_argument("--python", default=venv_python())
    args = ap.parse_args()
    args.settle = 1.0  # seconds for a repetition's deliveries to go out (webhooks.poll_interval_seconds)
    if args.smoke:
        args.reps, args.seconds, args.clients, args.rate, args.settle = 1, 1.0, 2, 20.0, 0.3
    out: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
                 "load_average_start": os.getloadavg(), "params": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as tmp:
        receiver = ReceiverProcess(Path(tmp), args.python)
        try:
            if args.only in (None, "push-cost"):
                out["push_cost"] = await push_cost(args, Path(tmp), receiver)
                print("push cost:", json.dumps({k: v for k, v in out["push_cost"].items() if k != "load_average"}),
                      flush=True)
            if args.only in (None, "latency"):
                out["latency"] = await latency(args, Path(tmp), receiver)
                print("latency:", json.dumps(out["latency"]), flush=True)
        finally:
            receiver.stop()
    out["load_average_end"] = os.getloadavg()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results = args.results_dir / f"webhooks_bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.smoke else ''}.json"
    results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
