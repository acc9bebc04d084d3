"""storage_backends.plainhttp: the raw GET behind the zero-copy relay, against canned servers.

Each case starts a small TCP server on 127.0.0.1 that records the request it got and answers
with fixed bytes, so malformed and unusual responses can be produced exactly."""

from __future__ import annotations

import asyncio
from typing import Self

import pytest

from storage_backends import plainhttp
from storage_backends.plainhttp import PlainHttpError


class Canned:
    def __init__(self, answer: bytes, *, close: bool = True, delay: float = 0.0):
        self.answer = answer
        self.close = close
        self.delay = delay
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        await asyncio.sleep(self.delay)
        writer.write(self.answer)
        await writer.drain()
        if self.close:
            writer.close()
        else:
            await asyncio.sleep(30)


async def test_the_body_is_left_on_the_socket_after_the_bytes_that_came_with_the_head():
    body = b"x" * 100_000
    async with Canned(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100000\r\nETag: \"abc\"\r\n"
                      b"Content-Range: bytes 5-100004/200000\r\n\r\n" + body) as server:
        response = await plainhttp.get(f"{server.url}/bucket/key?X-Amz-Signature=s%2F1",
                                       {"Range": "bytes=5-100004", "If-Match": '"abc"'})
        try:
            assert (response.status, response.length, response.headers["etag"]) == (206, 100_000, '"abc"')
            rest = bytearray(response.head)
            loop = asyncio.get_running_loop()
            while chunk := await loop.sock_recv(response.sock, 65536):
                rest += chunk
            assert bytes(rest) == body
        finally:
            response.close()
    request = server.requests[0].decode("latin-1").split("\r\n")
    assert request[0] == "GET /bucket/key?X-Amz-Signature=s%2F1 HTTP/1.1"
    assert f"Host: {server.url.removeprefix('http://')}" in request
    assert {"Connection: close", "Range: bytes=5-100004", 'If-Match: "abc"'} <= set(request)


@pytest.mark.parametrize("answer, why", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello", "more body"),
    (b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nhi", "status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "before the response head"),
])
async def test_responses_it_cannot_relay_are_refused(answer, why):
    async with Canned(answer) as server:
        with pytest.raises(PlainHttpError, match=why):
            await plainhttp.get(f"{server.url}/k")


async def test_an_endless_head_is_refused():
    async with Canned(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (plainhttp.MAX_HEAD + 10), close=False) as server:
        with pytest.raises(PlainHttpError, match="too long"):
            await plainhttp.get(f"{server.url}/k")


async def test_a_server_that_does_not_answer_times_out():
    async with Canned(b"", close=False) as server:
        with pytest.raises(TimeoutError):
            await plainhttp.get(f"{server.url}/k", read_timeout=0.3)


async def test_tls_urls_and_header_injection_are_refused_before_connecting():
    with pytest.raises(PlainHttpError, match="plain-HTTP"):
        await plainhttp.get("https://127.0.0.1:9/k")
    async with Canned(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as server:
        with pytest.raises(PlainHttpError, match="line breaks"):
            await plainhttp.get(f"{server.url}/k", {"Range": "bytes=0-1\r\nX-Evil: 1"})
        with pytest.raises(PlainHttpError, match="spaces or control"):
            await plainhttp.get(f"{server.url}/k?a=\r\nX-Evil: 1")  # urlsplit drops the CR LF, not the space
    assert server.requests == []


async def test_a_refused_connection_is_an_oserror():
    async with Canned(b"") as server:
        url = server.url
    with pytest.raises(OSError):
        await plainhttp.get(f"{url}/k", connect_timeout=2)
