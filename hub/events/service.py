"""Webhooks: what the admin API changes and reads of subscriptions and their delivery log.

Permissions are the handlers' (hub/handlers/admin/webhooks.py); here the values are checked
(filters, secrets, the URL's destination: netguard.check_url at creation and on every change of
the URL) and written through the store, each change with its audit row in one transaction."""

from __future__ import annotations

import fnmatch
import secrets as random_secrets
import time
from typing import Any

from aiohttp.abc import AbstractResolver

from ..problems import Conflict, NotFound, ValidationFailed
from . import cloudevents
from .netguard import ForbiddenDestination, check_url, networks

MAX_FILTERS = 50
MAX_FILTER_LENGTH = 256
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
MAX_NAME_LENGTH = 100
MAX_OVERLAP_SECONDS = 30 * 86400
DEFAULT_OVERLAP_SECONDS = 86400
# Subscriptions per tenant (and platform-wide): every matching one costs each push a delivery.
MAX_SUBSCRIPTIONS = 25


def new_secret() -> str:
    return "whsec_" + random_secrets.token_urlsafe(32)


def check_event_types(patterns: list[str]) -> None:
    for i, pattern in enumerate(patterns):
        if not any(fnmatch.fnmatchcase(t, pattern) or fnmatch.fnmatchcase(t.removeprefix(cloudevents.TYPE_PREFIX),
                                                                          pattern) for t in cloudevents.EVENT_TYPES):
            raise ValidationFailed.field(f"/event_types/{i}", "matches no event type (docs/events.md lists them)")


class Webhooks:
    def __init__(self, store, allowed_networks: tuple[str, ...] | list[str] = (),
                 resolver: AbstractResolver | None = None):
        self.store = store
        self.allowed = networks(allowed_networks)
        self.resolver = resolver

    async def _check_url(self, url: str) -> str:
        try:
            await check_url(url, self.allowed, self.resolver)
        except ForbiddenDestination as exc:
            raise ValidationFailed.field("url", f"{exc}") from None
        except ValueError as exc:
            raise ValidationFailed.field("url", str(exc)) from None
        return url

    async def create(self, actor: str, tenant: str | None, body: dict[str, Any]):
        """A subscription from a WebhookCreate body; (record, its secret: shown this once)."""
        url = await self._check_url(body["url"])
        types = list(body.get("event_types", []))
        check_event_types(types)
        if len(await self.store.webhooks(tenant, limit=MAX_SUBSCRIPTIONS)) >= MAX_SUBSCRIPTIONS:
            raise Conflict(f"{'tenant ' + tenant if tenant else 'the platform'} has {MAX_SUBSCRIPTIONS} webhook "
                           "subscriptions already: delete one first")
        secret = body.get("secret") or new_secret()
        record = await self.store.create_webhook(tenant=tenant, name=body.get("name") or url[:MAX_NAME_LENGTH],
                                                 url=url, event_types=types,
                                                 repositories=list(body.get("repositories", [])), secret=secret,
                                                 actor=actor, enabled=body.get("enabled", True))
        return record, secret

    async def find(self, webhook_id: int):
        """The subscription, or None (callers decide who may learn it exists)."""
        return await self.store.webhook(webhook_id)

    async def get(self, webhook_id: int):
        record = await self.store.webhook(webhook_id)
        if record is None:
            raise NotFound(f"no webhook {webhook_id}")
        return record

    async def list(self, tenant: str | None, limit: int, after: int):
        return await self.store.webhooks(tenant, limit=limit, after=after)

    async def update(self, actor: str, webhook_id: int, body: dict[str, Any]):
        if "url" in body:
            await self._check_url(body["url"])
        if "event_types" in body:
            check_event_types(body["event_types"])
        record = await self.store.update_webhook(webhook_id, dict(body), actor)
        if record is None:
            raise NotFound(f"no webhook {webhook_id}")
        return record

    async def delete(self, actor: str, webhook_id: int) -> None:
        if not await self.store.delete_webhook(webhook_id, actor):
            raise NotFound(f"no webhook {webhook_id}")

    async def rotate_secret(self, actor: str, webhook_id: int, body: dict[str, Any]):
        """A new secret; the current one keeps signing for `previous_valid_seconds` (default a
        day; 0: at once no more). (record, the new secret: shown this once)."""
        secret = body.get("secret") or new_secret()
        overlap = body.get("previous_valid_seconds", DEFAULT_OVERLAP_SECONDS)
        record = await self.store.rotate_webhook_secret(webhook_id, secret, time.time() + overlap, actor)
        if record is None:
            raise NotFound(f"no webhook {webhook_id}")
        return record, secret

    async def deliveries(self, webhook_id: int, limit: int, before: int | None, state: str | None):
        return await self.store.webhook_deliveries(webhook_id, limit=limit, before=before, state=state)

    async def redeliver(self, actor: str, webhook_id: int, delivery_id: int) -> None:
        state = await self.store.webhook_redeliver(webhook_id, delivery_id, actor)
        if state is None:
            raise NotFound(f"webhook {webhook_id} has no delivery {delivery_id}")
        if state == "pending":
            raise Conflict(f"delivery {delivery_id} is queued already")
