"""Typed configuration: safe defaults < YAML file < DAOHUB_* environment < CLI flags.

Every key can be set from the environment as DAOHUB_<SECTION>_<KEY> (top-level keys as
DAOHUB_<KEY>). Unknown keys, in the file or in the environment, are errors. Values of
type `Secret` never appear in logs or reprs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

import storage_backends

from auth.provider_settings import ProviderSpec, check_providers

from .proxy.names import HOST_PORT
from .proxy.settings import ProxySettings, UpstreamSpec
from .secret import Secret  # re-exported: `from hub.config import Secret` keeps working

log = logging.getLogger("daohub.config")


class ConfigError(ValueError):
    pass


@dataclasses.dataclass
class TlsConfig:
    """HTTPS in `serve` (hub/tls.py). Off while cert_file and key_file are empty."""

    # PEM certificate chain (server certificate first) and its private key.
    cert_file: str = ""
    key_file: str = ""
    # PEM CA certificates for mutual TLS: when set, every client must present a certificate
    # they signed. Reloaded like the pair (a new TLS context; uvloop: at restart only).
    client_ca_file: str = ""
    # Lowest protocol version accepted: "1.2" or "1.3".
    min_version: str = "1.2"
    # Seconds between checks of cert_file, key_file and client_ca_file (SIGHUP reloads at once);
    # 0 turns the polling off.
    reload_interval_seconds: float = 5.0
    # Optional plain-HTTP HOST:PORT beside the TLS port that answers /healthz and /readyz only.
    health_addr: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file or self.key_file)


@dataclasses.dataclass
class ServerConfig:
    addr: str = "127.0.0.1:5000"
    # Seconds in-flight requests get to finish on SIGTERM.
    shutdown_timeout: float = 30.0
    # External URL of this registry, if behind a proxy (used in absolute links).
    public_url: str = ""
    # A request body that sends nothing for this many seconds is treated as a disconnect.
    body_idle_timeout: float = 60.0
    # "asyncio" serves local blobs with sendfile(2); uvloop has no sendfile and copies.
    event_loop: str = "asyncio"
    # Reverse proxies (CIDRs) whose X-Forwarded-For names the client: the login limiter counts
    # by the right-most address in it that is not one of these. Empty: the peer is the client.
    # From the environment comma-separated: DAOHUB_SERVER_TRUSTED_PROXIES=10.0.0.0/8,::1/128
    trusted_proxies: list[str] = dataclasses.field(default_factory=list)
    tls: TlsConfig = dataclasses.field(default_factory=TlsConfig)


# The flat storage keys of the old form (storage.bucket, DAOHUB_STORAGE_BUCKET, ...) and where each
# goes now: flat key -> (the drivers that have it, its key in storage.<driver>). A flat key is
# applied to the chosen driver's section, with one warning per load; for a driver without it, it is
# an error.
_S3_FLAT_KEYS = ("bucket", "region", "endpoint", "internal_endpoint", "access_key", "secret_key",
                 "session_token", "addressing_style", "prefix", "part_size_bytes", "max_attempts", "verify_tls",
                 "redirect", "redirect_expiry_seconds", "socket_reads")
LEGACY_STORAGE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "root": (("filesystem",), "root"),
    "nfs_url": (("nfs",), "url"),
    "nfs_threads": (("nfs",), "threads"),
    **{key: (("s3", "oss"), key) for key in _S3_FLAT_KEYS},
}


@dataclasses.dataclass
class StorageConfig:
    """storage: the driver, and one section per driver (storage.s3.bucket, DAOHUB_STORAGE_S3_BUCKET)
    whose keys are the fields of the driver's params type (storage_backends.params_type:
    FilesystemParams, NfsParams, S3Params, OssParams). Only the chosen driver's section is used;
    every section given is checked for unknown keys and types."""

    # filesystem | s3 | oss | nfs | memory (tests only)
    driver: str = "filesystem"
    # Every setting in the order the sources gave it (file, environment, overrides: a later one
    # wins): (where, driver or None for a flat key of the old form, key, value).
    writes: list[tuple[str, str | None, str, Any]] = dataclasses.field(
        default_factory=list, metadata={"internal": True})

    def apply(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping")
        for key, value in data.items():
            path = f"{where}.{key}"
            if key == "driver":
                self.driver = _coerce(value, str, path)
            elif key in storage_backends.available():
                if not isinstance(value or {}, dict):
                    raise ConfigError(f"{path}: expected a mapping")
                for name, item in (value or {}).items():
                    self._set(key, name, item, f"{path}.{name}")
            elif key in LEGACY_STORAGE_KEYS:
                self._set_flat(key, value, path)
            else:
                raise ConfigError(f"unknown configuration key: {path}")

    def apply_env(self, name: str, value: str) -> None:
        """DAOHUB_STORAGE_<DRIVER>_<KEY>, or a flat DAOHUB_STORAGE_<KEY> of the old form (the old
        DAOHUB_STORAGE_NFS_URL and _NFS_THREADS are spelled like the new form, and are taken as it)."""
        rest = name.removeprefix("DAOHUB_STORAGE_").lower()
        driver = next((d for d in storage_backends.available() if rest.startswith(d + "_")), None)
        if driver and (rest[len(driver) + 1:] in _fields(driver) or rest not in LEGACY_STORAGE_KEYS):
            self._set(driver, rest[len(driver) + 1:], value, name)
        elif rest in LEGACY_STORAGE_KEYS:
            self._set_flat(rest, value, name)
        else:
            raise ConfigError(f"unknown configuration variable: {name} (storage settings are "
                              f"DAOHUB_STORAGE_<DRIVER>_<KEY>; drivers: {', '.join(storage_backends.available())})")

    def _set(self, driver: str, key: str, value: Any, where: str) -> None:
        hints = _fields(driver)
        if key not in hints:
            allowed = ", ".join(hints) or "none"
            raise ConfigError(f"{where}: unknown setting {key!r} of storage driver {driver}; allowed: {allowed}")
        self.writes.append((where, driver, key, _coerce(value, hints[key], where)))

    def _set_flat(self, flat: str, value: Any, where: str) -> None:
        drivers, key = LEGACY_STORAGE_KEYS[flat]  # typed now (as the first driver types it: a Secret stays one)
        self.writes.append((where, None, flat, _coerce(value, _fields(drivers[0])[key], where)))

    def legacy(self) -> list[str]:
        """Where flat keys of the old form were given."""
        return [where for where, driver, _, _ in self.writes if driver is None]

    def settings(self, default_root: Path) -> dict[str, Any]:
        """The chosen driver's section, flat keys mapped onto it; an empty filesystem root is
        `default_root`."""
        section: dict[str, Any] = {"root": ""} if self.driver == "filesystem" else {}
        hints = _fields(self.driver)
        for where, driver, key, value in self.writes:
            if driver is None:
                drivers, key = LEGACY_STORAGE_KEYS[key]
                if self.driver not in drivers:
                    raise ConfigError(f"{where}: storage driver {self.driver} has no setting {key!r} (a flat "
                                      f"storage key is a setting of the chosen driver; storage.{self.driver} "
                                      f"has: {', '.join(hints) or 'none'})")
            elif driver != self.driver:
                continue
            section[key] = value
        if self.driver == "filesystem" and not section["root"]:
            section["root"] = str(default_root)
        return section


def _fields(driver: str) -> dict[str, Any]:
    """The config keys of a storage driver and their types: the fields of its params type."""
    try:
        kind = storage_backends.params_type(driver)
    except ValueError as exc:
        raise ConfigError(f"storage.driver: {exc}") from None
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


@dataclasses.dataclass
class DatabaseConfig:
    # sqlite:///path/to/file.db ; empty means sqlite:///<data_dir>/daohub.db
    url: str = ""
    # SQLite synchronous mode: FULL survives power loss, NORMAL survives process crashes.
    sqlite_synchronous: str = "FULL"
    # PostgreSQL connection pool bounds, per replica.
    pool_min_size: int = 2
    pool_max_size: int = 20


@dataclasses.dataclass
class LogConfig:
    level: str = "INFO"
    # "json" or "text"
    format: str = "text"
    access_log: bool = True


@dataclasses.dataclass
class RegistryConfig:
    max_manifest_bytes: int = 4 * 1024 * 1024
    # Largest single blob accepted, in bytes (0: no limit).
    max_blob_bytes: int = 0
    # Uploads untouched for this long are abandoned and may be purged by GC.
    upload_ttl_seconds: int = 24 * 3600
    # How often each process looks for abandoned uploads (0 disables the background purge).
    upload_purge_interval_seconds: int = 900
    # Default and maximum page size for tag and catalog listings.
    default_page_size: int = 1000
    max_page_size: int = 10000


@dataclasses.dataclass
class AuthConfig:
    # On by default. An open registry (auth.enabled: false) is for loopback, tests and demos.
    enabled: bool = True
    # The token service's name (the JWT audience) and issuer.
    service: str = "daohub"
    issuer: str = "daohub"
    # Token endpoint URL sent in challenges; empty means <scheme>://<Host header>/auth/token.
    realm: str = ""
    token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Rotated-out signing keys still accepted for tokens they signed.
    keep_previous_keys: int = 2
    # argon2id cost for stored passwords (RFC 9106's second recommended setting by default).
    password_memory_kib: int = 65536
    password_time_cost: int = 3
    # Failed logins allowed per (account, client address), and per client address whatever the
    # account, in each window; then 429 until the window ends.
    login_failure_limit: int = 10
    login_address_failure_limit: int = 100
    login_failure_window_seconds: int = 300
    # Serving with auth off on a non-loopback address must be asked for by name.
    allow_open_non_loopback: bool = False
    # Directory sign-in (docs/sign-in.md): LDAP/Active Directory servers, asked in this order for
    # accounts that are not local. YAML only (from the environment: DAOHUB_AUTH_PROVIDERS as a
    # YAML/JSON list). Local accounts always work, whatever a provider's state.
    providers: list[ProviderSpec] = dataclasses.field(default_factory=list)


# One `proxy.upstreams` item: the proxy's own type (hub/proxy/settings.py), under its old name too.
UpstreamConfig = UpstreamSpec


@dataclasses.dataclass
class ProxyConfig:
    # YAML only: a list of mappings (from the environment: DAOHUB_PROXY_UPSTREAMS as a
    # YAML/JSON list, e.g. '[{"name": "docker.io", "url": "https://registry-1.docker.io"}]').
    upstreams: list[UpstreamConfig] = dataclasses.field(default_factory=list)
    # The upstream (by name) that serves names outside every tenant: Docker's registry-mirrors.
    default_mirror: str = ""
    connect_timeout_seconds: float = 10.0
    # An upstream that sends nothing for this long (headers or body) counts as unavailable.
    read_timeout_seconds: float = 60.0
    # Local scratch space where blobs being fetched are spooled for every waiting client when
    # storage is not a local disk (S3, OSS, nfs driver); empty means <data_dir>/proxy-spool.
    spool_dir: str = ""
    # How often the serve process evicts from caches over their size cap or TTL (one replica
    # at a time); 0 turns the periodic run off (`daohub proxy evict` still works).
    eviction_interval_seconds: int = 3600
    # A cached image's last-pulled time is written at most this often per image (pulls in
    # between only touch memory), so eviction order is this precise.
    pull_record_seconds: int = 300
    # Upstreams created through the admin API reach other replicas within this many seconds
    # (each replica checks the store's change counter at most this often).
    upstream_refresh_seconds: float = 5.0


@dataclasses.dataclass
class AppStoreConfig:
    # The first `daohub serve` of an empty registry (no tenant, no repository) publishes the seed
    # app catalog (appstore/seeds) into the public tenant `apps`, once across replicas; never again
    # after, so apps deleted later stay deleted.
    seed_on_first_start: bool = True
    # A published app version's own tag (1.2.0 of version 1.2.0, however it was pushed: the app
    # store's publish, `docker compose publish`, oras) never moves to other content; `latest` and
    # other tags still move. Withdraw a version by deprecating or deleting it and publish a new
    # one. Off: versions may be overwritten in place.
    immutable_versions: bool = True
    # Hosts whose Portainer app-template feeds may be imported by URL (the admin API, the import
    # page, `daohub app import URL`): `host` or `host:port`, matched exactly (case-insensitive);
    # redirects are not followed. Empty: feeds are imported from uploaded files only. DaoHub never
    # dials a host a request names unless it is listed here.
    import_hosts: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class GcConfig:
    """Online garbage collection (hub/registry/gc.py)."""

    # A pass runs in `serve` every interval_seconds (on every replica: PostgreSQL workers share
    # the review queue; on SQLite a pass already running elsewhere is skipped).
    enabled: bool = True
    interval_seconds: float = 600.0
    # How long a deleted manifest's blobs, an untagged manifest or an unreferenced link wait
    # before they are collected (a re-push within it keeps them); also the minimum age of an
    # object the storage sweep deletes.
    grace_seconds: float = 86400.0
    # Reviews taken per claim, and how long a claim keeps other workers off (a killed worker's
    # claims come free after it).
    batch_size: int = 500
    lease_seconds: float = 300.0


@dataclasses.dataclass
class RetentionConfig:
    """Retention runs and tag pull times (hub/registry/retention.py, hub/registry/pulls.py)."""

    # A scheduled run (every tenant with a policy) every interval_seconds, exactly once across
    # replicas: each interval is a slot that one replica claims in the store. A tenant without a
    # policy loses nothing, so this is on by default.
    enabled: bool = True
    interval_seconds: float = 86400.0
    # A run renews its claim as it goes; a replica killed mid-run lets another take the slot over
    # once the claim is this old.
    lease_seconds: float = 300.0
    # Pull times of tags (for the pulled_* keep conditions) are kept in memory and written in one
    # upsert every flush seconds or flush_entries distinct tags, whichever comes first (a killed
    # replica loses at most that). record_pulls: false records none (rules on pulls then see none).
    record_pulls: bool = True
    pull_flush_seconds: float = 1.0
    pull_flush_entries: int = 10_000


@dataclasses.dataclass
class EventsConfig:
    """The event outbox (hub/db/event_store.py, docs/events.md)."""

    # Events older than this whose deliveries are all finished (delivered or dead) are deleted,
    # with their delivery log, by a prune every prune_interval_seconds (any replica; idempotent).
    keep_seconds: float = 7 * 86400.0
    prune_interval_seconds: float = 600.0
    # One aggregated `pull` event per tag (or digest) per pull-buffer flush (retention.record_pulls
    # must be on: the same buffer).
    pull_events: bool = True


@dataclasses.dataclass
class WebhooksConfig:
    """Webhook delivery (hub/events/delivery.py, docs/events.md)."""

    # Every replica runs a delivery worker; each delivery is claimed by one of them.
    enabled: bool = True
    # Destinations a webhook may have besides public addresses: CIDRs (e.g. 10.0.0.0/8,
    # 127.0.0.1/32). Loopback, link-local, private and other non-global addresses are refused
    # otherwise, at creation and at delivery (on the address the name resolves to then). Only the
    # platform admin sets this (it is configuration).
    allowed_networks: list[str] = dataclasses.field(default_factory=list)
    # One attempt: connect and answer within timeout_seconds; at most max_response_bytes of the
    # answer are read. Redirects are never followed (a 3xx is a failure).
    timeout_seconds: float = 10.0
    max_response_bytes: int = 64 * 1024
    # Retries: the n-th retry waits min(backoff_max_seconds, backoff_base_seconds * 2**(n-1)),
    # with full jitter (a random part of it, at least half); after max_attempts attempts the
    # delivery is dead (redeliver it through the API).
    max_attempts: int = 8
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0
    # A claim keeps other workers off a delivery this long (a killed replica's deliveries are
    # taken over after it); it must exceed timeout_seconds.
    lease_seconds: float = 60.0
    # How often an idle worker looks for due deliveries, and how many it sends at once.
    poll_interval_seconds: float = 1.0
    concurrency: int = 8


AUDIT_SINK_TYPES = ("file", "stdout", "syslog", "http")


@dataclasses.dataclass
class AuditSinkConfig:
    """One audit export sink (hub/events/audit_export.py, docs/events.md "Audit export")."""

    # Unique, [A-Za-z0-9._-]+: the key of the sink's durable cursor (renaming a sink starts it
    # again at the beginning of the audit log).
    name: str = ""
    # file (JSON lines appended to `path`), stdout (JSON lines), syslog (RFC 5424 to `address`
    # over `protocol`), http (POST of JSON arrays to `url`).
    type: str = ""
    path: str = ""
    address: str = ""           # syslog: HOST:PORT
    protocol: str = "udp"       # syslog: udp, or tcp (RFC 6587 octet-counting framing)
    facility: int = 13          # syslog: 0..23 (13: log audit)
    app_name: str = "daohub"    # syslog: APP-NAME
    hostname: str = ""          # syslog: HOSTNAME (empty: this machine's name)
    url: str = ""               # http: http(s) URL; its address must pass webhooks' rules


@dataclasses.dataclass
class AuditExportConfig:
    """Streaming the audit log to sinks (hub/events/audit_export.py, docs/events.md)."""

    # YAML (from the environment: DAOHUB_AUDIT_EXPORT_SINKS as a YAML/JSON list).
    sinks: list[AuditSinkConfig] = dataclasses.field(default_factory=list)
    # Rows per batch (one syslog message each; one POST per batch to an http sink).
    batch_size: int = 200
    # An idle sink looks for new rows this often.
    poll_interval_seconds: float = 1.0
    # One process of all replicas exports a sink; its lease lasts this long unrenewed (a killed
    # process's sinks are taken over after it). Must exceed timeout_seconds.
    lease_seconds: float = 30.0
    # A send (connect and answer) must finish within this.
    timeout_seconds: float = 10.0
    # A failing sink retries after min(backoff_max, backoff_base * 2**(n-1)) seconds, with jitter.
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0


@dataclasses.dataclass
class Config:
    data_dir: str = "./data"
    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    database: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    registry: RegistryConfig = dataclasses.field(default_factory=RegistryConfig)
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    appstore: AppStoreConfig = dataclasses.field(default_factory=AppStoreConfig)
    gc: GcConfig = dataclasses.field(default_factory=GcConfig)
    retention: RetentionConfig = dataclasses.field(default_factory=RetentionConfig)
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    webhooks: WebhooksConfig = dataclasses.field(default_factory=WebhooksConfig)
    audit_export: AuditExportConfig = dataclasses.field(default_factory=AuditExportConfig)

    # Derived values -----------------------------------------------------------------
    @property
    def storage_root(self) -> Path:
        """The filesystem driver's root (<data_dir>/storage unless storage.filesystem.root is set)."""
        if self.storage.driver == "filesystem":
            return Path(self.storage_settings()["root"])
        return Path(self.data_dir) / "storage"

    def storage_settings(self) -> dict[str, Any]:
        """The chosen storage driver's settings (the fields of its params type), flat keys mapped."""
        return self.storage.settings(Path(self.data_dir) / "storage")

    def storage_params(self) -> Any:
        """The chosen storage driver's params, checked by the params type (storage_backends)."""
        try:
            return storage_backends.make_params(self.storage.driver, self.storage_settings())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{Path(self.data_dir).resolve() / 'daohub.db'}"

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_addr(self.server.addr)

    def proxy_settings(self) -> ProxySettings:
        """What the pull-through cache runs with (hub/proxy never reads the Config itself)."""
        proxy = self.proxy
        return ProxySettings(
            upstreams=tuple(proxy.upstreams), default_mirror=proxy.default_mirror,
            connect_timeout_seconds=proxy.connect_timeout_seconds,
            read_timeout_seconds=proxy.read_timeout_seconds,
            spool_dir=proxy.spool_dir or str(Path(self.data_dir) / "proxy-spool"),
            eviction_interval_seconds=proxy.eviction_interval_seconds,
            pull_record_seconds=proxy.pull_record_seconds,
            upstream_refresh_seconds=proxy.upstream_refresh_seconds,
            max_manifest_bytes=self.registry.max_manifest_bytes)


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server.addr must be HOST:PORT, got {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is Secret:
        return Secret(str(value))
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    if dataclasses.is_dataclass(typ):
        item = typ()
        _apply(item, value, where)
        return item
    origin = typing.get_origin(typ)
    if origin in (list, tuple):
        (inner,) = typing.get_args(typ)[:1]
        if isinstance(value, str) and dataclasses.is_dataclass(inner):
            # A list of mappings cannot be comma-separated: from the environment it is YAML (or JSON).
            try:
                value = yaml.safe_load(value) or []
            except yaml.YAMLError as exc:
                raise ConfigError(f"{where}: not a valid YAML list: {exc}") from None
        elif isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        return value
    raise ConfigError(f"{where}: unsupported type {typ!r}")


def _apply(obj: Any, data: dict[str, Any], where: str) -> None:
    if isinstance(obj, StorageConfig):
        obj.apply(data, where)
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping")
    hints = typing.get_type_hints(type(obj))
    fields = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown configuration key: {path}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            _apply(getattr(obj, key), value or {}, path)
        else:
            setattr(obj, key, _coerce(value, typ, path))


def _env_overrides(cfg: Config, environ: typing.Mapping[str, str]) -> None:
    known: dict[str, tuple[Any, str, Any]] = {}

    def add(obj: Any, prefix: str) -> None:
        # Nested sections (server.tls) are DAOHUB_SERVER_TLS_<KEY>.
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            name = f"{prefix}_{f.name}".upper()
            if dataclasses.is_dataclass(hints[f.name]):
                add(getattr(obj, f.name), name)
            else:
                known[name] = (obj, f.name, hints[f.name])

    add(cfg, "DAOHUB")
    # Variables that configure something other than this object (documented elsewhere).
    # DAOHUB_TEST_GC_PAUSE, DAOHUB_TEST_RETENTION_PAUSE: test hooks of hub/registry/gc.py and
    # retention.py, not configuration.
    reserved = {"DAOHUB_CONFIG", "DAOHUB_ADMIN_PASSWORD", "DAOHUB_TEST_GC_PAUSE", "DAOHUB_TEST_RETENTION_PAUSE"}
    for name, value in environ.items():
        if not name.startswith("DAOHUB_") or name in reserved:
            continue
        if name not in known and name.startswith("DAOHUB_STORAGE_"):
            cfg.storage.apply_env(name, value)
            continue
        if name not in known:
            raise ConfigError(f"unknown configuration variable: {name}")
        obj, attr, typ = known[name]
        setattr(obj, attr, _coerce(value, typ, name))


def validate(cfg: Config) -> Config:
    parse_addr(cfg.server.addr)
    if cfg.auth.token_ttl_seconds < 60:
        raise ConfigError("auth.token_ttl_seconds must be at least 60")
    host = cfg.host_port[0]
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if not cfg.auth.enabled and not loopback and not cfg.auth.allow_open_non_loopback:
        raise ConfigError(f"refusing to serve without authentication on {host}: enable auth, or set "
                          "auth.allow_open_non_loopback: true to run an open registry on purpose")
    if cfg.server.event_loop not in ("asyncio", "uvloop"):
        raise ConfigError("server.event_loop must be 'asyncio' or 'uvloop'")
    if cfg.log.format not in ("json", "text"):
        raise ConfigError("log.format must be 'json' or 'text'")
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"log.level: unknown level {cfg.log.level!r}")
    if cfg.database.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError("database.sqlite_synchronous must be FULL, NORMAL or EXTRA")
    ret = cfg.retention
    if ret.lease_seconds <= 0 or ret.pull_flush_seconds <= 0 or ret.pull_flush_entries < 1:
        raise ConfigError("retention.lease_seconds and retention.pull_flush_seconds must be positive, "
                          "retention.pull_flush_entries at least 1")
    _validate_events(cfg)
    _validate_appstore(cfg.appstore)
    if cfg.registry.max_manifest_bytes <= 0:
        raise ConfigError("registry.max_manifest_bytes must be positive")
    if not 0 < cfg.registry.default_page_size <= cfg.registry.max_page_size:
        raise ConfigError("registry.default_page_size must be in 1..max_page_size")
    url = cfg.database_url
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"database.url: unsupported scheme in {url.split(':', 1)[0]!r}")
    for cidr in cfg.server.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies: {cidr!r} is not an IP address or CIDR") from None
    if cfg.auth.login_failure_limit < 1 or cfg.auth.login_address_failure_limit < 1:
        raise ConfigError("auth.login_failure_limit and auth.login_address_failure_limit must be positive")
    try:
        check_providers(cfg.auth.providers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _validate_proxy(cfg.proxy)
    _validate_storage(cfg)
    _validate_tls(cfg.server.tls)
    return cfg


def _validate_events(cfg: Config) -> None:
    hooks = cfg.webhooks
    if cfg.events.keep_seconds <= 0 or cfg.events.prune_interval_seconds < 0:
        raise ConfigError("events.keep_seconds must be positive and events.prune_interval_seconds not negative")
    if hooks.timeout_seconds <= 0 or hooks.max_response_bytes < 0 or hooks.max_attempts < 1 \
            or hooks.backoff_base_seconds < 0 or hooks.backoff_max_seconds < hooks.backoff_base_seconds \
            or hooks.poll_interval_seconds <= 0 or hooks.concurrency < 1:
        raise ConfigError("webhooks: timeout_seconds and poll_interval_seconds must be positive, max_attempts and "
                          "concurrency at least 1, 0 <= backoff_base_seconds <= backoff_max_seconds")
    if hooks.lease_seconds <= hooks.timeout_seconds:
        raise ConfigError("webhooks.lease_seconds must exceed webhooks.timeout_seconds")
    for cidr in hooks.allowed_networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"webhooks.allowed_networks: {cidr!r} is not an IP address or CIDR") from None
    _validate_audit_export(cfg.audit_export)


