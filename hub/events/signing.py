"""Webhook signatures (docs/events.md, "Verifying a delivery").

Each delivery carries `DaoHub-Timestamp` (Unix seconds) and `DaoHub-Signature`: one `v1=<hex>`
per secret in force, comma-separated, where hex is HMAC-SHA256(secret, timestamp + "." + body)
over the exact bytes of the body. During a secret rotation both the new and the previous secret
sign, so a receiver that knows either accepts the delivery."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

TIMESTAMP_HEADER = "DaoHub-Timestamp"
SIGNATURE_HEADER = "DaoHub-Signature"
EVENT_ID_HEADER = "DaoHub-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DELIVERY_HEADER = "DaoHub-Delivery"
ATTEMPT_HEADER = "DaoHub-Attempt"
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: str, body: bytes) -> str:
    return ",".join(f"v1={signature(s, timestamp, body)}" for s in secrets)


def verify(secret: str, timestamp: str, body: bytes, header: str, *, tolerance: float = DEFAULT_TOLERANCE,
           now: float | None = None) -> bool:
    """The receiver's check: the timestamp is recent and one of the header's v1 signatures is
    ours. Constant-time comparison."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    found = False
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value, expected):
            found = True
    return found
