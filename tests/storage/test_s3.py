"""S3/OSS driver behaviour beyond the conformance suite, against moto's real S3 server.

Resume across driver instances (as replicas do), multipart writes and part-copy moves,
ranged and resumed reads, pagination, presigned redirects fetched for real (also through
the hub's blob GET), retries shown with a fault-injecting proxy in front of moto, no
visible partial object after a failure, and clean errors for wrong credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import textwrap

import aiohttp
import pytest

import storage_backends
import storage_backends.s3
from hub.app import create_app
from hub.config import load_config
from storage_backends import InvalidOffsetError, PathNotFoundError, StorageError
from storage_backends.s3 import MIN_PART_SIZE, STATE_SUFFIX, OssDriver, OssParams, S3Driver, S3Params
from tests.helpers.faultproxy import S3_INTERNAL_ERROR, S3_SLOW_DOWN, FaultProxy, Seen, match, self_signed_tls
from tests.helpers.fixtures_s3 import OSS_REGION, s3_options
from tests.helpers.moto import REGION
from tests.helpers.server import free_port

MiB = 1 << 20


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def is_complete(seen: Seen) -> bool:  # CompleteMultipartUpload
    return seen.method == "POST" and "uploadId" in seen.query


def is_copy(seen: Seen) -> bool:  # CopyObject or UploadPartCopy
    return seen.method == "PUT" and "x-amz-copy-source" in seen.headers


def is_put_object(seen: Seen) -> bool:
    return seen.method == "PUT" and "partNumber" not in seen.query and "x-amz-copy-source" not in seen.headers


async def bucket_keys(driver) -> list[str]:
    page = await driver.inner._call("list_objects_v2", "", Prefix="")
    return sorted(obj["Key"] for obj in page.get("Contents", []))


async def bucket_uploads(driver) -> list[str]:
    page = await driver.inner._call("list_multipart_uploads", "", Prefix="")
    return sorted(upload["Key"] for upload in page.get("Uploads", []))


async def read_all(driver, path: str, offset: int = 0, chunk_size: int = MiB) -> bytes:
    return b"".join([chunk async for chunk in await driver.reader(path, offset, chunk_size)])


@pytest.fixture
async def open_driver(moto_s3):
    """Factory for drivers on one fresh bucket; teardown requires the bucket to be empty,
    with no multipart upload left behind."""
    bucket = moto_s3.create_bucket()
    opened = []

    def make(kind: str = "s3", **overrides):
        options = s3_options(kind, server=moto_s3, bucket=bucket)
        options.update(overrides)
        driver = storage_backends.create(kind, **options)
        opened.append(driver)
        return driver

    yield make
    checker = make(max_attempts=3)
    try:
        assert await bucket_keys(checker) == [], "test left objects in the bucket"
        assert await bucket_uploads(checker) == [], "test left multipart uploads in the bucket"
    finally:
        for driver in opened:
            await driver.aclose()


@pytest.fixture
def proxy(moto_s3):
    with FaultProxy(moto_s3.url) as running:
        yield running


# Writers across replicas -------------------------------------------------------------------------


async def test_writer_resumed_by_other_instances_with_a_small_tail(open_driver):
    replica_a, replica_b = open_driver(), open_driver()
    data = data_of(11 * MiB + 10)
    first, second, third = data[: 7 * MiB], data[7 * MiB : 11 * MiB], data[11 * MiB :]

    writer = await replica_a.writer("uploads/u1/data")
    await writer.write(first)  # one 5 MiB part goes up, 2 MiB stay in memory
    await writer.close()
    assert await bucket_uploads(replica_a) == ["uploads/u1/data"]
    state = await replica_a.inner._head("uploads/u1/data", "uploads/u1/data" + STATE_SUFFIX)
    assert state["ContentLength"] == 2 * MiB < MIN_PART_SIZE, "only the tail is kept beside the upload"
    assert (await replica_b.stat("uploads/u1/data")).size == 7 * MiB  # a pending writer has a size
    with pytest.raises(PathNotFoundError):
        await replica_b.get_content("uploads/u1/data")  # but is not readable before commit

    writer = await replica_b.writer("uploads/u1/data", append=True)
    assert writer.size == 7 * MiB
    await writer.write(second)
    assert writer.size == 11 * MiB
    await writer.close()

    writer = await replica_a.writer("uploads/u1/data", append=True)
    assert writer.size == 11 * MiB
    await writer.write(third)
    await writer.commit()

    assert hashlib.sha256(await read_all(replica_b, "uploads/u1/data")).digest() == hashlib.sha256(data).digest()
    assert await bucket_keys(replica_a) == ["uploads/u1/data"], "the writer state is gone after commit"
    assert await bucket_uploads(replica_a) == []
    await replica_a.delete("uploads")


async def test_close_uploads_a_tail_big_enough_to_be_a_part(open_driver):
    """With parts bigger than S3's minimum, a closed tail of 5 MiB or more becomes a part."""
    driver = open_driver(part_size_bytes=8 * MiB)
    data = data_of(6 * MiB + 3)
    writer = await driver.writer("up/data")
    await writer.write(data[: 5 * MiB + 1])
    await writer.close()
    state = await driver.inner._head("up/data", "up/data" + STATE_SUFFIX)
    assert state["ContentLength"] == 0
    writer = await open_driver(part_size_bytes=8 * MiB).writer("up/data", append=True)
    assert writer.size == 5 * MiB + 1
    await writer.write(data[5 * MiB + 1 :])
    await writer.commit()
    assert await driver.get_content("up/data") == data
    await driver.delete("up")


