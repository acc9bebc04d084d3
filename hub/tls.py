"""HTTPS for `daohub serve`: the server's SSLContext, certificate reloads, the TLS listener,
and `daohub tls self-signed`.

The context is built once (TLS 1.2 or 1.3 at least, ALPN http/1.1, client certificates
required when server.tls.client_ca_file is set). A renewal (SIGHUP, or cert_file/key_file
changing on disk) loads the new pair into that same context (a changed client CA file gets a new
context, see CertificateReloader): OpenSSL copies the certificate
and key of an SSL_CTX into each connection when it is created, so new handshakes present the
new certificate and open connections keep theirs. The pair is first loaded into a throwaway
context, so a broken one (unreadable, key not matching) is logged and the old pair served on.

The listener looks at the first byte of each connection before TLS starts: a TLS handshake
record (0x16) goes on to asyncio's TLS protocol with that byte; anything else (a plain-HTTP
request on the HTTPS port) gets a plain-HTTP 400 saying to use https, and is closed, instead
of a handshake error and a dropped connection the client cannot explain. A failed handshake
gets its TLS alert (protocol version, certificate required) before the connection closes.

kTLS (kernel TLS offload, which would let sendfile(2) work through TLS) is not used: Python's
ssl module gains OP_ENABLE_KTLS only in 3.12, and asyncio's TLS runs OpenSSL over memory
BIOs, so the kernel never sees the socket's TLS state even where the `tls` module is loaded.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import re
import ssl
from asyncio import sslproto
from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import web

from .config import TlsConfig

log = logging.getLogger("daohub.tls")

MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
TLS_HANDSHAKE = 0x16  # the content type of the record that opens every TLS connection
# A connection that sends nothing at all is closed after this long (aiohttp's keep-alive
# timeout only starts once the protocol is connected).
FIRST_BYTE_TIMEOUT = 60.0


class TlsError(RuntimeError):
    """The certificate, key or client CA could not be loaded."""


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[tls.min_version]
    context.set_alpn_protocols(["http/1.1"])
    _load_pair(context, tls)
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"server.tls.client_ca_file {tls.client_ca_file}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_pair(context: ssl.SSLContext, tls: TlsConfig) -> None:
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"server.tls.cert_file {tls.cert_file} with key_file {tls.key_file}: {exc}") from None


class CertificateReloader:
    """Loads a renewed certificate and key into the live context, keeping the old pair when
    the new one does not load; and a changed client CA file into a new context.

    OpenSSL can add CA certificates to a context's store but never remove one, so a client CA
    that changed (a CA rotated out must stop being trusted) gets a whole new context, built as at
    start-up, which `context` then names: the listener asks for it per connection, so new
    handshakes use it and open connections keep theirs. With uvloop the listener's context is
    fixed, so there a new client CA needs a restart (logged)."""

    def __init__(self, context: ssl.SSLContext, tls: TlsConfig, *, swappable: bool = True):
        self.context = context
        self.tls = tls
        self.swappable = swappable
        self.loaded = 0  # successful reloads, for the tests
        self._stamp = self._files_stamp()

    def _files_stamp(self) -> tuple:
        stamp = []
        for path in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file):
            try:
                st = os.stat(path) if path else None
            except OSError:
                stamp.append(None)
            else:
                stamp.append(st and (st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamp)

    def reload(self, reason: str) -> bool:
        before, self._stamp = self._stamp, self._files_stamp()
        try:
            # A mismatched key fails only after the chain is in: try a throwaway context first,
            # or the live one would be left holding the new certificate and the old key.
            _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self.tls)
            fresh = server_context(self.tls) if self.tls.client_ca_file else None
            _load_pair(self.context, self.tls)
        except TlsError as exc:
            log.error("TLS certificate not reloaded (%s), still serving the previous one: %s", reason, exc)
            return False
        if fresh is not None and (reason == "SIGHUP" or before[2] != self._stamp[2]):
            if self.swappable:
                self.context = fresh
                log.info("TLS client CA reloaded from %s (%s)", self.tls.client_ca_file, reason)
            else:
                log.warning("TLS client CA %s changed: with server.event_loop uvloop it takes a restart",
                            self.tls.client_ca_file)
        self.loaded += 1
        log.info("TLS certificate reloaded from %s (%s)", self.tls.cert_file, reason)
        return True

    def check(self) -> bool:
        """Reload if either file changed since the last load (or attempt)."""
        return self._files_stamp() != self._stamp and self.reload("files changed")

    async def watch(self) -> None:
        interval = self.tls.reload_interval_seconds
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            self.check()


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, which sends the alert OpenSSL wrote for a failed handshake (no
    shared protocol version, no client certificate) before closing: asyncio's own drops it, and
    the client sees only an EOF it cannot explain."""

    def _on_handshake_complete(self, handshake_exc):
        if handshake_exc is not None:
            try:
                self._process_outgoing()
            except (OSError, RuntimeError):
                pass  # the peer is gone already: nothing to tell it
        super()._on_handshake_complete(handshake_exc)


_HOST_HEADER = re.compile(rb"\r\nhost:[ \t]*([A-Za-z0-9.:\[\]-]{1,260})[ \t]*\r\n", re.IGNORECASE)


