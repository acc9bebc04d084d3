"""The access log: one JSON object per line, batched, flushed on a timer and on demand."""

from __future__ import annotations

import asyncio
import io
import json

from hub.middlewares import AccessLogSink


async def test_lines_are_json_and_flushed_by_timer():
    stream = io.StringIO()
    sink = AccessLogSink(stream, interval=0.05, max_lines=100)
    for i in range(3):
        sink.write(json.dumps({"n": i}))
    assert stream.getvalue() == ""  # batched, not yet written
    await asyncio.sleep(0.2)
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == [0, 1, 2]


async def test_full_batch_flushes_at_once_and_flush_drains():
    stream = io.StringIO()
    sink = AccessLogSink(stream, interval=60, max_lines=2)
    sink.write("{}")
    sink.write("{}")
    assert stream.getvalue() == "{}\n{}\n"
    sink.write('{"last":1}')
    sink.flush()
    assert stream.getvalue().splitlines()[-1] == '{"last":1}'


def test_timestamp_format():
    sink = AccessLogSink(io.StringIO())
    assert sink.timestamp(0.25) == "1970-01-01T00:00:00.250Z"