async def test_a_part_uploaded_by_a_process_that_died_before_close_is_ignored(open_driver):
    """The size a resumed writer reports is the one the last close() recorded."""
    replica_a, replica_b = open_driver(), open_driver()
    data = data_of(8 * MiB)
    writer = await replica_a.writer("up/data")
    await writer.write(data[: 3 * MiB])
    await writer.close()
    doomed = await replica_a.writer("up/data", append=True)
    await doomed.write(data[3 * MiB :])  # uploads part 1 of a new multipart upload, then "dies"
    assert await bucket_uploads(replica_a) == ["up/data"]
    writer = await replica_b.writer("up/data", append=True)
    assert writer.size == 3 * MiB
    await writer.write(b"other ending")
    await writer.commit()
    assert await replica_b.get_content("up/data") == data[: 3 * MiB] + b"other ending"
    await replica_b.delete("up")  # also aborts the dead process's upload


async def test_multipart_round_trip_several_parts_with_bounded_buffer(open_driver):
    driver = open_driver()
    data = data_of(16 * MiB + 123, seed=2)
    writer = await driver.writer("blob")
    sizes = [1, 65537, 3 * MiB - 5, 7 * MiB + 1, MiB]
    position = 0
    while position < len(data):
        chunk = data[position : position + sizes[position % len(sizes)]]
        await writer.write(chunk)
        position += len(chunk)
        assert len(writer._tail) < driver.inner.part_size, "never more than one part in memory"
    await writer.commit()
    head = await driver.inner._head("blob", "blob")
    assert head["ETag"].strip('"').endswith("-4"), "three full parts and the tail"
    got = hashlib.sha256()
    async for chunk in await driver.reader("blob", 0, 3 * MiB):
        assert len(chunk) <= 3 * MiB
        got.update(chunk)
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    await driver.delete("blob")


async def test_append_to_a_committed_object(open_driver):
    """Its bytes are copied server-side into a new upload; no copied part may be short."""
    driver = open_driver(multipart_copy_part_size=5 * MiB)
    small, big = data_of(1000), data_of(12 * MiB, seed=3)
    for path, data in (("c/small", small), ("c/big", big)):
        await driver.put_content(path, data)
        writer = await driver.writer(path, append=True)
        assert writer.size == len(data)
        await writer.write(b"+more")
        await writer.commit()
        assert await driver.get_content(path) == data + b"+more"
    await driver.delete("c")


# Moves ------------------------------------------------------------------------------------------


async def test_move_by_part_copy_and_by_copy_object(open_driver):
    driver = open_driver(multipart_copy_threshold=6 * MiB, multipart_copy_part_size=5 * MiB)
    big, small = data_of(12 * MiB + 7, seed=4), data_of(MiB, seed=5)
    await driver.put_content("m/big", big)
    await driver.put_content("m/small", small)
    await driver.move("m/big", "m/moved/big")
    await driver.move("m/small", "m/moved/small")
    assert await driver.get_content("m/moved/big") == big
    assert await driver.get_content("m/moved/small") == small
    assert (await driver.inner._head("", "m/moved/big"))["ETag"].strip('"').endswith("-2"), "5 and 7 MiB parts"
    assert "-" not in (await driver.inner._head("", "m/moved/small"))["ETag"], "one CopyObject"
    assert await driver.list("m") == ["m/moved"]
    always_parts = open_driver(multipart_copy_threshold=0)
    for name, data in (("empty", b""), ("one", b"1")):  # an empty object cannot be copied in parts
        await always_parts.put_content(f"m/{name}", data)
        await always_parts.move(f"m/{name}", f"m/moved/{name}")
        assert await always_parts.get_content(f"m/moved/{name}") == data
    assert "-" in (await driver.inner._head("", "m/moved/one"))["ETag"]
    await driver.delete("m")


