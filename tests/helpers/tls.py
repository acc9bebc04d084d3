"""A private PKI for HTTPS tests: a server CA with a certificate for 127.0.0.1 and localhost,
a client CA with a client certificate for mutual TLS, and a CA nobody trusts.

Everything is generated with `cryptography` (through hub.tls, the code behind
`daohub tls self-signed`), into one directory, once per test session.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from hub.tls import create_ca, issue_certificate
from tests.helpers.server import DaoHubProcess, TlsFiles

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")
PASSWORD = "alice-Secret-1"  # user alice of secured_hub()


@dataclass
class Pki:
    root: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_ca_file: Path
    client_cert: tuple[Path, Path]
    stranger_ca_file: Path  # signs nothing the server presents
    server_ca: tuple = field(default=(), repr=False)  # (certificate, key) objects, to issue renewals

    def server_files(self, *, mutual: bool = False) -> TlsFiles:
        return TlsFiles(self.cert_file, self.key_file, self.ca_file,
                        client_ca_file=self.client_ca_file if mutual else None,
                        client_cert=self.client_cert if mutual else None)

    def issue_server_pair(self, directory: Path, common_name: str,
                          names: tuple[str, ...] = SERVER_NAMES) -> tuple[Path, Path]:
        """Another server certificate from the same CA (a renewal, another address), in `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        return issue_certificate(directory, "server", common_name, names, *self.server_ca)


def make_pki(root: Path) -> Pki:
    server_ca = create_ca(root, "DaoHub test CA", stem="ca")
    cert_file, key_file = issue_certificate(root, "server", "daohub-test-1", SERVER_NAMES, *server_ca)
    client_ca = create_ca(root, "DaoHub test client CA", stem="client-ca")
    client_cert = issue_certificate(root, "client", "test-client", (), *client_ca, client=True)
    create_ca(root, "Nobody's CA", stem="stranger-ca")
    return Pki(root, root / "ca.crt", cert_file, key_file, root / "client-ca.crt", client_cert,
               root / "stranger-ca.crt", server_ca)


def cert_dir(pki: Pki, directory: Path, *, client: bool = False) -> Path:
    """A containers-style certs directory: ca.crt, and with `client` client.cert/client.key."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(pki.ca_file.read_bytes())
    if client:
        (directory / "client.cert").write_bytes(pki.client_cert[0].read_bytes())
        (directory / "client.key").write_bytes(pki.client_cert[1].read_bytes())
        (directory / "client.key").chmod(0o600)
    return directory


def served_common_name(host: str, port: int, ca_file: Path,
                       client_cert: tuple[Path, Path] | None = None) -> str:
    """The CN of the certificate a new TLS connection is given."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if client_cert:
        context.load_cert_chain(*map(str, client_cert))
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        subject = dict(item[0] for item in tls.getpeercert()["subject"])
    return subject["commonName"]


def secured_hub(data_dir, pki: Pki, *, mutual: bool = False, env: dict | None = None, host: str = "127.0.0.1",
                files: TlsFiles | None = None, netns: str | None = None) -> DaoHubProcess:
    """A started DaoHub over HTTPS with auth on; user alice (PASSWORD) is a developer of tenant team.
    `files`: another server pair than the PKI's (for another address); `netns`: serve inside that
    network namespace (`host` one of its addresses)."""
    hub = DaoHubProcess(data_dir, host=host, netns=netns, tls=files or pki.server_files(mutual=mutual),
                        env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": "admin-Secret-0",
                             **(env or {})})
    hub.start()
    try:
        hub.cli("tenant", "create", "team")
        hub.cli("user", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        hub.cli("tenant", "member", "team", "alice", "developer")
    except BaseException:
        hub.stop()
        raise
    return hub
