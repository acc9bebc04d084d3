"""A one-commit git repository synthesized from an app version, and the pieces of git's smart
protocol (v0, stateless over HTTP) needed to serve it read-only. No HTTP here.

Portainer deploys a compose-stack template by cloning `repository.url` (go-git, smart HTTP,
protocol v0), so each app version is offered as a repository with one branch, `main`: a tree of
the compose file(s) exactly as published (their `${VAR}` references are what Portainer's `env`
fields fill in) and a README, in one commit whose author, date and message depend only on the
version. The same version therefore always yields the same commit id, on every replica.

Objects go into the pack undeltified: a version is a few kilobytes, and a pack with no deltas
needs no index on our side.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

BRANCH = "refs/heads/main"
README = "README.md"
# A fixed identity and date: the commit must not change with the clock or the replica.
AUTHOR = b"DaoHub <daohub@daohub.invalid> 946684800 +0000"
CAPABILITIES = ("side-band-64k", "no-progress", "shallow", "include-tag", f"symref=HEAD:{BRANCH}",
                "object-format=sha1", "agent=daohub")
MAX_PKT = 65520  # the largest pkt-line git accepts (4 length digits included)
SIDEBAND_DATA = MAX_PKT - 5  # a band byte after the 4 length digits
MAX_WANTS = 64

_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3}


class ProtocolError(ValueError):
    """The client's request breaks the protocol (a 4xx, never a 500)."""


