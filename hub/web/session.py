"""Browser sessions of the web catalog: a signed cookie, a row per signed-in session, and the
CSRF token tied to the cookie.

The cookie holds the subject, an expiry, a random nonce and, once signed in, a random session
id, signed with HMAC-SHA256 under a key derived (HKDF) from a token signing key in the key ring.
Every replica loads the same ring from the metadata store, so any replica checks a cookie
another issued. A signed-in cookie stands for someone only while the store's row for its
session id (kept as a SHA-256 hash, so a copy of the table signs no one in) is live: signing
out ends that row, and a password change or disabling the user ends all of theirs. Rotating
the signing keys ends sessions too, once the old key leaves the ring. An anonymous visitor
gets a cookie without a row (empty subject), so that the forms they may use (render, login)
carry a CSRF token.

The CSRF token is an HMAC of the session nonce: only a page served to this browser can know it,
and a login issues a new nonce (no session fixation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE = "daohub_session"
TTL_SECONDS = 8 * 3600
MAX_COOKIE_CHARS = 1024
_HKDF_INFO = b"daohub web catalog session v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(signing_key) -> bytes:
    """The session MAC key of one auth.keys.SigningKey (never the signing key itself)."""
    private = signing_key.private_key.private_numbers().private_value.to_bytes(32, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(private)


class Keys:
    """MAC keys by kid: the first signs, every one verifies."""

    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise ValueError("no session keys")
        self.current_kid, self.current = keys[0]
        self.by_kid = dict(keys)

    @classmethod
    def from_ring(cls, ring) -> Keys:
        return cls([(k.kid, derive_key(k)) for k in ring.keys])

    @classmethod
    def from_secret(cls, secret: bytes) -> Keys:
        """For an open registry (auth off): a per-process key; sessions only carry CSRF nonces there."""
        return cls([("local", hashlib.sha256(b"daohub web " + secret).digest())])


@dataclass(frozen=True, slots=True)
class Session:
    subject: str  # "" for an anonymous visitor
    nonce: str
    expires: int
    kid: str
    sid: str = ""  # the id of a signed-in session's row in the store ("" when anonymous)

    @property
    def signed_in(self) -> bool:
        return bool(self.subject)

    @property
    def sid_hash(self) -> str:
        """The key of the session's row: the id is never stored as it is."""
        return hashlib.sha256(self.sid.encode()).hexdigest()


def new_session(keys: Keys, subject: str = "", *, now: float | None = None) -> Session:
    sid = secrets.token_urlsafe(32) if subject else ""
    return Session(subject, secrets.token_urlsafe(16), int((now or time.time()) + TTL_SECONDS), keys.current_kid, sid)


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def encode(keys: Keys, session: Session) -> str:
    body = _b64(json.dumps({"s": session.subject, "n": session.nonce, "e": session.expires, "i": session.sid},
                           separators=(",", ":")).encode())
    payload = f"{keys.current_kid}.{body}"
    return f"{payload}.{_b64(_mac(keys.current, payload))}"


def decode(keys: Keys, cookie: str | None, *, now: float | None = None) -> Session | None:
    """The session in a cookie, or None when it is missing, forged, malformed or expired."""
    if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 2:
        return None
    kid, body, mac = cookie.split(".")
    key = keys.by_kid.get(kid)
    if key is None:
        return None
    try:
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _mac(key, f"{kid}.{body}")):
        return None
    try:
        doc = json.loads(_unb64(body))
        session = Session(str(doc["s"]), str(doc["n"]), int(doc["e"]), kid, str(doc.get("i", "")))
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    if session.expires <= (now or time.time()) or (session.signed_in and not session.sid):
        return None  # expired, or signed in before sessions had rows
    return session


def csrf_token(keys: Keys, session: Session) -> str:
    return _b64(_mac(keys.by_kid.get(session.kid, keys.current), "csrf|" + session.nonce))


def csrf_ok(keys: Keys, session: Session | None, given: str | None) -> bool:
    if session is None or not given or len(given) > 200:
        return False
    return hmac.compare_digest(given.encode(), csrf_token(keys, session).encode())

