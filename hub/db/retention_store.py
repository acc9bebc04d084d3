"""RetentionStore: the metadata side of retention (issue 16), for both stores.

Three things live here: each tenant's policy document (table retention_policies, changed with
its audit row in one transaction), the last pull time of each tag (tag_pulls, written in batches
by hub/registry/pulls.py), and the runs (retention_runs, retention_verdicts) with the reads and
the conditional deletes a run makes (hub/registry/retention.py).

The SQL is written once, as GcStore's is (hub/db/gc_store.py): each method is a coroutine over
GcStore's transaction object with `$n` placeholders, run in one asyncpg transaction or driven on
SQLite's writer thread. The few spellings that differ are chosen by `tx.dialect` right where
they are used (GREATEST / max, and how a JSON array of rows is unpacked).

Pull times are exact across replicas: every flush is one upsert that keeps the greater of the
stored and the new time (GREATEST on PostgreSQL, two-argument max on SQLite), so the order in
which replicas flush does not matter, and rows are written in key order so two replicas flushing
overlapping batches lock them in the same order.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from typing import Any

from ..events import cloudevents
from .event_store import audit, emit
from .immutable_store import TagGuard, put_tenant_document, refuse_frozen

RUNS_KEPT = 1000
VERDICT_BATCH = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class StoredPolicy:
    tenant: str
    document: dict
    updated_at: float
    updated_by: str


@dataclasses.dataclass(frozen=True, slots=True)
class InventoryTag:
    """A tag as a run reads it: pushed_at is when the tag was last set (tags.updated_at)."""

    repository: str
    tag: str
    digest: str
    pushed_at: float
    pulled_at: float | None
    media_type: str
    artifact_type: str | None
    subject: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class InventoryManifest:
    """An untagged manifest: referenced when an index of its repository lists it."""

    repository: str
    digest: str
    pushed_at: float
    media_type: str
    artifact_type: str | None
    subject: str | None
    referenced: bool


@dataclasses.dataclass(frozen=True, slots=True)
class StoredVerdict:
    repository: str
    tag: str | None
    digest: str
    artifact_type: str
    action: str  # keep, protect or delete (the plan's)
    outcome: str  # kept, deleted, moved, gone, failed (what the run did)
    rules: tuple[str, ...]
    reason: str
    pushed_at: float
    pulled_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionRunRecord:
    id: int
    started_at: float
    finished_at: float | None
    tenant: str | None
    trigger: str  # 'schedule', 'api' or 'cli'
    actor: str
    counts: dict[str, int]
    errors: list[str]


_RUN_COLUMNS = "id, started_at, finished_at, tenant, trigger, actor, counts, errors"


def _run(row: Any) -> RetentionRunRecord:
    return RetentionRunRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                              json.loads(row[7]))


def _tenant_bounds(tenant: str) -> tuple[str, str]:
    return tenant + "/", tenant + "0"  # '0' follows '/'


def _json_rows(tx: Any, n: int) -> str:
    """A FROM item `j` whose `j.value` is each element of the JSON array in parameter n."""
    if tx.dialect == "postgres":
        return f"jsonb_array_elements(${n}::jsonb) AS j(value)"
    return f"json_each(${n}) AS j"


def _greatest(tx: Any) -> str:
    return "GREATEST" if tx.dialect == "postgres" else "max"


class RetentionStore:
    """Mixed into SqliteStore and PostgresStore, beside GcStore (whose `_gc_tx` runs these)."""

    _gc_tx: Any  # GcStore's
    tag_guard: TagGuard | None  # ImmutableStore's

    # Policies -----------------------------------------------------------------------------------
    async def retention_policy(self, tenant: str) -> StoredPolicy | None:
        row = await self._gc_tx(lambda tx: tx.fetchrow(
            "SELECT tenant, document, updated_at, updated_by FROM retention_policies WHERE tenant = $1", tenant),
            rollback=True)
        return None if row is None else StoredPolicy(row[0], json.loads(row[1]), row[2], row[3])

    async def set_retention_policy(self, tenant: str, document: dict, actor: str) -> StoredPolicy:
        """Store the tenant's (validated) policy and its audit row in one transaction."""
        text, now = json.dumps(document, sort_keys=True), time.time()

        async def run(tx: Any) -> None:
            await put_tenant_document(tx, "retention_policies", tenant, text, now, actor)
            await audit(tx, actor, "retention.policy.set", tenant, {"policy": document}, tenant)

        await self._gc_tx(run)
        return StoredPolicy(tenant, json.loads(text), now, actor)

    async def delete_retention_policy(self, tenant: str, actor: str) -> bool:
        async def run(tx: Any) -> bool:
            if not await tx.execute("DELETE FROM retention_policies WHERE tenant = $1", tenant):
                return False
            await audit(tx, actor, "retention.policy.delete", tenant, None, tenant)
            return True

        return await self._gc_tx(run)

    async def retention_policies(self, tenant: str | None = None) -> list[StoredPolicy]:
        """Every tenant's policy in tenant order (with `tenant`, at most that one)."""
        async def run(tx: Any) -> list[Any]:
            if tenant is None:
                return await tx.fetch("SELECT tenant, document, updated_at, updated_by FROM retention_policies "
                                      "ORDER BY tenant")
            return await tx.fetch("SELECT tenant, document, updated_at, updated_by FROM retention_policies "
                                  "WHERE tenant = $1", tenant)

        return [StoredPolicy(r[0], json.loads(r[1]), r[2], r[3]) for r in await self._gc_tx(run, rollback=True)]

    # Pull times ---------------------------------------------------------------------------------
    async def record_tag_pulls(self, pulls: Iterable[tuple[str, str, bool, float]]) -> None:
        """(repository, reference, by_digest, epoch seconds): the tag's pull time becomes the
        greater of the stored one and this; by digest, that of every tag pointing at it. Tags that
        are gone (and digests no tag points at) are skipped."""
        rows = sorted([r, ref, 1 if by_digest else 0, at] for r, ref, by_digest, at in pulls)
        if not rows:
            return

        async def run(tx: Any) -> None:
            await tx.execute(
                "INSERT INTO tag_pulls (repository_id, tag, pulled_at) "
                "SELECT t.repository_id, t.name, MAX(x.at) FROM (SELECT j.value->>0 AS repo, j.value->>1 AS ref, "
                "CAST(j.value->>2 AS integer) AS by_digest, CAST(j.value->>3 AS DOUBLE PRECISION) AS at "
                f"FROM {_json_rows(tx, 1)}) x "
                "JOIN repositories r ON r.name = x.repo "
                "JOIN tags t ON t.repository_id = r.id "
                "AND ((x.by_digest = 0 AND t.name = x.ref) OR (x.by_digest = 1 AND t.digest = x.ref)) "
                "WHERE true GROUP BY t.repository_id, t.name ORDER BY t.repository_id, t.name "
                "ON CONFLICT (repository_id, tag) DO UPDATE "
                f"SET pulled_at = {_greatest(tx)}(tag_pulls.pulled_at, excluded.pulled_at)", json.dumps(rows))

        await self._gc_tx(run)

    async def set_tag_times(self, repository: str, tag: str, *, pushed_at: float | None = None,
                            pulled_at: float | None = None) -> bool:
        """Tests and benchmarks only: set a tag's push time (tags.updated_at) and pull time as if
        they had happened then (an aged tag without waiting days). False if there is no such tag."""
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo is None:
                return False
            if pushed_at is not None and not await tx.execute(
                    "UPDATE tags SET updated_at = $3 WHERE repository_id = $1 AND name = $2", repo, tag, pushed_at):
                return False
            if pulled_at is not None:
                await tx.execute("INSERT INTO tag_pulls (repository_id, tag, pulled_at) VALUES ($1, $2, $3) "
                                 "ON CONFLICT (repository_id, tag) DO UPDATE SET pulled_at = excluded.pulled_at",
                                 repo, tag, pulled_at)
            return True

        return await self._gc_tx(run)

    # What a run reads ---------------------------------------------------------------------------
    async def retention_inventory(self, tenant: str) -> tuple[list[InventoryTag], list[InventoryManifest]]:
        """Every tag of the tenant's repositories, and every untagged manifest, as of one transaction."""
        low, high = _tenant_bounds(tenant)

        async def run(tx: Any) -> tuple[list[Any], list[Any]]:
            tags = await tx.fetch(
                "SELECT r.name, t.name, t.digest, t.updated_at, p.pulled_at, m.media_type, m.artifact_type, "
                "m.subject FROM repositories r JOIN tags t ON t.repository_id = r.id "
                "JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest "
                "LEFT JOIN tag_pulls p ON p.repository_id = t.repository_id AND p.tag = t.name "
                "WHERE r.name >= $1 AND r.name < $2", low, high)
            untagged = await tx.fetch(
                "SELECT r.name, m.digest, m.created_at, m.media_type, m.artifact_type, m.subject, "
                "EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = m.repository_id "
                "AND mr.child_digest = m.digest AND mr.child_kind = 'manifest') "
                "FROM repositories r JOIN manifests m ON m.repository_id = r.id "
                "WHERE r.name >= $1 AND r.name < $2 AND NOT EXISTS (SELECT 1 FROM tags t "
                "WHERE t.repository_id = m.repository_id AND t.digest = m.digest)", low, high)
            return tags, untagged

        tags, untagged = await self._gc_tx(run, rollback=True)
        return ([InventoryTag(*r) for r in tags],
                [InventoryManifest(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in untagged])

    # The deletes a run makes --------------------------------------------------------------------
    async def delete_tag_at(self, repository: str, tag: str, digest: str | None, *, actor: str,
                            detail: dict | None = None) -> bool:
        """Delete the tag, only while it still points at `digest` (None: wherever it points), with
        its audit row, in one transaction. False when there is no such tag (or it moved); refused
        (TagImmutableError) when the tag is immutable. GC's trigger queues the manifest's review in
        the same transaction (migration 0009)."""
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo is None:
                return False
            current = await tx.fetchval("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2{for_update}",
                                        repo, tag)
            if current is None or (digest is not None and current != digest):
                return False
            await refuse_frozen(tx, self.tag_guard, repository, [tag])
            await tx.execute("DELETE FROM tags WHERE repository_id = $1 AND name = $2", repo, tag)
            await audit(tx, actor, "tag.delete", f"{repository}:{tag}", {**(detail or {}), "digest": current},
                        repository.split("/", 1)[0])
            await emit(tx, cloudevents.TAG_DELETED, repository=repository, subject=f"{repository}:{tag}",
                       actor=actor, data={"repository": repository, "tag": tag, "digest": current,
                                          "reason": "retention" if actor == "retention" else "deleted"})
            return True

        return await self._gc_tx(run)

    async def delete_untagged_manifest(self, repository: str, digest: str, *, actor: str,
                                       detail: dict | None = None) -> bool:
        """Delete the manifest only while no tag points at it and no index of its repository lists
        it, with its audit row, in one transaction (a tag pushed meanwhile keeps it). The manifest
        row is locked first (FOR UPDATE on PostgreSQL, as GC's verdicts do): a tag push holds a key
        share on it until it commits, so the checks after the lock see that tag."""
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo is None:
                return False
            if await tx.fetchval("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2{for_update}",
                                 repo, digest) is None:
                return False
            if await tx.fetchval("SELECT 1 FROM tags WHERE repository_id = $1 AND digest = $2 LIMIT 1", repo, digest):
                return False
            if await tx.fetchval("SELECT 1 FROM manifest_references WHERE repository_id = $1 AND child_digest = $2 "
                                 "AND child_kind = 'manifest' LIMIT 1", repo, digest):
                return False
            await tx.execute("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2", repo, digest)
            await audit(tx, actor, "manifest.delete", f"{repository}@{digest}", detail, repository.split("/", 1)[0])
            await emit(tx, cloudevents.MANIFEST_DELETED, repository=repository, subject=f"{repository}@{digest}",
                       actor=actor, data={"repository": repository, "digest": digest, "reason": "retention"})
            return True

        return await self._gc_tx(run)

    # Runs ---------------------------------------------------------------------------------------
    async def retention_claim_run(self, *, owner: str, lease_seconds: float, tenant: str | None, trigger: str,
                                  actor: str, slot: int | None = None) -> int | None:
        """Start a run record; the run's id. With `slot` (a scheduled run), only the first replica
        to ask gets it, or the next one once the holder's lease ran out without finishing (a
        killed replica: its verdicts are dropped and the run starts over); None otherwise."""
        now = time.time()

        async def run(tx: Any) -> int | None:
            # The history keeps the last RUNS_KEPT runs (and their verdicts, by cascade).
            await tx.execute("DELETE FROM retention_runs WHERE id <= (SELECT MAX(id) FROM retention_runs) - $1",
                             RUNS_KEPT - 1)
            run_id = await tx.fetchval(
                "INSERT INTO retention_runs (slot, owner, lease_until, started_at, tenant, trigger, actor) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (slot) DO UPDATE SET owner = excluded.owner, "
                "lease_until = excluded.lease_until, started_at = excluded.started_at, counts = '{}', "
                "errors = '[]' WHERE retention_runs.finished_at IS NULL AND retention_runs.lease_until < $4 "
                "RETURNING id", slot, owner, now + lease_seconds, now, tenant, trigger, actor)
            if run_id is not None:
                await tx.execute("DELETE FROM retention_verdicts WHERE run_id = $1", run_id)
            return run_id

        return await self._gc_tx(run)

    async def retention_renew(self, run_id: int, owner: str, lease_seconds: float) -> bool:
        """Extend the run's lease; False if another replica took it over (stop then)."""
        return bool(await self._gc_tx(lambda tx: tx.execute(
            "UPDATE retention_runs SET lease_until = $3 WHERE id = $1 AND owner = $2 AND finished_at IS NULL",
            run_id, owner, time.time() + lease_seconds)))

    async def retention_add_verdicts(self, run_id: int, first_seq: int, verdicts: list[StoredVerdict]) -> None:
        rows = [[run_id, first_seq + i, v.repository, v.tag, v.digest, v.artifact_type, v.action, v.outcome,
                 json.dumps(list(v.rules)), v.reason, v.pushed_at, v.pulled_at] for i, v in enumerate(verdicts)]

        async def run(tx: Any) -> None:
            for start in range(0, len(rows), VERDICT_BATCH):
                await tx.execute(
                    "INSERT INTO retention_verdicts (run_id, seq, repository, tag, digest, artifact_type, action, "
                    "outcome, rules, reason, pushed_at, pulled_at) SELECT CAST(j.value->>0 AS bigint), "
                    "CAST(j.value->>1 AS bigint), j.value->>2, j.value->>3, j.value->>4, j.value->>5, j.value->>6, "
                    "j.value->>7, j.value->>8, j.value->>9, CAST(j.value->>10 AS DOUBLE PRECISION), "
                    f"CAST(j.value->>11 AS DOUBLE PRECISION) FROM {_json_rows(tx, 1)}",
                    json.dumps(rows[start:start + VERDICT_BATCH]))

        if rows:
            await self._gc_tx(run)

    async def retention_finish_run(self, run_id: int, owner: str, counts: dict[str, int], errors: list[str]) -> None:
        await self._gc_tx(lambda tx: tx.execute(
            "UPDATE retention_runs SET finished_at = $3, counts = $4, errors = $5 WHERE id = $1 AND owner = $2",
            run_id, owner, time.time(), json.dumps(counts, sort_keys=True), json.dumps(errors[:100])))

    async def retention_runs(self, limit: int = 50, tenant: str | None = None, *,
                             before: int | None = None) -> list[RetentionRunRecord]:
        """The run history, newest first, ids below `before` (with `tenant`: that tenant's runs)."""
        async def run(tx: Any) -> list[Any]:
            where, args = ["id < $2"], [limit, before if before is not None else 2 ** 62]
            if tenant is not None:
                args.append(tenant)
                where.append("tenant = $3")
            return await tx.fetch(f"SELECT {_RUN_COLUMNS} FROM retention_runs WHERE {' AND '.join(where)} "
                                  "ORDER BY id DESC LIMIT $1", *args)

        return [_run(r) for r in await self._gc_tx(run, rollback=True)]

    async def retention_run(self, run_id: int) -> tuple[RetentionRunRecord, list[StoredVerdict]] | None:
        async def run(tx: Any) -> tuple[Any, list[Any]] | None:
            row = await tx.fetchrow(f"SELECT {_RUN_COLUMNS} FROM retention_runs WHERE id = $1", run_id)
            if row is None:
                return None
            return row, await tx.fetch(
                "SELECT repository, tag, digest, artifact_type, action, outcome, rules, reason, pushed_at, "
                "pulled_at FROM retention_verdicts WHERE run_id = $1 ORDER BY seq", run_id)

        found = await self._gc_tx(run, rollback=True)
        if found is None:
            return None
        row, verdicts = found
        return _run(row), [StoredVerdict(v[0], v[1], v[2], v[3], v[4], v[5], tuple(json.loads(v[6])), v[7], v[8],
                                         v[9]) for v in verdicts]
