"""The admin API's route table: method, path, handler, and what the OpenAPI document says.

routes.add_routes() registers these (with openapi.ROUTE, the document's own route) and
openapi.document() describes them, so the document is generated from exactly what is served.
The app store's table (hub.handlers.appstore.routes) is made of the same Route rows.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import (
    appimport,
    audit,
    gc,
    members,
    promotions,
    providers,
    repositories,
    retention,
    robots,
    tenants,
    upstreams,
    users,
    webhooks,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # aiohttp syntax below PREFIX; `{name:.+}` may hold slashes
    handler: Handler
    summary: str
    tag: str
    status: int = 200  # of success
    also: tuple[int, ...] = ()  # other success statuses, with the same body
    request: str | None = None  # request body schema (schemas.REQUESTS)
    response: str | None = None  # success body schema (schemas.RESOURCES); None: no body
    paginated: bool = False  # ?limit= and ?cursor=, response is a page of `response`
    conflicts: bool = False  # may answer 409
    missing: bool = False  # may answer 404 though its path has no parameters (what the body names)
    public: bool = False  # no credentials needed
    robots: bool = False  # robots may call it (only GET /me)
    query: tuple[tuple[str, str], ...] = ()  # extra query parameters: (name, description)
    description: str = ""

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", self.full_path)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)(?::[^}]+)?\}", self.path)


R = Route
API_ROUTES: tuple[Route, ...] = (
    R("GET", "/me", users.get_me, "Who the credentials belong to", "me", response="Me", robots=True),
    # Tenants
    R("GET", "/tenants", tenants.list_tenants, "List tenants (all for the platform admin, else your own)",
      "tenants", response="Tenant", paginated=True),
    R("POST", "/tenants", tenants.create_tenant, "Create a tenant (platform admin)", "tenants", 201,
      request="TenantCreate", response="Tenant", conflicts=True),
    R("GET", "/tenants/{tenant}", tenants.get_tenant, "Read a tenant (its members and the platform admin)",
      "tenants", response="Tenant"),
    R("PATCH", "/tenants/{tenant}", tenants.update_tenant, "Change display name or quota (platform admin)",
      "tenants", request="TenantUpdate", response="Tenant"),
    R("DELETE", "/tenants/{tenant}", tenants.delete_tenant, "Delete a tenant without repositories (platform admin)",
      "tenants", 204, conflicts=True,
      description="Refused with 409 while any repository `<tenant>/...` exists. Members and robots go with it."),
    R("GET", "/tenants/{tenant}/quota", tenants.get_quota, "Storage quota and usage of a tenant", "tenants",
      response="Quota",
      description="`used_bytes` sums the sizes of the distinct blobs linked into any repository of the tenant "
                  "and of the distinct manifests stored in them, each digest once."),
    # Members
    R("GET", "/tenants/{tenant}/members", members.list_members, "List members (tenant admin)", "members",
      response="Member", paginated=True),
    R("PUT", "/tenants/{tenant}/members/{username}", members.put_member, "Add a member or change their role "
      "(tenant admin)", "members", request="MemberUpdate", response="Member"),
    R("DELETE", "/tenants/{tenant}/members/{username}", members.delete_member, "Remove a member (tenant admin)",
      "members", 204),
    # Robots
    R("GET", "/tenants/{tenant}/robots", robots.list_robots, "List robot accounts (tenant admin)", "robots",
      response="Robot", paginated=True),
    R("POST", "/tenants/{tenant}/robots", robots.create_robot, "Create a robot account (tenant admin)", "robots",
      201, request="RobotCreate", response="RobotCreated", conflicts=True,
      description="The response holds the robot's secret: it is shown this once and never again."),
    R("GET", "/tenants/{tenant}/robots/{name}", robots.get_robot, "Read a robot account (tenant admin)", "robots",
      response="Robot"),
    R("DELETE", "/tenants/{tenant}/robots/{name}", robots.delete_robot, "Delete a robot account (tenant admin)",
      "robots", 204),
    R("POST", "/tenants/{tenant}/robots/{name}/revoke", robots.revoke_robot,
      "Revoke a robot account: it keeps its record but authenticates no more (tenant admin)", "robots",
      response="Robot"),
    # Repositories and tags (the tag routes come first: they end in /tags...)
    R("GET", "/tenants/{tenant}/repositories", repositories.list_repositories,
      "List the repositories of a tenant that you may pull from", "repositories", response="Repository",
      paginated=True),
    R("GET", "/repositories/{name:.+}/tags", repositories.list_tags, "List tags (needs pull)", "tags",
      response="Tag", paginated=True),
    R("DELETE", "/repositories/{name:.+}/tags/{tag}", repositories.delete_tag, "Delete a tag (needs delete)",
      "tags", 204),
    R("PATCH", "/repositories/{name:.+}", repositories.update_repository,
      "Make a repository public or private (maintainer, tenant admin)", "repositories",
      request="RepositoryUpdate", response="Repository"),
    R("DELETE", "/repositories/{name:.+}", repositories.delete_repository,
      "Delete a repository: its manifests, tags and blob links; blobs are left for GC (maintainer, tenant admin)",
      "repositories", 204),
    # Users
    R("GET", "/users", users.list_users, "List users (platform admin)", "users", response="User", paginated=True),
    R("POST", "/users", users.create_user, "Create a user (platform admin)", "users", 201, request="UserCreate",
      response="User", conflicts=True),
    R("GET", "/users/{username}", users.get_user, "Read a user (platform admin, or yourself)", "users",
      response="User"),
    R("PATCH", "/users/{username}", users.update_user, "Make a user platform admin, or disable them "
      "(platform admin)", "users", request="UserUpdate", response="User", conflicts=True),
    R("DELETE", "/users/{username}", users.delete_user, "Delete a user (platform admin)", "users", 204,
      conflicts=True),
    R("PUT", "/users/{username}/password", users.set_password,
      "Set a password: your own with current_password, anyone's as platform admin", "users", 204,
      request="PasswordChange"),
    R("GET", "/users/{username}/refresh-tokens", users.list_refresh_tokens,
      "List the live refresh tokens of a user (yourself, or anyone as platform admin)", "users",
      response="RefreshToken", paginated=True,
      description="Refresh tokens come from the token endpoint with `offline_token=true` or `access_type=offline`. "
                  "A password change or disabling the user revokes all of them."),
    R("DELETE", "/users/{username}/refresh-tokens", users.revoke_refresh_tokens,
      "Revoke every refresh token of a user (yourself, or anyone as platform admin)", "users", 204,
      description="Access tokens already issued stay valid until they expire (`auth.token_ttl_seconds`)."),
    R("DELETE", "/users/{username}/refresh-tokens/{token_id}", users.revoke_refresh_token,
      "Revoke one refresh token of a user (yourself, or anyone as platform admin)", "users", 204),
    R("GET", "/users/{username}/cli-secrets", users.list_cli_secrets,
      "List the personal CLI secrets of a user (yourself, or anyone as platform admin)", "users",
      response="CliSecret", paginated=True, description="The secrets themselves are never shown again."),
    R("POST", "/users/{username}/cli-secrets", users.create_cli_secret,
      "Create a personal CLI secret (yourself only): the password for docker login", "users", 201,
      request="CliSecretCreate", response="CliSecret", conflicts=True,
      description="The answer holds the secret, once; only its hash is kept. Accounts of an OpenID Connect "
                  "provider have no password: this is how they use docker, podman and skopeo. Refused with "
                  "409 past 20 secrets."),
    R("DELETE", "/users/{username}/cli-secrets/{secret_id}", users.delete_cli_secret,
      "Revoke a personal CLI secret (yourself, or anyone as platform admin)", "users", 204,
      description="The next token request with it is refused; tokens issued before keep their grant until "
                  "they expire (`auth.token_ttl_seconds`)."),
    # Identity providers (docs/sign-in.md)
    R("GET", "/identity-providers", providers.list_identity_providers, "List identity providers: those of "
      "the config file and those made here (platform admin)", "identity-providers", response="IdentityProvider",
      paginated=True, description="Providers of the config file (`auth.providers`) are read-only. Secrets are "
                                  "never shown; `bind_password_set` or `client_secret_set` says whether there is one."),
    R("POST", "/identity-providers", providers.create_identity_provider, "Create an LDAP or OpenID Connect "
      "provider with its group mappings (platform admin)", "identity-providers", 201,
      request="IdentityProviderCreate", response="IdentityProvider", conflicts=True,
      description="Checked as the config file's providers are. Every replica uses it within seconds. The secret "
                  "is write-only. Refused with 409 if the name is taken (the config file's names included)."),
    R("GET", "/identity-providers/{provider}", providers.get_identity_provider, "Read an identity provider "
      "(platform admin)", "identity-providers", response="IdentityProvider"),
    R("PATCH", "/identity-providers/{provider}", providers.update_identity_provider, "Change a provider made "
      "through the API: settings, secret, group mappings (platform admin)", "identity-providers",
      request="IdentityProviderUpdate", response="IdentityProvider", conflicts=True,
      description="The type's section is merged key by key; `group_mappings` replaces the list; a null secret "
                  "clears it, an absent one keeps it. Providers of the config file are read-only (409)."),
    R("DELETE", "/identity-providers/{provider}", providers.delete_identity_provider, "Delete a provider made "
      "through the API (platform admin)", "identity-providers", 204, conflicts=True,
      description="Its accounts can no longer sign in (their rows stay; a provider of the same name made later "
                  "serves them again). Providers of the config file are read-only (409)."),
    R("POST", "/identity-providers/{provider}/lookup", providers.lookup_identity_provider_user,
      "Ask an identity provider about a user now: found or not, groups, and the roles its mappings give "
      "(platform admin)", "identity-providers", request="ProviderLookup", response="ProviderLookupResult",
      description="Bypasses the cache. A provider that cannot be reached answers `available: false` with the "
                  "reason; nothing is provisioned."),
    # Upstreams of the pull-through cache
    R("GET", "/upstreams", upstreams.list_upstreams, "List upstreams, from the config file and the API "
      "(platform admin)", "upstreams", response="Upstream", paginated=True),
    R("POST", "/upstreams", upstreams.create_upstream, "Create an upstream (platform admin)", "upstreams", 201,
      request="UpstreamCreate", response="Upstream", conflicts=True,
      description="Every replica routes to it within `proxy.upstream_refresh_seconds`. Refused with 409 if its "
                  "name or an alias is taken by another upstream, or its name is a tenant's."),
    R("GET", "/upstreams/{upstream}", upstreams.get_upstream, "Read an upstream (platform admin)", "upstreams",
      response="Upstream"),
    R("PATCH", "/upstreams/{upstream}", upstreams.update_upstream, "Change an upstream created through the API "
      "(platform admin)", "upstreams", request="UpstreamUpdate", response="Upstream", conflicts=True,
      description="Upstreams of the config file are read-only (409). A null username or password clears it."),
    R("DELETE", "/upstreams/{upstream}", upstreams.delete_upstream, "Delete an upstream created through the API, "
      "and its cached images (platform admin)", "upstreams", 204, conflicts=True,
      description="Upstreams of the config file are read-only (409)."),
    # Garbage collection
    R("POST", "/gc/runs", gc.start_gc_run, "Run a garbage-collection pass now (platform admin; tenant admins: "
      "a dry run of their tenant)", "gc", 201, request="GcRunRequest", response="GcRun",
      description="Collects what the review queue holds past `gc.grace_seconds`; a dry run changes nothing and "
                  "lists what would go."),
    R("GET", "/gc/runs", gc.list_gc_runs, "The garbage-collection run history, newest first (platform admin; "
      "tenant admins: their tenant's runs)", "gc", response="GcRun", paginated=True,
      query=(("tenant", "Only the runs of this tenant (tenant admins: one they administer)."),)),
    # Retention
    R("GET", "/tenants/{tenant}/retention-policy", retention.get_retention_policy,
      "Read a tenant's retention policy (tenant admin)", "retention", response="RetentionPolicy"),
    R("PUT", "/tenants/{tenant}/retention-policy", retention.put_retention_policy,
      "Set a tenant's retention policy (tenant admin)", "retention", request="RetentionPolicyDocument",
      response="RetentionPolicy",
      description="Replaces the whole document (docs/retention.md). A tag no rule keeps is deleted by the next run: "
                  "preview with a dry run (`POST /retention/runs` with `dry_run`)."),
    R("DELETE", "/tenants/{tenant}/retention-policy", retention.delete_retention_policy,
      "Delete a tenant's retention policy: nothing of it is deleted any more (tenant admin)", "retention", 204),
    R("GET", "/tenants/{tenant}/immutable-tags", retention.get_immutable_tags,
      "Read a tenant's immutable-tag rules (tenant admin)", "retention", response="ImmutableTagRules"),
    R("PUT", "/tenants/{tenant}/immutable-tags", retention.put_immutable_tags,
      "Set a tenant's immutable-tag rules (tenant admin)", "retention", request="ImmutableTagRulesDocument",
      response="ImmutableTagRules",
      description="Replaces every rule (docs/retention.md). A tag a rule matches cannot be moved, re-pushed with "
                  "other content or deleted, by anyone, retention included (DENIED, naming the rule); the same "
                  "content again is accepted. The change is audited with the rules before and after."),
    R("DELETE", "/tenants/{tenant}/immutable-tags", retention.delete_immutable_tags,
      "Remove a tenant's immutable-tag rules: its tags may be moved and deleted again (tenant admin)",
      "retention", 204),
    R("POST", "/retention/runs", retention.start_retention_run, "Run retention now (tenant admin: their tenant; "
      "platform admin: any or all)", "retention", 201, request="RetentionRunRequest", response="RetentionRun",
      description="Every verdict is returned (and, unless a dry run, recorded). Deletion goes through the "
                  "registry's delete path: audited, and GC frees the blobs after gc.grace_seconds."),
    R("GET", "/retention/runs", retention.list_retention_runs, "The retention run history, newest first "
      "(platform admin; tenant admins: their tenant's runs)", "retention", response="RetentionRun",
      paginated=True, query=(("tenant", "Only the runs of this tenant (tenant admins: one they administer)."),)),
    R("GET", "/retention/runs/{run_id}", retention.get_retention_run, "One retention run with every verdict",
      "retention", response="RetentionRun"),
    # Webhooks (docs/events.md)
    # The app store
    R("POST", "/tenants/{tenant}/apps/import", appimport.import_portainer_feed, "Import a Portainer app-template "
      "feed (v2/v3) into a tenant, or preview it (tenant admin)", "appstore", request="PortainerImport",
      response="PortainerImportResult",
      description="Each template becomes the app `<tenant>/<key>`, version 1.0.0: container templates get a "
                  "compose file built from their image, ports, volumes, labels and env; stack templates are "
                  "skipped (their compose file lives in a git repository, which DaoHub does not fetch). A "
                  "version already there is never replaced (`exists`). `url` is fetched only from a host listed "
                  "in `appstore.import_hosts`, without following redirects. One `appstore.import` audit row "
                  "lists what was published."),
    R("GET", "/tenants/{tenant}/webhooks", webhooks.list_tenant_webhooks, "List a tenant's webhook subscriptions "
      "(tenant admin)", "webhooks", response="Webhook", paginated=True),
    R("POST", "/tenants/{tenant}/webhooks", webhooks.create_tenant_webhook, "Subscribe to a tenant's events "
      "(tenant admin)", "webhooks", 201, request="WebhookCreate", response="Webhook", conflicts=True,
      description="The response holds the signing secret: it is shown this once. 409 when the tenant has 25 "
                  "subscriptions already. The URL must be http(s) and "
                  "resolve to public addresses only (unless `webhooks.allowed_networks` allows more): checked "
                  "now and again on every delivery. Each event is POSTed as a CloudEvent (schema `CloudEvent`)."),
    R("GET", "/webhooks", webhooks.list_platform_webhooks, "List platform-wide webhook subscriptions (platform "
      "admin)", "webhooks", response="Webhook", paginated=True),
    R("POST", "/webhooks", webhooks.create_platform_webhook, "Subscribe to every tenant's events (platform admin)",
      "webhooks", 201, request="WebhookCreate", response="Webhook", conflicts=True,
      description="As a tenant's subscription, for the events of every tenant."),
    R("GET", "/webhooks/{webhook_id}", webhooks.get_webhook, "Read a webhook subscription (who manages it)",
      "webhooks", response="Webhook"),
    R("PATCH", "/webhooks/{webhook_id}", webhooks.update_webhook, "Change a webhook subscription (who manages it)",
      "webhooks", request="WebhookUpdate", response="Webhook"),
    R("DELETE", "/webhooks/{webhook_id}", webhooks.delete_webhook, "Delete a webhook subscription and its delivery "
      "log (who manages it)", "webhooks", 204),
    R("POST", "/webhooks/{webhook_id}/secret", webhooks.rotate_webhook_secret, "Rotate the signing secret: the "
      "previous one keeps signing for a while (who manages it)", "webhooks", request="WebhookSecretRotation",
      response="Webhook",
      description="Deliveries carry a signature by each secret in force: the new one, and the previous one "
                  "until `previous_valid_seconds` have passed. The new secret is in the response, this once."),
    R("GET", "/webhooks/{webhook_id}/deliveries", webhooks.list_webhook_deliveries, "The delivery log, newest "
      "first: each delivery's state and every attempt's status, latency and error (who manages it)", "webhooks",
      response="WebhookDelivery", paginated=True,
      query=(("state", "Only deliveries in this state: pending, delivered or dead."),)),
    R("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", webhooks.redeliver_webhook_delivery,
      "Send a delivered or dead delivery again, with a new retry budget (who manages it)", "webhooks", 204,
      conflicts=True, description="409 while the delivery is queued already."),
    # Promotion and traceability (docs/promotion.md)
    R("GET", "/tenants/{tenant}/promotion-gates", promotions.get_promotion_gates,
      "Read a tenant's promotion gates (tenant admin)", "promotions", response="PromotionGates"),
    R("PUT", "/tenants/{tenant}/promotion-gates", promotions.put_promotion_gates,
      "Set a tenant's promotion gates (tenant admin)", "promotions", request="PromotionGatesDocument",
      response="PromotionGates",
      description="Replaces every gate. A promotion into a repository a gate's glob matches must have the gate's "
                  "annotations (or config labels) and referrer artifact types, and waits for an approval when the "
                  "gate asks for one. Audited with the gates before and after."),
    R("DELETE", "/tenants/{tenant}/promotion-gates", promotions.delete_promotion_gates,
      "Remove a tenant's promotion gates: promotions into it complete at once (tenant admin)", "promotions", 204),
    R("GET", "/promotion-gates", promotions.get_platform_promotion_gates,
      "Read the platform's promotion gates, which apply to every tenant (platform admin)", "promotions",
      response="PromotionGates", missing=True),
    R("PUT", "/promotion-gates", promotions.put_platform_promotion_gates,
      "Set the platform's promotion gates, for every tenant's targets (platform admin)", "promotions",
      request="PromotionGatesDocument", response="PromotionGates",
      description="A promotion must pass the platform's gates that match its target as well as its tenant's."),
    R("DELETE", "/promotion-gates", promotions.delete_platform_promotion_gates,
      "Remove the platform's promotion gates (platform admin)", "promotions", 204, missing=True),
    R("POST", "/promotions", promotions.create_promotion, "Promote a manifest (with its child manifests and "
      "referrers) to another repository (pull on the source, push on the target)", "promotions", 201,
      request="PromotionCreate", response="Promotion", conflicts=True, also=(202,), missing=True,
      description="201: completed (blob links and manifest rows, no bytes moved). 202: pending, waiting for the "
                  "approval a gate asks for. 422 (`promotion-gates-failed`) lists every gate requirement the "
                  "manifest fails; nothing is recorded. A source you may not pull is 404, as one that does not "
                  "exist. The target's quota and immutable tags apply (403)."),
    R("GET", "/promotions", promotions.list_promotions, "List promotions, newest first (those of your tenants; "
      "every one for the platform admin)", "promotions", response="Promotion", paginated=True,
      query=(("state", "Only promotions in this state: pending, completed or rejected."),
             ("digest", "Only promotions of this manifest digest."))),
    R("GET", "/promotions/{promotion_id}", promotions.get_promotion, "Read a promotion (members of its source's "
      "or target's tenant)", "promotions", response="Promotion"),
    R("POST", "/promotions/{promotion_id}/approve", promotions.approve_promotion,
      "Approve a pending promotion and complete it (a user with the gate's role in the target's tenant)",
      "promotions", request="PromotionDecision", response="Promotion", conflicts=True,
      description="The gates are checked again. The requester may not approve their own promotion unless every "
                  "approval gate allows self-approval (403). 409 when it is not pending."),
    R("POST", "/promotions/{promotion_id}/reject", promotions.reject_promotion,
      "Reject a pending promotion (an approver, or its requester withdrawing it)", "promotions",
      request="PromotionDecision", response="Promotion", conflicts=True),
    R("GET", "/artifacts/{digest}", promotions.get_artifact, "Trace a manifest: its source revision and URL, the "
      "repositories and tags holding it, the promotions that moved it and its referrers (what you may pull)",
      "promotions", response="Artifact"),
    # Audit
    R("GET", "/audit", audit.list_audit, "Read the audit log, newest first (platform admin; tenant admins: "
      "their tenants' rows)", "audit", response="AuditEntry", paginated=True,
      query=(("tenant", "Only the rows concerning this tenant (tenant admins: one they administer)."),)),
)

