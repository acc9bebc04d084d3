"""A storage error reaching the error middleware: a 500 `UNKNOWN`, and one log line at error
level (error class, message, request path, request id); the traceback only at debug level."""

from __future__ import annotations

import logging

import pytest

from hub.app import create_app
from hub.config import load_config
from hub.keys import REGISTRY
from storage_backends import StorageError


class DiskOnFireError(StorageError):
    pass


@pytest.fixture
async def failing_client(aiohttp_client, tmp_path):
    config = load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "storage": {"driver": "memory"}, "log": {"access_log": False},
        "auth": {"enabled": False}})
    client = await aiohttp_client(create_app(config))
    registry = client.server.app[REGISTRY]

    async def failing_writer(path, append=False):
        raise DiskOnFireError(f"no space left writing {path}")

    registry.storage.writer = failing_writer
    return client


async def _start_upload(client) -> dict:
    r = await client.post("/v2/team/app/blobs/uploads/", headers={"X-Request-Id": "req-storage-1"})
    assert r.status == 500
    assert r.headers["X-Request-Id"] == "req-storage-1"
    return await r.json()


def _records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "daohub.http" and r.levelno == level]


async def test_one_error_line_without_traceback(failing_client, caplog):
    caplog.set_level(logging.INFO, logger="daohub.http")

    body = await _start_upload(failing_client)

    assert body["errors"][0]["code"] == "UNKNOWN"
    assert "no space left" not in str(body), "storage details stay in the log, not in the answer"
    (record,) = _records(caplog, logging.ERROR)
    message = record.getMessage()
    assert "DiskOnFireError" in message and "no space left writing uploads/" in message
    assert "POST /v2/team/app/blobs/uploads/" in message and "request_id=req-storage-1" in message
    assert record.exc_info is None
    assert "Traceback" not in caplog.text
    assert _records(caplog, logging.DEBUG) == []


async def test_traceback_at_debug_level(failing_client, caplog):
    caplog.set_level(logging.DEBUG, logger="daohub.http")

    await _start_upload(failing_client)

    assert len(_records(caplog, logging.ERROR)) == 1
    (debug,) = _records(caplog, logging.DEBUG)
    assert "req-storage-1" in debug.getMessage()
    assert debug.exc_info is not None and debug.exc_info[0] is DiskOnFireError
    assert "Traceback" in caplog.text and "failing_writer" in caplog.text


async def test_other_errors_keep_their_traceback(failing_client, caplog):
    caplog.set_level(logging.INFO, logger="daohub.http")

    async def broken_writer(path, append=False):
        raise RuntimeError("a bug, not an outage")

    failing_client.server.app[REGISTRY].storage.writer = broken_writer
    r = await failing_client.post("/v2/team/app/blobs/uploads/")

    assert r.status == 500
    (record,) = _records(caplog, logging.ERROR)
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
