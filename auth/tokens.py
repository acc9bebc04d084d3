"""Issue and verify the registry's JWTs (Docker token auth) and refresh tokens.

Access tokens carry ``iss, sub, aud (= service), exp, nbf, iat, jti`` and an
``access`` list of :meth:`ResourceScope.to_claim` entries; the header carries
``kid`` and ``typ: JWT``.  Refresh tokens are JWTs too, but with header
``typ`` :data:`REFRESH_TYP` and audience :func:`refresh_audience`, so neither
kind is accepted in place of the other.

Verification is pinned to ES256 and keys from the :class:`KeyRing` by ``kid``;
every failure raises :class:`InvalidToken`.  Verified access tokens are kept
in a bounded LRU cache keyed by the exact token string until their ``exp``,
so the hot path does not check a signature per request.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import jwt

from .keys import ALGORITHM, KeyRing
from .scopes import ResourceScope

__all__ = ["ACCESS_TYP", "REFRESH_TYP", "InvalidToken", "IssuedToken", "TokenIssuer", "TokenVerifier",
           "VerifiedRefreshToken", "VerifiedToken", "refresh_audience"]

ACCESS_TYP = "JWT"
REFRESH_TYP = "daohub-refresh+jwt"
MIN_EXPIRES_IN = 60
DEFAULT_REFRESH_EXPIRES_IN = 30 * 24 * 3600
MAX_TOKEN_LENGTH = 16 * 1024
_REQUIRED = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]

KeyRingSource = KeyRing | Callable[[], KeyRing]
Clock = Callable[[], float]


class InvalidToken(Exception):
    """Any reason a token is not accepted; ``reason`` is safe to log, not to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuedToken(NamedTuple):
    token: str
    expires_in: int
    issued_at: str  # RFC 3339, UTC


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    access: tuple[ResourceScope, ...]
    expires_at: float
    jti: str

    def allows(self, type: str, name: str, action: str) -> bool:
        """True when the token's ``access`` grants *action* on ``type:name``."""
        return any(s.type == type and s.name == name and action in s.actions for s in self.access)


@dataclass(frozen=True)
class VerifiedRefreshToken:
    subject: str
    client_id: str
    expires_at: float
    jti: str


def refresh_audience(service: str) -> str:
    """Audience of refresh tokens: never equal to the access-token audience."""
    return f"{service}#refresh"


def _ring(source: KeyRingSource) -> Callable[[], KeyRing]:
    return (lambda: source) if isinstance(source, KeyRing) else source


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenIssuer:
    """Signs tokens with the key ring's current key."""

    def __init__(self, keyring: KeyRingSource, issuer: str, service: str, *, clock: Clock = time.time) -> None:
        self._keyring = _ring(keyring)
        self.issuer = issuer
        self.service = service
        self._clock = clock

    def _sign(self, subject: str, audience: str, typ: str, expires_in: int,
              extra: dict[str, Any], jti: str | None = None) -> tuple[str, int]:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < MIN_EXPIRES_IN:
            raise ValueError(f"expires_in must be an int >= {MIN_EXPIRES_IN}")
        if not isinstance(subject, str):
            raise TypeError("subject must be str")
        iat = int(self._clock())
        claims = {"iss": self.issuer, "sub": subject, "aud": audience, "exp": iat + expires_in,
                  "nbf": iat, "iat": iat, "jti": jti or secrets.token_urlsafe(16), **extra}
        key = self._keyring().current
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ})
        return token, iat

    def issue(self, subject: str, access: Iterable[ResourceScope], expires_in: int = 300) -> IssuedToken:
        """An access token for *subject* granting exactly *access*: ``(token, expires_in, issued_at)``."""
        claims = [scope.to_claim() for scope in access]
        token, iat = self._sign(subject, self.service, ACCESS_TYP, expires_in, {"access": claims})
        return IssuedToken(token, expires_in, _rfc3339(iat))

    def issue_refresh_token(self, subject: str, client_id: str,
                            expires_in: int = DEFAULT_REFRESH_EXPIRES_IN, *, jti: str | None = None) -> str:
        """A long-lived refresh token bound to *client_id*; its ``jti`` (random unless given) is
        the revocation handle."""
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id is required")
        extra = {"client_id": client_id}
        return self._sign(subject, refresh_audience(self.service), REFRESH_TYP, expires_in, extra, jti)[0]


