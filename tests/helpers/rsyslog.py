"""A throwaway syslog listener, Debian's rsyslogd, on loopback for the audit export's tests.

`Rsyslog` writes an rsyslog.conf of its own into a temp directory: imudp and imtcp on ports the
kernel picked (imtcp takes RFC 6587 octet-counted frames), and one action that writes, per
message received, a JSON line of what rsyslog itself parsed (its RFC 5424 parser: PRI, facility,
severity, version, timestamp, hostname, app-name, procid, msgid, structured data, msg) and the
raw message, so the tests check both rsyslog's reading and their own parse of the raw bytes.
It runs in the foreground (`-n`), not as root (as `nobody` when the tests are root), reads no
/etc/rsyslog.conf and touches no system log.

Only the standard library is used here, like the other service helpers.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from .server import free_port

RSYSLOGD = os.environ.get("DAOHUB_RSYSLOGD", "/usr/sbin/rsyslogd")
FIELDS = ("pri", "syslogfacility", "syslogseverity", "protocol-version", "timereported", "hostname", "app-name",
          "procid", "msgid", "structured-data", "msg", "rawmsg", "inputname")

_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="list") {{
  constant(value="{{")
{properties}
  constant(value="}}\\n")
}}
action(type="omfile" file="{out}" template="fields" flushOnTXEnd="on" asyncWriting="off")
"""


def _property_lines() -> str:
    lines = []
    for i, name in enumerate(FIELDS):
        sep = "," if i else ""
        option = ' dateFormat="rfc3339"' if name == "timereported" else ""
        lines.append(f'  constant(value="{sep}\\"{name}\\":\\"") property(name="{name}" format="json"{option}) '
                     'constant(value="\\"")')
    return "\n".join(lines)


def available() -> bool:
    return os.access(RSYSLOGD, os.X_OK)


class Rsyslog:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="daohub-rsyslog-"))
        self.udp_port = self.tcp_port = 0
        self.out = self.dir / "received.jsonl"
        self._proc: subprocess.Popen | None = None

    def start(self) -> Self:
        self.udp_port, self.tcp_port = free_port(), free_port()
        work = self.dir / "work"
        work.mkdir(exist_ok=True)
        conf = self.dir / "rsyslog.conf"
        conf.write_text(_CONF.format(work=work, udp=self.udp_port, tcp=self.tcp_port, out=self.out,
                                     properties=_property_lines()))
        user = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            for p in (self.dir, work):
                os.chown(p, user.pw_uid, user.pw_gid)
        log = open(self.dir / "rsyslogd.log", "wb")
        self._proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                      user=user.pw_uid if user else None, group=user.pw_gid if user else None)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Until a probe sent over UDP and one over TCP were both written out (the listeners are up)."""
        deadline = time.monotonic() + timeout
        probe = b"<14>1 - - probe - - - ready"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {self._proc.returncode}: {self.log_text()}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(probe + b" udp", ("127.0.0.1", self.udp_port))
            try:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1) as s:
                    m = probe + b" tcp"
                    s.sendall(str(len(m)).encode() + b" " + m)
            except OSError:
                pass
            time.sleep(0.2)
            inputs = {r["inputname"] for r in self.received() if r["app-name"] == "probe"}
            if {"imudp", "imtcp"} <= inputs:
                return
        raise RuntimeError(f"rsyslogd did not come up: {self.log_text()}")

    def received(self) -> list[dict]:
        """What rsyslog wrote, one dict per message (the probes included: app-name `probe`)."""
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def messages(self) -> list[dict]:
        return [r for r in self.received() if r["app-name"] != "probe"]

    def wait_for(self, predicate, timeout: float = 60.0) -> list[dict]:
        """Until `predicate(messages)` holds (a bound on a hang, not a timed assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslog has {len(got)} messages; the wait ran out")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return (self.dir / "rsyslogd.log").read_text()[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
