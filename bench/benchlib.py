"""Shared pieces of bench/s3_bench.py and bench/proxy_bench.py.

The HTTP client pieces (monolithic push, pull, curl pull, blob source on disk) and the /proc
probes come from bench/registry_bench.py and the process starters from tests/helpers/, so
every benchmark drives registries the same way. What is added here: chunked push, image
push and pull (manifest plus every blob), repeated samples summarised by their median, and
the results file with the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _p in (str(ROOT), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import aiohttp
from registry_bench import (  # noqa: F401  (re-exported for the benchmarks)
    MB,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    SUFFIX_LEN,
    BlobSource,
    CpuMeter,
    ForeignLoad,
    MiB,
    ScenarioError,
    _expect,
    _with_digest,
    client_session,
    curl_pull,
    head_blob,
    log,
    machine,
    machine_busy_s,
    make_random_file,
    pull_blob,
    push_blob,
    put_manifest,
    sha256_digest,
    tool_version,
    tree_cpu_s,
)

from tests.helpers.server import DaoHubProcess, DistributionProcess, free_port  # noqa: F401

RESULTS_DIR = BENCH_DIR / "results"
DISTRIBUTION_BIN = os.environ.get("BENCH_DISTRIBUTION_BIN", "/usr/bin/docker-registry")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def venv_python() -> str:
    """The interpreter that runs `-m hub serve`: the checkout's .venv when there is one."""
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_loop(main: Awaitable[int]) -> int:
    # SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop every server the benchmark started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        import uvloop  # type: ignore[import-not-found]

        return uvloop.run(main)
    except ImportError:
        return asyncio.run(main)


# ------------------------------------------------------------------------------------ pushing blobs


async def push_blob_chunked(session: aiohttp.ClientSession, base: str, repo: str, digest: str,
                            source: BlobSource, suffix: bytes, chunk_size: int) -> None:
    """Chunked upload: POST, one PATCH per `chunk_size` bytes with Content-Range, then PUT ?digest=."""
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, (202,), "open upload")
        location = r.headers["Location"]
        await r.read()
    offset, length = 0, source.length
    while offset < length:
        end = min(length, offset + chunk_size)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(end - offset),
                   "Content-Range": f"{offset}-{end - 1}"}
        url = location if location.startswith("http") else base + location
        async with session.patch(url, data=source.stream_range(suffix, offset, end), headers=headers) as r:
            await _expect(r, (202,), f"PATCH {offset}-{end - 1}")
            location = r.headers["Location"]
            await r.read()
        offset = end
    async with session.put(_with_digest(location, base, digest), headers={"Content-Length": "0"}) as r:
        await _expect(r, (201,), "closing PUT")
        await r.read()


# ------------------------------------------------------------------------------------ images


@dataclass
class Layer:
    digest: str
    size: int
    body: Callable[[], AsyncIterator[bytes] | bytes]  # a fresh body per push


def small_layer(data: bytes) -> Layer:
    return Layer(sha256_digest(data), len(data), lambda: data)


def source_layer(source: BlobSource) -> Layer:
    digest, suffix = source.new_blob()
    return Layer(digest, source.length, lambda: source.stream(suffix))


