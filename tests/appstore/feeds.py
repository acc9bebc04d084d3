"""A Portainer app-template feed (v3) for the import tests: two container templates (one with
env, a choice and ports; one plain), a compose-stack template whose compose file lives in git, and
a broken one."""

from __future__ import annotations

import copy

FEED = {"version": "3", "templates": [
    {"id": 1, "type": 1, "title": "Static site", "name": "static-site", "description": "Serves **files** with nginx.",
     "categories": ["web"], "platform": "linux", "logo": "https://logos.example/nginx.png",
     "image": "nginx:1.27-alpine", "ports": ["8080:80/tcp"], "volumes": [{"container": "/usr/share/nginx/html"}],
     "restart_policy": "unless-stopped",
     "env": [{"name": "SITE_NAME", "label": "Site name", "default": "demo"},
             {"name": "MODE", "label": "Mode", "select": [{"text": "Fast", "value": "fast", "default": True},
                                                          {"text": "Safe", "value": "safe"}]}]},
    {"id": 2, "type": 1, "title": "Key-value cache", "name": "kv-cache", "description": "Redis.",
     "categories": ["database"], "image": "redis:7.2", "ports": ["6379/tcp"]},
    {"id": 3, "type": 3, "title": "Stack from git", "description": "A compose stack.",
     "repository": {"url": "https://git.example/stacks", "stackfile": "app/compose.yml"}},
    {"id": 4, "type": 1, "image": "busybox"},  # no title
]}


def feed() -> dict:
    return copy.deepcopy(FEED)
