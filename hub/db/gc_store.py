"""GcStore: the metadata side of online garbage collection (hub/registry/gc.py), for both stores.

The review queue (`gc_reviews`) is filled by triggers (migration 0009) in the transaction of every
event that may orphan something. Here: claiming due reviews, and each review's verdict, one
transaction that re-checks every reference and deletes the rows when nothing holds them.

The SQL and the checks are written once: each verdict is an async function over a small
transaction object (`_Tx`) with PostgreSQL's `$n` placeholders. On PostgreSQL it runs in one
asyncpg transaction; on SQLite the same coroutine is driven to its end on the writer thread
inside one `BEGIN IMMEDIATE` (it never suspends: every "await" there is a synchronous call).

What a verdict locks (PostgreSQL, READ COMMITTED): the row it may delete, FOR UPDATE, before it
reads what references that row. A manifest push share-locks the blob links and child manifests
it references (PostgresStore._missing_references) and a tag's foreign key key-share-locks its
manifest, so either the push commits first and the verdict sees its reference, or the verdict
deletes first and the push reports the reference unknown (and a tag insert is retried after the
foreign-key race, storing the manifest again). Blob rows and bytes are deleted under the
digest's lock (Registry.blob_lock), held by the caller.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..events import cloudevents
from .event_store import emit

_KIND_ORDER = ("manifest", "link", "blob")


@dataclasses.dataclass(frozen=True, slots=True)
class GcReview:
    kind: str  # 'manifest', 'link' (a repository's blob link) or 'blob' (the blob row and its bytes)
    repository_id: int  # 0 for 'blob'
    repository: str  # '' for 'blob', or when the repository is gone
    digest: str
    queued_at: float


@dataclasses.dataclass(slots=True)
class GcVerdict:
    action: str  # 'deleted', 'kept', 'deferred' (too young: reviewed again later), 'gone' (no such row)
    reason: str = ""
    size: int = 0
    tenant: str = ""
    tenant_freed: int = 0  # bytes the tenant's usage drops by
    blob_deleted: bool = False  # a link's verdict that also deleted the blob row: delete its bytes
    children: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (kind, digest), manifests


@dataclasses.dataclass(frozen=True, slots=True)
class GcRunRecord:
    id: int
    started_at: float
    finished_at: float | None
    dry_run: bool
    tenant: str | None
    sweep: bool
    grace_seconds: float
    counts: dict[str, int]
    tenant_bytes_freed: dict[str, int]
    errors: list[str]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


RUNS_KEPT = 10_000
RUN_COUNTS = ("manifests_reviewed", "manifests_kept", "manifests_deleted", "blobs_reviewed", "blobs_kept",
              "blobs_deleted", "links_deleted", "orphans_deleted", "bytes_freed")
_RUN_COLUMNS = ("id, started_at, finished_at, dry_run, tenant, sweep, grace_seconds, "
                + ", ".join(RUN_COUNTS) + ", tenant_bytes_freed, errors")


def _tenant_of(repository: str) -> str:
    return repository.split("/", 1)[0]


def _tenant_bounds(tenant: str) -> tuple[str, str]:
    return tenant + "/", tenant + "0"  # '0' follows '/'


def _run_record(row: Any) -> GcRunRecord:
    counts = {name: row[7 + i] for i, name in enumerate(RUN_COUNTS)}
    return GcRunRecord(row[0], row[1], row[2], bool(row[3]), row[4], bool(row[5]), row[6], counts,
                       json.loads(row[7 + len(RUN_COUNTS)]), json.loads(row[8 + len(RUN_COUNTS)]))


class _Tx:
    """One transaction as the verdicts see it. `{for_update}` in SQL becomes FOR UPDATE on
    PostgreSQL (nothing on SQLite, whose single writer excludes everyone); `{json:N}` is the
    set of strings given as a JSON array in parameter N."""

    dialect = "abstract"

    def __init__(self, conn):
        self.conn = conn

    async def _run(self, how: str, sql: str, args: tuple) -> Any:
        """`how`: 'row', 'rows' or 'count' (rows affected)."""
        raise NotImplementedError

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("row", sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._run("rows", sql, args)

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._run("count", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]


_JSON = re.compile(r"\{json:(\d+)\}")


class SqliteTx(_Tx):
    dialect = "sqlite"

    async def _run(self, how: str, sql: str, args: tuple) -> Any:
        sql = _JSON.sub(r"(SELECT value FROM json_each($\1))", sql.replace("{for_update}", ""))
        cursor = self.conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args)
        return cursor.fetchone() if how == "row" else cursor.fetchall() if how == "rows" else cursor.rowcount


class PostgresTx(_Tx):
    dialect = "postgres"

    async def _run(self, how: str, sql: str, args: tuple) -> Any:
        sql = _JSON.sub(r"(SELECT jsonb_array_elements_text($\1::jsonb))",
                        sql.replace("{for_update}", " FOR UPDATE"))
        if how == "count":
            return int((await self.conn.execute(sql, *args)).rsplit(" ", 1)[-1])
        return await (self.conn.fetchrow if how == "row" else self.conn.fetch)(sql, *args)


class _Rollback(Exception):
    def __init__(self, value: Any):
        self.value = value


def drive(coro) -> Any:
    """Run a coroutine that never suspends (a verdict over SqliteTx) to its end, here."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a GC transaction on SQLite suspended")


