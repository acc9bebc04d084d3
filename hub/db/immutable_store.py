"""ImmutableStore: immutable-tag rules, and their enforcement inside the transactions that move
or delete tags (issue 16), for both stores.

The rules are a tenant's JSON document (table immutable_tag_rules, changed with its audit row in
one transaction). What they mean is the domain's (hub/retention/immutable.py): the store is given
a `TagGuard`, `guard(document, repository, tag) -> refusal or None`, and calls it inside each
transaction that would move, re-point or delete a tag. That is what makes the rules hold against
every path at once (OCI pushes and deletes, retention, repository deletes from the admin API) and
against races: the check and the change are one transaction.

- A push that points an existing immutable tag at other content raises TagImmutableError; the
  same content again changes nothing and succeeds. What the tag points at may hold it too: a tag
  that is an app version's own tag in the app store's index (1.2.0 for version 1.2.0, not
  `latest`) does not move, unless appstore.immutable_versions is off.
- A push that creates an immutable tag inserts it with ON CONFLICT DO NOTHING and reads it back:
  of two first pushes racing with different content, the second finds the first's and is refused
  (a plain upsert would silently move it).
- A tag delete, a manifest delete (which would delete every tag on it) and a repository delete
  are refused while an immutable tag is among what they would delete.

Cost on the push path: one statement per tagged push (the tenant's document by primary key and the
pushed tags' rows by primary key, joined), in the transaction that is open anyway.

The SQL is written once over GcStore's transaction object (hub/db/gc_store.py), as
RetentionStore's is.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from ..events import cloudevents
from .event_store import REPOSITORY_COUNTS, audit, emit, emit_all, manifest_deleted_events

# (the tenant's rule document as stored or None, repository, tag, the app version the tag
# publishes now: it is that version's own tag in the app store's index, else None) -> the
# refusal, or None.
TagGuard = Callable[[str | None, str, str, str | None], "str | None"]


class TagImmutableError(Exception):
    """A change would move, re-point or delete an immutable tag. Nothing was written."""

    def __init__(self, repository: str, tag: str, message: str):
        super().__init__(message)
        self.repository, self.tag = repository, tag


@dataclasses.dataclass(frozen=True, slots=True)
class StoredImmutableRules:
    tenant: str
    document: dict
    updated_at: float
    updated_by: str


def tenant_of(repository: str) -> str:
    return repository.split("/", 1)[0]


async def put_tenant_document(tx: Any, table: str, tenant: str, text: str, now: float, actor: str) -> None:
    """Insert or replace a tenant's document row (immutable_tag_rules, retention_policies)."""
    await tx.execute(f"INSERT INTO {table} (tenant, document, updated_at, updated_by) VALUES ($1, $2, $3, $4) "
                     "ON CONFLICT (tenant) DO UPDATE SET document = excluded.document, "
                     "updated_at = excluded.updated_at, updated_by = excluded.updated_by", tenant, text, now, actor)


async def read_tenant_document(tx: Any, table: str, tenant: str) -> Any:
    """(tenant, document, updated_at, updated_by) of a tenant's document row, or None."""
    return await tx.fetchrow(f"SELECT tenant, document, updated_at, updated_by FROM {table} WHERE tenant = $1", tenant)


PLATFORM_DOCUMENT = "*"  # the key of a platform-wide document (no tenant is named so)


def _audited_as(tenant: str) -> tuple[str, str | None]:
    """(audit target, audit tenant) of a document's change: the tenant's, or the platform's."""
    return ("platform", None) if tenant == PLATFORM_DOCUMENT else (tenant, tenant)


async def replace_tenant_document(tx: Any, table: str, tenant: str, document: dict, actor: str, action: str,
                                  key: str) -> tuple[str, float]:
    """Store a tenant's (validated) document (or the platform's: PLATFORM_DOCUMENT) with its audit row
    (`key`: the document, and `before`); (the text stored, when)."""
    text, now = json.dumps(document, sort_keys=True), time.time()
    before = await tx.fetchval(f"SELECT document FROM {table} WHERE tenant = $1", tenant)
    await put_tenant_document(tx, table, tenant, text, now, actor)
    target, audit_tenant = _audited_as(tenant)
    await audit(tx, actor, action, target, {key: document, "before": None if before is None else json.loads(before)},
                audit_tenant)
    return text, now


