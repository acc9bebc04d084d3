"""DaoHub's events as CloudEvents 1.0 in structured mode (JSON), the schema docs/events.md and
the admin OpenAPI document (component `CloudEvent`) describe.

Every event has the required attributes (specversion, id, source, type) and time, subject and
datacontenttype; `data` is an object whose keys depend on the type (EVENT_TYPES). The id is a
random UUID: unique, the deliveries' idempotency key."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

SPECVERSION = "1.0"
TYPE_PREFIX = "io.daohub."
MEDIA_TYPE = "application/cloudevents+json"

MANIFEST_PUSHED = TYPE_PREFIX + "manifest.pushed"
MANIFEST_DELETED = TYPE_PREFIX + "manifest.deleted"
TAG_PUSHED = TYPE_PREFIX + "tag.pushed"
TAG_MOVED = TYPE_PREFIX + "tag.moved"
TAG_DELETED = TYPE_PREFIX + "tag.deleted"
BLOB_MOUNTED = TYPE_PREFIX + "blob.mounted"
BLOB_DELETED = TYPE_PREFIX + "blob.deleted"
PULLED = TYPE_PREFIX + "pull"
REPOSITORY_DELETED = TYPE_PREFIX + "repository.deleted"
MEMBER_SET = TYPE_PREFIX + "member.set"
MEMBER_REMOVED = TYPE_PREFIX + "member.removed"
ROBOT_CREATED = TYPE_PREFIX + "robot.created"
ROBOT_REVOKED = TYPE_PREFIX + "robot.revoked"
ROBOT_DELETED = TYPE_PREFIX + "robot.deleted"
APP_VERSION_PUBLISHED = TYPE_PREFIX + "app.version.published"
APP_VERSION_DEPRECATED = TYPE_PREFIX + "app.version.deprecated"
QUOTA_WARNING = TYPE_PREFIX + "quota.warning"
QUOTA_EXCEEDED = TYPE_PREFIX + "quota.exceeded"
PROMOTION_REQUESTED = TYPE_PREFIX + "promotion.requested"
PROMOTION_APPROVED = TYPE_PREFIX + "promotion.approved"
PROMOTION_REJECTED = TYPE_PREFIX + "promotion.rejected"
PROMOTION_COMPLETED = TYPE_PREFIX + "promotion.completed"
# A tenant's usage crossing this share of its quota (upwards) is a quota.warning, once per crossing.
QUOTA_WARNING_FRACTION = 0.8

# type -> (what it means, the keys of its data beyond `actor`, which every event has)
EVENT_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    MANIFEST_PUSHED: ("A manifest was stored in a repository (not sent again for the same digest in the same "
                      "repository).", ("repository", "digest", "media_type", "size", "artifact_type", "subject",
                                       "tags")),
    MANIFEST_DELETED: ("A manifest was deleted: by a client, by retention or by GC (`actor` `gc`); its tags went "
                       "with it (each a tag.deleted of its own).", ("repository", "digest", "reason")),
    TAG_PUSHED: ("A new tag points at a manifest.", ("repository", "tag", "digest")),
    TAG_MOVED: ("An existing tag was pointed at another manifest.", ("repository", "tag", "digest",
                                                                     "previous_digest")),
    TAG_DELETED: ("A tag was deleted (alone, with its manifest, or by retention).", ("repository", "tag", "digest",
                                                                                     "reason")),
    BLOB_MOUNTED: ("A blob was linked into a repository by a cross-repository mount.", ("repository", "digest",
                                                                                        "size", "from")),
    BLOB_DELETED: ("GC deleted a blob no repository links any more (`actor` `gc`; its bytes go after the "
                   "commit). Platform-wide subscriptions only: a blob belongs to no tenant.", ("digest", "size",
                                                                                              "reason")),
    PULLED: ("Pulls of one tag or digest, aggregated per flush of the pull buffer (about one second): `count` "
             "manifest GETs and HEADs between `first_at` and `last_at`.", ("repository", "tag", "digest", "count",
                                                                          "first_at", "last_at")),
    REPOSITORY_DELETED: ("A repository was deleted with all its manifests and tags (no event of its own for "
                         "each of them).", ("repository", "manifest_count", "tag_count")),
    MEMBER_SET: ("A user was made a member of a tenant, or given another role.", ("tenant", "user", "role",
                                                                                "previous_role")),
    MEMBER_REMOVED: ("A user was removed from a tenant.", ("tenant", "user", "previous_role")),
    ROBOT_CREATED: ("A robot account was created (never its secret).", ("tenant", "robot", "repositories",
                                                                        "actions", "expires_at")),
    ROBOT_REVOKED: ("A robot account was revoked.", ("tenant", "robot")),
    ROBOT_DELETED: ("A robot account was deleted.", ("tenant", "robot")),
    APP_VERSION_PUBLISHED: ("A tag was indexed as an app store version (a new version, or its tag moved to other "
                            "content; indexing the same manifest again is no event).", ("repository", "tag",
                                                                                        "version", "app",
                                                                                        "digest")),
    APP_VERSION_DEPRECATED: ("An app version was marked deprecated (or, `deprecated` false, no longer).",
                             ("repository", "tag", "version", "app", "deprecated")),
    QUOTA_WARNING: ("A blob link or manifest took the tenant's usage past 80% of its quota (once per crossing: "
                    "usage must fall below 80% again for the next).", ("tenant", "used_bytes", "limit_bytes",
                                                                       "percent")),
    QUOTA_EXCEEDED: ("A push was refused because it would take the tenant past its quota (one event per "
                     "refused request; nothing was stored).", ("tenant", "repository", "used_bytes", "limit_bytes",
                                                              "requested_bytes", "kind")),
}
# Every promotion event's data (docs/promotion.md): the promotion as the API shows it.
_PROMOTION_KEYS = ("promotion", "source", "target", "digest", "state", "requested_by", "gates", "decided_by",
                   "reason")
EVENT_TYPES |= {
    PROMOTION_REQUESTED: ("A promotion was accepted and waits for an approval (a promotion no gate holds up "
                          "completes at once: requested, then completed, in one transaction).", _PROMOTION_KEYS),
    PROMOTION_APPROVED: ("A pending promotion was approved (completed in the same transaction).", _PROMOTION_KEYS),
    PROMOTION_REJECTED: ("A pending promotion was rejected: nothing was copied.", _PROMOTION_KEYS),
    PROMOTION_COMPLETED: ("A promotion copied a manifest (with its child manifests and referrers) into the target "
                          "repository and pointed the target tag at it: blob links only, no bytes moved.",
                          _PROMOTION_KEYS + ("copied",)),
}


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_for(repository: str | None, tenant: str | None = None) -> str:
    """The event's `source`, a URI reference: `/daohub/<repository>`, for a tenant's own changes
    (members, robots) `/daohub/tenants/<tenant>`, else `/daohub`."""
    if repository is not None:
        return f"/daohub/{repository}"
    return "/daohub" if tenant is None else f"/daohub/tenants/{tenant}"


def build(event_type: str, *, source: str, subject: str | None, data: dict, at: float,
          event_id: str | None = None) -> dict:
    event = {"specversion": SPECVERSION, "id": event_id or str(uuid.uuid4()), "source": source, "type": event_type,
             "time": rfc3339(at), "datacontenttype": "application/json"}
    if subject is not None:
        event["subject"] = subject
    event["data"] = data
    return event


def dumps(event: dict) -> str:
    """The bytes delivered (as UTF-8): compact, keys in a fixed order."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