# Reads ------------------------------------------------------------------------------------------


async def test_ranged_reads_of_a_multipart_object(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url)
    data = data_of(11 * MiB, seed=6)
    writer = await driver.writer("r/blob")
    await writer.write(data)
    await writer.commit()
    for offset in (0, 1, 5 * MiB - 1, 5 * MiB, 10 * MiB + 17, len(data) - 1, len(data)):
        assert await read_all(driver, "r/blob", offset, chunk_size=MiB + 1) == data[offset:]
    ranges = [seen.headers.get("Range") for seen in proxy.requests if seen.method == "GET"]
    assert f"bytes={5 * MiB}-" in ranges and ranges.count(None) == 1
    with pytest.raises(InvalidOffsetError):
        await driver.reader("r/blob", len(data) + 1)
    with pytest.raises(InvalidOffsetError):
        await driver.reader("r/blob", -1)
    await driver.delete("r")


async def test_a_read_broken_mid_body_resumes_where_it_broke(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url)
    data = data_of(3 * MiB + 5, seed=7)
    await driver.put_content("r/blob", data)
    proxy.cut(after_bytes=MiB + 1000, when=match(method="GET"), times=2)
    assert await read_all(driver, "r/blob", 100, chunk_size=256 * 1024) == data[100:]
    gets = [seen for seen in proxy.requests if seen.method == "GET"]
    assert [g.headers.get("Range") for g in gets] == [
        "bytes=100-", f"bytes={100 + MiB + 1000}-", f"bytes={100 + 2 * (MiB + 1000)}-"]
    assert all(g.headers.get("If-Match") for g in gets[1:]), "the rest must come from the same object"
    await driver.delete("r")


# Listing ----------------------------------------------------------------------------------------


async def test_list_walk_and_delete_follow_pages(open_driver):
    driver = open_driver(list_page_size=7, delete_batch_size=5)
    paths = [f"p/d{i % 3}/k{i:02d}" for i in range(30)] + [f"p/top{i:02d}" for i in range(9)]
    for path in paths:
        await driver.put_content(path, b"x")
    writer = await driver.writer("p/d0/pending")
    await writer.write(b"12345")
    await writer.close()
    assert await driver.list("p/d1") == sorted(p for p in paths if p.startswith("p/d1/"))
    assert await driver.list("p") == ["p/d0", "p/d1", "p/d2"] + [f"p/top{i:02d}" for i in range(9)]
    walked = [(info.path, info.size) async for info in driver.walk("p")]
    assert walked == sorted([(p, 1) for p in paths] + [("p/d0/pending", 5)])
    await driver.delete("p")
    assert await bucket_keys(driver) == []


async def test_list_of_more_than_a_thousand_keys(open_driver):
    """moto, like S3, answers 1000 keys per page."""
    driver = open_driver()
    names = [f"many/k{i:04d}" for i in range(1003)]
    pending = list(names)

    async def put_some():
        while pending:
            await driver.put_content(pending.pop(), b"")

    await asyncio.gather(*(put_some() for _ in range(8)))
    assert await driver.list("many") == names
    await driver.delete("many")
    assert await bucket_keys(driver) == []


# Redirects --------------------------------------------------------------------------------------


async def fetch(url: str, method: str = "GET") -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, await response.read()


async def test_presigned_redirects(open_driver):
    driver = open_driver(redirect_expiry_seconds=321)
    data = data_of(2000, seed=8)
    await driver.put_content("rd/blob", data)
    url = await driver.redirect_url("rd/blob")
    assert "X-Amz-Expires=321" in url
    assert await fetch(url) == (200, data)
    assert "X-Amz-Expires=60" in await driver.redirect_url("rd/blob", expires_in=60)
    head = await driver.redirect_url("rd/blob", "HEAD")
    assert (await fetch(head, "HEAD"))[0] == 200
    assert await driver.redirect_url("rd/blob", "PUT") is None
    assert await open_driver(redirect=False).redirect_url("rd/blob") is None
    await driver.delete("rd")