@dataclass(frozen=True, slots=True)
class GitObject:
    kind: bytes  # b"commit", b"tree" or b"blob"
    data: bytes

    @property
    def oid(self) -> str:
        return hashlib.sha1(b"%s %d\x00" % (self.kind, len(self.data)) + self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class Repository:
    objects: tuple[GitObject, ...]  # the commit first
    commit: str

    def advertisement(self) -> bytes:
        """The body of `GET info/refs?service=git-upload-pack`."""
        return b"".join((
            pkt(b"# service=git-upload-pack\n"), FLUSH,
            pkt(f"{self.commit} HEAD\x00{' '.join(CAPABILITIES)}\n".encode()),
            pkt(f"{self.commit} {BRANCH}\n".encode()), FLUSH))

    def pack(self) -> bytes:
        return pack(self.objects)


def _check_name(name: str) -> bytes:
    raw = name.encode()
    # A tree entry is one path component; git refuses '.git' and empty names (fsck would too).
    if not raw or b"/" in raw or b"\x00" in raw or name in (".", "..") or name.lower() == ".git":
        raise ValueError(f"not a plain file name: {name!r}")
    return raw


def build(files: Mapping[str, str], *, readme: str, message: str) -> Repository:
    """A repository whose one commit holds `files` (name: text) and, unless one of them is already
    named README.md, a README.md with `readme`."""
    entries = {_check_name(name): GitObject(b"blob", text.encode()) for name, text in files.items()}
    entries.setdefault(README.encode(), GitObject(b"blob", readme.encode()))
    # Plain files only, so git's tree order is byte order of the names.
    tree = GitObject(b"tree", b"".join(b"100644 %s\x00%s" % (name, bytes.fromhex(blob.oid))
                                       for name, blob in sorted(entries.items())))
    body = message.strip() + "\n"
    commit = GitObject(b"commit", b"tree %s\nauthor %s\ncommitter %s\n\n%s" % (
        tree.oid.encode(), AUTHOR, AUTHOR, body.encode()))
    blobs = {blob.oid: blob for blob in entries.values()}  # two equal files are one blob
    return Repository((commit, tree, *blobs.values()), commit.oid)


def _object_header(kind: int, size: int) -> bytes:
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def pack(objects: Iterable[GitObject]) -> bytes:
    """A version 2 packfile of the objects, undeltified, with its trailing SHA-1."""
    objects = list(objects)
    parts = [b"PACK", struct.pack(">II", 2, len(objects))]
    for obj in objects:
        parts.append(_object_header(_TYPES[obj.kind], len(obj.data)))
        parts.append(zlib.compress(obj.data, 6))
    body = b"".join(parts)
    return body + hashlib.sha1(body).digest()


# pkt-line -------------------------------------------------------------------------------------
FLUSH = b"0000"


def pkt(data: bytes) -> bytes:
    if len(data) + 4 > MAX_PKT:
        raise ValueError("pkt-line payload too long")
    return b"%04x" % (len(data) + 4) + data


def read_pkts(body: bytes) -> Iterator[bytes | None]:
    """The pkt-lines of `body`: payloads, None for a flush-pkt. ProtocolError if malformed."""
    pos = 0
    while pos < len(body):
        head = body[pos:pos + 4]
        try:
            if len(head) < 4 or not all(c in b"0123456789abcdefABCDEF" for c in head):
                raise ValueError
            length = int(head, 16)
        except ValueError:
            raise ProtocolError(f"bad pkt-line length at byte {pos}") from None
        if length == 0:
            yield None
            pos += 4
            continue
        if length < 4 or length > MAX_PKT or pos + length > len(body):
            raise ProtocolError(f"bad pkt-line length at byte {pos}")
        yield body[pos + 4:pos + length]
        pos += length


@dataclass(frozen=True, slots=True)
class UploadRequest:
    wants: tuple[str, ...]
    capabilities: frozenset[str]
    haves: tuple[str, ...]
    deepen: int | None
    done: bool


def _oid(text: bytes, what: str) -> str:
    value = text.decode("ascii", "replace")
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise ProtocolError(f"{what}: not an object id")
    return value


def parse_upload_request(body: bytes) -> UploadRequest:
    """An upload-pack request of protocol v0: want lines (the first with capabilities), optional
    shallow/deepen lines, a flush, then have lines and an optional `done`."""
    wants: list[str] = []
    haves: list[str] = []
    capabilities: frozenset[str] = frozenset()
    deepen = None
    done = False
    in_wants = True
    for line in read_pkts(body):
        if line is None:
            in_wants = False
            continue
        line = line.rstrip(b"\n")
        word, _, rest = line.partition(b" ")
        if in_wants and word == b"want":
            oid, _, caps = rest.partition(b" ")
            if not wants:
                capabilities = frozenset(caps.decode("ascii", "replace").split())
            wants.append(_oid(oid, "want"))
            if len(wants) > MAX_WANTS:
                raise ProtocolError("too many wants")
        elif in_wants and word == b"shallow":
            _oid(rest, "shallow")
        elif in_wants and word == b"deepen":
            try:
                deepen = int(rest)
            except ValueError:
                raise ProtocolError("deepen: not a number") from None
            if deepen < 1:
                raise ProtocolError("deepen: must be at least 1")
        elif in_wants and word in (b"deepen-since", b"deepen-not", b"deepen-relative", b"filter"):
            continue  # not advertised; the whole (one-commit) history is sent anyway
        elif not in_wants and word == b"have":
            haves.append(_oid(rest, "have"))
            if len(haves) > MAX_WANTS:
                raise ProtocolError("too many haves")
        elif not in_wants and line == b"done":
            done = True
        else:
            raise ProtocolError(f"unexpected line {line[:40]!r}")
    if not wants:
        raise ProtocolError("no want line")
    return UploadRequest(tuple(wants), capabilities, tuple(haves), deepen, done)


def _sideband(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), SIDEBAND_DATA):
        yield pkt(b"\x01" + data[start:start + SIDEBAND_DATA])


def upload_pack(repo: Repository, request: UploadRequest) -> bytes:
    """The response to an upload-pack request. Wanting anything but the one commit is a
    ProtocolError. The history is one root commit, so a shallow clone gets no shallow lines: it
    already has everything."""
    for want in request.wants:
        if want != repo.commit:
            raise ProtocolError(f"not our ref {want}")
    out = [FLUSH] if request.deepen is not None else []
    common = repo.commit in request.haves
    if not request.done:
        # A stateless round without `done`: the shallow list alone answers a round with no haves
        # (the client's deepen probe); haves get what is common, and the client asks again.
        if request.haves:
            out.append(pkt(f"ACK {repo.commit}\n".encode()) if common else pkt(b"NAK\n"))
        return b"".join(out)
    out.append(pkt(f"ACK {repo.commit}\n".encode()) if common else pkt(b"NAK\n"))
    data = pack(() if common else repo.objects)
    if "side-band-64k" in request.capabilities:
        out.extend(_sideband(data))
        out.append(FLUSH)
    elif "side-band" in request.capabilities:
        raise ProtocolError("side-band (without -64k) is not supported")
    else:
        out.append(data)
    return b"".join(out)
