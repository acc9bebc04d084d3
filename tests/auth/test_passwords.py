"""Password hashing and generated-secret helpers."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth.passwords import (
    DEFAULT_PARAMS,
    FAST_PARAMS,
    Argon2Params,
    constant_time_equals,
    generate_secret,
    hash_password,
    hash_secret,
    needs_rehash,
    verify_password,
    verify_secret,
)

FAST = FAST_PARAMS


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple", FAST)


def test_hash_is_argon2id_with_given_params(stored):
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_hash_is_salted():
    assert hash_password("pw", FAST) != hash_password("pw", FAST)


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("correct horse battery staple", True),
        ("correct horse battery stapl", False),
        ("Correct horse battery staple", False),
        ("", False),
        ("correct horse battery staple ", False),
    ],
)
def test_verify(stored, password, expected):
    assert verify_password(stored, password, FAST) is expected


def test_unicode_and_empty_passwords_roundtrip():
    for pw in ["", "päßwörd ☃", "\x00nul"]:
        assert verify_password(hash_password(pw, FAST), pw, FAST)


MALFORMED = [
    "",
    "plaintext",
    "$argon2id$",
    "$argon2id$v=19$m=8,t=1,p=1$",
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
    "$argon2id$v=19$m=8,t=1,p=1$!!!$!!!",
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # hash too short
    "$argon2id$v=19$m=ü,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # non-ASCII
    "$2b$12$abcdefghijklmnopqrstuuPYXr5h6cY4a8oTP1GWrGEj4ZGz4sYC6",  # bcrypt
    "sha256:" + "0" * 64,
    None,
    b"$argon2id$v=19$m=8,t=1,p=1$",
    12345,
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_verify_never_raises_on_malformed_stored_hash(bad):
    assert verify_password(bad, "pw", FAST) is False
    assert needs_rehash(bad, FAST) is True


def test_argon2i_hash_is_refused():
    from argon2 import PasswordHasher, Type

    other = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash("pw")
    assert verify_password(other, "pw", FAST) is False


def test_verify_refuses_non_str_password(stored):
    assert verify_password(stored, b"correct horse battery staple", FAST) is False  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_verify_never_raises_on_arbitrary_text(text):
    assert verify_password(text, "pw", FAST) is False
    assert isinstance(needs_rehash(text, FAST), bool)


def test_needs_rehash(stored):
    assert needs_rehash(stored, FAST) is False
    assert needs_rehash(stored, DEFAULT_PARAMS) is True
    assert needs_rehash(stored, Argon2Params(time_cost=2, memory_cost=8, parallelism=1)) is True


def test_hash_password_rejects_non_str():
    with pytest.raises(TypeError):
        hash_password(b"pw", FAST)  # type: ignore[arg-type]


def test_default_params_are_sensible():
    assert DEFAULT_PARAMS.memory_cost >= 19 * 1024  # OWASP minimum for argon2id
    assert DEFAULT_PARAMS.time_cost >= 2


@pytest.mark.parametrize(("nbytes", "length"), [(16, 22), (32, 43), (64, 86)])
def test_generate_secret(nbytes, length):
    secret = generate_secret(nbytes)
    assert len(secret) == length
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert generate_secret(nbytes) != secret


def test_generate_secret_default_and_minimum():
    assert len(generate_secret()) == 43
    with pytest.raises(ValueError, match="entropy"):
        generate_secret(8)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("abc", "abcd", False),
        ("", "", True),
        (b"abc", "abc", True),
        ("é", "é".encode(), True),
        (b"\xff", b"\xff", True),
    ],
)
def test_constant_time_equals(a, b, expected):
    assert constant_time_equals(a, b) is expected


def test_constant_time_equals_rejects_other_types():
    with pytest.raises(TypeError):
        constant_time_equals(1, 1)  # type: ignore[arg-type]


def test_secret_hash_roundtrip():
    secret = generate_secret()
    stored = hash_secret(secret)
    assert stored == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert verify_secret(stored, secret)
    assert not verify_secret(stored, secret[:-1])
    assert not verify_secret(stored, generate_secret())


@pytest.mark.parametrize("bad", ["", "sha256:", "md5:abc", None, 42, hash_password("x", FAST)])
def test_verify_secret_never_raises(bad):
    assert verify_secret(bad, "x") is False  # type: ignore[arg-type]
