"""PromotionStore: promotions of images between repositories (issue 17), for both stores.

Three things live here: each tenant's gate document (table promotion_gates, changed with its audit
row in one transaction, as the immutable-tag rules are), the promotions (table promotions: pending,
completed or rejected) with an event and an audit row for every step, and the copy itself.

The copy (`complete_promotion`) is one transaction: it re-reads that the source repository still
holds every manifest and blob of the plan (locking those rows on PostgreSQL, so a concurrent delete
or GC verdict waits), checks the target tenant's quota once for everything the target does not
count yet, links the blobs into the target, inserts the manifests with their references (children
before the index that lists them, referrers after their subject), points the target tag at the
root through the immutable-tag guard, writes the manifest.pushed / tag.pushed / tag.moved events a
push of the same manifests would, and moves the promotion to `completed` with its events and audit
rows. No bytes move: blob rows exist already, only links and manifest rows are written. The caller
(Registry.promote) holds every blob's lock (Registry.blob_lock) from before this transaction to
after its commit, as every other link that relies on bytes being present does.

The SQL is written once over GcStore's transaction object (`$n` placeholders), as RetentionStore's
is; `{for_update}` / `{for_share}` lock rows on PostgreSQL and are nothing on SQLite's one writer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from ..events import cloudevents
from .base import QUOTA_USAGE_SQL, NewManifest, QuotaExceededError
from .event_store import audit, emit, emit_all, manifest_events, quota_warning
from .immutable_store import (
    create_frozen_tags,
    drop_tenant_document,
    guard_tag_writes,
    read_tenant_document,
    replace_tenant_document,
    tenant_of,
)

STATES = ("pending", "completed", "rejected")
_COLUMNS = ("id, state, source_repository, source_reference, digest, target_repository, target_tag, "
            "requested_by, requested_at, gates, approval_role, self_approval, decided_by, decided_at, reason, "
            "completed_at, copied")


class PromotionSourceGone(Exception):
    """The source repository no longer holds something the promotion copies. Nothing was written."""

    def __init__(self, repository: str, missing: list[str]):
        super().__init__(f"{repository} no longer holds {', '.join(missing[:5])}")
        self.repository, self.missing = repository, missing


class PromotionNotPending(Exception):
    """The promotion was decided (approved, rejected) meanwhile. Nothing was written."""

    def __init__(self, promotion_id: int, state: str):
        super().__init__(f"promotion {promotion_id} is {state}")
        self.promotion_id, self.state = promotion_id, state


@dataclasses.dataclass(frozen=True, slots=True)
class StoredGates:
    tenant: str
    document: dict
    updated_at: float
    updated_by: str


@dataclasses.dataclass(frozen=True, slots=True)
class PromotionRecord:
    id: int
    state: str
    source_repository: str
    source_reference: str  # the tag or digest asked for
    digest: str
    target_repository: str
    target_tag: str
    requested_by: str
    requested_at: float
    gates: tuple[dict, ...]  # the gates checked, each {"gate", "requirement", "passed", ...}
    approval_role: str | None  # the role an approver needs (None: no approval gate)
    self_approval: bool  # whether the requester may approve it
    decided_by: str | None
    decided_at: float | None
    reason: str | None
    completed_at: float | None
    copied: dict | None  # {"manifests": n, "blobs": n, "bytes": n} once completed

    @property
    def source(self) -> str:
        return f"{self.source_repository}@{self.digest}"

    @property
    def target(self) -> str:
        return f"{self.target_repository}:{self.target_tag}"


@dataclasses.dataclass(frozen=True, slots=True)
class PromotionRequest:
    """What a new promotion records: the caller's request, resolved (the digest), and its gates."""

    source_repository: str
    source_reference: str
    digest: str
    target_repository: str
    target_tag: str
    requested_by: str
    gates: tuple[dict, ...]
    approval_role: str | None = None
    self_approval: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CopyPlan:
    """What a promotion writes into the target: manifests in insertion order (children before their
    index, referrers after their subject; the root, which gets the tag, among them) and the blobs
    they reference, (digest, size)."""

    root: str
    manifests: tuple[NewManifest, ...]
    blobs: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ArtifactHolding:
    """A repository that holds a digest, with the tags pointing at it."""

    repository: str
    public: bool
    tags: tuple[str, ...]
    media_type: str
    size: int
    annotations_json: str | None