async def test_oss_data_goes_to_the_internal_endpoint_and_redirects_to_the_public_one(open_driver, moto_s3):
    with FaultProxy(moto_s3.url) as internal:
        driver = open_driver("oss", internal_endpoint=f"http://oss-{OSS_REGION}-internal.localhost:{internal.port}")
        await driver.put_content("rd/blob", b"oss bytes")
        assert internal.count(match(method="PUT")) == 1
        seen = internal.requests[-1]
        bucket = driver.inner.bucket
        assert seen.headers["Host"].startswith(f"{bucket}.oss-{OSS_REGION}-internal.localhost")  # virtual-hosted
        assert seen.path == "/registry/data/rd/blob"  # under the prefix
        url = await driver.redirect_url("rd/blob")
        assert url.startswith(f"http://{bucket}.oss-{OSS_REGION}.localhost:{moto_s3.port}/registry/data/rd/blob?")
        assert await fetch(url) == (200, b"oss bytes")
        await driver.delete("rd")


# Retries ----------------------------------------------------------------------------------------


async def test_slow_down_and_server_errors_are_retried(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url)
    proxy.fail(503, S3_SLOW_DOWN, times=2, when=is_put_object)
    await driver.put_content("rt/object", b"payload")
    assert proxy.count(is_put_object) == 3
    proxy.fail(500, S3_INTERNAL_ERROR, times=2, when=match(method="GET"))
    assert await driver.get_content("rt/object") == b"payload"
    assert proxy.count(match(method="GET")) == 3
    proxy.fail(503, times=1, when=match(method="HEAD"))  # no body at all, as for a HEAD
    assert (await driver.stat("rt/object")).size == 7
    await driver.delete("rt")


async def test_exhausted_retries_give_a_clean_error(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url, max_attempts=3)
    proxy.fail(503, S3_SLOW_DOWN, times=None, when=is_put_object)
    with pytest.raises(StorageError, match="failed after 3 attempts: SlowDown") as caught:
        await driver.put_content("rt/object", b"payload")
    assert type(caught.value).__module__ == "storage_backends.s3"
    assert proxy.count(is_put_object) == 3, "exactly max_attempts requests: botocore does not retry too"
    proxy.clear()
    single = open_driver(endpoint=proxy.url, max_attempts=1)
    proxy.fail(503, S3_SLOW_DOWN, times=1, when=is_put_object)
    with pytest.raises(StorageError, match="SlowDown"):
        await single.put_content("rt/object", b"payload")
    assert proxy.count(is_put_object) == 4


def is_delete_objects(seen: Seen) -> bool:
    return seen.method == "POST" and "delete" in seen.query