async def drop_tenant_document(tx: Any, table: str, tenant: str, actor: str, action: str) -> bool:
    """Delete a tenant's (or the platform's) document with its audit row (`before`); False if it had none."""
    before = await tx.fetchval(f"SELECT document FROM {table} WHERE tenant = $1", tenant)
    if before is None:
        return False
    await tx.execute(f"DELETE FROM {table} WHERE tenant = $1", tenant)
    target, audit_tenant = _audited_as(tenant)
    await audit(tx, actor, action, target, {"before": json.loads(before)}, audit_tenant)
    return True


async def rules_document(tx: Any, tenant: str) -> str | None:
    return await tx.fetchval("SELECT document FROM immutable_tag_rules WHERE tenant = $1", tenant)


async def refuse_frozen(tx: Any, guard: TagGuard | None, repository: str, tags: list[str]) -> None:
    """Raise TagImmutableError for the first of `tags` (about to be deleted) that a rule of the
    tenant makes immutable (a tenant without rules: none is)."""
    if guard is None or not tags:
        return
    document = await rules_document(tx, tenant_of(repository))
    if document is None:
        return
    for tag in tags:
        refusal = guard(document, repository, tag, None)
        if refusal is not None:
            raise TagImmutableError(repository, tag, refusal)


async def guard_tag_writes(tx: Any, guard: TagGuard | None, repo_id: int, repository: str, digest: str,
                           tags: list[str], current: dict[str, str]) -> dict[str, str]:
    """Before `tags` are pointed at `digest`: raise if one of them points at other content and may
    not move (a tenant rule, or it publishes an app version). `current` is what the tags point at
    now (tag -> digest), as the caller read them for its events' `previous`: the push reads the
    tags' rows once. Returns the tags a rule makes immutable that do not exist yet (tag ->
    refusal): the caller creates them with `create_frozen_tags`, not with its upsert. One
    statement reads the rules and the app versions the tags publish."""
    if guard is None or not tags:
        return {}
    unique = sorted(set(tags))
    rows = await tx.fetch(
        "SELECT d.document, av.tag, av.version FROM (SELECT 1 AS one) o "
        "LEFT JOIN immutable_tag_rules d ON d.tenant = $3 "
        # One tag (nearly every push): an equality, cheaper than unpacking a JSON list.
        f"LEFT JOIN app_versions av ON av.repository_id = $1 AND av.tag {'= $2' if len(unique) == 1 else 'IN {json:2}'} "
        "AND replace(av.version, '+', '_') = av.tag",  # appstore.catalog.version_tag
        repo_id, unique[0] if len(unique) == 1 else json.dumps(unique), tenant_of(repository))
    document = rows[0][0] if rows else None
    versions = {r[1]: r[2] for r in rows if r[1] is not None}
    frozen = {}
    for tag in tags:
        now = current.get(tag)
        if now == digest:
            continue  # the same content again: nothing moves
        refusal = guard(document, repository, tag, None if now is None else versions.get(tag))
        if refusal is None:
            continue
        if now is not None:
            raise TagImmutableError(repository, tag, refusal)
        frozen[tag] = refusal
    return frozen


async def create_frozen_tags(tx: Any, repo_id: int, repository: str, digest: str, frozen: dict[str, str],
                             now: float) -> None:
    """Create immutable tags that did not exist; one created meanwhile by a concurrent push of other
    content refuses this push (PostgreSQL's insert waits for that push's commit, then does nothing)."""
    for tag in sorted(frozen):
        await tx.execute("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) "
                         "ON CONFLICT (repository_id, name) DO NOTHING", repo_id, tag, digest, now)
        if await tx.fetchval("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2",
                             repo_id, tag) != digest:
            raise TagImmutableError(repository, tag, frozen[tag])