class TokenVerifier:
    """Verifies tokens against a key ring supplied by *keyring_provider* (called per verification)."""

    def __init__(self, keyring_provider: KeyRingSource, issuer: str, service: str, *, leeway: float = 30.0,
                 clock: Clock = time.time, cache_size: int = 10_000) -> None:
        self._keyring = _ring(keyring_provider)
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[VerifiedToken, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _decode(self, token: str, typ: str, audience: str) -> tuple[dict[str, Any], str]:
        # A JWT is ASCII; a header's non-UTF-8 bytes arrive as lone surrogates, on which PyJWT
        # raises UnicodeEncodeError rather than one of its own errors.
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("algorithm not allowed")
        if header.get("typ") != typ:
            raise InvalidToken("wrong token type")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("missing kid")
        key = self._keyring().verification_key(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        # Times (injected clock), sub and jti are checked below, the same on every pyjwt version.
        options: Any = {"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                        "verify_sub": False, "verify_jti": False, "strict_aud": True}
        try:
            payload = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience,
                                 issuer=self.issuer, options=options)
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {type(exc).__name__}") from None
        if not isinstance(payload.get("sub"), str) or not isinstance(payload.get("jti"), str):
            raise InvalidToken("malformed claim sub or jti")
        self._check_times(payload, self._clock())
        return payload, kid

    def _check_times(self, payload: dict[str, Any], now: float) -> None:
        exp, nbf, iat = (_numeric_date(payload, claim) for claim in ("exp", "nbf", "iat"))
        if now >= exp + self.leeway:
            raise InvalidToken("expired")
        if nbf > now + self.leeway:
            raise InvalidToken("not yet valid")
        if iat > now + self.leeway:
            raise InvalidToken("issued in the future")

    def verify(self, token: str) -> VerifiedToken:
        """Verify an access token; raises :class:`InvalidToken` on any failure."""
        now = self._clock()
        with self._lock:
            entry = self._cache.get(token) if isinstance(token, str) else None
            if entry is not None:
                verified, kid = entry
                if now < verified.expires_at and kid in self._keyring():
                    self._cache.move_to_end(token)
                    self.cache_hits += 1
                    return verified
                del self._cache[token]
            self.cache_misses += 1
        payload, kid = self._decode(token, ACCESS_TYP, self.service)
        raw_access = payload.get("access", [])
        if not isinstance(raw_access, list):
            raise InvalidToken("malformed access claim")
        access = tuple(ResourceScope.from_claim(c) for c in raw_access)
        if any(a is None for a in access):
            raise InvalidToken("malformed access claim")
        scopes = tuple(a for a in access if a is not None)
        verified = VerifiedToken(payload["sub"], scopes, _numeric_date(payload, "exp"), payload["jti"])
        if self._cache_size > 0 and verified.expires_at > now:
            with self._lock:
                self._cache[token] = (verified, kid)
                self._cache.move_to_end(token)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return verified

    def verify_refresh_token(self, token: str, *, client_id: str | None = None,
                             is_revoked: Callable[[str], bool] | None = None) -> VerifiedRefreshToken:
        """Verify a refresh token (never cached).

        *client_id*, when given, must match the one the token was issued to.
        *is_revoked(jti)* is consulted last; errors it raises propagate (fail
        closed).  Async callers can instead check ``result.jti`` themselves.
        """
        payload, _ = self._decode(token, REFRESH_TYP, refresh_audience(self.service))
        bound = payload.get("client_id")
        if not isinstance(bound, str) or not bound:
            raise InvalidToken("missing claim client_id")
        if client_id is not None and client_id != bound:
            raise InvalidToken("client_id mismatch")
        if is_revoked is not None and is_revoked(payload["jti"]):
            raise InvalidToken("revoked")
        return VerifiedRefreshToken(payload["sub"], bound, _numeric_date(payload, "exp"), payload["jti"])


def _numeric_date(payload: dict[str, Any], claim: str) -> float:
    """A NumericDate claim as a finite float (JSON may carry bools, huge ints, NaN or Infinity)."""
    value = payload[claim]
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidToken(f"malformed claim {claim}")
    return number