def delete_result(key: str, code: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Error><Key>{key}</Key><Code>{code}</Code><Message>test</Message></Error></DeleteResult>").encode()


async def test_delete_many_sends_a_thousand_keys_a_request(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url)
    paths = [f"dm/{i:04d}" for i in range(2001)]
    await asyncio.gather(*(driver.put_content(path, b"x") for path in paths[::3]))
    assert await driver.delete_many(paths) == []
    assert proxy.count(is_delete_objects) == 3
    assert await bucket_keys(driver) == []


async def test_delete_many_retries_the_keys_that_failed_transiently_and_reports_the_others(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url, max_attempts=3)
    await driver.put_content("dm/a", b"a")
    await driver.put_content("dm/b", b"b")
    # The request deletes both, but its answer says a failed with SlowDown: a alone goes again.
    proxy.fail(200, delete_result(driver.inner._key("dm/a"), "SlowDown"), times=1, when=is_delete_objects,
               forward_first=True)
    assert await driver.delete_many(["dm/a", "dm/b"]) == []
    assert proxy.count(is_delete_objects) == 2
    # A key denied is reported, not retried; one failing transiently every time, after max_attempts.
    proxy.clear()
    proxy.requests.clear()
    proxy.fail(200, delete_result(driver.inner._key("dm/c"), "AccessDenied"), times=1, when=is_delete_objects)
    [(path, error)] = await driver.delete_many(["dm/c"])
    assert path == "dm/c" and "AccessDenied" in str(error) and isinstance(error, StorageError)
    proxy.fail(200, delete_result(driver.inner._key("dm/d"), "InternalError"), times=None, when=is_delete_objects)
    [(path, error)] = await driver.delete_many(["dm/d"])
    assert path == "dm/d" and "InternalError" in str(error) and "after 3 attempts" in str(error)
    assert proxy.count(is_delete_objects) == 1 + 3
    # The request itself failing, after its retries: every path of it is reported.
    proxy.clear()
    proxy.fail(503, S3_SLOW_DOWN, times=None, when=is_delete_objects)
    failures = await driver.delete_many(["dm/e", "dm/f"])
    assert [path for path, _ in failures] == ["dm/e", "dm/f"]
    assert all("SlowDown" in str(error) for _, error in failures)


async def test_stalled_and_dropped_requests_are_retried(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url, read_timeout=0.5)
    proxy.stall(times=1, when=is_put_object)
    await driver.put_content("rt/object", b"after a stall")
    assert proxy.count(is_put_object) == 2
    proxy.drop(times=2, when=match(method="GET"))
    assert await driver.get_content("rt/object") == b"after a stall"
    assert proxy.count(match(method="GET")) == 3
    await driver.delete("rt")


async def test_unreachable_endpoint_is_a_clean_error(open_driver):
    driver = open_driver(endpoint=f"http://127.0.0.1:{free_port()}", max_attempts=2)
    with pytest.raises(StorageError, match="unreachable after 2 attempts"):
        await driver.stat("")


def is_first_part(seen: Seen) -> bool:  # UploadPart of part 1
    return seen.method == "PUT" and seen.query.get("partNumber") == "1" and "x-amz-copy-source" not in seen.headers


async def test_a_part_failing_in_the_background_keeps_its_bytes_until_close_sends_it(open_driver, proxy):
    # Parts go up while the next one fills; the first part fails every attempt. Whether a later
    # write() notices (and raises) depends on timing, but no accepted byte may be lost either way.
    driver = open_driver(endpoint=proxy.url, max_attempts=2)
    data = data_of(4 * MIN_PART_SIZE + 3, seed=11)
    proxy.fail(503, S3_SLOW_DOWN, times=2, when=is_first_part)
    writer = await driver.writer("bg/blob")
    try:
        for position in range(0, len(data), MiB):
            await writer.write(data[position : position + MiB])
    except StorageError as exc:
        assert "SlowDown" in str(exc)
    accepted = writer.size
    await writer.close()
    assert proxy.count(is_first_part) == 3, "the failed part was sent again"
    resumed = await driver.writer("bg/blob", append=True)
    assert resumed.size == accepted
    await resumed.write(data[accepted:])
    await resumed.commit()
    assert await read_all(driver, "bg/blob", chunk_size=3 * MiB) == data
    await driver.delete("bg")


# Failures after the data is written --------------------------------------------------------------


async def test_failed_completion_leaves_no_object_and_the_upload_resumable(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url, max_attempts=2)
    data = data_of(6 * MiB, seed=9)
    writer = await driver.writer("up/data")
    await writer.write(data)
    await writer.close()
    writer = await driver.writer("up/data", append=True)
    proxy.fail(500, S3_INTERNAL_ERROR, times=None, when=is_complete)
    with pytest.raises(StorageError, match="InternalError"):
        await writer.commit()
    with pytest.raises(PathNotFoundError):
        await driver.get_content("up/data")
    assert (await driver.stat("up/data")).size == len(data), "still a pending upload"
    proxy.clear()
    writer = await driver.writer("up/data", append=True)
    await writer.commit()
    assert await driver.get_content("up/data") == data
    await driver.delete("up")


async def test_failed_completion_then_cancel_leaves_nothing(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url, max_attempts=1)
    writer = await driver.writer("up/data")
    await writer.write(data_of(5 * MiB + 1))
    proxy.fail(500, S3_INTERNAL_ERROR, times=None, when=is_complete)
    with pytest.raises(StorageError):
        await writer.commit()
    await writer.cancel()
    assert await bucket_keys(driver) == [] and await bucket_uploads(driver) == []


NO_SUCH_UPLOAD = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>'
                  b"<Message>The specified upload does not exist.</Message></Error>")


