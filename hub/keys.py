"""Every web.AppKey of the application, in one place."""

from __future__ import annotations

from aiohttp import web

from auth.service import AuthService
from storage_backends import StorageDriver

from .config import Config
from .db import MetadataStore
from .metrics import Metrics
from .proxy.service import Proxy
from .registry.service import Registry

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", MetadataStore)
STORAGE = web.AppKey("storage", StorageDriver)
REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", Metrics)
# Present only when auth is enabled.
AUTH = web.AppKey("auth", AuthService)
# Present only when proxy.upstreams are configured.
PROXY = web.AppKey("proxy", Proxy)
