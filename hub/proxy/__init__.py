"""Pull-through cache: many upstream registries behind one endpoint, each cached as ordinary
repositories. No HTTP serving here (hub/handlers/proxy.py does that).

- routing: which requests reach which upstream, and the cache repository they use;
- client: one aiohttp session per upstream (token dance, redirects, errors, RateLimit-*);
- flight: single flight (one fetch per key, streamed to every waiting client through a spool);
- service: the Proxy, which ties these to the Registry (freshness, serve-stale, storing);
- upstreams: rules of upstreams managed through the admin API (stored, seen by every replica);
- eviction: cache bounds (size cap, TTL), least recently pulled images first.
"""
