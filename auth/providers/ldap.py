"""LDAP and Active Directory sign-in through ldap3 (pure Python, no C library; docs/sign-in.md).

A password check is: connect (ldaps://, or ldap:// and StartTLS when asked), bind as the search
account (or anonymously), find exactly one user with the filter (the login name escaped as RFC
4515 says), read their groups (memberOf, or a group search), then bind as that user's DN with
the password on a second connection. Certificates are verified unless `verify_tls: false`.
ldap3 is synchronous: every exchange runs on one of the provider's own worker threads (not the
event loop's default executor, which the password hash and other work share: a stalled directory
must not hold those up).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from ..provider_settings import ProviderSpec
from .base import DirectoryAccount, IdentityProvider, ProviderUnavailable

log = logging.getLogger("daohub.auth.ldap")

INVALID_CREDENTIALS = 49
SIZE_LIMIT_EXCEEDED = 4
NO_SUCH_OBJECT = 32
MAX_GROUPS = 1000  # groups read per user by a group search
CONCURRENT_EXCHANGES = 8  # worker threads talking to one server at once


class LdapProvider(IdentityProvider):
    def __init__(self, spec: ProviderSpec):
        self.name = spec.name
        self.cache_seconds = spec.cache_seconds
        self.mappings = tuple(spec.group_mappings)
        self._s = settings = spec.ldap
        password = settings.bind_password.reveal() if settings.bind_password else ""
        if settings.bind_password_file:
            password = Path(settings.bind_password_file).read_text().rstrip("\r\n")
            if not password:
                raise ValueError(f"auth.providers {spec.name}: {settings.bind_password_file} is empty")
        self._bind_password = password
        ldaps = settings.url.startswith("ldaps://")
        tls = None
        if ldaps or settings.start_tls:
            # ldap3 checks the certificate against the URL's host (and sends it as SNI).
            tls = Tls(validate=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE,
                      ca_certs_file=settings.ca_file or None, sni=urlsplit(settings.url).hostname)
        self._tls, self._ldaps = tls, ldaps
        self._threads = concurrent.futures.ThreadPoolExecutor(CONCURRENT_EXCHANGES,
                                                              thread_name_prefix=f"ldap-{spec.name}")

    def __repr__(self) -> str:
        return f"LdapProvider({self.name!r}, {self._s.url!r})"

    # IdentityProvider ---------------------------------------------------------------------------
    async def check_password(self, username: str, password: str) -> DirectoryAccount | None:
        if not password:  # an empty password would be an unauthenticated bind: never
            return None
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._check_password, username,
                                                                password)

    async def lookup(self, username: str) -> DirectoryAccount | None:
        found = await asyncio.get_running_loop().run_in_executor(self._threads, self._find, username)
        return found[1] if found else None

    async def aclose(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    def normalise_group(self, group: str) -> str:
        return normalise_dn(group)

    # The exchanges (worker threads) --------------------------------------------------------------
    def _check_password(self, username: str, password: str) -> DirectoryAccount | None:
        found = self._find(username)
        if found is None:
            return None
        dn, account = found
        conn = self._connection(dn, password)
        try:
            if self._open(conn) and conn.bind():
                return account
            if conn.result.get("result") != INVALID_CREDENTIALS:
                log.info("LDAP provider %s refused the bind of %s: %s", self.name, dn, _describe(conn))
            return None
        except LDAPException as exc:
            raise self._unavailable(exc) from None
        finally:
            _close(conn)

    def _find(self, username: str) -> tuple[str, DirectoryAccount] | None:
        """The user's DN and account, searched with the service account; None if not exactly one."""
        s = self._s
        wanted = [s.username_attribute, s.display_name_attribute, s.email_attribute]
        if s.group_source == "member_of":
            wanted.append(s.member_of_attribute)
        query = s.user_filter.replace("{username}", escape_filter_chars(username))
        conn = self._connection(s.bind_dn or None, self._bind_password or None)
        try:
            if not self._open(conn) or not conn.bind():
                log.error("LDAP provider %s: the search account could not bind: %s", self.name, _describe(conn))
                raise ProviderUnavailable(f"directory {self.name} is unavailable")
            conn.search(s.user_search_base, query, search_scope=SUBTREE, attributes=wanted, size_limit=2,
                        time_limit=max(1, math.ceil(s.timeout_seconds)))
            code = conn.result.get("result")
            entries = _entries(conn)
            if code == SIZE_LIMIT_EXCEEDED or len(entries) > 1:
                log.warning("LDAP provider %s: the user filter matches more than one entry for %r; refused",
                            self.name, username[:100])
                return None
            if code not in (0, NO_SUCH_OBJECT):
                raise ProviderUnavailable(f"directory {self.name} is unavailable")
            if not entries:
                return None
            dn, attrs = entries[0]["dn"], entries[0]["attributes"]
            login = _first(attrs.get(s.username_attribute))
            if login.lower() != username.lower():
                # The filter found someone whose login name is another (a filter on another attribute).
                log.warning("LDAP provider %s: %r found %s, whose %s is %r; refused", self.name, username[:100],
                            dn, s.username_attribute, login[:100])
                return None
            if s.group_source == "member_of":
                groups = _values(attrs.get(s.member_of_attribute))
            elif s.group_source == "search":
                groups = self._group_search(conn, dn, username)
            else:
                groups = []
            return dn, DirectoryAccount(self.name, login.lower(), _first(attrs.get(s.display_name_attribute)),
                                        _first(attrs.get(s.email_attribute)),
                                        frozenset(normalise_dn(g) for g in groups))
        except LDAPException as exc:
            raise self._unavailable(exc) from None
        finally:
            _close(conn)

    def _group_search(self, conn: Connection, dn: str, username: str) -> list[str]:
        s = self._s
        query = (s.group_filter.replace("{dn}", escape_filter_chars(dn))
                 .replace("{username}", escape_filter_chars(username)))
        conn.search(s.group_search_base, query, search_scope=SUBTREE, attributes=[], size_limit=MAX_GROUPS,
                    time_limit=max(1, math.ceil(s.timeout_seconds)))
        if conn.result.get("result") not in (0, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT):
            raise ProviderUnavailable(f"directory {self.name} is unavailable")
        return [entry["dn"] for entry in _entries(conn)]

    def _connection(self, user: str | None, password: str | None) -> Connection:
        # A Server of its own each time: ldap3 keeps an address that once failed out of use for
        # five seconds, so a shared one would refuse sign-ins for that long after an outage ends.
        server = Server(self._s.url, use_ssl=self._ldaps, tls=self._tls, get_info=NONE,
                        connect_timeout=self._s.timeout_seconds)
        return Connection(server, user=user, password=password,
                          authentication=SIMPLE if user else ANONYMOUS, auto_bind=False, read_only=True,
                          raise_exceptions=False, auto_referrals=False,
                          receive_timeout=max(1, math.ceil(self._s.timeout_seconds)))  # ldap3 packs an int

    def _open(self, conn: Connection) -> bool:
        conn.open()
        if self._s.start_tls:
            return bool(conn.start_tls())
        return True

    def _unavailable(self, exc: LDAPException) -> ProviderUnavailable:
        log.warning("LDAP provider %s (%s) is unavailable: %s: %s", self.name, self._s.url, type(exc).__name__,
                    str(exc)[:300])
        return ProviderUnavailable(f"directory {self.name} is unavailable")


def normalise_dn(dn: str) -> str:
    """A DN as groups are compared: attribute types and values lowercased, spaces around
    separators dropped (escapes kept as written)."""
    try:
        return ",".join(f"{attr.strip().lower()}={value.strip().lower()}"
                        for attr, value, _ in parse_dn(dn, strip=True))
    except LDAPException:
        return dn.strip().lower()


def _entries(conn: Connection) -> list[dict]:
    return [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]


def _values(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _first(value) -> str:
    values = _values(value)
    return values[0] if values else ""


def _describe(conn: Connection) -> str:
    result = conn.result or {}
    return f"{result.get('description', 'no answer')} ({result.get('result', '-')}) {result.get('message', '')}"[:300]


def _close(conn: Connection) -> None:
    try:
        if not conn.closed:
            conn.unbind()
    except LDAPException:
        pass