@pytest.mark.parametrize("server", ["repeats-the-answer", "forgets-the-upload"])
async def test_completion_whose_answer_was_lost_is_recognised(open_driver, proxy, server):
    """S3 (and moto) answer a repeated completion again; others (MinIO) no longer know the
    upload, and then the object that is there tells whether the first attempt made it."""
    driver = open_driver(endpoint=proxy.url)
    data = data_of(5 * MiB + 10, seed=10)
    writer = await driver.writer("up/data")
    await writer.write(data)
    proxy.fail(500, S3_INTERNAL_ERROR, times=1, when=is_complete, forward_first=True)
    if server == "forgets-the-upload":
        proxy.fail(404, NO_SUCH_UPLOAD, times=1, when=is_complete)
    await writer.commit()
    assert proxy.count(is_complete) == 2
    assert await driver.get_content("up/data") == data
    await driver.delete("up")


@pytest.mark.parametrize("how", ["copy-object", "part-copy"])
async def test_failed_move_leaves_no_destination(open_driver, proxy, how):
    options = {"multipart_copy_threshold": MiB, "multipart_copy_part_size": 5 * MiB} if how == "part-copy" else {}
    driver = open_driver(endpoint=proxy.url, max_attempts=2, **options)
    data = data_of(6 * MiB, seed=11)
    await driver.put_content("m/src", data)
    proxy.fail(500, S3_INTERNAL_ERROR, times=None, when=is_complete if how == "part-copy" else is_copy)
    with pytest.raises(StorageError, match="InternalError"):
        await driver.move("m/src", "m/dst")
    with pytest.raises(PathNotFoundError):
        await driver.stat("m/dst")
    assert await driver.get_content("m/src") == data
    assert await bucket_uploads(driver) == [], "the part copy was aborted"
    await driver.delete("m")


# What goes over the wire ------------------------------------------------------------------------


async def test_requests_suit_oss_and_other_s3_compatible_servers(open_driver, proxy):
    driver = open_driver(endpoint=proxy.url)
    writer = await driver.writer("w/data")
    await writer.write(data_of(5 * MiB + 1))
    await writer.commit()
    await driver.put_content("w/small", b"small")
    await driver.delete("w")
    uploads = [s for s in proxy.requests if s.method == "PUT"]
    assert uploads and all("aws-chunked" not in s.headers.get("Content-Encoding", "") for s in uploads)
    assert all("x-amz-trailer" not in s.headers for s in uploads)
    (batch_delete,) = [s for s in proxy.requests if s.method == "POST" and "delete" in s.query]
    assert "Content-MD5" in batch_delete.headers, "OSS refuses DeleteObjects without Content-MD5"
    assert not any(name.lower().startswith("x-amz-checksum") for name in batch_delete.headers)


async def test_requests_over_https_are_not_aws_chunked(open_driver, moto_s3):
    """Over https botocore stops hashing bodies for the signature; it must still not switch
    to aws-chunked bodies with checksum trailers, which OSS rejects."""
    with FaultProxy(moto_s3.url, ssl_context=self_signed_tls()) as proxy:
        driver = open_driver(endpoint=proxy.url, verify_tls=False)
        writer = await driver.writer("w/data")
        await writer.write(data_of(5 * MiB + 1))
        await writer.commit()
        await driver.put_content("w/small", b"small")
        assert await driver.get_content("w/small") == b"small"
        await driver.delete("w")
        uploads = [s for s in proxy.requests if s.method == "PUT"]
        assert len(uploads) == 3  # two parts and the small object
        for seen in uploads:
            assert "aws-chunked" not in seen.headers.get("Content-Encoding", "")
            assert not seen.headers.get("x-amz-content-sha256", "").startswith("STREAMING")
            assert "x-amz-trailer" not in seen.headers
        verifying = open_driver(endpoint=proxy.url, verify_tls=True)
        before = proxy.count()
        with pytest.raises(StorageError, match="TLS failure .*storage.verify_tls"):
            await verifying.stat("")
        assert proxy.count() == before, "no request got through, and none was retried into it"


# Credentials and configuration ------------------------------------------------------------------


