"""JSON schemas of the admin API: request bodies and resources (OpenAPI 3.0 dialect).

One set of schemas serves both the OpenAPI document and request validation, so the
document cannot promise what the server does not check. The validator covers the subset
used here: type, nullable, enum, string length and pattern, number bounds, arrays
(items, length, uniqueItems), objects (properties, required, additionalProperties: false,
minProperties).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from auth import provider_settings

from ...events import cloudevents
from ...events import service as webhooks
from ...problems import ValidationFailed
from ...proxy import upstreams
from ...registry.names import COMPONENT_PATTERN, MAX_NAME_LENGTH
from ...tenancy import service as admin

# Building blocks ---------------------------------------------------------------------------------
COMPONENT = {"type": "string", "minLength": 1, "maxLength": admin.MAX_COMPONENT_LENGTH,
             "pattern": COMPONENT_PATTERN}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {**TIMESTAMP, "nullable": True}
ROLE = {"type": "string", "enum": list(admin.ROLES)}
ACTIONS = {"type": "array", "items": {"type": "string", "enum": list(admin.ROBOT_ACTIONS)}, "minItems": 1,
           "uniqueItems": True}
PATTERNS = {"type": "array", "minItems": 1, "maxItems": admin.MAX_ROBOT_PATTERNS,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
            "description": "Repository names or patterns, each starting with `<tenant>/`; `*` and `?` match "
                           "within one segment, a `**` segment spans any number of segments."}
QUOTA = {"type": "integer", "minimum": 0, "maximum": admin.MAX_QUOTA_BYTES, "nullable": True,
         "description": "Bytes of distinct blobs the tenant may store; null means no limit."}
PASSWORD = {"type": "string", "minLength": admin.MIN_PASSWORD_LENGTH, "maxLength": admin.MAX_PASSWORD_LENGTH}


_UPSTREAM_SETTINGS = {
    "url": {"type": "string", "minLength": 1, "maxLength": upstreams.MAX_URL_LENGTH,
            "description": "http(s)://host[:port] of the upstream registry: no path, credentials, query or "
                           "fragment."},
    "aliases": {"type": "array", "maxItems": upstreams.MAX_ALIASES, "uniqueItems": True,
                "items": {"type": "string", "minLength": 1, "maxLength": 261},
                "description": "Other registry hosts (host[:port]) it answers to in containerd's ?ns= and, when "
                               "spelled as a name component, as a path prefix."},
    "username": {"type": "string", "maxLength": upstreams.MAX_CREDENTIAL_LENGTH, "nullable": True},
    "password": {"type": "string", "maxLength": upstreams.MAX_CREDENTIAL_LENGTH, "nullable": True,
                 "writeOnly": True, "description": "Write-only: never returned. With username, for the "
                                                   "upstream's token dance; both empty: anonymous."},
    "manifest_revalidate_seconds": {"type": "integer", "minimum": 0, "maximum": upstreams.MAX_REVALIDATE_SECONDS,
                                    "description": "A tag is checked upstream (one HEAD) at most this often."},
    "tenants": {"type": "array", "maxItems": upstreams.MAX_TENANTS, "uniqueItems": True,
                "items": {"type": "string", "minLength": 1, "maxLength": admin.MAX_COMPONENT_LENGTH},
                "description": "With auth on, members of these tenants may pull through it (empty: any "
                               "signed-in user or robot)."},
    "anonymous_pull": {"type": "boolean", "description": "Anonymous clients may pull through it too."},
    "max_size_bytes": {"type": "integer", "minimum": 1, "maximum": upstreams.MAX_SIZE_BYTES, "nullable": True,
                       "description": "Size cap of its cache (distinct blob bytes); least recently pulled "
                                      "images are evicted first. null: no cap."},
    "ttl_days": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": upstreams.MAX_TTL_DAYS,
                 "nullable": True, "description": "Images not pulled for this many days are evicted. null: kept "
                                                  "while they fit."},
}


_FILTERS = {"type": "array", "maxItems": webhooks.MAX_FILTERS, "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": webhooks.MAX_FILTER_LENGTH}}
_WEBHOOK_SETTINGS = {
    "name": {"type": "string", "minLength": 1, "maxLength": webhooks.MAX_NAME_LENGTH},
    "url": {"type": "string", "minLength": 1, "maxLength": 2048,
            "description": "http(s) URL the events are POSTed to. Its host must resolve to public addresses "
                           "(or ones `webhooks.allowed_networks` lists); redirects are not followed."},
    "event_types": {**_FILTERS, "description": "Globs over the event type, with or without the `io.daohub.` "
                                               "prefix (`tag.*`); empty or absent: every type."},
    "repositories": {**_FILTERS, "description": "Globs over the repository name (`*` spans `/` too); empty or "
                                                "absent: every repository (of the tenant, for a tenant's)."},
    "enabled": {"type": "boolean", "description": "A disabled subscription queues nothing."},
}


def _cloudevent_schema() -> dict[str, Any]:
    data = {"actor": {"type": "string", "description": "Who made the change: a user, a robot account "
                                                       "(robot$tenant+name), `anonymous`, or a job (`gc`, "
                                                       "`retention`, `daohub` for pulls)."},
            "repository": {"type": "string"}, "digest": {"type": "string"}, "tag": {"type": "string"},
            "previous_digest": {"type": "string", "description": "tag.moved: where the tag pointed before."},
            "media_type": {"type": "string"}, "size": {"type": "integer"},
            "artifact_type": {"type": "string", "nullable": True}, "subject": {"type": "string", "nullable": True},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "manifest.pushed: the tags "
                                                                                 "the same PUT set."},
            "reason": {"type": "string", "description": "Deletes: `deleted` (a client), `retention`, or GC's "
                                                        "reason."},
            "from": {"type": "string", "nullable": True, "description": "blob.mounted: the source repository."},
            "count": {"type": "integer"}, "first_at": TIMESTAMP, "last_at": TIMESTAMP,
            "manifest_count": {"type": "integer"}, "tag_count": {"type": "integer"},
            "tenant": {"type": "string"}, "user": {"type": "string"},
            "role": {"type": "string"}, "previous_role": {"type": "string", "nullable": True},
            "robot": {"type": "string", "description": "robot$<tenant>+<name>"},
            "repositories": {"type": "array", "items": {"type": "string"}},
            "actions": {"type": "array", "items": {"type": "string"}}, "expires_at": NULLABLE_TIMESTAMP}
    types = "; ".join(f"`{t}`: {what} data: {', '.join(keys)}" for t, (what, keys) in cloudevents.EVENT_TYPES.items())
    return obj({"specversion": {"type": "string", "enum": [cloudevents.SPECVERSION]},
                "id": {"type": "string", "description": "A UUID; unique per event: the idempotency key."},
                "source": {"type": "string", "description": "`/daohub/<repository>`, or "
                                                            "`/daohub/tenants/<tenant>` (members, robots)."},
                "type": {"type": "string", "enum": list(cloudevents.EVENT_TYPES)},
                "time": TIMESTAMP,
                "subject": {"type": "string", "description": "`<repository>:<tag>`, `<repository>@<digest>`, "
                                                             "a user or a robot account."},
                "datacontenttype": {"type": "string", "enum": ["application/json"]},
                "data": {**obj(data, ("actor",)), "additionalProperties": True,
                         "description": "Keys by type (new keys may be added; none removed)."}},
               ("specversion", "id", "source", "type", "time", "datacontenttype", "data"),
               description="A DaoHub event in CloudEvents 1.0 structured mode (Content-Type "
                           "application/cloudevents+json). Types: " + types)


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def _settings_schema(section_type: type, *, writing: bool) -> dict[str, Any]:
    """A provider type's section (auth.provider_settings) as a schema: to write (the secret, no file
    paths for it) or as shown (no secret, `<secret>_set`)."""
    kind = {"ldap": "ldap", "oidc": "oidc"}[section_type.__name__.removesuffix("Settings").lower()]
    secret, secret_file = provider_settings.SECRET_FIELDS[kind], provider_settings.FILE_FIELDS[kind]
    hints = typing.get_type_hints(section_type)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(section_type):
        hint = hints[f.name]
        if f.name == secret:
            if writing:
                properties[f.name] = {"type": "string", "nullable": True, "writeOnly": True,
                                      "description": "Write-only: never returned. null clears it."}
            continue
        if f.name == secret_file and writing:
            continue  # API providers give the secret itself, never a path on the server
        if hint is bool:
            properties[f.name] = {"type": "boolean"}
        elif hint is float:
            properties[f.name] = {"type": "number", "minimum": 0}
        elif typing.get_origin(hint) is list:
            properties[f.name] = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 200},
                                  "maxItems": 50}
        else:
            properties[f.name] = {"type": "string", "maxLength": 2000}
    if not writing:
        properties[f"{secret}_set"] = {"type": "boolean", "description": "Whether there is one; it is never shown."}
    return obj(properties)


_MAPPING_IN = obj({"group": {"type": "string", "minLength": 1, "maxLength": 1000},
                   "tenant": {"type": "string", "maxLength": 64}, "role": {"type": "string"},
                   "platform_admin": {"type": "boolean"}}, ("group",))
_PROVIDER_IN = {"cache_seconds": {"type": "number", "minimum": 0, "maximum": 86400},
                "ldap": _settings_schema(provider_settings.LdapSettings, writing=True),
                "oidc": _settings_schema(provider_settings.OidcSettings, writing=True),
                "group_mappings": {"type": "array", "items": _MAPPING_IN, "maxItems": 500}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ROBOT = {
    "account": {"type": "string", "description": "The login name: robot$<tenant>+<name>."},
    "tenant": {"type": "string"}, "name": {"type": "string"},
    "repositories": {"type": "array", "items": {"type": "string"}},
    "actions": {"type": "array", "items": {"type": "string", "enum": list(admin.ROBOT_ACTIONS)}},
    "expires_at": NULLABLE_TIMESTAMP, "revoked": {"type": "boolean"},
    "active": {"type": "boolean", "description": "Neither revoked nor expired."},
    "created_at": TIMESTAMP,
}

# Request bodies ----------------------------------------------------------------------------------
CLI_SECRET_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[\x20-\x7e]+$"}

REQUESTS: dict[str, dict[str, Any]] = {
    "IdentityProviderCreate": obj({"name": COMPONENT, "type": {"type": "string",
                                                               "enum": list(provider_settings.PROVIDER_TYPES)},
                                   **_PROVIDER_IN}, ("name", "type"),
                                  example={"name": "corp-sso", "type": "oidc", "oidc": {
                                      "issuer": "https://login.example.com", "client_id": "daohub",
                                      "client_secret": "s3cret"},
                                      "group_mappings": [{"group": "eng", "tenant": "team", "role": "developer"}]}),
    "IdentityProviderUpdate": obj(_PROVIDER_IN, minProperties=1,
                                  example={"group_mappings": [{"group": "eng", "tenant": "team", "role": "maintainer"}]}),
    "CliSecretCreate": obj({"name": {**CLI_SECRET_NAME, "description": "What the secret is for (shown in listings)."},
                            "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650,
                                                "description": "Omitted: it never expires (revoke it then)."}},
                           ("name",), example={"name": "laptop docker", "expires_in_days": 90}),
    "ProviderLookup": obj({"username": COMPONENT}, ("username",), example={"username": "alice"}),
    "TenantCreate": obj({"name": COMPONENT,
                         "display_name": {"type": "string", "maxLength": admin.MAX_DISPLAY_NAME_LENGTH},
                         "quota_bytes": QUOTA}, ("name",),
                        example={"name": "acme", "display_name": "ACME Inc.", "quota_bytes": 10_000_000_000}),
    "TenantUpdate": obj({"display_name": {"type": "string", "maxLength": admin.MAX_DISPLAY_NAME_LENGTH},
                         "quota_bytes": QUOTA}, minProperties=1, example={"quota_bytes": None}),
    "UserCreate": obj({"username": COMPONENT, "password": PASSWORD, "is_admin": {"type": "boolean"}},
                      ("username", "password"), example={"username": "carol", "password": "correct-horse-battery"}),
    "UserUpdate": obj({"is_admin": {"type": "boolean"}, "disabled": {"type": "boolean"}}, minProperties=1,
                      example={"disabled": True}),
    "PasswordChange": obj({"password": PASSWORD,
                           "current_password": {"type": "string", "maxLength": admin.MAX_PASSWORD_LENGTH,
                                                "description": "Required when changing your own password "
                                                               "(platform admins may omit it)."}},
                          ("password",), example={"password": "correct-horse-battery"}),
    "MemberUpdate": obj({"role": ROLE}, ("role",), example={"role": "developer"}),
    "RobotCreate": obj({"name": COMPONENT, "repositories": PATTERNS, "actions": ACTIONS,
                        "expires_in_days": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                            "maximum": admin.MAX_ROBOT_DAYS}},
                       ("name", "repositories", "actions"),
                       example={"name": "builder", "repositories": ["team/ci/**"], "actions": ["pull", "push"],
                                "expires_in_days": 90}),
    "RepositoryUpdate": obj({"public": {"type": "boolean"}}, ("public",), example={"public": True}),
    "UpstreamCreate": obj({"name": {**COMPONENT, "description": "The cache namespace and path prefix, e.g. "
                                                                 "docker.io: not a tenant's name."},
                           **_UPSTREAM_SETTINGS}, ("name", "url"),
                          example={"name": "ghcr.io", "url": "https://ghcr.io", "aliases": [],
                                   "manifest_revalidate_seconds": 300, "max_size_bytes": 50_000_000_000,
                                   "ttl_days": 30}),
    "UpstreamUpdate": obj(_UPSTREAM_SETTINGS, minProperties=1, example={"max_size_bytes": 100_000_000_000}),
    "WebhookCreate": obj({**_WEBHOOK_SETTINGS,
                          "secret": {"type": "string", "minLength": webhooks.MIN_SECRET_LENGTH,
                                     "maxLength": webhooks.MAX_SECRET_LENGTH, "writeOnly": True,
                                     "description": "The signing secret; omitted: a random one (in the response, "
                                                    "this once)."}}, ("url",),
                         example={"name": "ci", "url": "https://ci.example.com/hooks/daohub",
                                  "event_types": ["io.daohub.manifest.pushed", "tag.*"],
                                  "repositories": ["team/app*"]}),
    "WebhookUpdate": obj(_WEBHOOK_SETTINGS, minProperties=1, example={"enabled": False}),
    "WebhookSecretRotation": obj({
        "secret": {"type": "string", "minLength": webhooks.MIN_SECRET_LENGTH, "maxLength": webhooks.MAX_SECRET_LENGTH,
                   "writeOnly": True, "description": "The new secret; omitted: a random one."},
        "previous_valid_seconds": {"type": "integer", "minimum": 0, "maximum": webhooks.MAX_OVERLAP_SECONDS,
                                   "description": "How long the current secret keeps signing too (default "
                                                  f"{webhooks.DEFAULT_OVERLAP_SECONDS})."}},
        example={"previous_valid_seconds": 3600}),
    "GcRunRequest": obj({"dry_run": {"type": "boolean", "description": "Only report what would go."},
                         "tenant": {**COMPONENT, "nullable": True,
                                    "description": "Review only this tenant's repositories."}},
                        example={"dry_run": True, "tenant": "acme"}),
    "RetentionPolicyDocument": {
        "type": "object", "additionalProperties": True,
        "description": "A retention policy (docs/retention.md): ordered `rules`, optional `untagged_days` and "
                       "per-repository `overrides`. Checked in full: every problem is a 422 error whose pointer "
                       "names the field (`#/rules/0/keep/latest_pushed`).",
        "example": {"rules": [{"tags": {"semver": ">=1.0.0"}, "keep": {"semver_line": {"per": "minor",
                                                                                       "count": 2}}},
                              {"tags": {"glob": "**"}, "keep": {"pulled_within_days": 7}},
                              {"tags": {"glob": "sha-*"}, "keep": {"latest_pushed": 5}}]}},
    "ImmutableTagRulesDocument": {
        "type": "object", "additionalProperties": True,
        "description": "Immutable-tag rules (docs/retention.md): `rules`, each a repository glob and a tag selector "
                       "(glob, regex or semver), at most 100. Checked in full: every problem is a 422 error whose "
                       "pointer names the field (`#/rules/0/tags/semver`).",
        "example": {"rules": [{"repositories": "**", "tags": {"semver": ">=0.0.0"}},
                              {"repositories": "prod/**", "tags": {"glob": "release-*"}}]}},
    "RetentionRunRequest": obj({"dry_run": {"type": "boolean", "description": "Only list what would go."},
                                "tenant": {**COMPONENT, "nullable": True,
                                           "description": "Only this tenant (default: every tenant with a "
                                                          "policy; platform admin)."}},
                               example={"dry_run": True, "tenant": "acme"}),
}

# Resources ---------------------------------------------------------------------------------------
_IMPORT_ITEM = obj({
    "index": {"type": "integer", "description": "The template's place in the feed, from 0."},
    "key": {"type": "string"}, "title": {"type": "string"}, "repository": {"type": "string"},
    "kind": {"type": "string", "description": "container, swarm stack or compose stack"},
    "parameters": {"type": "array", "items": {"type": "string"}},
    "compose": {"type": "string", "description": "The compose template DaoHub publishes for it."},
    "status": {"type": "string", "enum": ["new", "published", "exists", "skipped", "invalid", "failed"]},
    "errors": {"type": "array", "items": {"type": "string"}}},
    ("index", "key", "title", "repository", "kind", "parameters", "compose", "status", "errors"))
REQUESTS["PortainerImport"] = obj({
    "feed": {"type": "object", "additionalProperties": True,
             "description": "A Portainer app-template feed: {\"version\": \"2\" or \"3\", \"templates\": [...]}."},
    "url": {"type": "string", "maxLength": 2000,
            "description": "Where to fetch the feed: http(s) on a host listed in appstore.import_hosts."},
    "only": {"type": "array", "items": {"type": "string"}, "maxItems": 1000,
             "description": "Import only the templates with these keys (as a dry run names them)."},
    "dry_run": {"type": "boolean", "description": "Answer the preview; publish nothing."}},
    example={"url": "https://templates.example.org/portainer/v3.json", "dry_run": True})

RESOURCES: dict[str, dict[str, Any]] = {
    "CliSecret": obj({"id": {"type": "string", "description": "Delete the secret by this id."},
                      "name": {"type": "string"}, "created_at": TIMESTAMP, "expires_at": NULLABLE_TIMESTAMP,
                      "last_used_at": NULLABLE_TIMESTAMP,
                      "secret": {"type": "string", "description": "Only in the answer that creates it: the "
                                 "password for `docker login -u <you>`. Never shown again."}},
                     ("id", "name", "created_at", "expires_at", "last_used_at")),
    "PortainerImportResult": obj({"tenant": {"type": "string"}, "dry_run": {"type": "boolean"},
                                  "items": {"type": "array", "items": _IMPORT_ITEM}},
                                 ("tenant", "dry_run", "items")),
    "Tenant": obj({"name": {"type": "string"}, "display_name": {"type": "string"},
                   "quota_bytes": {"type": "integer", "nullable": True}, "created_at": TIMESTAMP},
                  ("name", "display_name", "quota_bytes", "created_at")),
    "User": obj({"username": {"type": "string"}, "is_admin": {"type": "boolean"}, "disabled": {"type": "boolean"},
                 "created_at": TIMESTAMP, "password_changed_at": TIMESTAMP,
                 "provider": {"type": "string", "description": "local, or the identity provider (auth.providers) "
                                                              "that signs the user in and provisioned the account"}},
                ("username", "is_admin", "disabled", "created_at", "password_changed_at", "provider")),
    "Member": obj({"username": {"type": "string"}, "role": ROLE}, ("username", "role")),
    "RefreshToken": obj({"id": {"type": "string", "description": "The token's jti: revoke it by this id."},
                         "client_id": {"type": "string"}, "user_agent": {"type": "string"},
                         "issued_at": TIMESTAMP, "expires_at": TIMESTAMP, "last_used_at": NULLABLE_TIMESTAMP},
                        ("id", "client_id", "user_agent", "issued_at", "expires_at", "last_used_at")),
    "Robot": obj(_ROBOT, tuple(_ROBOT)),
    "RobotCreated": obj({**_ROBOT, "secret": {"type": "string", "description": "Shown once, never again."}},
                        (*_ROBOT, "secret")),
    "Repository": obj({"name": {"type": "string"}, "tenant": {"type": "string", "nullable": True},
                       "public": {"type": "boolean"},
                       "size_bytes": {"type": "integer", "minimum": 0,
                                      "description": "Sum of the sizes of the distinct blobs linked into it."},
                       "tag_count": {"type": "integer", "minimum": 0},
                       "manifest_count": {"type": "integer", "minimum": 0}, "created_at": TIMESTAMP},
                      ("name", "tenant", "public", "size_bytes", "tag_count", "manifest_count", "created_at")),
    "Upstream": obj({
        "name": {"type": "string"}, "url": {"type": "string"},
        "aliases": {"type": "array", "items": {"type": "string"}}, "username": {"type": "string"},
        "password_set": {"type": "boolean", "description": "Whether a password is stored (it is never returned)."},
        "manifest_revalidate_seconds": {"type": "integer"},
        "tenants": {"type": "array", "items": {"type": "string"}}, "anonymous_pull": {"type": "boolean"},
        "max_size_bytes": {"type": "integer", "nullable": True}, "ttl_days": {"type": "number", "nullable": True},
        "source": {"type": "string", "enum": ["config", "api"]},
        "read_only": {"type": "boolean", "description": "Defined in the config file: change it there."},
        "default_mirror": {"type": "boolean", "description": "Serves names outside every tenant (Docker's "
                                                             "registry-mirrors); set in the config file."},
        "created_at": NULLABLE_TIMESTAMP, "updated_at": NULLABLE_TIMESTAMP},
        ("name", "url", "aliases", "username", "password_set", "manifest_revalidate_seconds", "tenants",
         "anonymous_pull", "max_size_bytes", "ttl_days", "source", "read_only", "default_mirror", "created_at",
         "updated_at")),
    "Tag": obj({"name": {"type": "string"}, "digest": {"type": "string"}, "updated_at": TIMESTAMP},
               ("name", "digest", "updated_at")),
    "Quota": obj({"tenant": {"type": "string"}, "limit_bytes": {"type": "integer", "nullable": True},
                  "used_bytes": {"type": "integer", "minimum": 0,
                                 "description": "Sizes of the distinct blobs linked into the tenant's "
                                                "repositories and of the distinct manifests in them."}},
                 ("tenant", "limit_bytes", "used_bytes")),
    "GcRun": obj({"id": {"type": "integer", "nullable": True, "description": "null for a dry run (not recorded)."},
                  "started_at": TIMESTAMP, "finished_at": NULLABLE_TIMESTAMP, "dry_run": {"type": "boolean"},
                  "tenant": {"type": "string", "nullable": True}, "sweep": {"type": "boolean"},
                  "grace_seconds": {"type": "number"},
                  "counts": {"type": "object", "additionalProperties": True,
                             "description": "manifests_reviewed, manifests_kept, manifests_deleted, "
                                            "blobs_reviewed, blobs_kept, blobs_deleted, links_deleted, "
                                            "orphans_deleted, bytes_freed."},
                  "tenant_bytes_freed": {"type": "object", "additionalProperties": True,
                                         "description": "How much each tenant's usage dropped."},
                  "errors": {"type": "array", "items": {"type": "string"}},
                  "deleted": {"type": "object", "nullable": True, "additionalProperties": True,
                              "description": "What went (or would go): manifests, links, blobs and orphans, "
                                             "up to 1,000 of each; null in the history."}},
                 ("id", "started_at", "finished_at", "dry_run", "tenant", "sweep", "grace_seconds", "counts",
                  "tenant_bytes_freed", "errors", "deleted")),
    "RetentionPolicy": obj({"tenant": {"type": "string"},
                            "policy": {"type": "object", "additionalProperties": True,
                                       "description": "The document in its normal form (aliases expanded, "
                                                      "defaults written out)."},
                            "updated_at": TIMESTAMP, "updated_by": {"type": "string"}},
                           ("tenant", "policy", "updated_at", "updated_by")),
    "ImmutableTagRules": obj({"tenant": {"type": "string"},
                              "rules": {"type": "array", "items": {"type": "object", "additionalProperties": True},
                                        "description": "The rules in their normal form, in order (a refusal "
                                                       "names the first that matches, counted from 1)."},
                              "updated_at": TIMESTAMP, "updated_by": {"type": "string"}},
                             ("tenant", "rules", "updated_at", "updated_by")),
    "RetentionRun": obj({"id": {"type": "integer", "nullable": True, "description": "null for a dry run "
                                                                                   "(not recorded)."},
                         "started_at": TIMESTAMP, "finished_at": NULLABLE_TIMESTAMP, "dry_run": {"type": "boolean"},
                         "tenant": {"type": "string", "nullable": True},
                         "trigger": {"type": "string", "enum": ["schedule", "api", "cli"]},
                         "actor": {"type": "string", "nullable": True},
                         "counts": {"type": "object", "additionalProperties": True,
                                    "description": "tags, kept, protected, deleted, moved (pushed again after "
                                                   "the run read it: left alone), gone, failed, untagged, "
                                                   "untagged_deleted."},
                         "errors": {"type": "array", "items": {"type": "string"}},
                         "verdicts": {"type": "array", "nullable": True, "description": "Every tag and untagged "
                                      "manifest the run judged (null in the history list).",
                                      "items": obj({"repository": {"type": "string"},
                                                    "tag": {"type": "string", "nullable": True},
                                                    "digest": {"type": "string"},
                                                    "artifact_type": {"type": "string"},
                                                    "action": {"type": "string",
                                                               "enum": ["keep", "protect", "delete"]},
                                                    "outcome": {"type": "string"},
                                                    "rules": {"type": "array", "items": {"type": "string"}},
                                                    "reason": {"type": "string"},
                                                    "pushed_at": TIMESTAMP, "pulled_at": NULLABLE_TIMESTAMP,
                                                    "age_seconds": {"type": "number"}})}},
                        ("id", "started_at", "finished_at", "dry_run", "tenant", "trigger", "counts", "errors",
                         "verdicts")),
    "Webhook": obj({"id": {"type": "integer"}, "tenant": {"type": "string", "nullable": True,
                                                   "description": "null: platform-wide."},
                    "name": {"type": "string"}, "url": {"type": "string"},
                    "event_types": {"type": "array", "items": {"type": "string"}},
                    "repositories": {"type": "array", "items": {"type": "string"}},
                    "enabled": {"type": "boolean"}, "created_at": TIMESTAMP, "created_by": {"type": "string"},
                    "updated_at": TIMESTAMP,
                    "previous_secret_valid_until": {**NULLABLE_TIMESTAMP, "description": "While the previous "
                                                    "secret signs too (after a rotation)."},
                    "secret": {"type": "string", "description": "Only in the answer to a creation or a "
                                                               "rotation."}},
                   ("id", "tenant", "name", "url", "event_types", "repositories", "enabled", "created_at",
                    "created_by", "updated_at", "previous_secret_valid_until")),
    "WebhookDelivery": obj({
        "id": {"type": "integer"}, "event_id": {"type": "string"}, "event_type": {"type": "string"},
        "repository": {"type": "string", "nullable": True},
        "state": {"type": "string", "enum": ["pending", "delivered", "dead"],
                  "description": "pending: queued or being retried; dead: out of attempts (or a forbidden "
                                 "destination): redeliver it to try again."},
        "attempts": {"type": "integer"}, "created_at": TIMESTAMP, "next_attempt_at": NULLABLE_TIMESTAMP,
        "finished_at": NULLABLE_TIMESTAMP, "last_status": {"type": "integer", "nullable": True},
        "last_error": {"type": "string", "nullable": True}, "last_latency_ms": {"type": "number", "nullable": True},
        "log": {"type": "array", "items": obj({"attempt": {"type": "integer"}, "at": TIMESTAMP,
                                               "worker": {"type": "string"},
                                               "status": {"type": "integer", "nullable": True},
                                               "latency_ms": {"type": "number", "nullable": True},
                                               "error": {"type": "string", "nullable": True}},
                                              ("attempt", "at", "worker", "status", "latency_ms", "error"))}},
        ("id", "event_id", "event_type", "repository", "state", "attempts", "created_at", "next_attempt_at",
         "finished_at", "last_status", "last_error", "last_latency_ms", "log")),
    "CloudEvent": _cloudevent_schema(),
    "AuditEntry": obj({"id": {"type": "integer"}, "at": TIMESTAMP, "actor": {"type": "string"},
                       "action": {"type": "string"}, "target": {"type": "string"},
                       "tenant": {"type": "string", "nullable": True},
                       "detail": {"type": "object", "nullable": True, "additionalProperties": True}},
                      ("id", "at", "actor", "action", "target", "tenant", "detail")),
    "IdentityProvider": obj({
        "name": {"type": "string"}, "type": {"type": "string", "enum": list(provider_settings.PROVIDER_TYPES)},
        "cache_seconds": {"type": "number"},
        "source": {"type": "string", "enum": ["config", "api"]},
        "read_only": {"type": "boolean", "description": "Providers of the config file are changed there."},
        "created_at": NULLABLE_TIMESTAMP, "updated_at": NULLABLE_TIMESTAMP,
        "ldap": _settings_schema(provider_settings.LdapSettings, writing=False),
        "oidc": _settings_schema(provider_settings.OidcSettings, writing=False),
        "group_mappings": {"type": "array", "items": obj({
            "group": {"type": "string"}, "tenant": {"type": "string", "nullable": True},
            "role": {**ROLE, "nullable": True}, "platform_admin": {"type": "boolean"}},
            ("group", "tenant", "role", "platform_admin"))}},
        ("name", "type", "cache_seconds", "source", "read_only", "created_at", "updated_at", "group_mappings")),
    "ProviderLookupResult": obj({
        "provider": {"type": "string"}, "available": {"type": "boolean"},
        "error": {"type": "string", "nullable": True},
        "account": {**obj({"username": {"type": "string"}, "display_name": {"type": "string"},
                           "email": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}},
                           "platform_admin": {"type": "boolean"},
                           "memberships": {"type": "array", "items": obj({"tenant": {"type": "string"}, "role": ROLE},
                                                                         ("tenant", "role"))}},
                          ("username", "display_name", "email", "groups", "platform_admin", "memberships")),
                    "nullable": True}},
        ("provider", "available", "error", "account")),
    "Me": obj({"kind": {"type": "string", "enum": ["user", "robot"]}, "name": {"type": "string"},
               "is_admin": {"type": "boolean"},
               "memberships": {"type": "array", "items": obj({"tenant": {"type": "string"}, "role": ROLE},
                                                             ("tenant", "role"))},
               "robot": {**obj({"tenant": {"type": "string"},
                                "repositories": {"type": "array", "items": {"type": "string"}},
                                "actions": {"type": "array", "items": {"type": "string"}},
                                "expires_at": NULLABLE_TIMESTAMP},
                               ("tenant", "repositories", "actions", "expires_at")), "nullable": True}},
              ("kind", "name", "is_admin", "memberships", "robot")),
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["detail"],
                "properties": {"detail": {"type": "string"},
                               "pointer": {"type": "string", "description": "JSON Pointer into the body"},
                               "parameter": {"type": "string", "description": "query parameter"},
                               "gate": {"type": "string", "description": "a failed promotion gate's number"},
                               "scope": {"type": "string", "description": "whose gate: platform or tenant"},
                               "requirement": {"type": "string", "description": "what that gate requires"}}}},
        },
        "required": ["type", "title", "status", "detail"],
    },
}

# Promotion (docs/promotion.md) ---------------------------------------------------------------------
_REFERENCE = {"type": "string", "minLength": 3, "maxLength": 512}
_REASON = {"type": "string", "maxLength": 1000, "description": "Why: kept with the step, in its event and audit row."}
_CHECK = obj({"gate": {"type": "integer", "description": "The gate's number in its document, from 1."},
              "scope": {"type": "string", "enum": ["platform", "tenant"],
                        "description": "Whose document the gate is in: the platform's or the target tenant's."},
              "requirement": {"type": "string", "description": "`annotation KEY`, `referrer ARTIFACT_TYPE` or "
                                                                "`approval by ROLE`."},
              "passed": {"type": "boolean"}, "detail": {"type": "string"}}, ("gate", "requirement", "passed"))
REQUESTS |= {
    "PromotionCreate": obj({
        "source": {**_REFERENCE, "description": "`tenant/repo:tag` or `tenant/repo@digest`: what to promote "
                                                "(you need pull on it)."},
        "target": {**_REFERENCE, "description": "`tenant/repo:tag`: where (you need push on it)."},
    }, ("source", "target"), example={"source": "dev/app:1.2", "target": "prod/app:1.2"}),
    "PromotionDecision": obj({"reason": _REASON}, example={"reason": "passed the staging tests"}),
    "PromotionGatesDocument": {
        "type": "object", "additionalProperties": True,
        "description": "Promotion gates (docs/promotion.md): `gates`, each a glob over target repositories and "
                       "what a promotion into them needs: `annotations` (keys set in the manifest's annotations or "
                       "its config's labels), `referrer_artifact_types` (a referrer of each type), `approval` "
                       "(`role`, `allow_self_approval`). Checked in full: every problem is a 422 error whose "
                       "pointer names the field.",
        "example": {"gates": [{"repositories": "prod/**", "annotations": ["org.opencontainers.image.revision"],
                               "approval": {"role": "maintainer", "allow_self_approval": False}}]}},
}
RESOURCES |= {
    "Promotion": obj({
        "id": {"type": "integer"}, "state": {"type": "string", "enum": ["pending", "completed", "rejected"]},
        "source": {"type": "string", "description": "`repository@digest`: what was (or is to be) copied."},
        "source_reference": {"type": "string", "description": "The tag or digest the request named."},
        "digest": {"type": "string"}, "target": {"type": "string", "description": "`repository:tag`."},
        "requested_by": {"type": "string"}, "requested_at": TIMESTAMP,
        "gates": {"type": "array", "items": _CHECK, "description": "Every gate requirement checked."},
        "approval_role": {"type": "string", "nullable": True,
                          "description": "The role an approver needs in the target's tenant (null: none)."},
        "self_approval": {"type": "boolean", "description": "Whether the requester may approve it."},
        "decided_by": {"type": "string", "nullable": True}, "decided_at": NULLABLE_TIMESTAMP,
        "reason": {"type": "string", "nullable": True}, "completed_at": NULLABLE_TIMESTAMP,
        "copied": {"type": "object", "nullable": True, "additionalProperties": True,
                   "description": "manifests, manifests_new, blobs, bytes: what the copy linked (no bytes moved)."},
    }, ("id", "state", "source", "digest", "target", "requested_by", "requested_at", "gates")),
    "PromotionGates": obj({"tenant": {"type": "string", "nullable": True, "description": "null: the platform's"},
                           "gates": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                           "updated_at": TIMESTAMP, "updated_by": {"type": "string"}},
                          ("tenant", "gates", "updated_at", "updated_by")),
    "Artifact": obj({
        "digest": {"type": "string"}, "media_type": {"type": "string"}, "size": {"type": "integer"},
        "revision": {"type": "string", "nullable": True,
                     "description": "org.opencontainers.image.revision of the annotations, else of the config's "
                                    "labels."},
        "source_url": {"type": "string", "nullable": True,
                       "description": "org.opencontainers.image.source of the annotations, else of the labels."},
        "repositories": {"type": "array", "items": obj({"repository": {"type": "string"},
                                                        "tags": {"type": "array", "items": {"type": "string"}}})},
        "promotions": {"type": "array", "items": ref("Promotion")},
        "referrers": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    }, ("digest", "repositories", "promotions", "referrers")),
}


def page_schema(item: str) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": ref(item)},
                "next_cursor": {"type": "string", "nullable": True,
                                "description": "Pass as ?cursor= for the next page; null on the last page."}},
               ("items", "next_cursor"))


# Validation --------------------------------------------------------------------------------------
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pointer(path: tuple[str | int, ...]) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _errors(value: Any, schema: dict[str, Any], path: tuple[str | int, ...]) -> list[dict[str, str]]:
    def bad(detail: str) -> list[dict[str, str]]:
        return [{"detail": detail, "pointer": _pointer(path)}]

    if value is None:
        return [] if schema.get("nullable") else bad("must not be null")
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return bad(f"must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        return bad("must be one of " + ", ".join(map(str, schema["enum"])))
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            return bad(f"must be at least {schema['minLength']} characters long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return bad(f"must be at most {schema['maxLength']} characters long")
        if "pattern" in schema:
            regex = _PATTERNS.setdefault(schema["pattern"], re.compile(schema["pattern"]))
            if not regex.fullmatch(value):
                # In words, never the regular expression: x-pattern-words says what it asks for.
                return bad("must be lowercase letters and digits, optionally separated by '.', '_', '__' "
                           "or dashes" if schema["pattern"] == COMPONENT_PATTERN
                           else schema.get("x-pattern-words", "is not in the expected form"))
    elif kind in ("integer", "number"):
        if "minimum" in schema and (value < schema["minimum"]
                                    or (schema.get("exclusiveMinimum") and value == schema["minimum"])):
            relation = "greater than" if schema.get("exclusiveMinimum") else "at least"
            return bad(f"must be {relation} {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            return bad(f"must be at most {schema['maximum']}")
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            return bad(f"must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return bad(f"must have at most {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            return bad("must not repeat items")
        found = []
        for i, item in enumerate(value):
            found += _errors(item, schema.get("items", {}), (*path, i))
        return found
    elif kind == "object":
        found = []
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                found += [{"detail": "is required", "pointer": _pointer((*path, name))}]
        for name, item in value.items():
            if name in properties:
                found += _errors(item, properties[name], (*path, name))
            elif schema.get("additionalProperties", True) is False:
                found += [{"detail": "is not a known field", "pointer": _pointer((*path, name))}]
        if not found and len(value) < schema.get("minProperties", 0):
            return bad(f"must set at least {schema['minProperties']} of: {', '.join(properties)}")
        return found
    return []


def validate(body: Any, schema: str) -> None:
    """Raise ValidationFailed (422) listing every field of `body` that breaks request schema `schema`."""
    errors = _errors(body, REQUESTS[schema], ())
    if errors:
        fields = ", ".join(e["pointer"].removeprefix("#/") or "the body" for e in errors[:10])
        raise ValidationFailed(f"invalid request body: {fields}", errors=errors[:100])
