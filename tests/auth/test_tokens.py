"""Token issue/verify, the JWT attack table, rotation, the verified-token cache and refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from auth.keys import KeyRing, SigningKey
from auth.scopes import ResourceScope
from auth.tokens import (
    REFRESH_TYP,
    InvalidToken,
    TokenIssuer,
    TokenVerifier,
    VerifiedToken,
    refresh_audience,
)

ISS, SERVICE = "daohub-token", "daohub"
T0 = 1_750_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rs(type_: str, name: str, *actions: str) -> ResourceScope:
    return ResourceScope(type_, name, frozenset(actions))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def issuer(ring, clock) -> TokenIssuer:
    return TokenIssuer(ring, ISS, SERVICE, clock=clock)


@pytest.fixture
def verifier(ring, clock) -> TokenVerifier:
    return TokenVerifier(lambda: ring, ISS, SERVICE, leeway=5, clock=clock)


ACCESS = [rs("repository", "team/app", "pull", "push"), rs("registry", "catalog", "*")]


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": ISS, "sub": "alice", "aud": SERVICE, "exp": int(T0) + 300, "nbf": int(T0),
            "iat": int(T0), "jti": "j1", "access": [s.to_claim() for s in ACCESS]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: SigningKey, **headers: Any) -> str:
    hdrs = {"kid": key.kid, "typ": "JWT", **headers}
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    return jwt.encode(payload, key.private_key, algorithm="ES256", headers=hdrs)


def sign_raw(header: dict[str, Any], payload: dict[str, Any], key: SigningKey) -> str:
    """Sign with ES256 exactly the header given (pyjwt would add or check fields)."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    signature = jwt.get_algorithm_by_name("ES256").sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{b64(signature)}"


# --- issuing ------------------------------------------------------------------

