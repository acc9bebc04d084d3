"""One GET over plain HTTP on a socket of its own, handed over positioned at the body.

This is the storage side of the zero-copy relay (hub/relay.py): a driver whose objects can be
fetched with a plain-HTTP URL (an S3 endpoint inside the data centre, a presigned URL) opens
the response here, and the server moves the body from this socket to the client's with
splice(2), without the bytes entering the process. That only works where the bytes are on the
wire as they are: http:// only (TLS would need kTLS), one request per connection
(`Connection: close`), and only responses with a Content-Length.

The head of the response is read and parsed here, with the body bytes that arrived with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.parse
from dataclasses import dataclass, field

# A response head longer than this is not a storage server's.
MAX_HEAD = 64 * 1024


class PlainHttpError(OSError):
    """The request could not be made or its response is not one this module relays."""


@dataclass
class HttpBody:
    """An HTTP response whose body is still on `sock` (non-blocking), after `head`."""

    sock: socket.socket
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    head: bytes  # the first body bytes, received with the response head
    length: int  # the body's Content-Length
    closed: bool = field(default=False, repr=False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    async def read_all(self, limit: int = MAX_HEAD) -> bytes:
        """The rest of a short body (an error document), up to `limit` bytes."""
        loop = asyncio.get_running_loop()
        data = bytearray(self.head)
        while len(data) < min(self.length, limit):
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                break
            data += chunk
        return bytes(data[:limit])


def plain_url(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme == "http"


async def get(url: str, headers: dict[str, str] | None = None, *, connect_timeout: float = 10.0,
              read_timeout: float = 60.0) -> HttpBody:
    """GET `url` (http:// only) and return the response with its body unread.

    Raises PlainHttpError for a URL or a response this module does not handle (no
    Content-Length, chunked, a malformed head), OSError or TimeoutError when the server
    cannot be reached or does not answer in time."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise PlainHttpError(f"not a plain-HTTP URL: {parts.scheme}://{parts.hostname}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if port == 80 else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # an IPv6 literal
        host = f"[{parts.hostname}]" if port == 80 else f"[{parts.hostname}]:{port}"
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close", "Accept-Encoding: identity"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if any(ch in f"{k}{v}" for k, v in (headers or {}).items() for ch in "\r\n"):
        raise PlainHttpError("line breaks in a header")
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in target):
        raise PlainHttpError("spaces or control characters in the request target")

    sock = await _connect(parts.hostname, port, connect_timeout)
    try:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(read_timeout):
            await loop.sock_sendall(sock, request)
            data = bytearray()
            while (end := data.find(b"\r\n\r\n")) < 0:
                if len(data) > MAX_HEAD:
                    raise PlainHttpError("response head too long")
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    raise PlainHttpError("the server closed the connection before the response head")
                data += chunk
        status, fields = _parse_head(bytes(data[:end]))
        if "transfer-encoding" in fields or "content-length" not in fields:
            raise PlainHttpError("response without a Content-Length")
        try:
            length = int(fields["content-length"])
        except ValueError:
            raise PlainHttpError(f"bad Content-Length {fields['content-length']!r}") from None
        head = bytes(data[end + 4:])
        if length < 0 or len(head) > length:
            raise PlainHttpError("more body than the Content-Length")
        return HttpBody(sock, status, fields, head, length)
    except BaseException:
        sock.close()
        raise


async def _connect(hostname: str, port: int, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    error: BaseException | None = None
    async with asyncio.timeout(timeout):
        for family, kind, proto, _, address in await loop.getaddrinfo(hostname, port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
    raise error or PlainHttpError(f"{hostname} has no address")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise PlainHttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise PlainHttpError(f"malformed header line {line[:80]!r}")
        fields[name.lower()] = value.strip()
    return int(code), fields