class ImmutableStore:
    """Mixed into SqliteStore and PostgresStore, beside GcStore (whose `_gc_tx` runs these).

    `tag_guard` is set by the Registry built over the store (hub/registry/service.py): every
    process that changes tags builds one. Without it (a store used on its own) nothing is refused.
    """

    _gc_tx: Any  # GcStore's
    tag_guard: TagGuard | None = None

    async def immutable_rules(self, tenant: str) -> StoredImmutableRules | None:
        row = await self._gc_tx(lambda tx: read_tenant_document(tx, "immutable_tag_rules", tenant), rollback=True)
        return None if row is None else StoredImmutableRules(row[0], json.loads(row[1]), row[2], row[3])

    async def set_immutable_rules(self, tenant: str, document: dict, actor: str) -> StoredImmutableRules:
        """Store the tenant's (validated) rules and their audit row in one transaction."""
        text, now = await self._gc_tx(lambda tx: replace_tenant_document(
            tx, "immutable_tag_rules", tenant, document, actor, "immutable_tags.set", "rules"))
        return StoredImmutableRules(tenant, json.loads(text), now, actor)

    async def delete_immutable_rules(self, tenant: str, actor: str) -> bool:
        return await self._gc_tx(lambda tx: drop_tenant_document(tx, "immutable_tag_rules", tenant, actor,
                                                                 "immutable_tags.delete"))

    async def delete_manifest_at(self, repository: str, digest: str, *, actor: str | None = None,
                                 detail: dict | None = None) -> bool:
        """Delete a manifest and every tag on it (with its audit row when `actor` is given) in one
        transaction; refused (TagImmutableError) while one of those tags is immutable. The manifest
        row is locked first, so a tag pushed onto it meanwhile is among those checked. False if
        there is no such manifest."""
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo is None or await tx.fetchval(
                    "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2{for_update}",
                    repo, digest) is None:
                return False
            tags = [r[0] for r in await tx.fetch(
                "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name", repo, digest)]
            await refuse_frozen(tx, self.tag_guard, repository, tags)
            await tx.execute("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2", repo, digest)
            await emit_all(tx, repository, manifest_deleted_events(repository, digest, tags, "deleted"), actor)
            if actor is not None:
                await audit(tx, actor, "manifest.delete", f"{repository}@{digest}",
                            {**(detail or {}), **({"tags": tags} if tags else {})} or None, tenant_of(repository))
            return True

        return await self._gc_tx(run)

    # The store's own deletes, guarded (these override the dialects' unguarded ones) -------------
    async def delete_manifest(self, repository: str, digest: str) -> bool:
        return await self.delete_manifest_at(repository, digest)

    async def delete_tag(self, repository: str, tag: str) -> bool:
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo is None or await tx.fetchval("SELECT 1 FROM tags WHERE repository_id = $1 AND name = $2",
                                                 repo, tag) is None:
                return False
            await refuse_frozen(tx, self.tag_guard, repository, [tag])
            digest = await tx.fetchval("DELETE FROM tags WHERE repository_id = $1 AND name = $2 RETURNING digest",
                                       repo, tag)
            if digest is None:
                return False
            await emit(tx, cloudevents.TAG_DELETED, repository=repository, subject=f"{repository}:{tag}",
                       data={"repository": repository, "tag": tag, "digest": digest, "reason": "deleted"})
            return True

        return await self._gc_tx(run)

    async def delete_repository(self, name: str) -> bool:
        """Delete the repository with its manifests, tags, blob links and uploads (ON DELETE
        CASCADE; blobs stay for GC), refused while it holds an immutable tag. The repository row
        is locked first: a push holds a share lock on it until it commits, so its tags are seen."""
        async def run(tx: Any) -> bool:
            repo = await tx.fetchval("SELECT id FROM repositories WHERE name = $1{for_update}", name)
            if repo is None:
                return False
            if self.tag_guard is not None and await rules_document(tx, tenant_of(name)) is not None:
                tags = [r[0] for r in await tx.fetch(
                    "SELECT name FROM tags WHERE repository_id = $1 ORDER BY name", repo)]
                await refuse_frozen(tx, self.tag_guard, name, tags)  # reads the document again: rare
            counts = await tx.fetchrow(REPOSITORY_COUNTS, name)
            if not await tx.execute("DELETE FROM repositories WHERE id = $1", repo):
                return False
            await emit(tx, cloudevents.REPOSITORY_DELETED, repository=name, subject=name,
                       data={"repository": name, "manifest_count": counts[0], "tag_count": counts[1]})
            return True

        return await self._gc_tx(run)
