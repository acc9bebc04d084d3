"""EventStore: the outbox and webhook deliveries (issue 17), for both stores.

The outbox (`events`) gets one row per change, written by `emit` inside the transaction of the
change itself: the stores' put_manifest, delete_manifest, delete_tag and mounting link_blob,
GC's manifest verdicts (hub/db/gc_store.py) and retention's deletes (hub/db/retention_store.py).
The row holds the whole CloudEvent (hub/events/cloudevents.py builds it), so every delivery of
it sends the same bytes. In the same transaction `emit` reads the enabled subscriptions that may
want the event (the platform's and the event's tenant's), matches their filters, and queues one
delivery row per match: a subscription sees every event committed after it was created, and an
event that rolls back was never queued anywhere.

The SQL is written once over GcStore's transaction object (`$n` placeholders; driven on
SQLite's writer thread, one asyncpg transaction on PostgreSQL), as RetentionStore's is.

Deliveries are claimed (`webhook_claim`) by one worker each: on PostgreSQL the due rows are
selected FOR UPDATE SKIP LOCKED and given a lease in the same statement, so replicas never take
the same row; a worker killed with kill -9 lets its rows go when the lease runs out, and any
replica takes them then. On SQLite the claim is the same statement under the single writer.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import time
from collections.abc import Iterable
from typing import Any

from ..events import cloudevents
from .audit_export_store import AuditExportStore
from .base import MetadataStore, app_categories_text

DELIVERY_STATES = ("pending", "delivered", "dead")
# What a repository held, by name ($1): (manifests, tags), for its repository.deleted event.
REPOSITORY_COUNTS = ("SELECT (SELECT COUNT(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id "
                     "WHERE r.name = $1), (SELECT COUNT(*) FROM tags t JOIN repositories r ON r.id = t.repository_id "
                     "WHERE r.name = $1)")


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: int
    tenant: str | None  # None: platform-wide
    name: str
    url: str
    event_types: tuple[str, ...]
    repositories: tuple[str, ...]
    enabled: bool
    created_at: float
    created_by: str
    updated_at: float
    previous_secret_until: float | None  # while the previous secret still signs
    secret: str = dataclasses.field(repr=False, default="")
    previous_secret: str | None = dataclasses.field(repr=False, default=None)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    id: str
    type: str
    tenant: str | None
    repository: str | None
    actor: str
    at: float
    body: str

    def cloudevent(self) -> dict:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery one worker holds until `lease_until`: what it needs to send it."""

    id: int
    subscription_id: int
    attempt: int  # this claim's number (1 for the first)
    tries: int  # attempts since the delivery was last queued (the retry budget counts these)
    url: str
    secrets: tuple[str, ...] = dataclasses.field(repr=False)
    event_id: str = ""
    event_type: str = ""
    body: bytes = b""


@dataclasses.dataclass(slots=True)
class AttemptResult:
    """What one attempt came to (hub/events/delivery.py decides it)."""

    outcome: str  # delivered, retry, dead
    status: int | None
    latency_ms: float | None
    error: str | None
    next_attempt_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempt: int
    at: float
    owner: str
    status: int | None
    latency_ms: float | None
    error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    repository: str | None
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    finished_at: float | None
    last_status: int | None
    last_error: str | None
    last_latency_ms: float | None
    log: tuple[AttemptRecord, ...] = ()


_WEBHOOK_COLUMNS = ("id, tenant, name, url, event_types, repositories, enabled, created_at, created_by, updated_at, "
                    "previous_secret_until, secret, previous_secret")
_DELIVERY_COLUMNS = ("d.id, d.subscription_id, e.id, e.type, e.repository, d.state, d.attempts, d.next_attempt_at, "
                     "d.created_at, d.finished_at, d.last_status, d.last_error, d.last_latency_ms")
_AUDIT = "INSERT INTO audit_log (at, actor, action, target, detail, tenant) VALUES ($1, $2, $3, $4, $5, $6)"