_DELETE_REVIEW = "DELETE FROM gc_reviews WHERE kind = $1 AND repository_id = $2 AND digest = $3"
_DEFER_REVIEW = ("UPDATE gc_reviews SET queued_at = $4, claimed_until = 0 "
                 "WHERE kind = $1 AND repository_id = $2 AND digest = $3")
_REQUEUED = "SELECT queued_at FROM gc_reviews WHERE kind = $1 AND repository_id = $2 AND digest = $3"
_TENANT_HAS = {
    "link": "SELECT 1 FROM repository_blobs x JOIN repositories r ON r.id = x.repository_id "
            "WHERE x.digest = $1 AND x.repository_id <> $2 AND r.name >= $3 AND r.name < $4 LIMIT 1",
    "manifest": "SELECT 1 FROM manifests x JOIN repositories r ON r.id = x.repository_id "
                "WHERE x.digest = $1 AND x.repository_id <> $2 AND r.name >= $3 AND r.name < $4 LIMIT 1",
}


async def _requeued_since(tx: _Tx, review: GcReview, cutoff: float) -> bool:
    """Whether a newer event queued this review again after it was claimed (its grace starts over:
    the claim is given back and the review waits)."""
    queued = await tx.fetchval(_REQUEUED, review.kind, review.repository_id, review.digest)
    if queued is None or queued <= cutoff:
        return False
    await tx.execute("UPDATE gc_reviews SET claimed_until = 0 WHERE kind = $1 AND repository_id = $2 "
                     "AND digest = $3", review.kind, review.repository_id, review.digest)
    return True


async def _tenant_freed(tx: _Tx, kind: str, review: GcReview, size: int) -> int:
    """The bytes the tenant's usage drops by when this repository no longer holds the digest."""
    if not review.repository:
        return 0
    low, high = _tenant_bounds(_tenant_of(review.repository))
    held = await tx.fetchval(_TENANT_HAS[kind], review.digest, review.repository_id, low, high)
    return 0 if held else size


async def _manifest_verdict(tx: _Tx, review: GcReview, cutoff: float, dry_run: bool, gone: list[str],
                            check_queue: bool) -> GcVerdict:
    key = (review.kind, review.repository_id, review.digest)
    if check_queue and not dry_run and await _requeued_since(tx, review, cutoff):
        return GcVerdict("deferred", "queued again")
    row = await tx.fetchrow("SELECT created_at, size, subject FROM manifests WHERE repository_id = $1 "
                            "AND digest = $2{for_update}", review.repository_id, review.digest)
    verdict = await _judge_manifest(tx, review, row, cutoff, gone)
    if verdict.action == "deleted":
        verdict.tenant_freed = await _tenant_freed(tx, "manifest", review, verdict.size)
    if dry_run:
        return verdict
    if verdict.action == "deferred":
        await tx.execute(_DEFER_REVIEW, *key, row[0])
        return verdict
    await tx.execute(_DELETE_REVIEW, *key)
    if verdict.action != "deleted":
        return verdict
    await tx.execute("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
                     review.repository_id, review.digest)
    if review.repository:
        await emit(tx, cloudevents.MANIFEST_DELETED, repository=review.repository,
                   subject=f"{review.repository}@{review.digest}", actor="gc",
                   data={"repository": review.repository, "digest": review.digest, "reason": verdict.reason})
    # The triggers queued its children and referrers just now: they are due as this one was.
    await tx.execute("UPDATE gc_reviews SET queued_at = $2 WHERE repository_id = $1 "
                     "AND kind IN ('manifest', 'link') "
                     "AND digest IN {json:3}", review.repository_id, review.queued_at,
                     json.dumps([d for _, d in verdict.children]))
    return verdict


