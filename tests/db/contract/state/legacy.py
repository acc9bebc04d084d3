"""The server state's target API (docs/design/metadata-split.md §3.3: state.get, state.set) mapped
onto today's MetadataStore (hub/db/server_state.py). Step 4a replaces it by `hub/db/state.py` and
deletes this adapter; the tests do not change."""

from __future__ import annotations

from hub.db.base import MetadataStore


class State:
    def __init__(self, store: MetadataStore):
        self.store = store

    async def get(self, name: str) -> str | None:
        return await self.store.server_state(name)

    async def set(self, name: str, value: str) -> None:
        await self.store.set_server_state(name, value)