def _webhook(row: Any) -> WebhookRecord:
    return WebhookRecord(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), tuple(json.loads(row[5])),
                         bool(row[6]), row[7], row[8], row[9], row[10], row[11], row[12])


def matches(event_type: str, repository: str | None, event_types: Iterable[str], repositories: Iterable[str]) -> bool:
    """A subscription's filters: `event_types` globs over the type (`io.daohub.tag.*`, or without
    the prefix: `tag.*`), `repositories` globs over the repository name (fnmatch: `*` spans `/`
    too). An empty list matches everything; an event without a repository matches only then."""
    types, repos = list(event_types), list(repositories)
    short = event_type.removeprefix(cloudevents.TYPE_PREFIX)
    if types and not any(fnmatch.fnmatchcase(event_type, p) or fnmatch.fnmatchcase(short, p) for p in types):
        return False
    if repos and (repository is None or not any(fnmatch.fnmatchcase(repository, p) for p in repos)):
        return False
    return True


async def subscriptions(tx: Any, tenant: str | None = "") -> list[tuple[int, str | None, list, list]]:
    """The enabled subscriptions (id, tenant, event_types, repositories) that may want an event of
    `tenant`: the platform's and the tenant's (tenant None: every enabled one, for a batch)."""
    if tenant is None:
        rows = await tx.fetch("SELECT id, tenant, event_types, repositories FROM webhook_subscriptions "
                              "WHERE enabled = 1 ORDER BY id")
    else:
        rows = await tx.fetch("SELECT id, tenant, event_types, repositories FROM webhook_subscriptions "
                              "WHERE enabled = 1 AND (tenant IS NULL OR tenant = $1) ORDER BY id", tenant)
    return [(r[0], r[1], json.loads(r[2]), json.loads(r[3])) for r in rows]


async def emit(tx: Any, event_type: str, *, repository: str | None, subject: str | None, data: dict,
               actor: str | None = None, tenant: str | None = None,
               candidates: list[tuple[int, str | None, list, list]] | None = None) -> str:
    """Write one event (and its deliveries) in the caller's transaction `tx`; its id.
    `actor` None: the one acting now (MetadataStore.acting_as), else 'anonymous'. `candidates`:
    subscriptions() read once for a batch of events in one transaction."""
    if tenant is None and repository is not None:
        tenant = repository.split("/", 1)[0]
    who = actor if actor is not None else (MetadataStore.current_actor() or "anonymous")
    now = time.time()
    event = cloudevents.build(event_type, source=cloudevents.source_for(repository, tenant), subject=subject,
                              data={**data, "actor": who}, at=now)
    seq = await tx.fetchval("INSERT INTO events (id, type, tenant, repository, actor, at, body) "
                            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq", event["id"], event_type, tenant,
                            repository, who, now, cloudevents.dumps(event))
    if candidates is None:
        candidates = await subscriptions(tx, tenant if tenant is not None else "")
    for sub_id, sub_tenant, types, repos in candidates:
        if (sub_tenant is None or sub_tenant == tenant) and matches(event_type, repository, types, repos):
            await tx.execute("INSERT INTO webhook_deliveries (subscription_id, event_seq, next_attempt_at, "
                             "created_at) VALUES ($1, $2, $3, $3)", sub_id, seq, now)
    return event["id"]