async def _judge_manifest(tx: _Tx, review: GcReview, row: Any, cutoff: float, gone: list[str]) -> GcVerdict:
    if row is None:
        return GcVerdict("gone")
    created_at, size, subject = row
    repo, digest, gone_json = review.repository_id, review.digest, json.dumps(gone)
    tenant = _tenant_of(review.repository)
    if await tx.fetchval("SELECT 1 FROM tags WHERE repository_id = $1 AND digest = $2 LIMIT 1", repo, digest):
        return GcVerdict("kept", "tagged", size, tenant)
    if await tx.fetchval("SELECT 1 FROM manifest_references WHERE repository_id = $1 AND child_digest = $2 "
                         "AND child_kind = 'manifest' AND manifest_digest NOT IN {json:3} LIMIT 1",
                         repo, digest, gone_json):
        return GcVerdict("kept", "referenced by an index", size, tenant)
    if subject is not None and subject not in gone and await tx.fetchval(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2", repo, subject):
        return GcVerdict("kept", "its subject is stored", size, tenant)
    if created_at > cutoff:
        return GcVerdict("deferred", "pushed within the grace period", size, tenant)
    children = [(("link" if r[0] == "blob" else "manifest"), r[1]) for r in await tx.fetch(
        "SELECT child_kind, child_digest FROM manifest_references WHERE repository_id = $1 "
        "AND manifest_digest = $2 ORDER BY child_kind, child_digest", repo, digest)]
    children += [("manifest", r[0]) for r in await tx.fetch(
        "SELECT digest FROM manifests WHERE repository_id = $1 AND subject = $2 ORDER BY digest",
        repo, digest)]
    return GcVerdict("deleted", "untagged and unreferenced", size, tenant, children=children)


async def _link_verdict(tx: _Tx, review: GcReview, cutoff: float, dry_run: bool, gone: list[str],
                        check_queue: bool) -> GcVerdict:
    key = (review.kind, review.repository_id, review.digest)
    if check_queue and not dry_run and await _requeued_since(tx, review, cutoff):
        return GcVerdict("deferred", "queued again")
    repo, digest = review.repository_id, review.digest
    row = await tx.fetchrow("SELECT rb.created_at, b.size FROM repository_blobs rb "
                            "JOIN blobs b ON b.digest = rb.digest "
                            "WHERE rb.repository_id = $1 AND rb.digest = $2{for_update}", repo, digest)
    tenant = _tenant_of(review.repository)
    if row is None:
        verdict = GcVerdict("gone")
    elif await tx.fetchval("SELECT 1 FROM manifest_references WHERE repository_id = $1 AND child_digest = $2 "
                           "AND child_kind = 'blob' AND manifest_digest NOT IN {json:3} LIMIT 1",
                           repo, digest, json.dumps(gone)):
        verdict = GcVerdict("kept", "referenced by a manifest", row[1], tenant)
    elif row[0] > cutoff:
        verdict = GcVerdict("deferred", "linked within the grace period", row[1], tenant)
    else:
        verdict = GcVerdict("deleted", "no manifest references it", row[1], tenant)
    if verdict.action == "deleted":
        verdict.tenant_freed = await _tenant_freed(tx, "link", review, verdict.size)
        verdict.blob_deleted = not await tx.fetchval(
            "SELECT 1 FROM repository_blobs WHERE digest = $1 AND repository_id <> $2 LIMIT 1", digest, repo)
    if dry_run:
        return verdict
    if verdict.action == "deferred":
        await tx.execute(_DEFER_REVIEW, *key, row[0])
        return verdict
    await tx.execute(_DELETE_REVIEW, *key)
    if verdict.action == "deleted":
        await tx.execute("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
                         repo, digest)
        if verdict.blob_deleted:
            await tx.execute("DELETE FROM blobs WHERE digest = $1", digest)
            await _blob_deleted(tx, digest, verdict)
        await tx.execute(_DELETE_REVIEW, "blob", 0, digest)  # queued by the link's trigger: decided here
    return verdict


async def _blob_verdict(tx: _Tx, review: GcReview, cutoff: float, dry_run: bool, gone: list[str],
                        check_queue: bool) -> GcVerdict:
    key = (review.kind, review.repository_id, review.digest)
    size = await tx.fetchval("SELECT size FROM blobs WHERE digest = $1{for_update}", review.digest)
    if size is None:
        verdict = GcVerdict("gone")
    elif await tx.fetchval("SELECT 1 FROM repository_blobs WHERE digest = $1 LIMIT 1", review.digest):
        verdict = GcVerdict("kept", "linked", size)
    else:
        verdict = GcVerdict("deleted", "linked nowhere", size, blob_deleted=True)
    if not dry_run:
        await tx.execute(_DELETE_REVIEW, *key)
        if verdict.action == "deleted":
            await tx.execute("DELETE FROM blobs WHERE digest = $1", review.digest)
            await _blob_deleted(tx, review.digest, verdict)
    return verdict


async def _blob_deleted(tx: _Tx, digest: str, verdict: GcVerdict) -> None:
    """The blob row went (its bytes follow after the commit): a platform event, actor `gc`. A blob
    belongs to no repository or tenant, so only platform-wide subscriptions get it."""
    await emit(tx, cloudevents.BLOB_DELETED, repository=None, subject=digest, actor="gc",
               data={"digest": digest, "size": verdict.size, "reason": verdict.reason})


_VERDICTS = {"manifest": _manifest_verdict, "link": _link_verdict, "blob": _blob_verdict}


async def _judge(tx: _Tx, review: GcReview, cutoff: float, dry_run: bool, gone: list[str], check_queue: bool,
                 keep: str | None) -> GcVerdict:
    if keep is not None:
        await tx.execute(_DELETE_REVIEW, review.kind, review.repository_id, review.digest)
        return GcVerdict("kept", keep, tenant=_tenant_of(review.repository))
    return await _VERDICTS[review.kind](tx, review, cutoff, dry_run, gone, check_queue)

# Data from before the queue existed (or left by a crash of an older version): every unreferenced
# link and every untagged, unreferenced manifest, queued as of its own creation time.
_BACKFILL = (
    "INSERT INTO gc_reviews (kind, repository_id, digest, queued_at) "
    "SELECT 'link', rb.repository_id, rb.digest, rb.created_at FROM repository_blobs rb WHERE NOT EXISTS ("
    "SELECT 1 FROM manifest_references mr WHERE mr.repository_id = rb.repository_id "
    "AND mr.child_digest = rb.digest AND mr.child_kind = 'blob') ON CONFLICT DO NOTHING",
    "INSERT INTO gc_reviews (kind, repository_id, digest, queued_at) "
    "SELECT 'manifest', m.repository_id, m.digest, m.created_at FROM manifests m "
    "WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest) "
    "AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = m.repository_id "
    "AND mr.child_digest = m.digest AND mr.child_kind = 'manifest') ON CONFLICT DO NOTHING",
    "INSERT INTO gc_reviews (kind, repository_id, digest, queued_at) "
    "SELECT 'blob', 0, b.digest, b.created_at FROM blobs b WHERE NOT EXISTS ("
    "SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest) ON CONFLICT DO NOTHING",
)


class GcStore:
    """Mixed into SqliteStore and PostgresStore (each provides `_gc_tx`)."""

    _write: Any  # provided by the store

    def _gc_transaction(self, fn: Callable[[_Tx], Awaitable[Any]], finish: Callable[[Any], Any]):
        """The store's `_write` body running `fn` over this dialect's _Tx, then `finish` on its value."""
        raise NotImplementedError

    async def _gc_tx(self, fn: Callable[[_Tx], Awaitable[Any]], *, rollback: bool = False) -> Any:
        """`fn` in one write transaction; with `rollback`, rolled back once it returns."""
        def finish(value: Any) -> Any:
            if rollback:
                raise _Rollback(value)
            return value

        try:
            return await self._write(self._gc_transaction(fn, finish))
        except _Rollback as done:
            return done.value

    async def gc_claim(self, kind: str, cutoff: float, *, limit: int = 500, tenant: str | None = None,
                       lease_seconds: float = 300.0, claim: bool = True, after: tuple[int, str] | None = None,
                       claimed_before: float | None = None) -> list[GcReview]:
        """Up to `limit` reviews of `kind` queued before `cutoff`, not claimed by another worker
        (claims running out before `claimed_before`, default now: infinity takes every one, for the
        single worker of SQLite); with `claim`, they are this worker's for `lease_seconds` (a
        worker that dies lets them go after that). Without (a dry run), nothing changes and
        `after` pages on."""
        now = time.time()
        free_before = now if claimed_before is None else claimed_before

        async def run(tx: _Tx) -> list[GcReview]:
            where = ["g.kind = $1", "g.queued_at <= $2", "g.claimed_until <= $3"]
            args: list[Any] = [kind, cutoff, free_before]
            if tenant is not None:
                args += _tenant_bounds(tenant)
                where.append(f"r.name >= ${len(args) - 1} AND r.name < ${len(args)}")
            if after is not None:
                args += after
                where.append(f"(g.repository_id > ${len(args) - 1} OR (g.repository_id = ${len(args) - 1} "
                             f"AND g.digest > ${len(args)}))")
            args.append(limit)
            skip = " FOR UPDATE OF g SKIP LOCKED" if claim and tx.dialect == "postgres" else ""
            rows = await tx.fetch(
                "SELECT g.kind, g.repository_id, COALESCE(r.name, ''), g.digest, g.queued_at "
                "FROM gc_reviews g "
                f"LEFT JOIN repositories r ON r.id = g.repository_id WHERE {' AND '.join(where)} "
                f"ORDER BY g.repository_id, g.digest LIMIT ${len(args)}{skip}", *args)
            reviews = [GcReview(*r) for r in rows]
            if claim and reviews:
                await tx.execute(
                    "UPDATE gc_reviews SET claimed_until = $1 WHERE kind = $2 "
                    "AND repository_id || ' ' || digest "
                    "IN {json:3}", now + lease_seconds, kind,
                    json.dumps([f"{r.repository_id} {r.digest}" for r in reviews]))
            return reviews

        return await self._gc_tx(run, rollback=not claim)

    async def gc_verdict(self, review: GcReview, cutoff: float, *, dry_run: bool = False,
                         gone: Iterable[str] = (), check_queue: bool = True,
                         keep: str | None = None) -> GcVerdict:
        """Re-check one review in one transaction and delete what nothing references (not in a dry
        run, whose transaction is rolled back). `gone`: manifests of the repository a dry run
        counts as deleted. check_queue=False: the review follows from this pass's own delete.
        `keep`: the caller keeps it for this reason (the review is done)."""
        gone_list = sorted(gone)
        return await self._gc_tx(lambda tx: _judge(tx, review, cutoff, dry_run, gone_list, check_queue, keep),
                                 rollback=dry_run)

    async def gc_verdicts(self, reviews: list[GcReview], cutoff: float, *,
                          keeps: list[str | None] | None = None) -> list[GcVerdict]:
        """gc_verdict of each review, in order, all in one transaction (one commit for the batch;
        a failure of any leaves all of them undone). A verdict sees the ones before it: two
        links of one digest in a batch delete the blob row with the second."""
        keeps = keeps if keeps is not None else [None] * len(reviews)

        async def run(tx: _Tx) -> list[GcVerdict]:
            return [await _judge(tx, review, cutoff, False, [], True, keep)
                    for review, keep in zip(reviews, keeps, strict=True)]

        return await self._gc_tx(run)

    async def gc_release(self, review: GcReview) -> None:
        """Give a claimed review back (its verdict failed): due again for the next pass."""
        await self._gc_tx(lambda tx: tx.execute("UPDATE gc_reviews SET claimed_until = 0 WHERE kind = $1 "
                                                "AND repository_id = $2 AND digest = $3",
                                                review.kind, review.repository_id, review.digest))

    async def gc_backfill(self) -> int:
        """Queue what the queue never saw (see _BACKFILL); the number of reviews added."""
        async def run(tx: _Tx) -> int:
            return sum([await tx.execute(sql) for sql in _BACKFILL])

        return await self._gc_tx(run)

    async def gc_backlog(self, cutoff: float) -> dict[str, int]:
        """Queued reviews by kind, and how many of them are due (queued before `cutoff`)."""
        async def run(tx: _Tx) -> dict[str, int]:
            rows = await tx.fetch("SELECT kind, COUNT(*), SUM(CASE WHEN queued_at <= $1 THEN 1 ELSE 0 END) "
                                  "FROM gc_reviews GROUP BY kind", cutoff)
            out = {f"{k}_queued": 0 for k in _KIND_ORDER} | {f"{k}_due": 0 for k in _KIND_ORDER}
            for kind, queued, due in rows:
                out[f"{kind}_queued"], out[f"{kind}_due"] = int(queued), int(due or 0)
            return out

        return await self._gc_tx(run, rollback=True)

    async def gc_known_blobs(self, digests: list[str]) -> set[str]:
        """The subset of `digests` that have a blob row."""
        async def run(tx: _Tx) -> set[str]:
            rows = await tx.fetch("SELECT digest FROM blobs WHERE digest IN {json:1}", json.dumps(digests))
            return {r[0] for r in rows}

        return await self._gc_tx(run, rollback=True) if digests else set()

    async def gc_start_run(self, *, dry_run: bool, tenant: str | None, sweep: bool,
                           grace_seconds: float) -> int:
        async def run(tx: _Tx) -> int:
            # The history keeps the last RUNS_KEPT runs (serve adds one per interval per replica).
            await tx.execute("DELETE FROM gc_runs WHERE id <= (SELECT MAX(id) FROM gc_runs) - $1", RUNS_KEPT - 1)
            return await tx.fetchval(
                "INSERT INTO gc_runs (started_at, dry_run, tenant, sweep, grace_seconds) "
                "VALUES ($1, $2, $3, $4, $5) "
                "RETURNING id", time.time(), int(dry_run), tenant, int(sweep), grace_seconds)

        return await self._gc_tx(run)

    async def gc_finish_run(self, run_id: int, counts: dict[str, int], tenant_bytes_freed: dict[str, int],
                            errors: list[str]) -> None:
        sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(RUN_COUNTS))
        n = len(RUN_COUNTS) + 2

        async def run(tx: _Tx) -> None:
            await tx.execute(f"UPDATE gc_runs SET finished_at = ${n}, {sets}, tenant_bytes_freed = ${n + 1}, "
                             f"errors = ${n + 2} WHERE id = $1", run_id,
                             *(int(counts.get(c, 0)) for c in RUN_COUNTS), time.time(),
                             json.dumps(tenant_bytes_freed, sort_keys=True), json.dumps(errors[:100]))

        await self._gc_tx(run)

    async def gc_runs(self, limit: int = 50, tenant: str | None = None, *,
                      before: int | None = None) -> list[GcRunRecord]:
        """The run history, newest first, ids below `before` (with `tenant`: that tenant's runs only)."""
        async def run(tx: _Tx) -> list[GcRunRecord]:
            where, args = ["id < $2"], [limit, before if before is not None else 2 ** 62]
            if tenant is not None:
                args.append(tenant)
                where.append("tenant = $3")
            rows = await tx.fetch(f"SELECT {_RUN_COLUMNS} FROM gc_runs WHERE {' AND '.join(where)} "
                                  "ORDER BY id DESC LIMIT $1", *args)
            return [_run_record(r) for r in rows]

        return await self._gc_tx(run, rollback=True)


class SqliteGcMixin(GcStore):
    def _gc_transaction(self, fn: Callable[[_Tx], Awaitable[Any]], finish: Callable[[Any], Any]):
        def run(conn) -> Any:
            return finish(drive(fn(SqliteTx(conn))))

        return run


class PostgresGcMixin(GcStore):
    def _gc_transaction(self, fn: Callable[[_Tx], Awaitable[Any]], finish: Callable[[Any], Any]):
        async def run(conn) -> Any:
            return finish(await fn(PostgresTx(conn)))

        return run