def test_issue_claims_and_header(issuer, ring):
    token, expires_in, issued_at = issuer.issue("alice", ACCESS, expires_in=120)
    assert expires_in == 120
    assert issued_at == "2025-06-15T15:06:40Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issued_at)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": ring.current.kid}
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["iss"] == ISS and body["sub"] == "alice" and body["aud"] == SERVICE
    assert body["iat"] == body["nbf"] == int(T0) and body["exp"] == int(T0) + 120
    assert body["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert isinstance(body["jti"], str) and len(body["jti"]) >= 16


def test_jti_is_unique(issuer):
    jtis = {jwt.decode(issuer.issue("a", []).token, options={"verify_signature": False})["jti"]
            for _ in range(20)}
    assert len(jtis) == 20


@pytest.mark.parametrize("expires_in", [59, 0, -1, True, 60.5, "300"])
def test_issue_refuses_short_or_odd_lifetimes(issuer, expires_in):
    with pytest.raises(ValueError, match=">= 60"):
        issuer.issue("alice", ACCESS, expires_in=expires_in)


def test_issue_accepts_minimum_and_default(issuer):
    assert issuer.issue("alice", [], expires_in=60).expires_in == 60
    assert issuer.issue("alice", []).expires_in == 300


def test_roundtrip(issuer, verifier):
    token = issuer.issue("alice", ACCESS).token
    verified = verifier.verify(token)
    assert verified.subject == "alice"
    assert verified.access == tuple(ACCESS)
    assert verified.expires_at == int(T0) + 300
    assert verified.jti


def test_anonymous_subject_and_empty_access(issuer, verifier):
    verified = verifier.verify(issuer.issue("", []).token)
    assert verified.subject == "" and verified.access == ()


def test_issuer_accepts_provider(ring, clock, verifier):
    holder = {"ring": ring}
    issuer = TokenIssuer(lambda: holder["ring"], ISS, SERVICE, clock=clock)
    holder["ring"] = ring.rotate()
    token = issuer.issue("alice", []).token
    assert jwt.get_unverified_header(token)["kid"] == holder["ring"].current.kid


@pytest.mark.parametrize(
    ("type_", "name", "action", "expected"),
    [
        ("repository", "team/app", "pull", True),
        ("repository", "team/app", "push", True),
        ("repository", "team/app", "delete", False),
        ("repository", "team/other", "pull", False),
        ("repository", "team/app/sub", "pull", False),
        ("registry", "catalog", "*", True),
        ("registry", "team/app", "pull", False),
    ],
)
def test_allows(type_, name, action, expected):
    token = VerifiedToken("alice", tuple(ACCESS), T0 + 60, "j")
    assert token.allows(type_, name, action) is expected


# --- the attack table -----------------------------------------------------------

def _alg_none(ring, **_):
    return f"{b64json({'alg': 'none', 'typ': 'JWT', 'kid': ring.current.kid})}.{b64json(claims())}."


def _hs256_with_public_pem(ring, **_):
    pem = ring.current.public_key.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': ring.current.kid})}.{b64json(claims())}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def _tampered_access(ring, issuer, **_):
    header, payload, signature = issuer.issue("alice", [rs("repository", "team/app", "pull")]).token.split(".")
    body = json.loads(unb64(payload))
    body["access"] = [{"type": "repository", "name": "team/app", "actions": ["delete", "pull", "push"]}]
    return f"{header}.{b64json(body)}.{signature}"


def _tampered_sub(ring, issuer, **_):
    header, payload, signature = issuer.issue("alice", ACCESS).token.split(".")
    body = json.loads(unb64(payload))
    body["sub"] = "admin"
    return f"{header}.{b64json(body)}.{signature}"


def _other_key_same_kid(ring, **_):
    return sign(claims(), SigningKey.generate(), kid=ring.current.kid)


def _refresh_as_access(ring, issuer, **_):
    return issuer.issue_refresh_token("alice", "docker")


def _refresh_typ_access_aud(ring, **_):
    return sign(claims(), ring.current, typ=REFRESH_TYP)


def _access_typ_refresh_aud(ring, **_):
    return sign(claims(aud=refresh_audience(SERVICE)), ring.current)


ATTACKS = {
    "alg none": _alg_none,
    "alg none, no signature segment": lambda ring, **_: _alg_none(ring)[:-1],
    "HS256 with public key PEM as secret": _hs256_with_public_pem,
    "expired": lambda ring, **_: sign(claims(exp=int(T0) - 10, iat=int(T0) - 400, nbf=int(T0) - 400), ring.current),
    "nbf in the future": lambda ring, **_: sign(claims(nbf=int(T0) + 3600), ring.current),
    "iat in the future": lambda ring, **_: sign(claims(iat=int(T0) + 3600), ring.current),
    "wrong aud": lambda ring, **_: sign(claims(aud="other-registry"), ring.current),
    "aud list (strict)": lambda ring, **_: sign(claims(aud=[SERVICE, "other"]), ring.current),
    "wrong iss": lambda ring, **_: sign(claims(iss="evil"), ring.current),
    "unknown kid": lambda ring, **_: sign(claims(), ring.current, kid="unknown"),
    "missing kid": lambda ring, **_: sign(claims(), ring.current, kid=None),
    "empty kid": lambda ring, **_: sign(claims(), ring.current, kid=""),
    "non-string kid": lambda ring, **_: sign_raw({"alg": "ES256", "typ": "JWT", "kid": 7}, claims(), ring.current),
    "tampered access claim": _tampered_access,
    "tampered sub claim": _tampered_sub,
    "other key with same kid": _other_key_same_kid,
    "refresh token as access token": _refresh_as_access,
    "refresh typ with access aud": _refresh_typ_access_aud,
    "access typ with refresh aud": _access_typ_refresh_aud,
    "missing typ": lambda ring, **_: sign_raw({"alg": "ES256", "kid": ring.current.kid}, claims(), ring.current),
    "ES384 header": lambda ring, **_: jwt.encode(claims(), ec.generate_private_key(ec.SECP384R1()),
                                                 algorithm="ES384", headers={"kid": ring.current.kid, "typ": "JWT"}),
    "alg ES256 lowercase": lambda ring, **_: sign_raw({"alg": "es256", "typ": "JWT", "kid": ring.current.kid},
                                                      claims(), ring.current),
    "access claim not a list": lambda ring, **_: sign(claims(access="repository:team/app:*"), ring.current),
    "access entry malformed": lambda ring, **_: sign(claims(access=[{"type": "repository"}]), ring.current),
    "exp not a number": lambda ring, **_: sign(claims(exp="never"), ring.current),
    "exp is a bool": lambda ring, **_: sign(claims(exp=True), ring.current),
    "exp infinite": lambda ring, **_: sign(claims(exp=float("inf")), ring.current),
    "exp huge int": lambda ring, **_: sign(claims(exp=10**400), ring.current),
    "nbf NaN": lambda ring, **_: sign(claims(nbf=float("nan")), ring.current),
    "sub not a string": lambda ring, **_: sign(claims(sub=42), ring.current),
    "jti not a string": lambda ring, **_: sign(claims(jti=["a"]), ring.current),
    "garbage": lambda ring, **_: "not.a.jwt",
    "empty": lambda ring, **_: "",
    "two segments": lambda ring, **_: sign(claims(), ring.current).rsplit(".", 1)[0],
    "huge": lambda ring, **_: "a" * 100_000,
}


def _missing(claim: str):
    return lambda ring, **_: sign(claims(**{claim: None}), ring.current)


ATTACKS.update({f"missing {claim}": _missing(claim) for claim in ("exp", "nbf", "iat", "iss", "aud", "sub", "jti")})


# Why each attack must fail: checks the token is refused for the intended reason.
REASONS = {
    "alg none": "algorithm not allowed",
    "alg none, no signature segment": "malformed token",
    "HS256 with public key PEM as secret": "algorithm not allowed",
    "expired": "expired",
    "nbf in the future": "not yet valid",
    "iat in the future": "issued in the future",
    "wrong aud": "wrong audience",
    "aud list (strict)": "wrong audience",
    "wrong iss": "wrong issuer",
    "unknown kid": "unknown kid",
    "missing kid": "missing kid",
    "empty kid": "missing kid",
    "non-string kid": "malformed token",
    "tampered access claim": "bad signature",
    "tampered sub claim": "bad signature",
    "other key with same kid": "bad signature",
    "refresh token as access token": "wrong token type",
    "refresh typ with access aud": "wrong token type",
    "access typ with refresh aud": "wrong audience",
    "missing typ": "wrong token type",
    "ES384 header": "algorithm not allowed",
    "alg ES256 lowercase": "algorithm not allowed",
    "access claim not a list": "malformed access claim",
    "access entry malformed": "malformed access claim",
    "exp not a number": "malformed claim exp",
    "exp is a bool": "malformed claim exp",
    "exp infinite": "malformed claim exp",
    "exp huge int": "malformed claim exp",
    "nbf NaN": "malformed claim nbf",
    "sub not a string": "malformed claim sub or jti",
    "jti not a string": "malformed claim sub or jti",
    "garbage": "malformed token",
    "empty": "malformed token",
    "two segments": "malformed token",
    "huge": "malformed token",
    "missing exp": "missing claim exp",
    "missing nbf": "missing claim nbf",
    "missing iat": "missing claim iat",
    "missing iss": "missing claim iss",
    "missing aud": "missing claim aud",
    "missing sub": "missing claim sub",
    "missing jti": "missing claim jti",
}


def test_every_attack_has_a_reason():
    assert set(REASONS) == set(ATTACKS)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused(name, ring, issuer, verifier):
    token = ATTACKS[name](ring=ring, issuer=issuer)
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.reason == REASONS[name]


def test_pinned_algorithms_refuse_hs256_even_without_header_check(ring):
    # Defence in depth: pyjwt itself, with algorithms pinned, refuses the confusion attack.
    token = _hs256_with_public_pem(ring)
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, ring.current.public_key, algorithms=["ES256"], audience=SERVICE)


