"""`daohub serve` over HTTPS, as a real process with a private CA made in the test session:
curl logs in, pushes and pulls; clients without the CA are refused; plain HTTP on the TLS port
gets a 400 and a closed connection; certificates are reloaded from disk and on SIGHUP; mutual
TLS; the plain-HTTP health port; relayed S3 reads are not spliced into a TLS socket."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from hub.tls import create_ca, issue_certificate
from tests.e2e.util import run
from tests.helpers.scaleout import MiB, s3_backend
from tests.helpers.server import DaoHubProcess, free_port
from tests.helpers.tls import PASSWORD, Pki, secured_hub, served_common_name


def curl(*args: str, check: bool = True):
    return run(["curl", "-sS", "--max-time", "30", *args], check=check)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(predicate, what: str, timeout: float = 30.0):
    """Poll `predicate` until it returns something true (the server acts in its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_ready_line_and_token_realm_say_https(tls_hub, pki):
    assert f"listening on https://{tls_hub.host} " in tls_hub.log_text()
    head = curl("--cacert", str(pki.ca_file), "-o", "/dev/null", "-D", "-", f"{tls_hub.url}/v2/").stdout
    assert head.startswith("HTTP/1.1 401"), head
    assert f'realm="https://{tls_hub.host}/auth/token"' in head, head


def test_curl_logs_in_pushes_and_pulls(tls_hub, pki, tmp_path):
    ca = ("--cacert", str(pki.ca_file))
    answer = curl(*ca, "-u", f"alice:{PASSWORD}",
                  f"{tls_hub.url}/auth/token?service=daohub&scope=repository:team/curl:push,pull").stdout
    bearer = ("-H", f"Authorization: Bearer {json.loads(answer)['token']}")
    # A blob bigger than one write chunk, so the userspace TLS copy runs more than once.
    blob = os.urandom(9 * MiB + 7)
    (tmp_path / "blob").write_bytes(blob)
    digest = sha256(blob)
    head = curl(*ca, *bearer, "-X", "POST", "--data-binary", f"@{tmp_path / 'blob'}", "-o", "/dev/null",
                "-D", "-", f"{tls_hub.url}/v2/team/curl/blobs/uploads/?digest={digest}").stdout
    assert "HTTP/1.1 201 Created" in head, head
    assert f"location: /v2/team/curl/blobs/{digest}" in head.lower(), head
    config = b"{}"
    (tmp_path / "config").write_bytes(config)
    curl(*ca, *bearer, "-f", "-X", "POST", "--data-binary", f"@{tmp_path / 'config'}",
         f"{tls_hub.url}/v2/team/curl/blobs/uploads/?digest={sha256(config)}")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                    "size": len(blob)}],
    }).encode()
    (tmp_path / "manifest").write_bytes(manifest)
    curl(*ca, *bearer, "-f", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json",
         "--data-binary", f"@{tmp_path / 'manifest'}", f"{tls_hub.url}/v2/team/curl/manifests/v1")
    pulled = curl(*ca, *bearer, "-f", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                  f"{tls_hub.url}/v2/team/curl/manifests/v1").stdout
    assert pulled.encode() == manifest
    curl(*ca, *bearer, "-f", "-o", str(tmp_path / "pulled"), f"{tls_hub.url}/v2/team/curl/blobs/{digest}")
    assert (tmp_path / "pulled").read_bytes() == blob
    curl(*ca, *bearer, "-f", "-r", "1000-5000999", "-o", str(tmp_path / "part"),
         f"{tls_hub.url}/v2/team/curl/blobs/{digest}")
    assert (tmp_path / "part").read_bytes() == blob[1000:5001000]


@pytest.mark.parametrize("trust", ["system", "stranger"])
def test_a_client_without_the_ca_is_refused_by_its_own_check(tls_hub, pki, trust):
    args = ["--cacert", str(pki.stranger_ca_file)] if trust == "stranger" else []
    refused = curl(*args, f"{tls_hub.url}/v2/", check=False)
    assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "certificate" in refused.stderr, refused.stderr


def test_client_setup_reads_an_https_server_with_its_ca_and_refuses_one_it_cannot_verify(tls_hub, pki):
    """`daohub client setup --server https://... --ca-file CA` reads GET /client-setup over TLS (this
    server mirrors nothing, which it then says); with a CA that signed nothing there it stops at the
    certificate."""
    setup = ["client", "setup", "--server", tls_hub.url]
    env = tls_hub.environment()
    trusted = run([tls_hub.python, "-m", "hub", *setup, "--ca-file", str(pki.ca_file)], env=env, check=False)
    assert trusted.returncode == 1 and "mirrors no upstream registry for anonymous pulls" in trusted.stderr, \
        trusted.stderr
    stranger = run([tls_hub.python, "-m", "hub", *setup, "--ca-file", str(pki.stranger_ca_file)], env=env,
                   check=False)
    assert stranger.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in stranger.stderr, stranger.stderr
    assert "Traceback" not in stranger.stderr + trusted.stderr