def manifest_events(repository: str, manifest: Any, tags: list[str], stored: bool,
                    previous: dict[str, str]) -> list[tuple[str, str, dict]]:
    """(type, subject, data) of a manifest PUT: manifest.pushed if the repository did not hold it,
    and per tag tag.pushed (new), tag.moved (it pointed elsewhere) or nothing (it pointed here)."""
    digest = manifest.digest
    out = []
    if stored:
        out.append((cloudevents.MANIFEST_PUSHED, f"{repository}@{digest}", {
            "repository": repository, "digest": digest, "media_type": manifest.media_type,
            "size": len(manifest.content), "artifact_type": manifest.artifact_type, "subject": manifest.subject,
            "tags": list(tags)}))
    for tag in tags:
        before = previous.get(tag)
        if before == digest:
            continue
        data = {"repository": repository, "tag": tag, "digest": digest}
        if before is None:
            out.append((cloudevents.TAG_PUSHED, f"{repository}:{tag}", data))
        else:
            out.append((cloudevents.TAG_MOVED, f"{repository}:{tag}", {**data, "previous_digest": before}))
    return out


def manifest_deleted_events(repository: str, digest: str, tags: list[str], reason: str) -> list[tuple[str, str, dict]]:
    """A manifest delete: tag.deleted for each tag that went with it, then manifest.deleted."""
    out = [(cloudevents.TAG_DELETED, f"{repository}:{tag}", {"repository": repository, "tag": tag, "digest": digest,
                                                            "reason": reason}) for tag in tags]
    out.append((cloudevents.MANIFEST_DELETED, f"{repository}@{digest}", {"repository": repository, "digest": digest,
                                                                       "reason": reason}))
    return out


def membership_event(tenant: str, username: str, role: str | None, previous: str | None) -> tuple[str, dict] | None:
    """(type, data) of a membership change; None when nothing changed."""
    if role == previous:
        return None
    if role is None:
        return cloudevents.MEMBER_REMOVED, {"tenant": tenant, "user": username, "previous_role": previous}
    return cloudevents.MEMBER_SET, {"tenant": tenant, "user": username, "role": role, "previous_role": previous}


def robot_event(event_type: str, tenant: str, name: str, robot: Any = None) -> dict:
    data = {"tenant": tenant, "robot": f"robot${tenant}+{name}"}
    if robot is not None:
        data |= {"repositories": list(robot.repositories), "actions": list(robot.actions),
                 "expires_at": None if robot.expires_at is None else cloudevents.rfc3339(robot.expires_at)}
    return data


async def quota_warning(tx: Any, tenant: str, used: int, adding: int, limit: int) -> None:
    """A quota.warning in the link's own transaction when `adding` bytes take the tenant's usage
    from below QUOTA_WARNING_FRACTION of `limit` to at or above it: once per upward crossing."""
    line = limit * cloudevents.QUOTA_WARNING_FRACTION
    if adding > 0 and used < line <= used + adding:
        await emit(tx, cloudevents.QUOTA_WARNING, repository=None, subject=tenant, tenant=tenant, data={
            "tenant": tenant, "used_bytes": used + adding, "limit_bytes": limit,
            "percent": round(100 * (used + adding) / limit, 1) if limit else 100.0})


async def emit_all(tx: Any, repository: str, events: list[tuple[str, str, dict]], actor: str | None = None) -> None:
    for event_type, subject, data in events:
        await emit(tx, event_type, repository=repository, subject=subject, data=data, actor=actor)


async def audit(tx: Any, actor: str, action: str, target: str, detail: dict | None, tenant: str | None) -> None:
    await tx.execute(_AUDIT, time.time(), actor, action, target,
                     None if detail is None else json.dumps(detail, sort_keys=True), tenant)


def _webhook_audit(record: WebhookRecord) -> dict:
    return {"name": record.name, "url": record.url, "event_types": list(record.event_types),
            "repositories": list(record.repositories), "enabled": record.enabled}