def _record(row: Any) -> PromotionRecord:
    return PromotionRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                           tuple(json.loads(row[9])), row[10], bool(row[11]), row[12], row[13], row[14], row[15],
                           None if row[16] is None else json.loads(row[16]))


def promotion_data(record: PromotionRecord) -> dict:
    """A promotion event's data, and its audit rows' detail (who, from, to, digest, the gates)."""
    data = {"promotion": record.id, "source": record.source, "target": record.target, "digest": record.digest,
            "state": record.state, "requested_by": record.requested_by, "gates": list(record.gates),
            "decided_by": record.decided_by, "reason": record.reason}
    if record.copied is not None:
        data["copied"] = record.copied
    return data


async def _step(tx: Any, record: PromotionRecord, event_type: str, action: str, actor: str) -> None:
    """One step of a promotion: its CloudEvent and its audit row, in the caller's transaction."""
    data = promotion_data(record)
    await emit(tx, event_type, repository=record.target_repository, subject=f"promotion:{record.id}", data=data,
               actor=actor)
    await audit(tx, actor, action, f"{record.target_repository}:{record.target_tag}", data,
                tenant_of(record.target_repository))


async def _read(tx: Any, promotion_id: int, lock: bool = False) -> PromotionRecord | None:
    row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM promotions WHERE id = $1" + ("{for_update}" if lock else ""),
                            promotion_id)
    return None if row is None else _record(row)


