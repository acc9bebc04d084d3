"""Promotion of an image from one repository to another, with gates (issue 17; docs/promotion.md).

A promotion copies a manifest by digest, with its child manifests and referrers, into a target
repository and points a tag there at it: blob links and manifest rows, no bytes (Registry.copy_plan,
Registry.promote). It may cross tenants: the caller must be allowed to pull the source and push the
target (the HTTP layer decides who may, and hands the answers in as callables; a source the caller
may not pull is "not found", exactly as one that does not exist).

Gates are set per tenant, for its target repositories, as one document::

    {"gates": [{"repositories": "prod/**",                 # a glob over the target repository
                "annotations": ["org.opencontainers.image.revision"],
                "referrer_artifact_types": ["application/vnd.dev.sigstore.bundle.v0.3+json"],
                "approval": {"role": "maintainer", "allow_self_approval": false}}]}

Every gate whose glob matches the target applies: the target tenant's, and the platform's (one
document of the same shape, set by the platform admin, for every tenant). `annotations`: each key
must be set (non-empty)
in the manifest's annotations or in its image config's labels; for an index, on the index or on
every image it lists. `referrer_artifact_types`: the source must hold a referrer of the manifest of
each type (a signature, an SBOM). `approval`: the promotion waits (pending) until a user whose role in
the target's tenant is at least `role` (or the platform admin) approves it; the strictest role of
all matching gates applies. Self-approval (the requester approving their own promotion) is refused
unless every matching approval gate allows it, as Harbor and DTR do by default. A request that fails
any other gate is refused (422, each failed gate listed) and leaves no record; at approval the gates
are checked again (a referrer may have been deleted meanwhile). A refused request leaves an audit
row (`promotion.refuse`, with the failed requirements) and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..db.immutable_store import PLATFORM_DOCUMENT
from ..db.promotion_store import PromotionNotPending, PromotionRecord, PromotionRequest, PromotionSourceGone
from ..errors import OciError
from ..problems import Conflict, Forbidden, NotFound, Problem, ValidationFailed
from ..retention.selectors import Glob, parse_glob
from .manifests import parse_manifest
from .names import NAME_RE, TAG_RE, looks_like_digest, parse_digest
from .service import Registry

ROLE_ORDER = ("guest", "developer", "maintainer", "admin")
MAX_GATES = 50
MAX_KEYS = 20
MAX_KEY_LENGTH = 256
MAX_REASON_LENGTH = 1000
REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
# Where the traceability read finds the source revision and URL, in this order of preference.
REVISION_KEYS = (REVISION, "vcs-ref", "org.label-schema.vcs-ref")
SOURCE_KEYS = (SOURCE, "org.opencontainers.image.url", "vcs-url", "org.label-schema.vcs-url")

Check = Callable[[str], Awaitable[bool]]  # repository -> allowed?


class GatesFailed(Problem):
    """A promotion that a gate refuses: 422, each failed requirement in `errors`."""

    status, slug = 422, "promotion-gates-failed"


@dataclasses.dataclass(frozen=True)
class Gate:
    number: int  # 1-based
    repositories: Glob
    annotations: tuple[str, ...] = ()
    referrer_artifact_types: tuple[str, ...] = ()
    approval_role: str | None = None
    allow_self_approval: bool = False
    platform: bool = False  # one of the platform's gates (for every tenant), not the target tenant's

    @property
    def name(self) -> str:
        return f"{'platform gate' if self.platform else 'gate'} {self.number} ({self.repositories})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"repositories": str(self.repositories)}
        if self.annotations:
            out["annotations"] = list(self.annotations)
        if self.referrer_artifact_types:
            out["referrer_artifact_types"] = list(self.referrer_artifact_types)
        if self.approval_role is not None:
            out["approval"] = {"role": self.approval_role, "allow_self_approval": self.allow_self_approval}
        return out


def _strings(raw: Any, where: str, errors: dict[str, str]) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_KEYS or not all(
            isinstance(k, str) and 0 < len(k) <= MAX_KEY_LENGTH for k in raw):
        errors[where] = f"must be a list of at most {MAX_KEYS} non-empty strings of up to {MAX_KEY_LENGTH} characters"
        return ()
    return tuple(dict.fromkeys(raw))


def parse_gates(doc: Any, *, platform: bool = False) -> tuple[Gate, ...]:
    """Validate a gate document (module docstring). ValidationFailed names every bad field."""
    errors: dict[str, str] = {}
    gates: list[Gate] = []
    if not isinstance(doc, dict):
        raise ValidationFailed("the promotion gates must be a JSON object")
    for key in doc:
        if key != "gates":
            errors[f"/{str(key)[:64]}"] = "unknown field"
    raw = doc.get("gates", [])
    if not isinstance(raw, list) or len(raw) > MAX_GATES:
        errors["/gates"] = f"must be a list of at most {MAX_GATES} gates"
        raw = []
    for i, item in enumerate(raw):
        where = f"/gates/{i}"
        if not isinstance(item, dict):
            errors[where] = "must be an object"
            continue
        for key in item:
            if key not in ("repositories", "annotations", "referrer_artifact_types", "approval"):
                errors[f"{where}/{str(key)[:64]}"] = "unknown field"
        glob_errors: dict[str, str] = {}
        glob = parse_glob(item.get("repositories"), f"{where}/repositories", glob_errors)
        if "repositories" not in item:
            glob_errors = {f"{where}/repositories": "required: a glob over target repositories (`prod/**`)"}
        errors.update(glob_errors)
        annotations = _strings(item.get("annotations", []), f"{where}/annotations", errors)
        types = _strings(item.get("referrer_artifact_types", []), f"{where}/referrer_artifact_types", errors)
        role, self_ok = None, False
        approval = item.get("approval")
        if approval is not None:
            if not isinstance(approval, dict) or approval.get("role") not in ROLE_ORDER or not isinstance(
                    approval.get("allow_self_approval", False), bool) or set(approval) - {
                    "role", "allow_self_approval"}:
                errors[f"{where}/approval"] = (f"must be {{\"role\": one of {', '.join(ROLE_ORDER)}, "
                                               "\"allow_self_approval\": true|false}")
            else:
                role, self_ok = approval["role"], approval.get("allow_self_approval", False)
        if not (annotations or types or approval is not None) and where + "/annotations" not in errors:
            errors[where] = "a gate needs annotations, referrer_artifact_types or approval"
        if glob is not None:
            gates.append(Gate(i + 1, glob, annotations, types, role, self_ok, platform))
    if errors:
        raise ValidationFailed("invalid promotion gates: " + "; ".join(f"{k}: {v}" for k, v in errors.items())[:1500],
                               errors=[{"detail": v, "pointer": "#" + k} for k, v in errors.items()][:100])
    return tuple(gates)


def split_reference(text: Any, field: str, *, tag_required: bool = False) -> tuple[str, str]:
    """`repo@digest` or `repo:tag` -> (repository, reference); 422 on `field` otherwise."""
    if not isinstance(text, str) or len(text) > 512:
        raise ValidationFailed.field(field, "must be REPOSITORY:TAG or REPOSITORY@DIGEST")
    if "@" in text:
        name, _, reference = text.partition("@")
        ok = looks_like_digest(reference) and not tag_required
    else:
        name, sep, reference = text.rpartition(":")
        ok = bool(sep) and "/" not in reference and bool(TAG_RE.fullmatch(reference))
    if not ok or not NAME_RE.fullmatch(name) or "/" not in name:
        want = "REPOSITORY:TAG" if tag_required else "REPOSITORY:TAG or REPOSITORY@DIGEST"
        raise ValidationFailed.field(field, f"must be {want}, the repository in a tenant (tenant/name)")
    if "@" in text:
        try:
            reference = str(parse_digest(reference))
        except OciError as exc:
            raise ValidationFailed.field(field, exc.message) from None
    return name, reference


@dataclasses.dataclass(frozen=True)
class Evaluation:
    checks: tuple[dict, ...]  # every requirement: {"gate", "requirement", "passed", "detail"}
    approval_role: str | None
    self_approval: bool

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]


def _tenant(repository: str) -> str:
    return repository.split("/", 1)[0]


class Promotions:
    """Gates and promotions, over the Registry (whose store holds them: hub/db/promotion_store.py)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.store = registry.store

    # Gates: a tenant's, or (tenant None) the platform's, which apply to every tenant --------------------
    async def gates(self, tenant: str | None):
        stored = await self.store.promotion_gates(tenant or PLATFORM_DOCUMENT)
        if stored is None:
            raise NotFound(f"{'tenant ' + repr(tenant) if tenant else 'the platform'} has no promotion gates")
        return dataclasses.replace(stored, tenant=tenant)  # the platform's: tenant None

    async def set_gates(self, tenant: str | None, document: Any, actor: str):
        gates = parse_gates(document)
        stored = await self.store.set_promotion_gates(tenant or PLATFORM_DOCUMENT,
                                                      {"gates": [g.to_dict() for g in gates]}, actor)
        return dataclasses.replace(stored, tenant=tenant)

    async def delete_gates(self, tenant: str | None, actor: str) -> None:
        if not await self.store.delete_promotion_gates(tenant or PLATFORM_DOCUMENT, actor):
            raise NotFound(f"{'tenant ' + repr(tenant) if tenant else 'the platform'} has no promotion gates")

    async def _applying(self, target: str) -> list[Gate]:
        """The platform's gates, then the target tenant's, that match `target`."""
        found: list[Gate] = []
        for key in (PLATFORM_DOCUMENT, _tenant(target)):
            stored = await self.store.promotion_gates(key)
            if stored is not None:
                found += [g for g in parse_gates(stored.document, platform=key == PLATFORM_DOCUMENT)
                          if g.repositories.matches(target)]
        return found

    # Evaluation ------------------------------------------------------------------------------------
    async def _keys(self, repository: str, digest: str) -> list[dict[str, str]]:
        """The annotations and config labels of a manifest, one map per image: an image's own (labels
        under annotations), or for an index its own and then one per image it lists (merged the same way)."""
        record = await self.registry.get_manifest(repository, digest)
        parsed = parse_manifest(record.content, record.media_type)
        own = {**await self.registry.config_labels(repository, parsed), **(parsed.annotations or {})}
        if not parsed.manifest_refs:
            return [own]
        children = []
        for child in parsed.manifest_refs:
            got = await self.registry.get_manifest(repository, child)
            cp = parse_manifest(got.content, got.media_type)
            if cp.manifest_refs:
                continue  # nested indexes: their images are judged through the outer index's own keys
            children.append({**own, **await self.registry.config_labels(repository, cp), **(cp.annotations or {})})
        return children or [own]

    async def evaluate(self, source: str, digest: str, target: str) -> Evaluation:
        """Every gate of `target` against manifest `digest` of `source`; 409 when the source cannot be
        read whole (a child manifest or config missing: a pull-through cache's partial copy)."""
        try:
            return await self._evaluate(source, digest, target)
        except OciError as exc:
            raise Conflict(f"{source}@{digest} cannot be judged by its gates: {exc.message}") from None

    async def _evaluate(self, source: str, digest: str, target: str) -> Evaluation:
        gates = await self._applying(target)
        checks: list[dict] = []
        keys = await self._keys(source, digest) if any(g.annotations for g in gates) else []
        referrers = ({r.artifact_type for r in await self.registry.list_referrers(source, digest)}
                     if any(g.referrer_artifact_types for g in gates) else set())
        role, self_ok = None, True
        for gate in gates:
            name, where = gate.name, ({"scope": "platform"} if gate.platform else {"scope": "tenant"})
            for key in gate.annotations:
                passed = all(k.get(key) for k in keys)
                checks.append({"gate": gate.number, **where, "requirement": f"annotation {key}", "passed": passed,
                               "detail": f"{name}: annotation or label {key} is "
                                         + ("set" if passed else "missing on the manifest and its config")})
            for artifact_type in gate.referrer_artifact_types:
                passed = artifact_type in referrers
                checks.append({"gate": gate.number, **where, "requirement": f"referrer {artifact_type}",
                               "passed": passed,
                               "detail": f"{name}: a referrer of artifact type {artifact_type} is "
                                         + ("present" if passed else "missing in the source repository")})
            if gate.approval_role is not None:
                if role is None or ROLE_ORDER.index(gate.approval_role) > ROLE_ORDER.index(role):
                    role = gate.approval_role
                self_ok = self_ok and gate.allow_self_approval
        if role is not None:
            first = next(g for g in gates if g.approval_role == role)
            checks.append({"gate": first.number, "scope": "platform" if first.platform else "tenant",
                           "requirement": f"approval by {role}", "passed": True,
                           "detail": f"{first.name}: approval by a {role} of tenant {_tenant(target)} or more"
                           + ("" if self_ok else ", not the requester")})
        return Evaluation(tuple(checks), role, role is not None and self_ok)

    @staticmethod
    def _refuse(evaluation: Evaluation) -> None:
        failed = evaluation.failed
        if failed:
            raise GatesFailed(f"the promotion fails {len(failed)} gate requirement(s): "
                              + "; ".join(c["detail"] for c in failed)[:1500],
                              errors=[{"detail": c["detail"], "pointer": "#/source", "gate": str(c["gate"]),
                                       "scope": c["scope"], "requirement": c["requirement"]} for c in failed])

    # Requests and decisions ------------------------------------------------------------------------
    async def request(self, actor: str, source: str, target: str, *, can_pull: Check, can_push: Check
                      ) -> PromotionRecord:
        """Promote `source` (repo:tag or repo@digest) to `target` (repo:tag) for `actor`: completed at once,
        or pending when a gate needs an approval. 404 for a source the caller may not pull, 403 for a target
        it may not push, 422 for a failed gate."""
        source_repo, reference = split_reference(source, "source")
        target_repo, tag = split_reference(target, "target", tag_required=True)
        if not await can_pull(source_repo):
            raise NotFound(f"no manifest {source[:300]} (or you may not pull it)")
        try:
            record = await self.registry.get_manifest(source_repo, reference, with_content=False)
        except OciError:
            raise NotFound(f"no manifest {source[:300]} (or you may not pull it)") from None
        if not await can_push(target_repo):
            raise Forbidden(f"you may not push to {target_repo}")
        if target_repo == source_repo and tag == reference:
            raise ValidationFailed.field("target", "is the source itself")
        evaluation = await self.evaluate(source_repo, record.digest, target_repo)
        request = PromotionRequest(source_repo, reference, record.digest, target_repo, tag, actor, evaluation.checks,
                                   evaluation.approval_role, evaluation.self_approval)
        if evaluation.failed:
            await self.store.refuse_promotion(request)  # the audit trail shows refused attempts too
            self._refuse(evaluation)
        if evaluation.approval_role is not None:
            return await self.registry.request_promotion(request)
        return await self._copy(request.source_repository, record.digest, target_repo, request=request)

    async def _copy(self, source: str, digest: str, target: str, **record) -> PromotionRecord:
        try:
            plan = await self.registry.copy_plan(source, digest)
            return await self.registry.promote(plan, target, **record)
        except PromotionSourceGone as exc:
            raise Conflict(f"{exc}: the source changed, nothing was copied") from None
        except PromotionNotPending as exc:
            raise Conflict(f"promotion {exc.promotion_id} is {exc.state} already") from None
        except OciError as exc:  # DENIED: the target's quota or an immutable tag; the source changed
            if exc.status == 403:
                raise Forbidden(exc.message) from None
            raise Conflict(f"{exc.message}: nothing was copied") from None

    async def find(self, promotion_id: int, can_see: Callable[[PromotionRecord], bool]) -> PromotionRecord:
        record = await self.store.promotion(promotion_id)
        if record is None or not can_see(record):
            raise NotFound(f"no promotion {promotion_id}")
        return record

    def _may_decide(self, record: PromotionRecord, actor: str, has_role: Callable[[str, str], bool],
                    verb: str) -> None:
        if record.state != "pending":
            raise Conflict(f"promotion {record.id} is {record.state}: only a pending one is {verb}")
        role = record.approval_role or "admin"
        if not has_role(_tenant(record.target_repository), role):
            raise Forbidden(f"promotion {record.id} needs a {role} of tenant {_tenant(record.target_repository)} "
                            f"(or the platform admin) to be {verb}")
        if verb == "approved" and actor == record.requested_by and not record.self_approval:
            raise Forbidden(f"promotion {record.id} was requested by {actor}: another user must approve it "
                            "(its gates do not allow self-approval)")

    def may_decide(self, record: PromotionRecord, actor: str, has_role: Callable[[str, str], bool],
                   verb: str) -> bool:
        """Whether `actor` may approve (verb "approved") or reject ("rejected") `record` now: what the
        console asks before it shows a button (approve and reject check again)."""
        try:
            if verb == "rejected" and actor == record.requested_by:
                return record.state == "pending"
            self._may_decide(record, actor, has_role, verb)
        except Problem:
            return False
        return True

    async def approve(self, actor: str, record: PromotionRecord, has_role: Callable[[str, str], bool],
                      reason: str | None = None) -> PromotionRecord:
        """Approve a pending promotion and complete it, in one transaction (gates checked again)."""
        self._may_decide(record, actor, has_role, "approved")
        evaluation = await self.evaluate(record.source_repository, record.digest, record.target_repository)
        self._refuse(evaluation)
        return await self._copy(record.source_repository, record.digest, record.target_repository,
                                promotion_id=record.id, approver=actor, reason=reason)

    async def reject(self, actor: str, record: PromotionRecord, has_role: Callable[[str, str], bool],
                     reason: str | None = None) -> PromotionRecord:
        """Reject a pending promotion (by an approver; its requester may withdraw it too)."""
        if actor != record.requested_by:
            self._may_decide(record, actor, has_role, "rejected")
        elif record.state != "pending":
            raise Conflict(f"promotion {record.id} is {record.state}: only a pending one is rejected")
        try:
            return await self.store.reject_promotion(record.id, actor, reason)
        except PromotionNotPending as exc:
            raise Conflict(f"promotion {exc.promotion_id} is {exc.state} already") from None

    async def list(self, *, tenants: frozenset[str] | None, state: str | None, digest: str | None, limit: int,
                   before: int | None) -> list[PromotionRecord]:
        return await self.store.promotions(tenants=tenants, state=state, digest=digest, limit=limit, before=before)

    # Traceability ----------------------------------------------------------------------------------
    async def trace(self, digest: str, can_pull: Check, visible: Callable[[PromotionRecord], bool]) -> dict:
        """What is known of manifest `digest`, from the repositories the caller may pull: where it is
        (repositories, tags), its source revision and URL (annotations, else config labels), the
        promotions that moved it and its referrers. 404 when no repository the caller may pull holds it."""
        try:
            digest = str(parse_digest(digest))
        except OciError:
            raise NotFound(f"no manifest {digest[:100]!r}: not a digest") from None
        holdings = [h for h in await self.store.artifact_holdings(digest) if await can_pull(h.repository)]
        if not holdings:
            raise NotFound(f"no manifest {digest} in a repository you may pull")
        first = holdings[0]
        try:
            keys = await self._keys(first.repository, digest)
        except OciError:  # a pull-through cache's partial copy: no child or config to read
            keys = []
        merged = {k: v for m in reversed(keys) for k, v in m.items()}
        revision = next((merged[k] for k in REVISION_KEYS if merged.get(k)), None)
        source_url = next((merged[k] for k in SOURCE_KEYS if merged.get(k)), None)
        referrers: dict[str, dict] = {}
        for h in holdings:
            for r in await self.registry.list_referrers(h.repository, digest):
                entry = referrers.setdefault(r.digest, {"digest": r.digest, "media_type": r.media_type, "size": r.size,
                                                        "artifact_type": r.artifact_type,
                                                        "annotations": json.loads(r.annotations_json)
                                                        if r.annotations_json else {}, "repositories": []})
                entry["repositories"].append(h.repository)
        promotions = [p for p in await self.store.promotions(digest=digest, limit=500) if visible(p)]
        return {"digest": digest, "media_type": first.media_type, "size": first.size,
                "revision": revision, "source_url": source_url,
                "repositories": [{"repository": h.repository, "tags": list(h.tags)} for h in holdings],
                "promotions": promotions, "referrers": list(referrers.values())}
