"""A throwaway OpenLDAP server (Debian's slapd) on loopback for the sign-in tests.

`Slapd` writes a slapd.conf into a temp directory (mdb database, the core, cosine,
inetorgperson and nis schemas, the memberof overlay so users get `memberOf`), starts
`slapd -f <conf> -h "ldap://127.0.0.1:PORT/ [ldaps://127.0.0.1:PORT2/]" -d 0` on ports the
kernel picks, as the `openldap` user when we are root, and loads entries with ldap-utils'
`ldapadd` (through the server, so the overlay sees every group change): the suffix's entry
at the first start, then whatever `add()` is given (`people_ldif()` writes an ou of people and
groups). `ldapmodify()` and
`stop()`/`start()` let a test change the directory or take it away.

With a `Pki` (tests/helpers/tls.py) it also speaks StartTLS on the ldap:// port and TLS on
an ldaps:// port, with a certificate for 127.0.0.1 from that private CA.

Only the standard library is used here, like the other service helpers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from .server import free_port

SLAPD = os.environ.get("DAOHUB_SLAPD", "/usr/sbin/slapd")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SUFFIX = "dc=daohub,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Secret-0"
SERVICE_USER = "openldap"


class SlapdError(RuntimeError):
    """slapd did not start or stop, or an ldap-utils command failed."""


class Slapd:
    """One slapd in its own directory: `.start()`, `.stop()`, `.url`, `.ldaps_url`, `.add()`, `.ldapmodify()`."""

    def __init__(self, base_dir: str | os.PathLike | None = None, *, pki=None):
        """`base_dir` (default: a new directory under /tmp) must be reachable by the openldap user
        when we are root: slapd runs as that user."""
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="dh-ldap-", dir="/tmp"))
        self._own_base = base_dir is None
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if pki is not None else None
        self.pki = pki
        self.log_path = self.base_dir / "slapd.log"
        self._process: subprocess.Popen | None = None
        self._written = False
        self._loaded = False

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if self.tls_port is None:
            raise SlapdError("this slapd was started without a Pki: it has no ldaps:// port")
        return f"ldaps://{self.host}:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- files -------------------------------------------------------------------------------------
    def _owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        pw = pwd.getpwnam(SERVICE_USER)
        return pw.pw_uid, pw.pw_gid

    def _write(self) -> None:
        if not Path(SLAPD).exists():
            raise SlapdError(f"no slapd at {SLAPD} (install Debian's slapd and ldap-utils)")
        db = self.base_dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        tls = ""
        if self.pki is not None:
            for name, source in (("ca.crt", self.pki.ca_file), ("server.crt", self.pki.cert_file),
                                 ("server.key", self.pki.key_file)):
                shutil.copyfile(source, self.base_dir / name)
            tls = (f"TLSCACertificateFile {self.base_dir / 'ca.crt'}\n"
                   f"TLSCertificateFile {self.base_dir / 'server.crt'}\n"
                   f"TLSCertificateKeyFile {self.base_dir / 'server.key'}\n")
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in SCHEMAS)
        (self.base_dir / "slapd.conf").write_text(
            f"{includes}"
            f"modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n"
            f"pidfile {self.base_dir / 'slapd.pid'}\nargsfile {self.base_dir / 'slapd.args'}\n"
            f"{tls}"
            # Anyone may read (the provider may search anonymously), nobody but the root DN writes;
            # userPassword is for binding only.
            "access to attrs=userPassword by anonymous auth by * none\n"
            "access to * by * read\n"
            f"database mdb\nmaxsize 67108864\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\n"
            f"rootpw {ROOT_PASSWORD}\ndirectory {db}\n"
            "overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\n"
            "memberof-memberof-ad memberOf\nmemberof-refint TRUE\n")
        owner = self._owner()
        if owner is not None:
            for path in [self.base_dir, *self.base_dir.rglob("*")]:
                os.chown(path, *owner)
        self._written = True

    # -- the process -------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Self:
        if self.running:
            return self
        if not self._written:
            self._write()
        urls = self.url + "/" + (f" ldaps://{self.host}:{self.tls_port}/" if self.tls_port else "")
        command = [SLAPD, "-f", str(self.base_dir / "slapd.conf"), "-h", urls, "-d", "0"]
        owner = self._owner()
        if owner is not None:
            command += ["-u", SERVICE_USER, "-g", SERVICE_USER]
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.base_dir,
                                             start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise SlapdError(f"slapd exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SlapdError(f"slapd did not listen on {self.url} within {timeout} s:\n{self.log_tail()}")
                time.sleep(0.05)
        if not self._loaded:
            self.add(base_ldif())
            self._loaded = True
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait: every connection it had is gone afterwards."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no slapd log)"

    # -- content -----------------------------------------------------------------------------------
    def _ldap_tool(self, tool: str, ldif: str, *extra: str) -> str:
        path = shutil.which(tool)
        if path is None:
            raise SlapdError(f"{tool} is missing (install Debian's ldap-utils)")
        result = subprocess.run([path, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, *extra],
                                input=ldif, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise SlapdError(f"{tool} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def add(self, ldif: str) -> None:
        """Add the entries of `ldif` (ldapadd, as the root DN)."""
        self._ldap_tool("ldapadd", ldif)

    def ldapmodify(self, ldif: str) -> None:
        """Apply the change records of `ldif` (ldapmodify, as the root DN)."""
        self._ldap_tool("ldapmodify", ldif)


def base_ldif(suffix: str = SUFFIX) -> str:
    """The suffix's own entry (added by `Slapd.start()` on an empty database)."""
    return (f"dn: {suffix}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
            f"o: DaoHub tests\ndc: {suffix.split(',')[0].split('=')[1]}\n")


def people_ldif(ou: str, people: dict[str, str], groups: dict[str, list[str]], *, suffix: str = SUFFIX) -> str:
    """ou=<ou> holding one inetOrgPerson per uid -> password (uid=<uid>,ou=<ou>,<suffix>) and one
    groupOfNames per group -> member uids (cn=<group>,ou=<ou>,<suffix>; a group without members
    gets the root DN, as groupOfNames needs one). One ou per test module keeps modules apart."""
    base = f"ou={ou},{suffix}"
    blocks = [f"dn: {base}\nobjectClass: organizationalUnit\nou: {ou}\n"]
    for uid, password in people.items():
        blocks.append(f"dn: uid={uid},{base}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                      f"cn: {uid.title()} Example\nsn: Example\nmail: {uid}@daohub.test\nuserPassword: {password}\n")
    for group, members in groups.items():
        dns = [f"uid={m},{base}" for m in members] or [ROOT_DN]
        blocks.append(f"dn: cn={group},{base}\nobjectClass: groupOfNames\ncn: {group}\n"
                      + "".join(f"member: {dn}\n" for dn in dns))
    return "\n".join(blocks)


__all__ = ["ROOT_DN", "ROOT_PASSWORD", "SUFFIX", "Slapd", "SlapdError", "base_ldif", "people_ldif"]