_IMPORT_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
                          r"|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE)


def _validate_appstore(store: AppStoreConfig) -> None:
    for host in store.import_hosts:
        if not isinstance(host, str) or not _IMPORT_HOST.fullmatch(host):
            raise ConfigError(f"appstore.import_hosts: {host!r} is not a host or host:port (no scheme, no path)")
    store.import_hosts = [h.lower() for h in store.import_hosts]


def _validate_audit_export(export: AuditExportConfig) -> None:
    if export.batch_size < 1 or export.poll_interval_seconds <= 0 or export.timeout_seconds <= 0 \
            or export.backoff_base_seconds < 0 or export.backoff_max_seconds < export.backoff_base_seconds:
        raise ConfigError("audit_export: batch_size at least 1, poll_interval_seconds and timeout_seconds positive, "
                          "0 <= backoff_base_seconds <= backoff_max_seconds")
    if export.lease_seconds <= export.timeout_seconds:
        raise ConfigError("audit_export.lease_seconds must exceed audit_export.timeout_seconds")
    names: set[str] = set()
    for i, sink in enumerate(export.sinks):
        where = f"audit_export.sinks[{i}]"
        if not sink.name or not all(c.isascii() and (c.isalnum() or c in "._-") for c in sink.name):
            raise ConfigError(f"{where}.name: required, letters, digits, '.', '_' and '-' only, got {sink.name!r}")
        if sink.name in names:
            raise ConfigError(f"{where}.name: {sink.name!r} is used twice")
        names.add(sink.name)
        if sink.type not in AUDIT_SINK_TYPES:
            raise ConfigError(f"{where}.type: one of {', '.join(AUDIT_SINK_TYPES)}, got {sink.type!r}")
        given = {key for key in ("path", "address", "url") if getattr(sink, key)}
        needed = {"file": {"path"}, "stdout": set(), "syslog": {"address"}, "http": {"url"}}[sink.type]
        if given != needed:
            wanted = ", ".join(sorted(needed)) or "none of path, address, url"
            raise ConfigError(f"{where}: a {sink.type} sink takes {wanted}; got {', '.join(sorted(given)) or 'none'}")
        if sink.type == "file" and not os.path.isdir(os.path.dirname(os.path.abspath(sink.path))):
            raise ConfigError(f"{where}.path: the directory of {sink.path} does not exist")
        if sink.type == "syslog":
            try:
                parse_addr(sink.address)
            except ConfigError:
                raise ConfigError(f"{where}.address must be HOST:PORT, got {sink.address!r}") from None
            if sink.protocol not in ("udp", "tcp"):
                raise ConfigError(f"{where}.protocol: udp or tcp, got {sink.protocol!r}")
            if not 0 <= sink.facility <= 23:
                raise ConfigError(f"{where}.facility: 0..23, got {sink.facility}")
            for key, limit in (("app_name", 48), ("hostname", 255)):
                value = getattr(sink, key)
                if len(value) > limit or any(not 33 <= ord(c) <= 126 for c in value) or (key == "app_name" and not value):
                    raise ConfigError(f"{where}.{key}: printable ASCII without spaces, at most {limit} characters")
        if sink.type == "http" and not sink.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: an http:// or https:// URL, got {sink.url!r}")


