"""Token signing keys (ES256 / P-256), their JWKS and rotation.

A :class:`SigningKey` is identified by its ``kid``: the RFC 7638 JWK thumbprint
of the public key, so the same key always gets the same id on every replica
and no registry of ids is needed.  A :class:`KeyRing` holds the current key
(used to sign) and a few previous ones (still accepted for verification) so
keys can rotate without invalidating tokens in flight.  Storing the PEM is
the caller's business; nothing here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["ALGORITHM", "DEFAULT_MAX_PREVIOUS", "KeyRing", "SigningKey", "b64url", "jwk_thumbprint"]

ALGORITHM = "ES256"
_CURVE_NAME = "P-256"
_COORD_BYTES = 32
DEFAULT_MAX_PREVIOUS = 2


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "crv": _CURVE_NAME,
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(_COORD_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(_COORD_BYTES, "big")),
    }


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(_public_members(public_key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _check_curve(key: Any) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("signing keys must be EC private keys")
    if key.curve.name != "secp256r1":
        raise ValueError("signing keys must use curve P-256 (ES256)")
    return key


@dataclass(frozen=True)
class SigningKey:
    """One ES256 key pair. Its repr never shows the private key."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)
    created_at: datetime

    @classmethod
    def from_private_key(cls, key: ec.EllipticCurvePrivateKey, created_at: datetime | None = None) -> SigningKey:
        key = _check_curve(key)
        return cls(jwk_thumbprint(key.public_key()), key, created_at or datetime.now(UTC))

    @classmethod
    def generate(cls, now: datetime | None = None) -> SigningKey:
        """A fresh P-256 key created at *now* (default: the current UTC time)."""
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()), now)

    @classmethod
    def from_pem(cls, pem: bytes | str, created_at: datetime | None = None) -> SigningKey:
        """Load an unencrypted PKCS#8 (or SEC1) PEM private key; ValueError if it is not P-256."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
            return cls.from_private_key(key, created_at)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an unencrypted P-256 PEM private key: {exc}") from None

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM. Protecting it at rest is the caller's job."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @cached_property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK: kty, crv, x, y, kid, use=sig, alg=ES256 (never ``d``)."""
        return {**_public_members(self.public_key), "kid": self.kid, "use": "sig", "alg": ALGORITHM}


@dataclass(frozen=True)
class KeyRing:
    """The current signing key plus recently retired ones, newest first."""

    current: SigningKey
    previous: tuple[SigningKey, ...] = ()
    max_previous: int = DEFAULT_MAX_PREVIOUS

    def __post_init__(self) -> None:
        object.__setattr__(self, "previous", tuple(self.previous))
        if self.max_previous < 0:
            raise ValueError("max_previous must be >= 0")
        if len(self.previous) > self.max_previous:
            object.__setattr__(self, "previous", self.previous[: self.max_previous])
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError("duplicate kid in key ring")

    @classmethod
    def generate(cls, now: datetime | None = None, max_previous: int = DEFAULT_MAX_PREVIOUS) -> KeyRing:
        return cls(SigningKey.generate(now), (), max_previous)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key accepted for verification, current first."""
        return (self.current, *self.previous)

    def rotate(self, new_key: SigningKey | None = None, now: datetime | None = None) -> KeyRing:
        """A new ring signing with *new_key* (generated if omitted).

        The old current key becomes ``previous[0]``; the oldest keys beyond
        ``max_previous`` are dropped, and tokens they signed stop verifying.
        """
        key = new_key or SigningKey.generate(now)
        previous = (self.current, *self.previous)[: self.max_previous]
        return KeyRing(key, previous, self.max_previous)

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document for ``/.well-known/jwks.json``: public parts only."""
        return {"keys": [k.public_jwk() for k in self.keys]}

    def verification_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The public key for *kid*, or None when no key in the ring has that id."""
        for key in self.keys:
            if key.kid == kid:
                return key.public_key
        return None

    def __contains__(self, kid: object) -> bool:
        return any(k.kid == kid for k in self.keys)