def test_attack_table_control_case_verifies(ring, verifier):
    # The same helpers with nothing wrong must pass, so the table tests what it claims to.
    assert verifier.verify(sign(claims(), ring.current)).subject == "alice"
    good_header = {"alg": "ES256", "typ": "JWT", "kid": ring.current.kid}
    assert verifier.verify(sign_raw(good_header, claims(), ring.current)).subject == "alice"


@pytest.mark.parametrize("token", [None, 42, b"abc"])
def test_non_string_tokens(verifier, token):
    with pytest.raises(InvalidToken):
        verifier.verify(token)  # type: ignore[arg-type]


# aiohttp hands a header's non-UTF-8 bytes on as lone surrogates; PyJWT's encode("utf-8") then
# raised UnicodeEncodeError, so `Authorization: Bearer eyJ\xbf...` made every route answer 500.
# Found by tests/fuzz (the jwt target).
@pytest.mark.parametrize("token", ["eyJ\udcbf.x.y", "\udcbf", "eyJhbGciOiJFUzI1NiJ9.é.x"])
def test_tokens_that_are_not_ascii(verifier, token):
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    with pytest.raises(InvalidToken):
        verifier.verify_refresh_token(token)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (299, True), (304, True), (305, False), (3600, False), (-5, True), (-6, False)],
)
def test_time_window_with_leeway(issuer, verifier, clock, offset, ok):
    token = issuer.issue("alice", ACCESS).token  # iat = nbf = T0, exp = T0 + 300, leeway 5
    clock.now = T0 + offset
    if ok:
        verifier.verify(token)
    else:
        with pytest.raises(InvalidToken):
            verifier.verify(token)