def image_manifest(layers: list[Layer]) -> tuple[bytes, bytes]:
    """(config, manifest) for an OCI image of `layers`; the config names their digests, so every
    image with new layers has a new config and manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [x.digest for x in layers]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": x.digest, "size": x.size} for x in layers],
    }).encode()
    return config, manifest


async def push_image(session: aiohttp.ClientSession, base: str, repo: str, tag: str, layers: list[Layer]) -> str:
    """Push the layers (monolithic uploads, one at a time), a config and a tagged OCI manifest.
    Returns the manifest digest."""
    config, manifest = image_manifest(layers)
    for layer in layers:
        await push_blob(session, base, repo, layer.digest, layer.size, layer.body())
    await push_blob(session, base, repo, sha256_digest(config), len(config), config)
    await put_manifest(session, base, repo, tag, manifest)
    return sha256_digest(manifest)


async def pull_image(session: aiohttp.ClientSession, base: str, repo: str, ref: str, *, verify: bool = False,
                     parallel: int = 4, want_digest: str | None = None) -> int:
    """GET the manifest, then the config and every layer, `parallel` at a time (as skopeo and
    containerd pull layers concurrently). Lengths are always checked, sha256 with `verify`.
    Returns the bytes pulled."""
    async with session.get(f"{base}/v2/{repo}/manifests/{ref}",
                           headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"}) as r:
        await _expect(r, (200,), "manifest GET")
        body = await r.read()
    if want_digest and sha256_digest(body) != want_digest:
        raise ScenarioError(f"manifest {repo}:{ref}: digest {sha256_digest(body)} != {want_digest}")
    manifest = json.loads(body)
    blobs = [manifest["config"], *manifest["layers"]]
    gate = asyncio.Semaphore(parallel)

    async def one(desc: dict) -> None:
        async with gate:
            await pull_blob(session, base, repo, desc["digest"], desc["size"], verify=verify)

    await asyncio.gather(*(one(d) for d in blobs))
    return len(body) + sum(d["size"] for d in blobs)


# ------------------------------------------------------------------------------------ samples


@dataclass
class Row:
    """One measured quantity on two sides (`daohub` and `other`), each a list of samples.

    The headline is each side's median (the runs alternate sides, so a burst of foreign load
    lands on both alike). `ratio` is DaoHub's median over the other side's, in the row's own
    unit, and the target is a bound on it: `>= 1.0` for MB/s, `<= 1.15` for seconds."""

    key: str
    label: str
    unit: str
    other: str  # what DaoHub is compared with ("distribution", "direct pull from distribution", ...)
    target_op: str = ""  # ">=" or "<=" on the ratio, or "" for no target
    target: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=lambda: {"daohub": [], "other": []})
    details: dict[str, list[dict]] = field(default_factory=lambda: {"daohub": [], "other": []})
    errors: dict[str, str] = field(default_factory=dict)
    at_least: set[str] = field(default_factory=set)  # sides whose samples are lower bounds (stopped early)

    def add(self, side: str, value: float, **details: object) -> None:
        self.samples[side].append(value)
        self.details[side].append({"value": value, **details})

    def median(self, side: str) -> float | None:
        values = self.samples[side]
        return statistics.median(values) if values and side not in self.errors else None

    def bound(self, side: str) -> str:
        return "> " if side in self.at_least else ""

    def ratio_bound(self) -> str:
        """DaoHub/other when the other side's value is only a lower bound (of a time): at most this."""
        return "< " if "other" in self.at_least and "daohub" not in self.at_least else ""

    def ratio(self) -> float | None:
        d, o = self.median("daohub"), self.median("other")
        return d / o if d is not None and o else None

    def met(self) -> bool | None:
        r = self.ratio()
        if r is None or not self.target_op:
            return None
        return r >= self.target if self.target_op == ">=" else r <= self.target

    def to_json(self) -> dict:
        return {"key": self.key, "label": self.label, "unit": self.unit, "compared_with": self.other,
                "median": {"daohub": self.median("daohub"), "other": self.median("other")},
                "ratio_daohub_over_other": self.ratio(),
                "target": f"ratio {self.target_op} {self.target}" if self.target_op else None,
                "target_met": self.met(), "samples": self.samples, "runs": self.details, "errors": self.errors,
                "lower_bounds": sorted(self.at_least)}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "FAILED"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:,.1f} {unit}"


def render(rows: list[Row]) -> str:
    lines = ["| measurement | DaoHub (median) | compared with | its median | DaoHub / other | target | met |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row.ratio()
        met = row.met()
        lines.append(
            f"| {row.label} | {row.bound('daohub')}{fmt(row.median('daohub'), row.unit)} | {row.other} | "
            f"{row.bound('other')}{fmt(row.median('other'), row.unit)} | "
            f"{'-' if ratio is None else row.ratio_bound() + (f'{ratio:.2f}' if ratio >= 0.01 else f'{ratio:.1e}')} | "
            f"{f'{row.target_op} {row.target:g}' if row.target_op else '-'} | "
            f"{'-' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines)


def write_results(name: str, rows: list[Row], params: dict, extra: dict, *, smoke: bool,
                  out_dir: Path | None = None) -> Path:
    out_dir = out_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir / f"{name}-{stamp}{'-smoke' if smoke else ''}.json"
    out.write_text(json.dumps({
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "params": params, "machine": machine(),
        "distribution": tool_version([DISTRIBUTION_BIN, "--version"]),
        "daohub_git": _git_rev(), "rows": [r.to_json() for r in rows], **extra,
    }, indent=2))
    return out


def _git_rev() -> str:
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "hub", "storage_backends"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"
    return rev + ("+dirty" if dirty else "")


def common_options(ap: argparse.ArgumentParser, smoke: str) -> None:
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes ({smoke}): does it run at all")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (every server's log)")
    ap.add_argument("--tmpdir", help="where the work dir goes (default $TMPDIR)")
    ap.add_argument("--results-dir", type=Path, help="where the JSON goes (default bench/results)")
    ap.add_argument("--python", default=venv_python(), help="interpreter for `-m hub serve`")


def distribution_missing() -> bool:
    if Path(DISTRIBUTION_BIN).exists():
        return False
    print(f"{DISTRIBUTION_BIN} not found (apt-get install -y docker-registry)", file=sys.stderr)
    return True


def report(name: str, rows: list[Row], args: argparse.Namespace, extra: dict) -> bool:
    """Print the table, any errors and the load average; write the JSON. True when every row
    has samples on both sides and no errors."""
    extra["load_average_end"] = load_average()
    print(render(rows))
    complete = True
    for row in rows:
        complete &= not row.errors and all(row.samples.values())
        for side, err in row.errors.items():
            print(f"{row.label}: {side}: {err}")
    print(f"load average at start {extra['load_average_start']}, at end {extra['load_average_end']}")
    params = {k: v for k, v in vars(args).items() if k not in ("tmpdir", "keep", "results_dir")}
    out = write_results(name, rows, params, extra, smoke=args.smoke, out_dir=args.results_dir)
    log(f"results written to {out}")
    return complete