async def test_wrong_credentials_are_a_clear_error_and_not_retried(moto_s3_auth):
    bucket = moto_s3_auth.create_bucket()
    _, secret_key = moto_s3_auth.credentials
    with FaultProxy(moto_s3_auth.url) as proxy:
        good = storage_backends.create("s3", **s3_options("s3", server=moto_s3_auth, bucket=bucket,
                                                          endpoint=proxy.url))
        wrong_secret = storage_backends.create("s3", **s3_options(
            "s3", server=moto_s3_auth, bucket=bucket, endpoint=proxy.url, secret_key="not-the-secret"))
        wrong_key = storage_backends.create("s3", **s3_options(
            "s3", server=moto_s3_auth, bucket=bucket, endpoint=proxy.url, access_key="AKIANOTAKEY00000000"))
        try:
            await good.put_content("a/b", b"signed")
            assert await good.get_content("a/b") == b"signed"
            for driver in (wrong_secret, wrong_key):
                before = proxy.count()
                with pytest.raises(StorageError, match="access denied by S3 .*check storage.access_key and "
                                                       "storage.secret_key") as caught:
                    await driver.get_content("a/b")
                assert proxy.count() == before + 1, "a refusal is not retried"
                assert secret_key not in str(caught.value)
                with pytest.raises(StorageError, match="access denied"):
                    await driver.stat("")
            await good.delete("a")
        finally:
            for driver in (good, wrong_secret, wrong_key):
                await driver.aclose()


async def test_missing_bucket_is_a_clear_error(moto_s3):
    driver = storage_backends.create("s3", **s3_options("s3", server=moto_s3, bucket="no-such-bucket-here"))
    try:
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
            await driver.stat("")
        with pytest.raises(StorageError, match="does not exist"):
            await driver.list("x")
    finally:
        await driver.aclose()


def test_option_checks_and_oss_defaults():
    with pytest.raises(ValueError, match="part_size_bytes"):
        S3Params(bucket="b", part_size_bytes=MiB)
    with pytest.raises(ValueError, match="bucket"):
        S3Params(bucket="")
    with pytest.raises(ValueError, match=r"access_key and storage\.s3\.secret_key go together"):
        S3Params(bucket="b", access_key="AKIA")
    with pytest.raises(ValueError, match="addressing_style"):
        S3Params(bucket="b", addressing_style="sideways")
    with pytest.raises(ValueError, match="region is required"):
        OssParams(bucket="b", endpoint="https://oss.example.com")
    for endpoint in ("https://oss-cn-hangzhou.aliyuncs.com", "https://oss-cn-hangzhou-internal.aliyuncs.com",
                     "https://s3.oss-cn-hangzhou.aliyuncs.com"):
        driver = OssDriver(OssParams(bucket="b", endpoint=endpoint))
        assert (driver.region, driver.addressing_style) == ("cn-hangzhou", "virtual")
    path_style = OssParams(bucket="b", endpoint="https://x", region="r", addressing_style="path")
    assert OssDriver(path_style).addressing_style == "path"
    assert "secret" not in repr(S3Driver(S3Params(bucket="b", access_key="AKIA", secret_key="secret")))


def documented_configs() -> list[str]:
    """The YAML examples in storage_backends/s3.py's docstring (the blocks after '::')."""
    blocks = []
    for part in storage_backends.s3.__doc__.split("::\n\n")[1:]:
        lines = []
        for line in part.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line)
        blocks.append(textwrap.dedent("\n".join(lines)))
    return blocks


DOCUMENTED = {
    "aws": {"bucket": "my-registry", "region": "eu-central-1", "endpoint": "", "addressing_style": "auto",
            "redirect": True},
    "minio": {"endpoint": "http://minio.internal:9000", "addressing_style": "path", "redirect": False},
    "oss": {"region": "cn-hangzhou", "addressing_style": "virtual", "redirect": True,
            "internal_endpoint": "https://oss-cn-hangzhou-internal.aliyuncs.com"},
}


@pytest.mark.parametrize("index, name", list(enumerate(DOCUMENTED)))
async def test_operator_configs_from_the_docs(tmp_path, index, name):
    """The configurations documented in storage_backends/s3.py load and build the right driver."""
    blocks = documented_configs()
    assert len(blocks) == len(DOCUMENTED)
    path = tmp_path / "config.yml"
    path.write_text(blocks[index])
    config = load_config(path, environ={})
    assert not config.storage.legacy(), "the docstring shows the sectioned form"
    driver = storage_backends.create(config.storage.driver, config.storage_params())
    try:
        assert {key: getattr(driver.inner, key) for key in DOCUMENTED[name]} == DOCUMENTED[name]
    finally:
        await driver.aclose()


