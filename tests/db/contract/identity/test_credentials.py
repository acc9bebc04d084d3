"""identity.credentials: signing keys, refresh tokens and web sessions (issue, use, revoke, end)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

HOUR = 3600.0


async def test_signing_keys_newest_first_and_retired_beyond_the_rank(identity):
    creds = identity.credentials
    assert await creds.signing_keys() == []
    await creds.add_signing_key("k1", "pem1")
    await creds.add_signing_key("k2", "pem2")
    keys = await creds.signing_keys()
    assert [(k.kid, k.private_pem, k.retired_at) for k in keys] == [("k2", "pem2", None), ("k1", "pem1", None)]
    assert keys[0].created_at >= keys[1].created_at
    await creds.add_signing_key("k3", "pem3", retire_older_than_rank=2)
    assert [k.kid for k in await creds.signing_keys()] == ["k3", "k2"]
    await creds.add_signing_key("k4", "pem4", retire_older_than_rank=1)
    assert [k.kid for k in await creds.signing_keys()] == ["k4"]
    await creds.add_signing_key("k5", "pem5")  # no rank: nothing retired
    assert [k.kid for k in await creds.signing_keys()] == ["k5", "k4"]


async def test_refresh_tokens_are_used_by_their_subject_while_live(identity):
    creds = identity.credentials
    now = time.time()
    await creds.add_refresh_token("j1", "alice", "docker", "docker/27", now, now + HOUR)
    await creds.add_refresh_token("j0", "robot$team+ci", "ci", "", now, now + HOUR)
    await creds.add_refresh_token("old", "alice", "docker", "", now - 2 * HOUR, now - HOUR)  # expired

    used = await creds.use_refresh_token("j1", "alice")
    assert (used.jti, used.subject, used.client_id, used.user_agent, used.issued_at, used.expires_at,
            used.revoked_at) == ("j1", "alice", "docker", "docker/27", now, now + HOUR, None)
    assert used.last_used_at is not None and used.last_used_at >= now
    again = await creds.use_refresh_token("j1", "alice")  # a token may be used again while live
    assert again.last_used_at >= used.last_used_at
    assert await creds.use_refresh_token("j1", "bob") is None  # another subject
    assert await creds.use_refresh_token("j0", "alice") is None
    assert await creds.use_refresh_token("old", "alice") is None  # expired
    assert await creds.use_refresh_token("ghost", "alice") is None
    assert [t.jti for t in await creds.refresh_tokens("alice", 10, None)] == ["j1"]  # live ones only


async def test_refresh_token_pages_are_in_jti_order(identity):
    creds = identity.credentials
    now = time.time()
    jtis = ["B", "a-b", "a.b", "a/b", "a0", "a_b", "ab", "b"]
    for jti in reversed(jtis):
        await creds.add_refresh_token(jti, "alice", "docker", "", now, now + HOUR)
    await creds.add_refresh_token("a1", "bob", "docker", "", now, now + HOUR)  # another subject, in the gap
    page = creds.refresh_tokens
    assert [t.jti for t in await page("alice", 100, None)] == jtis
    walked, after = [], None
    while batch := [t.jti for t in await page("alice", 3, after)]:
        walked.append(batch)
        after = batch[-1]
    assert walked == [jtis[0:3], jtis[3:6], jtis[6:]]
    assert [t.jti for t in await page("alice", 1, None)] == ["B"]
    assert await page("alice", 10, "b") == []
    assert [t.jti for t in await page("alice", 2, "a1")] == ["a_b", "ab"]
    assert await page("alice", 10, "zzz") == []
    assert [t.jti for t in await page("bob", 10, None)] == ["a1"]
    assert await page("ghost", 10, None) == []


async def test_revoking_refresh_tokens_one_or_all(identity):
    creds = identity.credentials
    now = time.time()
    for jti in ("j1", "j2", "j3"):
        await creds.add_refresh_token(jti, "alice", "docker", "", now, now + HOUR)
    await creds.add_refresh_token("old", "alice", "docker", "", now - 2 * HOUR, now - HOUR)
    await creds.add_refresh_token("b1", "bob", "docker", "", now, now + HOUR)

    assert await creds.revoke_refresh_tokens("alice", "j1") == 1
    assert await creds.revoke_refresh_tokens("alice", "j1") == 0  # already revoked
    assert await creds.revoke_refresh_tokens("alice", "b1") == 0  # bob's
    assert await creds.revoke_refresh_tokens("alice", "old") == 0  # expired: not live
    assert await creds.use_refresh_token("j1", "alice") is None
    assert [t.jti for t in await creds.refresh_tokens("alice", 10, None)] == ["j2", "j3"]

    assert await creds.revoke_refresh_tokens("alice") == 2  # the live ones: j2, j3
    assert await creds.revoke_refresh_tokens("alice") == 0
    assert await creds.refresh_tokens("alice", 10, None) == []
    assert await creds.use_refresh_token("j2", "alice") is None
    assert await creds.use_refresh_token("b1", "bob") is not None


async def test_web_sessions_live_until_ended_or_expired(identity):
    creds = identity.credentials
    now = time.time()
    await creds.add_web_session("s1", "alice", now + HOUR)
    await creds.add_web_session("s2", "alice", now + HOUR)
    await creds.add_web_session("gone", "alice", now - 1)  # expired
    assert await creds.web_session_live("s1", "alice")
    assert not await creds.web_session_live("s1", "bob")
    assert not await creds.web_session_live("gone", "alice")
    assert not await creds.web_session_live("ghost", "alice")

    await creds.end_web_session("s1")
    assert not await creds.web_session_live("s1", "alice")
    assert await creds.web_session_live("s2", "alice")  # one session ends, not the user's others
    await creds.end_web_session("s1")  # ending twice, or an unknown session, is fine
    await creds.end_web_session("ghost")
    assert not await creds.web_session_live("s1", "alice")


# From tests/db/test_postgres_concurrency.py, where it runs on two PostgreSQL replicas only.
async def test_concurrent_key_rotations_keep_the_newest_n(writers):
    await asyncio.gather(*(s.credentials.add_signing_key(f"k{i}", "pem", retire_older_than_rank=3)
                           for i, s in zip(range(10), itertools.cycle(writers), strict=False)))
    assert len(await writers[0].credentials.signing_keys()) == 3


async def test_signing_keys_tokens_and_login_throttling(identity):  # from tests/db/test_store.py
    await identity.credentials.add_signing_key("k1", "pem1")
    await identity.credentials.add_signing_key("k2", "pem2")
    await identity.credentials.add_signing_key("k3", "pem3", retire_older_than_rank=2)
    assert [k.kid for k in await identity.credentials.signing_keys()] == ["k3", "k2"]
    with pytest.raises(Exception):  # noqa: B017 - a kid is unique (each driver has its own error type)
        await identity.credentials.add_signing_key("k3", "again")

    # The limiter reserves an attempt against every key at once, or none when one is full.
    limits = [("user:a|ip:1", 3), ("ip:1", 5)]
    assert [await identity.limiter.reserve(limits, 300) for _ in range(3)] == [None] * 3
    retry = await identity.limiter.reserve(limits, 300)
    assert retry is not None and 0 < retry <= 300
    assert await identity.limiter.reserve([("user:b|ip:1", 3), ("ip:1", 5)], 300) is None
    assert await identity.limiter.reserve([("user:c|ip:1", 3), ("ip:1", 5)], 300) is None
    # ip:1 is at 5 now: refused, and user:d's count was not taken.
    assert await identity.limiter.reserve([("user:d|ip:1", 3), ("ip:1", 5)], 300) is not None
    await identity.limiter.release("user:a|ip:1", ["ip:1"])  # a success: a's failures forgotten
    assert await identity.limiter.reserve([("user:d|ip:1", 1), ("ip:1", 5)], 300) is None
    assert await identity.limiter.reserve([("user:d|ip:1", 1)], 300) is not None
    assert await identity.limiter.reserve(limits, 300) is not None  # ip:1 is full again
    assert await identity.limiter.reserve(limits, 0) is None  # the window is over: a new one starts


async def test_refresh_tokens_and_web_sessions(identity):  # from tests/db/test_store.py
    now = time.time()
    await identity.users.create("alice", "hash")
    for jti in ("t1", "t2", "t3"):
        await identity.credentials.add_refresh_token(jti, "alice", "docker", "agent/1", now, now + 600)
    await identity.credentials.add_refresh_token("old", "alice", "docker", "", now - 700, now - 100)
    await identity.credentials.add_refresh_token("r1", "robot$team+ci", "ci", "", now, now + 600)
    assert [t.jti for t in await identity.credentials.refresh_tokens("alice", 10, None)] == ["t1", "t2", "t3"]
    assert [t.jti for t in await identity.credentials.refresh_tokens("alice", 1, "t1")] == ["t2"]
    used = await identity.credentials.use_refresh_token("t1", "alice")
    assert used is not None and used.last_used_at >= now and used.user_agent == "agent/1"
    assert await identity.credentials.use_refresh_token("t1", "bob") is None  # another subject's jti
    assert await identity.credentials.use_refresh_token("old", "alice") is None  # expired
    assert await identity.credentials.revoke_refresh_tokens("alice", "t1") == 1
    assert await identity.credentials.revoke_refresh_tokens("alice", "t1") == 0
    assert await identity.credentials.use_refresh_token("t1", "alice") is None
    assert await identity.credentials.revoke_refresh_tokens("alice") == 2
    assert await identity.credentials.refresh_tokens("alice", 10, None) == []
    assert await identity.credentials.use_refresh_token("r1", "robot$team+ci") is not None

    await identity.credentials.add_web_session("h1", "alice", now + 600)
    await identity.credentials.add_web_session("h2", "alice", now + 600)
    assert await identity.credentials.web_session_live("h1", "alice") and not (
        await identity.credentials.web_session_live("h1", "bob"))
    await identity.credentials.end_web_session("h1")
    assert not await identity.credentials.web_session_live("h1", "alice") and (
        await identity.credentials.web_session_live("h2", "alice"))