async def _repository_id(tx: Any, name: str) -> int:
    """The target repository's id, created if need be (on PostgreSQL under a share lock on its tenant's row,
    which pairs with a tenant delete, as the stores' own _repo_id does)."""
    repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", name)
    if repo is not None:
        return repo
    if tx.dialect == "postgres":
        await tx.execute("SELECT 1 FROM tenants WHERE name = $1 FOR SHARE", tenant_of(name))
    await tx.execute("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                     name, time.time())
    return await tx.fetchval("SELECT id FROM repositories WHERE name = $1", name)


async def _check_quota(tx: Any, tenant: str, plan: CopyPlan) -> None:
    """The target tenant's quota, once for the whole plan: the bytes of every blob and manifest the
    tenant does not count yet. On PostgreSQL its row is locked first, as every link into it is."""
    quota = await tx.fetchval("SELECT quota_bytes FROM tenants WHERE name = $1"
                              + (" FOR UPDATE" if tx.dialect == "postgres" else ""), tenant)
    if quota is None:
        return
    low, high = tenant + "/", tenant + "0"
    adding = 0
    for table, items in (("repository_blobs", dict(plan.blobs)),
                         ("manifests", {m.digest: len(m.content) for m in plan.manifests})):
        counted = {r[0] for r in await tx.fetch(
            f"SELECT DISTINCT x.digest FROM {table} x JOIN repositories r ON r.id = x.repository_id "
            "WHERE x.digest IN {json:1} AND r.name >= $2 AND r.name < $3", json.dumps(sorted(items)), low, high)}
        adding += sum(size for digest, size in items.items() if digest not in counted)
    if not adding:
        return
    used = int(await tx.fetchval("SELECT " + QUOTA_USAGE_SQL.format(low="$1", high="$2"), low, high))
    if used + adding > quota:
        raise QuotaExceededError(tenant, used, quota, adding, kind="manifest")
    await quota_warning(tx, tenant, used, adding, quota)


async def _source_missing(tx: Any, repository: str, plan: CopyPlan) -> list[str]:
    """What of the plan the source no longer holds (its rows share-locked on PostgreSQL meanwhile)."""
    lock = " FOR SHARE" if tx.dialect == "postgres" else ""
    repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1" + lock, repository)
    if repo is None:
        return [plan.root]
    wanted = [d for d, _ in plan.blobs]
    held = {r[0] for r in await tx.fetch("SELECT digest FROM repository_blobs WHERE repository_id = $1 "
                                         "AND digest IN {json:2} ORDER BY digest" + lock, repo, json.dumps(wanted))}
    manifests = [m.digest for m in plan.manifests]
    held |= {r[0] for r in await tx.fetch("SELECT digest FROM manifests WHERE repository_id = $1 "
                                          "AND digest IN {json:2} ORDER BY digest" + lock, repo, json.dumps(manifests))}
    return [d for d in wanted + manifests if d not in held]


async def _copy(tx: Any, source: str, target: str, tag: str, plan: CopyPlan, guard: Any) -> dict:
    """Write the plan into `target` (see the module docstring); what was written."""
    missing = await _source_missing(tx, source, plan)
    if missing:
        raise PromotionSourceGone(source, missing)
    await _check_quota(tx, tenant_of(target), plan)
    repo = await _repository_id(tx, target)
    now = time.time()
    for digest, _ in plan.blobs:
        # The blob row exists (the source links it, under the caller's lock); a link made again
        # refreshes its time, as a push's does (GC's grace period starts over).
        await tx.execute("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES "
                                   "($1, $2, $3) ON CONFLICT (repository_id, digest) DO UPDATE SET "
                                   "created_at = excluded.created_at", repo, digest, now)
    stored = 0
    for m in plan.manifests:
        new = await tx.execute(
            "INSERT INTO manifests (repository_id, digest, media_type, size, content, subject, artifact_type, "
            "annotations, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (repository_id, digest) DO NOTHING", repo, m.digest, m.media_type, len(m.content),
            m.content, m.subject, m.artifact_type, m.annotations_json, now) > 0
        # Children are in the target by now: blobs linked above, child manifests inserted before.
        for kind, table, refs in (("blob", "blobs", m.blob_refs), ("manifest", "manifests", m.manifest_refs)):
            if refs:
                await tx.execute(
                    "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind) "
                    f"SELECT $1, $2, x.digest, $4 FROM {table} x WHERE x.digest IN {{json:3}}"
                    + (" AND x.repository_id = $1" if table == "manifests" else "") + " ON CONFLICT DO NOTHING",
                    repo, m.digest, json.dumps(sorted(set(refs))), kind)
        stored += new
        tags = [tag] if m.digest == plan.root else []
        previous: dict[str, str] = {}
        if tags:
            row = await tx.fetchrow("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2{for_update}",
                                    repo, tag)
            if row is not None:
                previous[tag] = row[0]
            frozen = await guard_tag_writes(tx, guard, repo, target, m.digest, tags, previous)
            if not frozen:
                await tx.execute("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) "
                                 "ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, "
                                 "updated_at = excluded.updated_at", repo, tag, m.digest, now)
            await create_frozen_tags(tx, repo, target, m.digest, frozen, now)
        await emit_all(tx, target, manifest_events(target, m, tags, new, previous))
    return {"manifests": len(plan.manifests), "manifests_new": stored, "blobs": len(plan.blobs),
            "bytes": sum(size for _, size in plan.blobs)}


class PromotionStore:
    """Mixed into SqliteStore and PostgresStore, beside GcStore (whose `_gc_tx` runs these)."""

    _gc_tx: Any
    tag_guard: Any

    # Gates (a tenant's, or with tenant PLATFORM_DOCUMENT the platform's, audited with no tenant) ----------
    async def promotion_gates(self, tenant: str) -> StoredGates | None:
        row = await self._gc_tx(lambda tx: read_tenant_document(tx, "promotion_gates", tenant), rollback=True)
        return None if row is None else StoredGates(row[0], json.loads(row[1]), row[2], row[3])

    async def set_promotion_gates(self, tenant: str, document: dict, actor: str) -> StoredGates:
        """Store the tenant's (validated) gates with their audit row (before and after) in one transaction."""
        text, now = await self._gc_tx(lambda tx: replace_tenant_document(
            tx, "promotion_gates", tenant, document, actor, "promotion_gates.set", "gates"))
        return StoredGates(tenant, json.loads(text), now, actor)

    async def delete_promotion_gates(self, tenant: str, actor: str) -> bool:
        return await self._gc_tx(lambda tx: drop_tenant_document(tx, "promotion_gates", tenant, actor,
                                                                 "promotion_gates.delete"))

    # Promotions ------------------------------------------------------------------------------------
    async def _insert(self, tx: Any, request: PromotionRequest, state: str) -> PromotionRecord:
        promotion_id = await tx.fetchval(
            "INSERT INTO promotions (state, source_repository, source_reference, digest, target_repository, "
            "target_tag, source_tenant, target_tenant, requested_by, requested_at, gates, approval_role, "
            "self_approval) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            state, request.source_repository, request.source_reference, request.digest, request.target_repository,
            request.target_tag, tenant_of(request.source_repository), tenant_of(request.target_repository),
            request.requested_by, time.time(), json.dumps(list(request.gates), sort_keys=True),
            request.approval_role, int(request.self_approval))
        return await _read(tx, promotion_id)

    async def refuse_promotion(self, request: PromotionRequest) -> None:
        """The audit row of a request a gate refused (`request.gates` holds the failed requirements too):
        no promotion row, no event, nothing else written."""
        detail = {"promotion": None, "source": f"{request.source_repository}@{request.digest}",
                  "target": f"{request.target_repository}:{request.target_tag}", "digest": request.digest,
                  "state": "refused", "requested_by": request.requested_by, "gates": list(request.gates)}
        await self._gc_tx(lambda tx: audit(tx, request.requested_by, "promotion.refuse", detail["target"], detail,
                                           tenant_of(request.target_repository)))

    async def request_promotion(self, request: PromotionRequest) -> PromotionRecord:
        """A promotion that waits for an approval: its row (pending), its promotion.requested event and
        audit row, in one transaction."""
        async def run(tx: Any) -> PromotionRecord:
            record = await self._insert(tx, request, "pending")
            await _step(tx, record, cloudevents.PROMOTION_REQUESTED, "promotion.request", request.requested_by)
            return record

        return await self._gc_tx(run)

    async def complete_promotion(self, plan: CopyPlan, *, request: PromotionRequest | None = None,
                                 promotion_id: int | None = None, approver: str | None = None,
                                 reason: str | None = None) -> PromotionRecord:
        """Copy `plan` and record the promotion, in one transaction: a new one (`request`: requested and
        completed) or a pending one approved by `approver` (`promotion_id`: approved and completed).
        Raises PromotionSourceGone, QuotaExceededError, TagImmutableError (nothing written) or
        PromotionNotPending (decided meanwhile)."""
        async def run(tx: Any) -> PromotionRecord:
            if request is not None:
                record = await self._insert(tx, request, "pending")
                await _step(tx, record, cloudevents.PROMOTION_REQUESTED, "promotion.request", record.requested_by)
            else:
                record = await _read(tx, promotion_id, lock=True)
                if record is None or record.state != "pending":
                    raise PromotionNotPending(promotion_id, "gone" if record is None else record.state)
            copied = await _copy(tx, record.source_repository, record.target_repository, record.target_tag, plan,
                                 self.tag_guard)
            now = time.time()
            if approver is not None:
                await tx.execute("UPDATE promotions SET decided_by = $2, decided_at = $3, reason = $4 WHERE id = $1",
                                 record.id, approver, now, reason)
                await _step(tx, dataclasses.replace(record, decided_by=approver, decided_at=now, reason=reason),
                            cloudevents.PROMOTION_APPROVED, "promotion.approve", approver)
            await tx.execute("UPDATE promotions SET state = 'completed', completed_at = $2, copied = $3 WHERE id = $1",
                             record.id, now, json.dumps(copied, sort_keys=True))
            done = await _read(tx, record.id)
            await _step(tx, done, cloudevents.PROMOTION_COMPLETED, "promotion.complete", approver or done.requested_by)
            return done

        return await self._gc_tx(run)

    async def reject_promotion(self, promotion_id: int, actor: str, reason: str | None) -> PromotionRecord:
        """Reject a pending promotion, with its event and audit row. PromotionNotPending otherwise."""
        async def run(tx: Any) -> PromotionRecord:
            record = await _read(tx, promotion_id, lock=True)
            if record is None or record.state != "pending":
                raise PromotionNotPending(promotion_id, "gone" if record is None else record.state)
            await tx.execute("UPDATE promotions SET state = 'rejected', decided_by = $2, decided_at = $3, reason = $4 "
                             "WHERE id = $1", promotion_id, actor, time.time(), reason)
            done = await _read(tx, promotion_id)
            await _step(tx, done, cloudevents.PROMOTION_REJECTED, "promotion.reject", actor)
            return done

        return await self._gc_tx(run)

    async def promotion(self, promotion_id: int) -> PromotionRecord | None:
        return await self._gc_tx(lambda tx: _read(tx, promotion_id), rollback=True)

    async def promotions(self, *, tenants: frozenset[str] | None = None, state: str | None = None,
                         digest: str | None = None, limit: int = 50,
                         before: int | None = None) -> list[PromotionRecord]:
        """Promotions newest first (ids below `before`): with `tenants` (None: all), only those whose source or
        target is in one of them; with `state` or `digest`, only those."""
        async def run(tx: Any) -> list[Any]:
            where, args = ["id < $1"], [before or 2 ** 62, limit]
            if tenants is not None:
                args.append(json.dumps(sorted(tenants)))
                where.append(f"(source_tenant IN {{json:{len(args)}}} OR target_tenant IN {{json:{len(args)}}})")
            if state is not None:
                args.append(state)
                where.append(f"state = ${len(args)}")
            if digest is not None:
                args.append(digest)
                where.append(f"digest = ${len(args)}")
            return await tx.fetch(f"SELECT {_COLUMNS} FROM promotions WHERE {' AND '.join(where)} "
                                  "ORDER BY id DESC LIMIT $2", *args)

        return [_record(r) for r in await self._gc_tx(run, rollback=True)]

    async def linked_blob_sizes(self, repository: str, digests: list[str]) -> dict[str, int]:
        """The sizes of those of `digests` that `repository` links (one read for a promotion's plan)."""
        rows = await self._gc_tx(lambda tx: tx.fetch(
            "SELECT b.digest, b.size FROM repositories r JOIN repository_blobs rb ON rb.repository_id = r.id "
            "JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest IN {json:2}", repository,
            json.dumps(sorted(set(digests)))), rollback=True) if digests else []
        return {r[0]: r[1] for r in rows}

    # Traceability ----------------------------------------------------------------------------------
    async def artifact_holdings(self, digest: str, limit: int = 1000) -> list[ArtifactHolding]:
        """Every repository holding manifest `digest`, by name, with the tags that point at it (the caller
        keeps those the asker may pull)."""
        async def run(tx: Any) -> list[ArtifactHolding]:
            rows = await tx.fetch(
                "SELECT r.id, r.name, r.public, m.media_type, m.size, m.annotations FROM manifests m "
                "JOIN repositories r ON r.id = m.repository_id WHERE m.digest = $1 ORDER BY r.name LIMIT $2",
                digest, limit)
            out = []
            for repo, name, public, media_type, size, annotations in rows:
                tags = [t[0] for t in await tx.fetch("SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 "
                                                     "ORDER BY name", repo, digest)]
                out.append(ArtifactHolding(name, bool(public), tuple(tags), media_type, size, annotations))
            return out

        return await self._gc_tx(run, rollback=True)
