"""moto's standalone S3 server for tests: one process per test session, a fresh bucket per test.

`MotoServer` runs `python -m moto.server -H 127.0.0.1 -p PORT` in its own process (moto is
slow-ish and GIL-bound; a separate process keeps it off the test runner's core) with the
life cycle of `server._ServerProcess`: `start()`, `stop()`, readiness polled over HTTP.
`shared_moto()` returns the session's server, started on first use, and `stop_shared()`
stops every one started (the `fixtures_s3` pytest plugin calls it at session end; atexit
is only a safety net).

Signature checking. moto accepts any credentials unless it runs in its auth mode: once
INITIAL_NO_AUTH_ACTION_COUNT requests have been served, every request must be SigV4-signed
by a known IAM access key and allowed by that user's policies. `shared_moto(auth=True)`
starts a second server with the count unlimited, creates an IAM user with an `s3:*`
policy and an access key while nothing is checked, then sets the count to 0 through
`POST /moto-api/reset-auth`. `.credentials` holds that key. (Presigned URLs do not work
in this mode: moto answers them with a 500. Test redirects on the plain server.)

Virtual-hosted addressing (Alibaba OSS style). moto takes the bucket from the first label
of the Host header unless the host is an IP address or starts with "localhost", so
`http://<bucket>.oss-test.localhost:PORT/key` reaches `<bucket>`. RFC 6761 reserves every
name under .localhost for loopback, but glibc here resolves only `localhost` itself (there
is no nss-myhostname), so `resolve_localhost_subdomains()` makes this process resolve
`*.localhost` to 127.0.0.1 by wrapping socket.getaddrinfo, which aiohttp's default
resolver and asyncio use. Nothing system-wide (/etc/hosts) changes, and other names
resolve as before. A child process (a hub started with DaoHubProcess) does not inherit
it: give such a hub path addressing, or a real wildcard name.

Standard library only, except that signing bucket creation on the auth-mode server uses
botocore (installed with aiobotocore).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import sys
import threading
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from tempfile import mkdtemp

from .server import _ServerProcess

REGION = "us-east-1"
_IAM_NS = "{https://iam.amazonaws.com/doc/2010-05-08/}"


class MotoServer(_ServerProcess):
    name = "moto"
    health_path = "/moto-api/data.json"

    def __init__(self, data_dir: str | os.PathLike, *, auth: bool = False, **kwargs):
        super().__init__(data_dir, **kwargs)
        self.auth = auth
        self.credentials: tuple[str, str] = ("test", "test")  # any key works until auth is on

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.bind_host, "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        # Real AWS credentials of the caller must never reach a test server.
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(name, None)
        return env

    def start(self) -> MotoServer:
        super().start()
        if self.auth:
            self._enable_auth()
        return self

    # -- auth mode ----------------------------------------------------------------------------
    def _iam(self, action: str, **params: str) -> ET.Element:
        """An IAM query-API call; unsigned, so only before auth is switched on."""
        body = urllib.parse.urlencode({"Action": action, "Version": "2010-05-08", **params}).encode()
        request = urllib.request.Request(self.url + "/", data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            # moto routes by the service named in the credential scope.
            "Authorization": f"AWS4-HMAC-SHA256 Credential=setup/20260101/{REGION}/iam/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        })
        with urllib.request.urlopen(request, timeout=30) as response:
            return ET.fromstring(response.read())

    def _enable_auth(self) -> None:
        user = "daohub-tests"
        self._iam("CreateUser", UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        self._iam("PutUserPolicy", UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = self._iam("CreateAccessKey", UserName=user).find(f".//{_IAM_NS}AccessKey")
        assert key is not None, "moto did not return an access key"
        self.credentials = (key.findtext(f"{_IAM_NS}AccessKeyId"), key.findtext(f"{_IAM_NS}SecretAccessKey"))
        request = urllib.request.Request(self.url + "/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["status"] == "ok"

    # -- buckets ------------------------------------------------------------------------------
    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh uniquely named one by default) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:20]}"
        if self.auth:
            import botocore.session

            client = botocore.session.get_session().create_client(
                "s3", region_name=REGION, endpoint_url=self.url, aws_access_key_id=self.credentials[0],
                aws_secret_access_key=self.credentials[1])
            try:
                client.create_bucket(Bucket=name)
            finally:
                client.close()
        else:
            request = urllib.request.Request(f"{self.url}/{name}", method="PUT")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, response.status
        return name


# -- the session's servers ------------------------------------------------------------------------
_lock = threading.Lock()
_servers: dict[bool, MotoServer] = {}


def shared_moto(*, auth: bool = False) -> MotoServer:
    """The session's moto server (auth mode or not), started on first use."""
    with _lock:
        server = _servers.get(auth)
        if server is None or not server.running:
            data_dir = Path(mkdtemp(prefix="daohub-moto-"))
            server = MotoServer(data_dir, auth=auth, log_name="moto-auth.log" if auth else "moto.log")
            server.start()
            _servers[auth] = server
        return server


def stop_shared() -> None:
    with _lock:
        while _servers:
            _, server = _servers.popitem()
            server.stop(timeout=10)
            shutil.rmtree(server.data_dir, ignore_errors=True)


atexit.register(stop_shared)


# -- *.localhost ----------------------------------------------------------------------------------
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
        if family == socket.AF_INET6:
            family = socket.AF_INET
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def resolve_localhost_subdomains() -> None:
    """Resolve `<anything>.localhost` to 127.0.0.1 in this process (RFC 6761); idempotent."""
    socket.getaddrinfo = _getaddrinfo


def restore_resolution() -> None:
    socket.getaddrinfo = _real_getaddrinfo