class _FirstByte(asyncio.Protocol):
    """Waits for a connection's first byte, then hands it to the TLS protocol or refuses it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, context: ssl.SSLContext,
                 app_factory: Callable[[], asyncio.Protocol], https_hint: str):
        self._loop = loop
        self._context = context
        self._app_factory = app_factory
        self._https_hint = https_hint
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._timer = self._loop.call_later(FIRST_BYTE_TIMEOUT, transport.abort)

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or not data:
            return
        self._transport = None  # the first bytes decide; nothing else arrives here
        if self._timer is not None:
            self._timer.cancel()
        if data[0] != TLS_HANDSHAKE:
            host = _HOST_HEADER.search(data[:8192])
            hint = f"https://{host.group(1).decode()}/" if host else self._https_hint
            body = f"This port speaks HTTPS; use {hint}\n".encode()
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            transport.close()
            return
        # What loop.start_tls() does, with the bytes already read fed in first.
        tls = _AlertingSSLProtocol(self._loop, self._app_factory(), self._context, None, server_side=True)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(data)
        while view:
            buffer = tls.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]


class TLSSite(web.TCPSite):
    """aiohttp's TCPSite with the first-byte check in front of the TLS handshake."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, ssl_context: ssl.SSLContext,
                 https_hint: str, context_source: Callable[[], ssl.SSLContext] | None = None, **kwargs):
        super().__init__(runner, host, port, ssl_context=ssl_context, **kwargs)
        self._https_hint = https_hint
        # Asked for the context of each new connection (CertificateReloader swaps it).
        self._context_source = context_source or (lambda: ssl_context)

    @property
    def swaps_contexts(self) -> bool:
        """Whether a context from `context_source` reaches new connections (not with uvloop)."""
        return isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, asyncio.BaseEventLoop):
            # uvloop has transports of its own, which asyncio's TLS protocol cannot take over:
            # plain TLS there, where a plain-HTTP request gets a dropped connection.
            await super().start()
            return
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None and self._ssl_context is not None
        source = self._context_source

        def protocol() -> asyncio.Protocol:
            return _FirstByte(loop, source(), server, self._https_hint)

        self._server = await loop.create_server(protocol, self._host, self._port, backlog=self._backlog,
                                                reuse_address=self._reuse_address,
                                                reuse_port=self._reuse_port)


HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def health_only_middleware() -> Callable:
    """On the plain-HTTP health port (server.tls.health_addr) only the probes answer."""

    @web.middleware
    async def health_only(request: web.Request, handler):
        if request.transport is not None and request.transport.get_extra_info("sslcontext") is None \
                and request.path not in HEALTH_PATHS:
            return web.Response(status=404, text="This port answers /healthz and /readyz only; the "
                                "registry speaks HTTPS\n")
        return await handler(request)

    return health_only


# --- `daohub tls self-signed` ------------------------------------------------------------------

def _names(hosts: Iterable[str]) -> list:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def issue_certificate(out: Path, stem: str, common_name: str, hosts: Iterable[str], ca_cert, ca_key, *,
                      days: int = 365, client: bool = False) -> tuple[Path, Path]:
    """Writes <stem>.crt and <stem>.key (0600), a leaf certificate signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                     else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    names = _names(hosts)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_path, key_path


def create_ca(out: Path, common_name: str = "DaoHub private CA", *, days: int = 3650, stem: str = "ca"):
    """Writes <stem>.crt and <stem>.key (0600) and returns (certificate, key) objects."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (out / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out / f"{stem}.key", key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return cert, key


def self_signed(out: Path, hosts: list[str], days: int = 365) -> str:
    """`daohub tls self-signed`: a CA and a server certificate for `hosts`; returns what to do next."""
    ca_cert, ca_key = create_ca(out, days=max(days, 3650))
    cert, key = issue_certificate(out, "server", hosts[0], hosts, ca_cert, ca_key, days=days)
    out = out.resolve()
    first = hosts[0] if ":" not in hosts[0] else f"[{hosts[0]}]"
    return "\n".join([
        f"wrote {out / 'ca.crt'}, {out / 'ca.key'} (the CA) and {out / 'server.crt'}, {out / 'server.key'} "
        f"(for {', '.join(hosts)})",
        "",
        "config.yaml:",
        "  server:",
        "    tls:",
        f"      cert_file: {out / 'server.crt'}",
        f"      key_file: {out / 'server.key'}",
        f"or DAOHUB_SERVER_TLS_CERT_FILE={out / 'server.crt'} "
        f"DAOHUB_SERVER_TLS_KEY_FILE={out / 'server.key'}",
        "",
        f"clients trust {out / 'ca.crt'} (HOST:PORT as in image references, e.g. {first}:5000):",
        f"  docker:          /etc/docker/certs.d/{first}:5000/ca.crt",
        f"  podman, buildah: /etc/containers/certs.d/{first}:5000/ca.crt (or --cert-dir DIR holding ca.crt)",
        f"  skopeo:          --src-cert-dir/--dest-cert-dir DIR holding ca.crt",
        f"  containerd:      ca = \"{out / 'ca.crt'}\" in /etc/containerd/certs.d/{first}:5000/hosts.toml",
        f"  curl:            --cacert {out / 'ca.crt'};  Compose, Go tools: SSL_CERT_FILE={out / 'ca.crt'}",
        "keep ca.key away from the server: it signs certificates every client above trusts",
    ]) + "\n"