# --- rotation -------------------------------------------------------------------

def test_rotation(clock):
    holder = {"ring": KeyRing.generate(max_previous=1)}
    issuer = TokenIssuer(lambda: holder["ring"], ISS, SERVICE, clock=clock)
    verifier = TokenVerifier(lambda: holder["ring"], ISS, SERVICE, clock=clock, cache_size=0)
    old = issuer.issue("alice", ACCESS).token
    holder["ring"] = holder["ring"].rotate()
    new = issuer.issue("alice", ACCESS).token
    assert verifier.verify(old).subject == "alice"  # previous key still verifies
    assert verifier.verify(new).subject == "alice"
    holder["ring"] = holder["ring"].rotate()  # the first key is dropped
    with pytest.raises(InvalidToken, match="unknown kid"):
        verifier.verify(old)
    assert verifier.verify(new).subject == "alice"
    assert holder["ring"].public_jwks()["keys"][1]["kid"] == jwt.get_unverified_header(new)["kid"]


# --- the verified-token cache -------------------------------------------------------

def test_cache_hit_skips_signature_check(issuer, verifier, monkeypatch):
    token = issuer.issue("alice", ACCESS).token
    first = verifier.verify(token)
    assert (verifier.cache_hits, verifier.cache_misses) == (0, 1)

    def boom(*a, **k):
        raise AssertionError("signature checked on a cache hit")

    monkeypatch.setattr(jwt, "decode", boom)
    assert verifier.verify(token) is first
    assert verifier.cache_hits == 1


def test_expired_cached_entry_is_not_returned(ring, clock, issuer):
    verifier = TokenVerifier(ring, ISS, SERVICE, leeway=0, clock=clock)
    token = issuer.issue("alice", ACCESS, expires_in=60).token
    verifier.verify(token)
    clock.now = T0 + 59
    verifier.verify(token)
    assert verifier.cache_hits == 1
    clock.now = T0 + 60
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    assert verifier.cache_hits == 1


def test_entry_within_leeway_is_verified_not_cached(issuer, verifier, clock):
    token = issuer.issue("alice", ACCESS, expires_in=60).token
    verifier.verify(token)
    clock.now = T0 + 62  # past exp, inside the 5 s leeway
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.cache_hits == 0 and verifier.cache_misses == 3


def test_different_token_string_never_hits_cache(ring, issuer, verifier):
    token = issuer.issue("alice", [rs("repository", "team/app", "pull")]).token
    verifier.verify(token)
    header, payload, signature = token.split(".")
    body = json.loads(unb64(payload))
    body["access"][0]["actions"] = ["pull", "push"]
    for forged in (f"{header}.{b64json(body)}.{signature}", token + "x", token[:-1], " " + token):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    assert verifier.cache_hits == 0


def test_cache_is_bounded_lru(issuer, ring, clock):
    verifier = TokenVerifier(ring, ISS, SERVICE, clock=clock, cache_size=3)
    tokens = [issuer.issue(f"u{i}", []).token for i in range(5)]
    for t in tokens:
        verifier.verify(t)
    assert len(verifier._cache) == 3
    verifier.verify(tokens[4])
    assert verifier.cache_hits == 1
    verifier.verify(tokens[0])  # evicted: verified again
    assert verifier.cache_hits == 1 and verifier.cache_misses == 6


