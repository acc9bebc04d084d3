"""Signing keys, RFC 7638 thumbprints, JWKS and rotation."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from auth.keys import KeyRing, SigningKey, b64url, jwk_thumbprint

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _b64decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_generate_is_p256_with_thumbprint_kid():
    key = SigningKey.generate(T0)
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    assert key.created_at == T0
    assert key.kid == jwk_thumbprint(key.public_key)
    assert "=" not in key.kid and len(key.kid) == 43


def test_thumbprint_follows_rfc7638_by_hand():
    key = SigningKey.generate()
    nums = key.public_key.public_numbers()
    x = b64url(nums.x.to_bytes(32, "big"))
    y = b64url(nums.y.to_bytes(32, "big"))
    canonical = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (x, y)
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert key.kid == expected


def test_thumbprint_pads_short_coordinates():
    # A coordinate with a leading zero byte must still be encoded as 32 bytes.
    d = next(d for d in range(1, 100_000)
             if ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers().x < 2**248)
    key = SigningKey.from_private_key(ec.derive_private_key(d, ec.SECP256R1()))
    jwk = key.public_jwk()
    assert len(_b64decode(jwk["x"])) == 32 and _b64decode(jwk["x"])[0] == 0
    assert len(_b64decode(jwk["y"])) == 32


def test_pem_roundtrip():
    key = SigningKey.generate(T0)
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    again = SigningKey.from_pem(pem, created_at=T0)
    assert again.kid == key.kid and again == key
    assert SigningKey.from_pem(pem.decode()).kid == key.kid


def _pem(private_key) -> bytes:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a pem",
        _pem(ec.generate_private_key(ec.SECP384R1())),
        _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        _pem(ed25519.Ed25519PrivateKey.generate()),
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")),
    ],
    ids=["empty", "garbage", "p384", "rsa", "ed25519", "encrypted"],
)
def test_from_pem_refuses(pem):
    with pytest.raises(ValueError):
        SigningKey.from_pem(pem)


def test_repr_hides_private_key():
    key = SigningKey.generate()
    text = repr(key)
    assert key.kid in text
    assert "private" not in text.lower()


def test_public_jwk_has_only_public_members():
    key = SigningKey.generate()
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert jwk["kid"] == key.kid
    json.dumps(jwk)


def test_rotate_keeps_previous_newest_first_and_bounded():
    ring = KeyRing.generate(max_previous=2)
    k0 = ring.current
    ring1 = ring.rotate()
    k1 = ring1.current
    ring2 = ring1.rotate()
    k2 = ring2.current
    ring3 = ring2.rotate()
    assert ring1.previous == (k0,)
    assert ring2.previous == (k1, k0)
    assert ring3.previous == (k2, k1)  # k0 dropped
    assert ring3.verification_key(k0.kid) is None
    assert k0.kid not in ring3 and k1.kid in ring3
    assert ring.current is k0 and ring.previous == ()  # rotation returns a new ring


def test_rotate_with_given_key_and_zero_previous():
    ring = KeyRing.generate(max_previous=0)
    new = SigningKey.generate()
    rotated = ring.rotate(new)
    assert rotated.current is new and rotated.previous == ()


def test_ring_truncates_and_rejects_duplicates():
    keys = [SigningKey.generate() for _ in range(4)]
    ring = KeyRing(keys[0], tuple(keys[1:]), max_previous=2)
    assert ring.previous == (keys[1], keys[2])
    with pytest.raises(ValueError, match="duplicate"):
        KeyRing(keys[0], (keys[0],))
    with pytest.raises(ValueError):
        KeyRing(keys[0], (), max_previous=-1)


def test_jwks_and_verification_key():
    ring = KeyRing.generate().rotate()
    jwks = ring.public_jwks()
    assert [k["kid"] for k in jwks["keys"]] == [ring.current.kid, ring.previous[0].kid]
    assert all("d" not in k for k in jwks["keys"])
    for key in ring.keys:
        got = ring.verification_key(key.kid)
        assert got is not None and got.public_numbers() == key.public_key.public_numbers()
    assert ring.verification_key("nope") is None
    assert ring.verification_key("") is None
