"""What the identity providers are given to run: `ProviderSpec` (one `auth.providers` item of the
config file) with its type's own section (`LdapSettings` for `type: ldap`, `OidcSettings` for
`type: oidc`) and its `GroupMapping` rules, and `check_providers`, which validates a list of them.

Plain values (docs/sign-in.md; L0 like hub/proxy/settings.py): hub.config builds and checks them,
auth/providers turns them into providers. This module imports nothing of the project but
`hub.secret`.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from hub.secret import Secret

PROVIDER_TYPES = ("ldap", "oidc")
# ID token signature algorithms DaoHub accepts at all: asymmetric ones only. HMAC (HS*) would let
# anyone holding the client secret, or a key confused with the public one, mint tokens; "none" is
# no signature.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CLAIM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,99}")
ROLES = ("guest", "developer", "maintainer", "admin")
GROUP_SOURCES = ("member_of", "search", "none")
# A provider's name, a tenant's name: one repository-name component (hub/registry/names.py's grammar).
NAME_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
RESERVED_NAMES = ("local",)


@dataclasses.dataclass
class GroupMapping:
    """One rule: members of `group` get `role` in `tenant`, and/or are platform admins."""

    # The directory group: for LDAP its DN (compared case-insensitively, spaces around ',' and '='
    # ignored), e.g. cn=developers,ou=groups,dc=example,dc=org.
    group: str = ""
    # guest | developer | maintainer | admin in `tenant` (both, or neither when platform_admin).
    tenant: str = ""
    role: str = ""
    platform_admin: bool = False


@dataclasses.dataclass
class LdapSettings:
    """`auth.providers[i].ldap`: an LDAP or Active Directory server (auth/providers/ldap.py)."""

    # ldap://host[:389] (with start_tls: true for TLS) or ldaps://host[:636].
    url: str = ""
    start_tls: bool = False
    # Server certificates are verified (against ca_file, else the system's CAs) unless this says no.
    verify_tls: bool = True
    ca_file: str = ""
    # The account that searches for users (and groups); both empty: an anonymous search.
    bind_dn: str = ""
    bind_password: Secret = Secret("")  # noqa: RUF009 (immutable)
    # Or the password read from this file (a mounted secret), trailing newline dropped.
    bind_password_file: str = ""
    # Where users are and how one is found: {username} is replaced by the login name, escaped
    # as RFC 4515 says (so `*)(uid=*` stays a literal name).
    user_search_base: str = ""
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={username}))"
    # The attributes holding the login name (AD: sAMAccountName), display name and email.
    username_attribute: str = "uid"
    display_name_attribute: str = "cn"
    email_attribute: str = "mail"
    # Group membership: member_of reads the user's memberOf attribute (AD, OpenLDAP's memberof
    # overlay); search looks for groups under group_search_base with group_filter, where {dn} is
    # the user's DN and {username} the login name, both escaped; none: no groups.
    group_source: str = "member_of"
    member_of_attribute: str = "memberOf"
    group_search_base: str = ""
    group_filter: str = "(&(objectClass=groupOfNames)(member={dn}))"
    # Seconds to connect, and to wait for each answer; a server slower than this is down (503).
    timeout_seconds: float = 5.0


@dataclasses.dataclass
class OidcSettings:
    """`auth.providers[i].oidc`: an OpenID Connect provider (auth/providers/oidc.py)."""

    # The issuer URL exactly as the provider's discovery document and ID tokens name it
    # (https://login.example.com/realms/corp); discovery is <issuer>/.well-known/openid-configuration.
    issuer: str = ""
    client_id: str = ""
    client_secret: Secret = Secret("")  # noqa: RUF009 (immutable)
    # Or the secret read from this file (a mounted secret), trailing newline dropped.
    client_secret_file: str = ""
    # Scopes asked for at sign-in; "openid" is always sent.
    scopes: list[str] = dataclasses.field(default_factory=lambda: ["openid", "profile", "email", "groups"])
    # The ID token claims holding the groups (a list of strings, or one string) and the login name.
    groups_claim: str = "groups"
    username_claim: str = "preferred_username"
    # Signature algorithms an ID token may use (a subset of OIDC_ALGORITHMS: never none or HS*).
    allowed_algs: list[str] = dataclasses.field(default_factory=lambda: ["RS256", "ES256"])
    verify_tls: bool = True
    ca_file: str = ""
    # Endpoints discovery may name off the issuer's origin (scheme, host and port) are refused
    # unless listed here exactly; or set an endpoint here to use it instead of the discovered one.
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    jwks_uri: str = ""
    # The label of the "Sign in with ..." button (default: the provider's name).
    display_name: str = ""
    # CLI secrets and tokens of a user are granted from the groups of their last browser sign-in,
    # for at most this long; after it the user must sign in on the web again (0: no limit).
    groups_max_age_seconds: float = 7 * 24 * 3600.0
    timeout_seconds: float = 10.0


@dataclasses.dataclass
class ProviderSpec:
    """One `auth.providers` item. Providers are asked in this order for users without a row yet."""

    # One name component other than "local"; stored with each account it provisions, so
    # renaming a provider orphans its accounts (they can no longer sign in).
    name: str = ""
    type: str = ""  # ldap | oidc
    # A directory answer (a user's groups, that they still exist, a successful bind for one
    # password) is reused for this many seconds; 0: every sign-in and token request asks.
    cache_seconds: float = 30.0
    group_mappings: list[GroupMapping] = dataclasses.field(default_factory=list)
    ldap: LdapSettings = dataclasses.field(default_factory=LdapSettings)
    oidc: OidcSettings = dataclasses.field(default_factory=OidcSettings)


def check_providers(specs: list[ProviderSpec], where: str = "auth.providers") -> None:
    """Raise ValueError naming the first bad setting."""
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        at = f"{where}[{i}]"
        if not NAME_RE.fullmatch(spec.name) or len(spec.name) > 64 or spec.name in RESERVED_NAMES:
            raise ValueError(f"{at}.name: {spec.name!r} must be one name component (lowercase letters, digits, "
                             f"'.', '_', '-'), at most 64 characters, and not {' or '.join(RESERVED_NAMES)}")
        if spec.name in seen:
            raise ValueError(f"{at}.name: {spec.name!r} names another provider already")
        seen.add(spec.name)
        if spec.type not in PROVIDER_TYPES:
            raise ValueError(f"{at}.type: must be one of {', '.join(PROVIDER_TYPES)}, got {spec.type!r}")
        if spec.cache_seconds < 0:
            raise ValueError(f"{at}.cache_seconds must not be negative")
        for j, rule in enumerate(spec.group_mappings):
            _check_mapping(rule, f"{at}.group_mappings[{j}]")
        if spec.type == "ldap":
            _check_ldap(spec.ldap, f"{at}.ldap")
        else:
            _check_oidc(spec.oidc, f"{at}.oidc")


def check_url(url: str, at: str, *, required: bool = True) -> None:
    """An http(s) URL with a host and no credentials, fragment or query (https, or http on loopback)."""
    if not url and not required:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password \
            or parts.fragment or parts.query:
        raise ValueError(f"{at}: expected an https:// URL without credentials, query or fragment, got {url!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"{at}: http:// is only for loopback (127.0.0.1, ::1, localhost); use https://")


def _check_oidc(oidc: OidcSettings, at: str) -> None:
    check_url(oidc.issuer, f"{at}.issuer")
    if not oidc.client_id.strip():
        raise ValueError(f"{at}.client_id is required")
    if oidc.client_secret and oidc.client_secret_file:
        raise ValueError(f"{at}: give client_secret or client_secret_file, not both")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        check_url(getattr(oidc, key), f"{at}.{key}", required=False)
    if not oidc.allowed_algs:
        raise ValueError(f"{at}.allowed_algs must name at least one algorithm")
    for alg in oidc.allowed_algs:
        if alg not in OIDC_ALGORITHMS:
            raise ValueError(f"{at}.allowed_algs: {alg!r} is not allowed; choose from {', '.join(OIDC_ALGORITHMS)} "
                             "(never none or an HMAC algorithm)")
    for key in ("groups_claim", "username_claim"):
        if not CLAIM_RE.fullmatch(getattr(oidc, key)):
            raise ValueError(f"{at}.{key}: {getattr(oidc, key)!r} is not a claim name")
    for scope in oidc.scopes:
        if not re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", scope):
            raise ValueError(f"{at}.scopes: {scope!r} is not a scope token")
    if oidc.timeout_seconds <= 0:
        raise ValueError(f"{at}.timeout_seconds must be positive")
    if oidc.groups_max_age_seconds < 0:
        raise ValueError(f"{at}.groups_max_age_seconds must not be negative")


def _check_mapping(rule: GroupMapping, at: str) -> None:
    if not rule.group.strip():
        raise ValueError(f"{at}.group must name a directory group")
    if rule.role or rule.tenant:
        if rule.role not in ROLES:
            raise ValueError(f"{at}.role: must be one of {', '.join(ROLES)}, got {rule.role!r}")
        if not NAME_RE.fullmatch(rule.tenant) or len(rule.tenant) > 64:
            raise ValueError(f"{at}.tenant: {rule.tenant!r} is not a tenant name")
    elif not rule.platform_admin:
        raise ValueError(f"{at}: give a tenant and role, or platform_admin: true")


def _check_ldap(ldap: LdapSettings, at: str) -> None:
    scheme, sep, rest = ldap.url.partition("://")
    if scheme not in ("ldap", "ldaps") or not sep or not rest.strip("/"):
        raise ValueError(f"{at}.url: expected ldap://host[:port] or ldaps://host[:port], got {ldap.url!r}")
    if scheme == "ldaps" and ldap.start_tls:
        raise ValueError(f"{at}: start_tls is for ldap:// URLs; ldaps:// speaks TLS from the start")
    if ldap.bind_password and ldap.bind_password_file:
        raise ValueError(f"{at}: give bind_password or bind_password_file, not both")
    has_password = bool(ldap.bind_password or ldap.bind_password_file)
    if bool(ldap.bind_dn) != has_password:
        # A bind DN with an empty password would be an unauthenticated bind (RFC 4513 5.1.2), which
        # servers answer as anonymous: never do that by accident.
        raise ValueError(f"{at}: bind_dn and a bind password go together (both empty: anonymous search)")
    if not ldap.user_search_base.strip():
        raise ValueError(f"{at}.user_search_base is required")
    _check_filter(ldap.user_filter, f"{at}.user_filter", ("{username}",))
    for key in ("username_attribute", "display_name_attribute", "email_attribute", "member_of_attribute"):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", getattr(ldap, key)):
            raise ValueError(f"{at}.{key}: {getattr(ldap, key)!r} is not an attribute name")
    if ldap.group_source not in GROUP_SOURCES:
        raise ValueError(f"{at}.group_source: must be one of {', '.join(GROUP_SOURCES)}, got {ldap.group_source!r}")
    if ldap.group_source == "search":
        if not ldap.group_search_base.strip():
            raise ValueError(f"{at}.group_search_base is required with group_source: search")
        _check_filter(ldap.group_filter, f"{at}.group_filter", ("{dn}", "{username}"))
    if ldap.timeout_seconds <= 0:
        raise ValueError(f"{at}.timeout_seconds must be positive")


def _check_filter(template: str, at: str, placeholders: tuple[str, ...]) -> None:
    if not any(p in template for p in placeholders):
        raise ValueError(f"{at}: must contain {' or '.join(placeholders)}, got {template!r}")
    depth = 0
    for ch in template:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if not template.startswith("(") or depth != 0:
        raise ValueError(f"{at}: not a parenthesised LDAP filter: {template!r}")
    rest = template
    for p in placeholders:
        rest = rest.replace(p, "")
    if "{" in rest or "}" in rest:
        raise ValueError(f"{at}: the only placeholders are {', '.join(placeholders)}: {template!r}")


# Providers kept in the metadata store (the admin API's): as JSON, their secret apart -------------------
SECRET_FIELDS = {"ldap": "bind_password", "oidc": "client_secret"}
FILE_FIELDS = {"ldap": "bind_password_file", "oidc": "client_secret_file"}


def spec_to_json(spec: ProviderSpec) -> dict:
    """The provider as the store keeps it (and the API shows it): every setting but its secret, and
    only its own type's section."""
    section = getattr(spec, spec.type)
    settings = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)
                if f.name != SECRET_FIELDS[spec.type]}
    return {"cache_seconds": spec.cache_seconds, spec.type: settings,
            "group_mappings": [dataclasses.asdict(m) for m in spec.group_mappings]}


def spec_from_json(name: str, type_: str, doc: dict, secret: str = "") -> ProviderSpec:
    """A ProviderSpec from `spec_to_json`'s form (or the admin API's body of that shape) and its secret.
    Raises ValueError for a key that is not a setting; check_providers checks the values."""
    if type_ not in PROVIDER_TYPES:
        raise ValueError(f"type: must be one of {', '.join(PROVIDER_TYPES)}, got {type_!r}")
    unknown = set(doc) - {"cache_seconds", "group_mappings", type_}
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    section_type = {"ldap": LdapSettings, "oidc": OidcSettings}[type_]
    values = dict(doc.get(type_) or {})
    fields = {f.name for f in dataclasses.fields(section_type)}
    if set(values) - fields:
        raise ValueError(f"{type_}: unknown settings {sorted(set(values) - fields)}")
    values.pop(SECRET_FIELDS[type_], None)
    section = section_type(**values, **{SECRET_FIELDS[type_]: Secret(secret)})
    mappings = [GroupMapping(**m) for m in doc.get("group_mappings") or []]
    spec = ProviderSpec(name=name, type=type_, group_mappings=mappings, **{type_: section})
    if "cache_seconds" in doc:
        spec.cache_seconds = float(doc["cache_seconds"])
    return spec