def test_cached_token_refused_once_its_key_leaves_the_ring(clock):
    holder = {"ring": KeyRing.generate(max_previous=0)}
    issuer = TokenIssuer(lambda: holder["ring"], ISS, SERVICE, clock=clock)
    verifier = TokenVerifier(lambda: holder["ring"], ISS, SERVICE, clock=clock)
    token = issuer.issue("alice", ACCESS).token
    verifier.verify(token)
    holder["ring"] = holder["ring"].rotate()
    with pytest.raises(InvalidToken, match="unknown kid"):
        verifier.verify(token)


def test_cache_disabled_and_clear(issuer, ring, clock, verifier):
    off = TokenVerifier(ring, ISS, SERVICE, clock=clock, cache_size=0)
    token = issuer.issue("alice", ACCESS).token
    off.verify(token)
    off.verify(token)
    assert off.cache_hits == 0
    verifier.verify(token)
    verifier.clear_cache()
    verifier.verify(token)
    assert verifier.cache_hits == 0


# --- refresh tokens ---------------------------------------------------------------------

def test_refresh_roundtrip(issuer, verifier, ring):
    token = issuer.issue_refresh_token("alice", "docker")
    assert jwt.get_unverified_header(token)["typ"] == REFRESH_TYP
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["aud"] == refresh_audience(SERVICE) != SERVICE
    assert "access" not in body
    seen: list[str] = []
    result = verifier.verify_refresh_token(token, client_id="docker", is_revoked=lambda j: seen.append(j) or False)
    assert (result.subject, result.client_id) == ("alice", "docker")
    assert seen == [result.jti]
    assert result.expires_at == int(T0) + 30 * 24 * 3600


def _refresh_attacks():
    return {
        "access token as refresh": lambda i, r: (i.issue("alice", ACCESS).token, {}),
        "revoked": lambda i, r: (i.issue_refresh_token("alice", "docker"), {"is_revoked": lambda jti: True}),
        "other client": lambda i, r: (i.issue_refresh_token("alice", "docker"), {"client_id": "podman"}),
        "expired": lambda i, r: (sign(claims(aud=refresh_audience(SERVICE), exp=int(T0) - 60, client_id="d"),
                                      r.current, typ=REFRESH_TYP), {}),
        "missing client_id": lambda i, r: (sign(claims(aud=refresh_audience(SERVICE)), r.current, typ=REFRESH_TYP),
                                           {}),
        "refresh typ, access aud": lambda i, r: (sign(claims(client_id="d"), r.current, typ=REFRESH_TYP), {}),
        "other key": lambda i, r: (sign(claims(aud=refresh_audience(SERVICE), client_id="d"), SigningKey.generate(),
                                        kid=r.current.kid, typ=REFRESH_TYP), {}),
    }


REFRESH_REASONS = {
    "access token as refresh": "wrong token type",
    "revoked": "revoked",
    "other client": "client_id mismatch",
    "expired": "expired",
    "missing client_id": "missing claim client_id",
    "refresh typ, access aud": "wrong audience",
    "other key": "bad signature",
}


@pytest.mark.parametrize("name", list(_refresh_attacks()))
def test_refresh_attacks(name, issuer, ring, verifier):
    token, kwargs = _refresh_attacks()[name](issuer, ring)
    with pytest.raises(InvalidToken) as info:
        verifier.verify_refresh_token(token, **kwargs)
    assert info.value.reason == REFRESH_REASONS[name]


def test_refresh_requires_client_id(issuer):
    with pytest.raises(ValueError):
        issuer.issue_refresh_token("alice", "")


def test_revocation_check_errors_propagate(issuer, verifier):
    token = issuer.issue_refresh_token("alice", "docker")

    def db_down(jti: str) -> bool:
        raise ConnectionError("db down")

    with pytest.raises(ConnectionError):
        verifier.verify_refresh_token(token, is_revoked=db_down)
