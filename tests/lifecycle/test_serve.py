"""`daohub serve` as a process: start-up line, config errors, graceful SIGTERM, restart."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.server import REPO_ROOT, DaoHubProcess


def _upload_slowly(host: str, port: int, location: str, chunks: list[bytes], pause: threading.Event,
                   result: dict) -> None:
    """PATCH with a chunked body, stopping after the first chunk until `pause` is set."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.putrequest("PATCH", location)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for i, chunk in enumerate(chunks):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if i == 0:
                result["first_chunk_sent"] = True
                pause.wait(30)
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        result["status"] = response.status
        result["range"] = response.getheader("Range")
        response.read()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = repr(exc)
    finally:
        conn.close()


def _request(server: DaoHubProcess, method: str, path: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_ready_line_and_graceful_sigterm(tmp_path):
    server = DaoHubProcess(tmp_path / "data").start()
    try:
        assert f"listening on http://127.0.0.1:{server.port}" in server.log_text()
        response, _ = _request(server, "POST", "/v2/team/app/blobs/uploads/")
        assert response.status == 202
        location = response.getheader("Location")

        data = [os.urandom(256 * 1024) for _ in range(8)]
        release = threading.Event()
        result: dict = {}
        uploader = threading.Thread(target=_upload_slowly,
                                    args=("127.0.0.1", server.port, location, data, release, result))
        uploader.start()
        deadline = time.monotonic() + 10
        while not result.get("first_chunk_sent") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # let the server start reading the body

        server.proc.send_signal(15)  # SIGTERM while the upload is in flight
        deadline = time.monotonic() + 10
        while "shutting down" not in server.log_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "shutting down" in server.log_text()
        # No new connections once shutdown has begun.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()

        release.set()
        uploader.join(30)
        assert result.get("status") == 202, result
        total = sum(len(c) for c in data)
        assert result["range"] == f"0-{total - 1}"
        assert server.proc.wait(30) == 0
        assert "stopped" in server.log_text()

        # Nothing was lost: after a restart the session resumes and commits.
        server.start()
        digest = "sha256:" + hashlib.sha256(b"".join(data)).hexdigest()
        response, _ = _request(server, "GET", location)
        assert response.status == 204 and response.getheader("Range") == f"0-{total - 1}"
        response, _ = _request(server, "PUT", f"{location}?digest={digest}")
        assert response.status == 201
        response, body = _request(server, "GET", f"/v2/team/app/blobs/{digest}")
        assert response.status == 200 and body == b"".join(data)
    finally:
        server.stop()


@pytest.mark.parametrize("args,env,message", [
    (["--addr", "nonsense"], {}, "server.addr must be HOST:PORT"),
    ([], {"DAOHUB_SERVER_BOGUS": "1"}, "unknown configuration variable: DAOHUB_SERVER_BOGUS"),
])
def test_configuration_errors_exit_2(tmp_path, args, env, message):
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
    proc = subprocess.run([sys.executable, "-m", "hub", "serve", "--data-dir", str(tmp_path), *args],
                          cwd=REPO_ROOT, env={**clean_env, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_unknown_config_file_key_exits_2(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text("storage:\n  drvier: filesystem\n")
    proc = subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(config)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown configuration key: storage.drvier" in proc.stderr


def test_migrate_command_and_env_override(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
    env["DAOHUB_DATA_DIR"] = str(tmp_path / "from-env")
    first = subprocess.run([sys.executable, "-m", "hub", "migrate"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    from hub.db import schema

    versions = [v for v, _, _ in schema.load("sqlite")]
    assert f"applied migrations: {versions}" in first.stdout
    assert (tmp_path / "from-env" / "daohub.db").exists()
    second = subprocess.run([sys.executable, "-m", "hub", "migrate"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "schema is up to date" in second.stdout
