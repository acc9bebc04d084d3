"""ServerStateStore: small named values the server decides once for a registry and keeps across
restarts and replicas (table `server_state`), with its SQLite and PostgreSQL implementations
(mixed into SqliteStore and PostgresStore)."""

from __future__ import annotations

import abc
import time
from typing import Any

_UPSERT = ("INSERT INTO server_state (name, value, updated_at) VALUES ({}, {}, {}) ON CONFLICT (name) "
           "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")


class ServerStateStore(abc.ABC):
    @abc.abstractmethod
    async def server_state(self, name: str) -> str | None:
        """The value stored under `name`, or None if none was ever set."""

    @abc.abstractmethod
    async def set_server_state(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing what was there."""


class SqliteServerStateMixin(ServerStateStore):
    # Provided by SqliteStore.
    _write: Any
    _one: Any

    async def server_state(self, name: str) -> str | None:
        row = self._one("SELECT value FROM server_state WHERE name = ?", (name,))
        return row[0] if row else None

    async def set_server_state(self, name: str, value: str) -> None:
        await self._write(lambda conn: conn.execute(_UPSERT.format("?", "?", "?"), (name, value, time.time())))


class PostgresServerStateMixin(ServerStateStore):
    # Provided by PostgresStore.
    _write: Any
    _fetchval: Any

    async def server_state(self, name: str) -> str | None:
        return await self._fetchval("SELECT value FROM server_state WHERE name = $1", name)

    async def set_server_state(self, name: str, value: str) -> None:
        async def run(conn) -> None:
            await conn.execute(_UPSERT.format("$1", "$2", "$3"), name, value, time.time())

        await self._write(run)