def _validate_tls(tls: TlsConfig) -> None:
    if tls.min_version not in ("1.2", "1.3"):
        raise ConfigError(f"server.tls.min_version must be \"1.2\" or \"1.3\", got {tls.min_version!r}")
    if tls.reload_interval_seconds < 0:
        raise ConfigError("server.tls.reload_interval_seconds must not be negative")
    if not tls.enabled:
        if tls.client_ca_file or tls.health_addr:
            raise ConfigError("server.tls.client_ca_file and server.tls.health_addr need "
                              "server.tls.cert_file and server.tls.key_file")
        return
    if not (tls.cert_file and tls.key_file):
        raise ConfigError("server.tls.cert_file and server.tls.key_file go together: set both to serve HTTPS")
    for key in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(tls, key)
        if path and not os.access(path, os.R_OK):
            reason = "does not exist" if not os.path.exists(path) else "is not readable"
            raise ConfigError(f"server.tls.{key}: {path} {reason}")
    if tls.health_addr:
        try:
            parse_addr(tls.health_addr)
        except ConfigError:
            raise ConfigError(f"server.tls.health_addr must be HOST:PORT, got {tls.health_addr!r}") from None


def _validate_storage(cfg: Config) -> None:
    """The chosen driver's settings, checked by its params type before anything starts; one warning
    for the flat keys of the old form."""
    cfg.storage_params()
    flat = cfg.storage.legacy()
    if flat:
        log.warning("storage settings without the driver's section are deprecated: %s; write them under "
                    "storage.%s (DAOHUB_STORAGE_%s_<KEY>)", ", ".join(flat), cfg.storage.driver,
                    cfg.storage.driver.upper())


