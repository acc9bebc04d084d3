"""Identity providers as the platform admin manages them (the admin API, docs/sign-in.md): those of
the config file, read-only, and those made through the API, kept in the metadata store, which every
replica picks up within AuthService's refresh. Secrets (an OIDC client secret, an LDAP bind
password) are write-only: stored, used, never returned; the views say only whether one is set.

Every change is checked as the config file's providers are (check_providers) before it is stored,
and written with its audit row in one transaction (the store's). Providers of the API may not read
files for their secret (`*_file`): a secret read from a path of the server's choosing and sent to a
URL of the caller's would let the API read the server's files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hub.problems import Conflict, NotFound, ValidationFailed

from .provider_settings import (
    FILE_FIELDS,
    SECRET_FIELDS,
    ProviderSpec,
    check_providers,
    spec_from_json,
    spec_to_json,
)
from .providers import build_providers

KEEP = object()  # update(): leave the secret as it is


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderView:
    spec: ProviderSpec
    source: str  # config | api
    secret_set: bool
    created_at: float | None = None
    updated_at: float | None = None


class ProviderAdmin:
    def __init__(self, auth, store, config_specs: list[ProviderSpec], actor: str):
        self.auth = auth
        self.store = store
        self.config = {spec.name: spec for spec in config_specs}
        self.actor = actor

    async def list(self) -> list[ProviderView]:
        views = [_config_view(spec) for spec in self.config.values()]
        for record in await self.store.stored_identity_providers():
            if record.name not in self.config:
                views.append(self._stored_view(record))
        return sorted(views, key=lambda v: v.spec.name)

    async def get(self, name: str) -> ProviderView:
        for view in await self.list():
            if view.spec.name == name:
                return view
        raise NotFound(f"no identity provider {name!r}")

    async def create(self, body: Mapping[str, Any]) -> ProviderView:
        name, type_ = body["name"], body["type"]
        if name in self.config:
            raise Conflict(f"identity provider {name!r} is in the config file")
        secret = _secret_in(body, type_) or ""
        spec = await _checked(name, type_, _settings_in(body), secret)
        if not await self.store.create_identity_provider(name, type_, spec_to_json(spec), secret, self.actor,
                                                         _audit(type_, body)):
            raise Conflict(f"identity provider {name!r} exists already")
        await self.auth.refresh_providers(force=True)
        return await self.get(name)

    async def update(self, name: str, body: Mapping[str, Any]) -> ProviderView:
        record = await self._stored(name)
        settings = dict(record.settings)
        changes = _settings_in(body)
        for key, value in changes.items():
            if key == record.type:  # the type's section: merged key by key
                settings[key] = {**settings.get(key, {}), **value}
            else:
                settings[key] = value
        secret = _secret_in(body, record.type, default=KEEP)
        secret = record.secret if secret is KEEP else (secret or "")
        spec = await _checked(name, record.type, settings, secret)
        if not await self.store.update_identity_provider(name, spec_to_json(spec), secret, self.actor,
                                                         _audit(record.type, body)):
            raise NotFound(f"no identity provider {name!r}")
        await self.auth.refresh_providers(force=True)
        return await self.get(name)

    async def delete(self, name: str) -> None:
        await self._stored(name)
        if not await self.store.delete_identity_provider(name, self.actor):
            raise NotFound(f"no identity provider {name!r}")
        await self.auth.refresh_providers(force=True)

    async def _stored(self, name: str):
        if name in self.config:
            raise Conflict(f"identity provider {name!r} is in the config file: change it there")
        for record in await self.store.stored_identity_providers():
            if record.name == name:
                return record
        raise NotFound(f"no identity provider {name!r}")

    def _stored_view(self, record) -> ProviderView:
        try:
            spec = spec_from_json(record.name, record.type, record.settings, record.secret)
        except (ValueError, TypeError):
            spec = ProviderSpec(name=record.name, type=record.type)
        return ProviderView(spec, "api", bool(record.secret), record.created_at, record.updated_at)


def _config_view(spec: ProviderSpec) -> ProviderView:
    section = getattr(spec, spec.type)
    secret_set = bool(getattr(section, SECRET_FIELDS[spec.type]) or getattr(section, FILE_FIELDS[spec.type]))
    return ProviderView(spec, "config", secret_set)


def _secret_in(body: Mapping[str, Any], type_: str, default: Any = None) -> Any:
    section = body.get(type_)
    if not isinstance(section, Mapping) or SECRET_FIELDS[type_] not in section:
        return default
    return section[SECRET_FIELDS[type_]]


def _settings_in(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's settings in spec_to_json's shape (the secret taken out)."""
    settings: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("name", "type"):
            continue
        if key in SECRET_FIELDS and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k != SECRET_FIELDS[key]}
            if value.get(FILE_FIELDS[key]):
                raise ValidationFailed.field(f"{key}/{FILE_FIELDS[key]}", "providers of the API give the secret "
                                             f"itself ({SECRET_FIELDS[key]}), not a file of the server")
            value.pop(FILE_FIELDS[key], None)
        settings[key] = value
    return settings


async def _checked(name: str, type_: str, settings: dict[str, Any], secret: str) -> ProviderSpec:
    """The spec, checked as the config file's are and built once (a CA file that cannot be read, say)."""
    try:
        spec = spec_from_json(name, type_, settings, secret)
        check_providers([spec], where="provider")
        (provider,) = build_providers([spec])
    except Exception as exc:  # noqa: BLE001 (whatever the provider's library objects to is the caller's error)
        raise ValidationFailed(f"the provider is not valid: {str(exc)[:300]}") from None
    await provider.aclose()
    return spec


def _audit(type_: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What changed, for the audit log: the keys, never the secret's value."""
    section = body.get(type_) if isinstance(body.get(type_), Mapping) else {}
    detail: dict[str, Any] = {"type": type_, "changed": sorted(
        [k for k in body if k not in ("name", "type", type_)]
        + [f"{type_}.{k}" for k in section if k != SECRET_FIELDS[type_]])}
    if SECRET_FIELDS[type_] in section:
        detail[SECRET_FIELDS[type_]] = "set" if section[SECRET_FIELDS[type_]] else "cleared"
    return detail