class EventStore(AuditExportStore):
    """Mixed into SqliteStore and PostgresStore (after GcStore, whose `_gc_tx` it uses); the audit
    export's cursors come with it (hub/db/audit_export_store.py)."""

    _gc_tx: Any

    # App store versions (here for their events: the SQL is the same for both stores) ---------------
    async def index_app_version(self, repository: str, tag: str, digest: str, entry: Any) -> bool:
        """MetadataStore.index_app_version, with an app.version.published event in the same
        transaction when the version is new or its tag now holds other content."""
        async def run(tx: Any) -> bool:
            before = await tx.fetchval(
                "SELECT a.digest FROM app_versions a JOIN repositories r ON r.id = a.repository_id "
                "WHERE r.name = $1 AND a.tag = $2", repository, tag)
            written = await tx.execute(
                "INSERT INTO app_versions (repository_id, tag, digest, app_key, title, summary, categories, "
                "version, document, icon_digest, icon_media_type, indexed_at) "
                "SELECT t.repository_id, t.name, t.digest, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM tags t "
                "JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.name = $2 AND t.digest = $3 "
                "ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest, "
                "app_key = excluded.app_key, title = excluded.title, summary = excluded.summary, "
                "categories = excluded.categories, version = excluded.version, document = excluded.document, "
                "icon_digest = excluded.icon_digest, icon_media_type = excluded.icon_media_type, "
                "indexed_at = excluded.indexed_at",
                repository, tag, digest, entry.app_key, entry.title, entry.summary,
                app_categories_text(entry.categories), entry.version, entry.document, entry.icon_digest,
                entry.icon_media_type, time.time())
            if written and before != digest:
                await emit(tx, cloudevents.APP_VERSION_PUBLISHED, repository=repository, subject=f"{repository}:{tag}",
                           data={"repository": repository, "tag": tag, "version": entry.version,
                                 "app": entry.app_key, "digest": digest})
            return written > 0

        return await self._gc_tx(run)

    async def set_app_version_deprecated(self, repository: str, tag: str, deprecated: bool) -> bool:
        """Mark a version (un)deprecated, with an app.version.deprecated event when that changes it."""
        async def run(tx: Any) -> bool:
            row = await tx.fetchrow(
                "SELECT a.repository_id, a.deprecated, a.version, a.app_key FROM app_versions a "
                "JOIN repositories r ON r.id = a.repository_id WHERE r.name = $1 AND a.tag = $2", repository, tag)
            if row is None:
                return False
            await tx.execute("UPDATE app_versions SET deprecated = $3 WHERE repository_id = $1 AND tag = $2",
                             row[0], tag, int(deprecated))
            if bool(row[1]) != deprecated:
                await emit(tx, cloudevents.APP_VERSION_DEPRECATED, repository=repository,
                           subject=f"{repository}:{tag}", data={"repository": repository, "tag": tag,
                                                                "version": row[2], "app": row[3],
                                                                "deprecated": deprecated})
            return True

        return await self._gc_tx(run)

    # Events -------------------------------------------------------------------------------------
    async def record_event(self, event_type: str, *, repository: str | None, subject: str | None, data: dict,
                           actor: str | None = None, tenant: str | None = None) -> str:
        """An event of its own transaction (for changes that have none in this store)."""
        return await self._gc_tx(lambda tx: emit(tx, event_type, repository=repository, subject=subject,
                                                 data=data, actor=actor, tenant=tenant))

    async def record_pull_events(self, pulls: Iterable[tuple[str, str, bool, int, float, float]]) -> int:
        """One aggregated `pull` event per (repository, reference, by_digest, count, first, last):
        hub/registry/pulls.py's flush batch. The number written."""
        rows = sorted(pulls)

        async def run(tx: Any) -> int:
            candidates = await subscriptions(tx, None)  # once for the batch
            for repository, reference, by_digest, count, first, last in rows:
                subject = f"{repository}@{reference}" if by_digest else f"{repository}:{reference}"
                data = {"repository": repository, "count": count, "first_at": cloudevents.rfc3339(first),
                        "last_at": cloudevents.rfc3339(last), **({"digest": reference} if by_digest
                                                                  else {"tag": reference})}
                await emit(tx, cloudevents.PULLED, repository=repository, subject=subject, data=data,
                           actor="daohub", candidates=candidates)
            return len(rows)

        return await self._gc_tx(run) if rows else 0

    async def events_after(self, seq: int = 0, limit: int = 1000) -> list[EventRecord]:
        """Events after `seq`, in sequence order (tests; on PostgreSQL a sequence number can commit
        after a higher one, so a reader that pages by `seq`, such as an audit export, must allow
        for late commits)."""
        rows = await self._gc_tx(lambda tx: tx.fetch(
            "SELECT seq, id, type, tenant, repository, actor, at, body FROM events WHERE seq > $1 "
            "ORDER BY seq LIMIT $2", seq, limit), rollback=True)
        return [EventRecord(*r) for r in rows]

    async def prune_events(self, before: float, limit: int = 10_000) -> int:
        """Delete up to `limit` events older than `before` that no delivery still waits on (their
        finished deliveries and attempt logs go with them); the number deleted."""
        async def run(tx: Any) -> int:
            return await tx.execute(
                "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e WHERE e.at < $1 AND NOT EXISTS ("
                "SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq AND d.state = 'pending') "
                "ORDER BY e.seq LIMIT $2)", before, limit)

        return await self._gc_tx(run)

    # Subscriptions ------------------------------------------------------------------------------
    async def create_webhook(self, *, tenant: str | None, name: str, url: str, event_types: list[str],
                             repositories: list[str], secret: str, actor: str, enabled: bool = True) -> WebhookRecord:
        now = time.time()

        async def run(tx: Any) -> WebhookRecord:
            sub_id = await tx.fetchval(
                "INSERT INTO webhook_subscriptions (tenant, name, url, event_types, repositories, enabled, secret, "
                "created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8) RETURNING id",
                tenant, name, url, json.dumps(event_types), json.dumps(repositories), int(enabled), secret, now, actor)
            record = _webhook(await tx.fetchrow(f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions "
                                                "WHERE id = $1", sub_id))
            await audit(tx, actor, "webhook.create", f"webhook:{sub_id}", _webhook_audit(record), tenant)
            return record

        return await self._gc_tx(run)

    async def webhook(self, webhook_id: int) -> WebhookRecord | None:
        row = await self._gc_tx(lambda tx: tx.fetchrow(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE id = $1", webhook_id), rollback=True)
        return None if row is None else _webhook(row)

    async def webhooks(self, tenant: str | None, *, limit: int = 100, after: int = 0) -> list[WebhookRecord]:
        """One tenant's subscriptions (tenant None: the platform-wide ones), by id after `after`."""
        async def run(tx: Any) -> list[Any]:
            if tenant is None:
                return await tx.fetch(f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE tenant IS NULL "
                                      "AND id > $1 ORDER BY id LIMIT $2", after, limit)
            return await tx.fetch(f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE tenant = $3 "
                                  "AND id > $1 ORDER BY id LIMIT $2", after, limit, tenant)

        return [_webhook(r) for r in await self._gc_tx(run, rollback=True)]

    async def update_webhook(self, webhook_id: int, changes: dict[str, Any], actor: str) -> WebhookRecord | None:
        """Set name, url, event_types, repositories or enabled, with an audit row."""
        columns = {"name": str, "url": str, "event_types": json.dumps, "repositories": json.dumps, "enabled": int}

        async def run(tx: Any) -> WebhookRecord | None:
            sets, args = ["updated_at = $2"], [webhook_id, time.time()]
            for key, value in changes.items():
                args.append(columns[key](value))
                sets.append(f"{key} = ${len(args)}")
            if not await tx.execute(f"UPDATE webhook_subscriptions SET {', '.join(sets)} WHERE id = $1", *args):
                return None
            record = _webhook(await tx.fetchrow(f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions "
                                                "WHERE id = $1", webhook_id))
            await audit(tx, actor, "webhook.update", f"webhook:{webhook_id}", _webhook_audit(record), record.tenant)
            return record

        return await self._gc_tx(run)

    async def delete_webhook(self, webhook_id: int, actor: str) -> bool:
        async def run(tx: Any) -> bool:
            tenant = await tx.fetchrow("SELECT tenant FROM webhook_subscriptions WHERE id = $1", webhook_id)
            if tenant is None:
                return False
            await tx.execute("DELETE FROM webhook_subscriptions WHERE id = $1", webhook_id)
            await audit(tx, actor, "webhook.delete", f"webhook:{webhook_id}", None, tenant[0])
            return True

        return await self._gc_tx(run)

    async def rotate_webhook_secret(self, webhook_id: int, secret: str, keep_previous_until: float,
                                    actor: str) -> WebhookRecord | None:
        """`secret` signs from now on; the current one signs as well until `keep_previous_until`."""
        async def run(tx: Any) -> WebhookRecord | None:
            if not await tx.execute(
                    "UPDATE webhook_subscriptions SET previous_secret = secret, previous_secret_until = $2, "
                    "secret = $3, updated_at = $4 WHERE id = $1", webhook_id, keep_previous_until, secret,
                    time.time()):
                return None
            record = _webhook(await tx.fetchrow(f"SELECT {_WEBHOOK_COLUMNS} FROM webhook_subscriptions "
                                                "WHERE id = $1", webhook_id))
            await audit(tx, actor, "webhook.rotate_secret", f"webhook:{webhook_id}",
                        {"previous_secret_until": keep_previous_until}, record.tenant)
            return record

        return await self._gc_tx(run)

    # Deliveries ---------------------------------------------------------------------------------
    async def webhook_claim(self, owner: str, *, lease_seconds: float, limit: int = 32) -> list[ClaimedDelivery]:
        """Up to `limit` due deliveries (pending, next attempt due, no live lease), each now this
        worker's for `lease_seconds`: one worker per delivery across replicas."""
        now = time.time()

        async def run(tx: Any) -> list[ClaimedDelivery]:
            skip = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
            claimed = await tx.fetch(
                "UPDATE webhook_deliveries SET lease_until = $2, lease_owner = $3, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 "
                f"AND lease_until <= $1 ORDER BY next_attempt_at, id LIMIT $4{skip}) "
                "RETURNING id, subscription_id, event_seq, attempts, attempts - budget_from",
                now, now + lease_seconds, owner, limit)
            out = []
            for delivery_id, sub_id, seq, attempt, tries in sorted(claimed, key=lambda r: r[0]):
                sub = await tx.fetchrow("SELECT url, secret, previous_secret, previous_secret_until "
                                        "FROM webhook_subscriptions WHERE id = $1", sub_id)
                event = await tx.fetchrow("SELECT id, type, body FROM events WHERE seq = $1", seq)
                secrets = (sub[1],) + ((sub[2],) if sub[2] and (sub[3] or 0) > now else ())
                out.append(ClaimedDelivery(delivery_id, sub_id, attempt, tries, sub[0], secrets, event[0], event[1],
                                           event[2].encode()))
            return out

        return await self._gc_tx(run)

    async def webhook_finish(self, claim: ClaimedDelivery, owner: str, *, outcome: str, status: int | None,
                             latency_ms: float | None, error: str | None, next_attempt_at: float = 0.0) -> bool:
        """Record one attempt in the log and what follows: 'delivered', 'retry' (at
        `next_attempt_at`) or 'dead'. False when this worker's lease was taken over meanwhile
        (the attempt is logged, the row left to its new holder)."""
        (kept,) = await self.webhook_finish_batch(owner, [(claim, AttemptResult(outcome, status, latency_ms, error,
                                                                                 next_attempt_at))])
        return kept

    async def webhook_finish_batch(self, owner: str, results: list[tuple[ClaimedDelivery, AttemptResult]]) -> list[bool]:
        """webhook_finish for a batch of attempts, in one transaction (one commit, not one each)."""
        now = time.time()

        async def run(tx: Any) -> list[bool]:
            kept = []
            for claim, r in results:
                state = {"delivered": "delivered", "retry": "pending", "dead": "dead"}[r.outcome]
                await tx.execute("INSERT INTO webhook_attempts (delivery_id, attempt, at, owner, status, latency_ms, "
                                 "error) VALUES ($1, $2, $3, $4, $5, $6, $7)", claim.id, claim.attempt, now, owner,
                                 r.status, r.latency_ms, r.error)
                kept.append(bool(await tx.execute(
                    "UPDATE webhook_deliveries SET state = $3, next_attempt_at = $4, lease_until = 0, "
                    "lease_owner = NULL, finished_at = $5, last_status = $6, last_error = $7, last_latency_ms = $8 "
                    "WHERE id = $1 AND lease_owner = $2 AND attempts = $9", claim.id, owner, state,
                    r.next_attempt_at if state == "pending" else now, None if state == "pending" else now, r.status,
                    r.error, r.latency_ms, claim.attempt)))
            return kept

        return await self._gc_tx(run) if results else []

    async def webhook_deliveries(self, webhook_id: int, *, limit: int = 50, before: int | None = None,
                                 state: str | None = None, with_log: bool = True) -> list[DeliveryRecord]:
        """A subscription's delivery log, newest first (ids below `before`), each with its attempts."""
        async def run(tx: Any) -> list[DeliveryRecord]:
            where, args = ["d.subscription_id = $1", "d.id < $2"], [webhook_id, before or 2 ** 62, limit]
            if state is not None:
                args.append(state)
                where.append(f"d.state = ${len(args)}")
            rows = await tx.fetch(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d "
                                  f"JOIN events e ON e.seq = d.event_seq WHERE {' AND '.join(where)} "
                                  "ORDER BY d.id DESC LIMIT $3", *args)
            out = []
            for row in rows:
                log: tuple[AttemptRecord, ...] = ()
                if with_log:
                    log = tuple(AttemptRecord(*a) for a in await tx.fetch(
                        "SELECT attempt, at, owner, status, latency_ms, error FROM webhook_attempts "
                        "WHERE delivery_id = $1 ORDER BY id", row[0]))
                out.append(DeliveryRecord(*row, log=log))
            return out

        return await self._gc_tx(run, rollback=True)

    async def webhook_redeliver(self, webhook_id: int, delivery_id: int, actor: str) -> str | None:
        """Queue a finished (delivered or dead) delivery again, with a new retry budget and an
        audit row. Its state before ('pending': left alone), or None if there is no such delivery."""
        async def run(tx: Any) -> str | None:
            row = await tx.fetchrow("SELECT d.state, s.tenant FROM webhook_deliveries d JOIN webhook_subscriptions s "
                                    "ON s.id = d.subscription_id WHERE d.id = $1 AND d.subscription_id = $2",
                                    delivery_id, webhook_id)
            if row is None or row[0] == "pending":
                return None if row is None else row[0]
            await tx.execute("UPDATE webhook_deliveries SET state = 'pending', budget_from = attempts, "
                             "next_attempt_at = $2, finished_at = NULL, lease_until = 0, lease_owner = NULL "
                             "WHERE id = $1", delivery_id, time.time())
            await audit(tx, actor, "webhook.redeliver", f"webhook:{webhook_id}", {"delivery": delivery_id,
                                                                                  "state": row[0]}, row[1])
            return row[0]

        return await self._gc_tx(run)

    async def webhook_backlog(self) -> dict[str, int]:
        """Deliveries by state (metrics and tests)."""
        rows = await self._gc_tx(lambda tx: tx.fetch(
            "SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state"), rollback=True)
        return {state: 0 for state in DELIVERY_STATES} | {r[0]: int(r[1]) for r in rows}