def _validate_proxy(proxy: ProxyConfig) -> None:
    from urllib.parse import urlsplit

    from .registry.names import COMPONENT_RE

    if proxy.connect_timeout_seconds <= 0 or proxy.read_timeout_seconds <= 0:
        raise ConfigError("proxy.connect_timeout_seconds and proxy.read_timeout_seconds must be positive")
    if proxy.eviction_interval_seconds < 0 or proxy.pull_record_seconds < 0 or proxy.upstream_refresh_seconds < 0:
        raise ConfigError("proxy.eviction_interval_seconds, proxy.pull_record_seconds and "
                          "proxy.upstream_refresh_seconds must not be negative")
    hosts: dict[str, str] = {}  # every name and alias -> the upstream answering to it
    for i, up in enumerate(proxy.upstreams):
        where = f"proxy.upstreams[{i}]"
        if not COMPONENT_RE.fullmatch(up.name) or len(up.name) > 64:
            raise ConfigError(f"{where}.name: {up.name!r} must be one repository-name component "
                              "(lowercase letters, digits, '.', '_', '-'), at most 64 characters")
        parts = urlsplit(up.url)
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password
                or parts.query or parts.fragment or parts.path not in ("", "/")):
            raise ConfigError(f"{where}.url: expected http(s)://host[:port] without a path, credentials or "
                              f"query, got {up.url!r}")
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise ConfigError(f"{where}.url: bad port in {up.url!r}") from None
        if bool(up.username) != bool(up.password):
            raise ConfigError(f"{where}: username and password go together")
        if up.manifest_revalidate_seconds < 0:
            raise ConfigError(f"{where}.manifest_revalidate_seconds must not be negative")
        if up.max_size_bytes < 0 or up.ttl_days < 0:
            raise ConfigError(f"{where}: max_size_bytes and ttl_days must not be negative")
        for tenant in up.tenants:
            if not COMPONENT_RE.fullmatch(tenant):
                raise ConfigError(f"{where}.tenants: {tenant!r} is not a tenant name")
        if up.name in hosts:
            raise ConfigError(f"{where}.name: {up.name!r} already names upstream {hosts[up.name]!r}")
        hosts[up.name] = up.name
        up.aliases = list(dict.fromkeys(a.strip().lower() for a in up.aliases if a.strip().lower() != up.name))
        for alias in up.aliases:
            if not HOST_PORT.fullmatch(alias):
                raise ConfigError(f"{where}.aliases: {alias!r} is not a registry host[:port]")
            if alias in hosts:
                raise ConfigError(f"{where}.aliases: {alias!r} already names upstream {hosts[alias]!r}")
            hosts[alias] = up.name
    if proxy.default_mirror and proxy.default_mirror not in {u.name for u in proxy.upstreams}:
        raise ConfigError(f"proxy.default_mirror: no upstream is named {proxy.default_mirror!r}")


def load_config(path: str | os.PathLike | None = None, environ: typing.Mapping[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Build the config from defaults, then the YAML file, then the environment, then overrides."""
    environ = os.environ if environ is None else environ
    cfg = Config()
    path = path or environ.get("DAOHUB_CONFIG")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        _apply(cfg, data, "")
    _env_overrides(cfg, environ)
    if overrides:
        _apply(cfg, overrides, "")
    return validate(cfg)
