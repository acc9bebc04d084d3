"""Password hashing (argon2id) and generated-secret helpers.

Two kinds of credential, two treatments:

* **Human passwords** are low-entropy and guessable, so they are stored as
  argon2id hashes (a deliberately slow, memory-hard KDF).  The cost parameters
  live in :class:`Argon2Params`; tests pass :data:`FAST_PARAMS` to stay fast.
* **Generated secrets** (robot tokens, webhook secrets) come from
  :func:`generate_secret`: 256 bits from the OS CSPRNG.  Brute force is
  already hopeless at 2**256, so a slow KDF adds nothing but per-request CPU on
  the CI hot path; they are stored as a plain SHA-256 digest
  (:func:`hash_secret`) and compared in constant time (:func:`verify_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import Argon2Error

__all__ = [
    "DEFAULT_PARAMS",
    "FAST_PARAMS",
    "Argon2Params",
    "constant_time_equals",
    "generate_secret",
    "hash_password",
    "hash_secret",
    "needs_rehash",
    "verify_password",
    "verify_secret",
]

_ARGON2ID_PREFIX = "$argon2id$"
_SECRET_PREFIX = "sha256:"
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters; ``memory_cost`` is in KiB."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


#: RFC 9106 "second recommended option" (argon2-cffi's own default): t=3, m=64 MiB, p=4.
DEFAULT_PARAMS = Argon2Params()
#: Cheap parameters for test suites only. Never use them for real passwords.
FAST_PARAMS = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


@lru_cache(maxsize=8)
def _hasher(params: Argon2Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=Type.ID,
    )


def hash_password(password: str, params: Argon2Params = DEFAULT_PARAMS) -> str:
    """Return an encoded argon2id hash (``$argon2id$v=19$m=...``) of *password*."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    return _hasher(params).hash(password)


def verify_password(stored: str, password: str, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """True when *password* matches the argon2id hash *stored*.

    Never raises: a malformed, truncated, non-argon2id or non-string *stored*
    value (or a non-string *password*) simply yields False.  *params* only
    selects the cached hasher; the cost is read from *stored* itself.
    """
    if not isinstance(stored, str) or not isinstance(password, str):
        return False
    if not stored.startswith(_ARGON2ID_PREFIX):
        return False
    try:
        return _hasher(params).verify(stored, password)
    except (Argon2Error, ValueError, TypeError):
        # VerifyMismatchError / VerificationError are Argon2Errors;
        # InvalidHashError and non-ASCII input are ValueErrors.
        return False


def needs_rehash(stored: str, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """True when *stored* was not made with *params* (or is not a valid argon2id hash).

    Call after a successful :func:`verify_password` and, if True, store
    ``hash_password(password)`` in its place.
    """
    if not isinstance(stored, str) or not stored.startswith(_ARGON2ID_PREFIX):
        return True
    try:
        return _hasher(params).check_needs_rehash(stored)
    except (Argon2Error, ValueError, TypeError):
        return True


def generate_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret of *nbytes* CSPRNG bytes (43 characters for 32 bytes)."""
    if nbytes < MIN_SECRET_BYTES:
        raise ValueError(f"a secret needs at least {MIN_SECRET_BYTES} bytes of entropy")
    return secrets.token_urlsafe(nbytes)


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError("expected str or bytes")


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two values without leaking where they differ (str is UTF-8 encoded first)."""
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def hash_secret(secret: str) -> str:
    """Storage form of a generated high-entropy secret: ``sha256:<hex>``.

    Only for values from :func:`generate_secret`.  Human-chosen passwords must
    go through :func:`hash_password` instead.
    """
    return _SECRET_PREFIX + hashlib.sha256(_as_bytes(secret)).hexdigest()


def verify_secret(stored: str, secret: str) -> bool:
    """True when *secret* hashes to *stored*; compared in constant time, never raises."""
    if not isinstance(stored, str) or not isinstance(secret, str):
        return False
    if not stored.startswith(_SECRET_PREFIX):
        return False
    return constant_time_equals(stored, hash_secret(secret))
