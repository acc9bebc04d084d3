"""Property-based conformance of the admin API to its own OpenAPI document (schemathesis).

A real server on loopback (aiohttp in a background thread) with the usual users, tenants and
repositories; every operation of /api/v1/openapi.json gets a bounded number of generated
requests, valid and invalid, sent as the platform admin. Each response must not be a 5xx, must
use a documented status code and content type, and must match the documented schema.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (  # the registry of built-in checks, by name
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hub.app import create_app
from hub.handlers.admin.openapi import document

from .conftest import make_config, seed, token

schema = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class LiveHub:
    """The app served on 127.0.0.1 from an event loop of its own thread."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-hub", daemon=True)

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        app = create_app(make_config(self.tmp_path, token_ttl_seconds=3600))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(access_log=None)
        self.client = TestClient(server)
        await self.client.start_server()
        await seed(self.client)
        # A bearer token keeps working even if a generated request changes root's password.
        self.token = await token(self.client, user="root", password="root-pw-123")
        self.url = str(self.client.make_url("")).rstrip("/")

    def stop(self) -> None:
        self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory):
    hub = LiveHub(tmp_path_factory.mktemp("schemathesis"))
    hub.start()
    yield hub
    hub.stop()


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_admin_api_conforms_to_its_openapi_document(case, live_hub):
    case.call_and_validate(base_url=live_hub.url, headers={"Authorization": f"Bearer {live_hub.token}"},
                           checks=CHECKS, timeout=30)
