"""Portainer app templates v2/v3: the exported feed's fields, import, and import-then-export round trips."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import appstore
from appstore.errors import ModelError
from appstore.model import App, app_from_dict, load_app_folder
from appstore.portainer import EXTENSION, export_feed, import_feed, import_template, slug
from appstore.render import render

SEEDS = Path(appstore.__file__).parent / "seeds"

FEED_V2 = {
    "version": "2",
    "templates": [
        {
            "type": 1,
            "title": "Registry",
            "name": "registry",
            "description": "Docker image registry",
            "categories": ["docker"],
            "platform": "linux",
            "logo": "https://example.org/logos/registry.png",
            "image": "registry:2.8",
            "ports": ["5000/tcp"],
            "volumes": [{"container": "/var/lib/registry"}, {"container": "/certs", "bind": "/srv/certs",
                                                             "readonly": True}],
            "labels": [{"name": "team", "value": "ops"}],
            "restart_policy": "unless-stopped",
            "env": [
                {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "label": "Allow deletes",
                 "select": [{"text": "Yes", "value": "true", "default": True}, {"text": "No", "value": "false"}]},
                {"name": "REGISTRY_HTTP_SECRET", "label": "HTTP secret", "description": "shared by replicas"},
                {"name": "REGISTRY_LOG_LEVEL", "default": "info", "preset": True},
            ],
        },
        {
            "type": 3,
            "title": "Wordpress",
            "description": "Wordpress setup with a MySQL database",
            "note": "Deploys a <b>stack</b>",
            "categories": ["CMS"],
            "platform": "linux",
            "logo": "https://example.org/logos/wordpress.png",
            "administrator_only": False,
            "repository": {"url": "https://git.example.org/templates", "stackfile": "stacks/wordpress/compose.yml"},
            "env": [{"name": "MYSQL_DATABASE_PASSWORD", "label": "Database root password",
                     "description": "Password used by the MySQL root user."}],
        },
        {
            "type": 2,
            "title": "Swarm thing",
            "repository": {"url": "https://git.example.org/templates", "stackfile": "stacks/thing/stack.yml"},
        },
    ],
}

WORDPRESS_STACK = """services:
  db:
    image: mysql:5.7
    environment:
      MYSQL_ROOT_PASSWORD: ${MYSQL_DATABASE_PASSWORD}
  wordpress:
    image: wordpress:latest
    ports: ["80"]
    environment:
      WORDPRESS_DB_PASSWORD: ${MYSQL_DATABASE_PASSWORD}
"""


def fetch(repository: dict) -> str | None:
    return WORDPRESS_STACK if repository["stackfile"].endswith("wordpress/compose.yml") else None


def check_v2_fields(feed: dict) -> None:
    """The fields and types of Portainer's v2 template format."""
    assert feed["version"] in ("2", "3") and isinstance(feed["templates"], list)
    for t in feed["templates"]:
        assert t["type"] in (1, 2, 3)
        assert isinstance(t["title"], str) and t["title"]
        for key in ("description", "note", "platform", "logo", "name", "image", "restart_policy"):
            assert isinstance(t.get(key, ""), str), key
        assert t.get("platform", "linux") in ("linux", "windows")
        assert all(isinstance(c, str) for c in t.get("categories", []))
        assert isinstance(t.get("administrator_only", False), bool)
        if t["type"] == 1:
            assert isinstance(t["image"], str)
        else:
            assert set(t["repository"]) <= {"url", "stackfile"} and t["repository"]["url"]
        for env in t.get("env", []):
            assert set(env) <= {"name", "label", "description", "default", "preset", "select"}
            assert isinstance(env["name"], str)
            assert isinstance(env.get("default", ""), str)
            for option in env.get("select", []):
                assert set(option) <= {"text", "value", "default"}
                assert isinstance(option["text"], str) and isinstance(option["value"], str)
        if feed["version"] == "3":
            assert type(t["id"]) is int
        else:
            assert "id" not in t


def test_import_then_export_v2_gives_the_same_templates():
    apps = import_feed(copy.deepcopy(FEED_V2), fetch_stackfile=fetch)
    assert export_feed(apps, version="2") == FEED_V2
    check_v2_fields(FEED_V2)


def test_round_trip_through_the_metadata_document():
    apps = import_feed(copy.deepcopy(FEED_V2), fetch_stackfile=fetch)
    stored = [app_from_dict(json.loads(json.dumps(app.to_dict()))) for app in apps]
    assert export_feed(stored, version="2") == FEED_V2


def test_import_then_export_v3_keeps_ids():
    feed = copy.deepcopy(FEED_V2)
    feed["version"] = "3"
    for i, template in enumerate(feed["templates"], 1):
        template["id"] = i * 10
    apps = import_feed(copy.deepcopy(feed))
    assert export_feed(apps, version="3") == feed
    check_v2_fields(feed)


def test_v3_ids_are_unique_and_v2_has_none():
    feed = copy.deepcopy(FEED_V2)
    feed["version"] = "3"
    feed["templates"][0]["id"] = 2
    feed["templates"][1]["id"] = 2
    apps = import_feed(feed)
    ids = [t["id"] for t in export_feed(apps, version="3")["templates"]]
    assert ids[0] == 2 and len(set(ids)) == 3
    assert all("id" not in t for t in export_feed(apps, version="2")["templates"])


