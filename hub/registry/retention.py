"""Retention runs: each tenant's policy applied to its tags, through the normal delete path.

A run reads each tenant's tags (repository, tag, digest, pushed time = when the tag was last set,
last pull time, artifact type, subject) and untagged manifests in one transaction
(RetentionStore.retention_inventory), evaluates the tenant's policy (hub/retention/engine.py, a
pure function), and then carries out the plan's deletes one at a time through the Registry
facade (Registry.delete_tag, delete_untagged_manifest): each delete and its audit row are one
transaction, in which GC's triggers queue the manifest's review, so GC frees the blobs and the
tenant's usage drops once GC runs. A delete names the digest the plan saw: a tag pushed again
(moved to another digest) after the run read it is left alone and recorded as "moved", and a
manifest tagged meanwhile is not deleted either. A tag deleted by someone else meanwhile is
"gone". Nothing here holds a lock a push waits for: pushes go on during a run.

Every verdict (what the plan said, which rules kept it, why, the tag's push and pull times, and
what the run did) is recorded with the run (retention_runs, retention_verdicts). A dry run reads
and evaluates the same way and changes nothing; it is returned, not recorded.

Scheduled runs (serve, retention.interval_seconds) happen exactly once per interval across
replicas: the interval's number is a slot that the store gives to one claimer
(RetentionStore.retention_claim_run), with a lease the run renews as it goes. A replica killed
mid-run leaves its slot unfinished; once the lease runs out another replica's tick takes the slot
over and runs again from the start (a run is idempotent: what was deleted is gone and is not in
the new inventory). A replica that lost its lease stops at its next renewal.

Immutable tags: a run reads each tenant's immutable-tag rules (ImmutableStore) and passes them to
the engine, which reports their tags as protected, naming the rule; the delete path's own refusal
inside its transaction (hub/db/immutable_store.py) is the backstop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ..background import every
from ..db.retention_store import StoredVerdict
from ..retention import DELETE, PROTECT, RetentionError, TagRecord, UntaggedManifest, evaluate, parse_policy
from ..retention.immutable import ImmutableRule, parse_immutable_rules
from ..retention.kinds import artifact_kind

log = logging.getLogger("daohub.retention")

RENEW_EVERY = 200  # deletes between lease renewals
# Tests only: seconds a run that deletes sleeps after its read, before its first delete (kill -9 there).
PAUSE_ENV = "DAOHUB_TEST_RETENTION_PAUSE"  # not a config key: reserved in hub.config
_LISTED = 100_000  # verdicts a report holds




@dataclasses.dataclass
class RetentionVerdict:
    repository: str
    tag: str | None  # None: an untagged manifest
    digest: str
    artifact_type: str
    action: str  # keep, protect or delete: the plan's
    outcome: str  # kept, deleted, moved, gone, failed (a dry run: kept or "would delete")
    rules: tuple[str, ...]
    reason: str
    pushed_at: float
    pulled_at: float | None
    age_seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


COUNTS = ("tags", "kept", "protected", "deleted", "moved", "gone", "failed", "untagged", "untagged_deleted")


@dataclasses.dataclass
class RetentionReport:
    dry_run: bool
    tenant: str | None
    trigger: str
    run_id: int | None = None
    ran: bool = True  # False: another replica has this slot
    started_at: float = 0.0
    duration_seconds: float = 0.0
    tenants: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    verdicts: list[RetentionVerdict] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    # Who watches the run (grow(n), advance(n)); not a field, so never in as_dict().
    progress = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def deleted(self) -> list[RetentionVerdict]:
        """What went (in a dry run: what would go)."""
        done = "would delete" if self.dry_run else "deleted"
        return [v for v in self.verdicts if v.outcome == done]


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Retention:
    """Runs retention over a Registry's store (through its facade for every delete)."""

    def __init__(self, registry, *, lease_seconds: float = 300.0,
                 immutable_rules: Callable[[str], Awaitable[tuple[ImmutableRule, ...]]] | None = None):
        self.registry = registry
        self.store = registry.store
        self.lease_seconds = lease_seconds
        self.immutable_rules = immutable_rules or self._stored_immutable_rules
        self.owner = uuid.uuid4().hex  # this process, as a run's lease holder

    async def run(self, *, dry_run: bool = False, tenant: str | None = None, trigger: str = "cli",
                  actor: str = "cli", slot: int | None = None, progress=None) -> RetentionReport:
        """One run over every tenant with a policy (or only `tenant`). `slot`: a scheduled run's
        interval; another replica may have it (then `ran` is False). `progress` (grow/advance, as
        hub/cli/progress.Meter) counts the verdicts carried out, tenant by tenant."""
        report = RetentionReport(dry_run, tenant, trigger, started_at=time.time())
        report.progress = progress
        if not dry_run:
            report.run_id = await self.store.retention_claim_run(
                owner=self.owner, lease_seconds=self.lease_seconds, tenant=tenant, trigger=trigger, actor=actor,
                slot=slot)
            if report.run_id is None:
                report.ran = False
                return report
        seq = 0
        try:
            for stored in await self.store.retention_policies(tenant):
                report.tenants.append(stored.tenant)
                if not dry_run and not await self.store.retention_renew(report.run_id, self.owner,
                                                                        self.lease_seconds):
                    raise RuntimeError("another replica took this run over (its lease ran out)")
                verdicts = await self._tenant(report, stored, time.time())
                if not dry_run:
                    await self.store.retention_add_verdicts(report.run_id, seq, [_stored(v) for v in verdicts])
                    seq += len(verdicts)
                room = _LISTED - len(report.verdicts)
                report.verdicts.extend(verdicts[:max(room, 0)])
        except Exception as exc:
            log.exception("retention run failed")
            report.errors.append(f"{type(exc).__name__}: {exc}")
        report.duration_seconds = time.time() - report.started_at
        if report.run_id is not None:
            await self.store.retention_finish_run(report.run_id, self.owner, report.counts, report.errors)
        self._log(report)
        return report

    async def _stored_immutable_rules(self, tenant: str) -> tuple[ImmutableRule, ...]:
        stored = await self.store.immutable_rules(tenant)
        # A stored document that no longer validates raises: the run reports it for the tenant and
        # deletes nothing of it (the store refuses its tags' deletes meanwhile).
        return () if stored is None else parse_immutable_rules(stored.document)

    async def _tenant(self, report: RetentionReport, stored, now: float) -> list[RetentionVerdict]:
        try:
            policy = parse_policy(stored.document)
        except RetentionError as exc:  # stored by an older version with other rules: skip, say why
            report.errors.append(f"tenant {stored.tenant}: the stored policy does not validate: {exc}")
            return []
        try:
            immutable = tuple(await self.immutable_rules(stored.tenant))
        except RetentionError as exc:
            report.errors.append(f"tenant {stored.tenant}: the stored immutable-tag rules do not validate: {exc}")
            return []
        tags, untagged = await self.store.retention_inventory(stored.tenant)
        kinds: dict[tuple[str, str | None, bool], str] = {}

        def kind(media_type: str, artifact_type: str | None, subject: str | None) -> str:
            key = (media_type, artifact_type, subject is not None)
            found = kinds.get(key)
            if found is None:
                found = kinds[key] = artifact_kind(media_type, artifact_type, subject)
            return found

        records = [TagRecord(t.repository, t.tag, t.digest, _time(t.pushed_at),
                             kind(t.media_type, t.artifact_type, t.subject),
                             None if t.pulled_at is None else _time(t.pulled_at), t.subject) for t in tags]
        manifests = [UntaggedManifest(m.repository, m.digest, _time(m.pushed_at), m.referenced, m.subject)
                     for m in untagged]
        untagged_kinds = {(m.repository, m.digest): kind(m.media_type, m.artifact_type, m.subject) for m in untagged}
        plan = evaluate(policy, records, _time(now), untagged=manifests,
                        immutable=immutable)
        c = report.counts
        out: list[RetentionVerdict] = []
        for v in plan.tags:
            r = v.record
            c["tags"] += 1
            out.append(RetentionVerdict(r.repository, r.tag, r.digest, r.artifact_type, v.action,
                                        "kept", v.rules, v.reason, r.pushed_at.timestamp(),
                                        None if r.last_pulled_at is None else r.last_pulled_at.timestamp(),
                                        v.age.total_seconds()))
        for v in plan.untagged:
            r = v.record
            c["untagged"] += 1
            out.append(RetentionVerdict(r.repository, None, r.digest, untagged_kinds[(r.repository, r.digest)],
                                        v.action, "kept", (), v.reason, r.pushed_at.timestamp(), None,
                                        v.age.total_seconds()))
        await self._carry_out(report, out)
        return out

    async def _carry_out(self, report: RetentionReport, verdicts: list[RetentionVerdict]) -> None:
        c, deletes = report.counts, 0
        pause = os.environ.get(PAUSE_ENV)
        if pause and not report.dry_run:
            await asyncio.sleep(float(pause))
        if report.progress is not None:
            report.progress.grow(len(verdicts))
        for v in verdicts:
            try:
                if v.action != DELETE:
                    if v.tag is not None:
                        c["protected" if v.action == PROTECT else "kept"] += 1
                    continue
                if report.dry_run:
                    v.outcome = "would delete"
                    c["deleted" if v.tag is not None else "untagged_deleted"] += 1
                    continue
                deletes += 1
                if deletes % RENEW_EVERY == 0 and not await self.store.retention_renew(
                        report.run_id, self.owner, self.lease_seconds):
                    raise RuntimeError("another replica took this run over (its lease ran out)")
                detail = {"by": "retention", "run": report.run_id, "rules": list(v.rules), "reason": v.reason,
                          "digest": v.digest}
                try:
                    if v.tag is not None:
                        done = await self.registry.delete_tag(v.repository, v.tag, digest=v.digest,
                                                              actor="retention", detail=detail)
                        if done:
                            v.outcome = "deleted"
                        else:
                            v.outcome = await self._why_not(v)
                    else:
                        done = await self.registry.delete_untagged_manifest(v.repository, v.digest, actor="retention",
                                                                             detail=detail)
                        v.outcome = "deleted" if done else "moved"
                except Exception as exc:  # one refusal (an immutable tag, say) must not stop the run
                    v.outcome = "failed"
                    report.errors.append(f"{v.repository}:{v.tag or v.digest}: {type(exc).__name__}: {exc}")
                if v.outcome == "deleted":
                    c["deleted" if v.tag is not None else "untagged_deleted"] += 1
                elif v.outcome in ("moved", "gone", "failed"):
                    c[v.outcome] += 1
            finally:  # a verdict is done once carried out (or refused, or failed)
                if report.progress is not None:
                    report.progress.advance(1)

    async def _why_not(self, v: RetentionVerdict) -> str:
        """A conditional tag delete found nothing: pushed again elsewhere ("moved") or deleted ("gone")."""
        found = await self.store.get_manifest(v.repository, v.tag, by_digest=False, with_content=False)
        return "gone" if found is None else "moved"

    async def runs(self, limit: int, tenant: str | None, *, before: int | None = None):
        return await self.store.retention_runs(limit, tenant, before=before)

    async def run_record(self, run_id: int):
        return await self.store.retention_run(run_id)

    def _log(self, report: RetentionReport) -> None:
        c = report.counts
        log.info("retention %s%s: %d tags in %d tenants, %d kept, %d protected, %s %d, %d moved since read, "
                 "%d untagged manifests %s in %.2fs%s", "dry run" if report.dry_run else f"run {report.run_id}",
                 f" of tenant {report.tenant}" if report.tenant else "", c["tags"], len(report.tenants), c["kept"],
                 c["protected"], "would delete" if report.dry_run else "deleted", c["deleted"], c["moved"],
                 c["untagged_deleted"], "would go" if report.dry_run else "deleted", report.duration_seconds,
                 f", {len(report.errors)} errors" if report.errors else "")


def _stored(v: RetentionVerdict) -> StoredVerdict:
    return StoredVerdict(v.repository, v.tag, v.digest, v.artifact_type, v.action, v.outcome, v.rules, v.reason,
                         v.pushed_at, v.pulled_at)


async def run_on_schedule(retention: Retention, interval: float, *, tick: float | None = None) -> None:
    """serve's loop: claim the current interval's slot every `tick` seconds (the first replica
    to ask runs it; a slot whose runner died is taken over once its lease runs out, so the tick
    is at most the lease)."""
    tick = min(interval, retention.lease_seconds, 60.0) if tick is None else tick

    async def claim() -> None:
        await retention.run(trigger="schedule", actor="schedule", slot=int(time.time() // interval))

    await every(tick, claim, log, "scheduled retention run", first=True)
