"""The retention engine: a policy and a tenant's tag records in, a plan of what to keep and delete out.

`evaluate(policy, tags, now, untagged=..., immutable=...)` is a pure function: no database, no
HTTP, no storage, no clock (`now` is an argument), and the plan is sorted (by repository, then
tag or digest), so the same inputs in any order give an equal plan. Later steps feed it the
store's records and carry out its verdicts through the normal delete path; a dry run prints it.

Semantics:

- **Which rules.** Each repository gets one rule set: the most specific override whose glob
  matches it, else the tenant's own (policy.py says why it replaces instead of merging).
- **Kept or deleted.** A tag is kept when at least one rule whose selectors (repository glob, tag
  selector, artifact types) match it keeps it; a tag that no matching rule keeps is deleted.
  Rules only ever keep: their order matters for nothing but the order of the rule ids reported.
- **No rules, no deletion.** A rule set with no rules keeps every tag ("no policy" and "empty
  policy" are the same: EMPTY_POLICY). Untagged manifests go only when untagged_days is set.
- **latest_pushed N / latest_pulled N** count per repository, among the tags that rule's
  selectors match, newest first by pushed_at (last_pulled_at), ties broken by tag name (``a``
  before ``b``). They count tags, not digests: two tags of one digest are two of the N, because
  what retention deletes is tags (a digest goes when GC finds it untagged). A tag never pulled is
  never among the latest pulled.
- **pushed_within D / pulled_within D** keep a tag pushed (pulled) at or after now - D days.
- **semver_line per major|minor, count N** keeps, among the matching tags that name a version
  (selectors.parse_tag_version: ``v1.2.3`` is 1.2.3), the N highest versions of each major
  (``1``) or minor (``1.2``) line, by semver precedence, ties by tag name. Pre-releases take no
  place in a line unless the rule's tag selector is a semver range with ``"prereleases": true``:
  "the newest 2 patches" means releases. A tag that names no version is never kept by it.
- **Referrers follow their subject.** A record with a subject digest (a signature, SBOM or
  attestation, tagged or untagged) is selected only by rules whose artifact types name its kind
  (policy.py). When no such rule keeps it, it follows its subject: kept while a tag of the subject
  digest in its repository is kept or protected (or the subject is an untagged manifest that is
  kept), deleted with the reason "subject deleted" when every tag of the subject goes (or the
  untagged subject goes). A referrer of a referrer follows the chain. A subject the input does
  not hold at all keeps its referrers ("subject unknown"): deleting needs a reason the plan can
  show, and a partial input must never delete more than a full one.
- **Immutable tags** (immutable.py) are never deleted: they are reported as "protected" with the
  rule that protects them, and count as kept for their referrers.
- **Untagged manifests** are deleted when pushed more than untagged_days days before now, unless
  another manifest references them (an index's children: the caller sets `referenced`) or they
  have a subject (then they follow it, as above).

Each verdict carries the tag's age (now - pushed_at) and time since its last pull, for the
run's record of what it deleted and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from appstore.model import SemVer

from .immutable import ImmutableRule, protects
from .policy import EMPTY_POLICY, Policy, Rule, RuleSet
from .selectors import parse_tag_version

KEEP, DELETE, PROTECT = "keep", "delete", "protect"
NO_RULES = "the policy has no rules"
NO_RULE_KEEPS = "no rule keeps it"
SUBJECT_KEPT = "subject kept"
SUBJECT_DELETED = "subject deleted"
SUBJECT_UNKNOWN = "subject unknown"
REFERENCED = "referenced by another manifest"


@dataclass(frozen=True, slots=True)
class TagRecord:
    repository: str
    tag: str
    digest: str
    pushed_at: datetime
    artifact_type: str = "image"  # policy.ARTIFACT_TYPES
    last_pulled_at: datetime | None = None
    subject: str | None = None  # the subject's digest, for a referrer


@dataclass(frozen=True, slots=True)
class UntaggedManifest:
    repository: str
    digest: str
    pushed_at: datetime
    referenced: bool = False  # a child of an index (or otherwise referenced by another manifest)
    subject: str | None = None


class TagVerdict(NamedTuple):  # a tuple: a plan of 100,000 verdicts is built in a few ms
    record: TagRecord
    action: str  # KEEP, DELETE or PROTECT
    reason: str  # "kept by rules[0], rules[2]", NO_RULE_KEEPS, SUBJECT_DELETED, "immutable (rule 1: ...)"...
    rules: tuple[str, ...]  # ids of the rules that keep it, in policy order
    age: timedelta
    since_pull: timedelta | None


class UntaggedVerdict(NamedTuple):
    record: UntaggedManifest
    action: str  # KEEP or DELETE
    reason: str
    age: timedelta


@dataclass(frozen=True)
class Plan:
    now: datetime
    tags: tuple[TagVerdict, ...]  # sorted by (repository, tag)
    untagged: tuple[UntaggedVerdict, ...]  # sorted by (repository, digest)

    @property
    def deleted(self) -> tuple[TagVerdict, ...]:
        return tuple(v for v in self.tags if v.action == DELETE)

    @property
    def kept(self) -> tuple[TagVerdict, ...]:
        return tuple(v for v in self.tags if v.action == KEEP)

    @property
    def protected(self) -> tuple[TagVerdict, ...]:
        return tuple(v for v in self.tags if v.action == PROTECT)

    @property
    def untagged_deleted(self) -> tuple[UntaggedVerdict, ...]:
        return tuple(v for v in self.untagged if v.action == DELETE)


def evaluate(policy: Policy | None, tags: Iterable[TagRecord], now: datetime, *,
             untagged: Iterable[UntaggedManifest] = (),
             immutable: tuple[ImmutableRule, ...] = ()) -> Plan:
    """The plan of `policy` over `tags` and `untagged` at `now` (semantics in the module docstring).

    Raises ValueError when two records name the same tag (or the same untagged manifest).
    """
    policy = policy or EMPTY_POLICY
    by_repo: dict[str, dict[str, TagRecord]] = defaultdict(dict)
    for record in tags:
        same_repo = by_repo[record.repository]
        if record.tag in same_repo:
            raise ValueError(f"tag {record.tag} of {record.repository} is listed twice")
        same_repo[record.tag] = record
    untagged_by_repo: dict[str, dict[str, UntaggedManifest]] = defaultdict(dict)
    for manifest in untagged:
        same_repo = untagged_by_repo[manifest.repository]
        if manifest.digest in same_repo:
            raise ValueError(f"untagged manifest {manifest.digest} of {manifest.repository} is listed twice")
        same_repo[manifest.digest] = manifest
    versions: dict[str, SemVer | None] = {}  # tag -> version, shared by repositories
    verdicts: list[TagVerdict] = []
    untagged_verdicts: list[UntaggedVerdict] = []
    for repository in sorted(by_repo.keys() | untagged_by_repo.keys()):
        records = by_repo.get(repository, {})
        repo = _Repository(repository, [records[t] for t in sorted(records)],
                           untagged_by_repo.get(repository, {}), policy.for_repository(repository), now)
        repo.decide(versions, [r for r in immutable if r.repositories.matches(repository)])
        verdicts.extend(repo.tag_verdicts())
        untagged_verdicts.extend(repo.untagged_verdicts())
    return Plan(now, tuple(verdicts), tuple(untagged_verdicts))


class _Repository:
    """One repository's evaluation: everything retention decides stays inside a repository."""

    def __init__(self, name: str, records: list[TagRecord], untagged: dict[str, UntaggedManifest],
                 rule_set: RuleSet, now: datetime):
        self.name, self.records, self.untagged, self.rule_set, self.now = name, records, untagged, rule_set, now
        # index -> (action, reason, rules); a referrer stays undecided until its subject is
        self.decided: list[tuple[str, str, tuple[str, ...]] | None] = [None] * len(records)
        self.untagged_decided: dict[str, tuple[str, str]] = {}
        self.by_digest: dict[str, list[int]] | None = None
        self.visiting: set[tuple[str, object]] = set()

    def decide(self, versions: dict[str, SemVer | None], immutable: list[ImmutableRule]) -> None:
        records, decided = self.records, self.decided
        kept_by: dict[int, list[str]] = defaultdict(list)
        for rule in self.rule_set.rules:
            if rule.repositories.matches(self.name):
                for i in _kept(rule, records, self.now, versions):
                    kept_by[i].append(rule.id)
        no_rules = not self.rule_set.rules
        referrers = []
        for i, record in enumerate(records):
            rule = protects(immutable, self.name, record.tag) if immutable else None
            rules = tuple(kept_by.get(i, ()))
            if rule is not None:
                decided[i] = (PROTECT, f"immutable ({rule.describe()})", rules)
            elif rules:
                decided[i] = (KEEP, "kept by " + ", ".join(rules), rules)
            elif no_rules:
                decided[i] = (KEEP, NO_RULES, ())
            elif record.subject is None:
                decided[i] = (DELETE, NO_RULE_KEEPS, ())
            else:
                referrers.append(i)
        days = self.rule_set.untagged_days
        cutoff = None if days is None else self.now - timedelta(days=days)
        for digest, manifest in self.untagged.items():
            if manifest.subject is not None:
                referrers.append(digest)
            elif manifest.referenced:
                self.untagged_decided[digest] = (KEEP, REFERENCED)
            elif cutoff is not None and manifest.pushed_at < cutoff:
                self.untagged_decided[digest] = (DELETE, f"untagged for more than {days} days")
            else:
                self.untagged_decided[digest] = (
                    KEEP, f"untagged for at most {days} days" if days else "the policy keeps untagged manifests")
        for item in referrers:
            if isinstance(item, int):
                self._tag(item)
            else:
                self._untagged(item)

    def tag_verdicts(self) -> Iterator[TagVerdict]:
        now = self.now
        for record, (action, reason, rules) in zip(self.records, self.decided, strict=True):
            pulled = record.last_pulled_at
            yield TagVerdict(record, action, reason, rules, now - record.pushed_at,
                             None if pulled is None else now - pulled)

    def untagged_verdicts(self) -> Iterator[UntaggedVerdict]:
        for digest in sorted(self.untagged):
            manifest = self.untagged[digest]
            yield UntaggedVerdict(manifest, *self.untagged_decided[digest], self.now - manifest.pushed_at)

    # Referrers: decided by their subject's fate, following chains (memoised, cycle-safe).

    def _tag(self, i: int) -> str:
        if self.decided[i] is None:
            action, reason = self._follow(self.records[i].subject, ("tag", i))
            self.decided[i] = (action, reason, ())
        return self.decided[i][0]

    def _untagged(self, digest: str) -> str:
        if digest not in self.untagged_decided:
            self.untagged_decided[digest] = self._follow(self.untagged[digest].subject, ("untagged", digest))
        return self.untagged_decided[digest][0]

    def _follow(self, subject: str, marker: tuple[str, object]) -> tuple[str, str]:
        if marker in self.visiting:  # a cycle cannot come from content-addressed manifests: keep
            return KEEP, SUBJECT_UNKNOWN
        self.visiting.add(marker)
        try:
            alive = self._alive(subject)
        finally:
            self.visiting.discard(marker)
        if alive is None:
            return KEEP, SUBJECT_UNKNOWN
        return (KEEP, SUBJECT_KEPT) if alive else (DELETE, SUBJECT_DELETED)

    def _alive(self, digest: str) -> bool | None:
        """Is the manifest `digest` kept? None when the input does not hold it."""
        if self.by_digest is None:
            self.by_digest = defaultdict(list)
            for i, record in enumerate(self.records):
                self.by_digest[record.digest].append(i)
        tagged = self.by_digest.get(digest)
        if tagged:
            return any(self._tag(i) != DELETE for i in tagged)
        if digest in self.untagged:
            return self._untagged(digest) != DELETE
        return None