def test_imported_templates_become_apps():
    registry, wordpress, swarm = import_feed(copy.deepcopy(FEED_V2), fetch_stackfile=fetch)
    assert [a.key for a in (registry, wordpress, swarm)] == ["registry", "wordpress", "swarm-thing"]
    assert registry.icon == "https://example.org/logos/registry.png"
    version = registry.version()
    deletes = version.parameter("REGISTRY_STORAGE_DELETE_ENABLED")
    assert deletes.type.value == "enum" and deletes.default == "true"
    assert [(o.value, o.label) for o in deletes.options] == [("true", "Yes"), ("false", "No")]
    assert registry.extensions[EXTENSION]["preset"] == ["REGISTRY_LOG_LEVEL"]
    # a container template renders through a compose file built from its fields
    doc = render(version, {"REGISTRY_HTTP_SECRET": "s"}).document
    assert doc["services"]["registry"] == {
        "image": "registry:2.8", "ports": ["5000/tcp"], "volumes": ["/var/lib/registry", "/srv/certs:/certs:ro"],
        "labels": {"team": "ops"},
        "environment": {"REGISTRY_STORAGE_DELETE_ENABLED": "true", "REGISTRY_HTTP_SECRET": "s",
                        "REGISTRY_LOG_LEVEL": "info"},
        "restart": "unless-stopped"}
    # a stack renders from the fetched stack file
    rendered = render(wordpress.version(), {"MYSQL_DATABASE_PASSWORD": "pw"})
    assert rendered.document["services"]["db"]["environment"]["MYSQL_ROOT_PASSWORD"] == "pw"
    # without a fetcher the stack has an empty template
    assert swarm.version().compose == ""


def test_export_daohub_seeds_as_a_v2_feed():
    apps = [load_app_folder(SEEDS / key) for key in ("redis", "wordpress", "nginx")]
    feed = export_feed(apps, version="2",
                       repository=lambda app, v: {"url": "https://hub.example/apps.git",
                                                  "stackfile": f"{app.key}/{v.version}/compose.yaml"},
                       logo=lambda app: f"https://hub.example/apps/{app.key}/icon")
    check_v2_fields(feed)
    redis = feed["templates"][0]
    assert redis["type"] == 3 and redis["name"] == "redis" and redis["title"] == "Redis"
    assert redis["logo"] == "https://hub.example/apps/redis/icon"
    assert redis["repository"] == {"url": "https://hub.example/apps.git", "stackfile": "redis/7.2.0/compose.yaml"}
    env = {e["name"]: e for e in redis["env"]}
    assert env["PORT"]["default"] == "6379"
    assert env["REDIS_VERSION"]["select"][0] == {"text": "7.2", "value": "7.2", "default": True}
    assert "generates one" in env["REDIS_PASSWORD"]["description"] and "default" not in env["REDIS_PASSWORD"]
    nginx = feed["templates"][2]
    assert {e["name"]: e for e in nginx["env"]}["READ_ONLY"]["default"] == "true"  # latest version, 1.1.0


def test_export_of_an_exported_feed_round_trips():
    apps = [load_app_folder(SEEDS / key) for key in ("redis", "gitea")]
    feed = export_feed(apps, version="3", repository=lambda app, v: {"url": "https://h/x.git", "stackfile": "c.yml"})
    assert export_feed(import_feed(copy.deepcopy(feed)), version="3") == feed


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda f: f.update(version="1"), "version"),
    (lambda f: f["templates"][0].update(type=7), "templates[0].type"),
    (lambda f: f["templates"][1].pop("title"), "templates[1].title"),
    (lambda f: f["templates"][0]["env"][0].update(name="bad-name"), "templates[0].env[0].name"),
    (lambda f: f["templates"][0]["env"].append({"name": "REGISTRY_LOG_LEVEL"}), "templates[0].env[3].name"),
    (lambda f: f["templates"][0]["env"][0].update(select="x"), "templates[0].env[0].select"),
    (lambda f: f["templates"][0].update(categories="docker"), "templates[0].categories"),
    (lambda f: f["templates"].append("nope"), "templates[3]"),
    # Found by tests/fuzz (the portainer target): TypeError for an unhashable type, or for a
    # field that is no list where the container's compose file is built.
    (lambda f: f["templates"][0].update(type=[1]), "templates[0].type"),
    (lambda f: f["templates"][0].update(type={"a": 1}), "templates[0].type"),
    (lambda f: f["templates"][0].update(type=True), "templates[0].type"),
    (lambda f: f["templates"][0].update(ports=80), "templates[0].ports"),
    (lambda f: f["templates"][0].update(volumes=True), "templates[0].volumes"),
    (lambda f: f["templates"][0].update(labels="team=ops"), "templates[0].labels"),
])
def test_bad_feeds_get_field_errors(mutate, path):
    feed = copy.deepcopy(FEED_V2)
    mutate(feed)
    with pytest.raises(ModelError) as info:
        import_feed(feed)
    assert path in info.value.errors, info.value.errors


def test_unsafe_logo_is_dropped():
    template = {"type": 3, "title": "X", "logo": "javascript:alert(1)",
                "repository": {"url": "https://g/x", "stackfile": "s.yml"}}
    app = import_template(template)
    assert app.icon == ""
    assert "logo" not in export_feed([app])["templates"][0]


def test_duplicate_names_get_unique_keys():
    feed = {"version": "2", "templates": [{"type": 1, "title": "A", "image": "a"}, {"type": 1, "title": "a",
                                                                                     "image": "b"}]}
    assert [a.key for a in import_feed(feed)] == ["a", "a-2"]


def test_slug():
    assert slug("My App (beta)!") == "my-app-beta"
    assert slug("日本") == "app"
    assert len(slug("x" * 200)) == 63


def test_export_requires_a_known_version():
    with pytest.raises(ValueError):
        export_feed([App("a", "A")], version="1")
