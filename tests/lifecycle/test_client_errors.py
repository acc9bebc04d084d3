"""Malformed HTTP from a client is the client's fault: `daohub serve` answers 400 and logs it at
INFO in one line, never at ERROR with a traceback (a log watcher would page someone for it)."""

from __future__ import annotations

import re
import socket

import pytest

from tests.helpers.server import DaoHubProcess

_UPLOAD = b"POST /v2/team/app/blobs/uploads/?digest=sha256:" + b"0" * 64 + b" HTTP/1.1\r\nHost: x\r\n"
BAD_REQUESTS = {
    "nul in a header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    "bad request line": b"GET /v2/ HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "space in a header name": b"GET /v2/ HTTP/1.1\r\nHo st: x\r\n\r\n",
    "oversized header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "bad chunk size": _UPLOAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "body that is not gzip": _UPLOAD + b"Content-Length: 10\r\nContent-Encoding: gzip\r\n\r\n0123456789",
}


def _status(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(raw)
        reply = b""
        while b"\r\n" not in reply:
            data = conn.recv(4096)
            if not data:
                break
            reply += data
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    assert match, f"no status line in {reply[:200]!r}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = DaoHubProcess(tmp_path_factory.mktemp("client-errors"), env={"DAOHUB_LOG_ACCESS_LOG": "false"})
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_request_is_a_400_logged_at_info(hub, case):
    before = len(hub.log_text())
    assert _status(hub.port, BAD_REQUESTS[case]) == 400
    # The server still serves, and whatever it logged about the bad request is in the file now.
    assert _status(hub.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 200
    logged = hub.log_text()[before:]
    assert "Traceback" not in logged, logged
    assert not [line for line in logged.splitlines() if " ERROR " in line or " CRITICAL " in line], logged
    # One line at INFO says what was wrong, with the client's address.
    assert re.search(r" INFO \S+: .*127\.0\.0\.1.*400", logged), logged