def test_plain_http_on_the_tls_port_gets_400_and_a_closed_connection(tls_hub, pki):
    with socket.create_connection(("127.0.0.1", tls_hub.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: hub.example:5000\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # b"": the server closed the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"This port speaks HTTPS; use https://hub.example:5000/" in answer, answer
    assert served_common_name("127.0.0.1", tls_hub.port, pki.ca_file) == "daohub-test-1"


def test_min_version_1_3_refuses_a_tls_1_2_client(tmp_path, pki):
    with DaoHubProcess(tmp_path / "hub", tls=pki.server_files(),
                       env={"DAOHUB_SERVER_TLS_MIN_VERSION": "1.3"}) as hub:
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as raw:
            with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|protocol version"):
                context.wrap_socket(raw, server_hostname="127.0.0.1")
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-test-1"


def own_copy(pki: Pki, directory) -> Pki:
    """The session's server pair copied where a test may replace it."""
    directory.mkdir()
    cert, key = directory / "server.crt", directory / "server.key"
    shutil.copy(pki.cert_file, cert)
    shutil.copy(pki.key_file, key)
    return Pki(pki.root, pki.ca_file, cert, key, pki.client_ca_file, pki.client_cert, pki.stranger_ca_file,
               pki.server_ca)


def replace(path, source) -> None:
    """As cert-manager and certbot do: the new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    shutil.copy(source, tmp)
    os.replace(tmp, path)


def test_a_certificate_replaced_on_disk_is_served_without_a_restart(tmp_path, pki):
    mine = own_copy(pki, tmp_path / "tls")
    with DaoHubProcess(tmp_path / "hub", tls=mine.server_files(),
                       env={"DAOHUB_SERVER_TLS_RELOAD_INTERVAL_SECONDS": "0.2"}) as hub:
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-test-1"
        pid = hub.pid
        new_cert, new_key = pki.issue_server_pair(tmp_path / "renewed", "daohub-renewed")
        replace(mine.key_file, new_key)
        replace(mine.cert_file, new_cert)
        wait_for(lambda: served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-renewed",
                 "the renewed certificate")
        assert hub.pid == pid and hub.running
        curl("--cacert", str(pki.ca_file), "-f", f"{hub.url}/healthz")


def test_sighup_reloads_and_a_broken_pair_keeps_the_old_one(tmp_path, pki):
    mine = own_copy(pki, tmp_path / "tls")
    with DaoHubProcess(tmp_path / "hub", tls=mine.server_files(),
                       env={"DAOHUB_SERVER_TLS_RELOAD_INTERVAL_SECONDS": "0"}) as hub:
        new_cert, new_key = pki.issue_server_pair(tmp_path / "renewed", "daohub-renewed")
        # A key that does not match the certificate: logged, and the old pair served on.
        replace(mine.cert_file, new_cert)
        replace(mine.key_file, pki.client_cert[1])
        hub.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate not reloaded (SIGHUP)" in hub.log_text(), "the reload error")
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-test-1"
        replace(mine.key_file, new_key)
        # Polling is off: the files alone change nothing until the signal.
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-test-1"
        hub.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate reloaded" in hub.log_text(), "the reload")
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-renewed"
        assert hub.running


def test_mutual_tls_requires_a_certificate_from_the_client_ca(tmp_path, pki):
    hub = secured_hub(tmp_path / "hub", pki, mutual=True)
    try:
        cert, key = map(str, pki.client_cert)
        ok = curl("--cacert", str(pki.ca_file), "--cert", cert, "--key", key, "-u", f"alice:{PASSWORD}",
                  "-o", "/dev/null", "-w", "%{http_code}", f"{hub.url}/auth/token?service=daohub")
        assert ok.stdout == "200"
        # No certificate, or one from another CA: the server's TLS alert says which.
        for client, alert in (([], "alert certificate required"),
                              (["--cert", str(pki.cert_file), "--key", str(pki.key_file)],
                               "alert unknown ca")):
            refused = curl("--cacert", str(pki.ca_file), *client, f"{hub.url}/v2/", check=False)
            assert refused.returncode in (35, 56), refused.stderr  # handshake failed / receive failed
            assert alert in refused.stderr, refused.stderr
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                tls.recv(100)  # TLS 1.3: the server's refusal arrives after the client's Finished
    finally:
        assert hub.stop() == 0, hub.log_text()[-3000:]


def test_a_client_ca_replaced_on_disk_is_trusted_and_the_old_one_no_longer(tmp_path, pki):
    """A rotated client CA: the new one's certificates get in and the old one's are refused, without
    a restart (OpenSSL cannot drop a CA from a context, so the server builds a new context)."""
    mine = tmp_path / "tls"
    mine.mkdir()
    client_ca = mine / "client-ca.crt"
    shutil.copy(pki.client_ca_file, client_ca)
    rotated = create_ca(tmp_path / "rotated", "DaoHub rotated client CA", stem="client-ca")
    new_client = issue_certificate(tmp_path / "rotated", "client", "rotated-client", (), *rotated, client=True)
    files = dataclasses.replace(pki.server_files(mutual=True), client_ca_file=client_ca)
    hub = secured_hub(tmp_path / "hub", pki, files=files, env={"DAOHUB_SERVER_TLS_RELOAD_INTERVAL_SECONDS": "0.2"})

    def status(cert: tuple) -> str:
        done = curl("--cacert", str(pki.ca_file), "--cert", str(cert[0]), "--key", str(cert[1]), "-o", "/dev/null",
                    "-w", "%{http_code}", f"{hub.url}/healthz", check=False)
        return done.stdout if done.returncode == 0 else "refused"

    try:
        assert (status(pki.client_cert), status(new_client)) == ("200", "refused")
        pid = hub.pid
        replace(client_ca, tmp_path / "rotated" / "client-ca.crt")
        wait_for(lambda: status(new_client) == "200", "the rotated client CA")
        assert status(pki.client_cert) == "refused"
        assert "TLS client CA reloaded" in hub.log_text() and hub.pid == pid
        # A client CA file that does not load keeps the context in use.
        client_ca.with_suffix(".bad").write_text("not a certificate")
        replace(client_ca, client_ca.with_suffix(".bad"))
        wait_for(lambda: "TLS certificate not reloaded (files changed)" in hub.log_text(), "the reload error")
        assert (status(pki.client_cert), status(new_client)) == ("refused", "200")
    finally:
        assert hub.stop() == 0, hub.log_text()[-3000:]


def test_the_plain_http_health_port_answers_probes_only(tmp_path, pki):
    health = f"127.0.0.1:{free_port()}"
    with DaoHubProcess(tmp_path / "hub", tls=pki.server_files(),
                       env={"DAOHUB_SERVER_TLS_HEALTH_ADDR": health}) as hub:
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://{health}{path}", timeout=10) as r:
                assert r.status == 200
        for path in ("/v2/", "/metrics", "/auth/token"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://{health}{path}", timeout=10)
            assert refused.value.code == 404
        with urllib.request.urlopen(f"{hub.url}/v2/", timeout=10, context=hub.ssl_context()) as r:
            assert r.status == 200


async def test_relayed_s3_reads_are_not_spliced_into_a_tls_socket(moto_s3, tmp_path, pki):
    """The relay splices storage bytes into the client's raw socket: under TLS that would be
    plaintext inside a TLS stream. Over HTTPS the body is streamed through the TLS transport."""
    backend = s3_backend(moto_s3, "")
    with DaoHubProcess(tmp_path / "hub", tls=pki.server_files(), env=backend.env()) as hub:
        data = os.urandom(5 * MiB + 1)
        digest = sha256(data)
        connector = aiohttp.TCPConnector(ssl=hub.ssl_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"{hub.url}/v2/team/tls/blobs/uploads/?digest={digest}", data=data) as r:
                assert r.status == 201, await r.text()
            for headers, want in (({}, data), ({"Range": "bytes=100-3145827"}, data[100:3145828])):
                async with session.get(f"{hub.url}/v2/team/tls/blobs/{digest}", headers=headers) as r:
                    assert r.status in (200, 206) and await r.read() == want
            async with session.get(f"{hub.url}/metrics") as r:
                metrics = await r.text()
        assert 'daohub_blob_relays_total{method="stream"} 2.0' in metrics, metrics
        assert 'daohub_blob_relays_total{method="splice"}' not in metrics, metrics


def test_uvloop_serves_tls_too(tmp_path, pki):
    """uvloop's transports cannot be handed to asyncio's TLS protocol: there the site is plain
    aiohttp TLS, where plain HTTP gets a closed connection instead of the 400."""
    with DaoHubProcess(tmp_path / "hub", tls=pki.server_files(),
                       env={"DAOHUB_SERVER_EVENT_LOOP": "uvloop"}) as hub:
        assert served_common_name("127.0.0.1", hub.port, pki.ca_file) == "daohub-test-1"
        with urllib.request.urlopen(f"{hub.url}/v2/", timeout=10, context=hub.ssl_context()) as r:
            assert r.status == 200
        with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert sock.recv(65536) == b""  # closed, not hung
            except ConnectionResetError:
                pass  # closed with a reset: as good
