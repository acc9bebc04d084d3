"""Every web.AppKey and web.RequestKey of the application, in one place."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from auth.provider_admin import ProviderAdmin
from auth.service import AuthService
from storage_backends import StorageDriver

from .config import Config
from .db import MetadataStore
from .metrics import Metrics
from .proxy.service import Proxy
from .registry.service import Registry
from .relay import Relay
from .tenancy.service import Administration

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", MetadataStore)
STORAGE = web.AppKey("storage", StorageDriver)
REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", Metrics)
RELAY = web.AppKey("relay", Relay)
# Present only when auth is enabled.
AUTH = web.AppKey("auth", AuthService)
# With auth: the Administration acting for an actor (a username), for the admin API.
ADMINISTRATION = web.AppKey("administration", Callable[[str], Administration])
# actor -> the identity providers' admin (auth.provider_admin.ProviderAdmin)
PROVIDER_ADMIN = web.AppKey("provider_admin", Callable[[str], ProviderAdmin])
# Present only when proxy.upstreams are configured.
PROXY = web.AppKey("proxy", Proxy)
# The garbage collector (hub.registry.gc.Collector): serve's passes and the admin API's.
GC = web.AppKey("gc", object)
# Retention runs (hub.registry.retention.Retention) and the tag pull-time buffer (hub.registry.pulls.TagPulls).
RETENTION = web.AppKey("retention", object)
TAG_PULLS = web.AppKey("tag_pulls", object)
# Webhook subscriptions (hub.events.service.Webhooks) and, with webhooks.enabled, the delivery worker.
WEBHOOKS = web.AppKey("webhooks", object)
PROMOTIONS = web.AppKey("promotions", object)  # hub.registry.promotion.Promotions
DELIVERER = web.AppKey("deliverer", object)
# Tests set it before startup: the resolver webhook URL checks and deliveries use (DNS rebinding).
WEBHOOK_RESOLVER = web.AppKey("webhook_resolver", object)
# server.workers above 1: this process's worker index (0..N-1); absent in a single process.
WORKER = web.AppKey("worker", int)
# ... and every worker's private metrics socket, by index (/metrics merges them).
WORKER_METRICS = web.AppKey("worker_metrics", list)
# False in every worker but worker 0: the periodic jobs (GC passes, retention runs, webhook
# delivery, audit export, cache eviction, upload purge, event prune) run once per machine.
BACKGROUND_JOBS = web.AppKey("background_jobs", bool)

# Request keys: values the middlewares and handlers leave on one request for each other.
REQUEST_ID = web.RequestKey("request_id", str)
# The route's name: the metrics label and the access log's `route`.
ROUTE = web.RequestKey("route", str)
ACTION = web.RequestKey("action", str)
# Who the request's token names (its subject), for audit rows; absent with auth off or anonymous.
ACTOR = web.RequestKey("actor", str)
# With auth on: may this request's token pull a repository (uploads' cross-repository mounts).
CAN_READ = web.RequestKey("can_read", Callable[[str], bool])
# With auth on, for the catalog: `await page(n, last)` lists the next n repositories the caller may see.
VISIBLE_REPOSITORIES = web.RequestKey("visible_repositories", object)
# The pull-through cache upstream a request was routed to (the access log's `upstream`).
UPSTREAM = web.RequestKey("upstream", str)
