#!/usr/bin/env python3
"""What token auth costs on the hot path: manifest GET by tag, open registry vs bearer token.

    python3 bench/auth_bench.py [--duration 10] [--rounds 2]

Starts DaoHub twice on loopback (auth off, then auth on with a user and a token), pushes one
small image, and drives `wrk -t1 -c32` at GET /v2/<repo>/manifests/<tag>, alternating the two
set-ups round by round. Prints req/s for both and the throughput lost to auth. Target: < 15 %.
A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.server import DaoHubProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def push_image(base: str, headers: dict) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    request("POST", f"{base}/v2/team/app/blobs/uploads/?digest={digest}", config, headers)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest, "size": len(config)}}).encode()
    request("PUT", f"{base}/v2/team/app/manifests/latest", manifest, {**headers, "Content-Type": OCI_MANIFEST})


def hub_cli(server: DaoHubProcess, *args: str, stdin: str = "") -> str:
    return subprocess.run([sys.executable, "-m", "hub", *args, "--data-dir", str(server.data_dir)], cwd=REPO_ROOT,
                          env=server.environment(), input=stdin, capture_output=True, text=True, check=True).stdout


def start(root: Path, auth: bool) -> tuple[DaoHubProcess, dict]:
    env = {"DAOHUB_AUTH_ENABLED": "true" if auth else "false", "DAOHUB_ADMIN_PASSWORD": "bench-admin-pw"}
    server = DaoHubProcess(root / ("auth" if auth else "open"), env=env).start()
    headers: dict = {}
    if auth:
        hub_cli(server, "tenant", "create", "team")
        hub_cli(server, "user", "create", "bench", "--password-stdin", stdin="bench-password\n")
        hub_cli(server, "tenant", "member", "team", "bench", "developer")
        import base64

        basic = base64.b64encode(b"bench:bench-password").decode()
        _, _, body = request("GET", f"{server.url}/auth/token?service=daohub&scope=repository:team/app:pull,push",
                             headers={"Authorization": f"Basic {basic}"})
        headers = {"Authorization": f"Bearer {json.loads(body)['token']}"}
    push_image(server.url, headers)
    return server, headers


def wrk(url: str, headers: dict, duration: float) -> float:
    argv = ["wrk", "-t1", "-c32", f"-d{duration:g}s"]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx responses under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    results: dict[str, list[float]] = {"open": [], "token": []}
    try:
        for round_ in range(args.rounds):
            for label, auth in (("open", False), ("token", True)):
                server, headers = start(root / f"r{round_}", auth)
                try:
                    url = f"{server.url}/v2/team/app/manifests/latest"
                    wrk(url, headers, 2)  # warm-up
                    rps = wrk(url, headers, args.duration)
                    results[label].append(rps)
                    print(f"round {round_ + 1} {label:5}: {rps:,.0f} req/s", file=sys.stderr)
                finally:
                    server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    import statistics

    # Run-to-run noise on this VM is about +-15% for one unchanged server, as large as the
    # effect measured; rounds alternate the two set-ups and the median decides.
    med_open, med_token = statistics.median(results["open"]), statistics.median(results["token"])
    best_open, best_token = max(results["open"]), max(results["token"])
    cost = 1 - med_token / med_open
    print(f"manifest GET by tag, wrk -t1 -c32, {args.duration:g}s x {args.rounds} alternating rounds:")
    print(f"  auth off (open registry): median {med_open:,.0f} req/s, best {best_open:,.0f}")
    print(f"  auth on (bearer token):   median {med_token:,.0f} req/s, best {best_token:,.0f}")
    print(f"  throughput lost to auth:  {cost:.1%} by median, {1 - best_token / best_open:.1%} by best "
          f"(target < 15%: {'met' if cost < 0.15 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
