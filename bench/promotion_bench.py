"""Promotion benchmark (issue 17: "within one DaoHub it moves no bytes: it creates blob links, in
well under a second for any image size").

Images of growing size are pushed into dev/app through the Registry (SQLite, or PostgreSQL with
--database-url), each as one big layer or as many small ones; then each is promoted --reps times
to a new prod/ repository through the service the API uses (hub/registry/promotion.py: gates read,
the copy plan, the blobs' locks, the one transaction), and the time of each promotion is taken.
What is measured is the copy, not HTTP. Beside it: the bytes storage holds before and after (a
promotion adds none).

    .venv/bin/python bench/promotion_bench.py                       # 1 MiB, 256 MiB, 1 GiB; 100 x 64 KiB layers
    .venv/bin/python bench/promotion_bench.py --database-url postgresql://...
    .venv/bin/python bench/promotion_bench.py --smoke

Results go to bench/results/promotion_bench-<time>.json (and stdout).
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
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from hub.app import open_registry  # noqa: E402
from hub.config import load_config  # noqa: E402
from hub.registry.promotion import Promotions  # noqa: E402

MIB = 1 << 20
CHUNK = 4 * MIB


def _blob(size: int, seed: bytes) -> tuple[str, list[bytes]]:
    """A blob of `size` pseudo-random bytes (cheap: a random MiB repeated with a counter), as chunks."""
    base = os.urandom(MIB)
    chunks, hasher, left, n = [], hashlib.sha256(), size, 0
    while left > 0:
        piece = (seed + n.to_bytes(8, "big") + base)[:min(CHUNK, left)]
        piece = piece * (min(CHUNK, left) // len(piece)) + piece[:min(CHUNK, left) % len(piece)]
        chunks.append(piece)
        hasher.update(piece)
        left -= len(piece)
        n += 1
    return "sha256:" + hasher.hexdigest(), chunks


async def _push(registry, repository: str, tag: str, layer_sizes: list[int]) -> tuple[str, int]:
    layers = []
    for i, size in enumerate(layer_sizes):
        digest, chunks = _blob(size, f"{tag}-{i}".encode())

        async def body(chunks=chunks):
            for c in chunks:
                yield c

        await registry.monolithic_upload(repository, digest, body(), content_length=size)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {
        "org.opencontainers.image.revision": "bench"}}, "rootfs": {"type": "layers", "diff_ids": [
            x["digest"] for x in layers]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()

    async def one():
        yield config

    await registry.monolithic_upload(repository, config_digest, one(), content_length=len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)}, "layers": layers}).encode()
    digest, _ = await registry.put_manifest(repository, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return str(digest), sum(layer_sizes)


def _stored_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "blobs").rglob("*") if p.is_file())


async def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dh-promo-bench-", dir=args.tmpdir))
    overrides = {"data_dir": str(work), "log": {"access_log": False}}
    if args.database_url:
        overrides["database"] = {"url": args.database_url}
    config = load_config(environ={}, overrides=overrides)
    shapes = ([("one layer", [MIB]), ("10 x 64 KiB", [64 << 10] * 10)] if args.smoke else
              [("one layer", [s * MIB]) for s in args.sizes_mib] + [(f"{args.layers} x 64 KiB",
                                                                      [64 << 10] * args.layers)])
    rows = []
    async with open_registry(config) as registry:
        promotions = Promotions(registry)
        await registry.store.set_promotion_gates("prod", {"gates": [{
            "repositories": "prod/**", "annotations": ["org.opencontainers.image.revision"]}]}, "bench")

        async def anything(_: str) -> bool:
            return True

        for n, (label, sizes) in enumerate(shapes):
            tag = f"t{n}"
            pushed = time.monotonic()
            digest, total = await _push(registry, "dev/app", tag, sizes)
            push_seconds = time.monotonic() - pushed
            before = _stored_bytes(work)
            seconds = []
            for rep in range(args.reps):
                started = time.perf_counter()
                record = await promotions.request("bench", f"dev/app:{tag}", f"prod/r{rep}:{tag}",
                                                  can_pull=anything, can_push=anything)
                seconds.append(time.perf_counter() - started)
                assert record.state == "completed" and record.digest == digest
            after = _stored_bytes(work)
            row = {"image": label, "bytes": total, "layers": len(sizes), "push_seconds": round(push_seconds, 3),
                   "promotion_seconds": [round(s, 4) for s in seconds],
                   "promotion_median_ms": round(1000 * statistics.median(seconds), 2),
                   "promotion_max_ms": round(1000 * max(seconds), 2),
                   "storage_bytes_added_by_promotions": after - before}
            rows.append(row)
            print(f"{label:>16} {total / MIB:9.1f} MiB {len(sizes):4d} layers: promotion median "
                  f"{row['promotion_median_ms']:8.2f} ms, max {row['promotion_max_ms']:8.2f} ms "
                  f"(push took {push_seconds:.2f} s), storage +{after - before} bytes", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return {"store": "postgres" if args.database_url else "sqlite", "reps": args.reps, "rows": rows,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 256, 1024], help="one-layer image sizes")
    ap.add_argument("--layers", type=int, default=100, help="layers of the many-layer image (64 KiB each)")
    ap.add_argument("--reps", type=int, default=5, help="promotions of each image")
    ap.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in the work dir)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: does it run at all")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--tmpdir", help="where the work dir goes (default $TMPDIR)")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"promotion_bench-{time.strftime('%Y%m%d-%H%M%S')}{'-smoke' if args.smoke else ''}.json"
    out.write_text(json.dumps({**result, "params": {k: v for k, v in vars(args).items() if k != "tmpdir"}}, indent=2))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