def _kept(rule: Rule, records: list[TagRecord], now: datetime, versions: dict[str, SemVer | None]) -> list[int]:
    """The indexes of the records of one repository (sorted by tag) that `rule` selects and keeps."""
    selector, artifacts, keep = rule.tags, rule.artifacts, rule.keep
    semver = selector.kind == "semver" or keep.kind == "semver_line"
    matching: list[int] = []
    if semver:
        found: list[SemVer | None] = []
        for i, record in enumerate(records):
            if record.artifact_type in artifacts:
                version = versions.get(record.tag, False)
                if version is False:
                    version = versions[record.tag] = parse_tag_version(record.tag)
                if selector.matches(record.tag, version):
                    matching.append(i)
                    found.append(version)
    else:
        match = selector.matcher.matches
        matching = [i for i, r in enumerate(records) if r.artifact_type in artifacts and match(r.tag)]
    kind, n = keep.kind, keep.number
    if kind == "always":
        return matching
    if kind == "pushed_within_days":
        cutoff = now - timedelta(days=n)
        return [i for i in matching if records[i].pushed_at >= cutoff]
    if kind == "pulled_within_days":
        cutoff = now - timedelta(days=n)
        return [i for i in matching if (p := records[i].last_pulled_at) is not None and p >= cutoff]
    if kind == "latest_pushed":
        return _newest(matching, lambda i: records[i].pushed_at, n)
    if kind == "latest_pulled":
        return _newest([i for i in matching if records[i].last_pulled_at is not None],
                       lambda i: records[i].last_pulled_at, n)
    # semver_line
    prereleases = selector.includes_prereleases
    lines: dict[tuple[int, ...], list[int]] = defaultdict(list)
    version_of = dict(zip(matching, found, strict=True))
    for i, version in version_of.items():
        if version is not None and (prereleases or not version.prerelease):
            lines[(version.major,) if keep.per == "major" else (version.major, version.minor)].append(i)
    out: list[int] = []
    for members in lines.values():
        out.extend(_newest(members, version_of.__getitem__, n))
    return out


def _newest(indexes: list[int], key, n: int) -> list[int]:
    """The `n` greatest by `key`, ties by tag name: `indexes` are in tag order and the sort is stable."""
    if len(indexes) <= n:
        return indexes
    return sorted(indexes, key=key, reverse=True)[:n]
