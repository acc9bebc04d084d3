"""How fast moto itself lists and deletes, so gc_bench.py's S3 numbers can be read honestly.

    .venv/bin/python bench/moto_rate.py [--objects 20000] [--reps 3]

gc_bench.py measures GC on S3 against one moto server, a Python process that may well be the
slowest part of the run. This starts the same moto (tests/helpers/moto.py) and, with no registry
in between, PUTs --objects small objects under blobs/ (16 at a time, as the bench seeds them),
lists them (ListObjectsV2 pages of 1,000) and deletes them (DeleteObjects of 1,000 keys, one call
at a time, as DaoHub's GC sends them). Medians of --reps runs: objects/s for each step. An S3 GC
rate near the delete+list rate here is moto's limit, not DaoHub's."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from s3_bench import s3_keys  # noqa: E402
from tests.helpers.moto import MotoServer  # noqa: E402


async def one_run(url: str, bucket: str, objects: int) -> dict[str, float]:
    keys = [f"blobs/sha256/{os.urandom(1).hex()}/{os.urandom(32).hex()}" for _ in range(objects)]
    gate = asyncio.Semaphore(16)
    rates = {}
    async with aiohttp.ClientSession() as session:
        async def put(key: str) -> None:
            async with gate, session.put(f"{url}/{bucket}/{key}", data=key.encode()) as r:
                assert r.status == 200, await r.text()

        t0 = time.monotonic()
        await asyncio.gather(*(put(k) for k in keys))
        rates["put"] = objects / (time.monotonic() - t0)
        t0 = time.monotonic()
        listed = await s3_keys(session, url, bucket, "blobs/")
        rates["list"] = objects / (time.monotonic() - t0)
        assert len(listed) == objects, len(listed)
        t0 = time.monotonic()
        for i in range(0, objects, 1000):
            body = ("<Delete><Quiet>true</Quiet>" + "".join(f"<Object><Key>{escape(k)}</Key></Object>"
                                                            for k in keys[i:i + 1000]) + "</Delete>").encode()
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            async with session.post(f"{url}/{bucket}?delete", data=body, headers={"Content-MD5": md5}) as r:
                assert r.status == 200, await r.text()
        rates["delete"] = objects / (time.monotonic() - t0)
        assert await s3_keys(session, url, bucket, "blobs/") == []
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="moto-rate-") as tmp:
        moto = MotoServer(Path(tmp) / "moto", log_name="moto.log")
        moto.start()
        try:
            runs = [asyncio.run(one_run(moto.url, moto.create_bucket(f"rate-{i}"), args.objects))
                    for i in range(args.reps)]
        finally:
            moto.stop()
    for step in ("put", "list", "delete"):
        samples = [round(r[step]) for r in runs]
        print(f"moto {step}: {statistics.median(samples):,.0f} objects/s (median of {samples})")
    print(f"load average {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