@pytest.mark.parametrize("storage, message", [
    ({"driver": "s3"}, r"storage\.s3\.bucket is required"),
    ({"driver": "oss", "bucket": "b"}, r"storage\.oss\.endpoint is required for driver oss"),
    ({"driver": "oss", "oss": {"bucket": "b"}}, r"storage\.oss\.endpoint is required for driver oss"),
    ({"driver": "s3", "s3": {"bucket": "b", "access_key": "AKIA"}}, "go together"),
    ({"driver": "s3", "bucket": "b", "access_key": "AKIA"}, "go together"),
    ({"driver": "s3", "bucket": "b", "part_size_bytes": 1000}, "at least 5 MiB"),
    ({"driver": "s3", "bucket": "b", "addressing_style": "dns"}, "addressing_style"),
])
def test_config_errors(storage, message):
    from hub.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={"storage": storage})


# Through the hub --------------------------------------------------------------------------------


def hub_config(tmp_path, server, bucket: str, **storage):
    access_key, secret_key = server.credentials
    settings = {"driver": "s3", "s3": {
        "endpoint": server.url, "region": REGION, "bucket": bucket, "addressing_style": "path",
        "access_key": access_key, "secret_key": secret_key, "part_size_bytes": 5 * MiB, "max_attempts": 2,
        **storage}}
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "storage": settings, "log": {"access_log": False},
        "auth": {"enabled": False}})


async def push_in_chunks(client, name: str, data: bytes, chunk: int) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status == 202, await response.text()
    location = response.headers["Location"]
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        response = await client.patch(location, data=part, headers={
            "Content-Range": f"{start}-{start + len(part) - 1}", "Content-Type": "application/octet-stream"})
        assert response.status == 202, await response.text()
        location = response.headers["Location"]
    response = await client.put(f"{location}?digest={digest}")
    assert response.status == 201, await response.text()
    return digest


@pytest.mark.parametrize("redirect", [True, False], ids=["redirect", "proxied"])
async def test_hub_blob_get_over_s3(aiohttp_client, tmp_path, moto_s3, redirect):
    bucket = moto_s3.create_bucket()
    client = await aiohttp_client(create_app(hub_config(tmp_path, moto_s3, bucket, redirect=redirect)))
    data = data_of(7 * MiB + 3, seed=12)
    digest = await push_in_chunks(client, "team/app", data, chunk=3 * MiB)
    response = await client.get(f"/v2/team/app/blobs/{digest}", allow_redirects=False)
    if redirect:
        assert response.status == 307
        assert response.headers["Docker-Content-Digest"] == digest
        assert await fetch(response.headers["Location"]) == (200, data)
    else:
        assert response.status == 200
        assert await response.read() == data
    assert (await client.get("/readyz")).status == 200


async def test_hub_upload_continued_on_another_replica(aiohttp_client, tmp_path, moto_s3):
    """PATCHes on one replica, the rest and the PUT on another (which re-reads to hash)."""
    bucket = moto_s3.create_bucket()
    config = hub_config(tmp_path, moto_s3, bucket)
    replica_a = await aiohttp_client(create_app(config))
    replica_b = await aiohttp_client(create_app(config))
    data = data_of(6 * MiB + 100, seed=13)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = (await replica_a.post("/v2/team/app/blobs/uploads/")).headers["Location"]
    response = await replica_a.patch(location, data=data[: 4 * MiB], headers={"Content-Range": f"0-{4 * MiB - 1}"})
    assert response.status == 202
    response = await replica_b.get(location)
    assert response.headers["Range"] == f"0-{4 * MiB - 1}"
    response = await replica_b.patch(location, data=data[4 * MiB :],
                                     headers={"Content-Range": f"{4 * MiB}-{len(data) - 1}"})
    assert response.status == 202
    response = await replica_b.put(f"{location}?digest={digest}")
    assert response.status == 201, await response.text()
    assert await (await replica_a.get(f"/v2/team/app/blobs/{digest}")).read() == data


@pytest.mark.parametrize("trouble", ["wrong-secret", "unreachable", "no-bucket"])
async def test_readyz_reports_storage_trouble(aiohttp_client, tmp_path, moto_s3_auth, trouble):
    bucket = "no-such-bucket-here" if trouble == "no-bucket" else moto_s3_auth.create_bucket()
    storage = {"wrong-secret": {"secret_key": "wrong"},
               "unreachable": {"endpoint": f"http://127.0.0.1:{free_port()}"}}.get(trouble, {})
    client = await aiohttp_client(create_app(hub_config(tmp_path, moto_s3_auth, bucket, **storage)))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["storage"].startswith("error")
    assert body["checks"]["metadata"] == "ok"
